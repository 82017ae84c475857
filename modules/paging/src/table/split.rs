//! Splitting huge leaves: at a range's edges (range preparation, with the
//! range checks), and at one address on request ([`Cursor::split_at`]), with
//! its undo ([`Cursor::unsplit`]).
//!
//! Splitting replaces a huge leaf by a new table of 512 leaves one size down,
//! with the same flags and consecutive physical addresses, so no address
//! changes translation (only `MappingFlags` survive; architecture bits are
//! re-derived by the PTE format). Invariants kept here: a split is the only
//! allocation of a range operation other than `map`, and it happens before any
//! entry inside the range changes; the tables of one edge (two for a 1G leaf
//! split down to 4K) are all allocated before the straddling leaf is replaced
//! with one write, so running out of memory at an edge changes no entry; a
//! split forces a full flush; ranges that touch a shared root slot are
//! rejected before any walk.
//!
//! An undo allocates nothing: it checks that the tables under the split
//! leaf's range still hold exactly the leaves a split makes (same flags,
//! consecutive frames from the leaf's), writes the huge leaf back over them
//! with one write, and retires those tables (freed after the flush). So a
//! caller that splits before an operation can always put the leaf back when
//! the operation fails later, and an undo that would lose a mapping made
//! since is refused.

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use super::entry::{ENTRIES, Kind, MAX_LEAF_HEIGHT, PAGE, index, kind, leaf_size, span};
use crate::error::{RangeError, SplitError, UnsplitError};

use super::{Cursor, Leaf, Pt};

/// A huge leaf that [`Cursor::split_at`] replaced by smaller leaves: the
/// record [`Cursor::unsplit`] needs to put it back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split<V> {
    leaf: Leaf<V>,
}

