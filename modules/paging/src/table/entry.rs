//! Table frames as arrays of entries: index math, by-value access, and what
//! an entry is.
//!
//! A table is one 4K frame of 512 eight-byte entries; height 0 holds 4K leaves,
//! and the entry at height `h` for linear address `la` is `index(la, h)`.
//! Invariants kept here: entries are read and written by value, one volatile
//! word at a time, and no reference into a table outlives one access (crate
//! invariant 5); an index is always reduced modulo 512, so an access never
//! leaves its frame; a new table frame is zeroed before anyone can link it.
//! This is the only module that turns a table's physical address into a pointer.
//!
//! [`kind`] is the one place that decides what an entry is (unused, a table
//! link, a leaf, or something this crate never writes); every walk asks it
//! instead of testing `is_present`/`is_huge` itself, because the formats differ
//! in what those bits say about a table link (see [`kind`]).

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use crate::size::LeafSize;

use super::PageTable;

pub(super) use crate::geometry::{ENTRIES, index, shift, span};
pub(super) const PAGE: usize = 0x1000;
/// Leaves live at heights 0 (4K), 1 (2M) and 2 (1G) only.
pub(super) const MAX_LEAF_HEIGHT: usize = 2;

/// End (exclusive) of the entry at height `h` that contains linear address `la`.
#[inline(always)]
pub(super) const fn entry_end(la: usize, h: usize) -> usize {
    (la | (span(h) - 1)) + 1
}

/// What an entry at some height is (see [`kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// All zero: nothing there.
    Unused,
    /// A link to the table one height down (written by `new_table`).
    Table,
    /// A present leaf (written by `new_page` with flags `leaf_flags_ok` accepts).
    Leaf,
    /// Not zero, yet neither a link nor a present leaf: nothing this crate
    /// writes into a live table (a foreign non-present entry in an adopted
    /// table, or a retired frame's list link). It translates nothing, is never
    /// followed, and counts as occupied (a map over it fails with `AlreadyMapped`;
    /// an unmap clears it).
    Invalid,
}

/// What the entry `pte` at height `h` is.
///
/// The decision rests only on what every supported format guarantees for the
/// entries this crate writes (`page_table_entry` 0.6):
///
/// | format  | `new_table`: present, huge | leaf at `h > 0`: huge | leaf: present       |
/// |---------|----------------------------|-----------------------|--------------------|
/// | X64PTE  | yes (P), no                | yes (PS)              | if flags non-empty |
/// | Rv64PTE | yes (V), no                | yes (R or X set)      | if flags non-empty |
/// | A64PTE  | yes (VALID), no (table)    | yes (block)           | if flags has READ  |
/// | LA64PTE | **no** (bare address), no  | yes (GH)              | if flags non-empty |
///
/// So: zero is unused; at `h > 0` a non-huge entry is a table link, provided
/// it is present on formats whose links carry a present bit (LA64's carry
/// none: any non-zero non-huge directory entry is a link, as the hardware's
/// walk reads it); a huge entry at heights 1..=2, or any entry at height 0, is
/// a leaf if it is present. Hardware accessed/dirty updates touch none of
/// these bits (x86 A/D are bits 5/6, RISC-V A/D 6/7, AArch64 AF bit 10; LA64
/// does not update entries), and a 4K leaf's bit that `is_huge` reads on some
/// formats (x86 PAT, RISC-V R/X) is never consulted at height 0.
#[inline(always)]
pub(super) fn kind<PTE: GenericPTE>(pte: &PTE, h: usize) -> Kind {
    // Tested in the order that answers the common cases (a present 4K leaf, a
    // present link) in one or two bit tests; zero is only checked on the way
    // to `Invalid` (on AArch64 a zero entry reads as huge and not present).
    let absent = |pte: &PTE| {
        if pte.is_unused() {
            Kind::Unused
        } else {
            Kind::Invalid
        }
    };
    if h == 0 {
        if pte.is_present() {
            Kind::Leaf
        } else {
            absent(pte)
        }
    } else if pte.is_huge() {
        if h <= MAX_LEAF_HEIGHT && pte.is_present() {
            Kind::Leaf
        } else {
            absent(pte)
        }
    } else if pte.is_present() || (!pte.is_unused() && !links_carry_present::<PTE>()) {
        Kind::Table
    } else {
        absent(pte)
    }
}

/// Whether the format's table links report `is_present` (constant per format;
/// asked only of a non-zero, non-huge, non-present entry).
#[inline(always)]
fn links_carry_present<PTE: GenericPTE>() -> bool {
    PTE::new_table(PhysAddr::from(PAGE)).is_present()
}

/// Whether a leaf with `flags` can be written: the flags are readable or
/// executable and the format encodes them as a present leaf of every size, so
/// every leaf this crate writes is present (crate invariant 4). Every
/// supported format encodes readable flags as present (checked by
/// [`format_supported`]), so only flags without READ are built and asked
/// (`new_page` is an out-of-line call): AArch64, for one, has no valid
/// encoding without READ.
#[inline(always)]
pub(super) fn leaf_flags_ok<PTE: GenericPTE>(flags: MappingFlags) -> bool {
    flags.contains(MappingFlags::READ)
        || (flags.contains(MappingFlags::EXECUTE)
            && PTE::new_page(PhysAddr::from(PAGE), flags, false).is_present()
            && PTE::new_page(PhysAddr::from(PAGE), flags, true).is_present())
}

