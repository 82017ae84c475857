//! Typed multi-level page tables for Tessera.
//!
//! This crate is a page-table layer over the PTE formats of `page_table_entry`
//! ([`GenericPTE`]) and the platform traits of `page_table_multiarch`
//! ([`PagingMetaData`] for the format's geometry and TLB flush, [`PagingHandler`]
//! for table frames). Platforms supply the same handler and metadata as before.
//!
//! # Shape
//!
//! - [`PageTable`] owns its root table (or one per half: [`RootLayout`], for
//!   architectures with a translation base register per half) and every
//!   intermediate table below it. It can be created empty
//!   ([`PageTable::try_new`], [`PageTable::try_new_with`]) or adopt an existing root
//!   ([`PageTable::from_root`]). Reads need `&self`: a translation
//!   ([`PageTable::query`]), what the table holds at an address, a leaf or the
//!   size of the empty block around it ([`PageTable::lookup`]), every leaf
//!   ([`PageTable::for_each_leaf`]), the tables a mapping would allocate
//!   ([`PageTable::tables_needed`]), a W^X / NULL audit ([`PageTable::audit`]).
//!   Callers that keep their own bookkeeping beside the table (`mm`) use these
//!   instead of reading entries: this crate is the only code that reads or
//!   writes page-table entries.
//! - Every change goes through a [`Cursor`] ([`PageTable::cursor`]). The cursor
//!   batches TLB maintenance and flushes when dropped (see below). Besides
//!   map/unmap/protect it splits a huge leaf at an address on request
//!   ([`Cursor::split_at`], returning a [`Split`] record) and undoes such a
//!   split ([`Cursor::unsplit`], no allocation), collapses a split 2M block
//!   back ([`Cursor::collapse_2m`]), and moves a range's translations to
//!   another range for `mremap` ([`Cursor::move_region`]: whole entries where
//!   the alignment allows, so a table of 512 leaves moves with one write).
//! - Page sizes are types: [`Size4K`], [`Size2M`], [`Size1G`] implement
//!   [`PageSize`]. `map::<S>`/`unmap::<S>`/`protect::<S>` work on one page of
//!   size `S`; the `*_region` operations take any 4K-aligned range.
//!
//! # Address space
//!
//! A table with `M::LEVELS` levels translates `n = 12 + 9 * LEVELS` bits. A
//! virtual address is accepted ([`PageTable::translates`]) if `M::vaddr_is_valid`
//! accepts it and it is sign-extended from bit `n - 1`, which says its half: the
//! lower half is `[0, 2^(n-1))`, the upper half the top `2^(n-1)` addresses. Its
//! low `n` bits select the entries, so the upper half lands in root slots
//! `256..512` (of the upper root with [`RootLayout::PerHalf`]). A range is
//! accepted if both its first and last page are accepted and lie in one half: a
//! range never crosses the non-canonical hole. Anything else is `OutOfRange`,
//! never a panic.
//!
//! # Invariants
//!
//! 1. Every table reachable from the root (except root entries copied by
//!    [`Cursor::copy_kernel_half`]) is a frame allocated from `H`, zeroed before
//!    it was linked, and owned by exactly this [`PageTable`].
//! 2. An entry is exactly one of: unused (all zero); a table link (written by
//!    `GenericPTE::new_table`, at heights 1 and up); a leaf (written by
//!    `new_page`: at height 0 a 4K leaf, at height 1 or 2 a huge 2M or 1G
//!    one); or, in a table adopted through [`PageTable::from_root`], a foreign
//!    entry that translates nothing. One function (`table::entry::kind`) tells
//!    them apart, from what each format guarantees rather than from
//!    `is_present` alone: at heights 1 and up a non-huge entry is a link, which
//!    LoongArch64's format writes with no present bit; a huge entry or any
//!    entry at height 0 is a leaf if present. Every walk (query, map, unmap,
//!    protect, split, collapse, leaf iteration, teardown) asks it. Tables are
//!    never linked above height `LEVELS - 1` and leaves never above height 2.
//! 3. No owned non-root table is empty after a cursor operation returns: a table
//!    whose last entry was cleared is unlinked in the same operation and retired.
//! 4. This crate only writes leaves whose flags contain `READ` or `EXECUTE`
//!    and that the format encodes as present (AArch64 has no valid
//!    execute-only leaf: such flags are `InvalidFlags`), so every leaf it
//!    writes is present; table links are present where the format has a bit
//!    for it (all but LoongArch64). "Lazy" or reserved pages are not encoded in
//!    the page table (that state belongs to the caller's area bookkeeping).
//!    Formats: every 64-bit format of `page_table_entry` 0.6 (x86_64, RISC-V
//!    Sv39/Sv48, AArch64, LoongArch64) is served and tested; a format whose
//!    entries are not 8 bytes (its 32-bit ARM format) is refused at compile
//!    time, and debug builds check a format's promises whenever a table
//!    frame is allocated.
//! 5. Entries are read and written by value (volatile, one word at a time); no
//!    reference into a live table outlives one access.
//! 6. Every walk for linear address `la` starts at the root of `la`'s half
//!    (`PageTable::root_for`). With [`RootLayout::PerHalf`] the lower root's
//!    slots `256..512` and the upper root's slots `0..256` are therefore never
//!    written and stay empty: an address of one half that indexes the other
//!    half's slots (AArch64 indexes the root with VA bits 47..39 in both halves)
//!    finds nothing and faults. Each half is walked from its own root by every
//!    read ([`PageTable::for_each_leaf`], so every audit built on it, sees what
//!    the hardware sees).
//!
//! # TLB flush and free protocol
//!
//! The cursor is the flush guard: a cursor records every virtual address whose
//! leaf changed (up to a small batch, then it switches to a full flush), and it
//! switches to a full flush when a huge leaf is split or a table is unlinked
//! (address-based flushes do not reliably drop cached intermediate entries on
//! every architecture). When the cursor is dropped, or [`Cursor::flush`] is
//! called, it calls `M::flush_tlb` for the batch and only **then** returns the
//! retired table frames to `H`. A cursor cannot be forgotten: the table stays
//! mutably borrowed until the cursor is gone, and the drop flushes. We chose a
//! cursor over per-call `#[must_use]` tokens because reclamation must hold
//! retired frames somewhere until the flush; the cursor is that place, and it
//! lets a batch of operations share one flush. The one frame that skips the
//! list is a table never linked: a single-page map builds the tables it lacks
//! before linking them with one write, and if it runs out of frames halfway
//! it returns them to `H` at once, as no walk could ever have reached them.
//!
//! An operation that runs several cursors (an `munmap` over several areas, a
//! split followed by a protect) opens a batch ([`PageTable::begin_batch`]):
//! until [`PageTable::end_batch`] the cursors hand their flush and their
//! retired tables to the batch, which flushes once at the end (one shootdown
//! per operation) and frees them only then, together with the data frames
//! given to [`PageTable::free_after_flush`] (`table/batch.rs`).
//!
//! Data frames are not ours: [`Cursor::unmap_region`] hands each removed leaf
//! (virtual address, physical address, size, flags) to a callback. The caller
//! must free those frames only after the cursor has flushed (drop the cursor or
//! call [`Cursor::flush`] first).
//!
//! A batch that only added translations is flushed locally (`M::flush_tlb`).
//! A batch that removed or weakened any (unmap, a protect that takes access away, split, unlinked
//! tables) goes, once per flush, to the kernel's [`Shootdown`] when one is
//! installed ([`set_shootdown`]): it returns only after every CPU dropped
//! them, so retired table frames and the caller's data frames are freed after
//! every CPU's flush, not just the local one. On a hosted build (tests), use a
//! metadata type whose `flush_tlb` is not a privileged instruction, such as
//! [`NoFlush`].
//!
//! # Splitting
//!
//! Region operations first make the two range edges leaf boundaries: walking
//! down towards an edge, a huge leaf that straddles it is replaced by a new table
//! of 512 leaves of the next size down, with the same flags and consecutive
//! physical addresses, so the translation of every address is unchanged; this
//! repeats until the edge falls on a leaf boundary (1G -> 2M -> 4K at most). The
//! split is the only step that allocates, and it happens before any entry in the
//! range changes: if it runs out of memory the operation fails with the mapping
//! unchanged. The tables for one edge are all allocated before its leaf is
//! replaced, so an edge is split fully or not at all (a 1G leaf is never left
//! as 2M leaves by a failed 4K split); if the second edge fails, the first
//! stays split, with the same translations. Then the range is
//! walked once, touching only whole leaves and present subtrees: absent subtrees
//! are skipped whole, so the cost follows what is mapped, not the range size.
//!
//! Flags are carried across a split as [`MappingFlags`] (what `GenericPTE`
//! exposes); architecture bits outside `MappingFlags` are re-derived by the PTE
//! format, as for every other write through `GenericPTE`.
//!
//! # Errors
//!
//! One small enum per operation ([`MapError`], [`UnmapError`], [`ProtectError`],
//! [`QueryError`], [`LookupError`], [`SplitError`], [`UnsplitError`],
//! [`MoveError`]; and
//! [`InvalidRange`] for the reads that take a range), each convertible to
//! [`axerrno::AxError`]. A variant name means the same thing, and the same
//! `AxError`, in every enum. This crate never panics on a failed operation:
//! what a failure means to the caller's own invariants is the caller's call.
#![no_std]

extern crate alloc;

mod error;
pub mod geometry;
mod noflush;
mod shootdown;
mod size;
mod table;

pub use error::{
    InvalidRange, LookupError, MapError, ProtectError, QueryError, SplitError, UnmapError,
    UnsplitError,
};
pub use memory_addr::{PhysAddr, VirtAddr};
pub use noflush::NoFlush;
pub use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};
pub use shootdown::{Shootdown, relax, set_shootdown};
pub use size::{LeafSize, PageSize, Size1G, Size2M, Size4K};
pub use table::{Audit, Cursor, Leaf, MoveError, PageTable, RootLayout, Roots, Slot, Split};
