//! The page table: the tree of table frames it owns, reads, and teardown.
//!
//! [`PageTable`] holds the root frame and a bitmap of root slots copied from
//! another table. Everything that changes the tree lives in the submodules:
//!
//! - `entry`: index math and by-value entry access (the only raw-pointer code);
//! - `cursor`: [`Cursor`], the flush-on-drop guard, and single-page operations;
//! - `region`: map/unmap/protect over ranges, skipping absent subtrees;
//! - `split`: range checks and splitting huge leaves at a range's edges;
//! - `collapse`: the inverse of a 2M split, once the 512 leaves agree again.
//!
//! Invariants kept here: reads (`query`, `for_each_leaf`, `table_frames`) take
//! `&self` and never write an entry; a shared root slot is never counted as
//! owned nor freed; dropping the table frees every owned table frame exactly
//! once (children before their parent, the root last) and never a data frame.

use core::marker::PhantomData;

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use crate::error::{MapError, QueryError, RangeError};
use crate::size::LeafSize;

use entry::{ENTRIES, Kind, PAGE, index, kind, leaf_size, shift, span};

mod collapse;
mod cursor;
mod entry;
mod region;
mod split;

pub use cursor::Cursor;

/// A leaf removed by an unmap: the caller frees `paddr` (if it owns it) after
/// the cursor has flushed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leaf<V> {
    /// First virtual address of the leaf.
    pub vaddr: V,
    /// First physical address of the leaf.
    pub paddr: PhysAddr,
    /// Size of the leaf.
    pub size: LeafSize,
    /// Flags the leaf had.
    pub flags: MappingFlags,
}

type Marker<M, PTE, H> = PhantomData<fn() -> (M, PTE, H)>;