/// Whether the format keeps the promises [`kind`] and [`leaf_flags_ok`] rely
/// on, checked on entries built through `GenericPTE` (debug builds assert it
/// whenever a table frame is allocated, so a format that breaks them is
/// refused at the first table): a link is not unused, not huge, and keeps its
/// address; a huge leaf is huge; a leaf with READ is present at every size,
/// and keeps its address; a retired frame's link reads as `Invalid`. Formats whose entries are not 8 bytes (page_table_entry's
/// 32-bit `A32PTE`) are refused at compile time by the table's geometry check.
pub(super) fn format_supported<PTE: GenericPTE>() -> bool {
    let pa = PhysAddr::from(0x1234_5000);
    let link = PTE::new_table(pa);
    let rw = MappingFlags::READ | MappingFlags::WRITE;
    let (leaf, huge) = (PTE::new_page(pa, rw, false), PTE::new_page(pa, rw, true));
    let r = MappingFlags::READ;
    let (r_leaf, r_huge) = (PTE::new_page(pa, r, false), PTE::new_page(pa, r, true));
    !link.is_unused()
        && !link.is_huge()
        && link.paddr() == pa
        && kind(&link, 1) == Kind::Table
        && huge.is_huge()
        && kind(&huge, 1) == Kind::Leaf
        && kind(&huge, MAX_LEAF_HEIGHT) == Kind::Leaf
        && kind(&leaf, 0) == Kind::Leaf
        && kind(&r_leaf, 0) == Kind::Leaf
        && kind(&r_huge, 1) == Kind::Leaf
        && leaf.paddr() == pa
        && huge.paddr() == pa
        && (0..=MAX_LEAF_HEIGHT + 2)
            .all(|h| kind(&retired_link::<PTE>(pa.as_usize()), h) == Kind::Invalid)
}

/// Tag bit of a retired table frame's list link (see [`retired_link`]).
pub(super) const RETIRED_TAG: usize = 1 << 6;

/// The word a retired table frame holds in its entry 0: the next retired
/// frame's address (4K-aligned, or 0) with bit 0 clear and bit 6 set. Read as
/// an entry of any supported format at any height it is `Invalid`, so a stale
/// hardware walk that reaches the frame before the flush finds no translation:
/// bit 0 is the present/valid bit of x86, RISC-V and AArch64, and on LA64 bit
/// 6 marks a directory entry as a huge leaf, whose present bit (7) is clear.
#[inline(always)]
pub(super) fn retired_link<PTE: GenericPTE>(next: usize) -> PTE {
    const { assert!(core::mem::size_of::<PTE>() == 8) };
    let word = next | RETIRED_TAG;
    // SAFETY: `PTE` is 8 bytes (asserted above) and every format
    // is a plain word (`GenericPTE` entries are read from table memory by
    // value the same way); this is the value a table frame holding `word`
    // would yield to `read`.
    unsafe { core::mem::transmute_copy::<u64, PTE>(&(word as u64)) }
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
        debug_assert!(
            format_supported::<PTE>(),
            "paging: the PTE format breaks the promises `table::entry::kind` relies on"
        );
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

#[cfg(test)]
mod tests {
    //! What `kind` says of entries built by each format of page_table_entry
    //! (the non-host formats through the workspace's rustc wrapper, which
    //! passes `--cfg docsrs`).
    #[cfg(not(docsrs))]
    compile_error!(
        "paging's tests need every PTE format: build through modules/paging/scripts/rustc-all-formats.sh"
    );

    use memory_addr::PhysAddr;
    use page_table_entry::{aarch64::A64PTE, loongarch64::LA64PTE, riscv::Rv64PTE, x86_64::X64PTE};
    use page_table_multiarch::{GenericPTE, MappingFlags as F};

    use super::{Kind, MAX_LEAF_HEIGHT, format_supported, kind, leaf_flags_ok, retired_link};

    fn check<PTE: GenericPTE>(links_present: bool, exec_only: bool) {
        assert!(format_supported::<PTE>());
        let pa = PhysAddr::from(0x8765_4000);
        let link = PTE::new_table(pa);
        assert_eq!(link.is_present(), links_present);
        for h in 1..=4 {
            assert_eq!(kind(&link, h), Kind::Table, "link at height {h}");
            assert_eq!(kind(&retired_link::<PTE>(0x1000), h), Kind::Invalid);
        }
        assert_eq!(kind(&retired_link::<PTE>(0), 0), Kind::Invalid);
        assert_eq!(kind(&retired_link::<PTE>(0x1000), 0), Kind::Invalid);
        for f in [
            F::READ,
            F::READ | F::WRITE,
            F::READ | F::EXECUTE,
            F::READ | F::USER,
        ] {
            assert!(leaf_flags_ok::<PTE>(f));
            let (leaf, huge) = (PTE::new_page(pa, f, false), PTE::new_page(pa, f, true));
            assert_eq!(kind(&leaf, 0), Kind::Leaf);
            for h in 1..=MAX_LEAF_HEIGHT {
                assert_eq!(kind(&huge, h), Kind::Leaf, "{f:?} at height {h}");
            }
            // No leaf above 1G: a huge entry there is not a translation.
            assert_eq!(kind(&huge, MAX_LEAF_HEIGHT + 1), Kind::Invalid);
        }
        assert_eq!(leaf_flags_ok::<PTE>(F::EXECUTE), exec_only);
        for f in [F::empty(), F::WRITE, F::USER, F::WRITE | F::USER] {
            assert!(!leaf_flags_ok::<PTE>(f), "{f:?}");
        }
    }

    #[test]
    fn x86_64() {
        check::<X64PTE>(true, true);
    }

    #[test]
    fn riscv() {
        check::<Rv64PTE>(true, true);
    }

    /// AArch64 has no valid leaf without READ: execute-only is refused.
    #[test]
    fn aarch64() {
        check::<A64PTE>(true, false);
    }

    /// LoongArch64 table links are bare addresses, with no present bit.
    #[test]
    fn loongarch64() {
        check::<LA64PTE>(false, true);
    }
}
