//! Address spaces: areas over a page table, linear, allocated and contiguous
//! backends, page-fault handling, and the `mmap`/`munmap`/`mprotect` semantics
//! apps see.
//!
//! An [`AddrSpace`] is an area set (`areas.rs`: a `BTreeMap` of areas keyed by
//! start address, each with a [`Backend`]) over a [`Mapper`] (the hardware
//! page table, a `paging::PageTable`, plus the state a page table cannot
//! express), a *window* of virtual addresses that the app calls may touch, and
//! counters.
//!
//! # Why our own area set
//! The first version used `memory_set` 0.4's `MemorySet`. It was replaced
//! because its backend trait answers `bool` (the reason of a failure is lost),
//! its `unmap`/`protect` visit every area (O(n) per call), it cannot merge
//! areas, and it clones a backend on a split, so position-dependent state (the
//! first frame of a contiguous run, an offset into an object) cannot follow the
//! right part. Our area set answers lookups, overlap and coverage checks,
//! unmap and protect in O(log n + k) for k touched areas; its backend trait
//! returns one small error enum per operation ([`MapError`], [`SplitError`];
//! the set's own are [`InsertError`], [`UnmapError`], [`ProtectError`]),
//! converted to [`AxError`] only at this crate's public boundary; its `split`
//! hook gives the right part its own state (a shrink from the front is a split
//! whose left part is unmapped); and adjacent areas merge (below).
//!
//! # Backends
//! - **Linear** (`pa = va - pa_va_offset`): kernel image, physical memory, MMIO,
//!   and [`AddrSpace::map_phys`]. 2M/1G pages wherever both addresses are
//!   aligned: kernel areas ([`AddrSpace::map_linear`] with `huge`,
//!   [`AddrSpace::map_kernel`]) and app areas ([`AddrSpace::map_phys`], which
//!   places a range of 2 MiB or more at a virtual address congruent to its
//!   physical one modulo 2 MiB). A partial unmap or protect splits them
//!   (see *Huge pages*).
//! - **Alloc** with [`Populate::Eager`] (a zeroed frame per page at map time) or
//!   [`Populate::Lazy`] (nothing at map time; a zeroed frame on first touch).
//!   The lazy state is the absence of a PTE, never a "paddr 0, no flags" entry.
//! - **Contiguous** (`MmapFlags::CONTIGUOUS`): one physically contiguous run of
//!   zeroed frames owned by the area, mapped at map time (what a driver needs
//!   for DMA). Its state is the frame of its first page: a split gives the
//!   right part `start_frame + offset`, and unmapping part of the area frees
//!   exactly the frames of that part (after the TLB flush).
//!
//! - **Huge alloc** ([`MmapFlags::HUGE_2M`], [`MmapFlags::HUGE_1G`]; shown as
//!   `alloc(lazy, 2M)`): allocated memory in huge pages. Each aligned block
//!   gets one zeroed, aligned run of frames mapped by one leaf (at the first
//!   touch, or at map time with `POPULATE`); when the frame allocator has no
//!   aligned run free, the faulting page (or, for `POPULATE`, the block) gets
//!   4K frames instead and [`MmStats::huge_fallbacks`] counts it. A fault in a
//!   block that is partly mapped already (after a split) maps a 4K frame.
//!
//! # Huge pages
//! An operation whose range starts or ends inside a huge leaf (partial
//! `munmap`, `mprotect`, or a `FIXED` mapping over part of one) first splits
//! that leaf at the range edge into a table of next-size leaves with the same
//! flags and consecutive physical addresses (1G -> 2M -> 4K as needed), before
//! the area set changes anything: every translation, and so every byte of data,
//! of the rest stays where it was. This needs one page-table frame per level
//! split; if none is free the call fails with `NoMemory` and the splits already
//! made are undone (the huge leaf is put back). Frame ownership stays exact: an
//! unmapped huge data page returns its whole run; after a split, unmapping part
//! of it returns exactly the 4K frames of that part (the frame allocator
//! accepts piecewise frees of a run), and the rest is returned with the pages
//! that map it. A `PROT_NONE` on part of a huge data page parks its 4K pieces;
//! they come back as 4K pages.
//!
//! # Merging
//! After every insert, unmap and protect, the areas at the boundaries of the
//! touched range merge with their neighbours when they are adjacent, have
//! equal flags and compatible backends: linear with the same offset (and huge
//! setting), alloc with the same populate mode, contiguous whose runs are
//! physically adjacent (`left.start_frame + left.size == right.start_frame`).
//! So two adjacent lazy mmaps form one area, and an `mprotect` back to the
//! neighbours' flags merges the pieces it split.
//!
//! # Invariants
//! 1. Every present PTE lies inside exactly one area, and its flags are that
//!    area's flags (no PTE is ever written with flags lacking READ, WRITE and
//!    EXECUTE).
//! 2. A frame of an Alloc area is either mapped by exactly one PTE, or *parked*
//!    (the area's flags allow no access: its PTE is removed and the frame is kept
//!    in the mapper so the data survives `PROT_NONE -> RW`), never both. The
//!    frames of a contiguous area are owned by it whether mapped or not.
//!    [`MmStats::data_frames`] counts alloc (mapped or parked) and contiguous
//!    frames.
//! 3. Areas in the window were created by the app calls; kernel areas lie outside
//!    it, so app calls (checked against the window) cannot touch them. (The
//!    kernel calls `map_linear`/`map_kernel` do not check the window: the caller
//!    keeps its areas out of it.)
//! 4. Page tables below the root that become empty after an unmap are freed
//!    (by the page table, in the same operation).
//! 5. Areas are non-overlapping, page aligned, and merged where they can be.
//! 6. No leaf crosses an area boundary: huge leaves are split at the edges of
//!    every operation before areas are split there.
//!
//! # Flush and free protocol
//! Page-table changes go through `paging`'s cursor, which records the pages it
//! changed and flushes their TLB entries (or the whole TLB after a batch, a
//! split or an unlinked table) through `PagingMetaData::flush_tlb` when it is
//! dropped, and only then frees the table frames it unlinked. A data frame is
//! freed only after that flush: unmapping takes up to 32 leaves through one
//! cursor, drops it (flush), then frees their frames (a huge leaf's whole
//! run); a contiguous run is freed after the cursor that unmapped it is
//! dropped. Spurious faults flush the faulting page. Flushes are local to the
//! calling CPU; there is no shootdown (single CPU). On the host (tests,
//! benchmarks) the table is instantiated with `paging::NoFlush<M>` ([`Meta`]),
//! so the platforms' metadata types can be used there and no privileged flush
//! instruction runs.
//!
//! # Atomic replacement
//! `mmap(FIXED)` over existing areas either fully succeeds or changes nothing:
//! the new mapping's data frames (pool or contiguous run) are allocated, the
//! old mapping's huge pages at the range ends are split, and as many frames as
//! the new mapping's page tables need (counted by walking the table) are held
//! *before* the old mapping is removed; the held frames are returned right
//! before the new mapping is made, with no allocation in between, so it cannot
//! run out. `mprotect` to accessible flags maps the pages that come back
//! (parked frames, linear and contiguous pages of a `PROT_NONE` area) before
//! changing any area, and unmaps them again if it runs out.
//!
//! # Errors
//! | call | error | when |
//! |---|---|---|
//! | [`AddrSpace::new`] | `InvalidInput` | window unaligned, empty, overflowing or not a valid virtual range |
//! | | `NoMemory` | no frame for the root table |
//! | [`AddrSpace::map_linear`] | `InvalidInput` | `va`/`pa`/`size` unaligned, size 0, overflow, invalid address, flags without access |
//! | | `AlreadyExists` | overlaps an area |
//! | | `NoMemory` | no page-table frame (nothing left mapped) |
//! | [`AddrSpace::map_kernel`] | as `map_linear`, per region | the regions mapped by the call are removed again |
//! | [`AddrSpace::mmap`] | `InvalidInput` | len 0 or overflowing when rounded up; bad `prot` (unknown bits, WRITE/EXEC without READ); unknown `flags` bits; FIXED* without `addr` or with an unaligned `addr`; FIXED* range not inside the window; CONTIGUOUS longer than [`CONTIGUOUS_MAX`]; HUGE_2M with HUGE_1G, or a huge flag with CONTIGUOUS; a huge flag and a (page-rounded) length that is not a multiple of the huge size, or FIXED* with an `addr` not aligned to it |
//! | | `AlreadyExists` | FIXED_NOREPLACE and the range overlaps an area |
//! | | `NoMemory` | no free range in the window (non-FIXED; huge: no free range aligned to the huge size); POPULATE or CONTIGUOUS and out of frames, data or page-table (rolled back; with FIXED the old mapping is intact); FIXED and no page-table frame to split a huge page of the old mapping at an end (nothing changed) |
//! | [`AddrSpace::munmap`] | `InvalidInput` | unaligned addr, len 0 or overflowing, range not inside the window |
//! | | `NoMemory` | an end of the range lies inside a huge page and no page-table frame is free to split it (nothing changed) |
//! | [`AddrSpace::mprotect`] | `InvalidInput` | unaligned addr, len 0 or overflowing, bad `prot`, range not inside the window |
//! | | `NoMemory` | a page of the range is not covered by an area; or no page-table frame to re-map pages of a `PROT_NONE` area or to split a huge page at an end of the range (nothing changed in any case) |
//! | [`AddrSpace::map_phys`] | `InvalidInput` | unaligned `paddr`, len 0, overflow or invalid physical range, bad `prot` |
//! | | `NoMemory` | no free range in the window, or no page-table frame |
//! | [`AddrSpace::translate`] | `BadAddress` | nothing mapped at `va` |
//! | [`AddrSpace::handle_page_fault`] | [`FaultError::NoArea`] (`BadAddress`) | no area covers `va` |
//! | | [`FaultError::Denied`] (`PermissionDenied`) | the area's current flags forbid the access (or the PTE disagrees with them) |
//! | | [`FaultError::NoMemory`] (`NoMemory`) | no frame for the page or its tables (nothing leaked); in a huge area only if no 4K frame is free either |
//!
//! Every error leaves the areas, the page table and the frame count exactly as
//! they were (the host tests compare the full area list and frame counts).
//! Kernel areas (outside the window) can only be reached through the kernel
//! calls. ([`SplitError::HugePage`] is no longer produced: huge pages are
//! split instead.)
//!
//! # Differences from Linux
//! - `Prot::WRITE` or `Prot::EXEC` without `READ` is `InvalidInput` (Linux
//!   maps them readable anyway); see [`Prot`].
//! - One address space, anonymous private memory only: there is no
//!   `MAP_SHARED`/`MAP_PRIVATE`/`MAP_ANONYMOUS`; unknown `flags` bits are
//!   `InvalidInput` (Linux ignores unknown bits unless `MAP_SHARED_VALIDATE`).
//! - Placement: a free, aligned hint inside the window is used as is; otherwise
//!   the *lowest* free range of the window (Linux searches top-down below
//!   `mmap_base`). App mappings never leave the window.
//! - A length that overflows when rounded up is `InvalidInput` (Linux: `ENOMEM`).
//! - `MAP_POPULATE` fails with `NoMemory` and rolls back when frames run out
//!   (Linux populates best-effort and still succeeds). With `PROT_NONE` it
//!   populates nothing and the area stays lazy (as in Linux).
//! - `mprotect` with length 0 is `InvalidInput` (Linux returns success); its
//!   `NoMemory` for unmapped pages changes nothing (Linux may have changed the
//!   areas before the hole).
//! - `munmap`/`mprotect` ranges outside the window are `InvalidInput`.
//! - `CONTIGUOUS` is Tessera's own flag (no Linux equivalent).
//! - `HUGE_2M`/`HUGE_1G` stand for Linux's `MAP_HUGETLB | MAP_HUGE_2MB/1GB`, but
//!   take frames from the ordinary frame allocator (no reserved pool), fall back
//!   to 4K frames when no aligned run is free (Linux fails the fault with
//!   `SIGBUS`), and allow a partial `munmap`/`mprotect` (Linux requires
//!   hugetlb-aligned ranges): the huge page is split.
#![no_std]

