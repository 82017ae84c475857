//! The app calls: [`AddrSpace::mmap`], [`AddrSpace::munmap`],
//! [`AddrSpace::mprotect`] and [`AddrSpace::map_phys`], all restricted to the
//! app window. Their errors are listed in the crate docs.
//!
//! # Order of work
//! Each call first checks its arguments, then splits huge leaves at the ends of
//! its range (`Mapper::split_edges`), and only then changes the area set; a
//! failure after a split puts the huge leaves back (`Mapper::unsplit`).
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

use axerrno::{AxError, AxResult};
use memory_addr::{MemoryAddr, PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::LeafSize;

use super::{AddrSpace, page_len};
use alloc::sync::Arc;

use crate::area::Populate;
use crate::backend::{Backend, BoxedBackend, Mapper, Pages, boxed};
use crate::backends::{Alloc, Contiguous, Linear, ObjectMapping};
use crate::error::{NoMemory, Uncovered};
use crate::flags::{ACCESS_BITS, MmapFlags, Prot, accessible};
use crate::invariant::infallible;
use crate::object::MemObject;

/// What a new mapping maps.
enum Source<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    /// Zeroed memory: private, or (with `SHARED`) a new anonymous object.
    Anonymous,
    /// An object from a byte offset.
    Object(Arc<MemObject<H>>, usize),
    /// A backend of the caller's.
    Custom(BoxedBackend<M, PTE, H>),
}

