//! [`Pages`]: the page-table operations a [`Backend`](super::Backend) may
//! use on its own area's range, with the frame accounting and the
//! flush-before-free rule built in.
//!
//! Invariants kept here:
//! - a frame a backend owns is mapped by exactly one PTE or parked (4K
//!   each: a huge leaf is parked as its pieces), never both;
//! - a frame is freed only after the TLB flush of the operation that
//!   removed its last translation: [`Pages::unmap`] takes at most `BATCH`
//!   leaves per cursor and hands the frames it frees to
//!   `paging::PageTable::free_after_flush` (the operation batch's flush, or
//!   the cursor's own outside a batch);
//! - a failing populate leaves the table and the frame count as they were
//!   (frames it got are freed, parked frames stay parked);
//! - `data_frames` counts the frames areas own: +n when
//!   [`Pages::alloc_frames`] or a fault's fresh frame hands them out, -n
//!   when they are freed; `shared_frames` counts the pages mapped from
//!   objects, as their backends report them ([`Pages::count_shared`]).

use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::{Leaf, LeafSize, Size1G, Size2M, Size4K, Slot};

use super::map_err;
use super::mapper::{Mapper, block_end, zero_frames};
use crate::error::NoMemory;
use crate::flags::accessible;
use crate::invariant::{infallible, invariant};

/// Leaves unmapped per cursor before their frames are handed on.
const BATCH: usize = 32;

/// A leaf (or parked page) [`Pages::unmap`] removed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Removed {
    /// Its first virtual address.
    pub va: usize,
    /// Its first frame.
    pub frame: PhysAddr,
    /// Its size in 4K frames.
    pub frames: usize,
    /// Its PTE flags; `None` for a parked page.
    pub flags: Option<MappingFlags>,
}

/// What [`Pages::unmap`] does with the frame of a removed leaf (or parked
/// page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The area owned it: free it after the TLB flush (and stop counting it
    /// in `data_frames`).
    Free,
    /// Someone else owns it (an object's page, a physical range): keep it.
    Keep,
}

/// The page table of an address space, as a backend sees it during one of
/// its calls: operations on the backend's own range only.
pub struct Pages<
    'a,
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> {
    m: &'a mut Mapper<M, PTE, H>,
}

