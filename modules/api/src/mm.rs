//! Memory calls: mmap, munmap, mprotect, mremap, msync, memory objects
//! (shared and private mappings of them), physical mappings, translation,
//! statistics, the area dump, access probes, and volatile access to mapped
//! memory ([`peek`], [`poke`]).
//!
//! Addresses are plain `usize` virtual addresses. App mappings live in the board's
//! mapping window (`[mmap]` in its config); calls outside it return
//! `InvalidInput`. See the `mm` module's docs for every error each call returns.

use alloc::sync::Arc;
use alloc::vec::Vec;

use hal::Board;
pub use mm::{
    AnonPager, AreaInfo, AreaKind, Audit, BytesPager, LeafSize, MappingFlags, MmStats, MmapFlags,
    MsyncFlags, Pager, PagerError, Prot, RemapFlags, Translation,
};
use runtime::board::Current;

use crate::AxResult;

/// Page size.
pub const PAGE_SIZE: usize = 4096;

/// Maps `len` bytes (rounded up to pages). `addr` is a hint unless `flags` has
/// `FIXED` (replace what is there, atomically) or `FIXED_NOREPLACE`; `POPULATE`
/// maps frames now, otherwise pages are mapped on first access; `CONTIGUOUS`
/// backs the mapping with physically contiguous frames, mapped now (see
/// `translate` for their addresses); `HUGE_2M`/`HUGE_1G` map with huge pages
/// (length a multiple of the huge size, address aligned to it; 4K frames when
/// no aligned run is free, counted in [`MmStats::huge_fallbacks`]). Adjacent
/// compatible mappings merge into one area.
pub fn mmap(addr: Option<usize>, len: usize, prot: Prot, flags: MmapFlags) -> AxResult<usize> {
    runtime::space::with(|s| s.mmap(addr.map(Into::into), len, prot, flags)).map(|va| va.as_usize())
}

/// A memory object on this board: pages several mappings share (see
/// [`mmap_object`]). Make one with `MemObject::anonymous(size)` (shared
/// memory), `MemObject::from_bytes(bytes)` (a "file" built into the image) or
/// `MemObject::new(pager)`.
pub type MemObject = mm::MemObject<<Current as Board>::Paging>;

/// Maps `len` bytes of `object` from byte `offset` (4K aligned):
/// `MmapFlags::SHARED` (every mapping sees every write; [`msync`] writes
/// dirty pages back through the object's pager) or `MmapFlags::PRIVATE`
/// (copy-on-write). A touch past the object's end ends the run with a
/// "past the end of the object" report (Linux's `SIGBUS`).
pub fn mmap_object(
    addr: Option<usize>,
    len: usize,
    prot: Prot,
    flags: MmapFlags,
    object: &Arc<MemObject>,
    offset: usize,
) -> AxResult<usize> {
    runtime::space::with(|s| s.mmap_object(addr.map(Into::into), len, prot, flags, object, offset))
        .map(|va| va.as_usize())
}

/// Resizes or moves the mapping `[old_addr, old_addr + old_len)` (inside one
/// area) to `new_len` bytes: shrinks, grows in place, or moves
/// (`RemapFlags::MAYMOVE`, to `new_addr` with `RemapFlags::FIXED`) by moving
/// page-table entries: the same frames, no copy. Returns its address.
pub fn mremap(
    old_addr: usize,
    old_len: usize,
    new_len: usize,
    flags: RemapFlags,
    new_addr: Option<usize>,
) -> AxResult<usize> {
    runtime::space::with(|s| {
        s.mremap(
            old_addr.into(),
            old_len,
            new_len,
            flags,
            new_addr.map(Into::into),
        )
    })
    .map(|va| va.as_usize())
}

/// Writes the dirty pages of the shared object mappings in
/// `[addr, addr + len)` back through their pagers; returns how many.
/// `flags` as Linux's (`MsyncFlags::SYNC`, `ASYNC`, `INVALIDATE`).
pub fn msync(addr: usize, len: usize, flags: MsyncFlags) -> AxResult<usize> {
    runtime::space::with(|s| s.msync(addr.into(), len, flags))
}

/// Unmaps every page of `[addr, addr + len)`; holes are not an error.
pub fn munmap(addr: usize, len: usize) -> AxResult {
    runtime::space::with(|s| s.munmap(addr.into(), len))
}

/// Changes the protection of `[addr, addr + len)`; every page must be mapped.
pub fn mprotect(addr: usize, len: usize, prot: Prot) -> AxResult {
    runtime::space::with(|s| s.mprotect(addr.into(), len, prot))
}

/// Maps the physical range `[paddr, paddr + len)` linearly (as device memory if
/// `device`) and returns its virtual address. A range of 2 MiB or more is
/// placed so that aligned 2 MiB blocks map with huge pages; a partial
/// `munmap`/`mprotect` splits them.
pub fn map_phys(paddr: usize, len: usize, prot: Prot, device: bool) -> AxResult<usize> {
    runtime::space::with(|s| s.map_phys(paddr.into(), len, prot, device)).map(|va| va.as_usize())
}

/// The physical address, flags and page size behind `va`.
pub fn translate(va: usize) -> AxResult<Translation> {
    runtime::space::read(|s| s.translate(va.into()))
}

