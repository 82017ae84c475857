//! Reads for a caller that keeps its own bookkeeping next to the table: what
//! the table holds at an address ([`PageTable::lookup`]), how many table
//! frames mapping a range would allocate ([`PageTable::tables_needed`]), and
//! whether a range is one the table accepts at all ([`PageTable::check_range`]).
//!
//! Invariants kept here: both take `&self`, walk from the root of the
//! address's half (crate invariant 6) and never write an entry; a lookup costs
//! one descent, like [`PageTable::query`]; a count costs one descent per
//! missing or present table on the way, never one per page.

use page_table_multiarch::{GenericPTE, PagingHandler, PagingMetaData};

use crate::error::{InvalidRange, LookupError, RangeError};
use crate::size::LeafSize;

use super::entry::{Kind, index, kind, leaf_size, span};
use super::{Leaf, PageTable};

/// What a page table holds at one address ([`PageTable::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot<V> {
    /// A present leaf maps the address (its first address, frame, size, flags).
    Leaf(Leaf<V>),
    /// Nothing maps the address, nor anything else in the naturally aligned
    /// block of `size` bytes around it: the entry that would hold that block
    /// is empty (`size` is 4K, 2M, 1G, ... up to one root entry's span).
    Hole {
        /// Bytes of the empty, naturally aligned block (a power of two).
        size: usize,
    },
}