impl<
    'a,
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> Pages<'a, M, PTE, H>
{
    #[inline(always)]
    pub(crate) fn new(m: &'a mut Mapper<M, PTE, H>) -> Self {
        Self { m }
    }

    /// What is mapped at `va`: frame (of `va`'s page, offset included),
    /// PTE flags, leaf size.
    #[inline]
    pub fn query(&self, va: usize) -> Option<(PhysAddr, MappingFlags, LeafSize)> {
        self.m.query(VirtAddr::from(va))
    }

    /// Whether the aligned `size` block at `base` lies inside `[start, end)`
    /// and nothing of it is mapped or parked (so a fault may fill it with one
    /// huge page: [`super::FaultAction::Fresh`]).
    #[inline]
    pub fn block_is_free(&self, base: usize, size: LeafSize, start: usize, end: usize) -> bool {
        let bytes = size.bytes();
        base >= start
            && base.checked_add(bytes).is_some_and(|e| e <= end)
            && matches!(self.m.lookup(base), Slot::Hole { size: hole } if hole >= bytes)
            && self
                .m
                .parked
                .range(VirtAddr::from(base)..VirtAddr::from(base + bytes))
                .next()
                .is_none()
    }

    /// Maps `[start, end)` to the physical range from `pa`, with 2M/1G
    /// leaves where both addresses are aligned if `huge`. Nothing for flags
    /// without access. On failure nothing is left mapped.
    pub fn map_linear(
        &mut self,
        start: usize,
        end: usize,
        pa: PhysAddr,
        flags: MappingFlags,
        huge: bool,
    ) -> Result<(), NoMemory> {
        if !accessible(flags) {
            return Ok(());
        }
        self.m
            .pt
            .cursor()
            .map_region(start.into(), pa, end - start, flags, huge)
            .map_err(map_err)
    }

    /// Maps the frame (or aligned run) `pa` at `va` with one `size` leaf.
    /// Nothing must be mapped there. On failure nothing changed.
    pub fn map(
        &mut self,
        va: usize,
        pa: PhysAddr,
        size: LeafSize,
        flags: MappingFlags,
    ) -> Result<(), NoMemory> {
        let mut c = self.m.pt.cursor();
        match size {
            LeafSize::Size4K => c.map::<Size4K>(va.into(), pa, flags),
            LeafSize::Size2M => c.map::<Size2M>(va.into(), pa, flags),
            LeafSize::Size1G => c.map::<Size1G>(va.into(), pa, flags),
        }
        .map_err(map_err)
    }

    /// Replaces the 4K page mapped at `va` by the frame `pa` with `flags`
    /// (copy-on-write): the old translation is removed everywhere (a TLB
    /// shootdown when the cursor is flushed) before this returns or, inside
    /// an operation batch, before the batch ends. Returns the old frame.
    pub fn replace(&mut self, va: usize, pa: PhysAddr, flags: MappingFlags) -> PhysAddr {
        // One entry write: the page is never absent, and nothing is
        // allocated (so this cannot run out of frames).
        match self.m.pt.cursor().remap_4k(va.into(), pa, flags) {
            Ok(old) => old,
            Err(e) => crate::invariant::broken(format_args!("replace at {va:#x}: {e:?}")),
        }
    }

    /// Removes every leaf and parked page of `[start, end)`, asking
    /// `release` what becomes of each one's frames; frees the
    /// [`Release::Free`] ones after the flush. Skips holes.
    pub fn unmap(&mut self, start: usize, end: usize, mut release: impl FnMut(Removed) -> Release) {
        let (s, e) = (VirtAddr::from(start), VirtAddr::from(end));
        while let Some((&va, &pa)) = self.m.parked.range(s..e).next() {
            self.m.parked.remove(&va);
            let removed = Removed {
                va: va.as_usize(),
                frame: pa,
                frames: 1,
                flags: None,
            };
            if release(removed) == Release::Free {
                H::dealloc_frame(pa);
                self.m.data_frames -= 1;
            }
        }
        let mut va = start;
        while va < end {
            // Up to BATCH whole leaves (edges are leaf boundaries: split_edges).
            let from = va;
            let mut n = 0;
            while va < end && n < BATCH {
                let slot = self.m.lookup(va);
                n += usize::from(matches!(slot, Slot::Leaf(_)));
                va = block_end(va, slot.size(), end);
            }
            let none = Removed {
                va: 0,
                frame: PhysAddr::from_usize(0),
                frames: 0,
                flags: None,
            };
            let mut leaves = [none; BATCH];
            let mut k = 0;
            {
                let mut c = self.m.pt.cursor();
                let r = c.unmap_region(from.into(), va - from, |l: Leaf<VirtAddr>| {
                    // The lookups above counted these leaves: at most BATCH.
                    invariant!(
                        k < BATCH,
                        "more leaves in [{from:#x}, {va:#x}) than counted"
                    );
                    leaves[k] = Removed {
                        va: l.vaddr.as_usize(),
                        frame: l.paddr,
                        frames: l.size.bytes() / PAGE_SIZE_4K,
                        flags: Some(l.flags),
                    };
                    k += 1;
                });
                infallible(r, "unmap", from, va);
            } // cursor dropped: its flush is done, or left to the operation's batch
            for &r in &leaves[..k] {
                if release(r) == Release::Free {
                    self.free_after_flush(r.frame, r.frames);
                }
            }
        }
    }

    /// Calls `f` with every leaf of `[start, end)` (first address, frame,
    /// size, PTE flags), lowest first. Leaves at the edges lie whole in the
    /// range (the address space split them).
    pub fn leaves(
        &self,
        start: usize,
        end: usize,
        mut f: impl FnMut(usize, PhysAddr, LeafSize, MappingFlags),
    ) {
        let mut va = start;
        while va < end {
            let slot = self.m.lookup(va);
            if let Slot::Leaf(l) = slot {
                f(l.vaddr.as_usize(), l.paddr, l.size, l.flags);
            }
            va = block_end(va, slot.size(), end);
        }
    }

    /// Unmaps the 4K page at `va` (which must be mapped by a 4K leaf) and
    /// returns its frame and flags; the frame stays the caller's (free it
    /// with [`Pages::free_after_flush`] if the area owned it).
    pub fn unmap_page(&mut self, va: usize) -> (PhysAddr, MappingFlags) {
        match self.m.pt.cursor().unmap::<Size4K>(va.into()) {
            Ok(l) => (l.paddr, l.flags),
            Err(e) => crate::invariant::broken(format_args!("unmap of the page at {va:#x}: {e:?}")),
        }
    }

    /// Flushes the operation's TLB changes now (every CPU, when they removed
    /// or weakened translations), e.g. before writing back pages made
    /// read-only, so no CPU can still write them through a stale entry.
    pub fn flush(&mut self) {
        self.m.flush_batch();
    }

    /// Gives the mapped pages of `[start, end)` the flags `flags`
    /// (accessible). Skips holes.
    pub fn protect(&mut self, start: usize, end: usize, flags: MappingFlags) {
        invariant!(
            accessible(flags),
            "protect of [{start:#x}, {end:#x}) to flags without access"
        );
        let r = self
            .m
            .pt
            .cursor()
            .protect_region(start.into(), end - start, flags);
        infallible(r, "protect", start, end);
    }

    /// For ranges whose translations can be re-created (a fixed physical
    /// range, a contiguous run the area keeps): the mapped pages get the
    /// flags, or, for flags without access, their translations are removed
    /// and nothing is freed.
    pub fn protect_or_drop(&mut self, start: usize, end: usize, flags: MappingFlags) {
        if accessible(flags) {
            self.protect(start, end, flags);
        } else {
            self.unmap(start, end, |_| Release::Keep);
        }
    }

    /// Removes the translations of `[start, end)` and keeps their frames
    /// *parked* (4K each; a huge leaf's pieces), with their data, until
    /// [`Pages::unpark`], [`Pages::reopen_parked`] or [`Pages::unmap`].
    pub fn park(&mut self, start: usize, end: usize) {
        let parked = &mut self.m.parked;
        let r = self
            .m
            .pt
            .cursor()
            .unmap_region(start.into(), end - start, |l| {
                for i in 0..l.size.bytes() / PAGE_SIZE_4K {
                    parked.insert(l.vaddr + i * PAGE_SIZE_4K, l.paddr + i * PAGE_SIZE_4K);
                }
            });
        infallible(r, "unmap", start, end);
    }

    /// Maps the frame parked at `page` back with `flags`, if there is one
    /// (`None`: nothing parked there). On failure it stays parked.
    #[inline]
    pub fn unpark(&mut self, page: usize, flags: MappingFlags) -> Option<Result<(), NoMemory>> {
        let page = VirtAddr::from(page);
        if self.m.parked.is_empty() {
            return None;
        }
        let pa = self.m.parked.remove(&page)?;
        Some(self.m.map_one(page, pa, flags).inspect_err(|_| {
            self.m.parked.insert(page, pa);
        }))
    }

    /// Maps every frame parked in `[s, e)` back with `flags`. On failure
    /// nothing of `[s, e)` is mapped (they are parked again).
    pub fn reopen_parked(
        &mut self,
        s: usize,
        e: usize,
        flags: MappingFlags,
    ) -> Result<(), NoMemory> {
        let mut from = VirtAddr::from(s);
        let until = VirtAddr::from(e);
        while let Some((&page, &pa)) = self.m.parked.range(from..until).next() {
            if let Err(err) = self.m.map_one(page, pa, flags) {
                self.park(s, page.as_usize());
                return Err(err);
            }
            self.m.parked.remove(&page);
            from = page + PAGE_SIZE_4K;
        }
        Ok(())
    }

    /// Whether a frame is parked in `[s, e)`.
    pub fn has_parked(&self, s: usize, e: usize) -> bool {
        self.m
            .parked
            .range(VirtAddr::from(s)..VirtAddr::from(e))
            .next()
            .is_some()
    }

    /// `frames` zeroed frames owned by the area: one 4K frame from the
    /// populate pool if the operation filled one, else from the handler
    /// (physically contiguous, aligned to `align`). Counted in `data_frames`.
    pub fn alloc_frames(&mut self, frames: usize, align: usize) -> Option<PhysAddr> {
        let pa = if frames == 1 {
            self.m.pool.pop().or_else(H::alloc_frame)?
        } else {
            H::alloc_frames(frames, align)?
        };
        zero_frames::<H>(pa, frames);
        self.m.data_frames += frames;
        Some(pa)
    }

    /// An aligned run for one huge page, from the huge populate pool if the
    /// operation filled it (`None` when it has none: the caller falls back
    /// to 4K frames). Zeroed, counted.
    pub fn pooled_run(&mut self, size: LeafSize) -> Option<PhysAddr> {
        let (pa, frames) = self.m.huge_pool.pop()?;
        invariant!(
            frames == size.bytes() / PAGE_SIZE_4K,
            "a pooled run of {frames} frames for a {:#x}-byte page",
            size.bytes()
        );
        zero_frames::<H>(pa, frames);
        self.m.data_frames += frames;
        Some(pa)
    }

    /// Frees `frames` frames from `pa` the area owned (no longer mapped):
    /// after the operation's TLB flush, or at once outside a batch (the
    /// cursor that unmapped them flushed already).
    pub fn free_after_flush(&mut self, pa: PhysAddr, frames: usize) {
        self.m.pt.free_after_flush(pa, frames);
        self.m.data_frames -= frames;
    }

    /// Frees frames the area owned that were never mapped (a failed
    /// populate's run): at once.
    pub fn free_unmapped(&mut self, pa: PhysAddr, frames: usize) {
        H::dealloc_frames(pa, frames);
        self.m.data_frames -= frames;
    }

    /// Counts `delta` pages mapped from objects more (or fewer) in this
    /// address space (`MmStats::shared_frames`).
    #[inline]
    pub fn count_shared(&mut self, delta: isize) {
        self.m.shared_frames = self.m.shared_frames.wrapping_add_signed(delta);
    }

    /// Counts `frames` frames the area took over from someone else (an
    /// object's page nobody else holds) as its own (`data_frames`).
    pub fn adopt(&mut self, frames: usize) {
        self.m.data_frames += frames;
    }

    /// Counts huge pages that got 4K frames (`MmStats::huge_fallbacks`).
    pub fn count_fallbacks(&mut self, n: u64) {
        self.m.huge_fallbacks += n;
    }

    /// Where physical memory is mapped (to fill or copy a frame).
    #[inline]
    pub fn phys_to_virt(&self, pa: PhysAddr) -> *mut u8 {
        H::phys_to_virt(pa).as_mut_ptr()
    }
}