impl<V> Split<V> {
    /// The leaf as it was before the split (first address, frame, size, flags).
    pub fn leaf(&self) -> &Leaf<V> {
        &self.leaf
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Cursor<'_, M, PTE, H> {
    /// Makes linear address `la` a leaf boundary, splitting the huge leaf that
    /// straddles it (if any), and returns that leaf's entry and height. Keeps
    /// every translation and flag. On `NoMemory` no entry was changed.
    fn split_la(&mut self, la: usize) -> Result<Option<(PTE, usize)>, RangeError> {
        let mut table = self.pt.root_for(la);
        let mut h = Pt::<M, PTE, H>::TOP;
        while la & (span(h) - 1) != 0 {
            let idx = index(la, h);
            let pte = Pt::<M, PTE, H>::read(table, idx);
            match kind(&pte, h) {
                Kind::Unused | Kind::Invalid => return Ok(None),
                Kind::Leaf => {
                    let child = Self::split_leaf(&pte, h, la).ok_or(RangeError::NoMemory)?;
                    Pt::<M, PTE, H>::write(table, idx, PTE::new_table(child));
                    self.weaken_all();
                    return Ok(Some((pte, h)));
                }
                Kind::Table => {}
            }
            table = pte.paddr();
            h -= 1;
        }
        Ok(None)
    }

    /// The tables that replace `pte` (a leaf at height `h > 0` straddling
    /// linear address `la`): a table of 512 leaves one size down with its
    /// flags and consecutive physical addresses, and below it, if `la` still
    /// falls inside one of them, another such table for that one (1G -> 2M ->
    /// 4K). Returns the top table, not yet linked anywhere.
    ///
    /// Every frame is taken before any is filled: if one runs out, those taken
    /// go straight back to `H` (never reachable, so no flush is owed) and the
    /// caller fails with nothing changed, never with a leaf split halfway.
    fn split_leaf(pte: &PTE, h: usize, la: usize) -> Option<PhysAddr> {
        // Tables needed: one per height from `h` down while `la` stays inside a leaf.
        let mut n = 1;
        while n < h && la & (span(h - n) - 1) != 0 {
            n += 1;
        }
        let mut frames = [PhysAddr::from(0); MAX_LEAF_HEIGHT];
        for k in 0..n {
            match H::alloc_frame() {
                Some(f) => frames[k] = f,
                None => {
                    frames[..k].iter().for_each(|&f| H::dealloc_frame(f));
                    return None;
                }
            }
        }
        // frames[k] holds the leaves at height h - 1 - k; its entry for `la` is
        // replaced by frames[k + 1] (written before frames[k] is linked).
        let flags = pte.flags();
        let mut base = pte.paddr().as_usize();
        for k in 0..n {
            let ch = h - 1 - k;
            let cs = span(ch);
            for i in 0..ENTRIES {
                let leaf = PTE::new_page(PhysAddr::from(base + i * cs), flags, ch > 0);
                Pt::<M, PTE, H>::write(frames[k], i, leaf);
            }
            if k > 0 {
                Pt::<M, PTE, H>::write(frames[k - 1], index(la, ch + 1), PTE::new_table(frames[k]));
            }
            base += index(la, ch) * cs;
        }
        Some(frames[0])
    }

    /// Checks a range, rejects shared slots, and splits at both edges.
    pub(super) fn prepare_range(
        &mut self,
        va: usize,
        size: usize,
    ) -> Result<(usize, usize), RangeError> {
        let (s, e) = Pt::<M, PTE, H>::linear_range(va, size)?;
        if s == e {
            return Ok((s, e));
        }
        if self.pt.touches_shared(s, e) {
            return Err(RangeError::Shared);
        }
        self.split_la(s)?;
        if e <= Pt::<M, PTE, H>::LA_MASK {
            self.split_la(e)?;
        }
        Ok((s, e))
    }

    /// Makes `vaddr` a leaf boundary: if a huge leaf straddles it, that leaf
    /// is replaced by smaller leaves with the same flags and frames (1G -> 2M
    /// -> 4K as needed), so every translation stays as it was. Returns the
    /// leaf it replaced, the record [`Cursor::unsplit`] takes to undo it, or
    /// `None` if `vaddr` was a leaf boundary (or unmapped) already.
    ///
    /// Needs one table frame per level split (at most two); on `NoMemory`, as
    /// on every error, no entry was changed. Forces a full flush.
    pub fn split_at(
        &mut self,
        vaddr: M::VirtAddr,
    ) -> Result<Option<Split<M::VirtAddr>>, SplitError> {
        let va: usize = vaddr.into();
        if !va.is_multiple_of(PAGE) {
            return Err(SplitError::NotAligned);
        }
        if !Pt::<M, PTE, H>::translates(va) {
            return Err(SplitError::OutOfRange);
        }
        let la = va & Pt::<M, PTE, H>::LA_MASK;
        if self.pt.touches_shared(la, la + 1) {
            return Err(SplitError::Shared);
        }
        Ok(self.split_la(la)?.map(|(pte, h)| Split {
            leaf: Leaf {
                vaddr: (va & !(span(h) - 1)).into(),
                paddr: pte.paddr(),
                size: leaf_size(h),
                flags: pte.flags(),
            },
        }))
    }

    /// Undoes a [`Cursor::split_at`]: if the tables under the leaf's range
    /// still hold exactly the leaves the split made (present, the leaf's
    /// flags, consecutive frames from its frame), the huge leaf is written
    /// back in their place and the tables are retired (freed after the
    /// flush). Allocates nothing, so it cannot run out of memory.
    ///
    /// Fails with `Changed`, changing nothing, if anything in the range was
    /// mapped, unmapped or protected since (or the split was undone already).
    /// Undo splits in the reverse order they were made when one range was
    /// split twice (a 1G leaf split at both ends of a range inside it).
    pub fn unsplit(&mut self, split: Split<M::VirtAddr>) -> Result<(), UnsplitError> {
        let leaf = split.leaf;
        let va: usize = leaf.vaddr.into();
        let la = va & Pt::<M, PTE, H>::LA_MASK;
        let lh = leaf.size.height();
        if lh == 0 || self.pt.touches_shared(la, la + 1) {
            return Err(UnsplitError::Changed);
        }
        // Down to the table that holds the entry at the leaf's height.
        let mut table = self.pt.root_for(la);
        let mut h = Pt::<M, PTE, H>::TOP;
        while h > lh {
            let pte = Pt::<M, PTE, H>::read(table, index(la, h));
            if kind(&pte, h) != Kind::Table {
                return Err(UnsplitError::Changed);
            }
            table = pte.paddr();
            h -= 1;
        }
        let idx = index(la, lh);
        let entry = Pt::<M, PTE, H>::read(table, idx);
        if kind(&entry, lh) != Kind::Table {
            return Err(UnsplitError::Changed);
        }
        let child = entry.paddr();
        if !Self::holds_split(child, lh - 1, leaf.paddr.as_usize(), leaf.flags) {
            return Err(UnsplitError::Changed);
        }
        Pt::<M, PTE, H>::write(table, idx, PTE::new_page(leaf.paddr, leaf.flags, true));
        self.retire_tree(child, lh - 1);
        Ok(())
    }

    /// Whether `table` (at height `h`) and the tables below it hold only
    /// present leaves with `flags` mapping consecutive frames from `pa`: what
    /// splitting a leaf of `pa` with `flags` leaves.
    fn holds_split(table: PhysAddr, h: usize, pa: usize, flags: MappingFlags) -> bool {
        (0..ENTRIES).all(|i| {
            let pte = Pt::<M, PTE, H>::read(table, i);
            let want = pa + i * span(h);
            match kind(&pte, h) {
                Kind::Leaf => pte.paddr().as_usize() == want && pte.flags() == flags,
                Kind::Table => Self::holds_split(pte.paddr(), h - 1, want, flags),
                Kind::Unused | Kind::Invalid => false,
            }
        })
    }

    /// Retires `table` (at height `h`, already unlinked) and every table below
    /// it, children first (a retired frame's first word becomes a list link).
    fn retire_tree(&mut self, table: PhysAddr, h: usize) {
        if h > 0 {
            for i in 0..ENTRIES {
                let pte = Pt::<M, PTE, H>::read(table, i);
                if kind(&pte, h) == Kind::Table {
                    self.retire_tree(pte.paddr(), h - 1);
                }
            }
        }
        self.retire(table);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use page_table_entry::x86_64::X64PTE;
    use page_table_multiarch::x86_64::X64PagingMetaData;
    use testing::TrackingHandler;

    use crate::{
        LeafSize, MappingFlags, NoFlush, PageTable, Size1G, Size2M, Size4K, SplitError,
        UnsplitError,
    };

    type Pt = PageTable<NoFlush<X64PagingMetaData>, X64PTE, TrackingHandler>;

    const RW: MappingFlags = MappingFlags::READ.union(MappingFlags::WRITE);
    const M2: usize = 0x20_0000;
    const G1: usize = 0x4000_0000;

    /// (paddr, flags, size) of every 4K page of `[va, va + size)`.
    fn pages(pt: &Pt, va: usize, size: usize) -> Vec<(usize, MappingFlags, LeafSize)> {
        (va..va + size)
            .step_by(0x1000)
            .map(|a| {
                let (pa, f, s) = pt.query(a.into()).unwrap();
                (pa.as_usize(), f, s)
            })
            .collect()
    }

    #[test]
    fn split_keeps_translations_and_unsplit_restores_the_leaf() {
        testing::reset();
        {
            let mut pt = Pt::try_new().unwrap();
            pt.cursor()
                .map::<Size2M>(M2.into(), (4 * M2).into(), RW)
                .unwrap();
            let tables = pt.table_frames();
            let before = pages(&pt, M2, M2);
            // A boundary already, or a hole: nothing to split.
            assert_eq!(pt.cursor().split_at(M2.into()), Ok(None));
            assert_eq!(pt.cursor().split_at((8 * M2).into()), Ok(None));
            let s = pt.cursor().split_at((M2 + 0x5000).into()).unwrap().unwrap();
            assert_eq!(
                (
                    s.leaf().vaddr.as_usize(),
                    s.leaf().paddr.as_usize(),
                    s.leaf().size
                ),
                (M2, 4 * M2, LeafSize::Size2M)
            );
            assert_eq!(pt.table_frames(), tables + 1);
            let after: Vec<_> = pages(&pt, M2, M2);
            assert!(after.iter().all(|p| p.2 == LeafSize::Size4K));
            assert!(
                after
                    .iter()
                    .zip(&before)
                    .all(|(a, b)| (a.0, a.1) == (b.0, b.1))
            );
            pt.cursor().unsplit(s).unwrap();
            assert_eq!(pages(&pt, M2, M2), before);
            assert_eq!(pt.table_frames(), tables);
            // Undone already: the tables are gone.
            assert_eq!(pt.cursor().unsplit(s), Err(UnsplitError::Changed));
        }
        testing::assert_no_leaks();
    }

    #[test]
    fn unsplit_refuses_a_changed_range_and_undoes_nested_splits() {
        testing::reset();
        {
            let mut pt = Pt::try_new().unwrap();
            pt.cursor().map::<Size1G>(G1.into(), G1.into(), RW).unwrap();
            let tables = pt.table_frames();
            let before = pages(&pt, G1, 4 * M2);
            // Both ends of a range inside one 1G leaf: 1G -> 2M -> 4K at the
            // first, another 2M -> 4K at the second.
            let a = pt.cursor().split_at((G1 + 0x3000).into()).unwrap().unwrap();
            let b = pt
                .cursor()
                .split_at((G1 + M2 + 0x1000).into())
                .unwrap()
                .unwrap();
            assert_eq!(
                (a.leaf().size, b.leaf().size),
                (LeafSize::Size1G, LeafSize::Size2M)
            );
            assert_eq!(pt.table_frames(), tables + 3);
            // A changed page inside the range: refused, nothing changed.
            pt.cursor()
                .protect::<Size4K>((G1 + 0x3000).into(), MappingFlags::READ)
                .unwrap();
            assert_eq!(pt.cursor().unsplit(a), Err(UnsplitError::Changed));
            pt.cursor()
                .protect::<Size4K>((G1 + 0x3000).into(), RW)
                .unwrap();
            // Reverse order puts the 1G leaf back.
            pt.cursor().unsplit(b).unwrap();
            pt.cursor().unsplit(a).unwrap();
            assert_eq!(pt.table_frames(), tables);
            assert_eq!(pages(&pt, G1, 4 * M2), before);
            assert_eq!(pt.query(G1.into()).unwrap().2, LeafSize::Size1G);
            // Errors of the split itself change nothing.
            assert_eq!(
                pt.cursor().split_at((G1 + 1).into()),
                Err(SplitError::NotAligned)
            );
            assert_eq!(
                pt.cursor().split_at(0x0000_8000_0000_0000.into()),
                Err(SplitError::OutOfRange)
            );
            testing::set_limit(Some(testing::frames_in_use()));
            assert_eq!(
                pt.cursor().split_at((G1 + 0x1000).into()),
                Err(SplitError::NoMemory)
            );
            testing::set_limit(None);
            assert_eq!(pt.table_frames(), tables);
            assert_eq!(pages(&pt, G1, 4 * M2), before);
        }
        testing::assert_no_leaks();
    }
}