/// Memory counters.
///
/// The address space's own counters (`data_frames`, `shared_frames`,
/// `page_table_frames`, `faults_handled`, `spurious_faults`, `huge_faults`,
/// `huge_fallbacks`, `areas`) are read through `Deref` to [`MmStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Frames of RAM the allocator manages.
    pub frames_total: usize,
    /// Frames handed out (data, page tables, heap growth).
    pub frames_used: usize,
    /// Bytes the kernel heap manages: its static arena plus every growth. The
    /// heap grows by whole frames (counted in `frames_used`) and never gives
    /// them back; see [`Stats::frames_used_since`].
    pub heap_bytes: usize,
    /// The kernel address space's counters.
    pub space: MmStats,
}

impl Stats {
    /// Frames in use now minus at `before`, not counting the frames the heap
    /// grew by in between: what a leak check compares, since heap growth (a
    /// `Vec` or a formatted message that happens to need more heap) keeps its
    /// frames for good.
    pub fn frames_used_since(&self, before: &Stats) -> isize {
        let heap_frames = |s: &Stats| (s.heap_bytes / PAGE_SIZE) as isize;
        (self.frames_used as isize - before.frames_used as isize)
            - (heap_frames(self) - heap_frames(before))
    }
}

impl Stats {
    /// `Err` naming the first count that differs from `before`: data frames,
    /// page-table frames, frames in use (heap growth left out, see
    /// [`Stats::frames_used_since`]). For an app's leak check after it undid
    /// everything it mapped since `before`.
    pub fn back_to(&self, before: &Stats) -> Result<(), alloc::string::String> {
        let diffs = [
            (
                "data frames",
                self.data_frames as isize - before.data_frames as isize,
            ),
            (
                "page-table frames",
                self.page_table_frames as isize - before.page_table_frames as isize,
            ),
            ("frames in use", self.frames_used_since(before)),
        ];
        match diffs.iter().find(|(_, d)| *d != 0) {
            None => Ok(()),
            Some((what, d)) => Err(alloc::format!("{what}: {d:+} since the start")),
        }
    }
}

impl core::ops::Deref for Stats {
    type Target = MmStats;

    fn deref(&self) -> &MmStats {
        &self.space
    }
}

/// Current memory counters.
pub fn stats() -> Stats {
    let f = frames::global::stats();
    Stats {
        frames_total: f.total,
        frames_used: f.used,
        heap_bytes: runtime::heap::usage().0,
        space: runtime::space::read(|s| s.stats()),
    }
}

/// The mapping window `[start, end)` that app mappings live in.
pub fn window() -> (usize, usize) {
    let w = runtime::space::read(|s| s.window());
    (w.start.as_usize(), w.end.as_usize())
}

/// The areas of the address space, in address order.
pub fn areas() -> Vec<AreaInfo> {
    runtime::space::describe_areas()
}

/// Reads the `u64` at `va` with one volatile load (a lazy page is faulted in).
///
/// # Safety
///
/// `va` lies in a mapping the app made with [`mmap`] or [`map_phys`] whose
/// protection allows reads, and no Rust reference points into those 8 bytes
/// while they are read. A fault the protection does not allow ends the run
/// with a failing status (as in `apps/fault`).
///
/// # Panics
///
/// If `va` is not 8-byte aligned.
pub unsafe fn peek(va: usize) -> u64 {
    assert!(va.is_multiple_of(8), "peek: unaligned address {va:#x}");
    // SAFETY: aligned (checked above); readable and not aliased by a Rust
    // reference (the caller's contract).
    unsafe { (va as *const u64).read_volatile() }
}

/// Writes `value` to the `u64` at `va` with one volatile store (a lazy page is
/// faulted in).
///
/// # Safety
///
/// `va` lies in a mapping the app made with [`mmap`] or [`map_phys`] whose
/// protection allows writes, no Rust reference points into those 8 bytes, and
/// they hold nothing the kernel or the rest of the app relies on (a
/// `map_phys` mapping can alias any physical memory, the kernel's included).
///
/// # Panics
///
/// If `va` is not 8-byte aligned.
pub unsafe fn poke(va: usize, value: u64) {
    assert!(va.is_multiple_of(8), "poke: unaligned address {va:#x}");
    // SAFETY: aligned (checked above); writable, not aliased and owned by the
    // caller (the caller's contract).
    unsafe { (va as *mut u64).write_volatile(value) }
}

/// Calls `f(va, size)` for every leaf of the live page table (the kernel's
/// mappings and the app's), lowest address first, each half of the address
/// space walked from its own root as the hardware walks it. `f` runs with the
/// address space locked: it must not call the other functions of this module.
pub fn for_each_leaf(mut f: impl FnMut(usize, usize)) {
    runtime::space::read(|s| s.for_each_leaf(|va, size| f(va.as_usize(), size)));
}

/// Whether a one-byte read at `va` faults (a lazy page is faulted in: no fault).
pub fn read_faults(va: usize) -> bool {
    Current::probe_read(va.into())
}

/// Whether a one-byte write at `va` faults (the byte is stored back unchanged).
pub fn write_faults(va: usize) -> bool {
    Current::probe_write(va.into())
}

/// Audits the live page table as the hardware walks it (each half from its
/// own root): counts leaves and writable+executable leaves, and says whether
/// the NULL page is mapped.
pub fn audit() -> Audit {
    runtime::space::audit()
}
