//! Address spaces: areas over a page table, linear and allocated backends,
//! page-fault handling, and the `mmap`/`munmap`/`mprotect` semantics apps see.
//!
//! An [`AddrSpace`] is a `memory_set::MemorySet` of areas, each with a
//! [`Backend`], over a [`Mapper`] (the hardware `PageTable64` plus the state a page
//! table cannot express), a *window* of virtual addresses that the app calls may
//! touch, and counters.
//!
//! # Backends
//! - **Linear** (`pa = va - pa_va_offset`): kernel image, physical memory, MMIO,
//!   and [`AddrSpace::map_phys`]. Huge pages only for kernel areas
//!   ([`AddrSpace::map_linear`] with `huge`, [`AddrSpace::map_kernel`]); app
//!   areas use 4K pages so a partial unmap/protect never meets a huge page.
//! - **Alloc** with [`Populate::Eager`] (a zeroed frame per page at map time) or
//!   [`Populate::Lazy`] (nothing at map time; a zeroed frame on first touch).
//!   The lazy state is the absence of a PTE, never a "paddr 0, no flags" entry.
//!
//! # Invariants
//! 1. Every present PTE lies inside exactly one area, and its flags are that
//!    area's flags (no PTE is ever written with flags lacking READ, WRITE and
//!    EXECUTE).
//! 2. A frame of an Alloc area is either mapped by exactly one PTE, or *parked*
//!    (the area's flags allow no access: its PTE is removed and the frame is kept
//!    in the mapper so the data survives `PROT_NONE -> RW`), never both.
//!    [`MmStats::data_frames`] counts both.
//! 3. Areas in the window were created by the app calls; kernel areas lie outside
//!    it, so app calls (checked against the window) cannot touch them. (The
//!    kernel calls `map_linear`/`map_kernel` do not check the window: the caller
//!    keeps its areas out of it.)
//! 4. Page tables below the root that become empty after an unmap are freed.
//!
//! # Flush and free protocol
//! Page-table changes go through `PageTable64`'s cursor, which records the pages
//! it changed and flushes their TLB entries (or the whole TLB past 32 pages)
//! through `PagingMetaData::flush_tlb` when it is dropped. A frame is freed only
//! after that flush: unmapping takes up to 32 pages through one cursor, drops it
//! (flush), then frees their frames. Empty page tables are unhooked from their
//! parent, the whole TLB is flushed (paging-structure caches included), then the
//! tables are freed. Spurious faults flush the faulting page. Flushes are local
//! to the calling CPU; there is no shootdown (single CPU). On the host (tests)
//! no flush instruction runs, exactly as in the cursor.
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
//! | [`AddrSpace::mmap`] | `InvalidInput` | len 0 or overflowing, bad `prot`, FIXED* without or with unaligned `addr`, FIXED* range not inside the window |
//! | | `AlreadyExists` | FIXED_NOREPLACE and the range overlaps an area |
//! | | `NoMemory` | no free range in the window; POPULATE and out of frames (rolled back) |
//! | [`AddrSpace::munmap`] | `InvalidInput` | unaligned addr, len 0 or overflowing, range not inside the window |
//! | [`AddrSpace::mprotect`] | `InvalidInput` | unaligned addr, len 0 or overflowing, bad `prot`, range not inside the window |
//! | | `NoMemory` | a page of the range is not covered by an area (nothing changed) |
//! | [`AddrSpace::map_phys`] | `InvalidInput` | unaligned `paddr`, len 0, overflow or invalid physical range, bad `prot` |
//! | | `NoMemory` | no free range in the window, or no page-table frame |
//! | [`AddrSpace::translate`] | `BadAddress` | nothing mapped at `va` |
//! | [`AddrSpace::handle_page_fault`] | [`FaultError::NoArea`] (`BadAddress`) | no area covers `va` |
//! | | [`FaultError::Denied`] (`PermissionDenied`) | the area's current flags forbid the access (or the PTE disagrees with them) |
//! | | [`FaultError::NoMemory`] (`NoMemory`) | no frame for the page or its tables (nothing leaked) |
//!
//! Every error leaves the areas, the page table and the frame count as they were,
//! except `mmap(FIXED | POPULATE)`: all data frames are allocated before the old
//! mapping is removed, so running out of *data* frames leaves the old mapping
//! intact; if a *page-table* frame then runs out, the old mapping is already gone
//! and the range is left unmapped.
#![no_std]