/// A multi-level page table (see the crate docs for invariants and protocol).
///
/// `M` gives the geometry and the TLB flush, `PTE` the entry format, `H` the
/// table frames. Dropping the table frees every table it owns (not the data
/// frames its leaves point to); the table must not be active on any CPU then.
pub struct PageTable<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> {
    root: PhysAddr,
    /// Root slots whose entries were copied from another table (not owned).
    shared: [u64; ENTRIES / 64],
    _marker: Marker<M, PTE, H>,
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> PageTable<M, PTE, H> {
    const TOP: usize = M::LEVELS - 1;
    const LA_BITS: usize = shift(M::LEVELS);
    const LA_MASK: usize = (1 << Self::LA_BITS) - 1;
    const GEOMETRY_OK: () = assert!(
        M::LEVELS >= 3 && M::LEVELS <= 5 && core::mem::size_of::<PTE>() == 8,
        "paging supports 3- to 5-level tables of 8-byte entries"
    );

    /// Creates an empty table (allocates the root frame).
    pub fn try_new() -> Result<Self, MapError> {
        let () = Self::GEOMETRY_OK;
        let root = Self::alloc_table().ok_or(MapError::NoMemory)?;
        Ok(Self {
            root,
            shared: [0; ENTRIES / 64],
            _marker: PhantomData,
        })
    }

    /// Adopts an existing root table.
    ///
    /// # Safety
    ///
    /// `root` and every table reachable from it must be frames allocated from `H`
    /// (one frame each), reachable through `H::phys_to_virt`, in the `PTE` format
    /// with `M`'s geometry, and owned by nobody else: the returned table frees them
    /// when it is dropped or when they become empty.
    pub unsafe fn from_root(root: PhysAddr) -> Self {
        let () = Self::GEOMETRY_OK;
        Self {
            root,
            shared: [0; ENTRIES / 64],
            _marker: PhantomData,
        }
    }

    /// Physical address of the root table (what the platform loads into its
    /// translation base register).
    pub fn root_paddr(&self) -> PhysAddr {
        self.root
    }

    /// Translates `vaddr`: the physical address it maps to, the leaf's flags and
    /// the leaf's size.
    pub fn query(
        &self,
        vaddr: M::VirtAddr,
    ) -> Result<(PhysAddr, MappingFlags, LeafSize), QueryError> {
        let va: usize = vaddr.into();
        if !M::vaddr_is_valid(va) {
            return Err(QueryError::OutOfRange);
        }
        let la = va & Self::LA_MASK;
        let (pte, h) = self.find(la).ok_or(QueryError::NotMapped)?;
        let off = la & (span(h) - 1);
        Ok((
            PhysAddr::from(pte.paddr().as_usize() + off),
            pte.flags(),
            leaf_size(h),
        ))
    }

    /// Calls `f` for every present leaf, in increasing order of linear address
    /// (lower half first on sign-extended formats). Absent subtrees are skipped.
    pub fn for_each_leaf(&self, mut f: impl FnMut(Leaf<M::VirtAddr>)) {
        Self::walk_leaves(self.root, Self::TOP, 0, &mut f);
    }

    /// Number of table frames reachable from the root and owned by this table
    /// (the root included; shared root slots excluded).
    pub fn table_frames(&self) -> usize {
        let mut n = 0;
        self.for_each_table(self.root, Self::TOP, &mut |_| n += 1);
        n
    }

    /// Calls `f` on every table frame owned at or below `table` (at height `h`),
    /// each after the tables below it; shared root slots are not descended.
    fn for_each_table(&self, table: PhysAddr, h: usize, f: &mut impl FnMut(PhysAddr)) {
        if h > 0 {
            for i in 0..ENTRIES {
                let pte = Self::read(table, i);
                let shared = h == Self::TOP && self.is_shared(i);
                if !shared && kind(&pte, h) == Kind::Table {
                    self.for_each_table(pte.paddr(), h - 1, f);
                }
            }
        }
        f(table);
    }

    fn walk_leaves<F: FnMut(Leaf<M::VirtAddr>)>(table: PhysAddr, h: usize, base: usize, f: &mut F) {
        for i in 0..ENTRIES {
            let pte = Self::read(table, i);
            let la = base + (i << shift(h));
            match kind(&pte, h) {
                Kind::Leaf => f(Leaf {
                    vaddr: Self::vaddr_of(la).into(),
                    paddr: pte.paddr(),
                    size: leaf_size(h),
                    flags: pte.flags(),
                }),
                Kind::Table => Self::walk_leaves(pte.paddr(), h - 1, la, f),
                Kind::Unused | Kind::Invalid => {}
            }
        }
    }

    /// The virtual address of linear address `la`: itself if valid, else its
    /// sign extension (upper half of sign-extended formats).
    fn vaddr_of(la: usize) -> usize {
        if M::vaddr_is_valid(la) {
            la
        } else {
            la | !Self::LA_MASK
        }
    }

    /// The present leaf containing linear address `la`, with its height.
    fn find(&self, la: usize) -> Option<(PTE, usize)> {
        let mut table = self.root;
        let mut h = Self::TOP;
        loop {
            let pte = Self::read(table, index(la, h));
            match kind(&pte, h) {
                Kind::Table => {}
                Kind::Leaf => return Some((pte, h)),
                Kind::Unused | Kind::Invalid => return None,
            }
            table = pte.paddr();
            h -= 1;
        }
    }

    fn is_shared(&self, slot: usize) -> bool {
        self.shared[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// Whether any root slot of the linear range `[s, e)` is shared.
    fn touches_shared(&self, s: usize, e: usize) -> bool {
        if s >= e {
            return false;
        }
        let (first, last) = (index(s, Self::TOP), index(e - 1, Self::TOP));
        if first == last {
            // One root slot (every single-page operation): one bit test.
            return self.is_shared(first);
        }
        if self.shared.iter().all(|w| *w == 0) {
            return false;
        }
        (first..=last).any(|i| self.is_shared(i))
    }

    /// Checks a virtual range and returns it in linear (table-index) space.
    fn linear_range(va: usize, size: usize) -> Result<(usize, usize), RangeError> {
        if !va.is_multiple_of(PAGE) || !size.is_multiple_of(PAGE) {
            return Err(RangeError::NotAligned);
        }
        if !M::vaddr_is_valid(va) {
            return Err(RangeError::OutOfRange);
        }
        if size == 0 {
            return Ok((va & Self::LA_MASK, va & Self::LA_MASK));
        }
        let last = va.checked_add(size - 1).ok_or(RangeError::OutOfRange)?;
        if !M::vaddr_is_valid(last) || (va >> Self::LA_BITS) != (last >> Self::LA_BITS) {
            return Err(RangeError::OutOfRange);
        }
        let s = va & Self::LA_MASK;
        Ok((s, s + size))
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Drop for PageTable<M, PTE, H> {
    fn drop(&mut self) {
        // Children before parents: a table is read only before it is freed.
        self.for_each_table(self.root, Self::TOP, &mut |t| H::dealloc_frame(t));
    }
}

type Pt<M, PTE, H> = PageTable<M, PTE, H>;
