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
use crate::area::Populate;
use crate::backend::{Backend, BackendKind, Mapper};
use crate::error::{NoMemory, Uncovered};
use crate::flags::{ACCESS_BITS, MmapFlags, Prot, accessible};
use crate::invariant::infallible;

/// The largest [`MmapFlags::CONTIGUOUS`] mapping, in bytes (64 MiB).
pub const CONTIGUOUS_MAX: usize = 64 << 20;

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler>
    AddrSpace<M, PTE, H>
{
    /// Maps `len` bytes (rounded up to pages) of zeroed memory with `prot`.
    /// See the crate docs for the placement rules and errors.
    pub fn mmap(
        &mut self,
        addr: Option<VirtAddr>,
        len: usize,
        prot: Prot,
        flags: MmapFlags,
    ) -> AxResult<VirtAddr> {
        self.batched(|s| s.mmap_op(addr, len, prot, flags))
    }

    /// [`Self::mmap`] inside its operation batch.
    fn mmap_op(
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
        let populate = !contiguous && flags.contains(MmapFlags::POPULATE) && accessible(mflags);
        // 1. Data frames, while the old mapping is intact.
        let (backend, run) = if contiguous {
            let run = self.mapper.get_mut().alloc_contiguous(pages)?;
            (Backend::contiguous(run), Some(run))
        } else if populate {
            if huge {
                self.mapper.get_mut().fill_huge_pool(size / align, page)?;
            } else {
                self.mapper.get_mut().fill_pool(pages)?;
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
            if (populate || contiguous) && accessible(mflags) {
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
        r.map(|()| VirtAddr::from(start)).map_err(AxError::from)
    }

    /// The lowest free range of `size` bytes in the window whose start is
    /// `phase` modulo `align` (a power of two).
    fn find_free_aligned(&mut self, size: usize, align: usize, phase: usize) -> AxResult<usize> {
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
    fn munmap_op(&mut self, addr: VirtAddr, len: usize) -> AxResult {
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
                if self
                    .mapper
                    .get_mut()
                    .reopen(kind, start, from, to, flags)
                    .is_err()
                {
                    failed = Some(from);
                    break;
                }
            }
            if let Some(stop) = failed {
                for (start, area) in self.set.range(s, stop) {
                    if !accessible(area.flags) {
                        let kind = area.backend.kind();
                        self.mapper
                            .get_mut()
                            .close(kind, start.max(s), area.end.min(stop));
                    }
                }
                self.mapper.get_mut().unsplit(splits);
                return Err(NoMemory.into());
            }
        }
        self.mapper.get_mut().huge_protected = false;
        // Coverage was checked above: this cannot fail.
        let r = self.set.protect(
            s,
            e,
            |old| mflags | (old - ACCESS_BITS),
            self.mapper.get_mut(),
        );
        infallible(r, "protect of the areas", s, e);
        // Candidates: a 2M area got new accessible flags, or this call split a
        // huge leaf at an edge (even when no flags changed).
        let split = splits.iter().any(Option::is_some);
        if core::mem::take(&mut self.mapper.get_mut().huge_protected)
            || (split && accessible(mflags))
        {
            self.collapse_huge(s, e);
        }
        Ok(())
    }

    /// After an `mprotect` of `[s, e)` that gave a 2M allocated area accessible
    /// flags (the backend says so through `Mapper::huge_protected`) or split a
    /// huge leaf at an edge: the 2M blocks it touched that lie whole
    /// in one huge (2M) allocated area and were split into 4K leaves become 2M
    /// pages again where their 512 pages agree (same flags, the original run of
    /// frames). Huge pages are not left split after a protection round trip.
    fn collapse_huge(&mut self, s: usize, e: usize) {
        const M2: usize = LeafSize::Size2M.bytes();
        let (lo, hi) = (s & !(M2 - 1), e.next_multiple_of(M2));
        // A block touched by [s, e) that lies whole in an area makes that area
        // intersect [s, e): only those areas are visited.
        for (start, area) in self.set.range(s, e) {
            let BackendKind::Alloc {
                page: LeafSize::Size2M,
                ..
            } = area.backend.kind()
            else {
                continue;
            };
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
            Backend::linear(va_minus_pa, true),
            self.mapper.get_mut(),
        )?;
        Ok(VirtAddr::from(va))
    }
}
