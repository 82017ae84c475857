//! The page table: the tree of table frames it owns, reads, and teardown.
//!
//! [`PageTable`] holds its root frames (one, or one per half: [`RootLayout`])
//! and a bitmap of root slots copied from another table. Everything that
//! changes the tree lives in the submodules:
//!
//! - `entry`: index math and by-value entry access (the only raw-pointer code);
//! - `cursor`: [`Cursor`], the flush-on-drop guard, and single-page operations;
//! - `region`: map/unmap/protect over ranges, skipping absent subtrees;
//! - `split`: range checks and splitting huge leaves at a range's edges;
//! - `collapse`: the inverse of a 2M split, once the 512 leaves agree again;
//! - `moving`: moving a range's entries to another range (`mremap`).
//!
//! Invariants kept here: reads (`query`, `for_each_leaf`, `table_frames`) take
//! `&self` and never write an entry; a shared root slot is never counted as
//! owned nor freed; dropping the table frees every owned table frame exactly
//! once (children before their parent, the roots last) and never a data frame.
//! Every walk starts at [`PageTable::root_for`] of its linear address: with
//! [`RootLayout::PerHalf`] the lower half's root only ever holds entries
//! `0..256` and the upper half's root only entries `256..512`, so neither half
//! can reach the other's tables whatever index the hardware computes.

use core::marker::PhantomData;

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use crate::error::{MapError, QueryError, RangeError};
use crate::size::LeafSize;

use entry::{ENTRIES, Kind, PAGE, index, kind, leaf_size, shift, span};

mod audit;
mod batch;
mod collapse;
mod cursor;
mod entry;
mod lookup;
mod moving;
mod region;
mod remap;
mod split;

pub use audit::Audit;
pub use cursor::Cursor;
pub use lookup::Slot;
pub use moving::MoveError;
pub use split::Split;

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

/// How many root tables translate the two halves of the address space.
///
/// Formats with one translation base register for everything (x86_64's CR3,
/// RISC-V's `satp`) use [`RootLayout::Single`]: the lower half is root slots
/// `0..256`, the upper half slots `256..512` of one root. Architectures with a
/// base register per half (AArch64's TTBR0_EL1/TTBR1_EL1, LoongArch's
/// PGDL/PGDH) must use [`RootLayout::PerHalf`]: each register gets a root that
/// holds only its own half. Giving both registers one shared root makes every
/// mapping reachable twice (the hardware indexes the root with the same address
/// bits from either half), so the layout is the board's choice, made once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootLayout {
    /// One root table for both halves.
    Single,
    /// A root table for the lower half and another for the upper half.
    PerHalf,
}

/// The root tables of a [`PageTable`]: what the platform loads into its
/// translation base register(s). Equal for [`RootLayout::Single`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roots {
    /// Root of the lower half (x86_64 CR3, RISC-V `satp`, AArch64 TTBR0_EL1).
    pub lower: PhysAddr,
    /// Root of the upper half (AArch64 TTBR1_EL1); `lower` with one root.
    pub upper: PhysAddr,
}

/// A multi-level page table (see the crate docs for invariants and protocol).
///
/// `M` gives the geometry and the TLB flush, `PTE` the entry format, `H` the
/// table frames. Dropping the table frees every table it owns (not the data
/// frames its leaves point to); the table must not be active on any CPU then.
pub struct PageTable<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> {
    /// The root of the lower half, then of the upper half (the same frame with
    /// [`RootLayout::Single`]); index with the linear address's top bit.
    roots: [PhysAddr; 2],
    /// Root slots whose entries were copied from another table (not owned).
    shared: [u64; ENTRIES / 64],
    /// The open operation batch, if any (`batch.rs`).
    batch: batch::Batch,
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

    /// Creates an empty table with one root (allocates the root frame).
    pub fn try_new() -> Result<Self, MapError> {
        Self::try_new_with(RootLayout::Single)
    }