extern crate alloc;

mod area;
mod areas;
pub mod audit;
mod backend;
mod error;
mod flags;

pub use area::{AreaInfo, AreaKind, Populate};
pub use backend::{Backend, BackendKind, Mapper, Meta, PageTable};
pub use error::{FaultError, InsertError, MapError, ProtectError, SplitError, UnmapError};
pub use flags::{MmapFlags, Prot};

use axerrno::{AxError, AxResult};
use hal::{Access, MemKind, MemRegion};
use memory_addr::{AddrRange, MemoryAddr, PAGE_SIZE_4K, PhysAddr, VirtAddr};
pub use page_table_entry::{GenericPTE, MappingFlags};
pub use page_table_multiarch::{PageSize, PagingHandler, PagingMetaData};

use areas::{Area, AreaSet};
use backend::{flush_one, page_bytes};
use flags::{ACCESS_BITS, accessible, allows};

/// The largest [`MmapFlags::CONTIGUOUS`] mapping, in bytes (64 MiB).
pub const CONTIGUOUS_MAX: usize = 64 << 20;

/// Result of [`AddrSpace::translate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Translation {
    /// Physical address of `va` (offset within the page included).
    pub paddr: PhysAddr,
    /// Flags of the PTE as the page-table format reports them.
    pub flags: MappingFlags,
    /// Size of the page that maps `va`.
    pub page_size: PageSize,
}