extern crate alloc;

mod area;
pub mod audit;
mod backend;
mod error;
mod flags;

pub use area::{AreaInfo, AreaKind, Populate};
pub use backend::{Backend, BackendKind, Mapper};
pub use error::{FaultError, MapError};
pub use flags::{MmapFlags, Prot};

use axerrno::{AxError, AxResult};
use hal::{Access, MemKind, MemRegion};
use memory_addr::{AddrRange, MemoryAddr, PAGE_SIZE_4K, PhysAddr, VirtAddr};
use memory_set::{MemoryArea, MemorySet};
pub use page_table_entry::{GenericPTE, MappingFlags};
pub use page_table_multiarch::{PageSize, PagingHandler, PagingMetaData};

use backend::{Slot, flush_one};
use flags::{ACCESS_BITS, accessible, allows};

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
    /// Number of areas.
    pub areas: usize,
}

/// An address space: areas, their page table, the app window and counters.
pub struct AddrSpace<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> {
    set: MemorySet<Backend<M, PTE, H>>,
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

fn info<M, PTE, H>(area: &MemoryArea<Backend<M, PTE, H>>) -> AreaInfo
where
    M: PagingMetaData<VirtAddr = VirtAddr>,
    PTE: GenericPTE,
    H: PagingHandler,
{
    AreaInfo {
        start: area.start(),
        end: area.end(),
        flags: area.flags(),
        kind: area.backend().area_kind(),
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
            set: MemorySet::new(),
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

    /// `[addr, addr + len)` rounded to pages, checked to be aligned and inside the window.
    fn window_range(&self, addr: VirtAddr, len: usize) -> AxResult<AddrRange<VirtAddr>> {
        let size = page_len(len).ok_or(AxError::InvalidInput)?;
        if !addr.is_aligned_4k() {
            return Err(AxError::InvalidInput);
        }
        let range = AddrRange::try_from_start_size(addr, size).ok_or(AxError::InvalidInput)?;
        if !self.window.contains_range(range) {
            return Err(AxError::InvalidInput);
        }
        Ok(range)
    }

    /// Inserts an area; on failure converts the backend's recorded reason.
    fn insert(
        &mut self,
        start: VirtAddr,
        size: usize,
        flags: MappingFlags,
        backend: Backend<M, PTE, H>,
    ) -> AxResult {
        let area = MemoryArea::new(start, size, flags, backend);
        let r = self.set.map(area, &mut self.mapper, false);
        let reason = self.mapper.take_error();
        match r {
            Ok(()) => Ok(()),
            Err(memory_set::MappingError::AlreadyExists) => Err(AxError::AlreadyExists),
            Err(memory_set::MappingError::InvalidParam) => Err(AxError::InvalidInput),
            Err(memory_set::MappingError::BadState) => {
                Err(reason.map_or(AxError::BadState, AxError::from))
            }
        }
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
        if self.set.overlaps(range) {
            return Err(AxError::AlreadyExists);
        }
        let off = va.as_usize().wrapping_sub(pa.as_usize());
        log::debug!(
            "map_linear [{:#x}, {:#x}) -> {pa:?} {flags:?}",
            va.as_usize(),
            range.end.as_usize()
        );
        self.insert(va, size, flags, Backend::linear(off, huge))
    }

    /// Maps the physical memory map at `pa + phys_virt_offset`: Text `r-x`,
    /// Rodata `r--`, Data and Free `rw-` (huge pages where aligned), Reserved
    /// `r--`, Mmio `rw-` device. Physical page 0 is never mapped at virtual 0.
    /// On error, the regions mapped by this call are removed again.
    pub fn map_kernel(&mut self, regions: &[MemRegion], phys_virt_offset: usize) -> AxResult {
        let before = self.set.len();
        let mut done: alloc::vec::Vec<(VirtAddr, usize)> = alloc::vec::Vec::new();
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
                for &(va, size) in &done {
                    let _ = self.set.unmap(va, size, &mut self.mapper);
                }
                debug_assert_eq!(self.set.len(), before);
                return Err(e);
            }
            done.push((va, size));
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
        let mflags = prot.to_mapping_flags()?;
        let size = page_len(len).ok_or(AxError::InvalidInput)?;
        let noreplace = flags.contains(MmapFlags::FIXED_NOREPLACE);
        let fixed = noreplace || flags.contains(MmapFlags::FIXED);
        let start = if fixed {
            let addr = addr.ok_or(AxError::InvalidInput)?;
            let range = self.window_range(addr, size)?;
            if noreplace && self.set.overlaps(range) {
                return Err(AxError::AlreadyExists);
            }
            addr
        } else {
            let hint = addr
                .and_then(|a| self.window_range(a, size).ok())
                .filter(|r| !self.set.overlaps(*r));
            match hint {
                Some(r) => r.start,
                None => self.find_free(size)?,
            }
        };
        let populate = flags.contains(MmapFlags::POPULATE) && accessible(mflags);
        let pages = size / PAGE_SIZE_4K;
        if populate {
            // All data frames first: running out changes nothing.
            self.mapper.fill_pool(pages).map_err(AxError::from)?;
        }
        if fixed && self.set.overlaps(AddrRange::from_start_size(start, size)) {
            self.set
                .unmap(start, size, &mut self.mapper)
                .map_err(|_| AxError::BadState)?;
        }
        let kind = if populate {
            Populate::Eager
        } else {
            Populate::Lazy
        };
        let r = self.insert(start, size, mflags, Backend::alloc(kind));
        self.mapper.drain_pool();
        r.map(|()| start)
    }

    /// The lowest free range of `size` bytes in the window.
    fn find_free(&self, size: usize) -> AxResult<VirtAddr> {
        let start = self
            .set
            .find_free_area(self.window.start, size, self.window, PAGE_SIZE_4K)
            .ok_or(AxError::NoMemory)?;
        // memory_set may answer past the window when areas lie above it.
        match start.as_usize().checked_add(size) {
            Some(end) if start >= self.window.start && end <= self.window.end.as_usize() => {
                Ok(start)
            }
            _ => Err(AxError::NoMemory),
        }
    }

    /// Unmaps every page of `[addr, addr + len)` (rounded up to pages); areas are
    /// shrunk or split as needed; holes are not an error.
    pub fn munmap(&mut self, addr: VirtAddr, len: usize) -> AxResult {
        let range = self.window_range(addr, len)?;
        self.set
            .unmap(range.start, range.size(), &mut self.mapper)
            .map_err(|_| AxError::BadState)
    }

    /// Changes the protection of `[addr, addr + len)` (rounded up to pages). Every
    /// page must be covered by an area (else `NoMemory` and nothing changes). The
    /// areas' flags change too, so later faults obey them. A device area stays device.
    pub fn mprotect(&mut self, addr: VirtAddr, len: usize, prot: Prot) -> AxResult {
        let mflags = prot.to_mapping_flags()?;
        let range = self.window_range(addr, len)?;
        let mut at = range.start;
        while at < range.end {
            match self.set.find(at) {
                Some(area) => at = area.end(),
                None => return Err(AxError::NoMemory),
            }
        }
        self.set
            .protect(
                range.start,
                range.size(),
                |old| {
                    let new = mflags | (old - ACCESS_BITS);
                    (new != old).then_some(new)
                },
                &mut self.mapper,
            )
            .map_err(|_| AxError::BadState)
    }

    /// Maps `[paddr, paddr + len)` (rounded up to pages) into a free range of the
    /// window, 4K pages, `device` memory or normal memory. Returns its address.
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
        let va = self.find_free(size)?;
        let off = va.as_usize().wrapping_sub(paddr.as_usize());
        self.insert(va, size, mflags, Backend::linear(off, false))?;
        Ok(va)
    }

