//! Table frames as arrays of entries: index math and by-value access.
//!
//! A table is one 4K frame of 512 eight-byte entries; height 0 holds 4K leaves,
//! and the entry at height `h` for linear address `la` is `index(la, h)`.
//! Invariants kept here: entries are read and written by value, one volatile
//! word at a time, and no reference into a table outlives one access (crate
//! invariant 5); an index is always reduced modulo 512, so an access never
//! leaves its frame; a new table frame is zeroed before anyone can link it.
//! This is the only module that turns a table's physical address into a pointer.

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use crate::size::LeafSize;

use super::PageTable;

pub(super) const ENTRIES: usize = 512;
pub(super) const PAGE: usize = 0x1000;
/// Leaves live at heights 0 (4K), 1 (2M) and 2 (1G) only.
pub(super) const MAX_LEAF_HEIGHT: usize = 2;

#[inline(always)]
pub(super) const fn shift(h: usize) -> usize {
    12 + 9 * h
}

#[inline(always)]
pub(super) const fn span(h: usize) -> usize {
    1 << shift(h)
}

#[inline(always)]
pub(super) const fn index(la: usize, h: usize) -> usize {
    (la >> shift(h)) & (ENTRIES - 1)
}

/// End (exclusive) of the entry at height `h` that contains linear address `la`.
#[inline(always)]
pub(super) const fn entry_end(la: usize, h: usize) -> usize {
    (la | (span(h) - 1)) + 1
}

#[inline(always)]
pub(super) fn is_leaf<PTE: GenericPTE>(pte: &PTE, h: usize) -> bool {
    h == 0 || pte.is_huge()
}

/// Whether a leaf with `flags` can be written: this crate only writes leaves
/// that are readable or executable, so every entry it writes is present
/// (crate invariant 4).
#[inline(always)]
pub(super) fn leaf_flags_ok(flags: MappingFlags) -> bool {
    flags.intersects(MappingFlags::READ | MappingFlags::EXECUTE)
}

pub(super) const fn leaf_size(h: usize) -> LeafSize {
    match LeafSize::from_height(h) {
        Some(s) => s,
        None => LeafSize::Size1G,
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> PageTable<M, PTE, H> {
    fn entry_ptr(table: PhysAddr, idx: usize) -> *mut PTE {
        H::phys_to_virt(table)
            .as_mut_ptr()
            .cast::<PTE>()
            .wrapping_add(idx % ENTRIES)
    }

    #[inline(always)]
    pub(super) fn read(table: PhysAddr, idx: usize) -> PTE {
        // SAFETY: invariant 1 of the crate docs: `table` is a live table frame of
        // 512 eight-byte entries (GEOMETRY_OK) reachable through `phys_to_virt`,
        // owned by this page table or kept alive by whoever shared it; the index is
        // reduced modulo 512.
        unsafe { Self::entry_ptr(table, idx).read_volatile() }
    }

    #[inline(always)]
    pub(super) fn write(table: PhysAddr, idx: usize, pte: PTE) {
        // SAFETY: as in `read`; callers only write tables they own (shared root
        // slots are rejected before any walk), and hold `&mut` to the page table.
        unsafe { Self::entry_ptr(table, idx).write_volatile(pte) }
    }

    /// First index in `from..=to` whose entry is not all-zero (unused), if any.
    ///
    /// A bulk scan with plain (non-volatile) loads so it can be vectorised; it
    /// only distinguishes zero from non-zero, and hardware never turns a zero
    /// entry into a non-zero one (it only sets accessed/dirty bits in present
    /// leaves), so a concurrent hardware update cannot change the answer.
    #[inline(always)]
    pub(super) fn next_used(table: PhysAddr, from: usize, to: usize) -> Option<usize> {
        let base = H::phys_to_virt(table).as_ptr().cast::<u64>();
        let to = to.min(ENTRIES - 1);
        (from..=to).find(|&i| {
            // SAFETY: as in `read`: `i < 512` lies inside the live table frame,
            // which is 8-byte aligned; a plain load of an initialised word.
            unsafe { base.add(i).read() != 0 }
        })
    }

    /// Base linear address of the table at height `h` that contains `la`.
    #[inline(always)]
    pub(super) const fn table_base(la: usize, h: usize) -> usize {
        la & !((span(h) << 9) - 1)
    }

    pub(super) fn alloc_table() -> Option<PhysAddr> {
        let pa = H::alloc_frame()?;
        // SAFETY: `pa` is a fresh 4K frame from `H`, reachable through
        // `phys_to_virt` and not yet linked anywhere.
        unsafe { core::ptr::write_bytes(H::phys_to_virt(pa).as_mut_ptr(), 0, PAGE) };
        Some(pa)
    }

    pub(super) fn table_is_empty(table: PhysAddr) -> bool {
        Self::next_used(table, 0, ENTRIES - 1).is_none()
    }
}

/// An all-zero entry (every format treats it as unused).
pub(super) trait EmptyEntry: GenericPTE {
    fn empty_entry() -> Self;
}

impl<P: GenericPTE> EmptyEntry for P {
    #[inline(always)]
    fn empty_entry() -> Self {
        let mut p = P::new_table(PhysAddr::from(0));
        p.clear();
        p
    }
}