/// Counters of an address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MmStats {
    /// Frames owned by Alloc areas, mapped or parked.
    pub data_frames: usize,
    /// Page-table frames, the root included (counted by walking the table).
    pub page_table_frames: usize,
    /// Faults resolved by mapping a page.
    pub faults_handled: u64,
    /// Faults on a page already mapped with flags allowing the access (stale TLB).
    pub spurious_faults: u64,
    /// Faults in huge areas that mapped a whole huge page.
    pub huge_faults: u64,
    /// Huge pages that got 4K frames because no aligned run of frames was
    /// free: a fault in a huge area (the faulting 4K page is mapped) or a
    /// block of a huge `POPULATE` (all its pages get 4K frames).
    pub huge_fallbacks: u64,
    /// Number of areas.
    pub areas: usize,
}

/// An address space: areas, their page table, the app window and counters.
pub struct AddrSpace<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> {
    set: AreaSet<Backend<M, PTE, H>>,
    mapper: Mapper<M, PTE, H>,
    window: AddrRange<VirtAddr>,
    faults_handled: u64,
    spurious_faults: u64,
}

/// Rounds `len` up to whole pages; `None` for 0 or overflow.
fn page_len(len: usize) -> Option<usize> {
    if len == 0 {
        return None;
    }
    len.checked_add(PAGE_SIZE_4K - 1)
        .map(|l| l & !(PAGE_SIZE_4K - 1))
}