    /// Creates an empty table with the given root layout (allocates one root
    /// frame, or two for [`RootLayout::PerHalf`]; on failure none is kept).
    pub fn try_new_with(layout: RootLayout) -> Result<Self, MapError> {
        let () = Self::GEOMETRY_OK;
        let lower = Self::alloc_table().ok_or(MapError::NoMemory)?;
        let upper = match layout {
            RootLayout::Single => lower,
            RootLayout::PerHalf => match Self::alloc_table() {
                Some(upper) => upper,
                None => {
                    H::dealloc_frame(lower);
                    return Err(MapError::NoMemory);
                }
            },
        };
        Ok(Self {
            roots: [lower, upper],
            shared: [0; ENTRIES / 64],
            batch: batch::Batch::new(),
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
            roots: [root, root],
            shared: [0; ENTRIES / 64],
            batch: batch::Batch::new(),
            _marker: PhantomData,
        }
    }

    /// Physical address of the root table of the lower half (the only root with
    /// [`RootLayout::Single`]). A platform with a base register per half loads
    /// [`PageTable::roots`] instead.
    pub fn root_paddr(&self) -> PhysAddr {
        self.roots[0]
    }

    /// The root tables (what the platform loads into its translation base
    /// registers).
    pub fn roots(&self) -> Roots {
        Roots {
            lower: self.roots[0],
            upper: self.roots[1],
        }
    }

    /// The layout this table was created with.
    pub fn layout(&self) -> RootLayout {
        if self.roots[0] == self.roots[1] {
            RootLayout::Single
        } else {
            RootLayout::PerHalf
        }
    }

    /// The root table that translates linear address `la` (its half's root).
    #[inline(always)]
    pub(crate) fn root_for(&self, la: usize) -> PhysAddr {
        self.roots[(la >> (Self::LA_BITS - 1)) & 1]
    }

    /// Translates `vaddr`: the physical address it maps to, the leaf's flags and
    /// the leaf's size.
    #[inline]
    pub fn query(
        &self,
        vaddr: M::VirtAddr,
    ) -> Result<(PhysAddr, MappingFlags, LeafSize), QueryError> {
        let va: usize = vaddr.into();
        if !Self::translates(va) {
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
        // Each half from its own root, as the hardware walks it: a root's slots
        // of the other half are never written (crate invariant 6), so walking all
        // of its slots visits exactly its own half.
        Self::walk_leaves(self.roots[0], Self::TOP, 0, &mut f);
        if self.roots[1] != self.roots[0] {
            Self::walk_leaves(self.roots[1], Self::TOP, 0, &mut f);
        }
    }

    /// Number of table frames reachable from the root and owned by this table
    /// (the root included; shared root slots excluded).
    pub fn table_frames(&self) -> usize {
        let mut n = 0;
        self.for_each_owned_table(&mut |_| n += 1);
        n
    }

    /// Calls `f` on every owned table frame, each after the tables below it,
    /// the roots last.
    fn for_each_owned_table(&self, f: &mut impl FnMut(PhysAddr)) {
        self.for_each_table(self.roots[0], Self::TOP, f);
        // An upper root taken over from another table (`copy_kernel_half` with
        // two roots) is not ours: its slots are all marked shared.
        if self.roots[1] != self.roots[0] && !self.is_shared(ENTRIES / 2) {
            self.for_each_table(self.roots[1], Self::TOP, f);
        }
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

    /// Whether this table translates virtual address `va`: `M::vaddr_is_valid`
    /// accepts it and it is sign-extended from the top translated bit (bit
    /// `12 + 9 * LEVELS - 1`), which says its half. Formats whose metadata
    /// accepts more (AArch64's accepts any address whose top 16 bits are all 0
    /// or all 1) are held to the same rule, so an address's half, and with
    /// [`RootLayout::PerHalf`] its root, is the one the hardware uses.
    #[inline(always)]
    pub fn translates(va: usize) -> bool {
        // The same expression as `PagingMetaData`'s default `vaddr_is_valid`, so
        // that for formats using the default (x86_64, RISC-V, LoongArch) the
        // compiler folds the two checks into one.
        let mask = usize::MAX << (Self::LA_BITS - 1);
        let top = va & mask;
        (top == 0 || top == mask) && M::vaddr_is_valid(va)
    }

    /// The virtual address of linear address `la`: its sign extension from the
    /// top translated bit (see [`PageTable::translates`]).
    fn vaddr_of(la: usize) -> usize {
        if la >> (Self::LA_BITS - 1) == 0 {
            la
        } else {
            la | !Self::LA_MASK
        }
    }

    /// The present leaf containing linear address `la`, with its height.
    #[inline(always)]
    fn find(&self, la: usize) -> Option<(PTE, usize)> {
        self.descend(la).ok()
    }

    /// One descent from `la`'s root: the present leaf containing `la` with its
    /// height, or the height of the entry where the walk found nothing (a hole
    /// of that entry's span).
    #[inline(always)]
    pub(super) fn descend(&self, la: usize) -> Result<(PTE, usize), usize> {
        let mut table = self.root_for(la);
        let mut h = Self::TOP;
        loop {
            let pte = Self::read(table, index(la, h));
            match kind(&pte, h) {
                Kind::Table => {}
                Kind::Leaf => return Ok((pte, h)),
                Kind::Unused | Kind::Invalid => return Err(h),
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
        if !Self::translates(va) {
            return Err(RangeError::OutOfRange);
        }
        if size == 0 {
            return Ok((va & Self::LA_MASK, va & Self::LA_MASK));
        }
        let last = va.checked_add(size - 1).ok_or(RangeError::OutOfRange)?;
        // Both ends translated and in one half: the range does not cross the hole.
        let half = Self::LA_BITS - 1;
        if !Self::translates(last) || (va >> half) != (last >> half) {
            return Err(RangeError::OutOfRange);
        }
        let s = va & Self::LA_MASK;
        Ok((s, s + size))
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Drop for PageTable<M, PTE, H> {
    fn drop(&mut self) {
        if self.in_batch() {
            self.batch.depth = 1;
            self.end_batch();
        }
        // Children before parents: a table is read only before it is freed.
        self.for_each_owned_table(&mut |t| H::dealloc_frame(t));
    }
}

type Pt<M, PTE, H> = PageTable<M, PTE, H>;