    /// What `va` is mapped to.
    pub fn translate(&self, va: VirtAddr) -> AxResult<Translation> {
        match self.mapper.page_table().query(va) {
            Ok((paddr, flags, page_size)) => Ok(Translation {
                paddr,
                flags,
                page_size,
            }),
            Err(_) => Err(AxError::BadAddress),
        }
    }

    /// Resolves a page fault at `va` for `access`, or says why it cannot.
    ///
    /// Order: area lookup (none: [`FaultError::NoArea`]); the area's current
    /// flags must allow the access (else [`FaultError::Denied`]); a page already
    /// mapped with flags allowing the access is a stale TLB entry: it is flushed
    /// and counted in [`MmStats::spurious_faults`]. Otherwise an Alloc page gets
    /// its parked frame back or a new zeroed frame. Linear pages are all mapped
    /// while their area allows access, so a linear fault is normally denied by
    /// the flag check; the one exception is a page whose re-creation by
    /// `mprotect` ran out of table frames, which is re-created here. Allocates
    /// nothing but the frame (and page tables), logs at trace level only.
    pub fn handle_page_fault(&mut self, va: VirtAddr, access: Access) -> Result<(), FaultError> {
        let area = self.set.find(va).ok_or(FaultError::NoArea)?;
        let flags = area.flags();
        let kind = area.backend().kind();
        if !allows(flags, access) {
            return Err(FaultError::Denied { area: info(area) });
        }
        let page = va.align_down_4k();
        if let Slot::Leaf { pte, .. } = self.mapper.lookup(page) {
            if allows(pte.flags(), access) {
                // Stale TLB entry (e.g. after a protect on another path): drop it.
                flush_one::<M>(page);
                self.spurious_faults += 1;
                log::trace!("spurious fault at {va:?}");
                return Ok(());
            }
            return Err(FaultError::Denied { area: info(area) });
        }
        let r = match kind {
            // A linear page removed by PROT_NONE whose re-creation failed, or a
            // linear area created with no access and then opened up.
            BackendKind::Linear { pa_va_offset, .. } => {
                let pa = PhysAddr::from(page.as_usize().wrapping_sub(pa_va_offset));
                self.mapper.map_one(page, pa, flags)
            }
            BackendKind::Alloc { .. } => self.mapper.fault_alloc(page, flags),
        };
        match r {
            Ok(()) => {
                self.faults_handled += 1;
                log::trace!("fault at {va:?} ({access}) mapped");
                Ok(())
            }
            Err(_) => {
                let area = self.set.find(va).map(info).ok_or(FaultError::NoArea)?;
                Err(FaultError::NoMemory { area })
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> MmStats {
        MmStats {
            data_frames: self.mapper.data_frames(),
            page_table_frames: self.mapper.table_frames(),
            faults_handled: self.faults_handled,
            spurious_faults: self.spurious_faults,
            areas: self.set.len(),
        }
    }

    /// All areas, by address.
    pub fn areas(&self) -> impl Iterator<Item = AreaInfo> + '_ {
        self.set.iter().map(info)
    }

    /// The area containing `va`.
    pub fn area_at(&self, va: VirtAddr) -> Option<AreaInfo> {
        self.set.find(va).map(info)
    }
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> Drop
    for AddrSpace<M, PTE, H>
{
    /// Unmaps every area and frees every data frame; the page table then frees
    /// its tables.
    fn drop(&mut self) {
        let _ = self.set.clear(&mut self.mapper);
    }
}