fn info<B>(start: usize, area: &Area<Backend<B, impl GenericPTE, impl PagingHandler>>) -> AreaInfo
where
    B: PagingMetaData<VirtAddr = VirtAddr>,
{
    AreaInfo {
        start: VirtAddr::from(start),
        end: VirtAddr::from(area.end),
        flags: area.flags,
        kind: area.backend.area_kind(),
    }
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler>
    AddrSpace<M, PTE, H>
{
    /// An empty address space whose app calls may use
    /// `[window_start, window_start + window_size)`.
    pub fn new(window_start: VirtAddr, window_size: usize) -> AxResult<Self> {
        let window = Self::valid_range(window_start, window_size).ok_or(AxError::InvalidInput)?;
        let mapper = Mapper::try_new().map_err(AxError::from)?;
        Ok(Self {
            set: AreaSet::new(),
            mapper,
            window,
            faults_handled: 0,
            spurious_faults: 0,
        })
    }

    /// A page-aligned, non-empty, non-overflowing range of valid virtual addresses.
    fn valid_range(start: VirtAddr, size: usize) -> Option<AddrRange<VirtAddr>> {
        if !start.is_aligned_4k() || size == 0 || !size.is_multiple_of(PAGE_SIZE_4K) {
            return None;
        }
        let range = AddrRange::try_from_start_size(start, size)?;
        (M::vaddr_is_valid(start.as_usize()) && M::vaddr_is_valid(range.end.as_usize() - 1))
            .then_some(range)
    }

    /// The app window.
    pub fn window(&self) -> AddrRange<VirtAddr> {
        self.window
    }

    /// Physical address of the root page table (what the board activates).
    pub fn page_table_root(&self) -> PhysAddr {
        self.mapper.page_table().root_paddr()
    }

    /// `[addr, addr + len)` rounded to pages, checked to be aligned and inside the
    /// window, as `(start, end)`.
    fn window_range(&self, addr: VirtAddr, len: usize) -> AxResult<(usize, usize)> {
        let size = page_len(len).ok_or(AxError::InvalidInput)?;
        if !addr.is_aligned_4k() {
            return Err(AxError::InvalidInput);
        }
        let range = AddrRange::try_from_start_size(addr, size).ok_or(AxError::InvalidInput)?;
        if !self.window.contains_range(range) {
            return Err(AxError::InvalidInput);
        }
        Ok((range.start.as_usize(), range.end.as_usize()))
    }

    /// Maps `[va, va + size)` linearly to `[pa, pa + size)` (kernel use; not
    /// restricted to the window). `huge` allows 2M/1G pages where aligned.
    pub fn map_linear(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: usize,
        flags: MappingFlags,
        huge: bool,
    ) -> AxResult {
        let range = Self::valid_range(va, size).ok_or(AxError::InvalidInput)?;
        if !pa.is_aligned_4k()
            || pa.as_usize().checked_add(size).is_none()
            || !M::paddr_is_valid(pa.as_usize() + size - 1)
            || !accessible(flags)
        {
            return Err(AxError::InvalidInput);
        }
        let (s, e) = (range.start.as_usize(), range.end.as_usize());
        let off = s.wrapping_sub(pa.as_usize());
        log::debug!("map_linear [{s:#x}, {e:#x}) -> {pa:?} {flags:?}");
        self.set
            .insert(s, e, flags, Backend::linear(off, huge), &mut self.mapper)
            .map_err(AxError::from)
    }

    /// Maps the physical memory map at `pa + phys_virt_offset`: Text `r-x`,
    /// Rodata `r--`, Data and Free `rw-` (huge pages where aligned), Reserved
    /// `r--`, Mmio `rw-` device. Physical page 0 is never mapped at virtual 0.
    /// Adjacent regions with equal flags form one area. On error, the regions
    /// mapped by this call are removed again.
    pub fn map_kernel(&mut self, regions: &[MemRegion], phys_virt_offset: usize) -> AxResult {
        let mut done: alloc::vec::Vec<(usize, usize)> = alloc::vec::Vec::new();
        done.try_reserve_exact(regions.len())
            .map_err(|_| AxError::NoMemory)?;
        for r in regions {
            let flags = match r.kind {
                MemKind::Text => MappingFlags::READ | MappingFlags::EXECUTE,
                MemKind::Rodata | MemKind::Reserved => MappingFlags::READ,
                MemKind::Data | MemKind::Free => MappingFlags::READ | MappingFlags::WRITE,
                MemKind::Mmio => MappingFlags::READ | MappingFlags::WRITE | MappingFlags::DEVICE,
            };
            let (mut pa, mut size) = (r.paddr, r.size);
            let mut va = VirtAddr::from(pa.as_usize().wrapping_add(phys_virt_offset));
            if va.as_usize() == 0 && size >= PAGE_SIZE_4K {
                // Keep the NULL page unmapped.
                pa += PAGE_SIZE_4K;
                va += PAGE_SIZE_4K;
                size -= PAGE_SIZE_4K;
                if size == 0 {
                    continue;
                }
            }
            let res = if va.as_usize().checked_add(size).is_none() {
                Err(AxError::InvalidInput)
            } else {
                self.map_linear(va, pa, size, flags, true)
            };
            if let Err(e) = res {
                log::warn!(
                    "map_kernel: region {} {:?} at {pa:?}: {e:?}",
                    r.name,
                    r.kind
                );
                for &(s, e) in &done {
                    // The regions were mapped whole by this call: their ends are
                    // leaf boundaries, so nothing needs splitting.
                    let _ = self.set.unmap(s, e, &mut self.mapper);
                }
                return Err(e);
            }
            done.push((va.as_usize(), va.as_usize() + size));
        }
        Ok(())
    }

    /// Maps `len` bytes (rounded up to pages) of zeroed memory with `prot`.
    /// See the module docs for the placement rules and errors.
    pub fn mmap(
        &mut self,
        addr: Option<VirtAddr>,
        len: usize,
        prot: Prot,
        flags: MmapFlags,
    ) -> AxResult<VirtAddr> {
        let flags = flags.validate()?;
        let mflags = prot.to_mapping_flags()?;
        let size = page_len(len).ok_or(AxError::InvalidInput)?;
        let page = flags.page_size();
        let huge = page != PageSize::Size4K;
        let align = page_bytes(page);
        if !size.is_multiple_of(align) {
            return Err(AxError::InvalidInput);
        }
        let contiguous = flags.contains(MmapFlags::CONTIGUOUS);
        if contiguous && size > CONTIGUOUS_MAX {
            return Err(AxError::InvalidInput);
        }
        let noreplace = flags.contains(MmapFlags::FIXED_NOREPLACE);
        let fixed = noreplace || flags.contains(MmapFlags::FIXED);
        let start = if fixed {
            let addr = addr.ok_or(AxError::InvalidInput)?;
            if !addr.as_usize().is_multiple_of(align) {
                return Err(AxError::InvalidInput);
            }
            let (s, e) = self.window_range(addr, size)?;
            if noreplace && self.set.overlaps(s, e) {
                return Err(AxError::AlreadyExists);
            }
            s
        } else {
            let hint = addr
                .filter(|a| a.as_usize().is_multiple_of(align))
                .and_then(|a| self.window_range(a, size).ok())
                .filter(|&(s, e)| !self.set.overlaps(s, e));
            match hint {
                Some((s, _)) => s,
                None => self.find_free_aligned(size, align, 0)?,
            }
        };
        let end = start + size;
        let pages = size / PAGE_SIZE_4K;
        let populate = !contiguous && flags.contains(MmapFlags::POPULATE) && accessible(mflags);
        // 1. Data frames, while the old mapping is intact.
        let (backend, run) = if contiguous {
            let run = self.mapper.alloc_contiguous(pages)?;
            (Backend::contiguous(run), Some(run))
        } else if populate {
            if huge {
                self.mapper.fill_huge_pool(size / align, page)?;
            } else {
                self.mapper.fill_pool(pages)?;
            }
            (Backend::alloc_sized(Populate::Eager, page), None)
        } else {
            (Backend::alloc_sized(Populate::Lazy, page), None)
        };
        let release = |m: &mut Mapper<M, PTE, H>| {
            m.drain_pool();
            if let Some(run) = run {
                m.free_contiguous(run, pages);
            }
        };
        if fixed && self.set.overlaps(start, end) {
            // 2. Split the old mapping's huge pages at the ends, and hold the
            //    frames the new mapping's page tables will need.
            let splits = match self.mapper.split_edges(start, end) {
                Ok(splits) => splits,
                Err(e) => {
                    release(&mut self.mapper);
                    return Err(e.into());
                }
            };
            if (populate || contiguous) && accessible(mflags) {
                let leaf_h = match page {
                    _ if self.mapper.pool_has_4k() => 0,
                    PageSize::Size1G => 2,
                    PageSize::Size2M => 1,
                    _ => 0,
                };
                if let Err(e) = self.mapper.reserve_tables(start, end, leaf_h) {
                    self.mapper.unsplit(splits);
                    release(&mut self.mapper);
                    return Err(e.into());
                }
            }
            // 3. Remove the old mapping (its ends are leaf boundaries now).
            let r = self.set.unmap(start, end, &mut self.mapper);
            self.mapper.release_reserve();
            if let Err(e) = r {
                self.mapper.unsplit(splits);
                release(&mut self.mapper);
                return Err(e.into());
            }
        }
        // 4. Map: the frames it needs are free now.
        let r = self
            .set
            .insert(start, end, mflags, backend, &mut self.mapper);
        if r.is_err() {
            release(&mut self.mapper);
        }
        self.mapper.drain_pool();
        r.map(|()| VirtAddr::from(start)).map_err(AxError::from)
    }

    /// The lowest free range of `size` bytes in the window whose start is
    /// `phase` modulo `align` (a power of two).
    fn find_free_aligned(&self, size: usize, align: usize, phase: usize) -> AxResult<usize> {
        self.set
            .find_free_aligned(
                self.window.start.as_usize(),
                self.window.end.as_usize(),
                size,
                align,
                phase,
            )
            .ok_or(AxError::NoMemory)
    }

    /// Unmaps every page of `[addr, addr + len)` (rounded up to pages); areas are
    /// shrunk or split as needed; holes are not an error.
    pub fn munmap(&mut self, addr: VirtAddr, len: usize) -> AxResult {
        let (s, e) = self.window_range(addr, len)?;
        let splits = self.mapper.split_edges(s, e)?;
        let r = self.set.unmap(s, e, &mut self.mapper);
        if r.is_err() {
            self.mapper.unsplit(splits);
        }
        r.map_err(AxError::from)
    }

    /// Changes the protection of `[addr, addr + len)` (rounded up to pages). Every
    /// page must be covered by an area (else `NoMemory` and nothing changes). The
    /// areas' flags change too, so later faults obey them. A device area stays
    /// device. Areas are split at the ends of the range and merged afterwards.
    pub fn mprotect(&mut self, addr: VirtAddr, len: usize, prot: Prot) -> AxResult {
        let mflags = prot.to_mapping_flags()?;
        let (s, e) = self.window_range(addr, len)?;
        if !self.set.covers(s, e) {
            return Err(ProtectError::Unmapped.into());
        }
        let splits = self
            .mapper
            .split_edges(s, e)
            .map_err(|_| ProtectError::NoMemory)?;
        if accessible(mflags) {
            // Pages that come back (parked, linear, contiguous) are mapped first,
            // so that the change below cannot run out of frames.
            let mut failed = None;
            for (start, area) in self.set.range(s, e) {
                if accessible(area.flags) {
                    continue;
                }
                let (from, to) = (start.max(s), area.end.min(e));
                let flags = mflags | (area.flags - ACCESS_BITS);
                let kind = area.backend.kind();
                if self.mapper.reopen(kind, start, from, to, flags).is_err() {
                    failed = Some(from);
                    break;
                }
            }
            if let Some(stop) = failed {
                for (start, area) in self.set.range(s, stop) {
                    if !accessible(area.flags) {
                        let kind = area.backend.kind();
                        self.mapper.close(kind, start.max(s), area.end.min(stop));
                    }
                }
                self.mapper.unsplit(splits);
                return Err(ProtectError::NoMemory.into());
            }
        }
        self.set
            .protect(s, e, |old| mflags | (old - ACCESS_BITS), &mut self.mapper)
            .map_err(AxError::from)
    }

    /// Maps `[paddr, paddr + len)` (rounded up to pages) into a free range of the
    /// window, `device` memory or normal memory. Returns its address. A range
    /// of at least 2 MiB is placed at an address congruent to `paddr` modulo
    /// 2 MiB when the window has room, and every 2M (1G) block where both
    /// addresses are aligned is mapped with one huge page (a partial
    /// `munmap`/`mprotect` later splits it).
    pub fn map_phys(
        &mut self,
        paddr: PhysAddr,
        len: usize,
        prot: Prot,
        device: bool,
    ) -> AxResult<VirtAddr> {
        let mut mflags = prot.to_mapping_flags()?;
        let size = page_len(len).ok_or(AxError::InvalidInput)?;
        if !paddr.is_aligned_4k()
            || paddr.as_usize().checked_add(size).is_none()
            || !M::paddr_is_valid(paddr.as_usize() + size - 1)
        {
            return Err(AxError::InvalidInput);
        }
        if device {
            mflags |= MappingFlags::DEVICE;
        }
        const M2: usize = 0x20_0000;
        let va = match self.find_free_aligned(size, M2, paddr.as_usize() % M2) {
            Ok(va) if size >= M2 => va,
            _ => self.find_free_aligned(size, PAGE_SIZE_4K, 0)?,
        };
        let off = va.wrapping_sub(paddr.as_usize());
        self.set.insert(
            va,
            va + size,
            mflags,
            Backend::linear(off, true),
            &mut self.mapper,
        )?;
        Ok(VirtAddr::from(va))
    }

    /// What `va` is mapped to.
    pub fn translate(&self, va: VirtAddr) -> AxResult<Translation> {
        match self.mapper.page_table().query(va) {
            Ok((paddr, flags, page_size)) => Ok(Translation {
                paddr,
                flags,
                page_size: page_size.into(),
            }),
            Err(_) => Err(AxError::BadAddress),
        }
    }

    /// Resolves a page fault at `va` for `access`, or says why it cannot.
    ///
    /// Order: area lookup (O(log n); none: [`FaultError::NoArea`]); the area's
    /// current flags must allow the access (else [`FaultError::Denied`]); a page
    /// already mapped with flags allowing the access is a stale TLB entry: it is
    /// flushed and counted in [`MmStats::spurious_faults`]. Otherwise an Alloc
    /// page gets its parked frame back or a new zeroed frame. Linear and
    /// contiguous pages are all mapped while their area allows access, so such
    /// a fault is normally denied by the flag check; a missing page of theirs
    /// (defensive: `mprotect` creates their tables up front) is re-created
    /// here. Allocates nothing but the frame (and page tables), logs at trace
    /// level only.
    pub fn handle_page_fault(&mut self, va: VirtAddr, access: Access) -> Result<(), FaultError> {
        let (start, area) = self.set.find(va.as_usize()).ok_or(FaultError::NoArea)?;
        let (flags, end) = (area.flags, area.end);
        let kind = area.backend.kind();
        if !allows(flags, access) {
            return Err(FaultError::Denied {
                area: info(start, area),
            });
        }
        let page = va.align_down_4k();
        if let Some((_, pte_flags, _)) = self.mapper.query(page) {
            if allows(pte_flags, access) {
                // Stale TLB entry (e.g. after a protect on another path): drop it.
                flush_one::<M>(page);
                self.spurious_faults += 1;
                log::trace!("spurious fault at {va:?}");
                return Ok(());
            }
            return Err(FaultError::Denied {
                area: info(start, area),
            });
        }
        let r = match kind {
            BackendKind::Linear { pa_va_offset, .. } => {
                let pa = PhysAddr::from(page.as_usize().wrapping_sub(pa_va_offset));
                self.mapper.map_one(page, pa, flags)
            }
            BackendKind::Contiguous { start_frame } => {
                let pa = start_frame + (page.as_usize() - start);
                self.mapper.map_one(page, pa, flags)
            }
            BackendKind::Alloc {
                page: PageSize::Size4K,
                ..
            } => self.mapper.fault_alloc(page, flags),
            BackendKind::Alloc { page: size, .. } => {
                self.mapper.fault_huge(page, start, end, size, flags)
            }
        };
        match r {
            Ok(()) => {
                self.faults_handled += 1;
                log::trace!("fault at {va:?} ({access}) mapped");
                Ok(())
            }
            Err(_) => {
                let (start, area) = self.set.find(va.as_usize()).ok_or(FaultError::NoArea)?;
                Err(FaultError::NoMemory {
                    area: info(start, area),
                })
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> MmStats {
        let (huge_faults, huge_fallbacks) = self.mapper.huge_counts();
        MmStats {
            huge_faults,
            huge_fallbacks,
            data_frames: self.mapper.data_frames(),
            page_table_frames: self.mapper.table_frames(),
            faults_handled: self.faults_handled,
            spurious_faults: self.spurious_faults,
            areas: self.set.len(),
        }
    }

    /// All areas, by address.
    pub fn areas(&self) -> impl Iterator<Item = AreaInfo> + '_ {
        self.set.iter().map(|(s, a)| info(s, a))
    }

    /// The area containing `va`.
    pub fn area_at(&self, va: VirtAddr) -> Option<AreaInfo> {
        self.set.find(va.as_usize()).map(|(s, a)| info(s, a))
    }
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> Drop
    for AddrSpace<M, PTE, H>
{
    /// Unmaps every area and frees every data frame; the page table then frees
    /// its tables.
    fn drop(&mut self) {
        self.set.clear(&mut self.mapper);
    }
}