impl<V> Slot<V> {
    /// Bytes of the naturally aligned block the answer covers: the leaf's
    /// size, or the hole's.
    #[inline]
    pub fn size(&self) -> usize {
        match self {
            Slot::Leaf(l) => l.size.bytes(),
            Slot::Hole { size } => *size,
        }
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> PageTable<M, PTE, H> {
    /// What the table holds at `vaddr`: the present leaf that maps it, or the
    /// size of the largest naturally aligned empty block around it (so a walk
    /// over a sparse range can step over holes whole). One descent from the
    /// root; fails only for an address outside the translated space.
    #[inline]
    pub fn lookup(&self, vaddr: M::VirtAddr) -> Result<Slot<M::VirtAddr>, LookupError> {
        let va: usize = vaddr.into();
        if !Self::translates(va) {
            return Err(LookupError::OutOfRange);
        }
        Ok(match self.descend(va & Self::LA_MASK) {
            Ok((pte, h)) => Slot::Leaf(Leaf {
                vaddr: (va & !(span(h) - 1)).into(),
                paddr: pte.paddr(),
                size: leaf_size(h),
                flags: pte.flags(),
            }),
            Err(h) => Slot::Hole { size: span(h) },
        })
    }

    /// Checks that `[vaddr, vaddr + size)` is a range the table's operations
    /// accept: 4K aligned (else `NotAligned`), inside the translated space and
    /// not crossing the hole between the halves (else `OutOfRange`). An empty
    /// range is accepted at any valid, aligned address.
    pub fn check_range(vaddr: M::VirtAddr, size: usize) -> Result<(), InvalidRange> {
        Self::checked_range(vaddr.into(), size).map(|_| ())
    }

    /// [`PageTable::check_range`], returning the range in linear space.
    fn checked_range(va: usize, size: usize) -> Result<(usize, usize), InvalidRange> {
        // `linear_range` reports only these two.
        Self::linear_range(va, size).map_err(|e| match e {
            RangeError::NotAligned => InvalidRange::NotAligned,
            _ => InvalidRange::OutOfRange,
        })
    }

    /// Table frames that mapping every page of `[vaddr, vaddr + size)` with
    /// leaves of size `leaf` would allocate, given the tables that exist now.
    /// Leaves inside the range count as removed first (a huge leaf on the way
    /// down stands for tables that are missing), so the answer is what a
    /// caller must hold to replace whatever is mapped there; tables an unmap
    /// of the range would free are counted as present, as their frames come
    /// back before the new mapping is made.
    ///
    /// The range must be 4K aligned (else `NotAligned`); a range outside the
    /// translated space or across the hole is `OutOfRange`. `vaddr` and
    /// `size` need not be aligned to `leaf`: a partial block counts the table
    /// that would hold its leaves.
    pub fn tables_needed(
        &self,
        vaddr: M::VirtAddr,
        size: usize,
        leaf: LeafSize,
    ) -> Result<usize, InvalidRange> {
        let (s, e) = Self::checked_range(vaddr.into(), size)?;
        let leaf_h = leaf.height();
        // The last missing table counted at each height, by its index among
        // the tables of that height (linear address >> its span's shift).
        let mut last = [usize::MAX; 5];
        let mut n = 0;
        let mut la = s;
        while la < e {
            let mut table = self.root_for(la);
            let mut h = Self::TOP;
            // Descend while tables exist; stop at the first missing one (or a
            // huge leaf in its place) or at the table that holds the leaves.
            let hole_end = loop {
                if h == leaf_h {
                    // The table holding the leaves exists: nothing is missing.
                    break block_end(la, span(h + 1), e);
                }
                let pte = Self::read(table, index(la, h));
                if kind(&pte, h) != Kind::Table {
                    break block_end(la, span(h), e);
                }
                table = pte.paddr();
                h -= 1;
            };
            // The tables at heights leaf_h..h are missing for [la, hole_end);
            // one table at height j covers span(j + 1) bytes.
            for (j, seen) in last.iter_mut().enumerate().take(h).skip(leaf_h) {
                let tables_of = |x: usize| x / span(j + 1);
                let (first, lastid) = (tables_of(la), tables_of(hole_end - 1));
                n += lastid - first + 1 - usize::from(*seen == first);
                *seen = lastid;
            }
            la = hole_end;
        }
        Ok(n)
    }
}

/// End of the naturally aligned `size`-byte block containing `la`, capped at `end`.
#[inline]
fn block_end(la: usize, size: usize, end: usize) -> usize {
    (la | (size - 1)).checked_add(1).map_or(end, |x| x.min(end))
}

#[cfg(test)]
mod tests {
    use page_table_entry::x86_64::X64PTE;
    use page_table_multiarch::x86_64::X64PagingMetaData;
    use testing::TrackingHandler;

    use crate::{
        InvalidRange, Leaf, LeafSize, LookupError, MappingFlags, NoFlush, PageTable, Size1G,
        Size2M, Size4K, Slot,
    };

    type Pt = PageTable<NoFlush<X64PagingMetaData>, X64PTE, TrackingHandler>;

    const RW: MappingFlags = MappingFlags::READ.union(MappingFlags::WRITE);
    const M2: usize = 0x20_0000;
    const G1: usize = 0x4000_0000;
    const G512: usize = 0x80_0000_0000;

    #[test]
    fn lookup_finds_leaves_and_the_hole_around_an_address() {
        testing::reset();
        {
            let mut pt = Pt::try_new().unwrap();
            // Empty: the hole is one root entry's span.
            assert_eq!(pt.lookup(0x1000.into()), Ok(Slot::Hole { size: G512 }));
            let mut c = pt.cursor();
            c.map::<Size4K>((G1 + 0x3000).into(), 0x7000.into(), RW)
                .unwrap();
            c.map::<Size2M>((G1 + 4 * M2).into(), (8 * M2).into(), RW)
                .unwrap();
            c.map::<Size1G>((4 * G1).into(), G1.into(), MappingFlags::READ)
                .unwrap();
            drop(c);
            let leaf = |vaddr: usize, paddr: usize, size, flags| {
                Ok(Slot::Leaf(Leaf {
                    vaddr: vaddr.into(),
                    paddr: paddr.into(),
                    size,
                    flags,
                }))
            };
            // Inside a leaf: the leaf's start, whatever the offset.
            assert_eq!(
                pt.lookup((G1 + 0x3000).into()),
                leaf(G1 + 0x3000, 0x7000, LeafSize::Size4K, RW)
            );
            assert_eq!(
                pt.lookup((G1 + 4 * M2 + 0x5000).into()),
                leaf(G1 + 4 * M2, 8 * M2, LeafSize::Size2M, RW)
            );
            assert_eq!(
                pt.lookup((4 * G1 + 123 * 0x1000).into()),
                leaf(4 * G1, G1, LeafSize::Size1G, MappingFlags::READ)
            );
            // Holes: a 4K entry of a leaf table, a 2M entry, a 1G entry, a root entry.
            assert_eq!(
                pt.lookup((G1 + 0x4000).into()),
                Ok(Slot::Hole { size: 0x1000 })
            );
            assert_eq!(pt.lookup((G1 + M2).into()), Ok(Slot::Hole { size: M2 }));
            assert_eq!(pt.lookup((2 * G1).into()), Ok(Slot::Hole { size: G1 }));
            assert_eq!(pt.lookup(G512.into()), Ok(Slot::Hole { size: G512 }));
            assert_eq!(Slot::<usize>::Hole { size: M2 }.size(), M2);
            // Outside the translated space.
            assert_eq!(
                pt.lookup(0x0000_8000_0000_0000.into()),
                Err(LookupError::OutOfRange)
            );
        }
        testing::assert_no_leaks();
    }

    #[test]
    fn tables_needed_counts_what_a_map_allocates() {
        testing::reset();
        {
            let mut pt = Pt::try_new().unwrap();
            let cases: [(usize, usize, LeafSize); 6] = [
                (0x1000, 0x1000, LeafSize::Size4K),
                (G1 - 0x1000, 0x2000, LeafSize::Size4K),
                (G512 - M2, 2 * M2, LeafSize::Size2M),
                (2 * G1, 2 * G1, LeafSize::Size1G),
                (5 * G1 + 0x1000, 3 * M2, LeafSize::Size4K),
                (0, 0, LeafSize::Size4K),
            ];
            // Each case counted on the table as it is, then checked by mapping.
            for (va, size, leaf) in cases {
                let want = pt.tables_needed(va.into(), size, leaf).unwrap();
                let before = pt.table_frames();
                let huge = leaf != LeafSize::Size4K;
                let pa = va & (G1 - 1);
                pt.cursor()
                    .map_region(va.into(), pa.into(), size, RW, huge)
                    .unwrap();
                assert_eq!(pt.table_frames() - before, want, "{va:#x}+{size:#x}");
                assert_eq!(pt.tables_needed(va.into(), size, leaf), Ok(0));
            }
            // A huge leaf in the range stands for missing tables.
            pt.cursor()
                .map_region((8 * G1).into(), 0.into(), G1, RW, true)
                .unwrap();
            assert_eq!(
                pt.tables_needed((8 * G1).into(), G1, LeafSize::Size4K),
                Ok(1 + 512)
            );
            assert_eq!(
                pt.tables_needed(0x1001.into(), 0x1000, LeafSize::Size4K),
                Err(InvalidRange::NotAligned)
            );
            assert_eq!(
                pt.tables_needed(0x0000_7fff_ffff_f000.into(), 0x2000, LeafSize::Size4K),
                Err(InvalidRange::OutOfRange)
            );
            // Across the hole: both ends valid, still refused.
            let (lo, hi) = (0x0000_7fff_ffff_f000usize, 0xffff_8000_0000_0000usize);
            assert_eq!(
                Pt::check_range(lo.into(), hi - lo + 0x1000),
                Err(InvalidRange::OutOfRange)
            );
            assert_eq!(Pt::check_range(lo.into(), 0x1000), Ok(()));
            assert_eq!(Pt::check_range(hi.into(), 0), Ok(()));
        }
        testing::assert_no_leaks();
    }
}
