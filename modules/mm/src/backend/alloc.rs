//! Allocated areas (4K and huge): the fault path, populate, unmap and protect,
//! and `reopen`/`close`, which map and remove the pages of any kind of area
//! around `PROT_NONE` for `mprotect`.
//!
//! Invariants:
//! - a frame of an allocated area is mapped by exactly one PTE or parked
//!   (4K each: a huge leaf is parked as its pieces), never both;
//! - a data frame is freed only after the cursor that unmapped it was dropped
//!   (TLB flushed): [`Mapper::unmap_alloc`] takes at most `BATCH` leaves per
//!   cursor, drops it, then frees their frames (a huge leaf's whole run);
//! - a failing fault or populate leaves the table and the frame count as they
//!   were (frames it got are freed, parked frames stay parked);
//! - a huge block is mapped by one huge leaf only if it lies inside the area
//!   and nothing of it is mapped or parked; otherwise (or with no aligned run
//!   free: a fallback) its pages get 4K frames.

use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::{Leaf, LeafSize, Size1G, Size2M, Size4K, Slot};

use super::mapper::{Mapper, block_end, zero_frames};
use super::{BackendKind, map_err};
use crate::error::NoMemory;
use crate::flags::accessible;
use crate::invariant::{infallible, invariant};

/// Leaves unmapped per cursor before it is dropped (flushed) and their frames
/// are freed.
const BATCH: usize = 32;

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> Mapper<M, PTE, H> {
    /// Fault path of an allocated area, first step (under the table lock):
    /// re-maps a parked frame at `page` if there is one. `None` if there is
    /// none (the page needs a new frame).
    #[inline]
    pub(crate) fn unpark(
        &mut self,
        page: VirtAddr,
        flags: MappingFlags,
    ) -> Option<Result<(), NoMemory>> {
        let pa = self.parked.remove(&page)?;
        Some(self.map_one(page, pa, flags).inspect_err(|_| {
            self.parked.insert(page, pa);
        }))
    }

    /// Fault path of a huge allocated area `[area_start, area_end)` (under the
    /// table lock): the first address of the aligned `size` block around
    /// `page` if that block lies inside the area and nothing of it is mapped
    /// or parked, so it can get one huge page; `None` if the page must get a
    /// 4K frame (a block that is partly mapped already, e.g. after a split).
    pub(crate) fn huge_block(
        &self,
        page: VirtAddr,
        area_start: usize,
        area_end: usize,
        size: LeafSize,
    ) -> Option<usize> {
        let bytes = size.bytes();
        let base = page.as_usize() & !(bytes - 1);
        let fits = base >= area_start
            && base.checked_add(bytes).is_some_and(|e| e <= area_end)
            && matches!(self.lookup(base), Slot::Hole { size: hole } if hole >= bytes)
            && self
                .parked
                .range(VirtAddr::from(base)..VirtAddr::from(base + bytes))
                .next()
                .is_none();
        fits.then_some(base)
    }

    /// Fault path, last step (under the table lock): maps the zeroed frame
    /// (or aligned run, for a `size` above 4K) `pa`, which the fault allocated
    /// without the lock, at `va` with one `size` leaf, and counts its frames.
    /// `Ok(false)` if something is mapped there meanwhile (another CPU's fault
    /// won the race, or mapped part of the block): nothing was changed and
    /// the caller still owns `pa`. On error nothing was changed either.
    #[inline]
    pub(crate) fn install(
        &mut self,
        va: usize,
        pa: PhysAddr,
        size: LeafSize,
        flags: MappingFlags,
    ) -> Result<bool, NoMemory> {
        // One cursor per arm, dropped (flushed) at the end of its statement.
        let r = match size {
            LeafSize::Size4K => self.pt.cursor().map::<Size4K>(va.into(), pa, flags),
            LeafSize::Size2M => self.pt.cursor().map::<Size2M>(va.into(), pa, flags),
            LeafSize::Size1G => self.pt.cursor().map::<Size1G>(va.into(), pa, flags),
        };
        match r {
            Ok(()) => {
                self.data_frames += size.bytes() / PAGE_SIZE_4K;
                Ok(true)
            }
            Err(paging::MapError::AlreadyMapped) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }

    /// Zeroes the aligned run at `pa` and maps it with one `page`-size leaf
    /// at `va`; on failure frees the run (never mapped) and changes nothing.
    fn map_huge_run(
        &mut self,
        va: usize,
        pa: PhysAddr,
        page: LeafSize,
        flags: MappingFlags,
    ) -> Result<(), NoMemory> {
        let frames = page.bytes() / PAGE_SIZE_4K;
        zero_frames::<H>(pa, frames);
        let mut c = self.pt.cursor();
        let r = match page {
            LeafSize::Size1G => c.map::<Size1G>(va.into(), pa, flags),
            _ => c.map::<Size2M>(va.into(), pa, flags),
        };
        drop(c);
        match r {
            Ok(()) => {
                self.data_frames += frames;
                Ok(())
            }
            Err(e) => {
                H::dealloc_frames(pa, frames);
                Err(map_err(e))
            }
        }
    }

    // ------------------------------------------------------------ alloc

    /// Eager map with 4K pages: a zeroed frame per page. Undoes everything on
    /// failure.
    pub(super) fn populate(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
    ) -> Result<(), NoMemory> {
        if !accessible(flags) {
            return Ok(());
        }
        let mut va = start;
        let mut failure = None;
        while va < end {
            if let Err(e) = self.populate_4k(va, flags) {
                failure = Some(e);
                break;
            }
            va += PAGE_SIZE_4K;
        }
        match failure {
            None => Ok(()),
            Some(e) => {
                self.unmap_alloc(start, va);
                Err(e)
            }
        }
    }

    fn populate_4k(&mut self, va: usize, flags: MappingFlags) -> Result<(), NoMemory> {
        let pa = self.alloc_data_frame().ok_or(NoMemory)?;
        if let Err(e) = self.map_one(va.into(), pa, flags) {
            H::dealloc_frame(pa);
            return Err(e);
        }
        self.data_frames += 1;
        Ok(())
    }

    /// Eager map with huge pages: one pooled aligned run per block, or 4K
    /// frames for a block the pool has no run for (a fallback). Undoes
    /// everything on failure.
    pub(super) fn populate_huge(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        page: LeafSize,
    ) -> Result<(), NoMemory> {
        if !accessible(flags) {
            return Ok(());
        }
        let bytes = page.bytes();
        let mut va = start;
        let mut failure = None;
        // Counted only if the whole populate succeeds (a failed one is undone).
        let mut fallbacks = 0;
        'blocks: while va < end {
            if let Some((pa, frames)) = self.huge_pool.pop() {
                invariant!(
                    frames == bytes / PAGE_SIZE_4K,
                    "a pooled run of {frames} frames for a {bytes:#x}-byte page"
                );
                if let Err(e) = self.map_huge_run(va, pa, page, flags) {
                    failure = Some(e);
                    break;
                }
                va += bytes;
                continue;
            }
            fallbacks += 1;
            for _ in 0..bytes / PAGE_SIZE_4K {
                if let Err(e) = self.populate_4k(va, flags) {
                    failure = Some(e);
                    break 'blocks;
                }
                va += PAGE_SIZE_4K;
            }
        }
        match failure {
            None => {
                self.huge_fallbacks += fallbacks;
                Ok(())
            }
            Some(e) => {
                self.unmap_alloc(start, va);
                Err(e)
            }
        }
    }

    /// Unmaps the allocated pages of `[start, end)` and frees their frames after
    /// the flush (a huge leaf's run at once); frees parked frames; skips holes.
    pub(super) fn unmap_alloc(&mut self, start: usize, end: usize) {
        let (s, e) = (VirtAddr::from(start), VirtAddr::from(end));
        while let Some((&va, &pa)) = self.parked.range(s..e).next() {
            self.parked.remove(&va);
            H::dealloc_frame(pa);
            self.data_frames -= 1;
        }
        let mut va = start;
        while va < end {
            // Up to BATCH whole leaves (edges are leaf boundaries: split_edges).
            let from = va;
            let mut n = 0;
            while va < end && n < BATCH {
                let slot = self.lookup(va);
                n += usize::from(matches!(slot, Slot::Leaf(_)));
                va = block_end(va, slot.size(), end);
            }
            let mut frames = [(PhysAddr::from_usize(0), 0usize); BATCH];
            let mut k = 0;
            {
                let mut c = self.pt.cursor();
                let r = c.unmap_region(from.into(), va - from, |l: Leaf<VirtAddr>| {
                    // The lookups above counted these leaves: at most BATCH.
                    invariant!(
                        k < BATCH,
                        "more leaves in [{from:#x}, {va:#x}) than counted"
                    );
                    frames[k] = (l.paddr, l.size.bytes() / PAGE_SIZE_4K);
                    k += 1;
                });
                infallible(r, "unmap", from, va);
            } // cursor dropped: its flush is done, or left to the operation's batch
            for &(pa, n) in &frames[..k] {
                self.pt.free_after_flush(pa, n);
                self.data_frames -= n;
            }
        }
    }

    /// New flags for an allocated range: present pages get the new flags, or
    /// are parked (4K each) when the flags allow no access. Parked pages are
    /// not re-mapped here: `mprotect` maps them before it changes any area (see
    /// [`Self::reopen`]), so an accessible range has none left (and the fault
    /// path would re-map one it found).
    pub(super) fn protect_alloc(&mut self, start: usize, end: usize, flags: MappingFlags) {
        if !accessible(flags) {
            self.park(start, end);
            return;
        }
        invariant!(
            self.parked
                .range(VirtAddr::from(start)..VirtAddr::from(end))
                .next()
                .is_none(),
            "parked pages in [{start:#x}, {end:#x}) not re-opened"
        );
        let r = self
            .pt
            .cursor()
            .protect_region(start.into(), end - start, flags);
        infallible(r, "protect", start, end);
    }

    // ------------------------------------------------------------ mprotect

    /// Maps, with `flags`, the pages of `[s, e)` of a `PROT_NONE` area starting
    /// at `area_start` (linear and contiguous pages, parked frames of allocated
    /// areas), before `mprotect` changes the area. On failure nothing of
    /// `[s, e)` is mapped (parked frames stay parked).
    pub(crate) fn reopen(
        &mut self,
        kind: BackendKind,
        area_start: usize,
        s: usize,
        e: usize,
        flags: MappingFlags,
    ) -> Result<(), NoMemory> {
        match kind {
            BackendKind::Linear { va_minus_pa, huge } => {
                self.map_linear(s, e, va_minus_pa, flags, huge)
            }
            BackendKind::Contiguous { start_frame } => {
                let va_minus_pa = s.wrapping_sub((start_frame + (s - area_start)).as_usize());
                self.map_linear(s, e, va_minus_pa, flags, false)
            }
            BackendKind::Alloc { .. } => {
                let mut from = VirtAddr::from(s);
                let until = VirtAddr::from(e);
                while let Some((&page, &pa)) = self.parked.range(from..until).next() {
                    if let Err(err) = self.map_one(page, pa, flags) {
                        self.close(kind, s, page.as_usize());
                        return Err(err);
                    }
                    self.parked.remove(&page);
                    from = page + PAGE_SIZE_4K;
                }
                Ok(())
            }
        }
    }

    /// Removes every page of `[s, e)`: linear and contiguous pages are dropped,
    /// allocated pages are parked (4K each; a huge leaf's pieces).
    pub(crate) fn close(&mut self, kind: BackendKind, s: usize, e: usize) {
        match kind {
            BackendKind::Linear { .. } | BackendKind::Contiguous { .. } => self.unmap_linear(s, e),
            BackendKind::Alloc { .. } => self.park(s, e),
        }
    }

    /// Unmaps the allocated pages of `[s, e)` and parks their frames (4K each;
    /// a huge leaf's pieces), keeping their data.
    fn park(&mut self, s: usize, e: usize) {
        let parked = &mut self.parked;
        let r = self.pt.cursor().unmap_region(s.into(), e - s, |l| {
            for i in 0..l.size.bytes() / PAGE_SIZE_4K {
                parked.insert(l.vaddr + i * PAGE_SIZE_4K, l.paddr + i * PAGE_SIZE_4K);
            }
        });
        infallible(r, "unmap", s, e);
    }
}
