//! [`Contiguous`]: one physically contiguous run of zeroed frames owned by
//! the area (`MmapFlags::CONTIGUOUS`), mapped at map time: page `va` maps
//! `start_frame + (va - area start)`.
//!
//! Invariants: the run is owned by the area whether its pages are mapped or
//! not (`PROT_NONE` removes the translations only); a split gives the right
//! part the frame at its own start; unmapping part of the area frees exactly
//! the frames of that part, after the TLB flush.

use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::LeafSize;

use crate::area::AreaKind;
use crate::backend::{Backend, Fault, FaultAction, FaultRefusal, Pages, Release};
use crate::error::NoMemory;

/// A run of frames owned by the area, mapped linearly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contiguous {
    /// The frame of the area's first page.
    pub start_frame: PhysAddr,
}

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> Backend<M, PTE, H> for Contiguous
{
    fn map(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        pages.map_linear(start, end, self.start_frame, flags, false)
    }

    /// `[start, end)` is the whole area (the set split it first).
    fn unmap(&mut self, start: usize, end: usize, pages: &mut Pages<'_, M, PTE, H>) {
        pages.unmap(start, end, |_| Release::Keep);
        pages.free_after_flush(self.start_frame, (end - start) / PAGE_SIZE_4K);
    }

    fn protect(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) {
        pages.protect_or_drop(start, end, flags);
    }

    fn reopen(
        &mut self,
        area_start: usize,
        s: usize,
        e: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        pages.map_linear(s, e, self.start_frame + (s - area_start), flags, false)
    }

    fn close(&mut self, s: usize, e: usize, pages: &mut Pages<'_, M, PTE, H>) {
        pages.unmap(s, e, |_| Release::Keep);
    }

    /// As for linear areas: a missing page (defensive) is mapped again.
    fn fault(
        &self,
        f: &Fault,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal> {
        let pa = self.start_frame + (f.page() - f.start);
        pages.map(f.page(), pa, LeafSize::Size4K, f.flags)?;
        Ok(FaultAction::Mapped)
    }

    fn split(&mut self, start: usize, at: usize, _end: usize) -> Self {
        Contiguous {
            start_frame: self.start_frame + (at - start),
        }
    }

    fn try_merge(&mut self, start: usize, mid: usize, next: &Self, _end: usize) -> bool {
        self.start_frame.as_usize().checked_add(mid - start) == Some(next.start_frame.as_usize())
    }

    fn describe(&self, _start: usize) -> AreaKind {
        AreaKind::Contiguous {
            start_frame: self.start_frame,
        }
    }
}