/// The largest [`MmapFlags::CONTIGUOUS`] mapping, in bytes (64 MiB).
pub const CONTIGUOUS_MAX: usize = 64 << 20;

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> AddrSpace<M, PTE, H>
{
    /// Maps `len` bytes (rounded up to pages) of zeroed memory with `prot`:
    /// private (the default, or [`MmapFlags::PRIVATE`]), or shared
    /// ([`MmapFlags::SHARED`]: a new anonymous [`MemObject`] of `len` bytes,
    /// mapped shared; [`AddrSpace::mremap`] keeps it, and only what maps it
    /// sees it). See the crate docs for the placement rules and errors.
    pub fn mmap(
        &mut self,
        addr: Option<VirtAddr>,
        len: usize,
        prot: Prot,
        flags: MmapFlags,
    ) -> AxResult<VirtAddr> {
        self.batched(|s| s.mmap_op(addr, len, prot, flags, Source::Anonymous))
    }

    /// Maps `len` bytes (rounded up to pages) of `object` from byte `offset`
    /// (4K aligned) with `prot`: [`MmapFlags::SHARED`] (every mapping of the
    /// object sees every write; [`AddrSpace::msync`] writes dirty pages
    /// back through its pager) or [`MmapFlags::PRIVATE`] (reads see the
    /// object's pages, the first write to a page copies it). Exactly one of
    /// the two is required. Pages come in on first touch (`POPULATE`
    /// faults them in now, best effort, as Linux does); a page past the
    /// object's end faults with [`FaultError::PastEnd`](crate::FaultError).
    /// Placement and `FIXED*` as for [`AddrSpace::mmap`]; not with
    /// `CONTIGUOUS` or a huge flag.
    pub fn mmap_object(
        &mut self,
        addr: Option<VirtAddr>,
        len: usize,
        prot: Prot,
        flags: MmapFlags,
        object: &Arc<MemObject<H>>,
        offset: usize,
    ) -> AxResult<VirtAddr> {
        if !offset.is_multiple_of(PAGE_SIZE_4K)
            || flags.contains(MmapFlags::SHARED) == flags.contains(MmapFlags::PRIVATE)
            || page_len(len).and_then(|l| offset.checked_add(l)).is_none()
        {
            return Err(AxError::InvalidInput);
        }
        let source = Source::Object(object.clone(), offset);
        self.batched(|s| s.mmap_op(addr, len, prot, flags, source))
    }

    /// Maps `len` bytes (rounded up to pages) with `prot` through a backend
    /// of the caller's (see [`Backend`](crate::Backend)): its `map` is
    /// called for the new area, its `fault` for every fault there.
    /// Placement and `FIXED*` as for [`AddrSpace::mmap`] (`POPULATE`,
    /// `CONTIGUOUS`, `SHARED`, `PRIVATE` and the huge flags are the
    /// backend's business and refused here). With `FIXED` over existing
    /// areas the page-table frames the new area can need (4K pages) are held
    /// before the old mapping goes; if the backend's `map` fails for a
    /// reason of its own after that, the range is left unmapped.
    pub fn mmap_backend(
        &mut self,
        addr: Option<VirtAddr>,
        len: usize,
        prot: Prot,
        flags: MmapFlags,
        backend: impl Backend<M, PTE, H>,
    ) -> AxResult<VirtAddr> {
        let backend = boxed(backend);
        let placement = MmapFlags::FIXED | MmapFlags::FIXED_NOREPLACE;
        if !placement.contains(flags) {
            return Err(AxError::InvalidInput);
        }
        self.batched(|s| s.mmap_op(addr, len, prot, flags, Source::Custom(backend)))
    }

    /// [`Self::mmap`] and its variants inside their operation batch.
    fn mmap_op(
        &mut self,
        addr: Option<VirtAddr>,
        len: usize,
        prot: Prot,
        flags: MmapFlags,
        source: Source<M, PTE, H>,
    ) -> AxResult<VirtAddr> {
        let flags = flags.validate()?;
        let custom = matches!(source, Source::Custom(_));
        let mflags = prot.to_mapping_flags()?;
        let size = page_len(len).ok_or(AxError::InvalidInput)?;
        let page = flags.page_size();
        let huge = page != LeafSize::Size4K;
        let align = page.bytes();
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
        // Anonymous shared memory is an object of its own.
        let source = match source {
            Source::Anonymous if flags.contains(MmapFlags::SHARED) => {
                Source::Object(MemObject::anonymous(size)?, 0)
            }
            source => source,
        };
        let object = !matches!(source, Source::Anonymous);
        if object && (contiguous || huge) {
            return Err(AxError::InvalidInput);
        }
        let populate = !contiguous && flags.contains(MmapFlags::POPULATE) && accessible(mflags);
        // Object pages are faulted in after the mapping is made (best effort).
        let prefault = populate && matches!(source, Source::Object(..));
        let populate = populate && matches!(source, Source::Anonymous);
        // 1. Data frames, while the old mapping is intact.
        let (backend, run): (BoxedBackend<M, PTE, H>, _) = if let Source::Object(o, offset) = source
        {
            let shared = flags.contains(MmapFlags::SHARED);
            (boxed(ObjectMapping::new(o, offset, shared)), None)
        } else if let Source::Custom(b) = source {
            (b, None)
        } else if contiguous {
            let run = self.mapper.get_mut().alloc_contiguous(pages)?;
            (boxed(Contiguous { start_frame: run }), Some(run))
        } else if populate {
            if huge {
                self.mapper.get_mut().fill_huge_pool(size / align, page)?;
            } else {
                self.mapper.get_mut().fill_pool(pages)?;
            }
            let populate = Populate::Eager;
            (boxed(Alloc { populate, page }), None)
        } else {
            let populate = Populate::Lazy;
            (boxed(Alloc { populate, page }), None)
        };
        let release = |m: &mut Mapper<M, PTE, H>| {
            m.drain_pool();
            if let Some(run) = run {
                m.free_contiguous(run, pages);
            }
        };
        // (FIXED_NOREPLACE checked above that nothing is there.)
        if fixed && !noreplace && self.set.overlaps(start, end) {
            // 2. Split the old mapping's huge pages at the ends, and hold the
            //    frames the new mapping's page tables will need.
            let splits = match self.mapper.get_mut().split_edges(start, end) {
                Ok(splits) => splits,
                Err(e) => {
                    release(self.mapper.get_mut());
                    return Err(e.into());
                }
            };
            if (populate || contiguous || custom) && accessible(mflags) {
                // The leaves the new mapping will be made of: 4K if any block
                // of the pool fell back to 4K frames (or for a 4K mapping).
                let leaf = if self.mapper.get_mut().pool_has_4k() {
                    LeafSize::Size4K
                } else {
                    page
                };
                if let Err(e) = self.mapper.get_mut().reserve_tables(start, end, leaf) {
                    self.mapper.get_mut().unsplit(splits);
                    release(self.mapper.get_mut());
                    return Err(e.into());
                }
            }
            // 3. Remove the old mapping (its ends are leaf boundaries now), and
            //    flush it now (this call's one shootdown): the table frames it
            //    freed are among those step 2 counted on.
            self.set.unmap(start, end, self.mapper.get_mut());
            self.mapper.get_mut().flush_batch();
            self.mapper.get_mut().release_reserve();
        }
        // 4. Map: the frames it needs are free now.
        let r = self
            .set
            .insert(start, end, mflags, backend, self.mapper.get_mut());
        if r.is_err() {
            release(self.mapper.get_mut());
        }
        self.mapper.get_mut().drain_pool();
        r.map_err(AxError::from)?;
        if prefault {
            self.prefault(start, end);
        }
        Ok(VirtAddr::from(start))
    }

    /// Faults in the pages of `[start, end)` for reading until one fails
    /// (`MAP_POPULATE` of an object, best effort as in Linux).
    fn prefault(&mut self, start: usize, end: usize) {
        for va in (start..end).step_by(PAGE_SIZE_4K) {
            if self
                .handle_page_fault(VirtAddr::from(va), hal::Access::Read)
                .is_err()
            {
                break;
            }
        }
    }

    /// The lowest free range of `size` bytes in the window whose start is
    /// `phase` modulo `align` (a power of two).
    pub(super) fn find_free_aligned(
        &mut self,
        size: usize,
        align: usize,
        phase: usize,
    ) -> AxResult<usize> {
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
        self.batched(|s| s.munmap_op(addr, len))
    }

    /// [`Self::munmap`] inside its operation batch.
    pub(super) fn munmap_op(&mut self, addr: VirtAddr, len: usize) -> AxResult {
        let (s, e) = self.window_range(addr, len)?;
        self.mapper.get_mut().split_edges(s, e)?;
        self.set.unmap(s, e, self.mapper.get_mut());
        Ok(())
    }

    /// Changes the protection of `[addr, addr + len)` (rounded up to pages). Every
    /// page must be covered by an area (else `NoMemory` and nothing changes). The
    /// areas' flags change too, so later faults obey them. A device area stays
    /// device. Areas are split at the ends of the range and merged afterwards.
    pub fn mprotect(&mut self, addr: VirtAddr, len: usize, prot: Prot) -> AxResult {
        self.batched(|s| s.mprotect_op(addr, len, prot))
    }

    /// [`Self::mprotect`] inside its operation batch.
    fn mprotect_op(&mut self, addr: VirtAddr, len: usize, prot: Prot) -> AxResult {
        let mflags = prot.to_mapping_flags()?;
        let (s, e) = self.window_range(addr, len)?;
        if !self.set.covers(s, e) {
            return Err(Uncovered.into());
        }
        let splits = self.mapper.get_mut().split_edges(s, e)?;
        let update = |old| mflags | (old - ACCESS_BITS);
        // Candidates for a collapse: an area that allows collapses gets new
        // accessible flags, or this call split a huge leaf at an edge (even
        // when no flags changed). Found in the pass below, which visits the
        // areas anyway when the new flags are accessible.
        let split = splits.iter().any(Option::is_some);
        let mut collapse = false;
        if accessible(mflags) {
            // Pages that come back (parked, linear, contiguous) are mapped first,
            // so that the change below cannot run out of frames.
            let mut failed = None;
            let m = self.mapper.get_mut();
            for (start, area) in self.set.range_mut(s, e) {
                collapse |=
                    area.backend.collapse_2m() && (split || update(area.flags) != area.flags);
                if accessible(area.flags) {
                    continue;
                }
                let (from, to) = (start.max(s), area.end.min(e));
                let flags = mflags | (area.flags - ACCESS_BITS);
                if area
                    .backend
                    .reopen(start, from, to, flags, &mut Pages::new(m))
                    .is_err()
                {
                    failed = Some(from);
                    break;
                }
            }
            if let Some(stop) = failed {
                for (start, area) in self.set.range_mut(s, stop) {
                    if !accessible(area.flags) {
                        let (from, to) = (start.max(s), area.end.min(stop));
                        area.backend.close(from, to, &mut Pages::new(m));
                    }
                }
                m.unsplit(splits);
                return Err(NoMemory.into());
            }
        }
        // Coverage was checked above: this cannot fail.
        let r = self.set.protect(s, e, update, self.mapper.get_mut());
        infallible(r, "protect of the areas", s, e);
        if collapse {
            self.collapse_huge(s, e);
        }
        Ok(())
    }

    /// After an `mprotect` of `[s, e)` that gave a 2M allocated area accessible
    /// flags or split a
    /// huge leaf at an edge: the 2M blocks it touched that lie whole
    /// in one area whose backend allows collapses (`Backend::collapse_2m`: 2M allocated areas) and were split into 4K leaves become 2M
    /// pages again where their 512 pages agree (same flags, the original run of
    /// frames). Huge pages are not left split after a protection round trip.
    fn collapse_huge(&mut self, s: usize, e: usize) {
        const M2: usize = LeafSize::Size2M.bytes();
        let (lo, hi) = (s & !(M2 - 1), e.next_multiple_of(M2));
        // A block touched by [s, e) that lies whole in an area makes that area
        // intersect [s, e): only those areas are visited.
        for (start, area) in self.set.range(s, e) {
            if !area.backend.collapse_2m() {
                continue;
            }
            // The whole blocks of this area inside [lo, hi).
            let from = start.max(lo).next_multiple_of(M2);
            let to = area.end.min(hi) & !(M2 - 1);
            if from < to {
                self.huge_collapses += self.mapper.get_mut().collapse_2m(from, to);
            }
        }
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
        self.batched(|s| s.map_phys_op(paddr, len, prot, device))
    }

    /// [`Self::map_phys`] inside its operation batch.
    fn map_phys_op(
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
        const M2: usize = LeafSize::Size2M.bytes();
        let va = match self.find_free_aligned(size, M2, paddr.as_usize() % M2) {
            Ok(va) if size >= M2 => va,
            _ => self.find_free_aligned(size, PAGE_SIZE_4K, 0)?,
        };
        let va_minus_pa = va.wrapping_sub(paddr.as_usize());
        self.set.insert(
            va,
            va + size,
            mflags,
            boxed(Linear::new(va_minus_pa, true)),
            self.mapper.get_mut(),
        )?;
        Ok(VirtAddr::from(va))
    }
}
