//! [`Alloc`]: areas of zeroed frames the area owns, allocated at map time
//! ([`Populate::Eager`]) or on first touch ([`Populate::Lazy`]), in 4K or
//! huge pages.
//!
//! Invariants:
//! - a frame of an allocated area is mapped by exactly one PTE or parked
//!   (4K each: a huge leaf is parked as its pieces), never both; the lazy
//!   state is the absence of a PTE;
//! - a failing populate leaves the table and the frame count as they were;
//! - a huge block is mapped by one huge leaf only if it lies inside the area
//!   and nothing of it is mapped or parked; otherwise (or with no aligned run
//!   free: a fallback) its pages get 4K frames;
//! - split 2M blocks of a 2M area may be collapsed again
//!   ([`Backend::collapse_2m`]): each block that was one huge page is one
//!   aligned run of frames the area owns.

use memory_addr::{PAGE_SIZE_4K, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::LeafSize;

use crate::area::{AreaKind, Populate};
use crate::backend::{Backend, Fault, FaultAction, FaultRefusal, Pages, Release};
use crate::error::NoMemory;
use crate::flags::accessible;
use crate::invariant::invariant;

/// Zeroed frames owned by the area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alloc {
    /// Allocated at map time or on first touch.
    pub populate: Populate,
    /// The page size asked for: `Size4K`, or `Size2M`/`Size1G` for a huge
    /// area (frames are aligned runs of that size where available).
    pub page: LeafSize,
}

/// Eager map with 4K pages: a zeroed frame per page. Undoes everything on
/// failure.
fn populate<M, PTE, H>(
    pages: &mut Pages<'_, M, PTE, H>,
    start: usize,
    end: usize,
    flags: MappingFlags,
) -> Result<(), NoMemory>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    let mut va = start;
    while va < end {
        if let Err(e) = populate_4k(pages, va, flags) {
            pages.unmap(start, va, |_| Release::Free);
            return Err(e);
        }
        va += PAGE_SIZE_4K;
    }
    Ok(())
}

fn populate_4k<M, PTE, H>(
    pages: &mut Pages<'_, M, PTE, H>,
    va: usize,
    flags: MappingFlags,
) -> Result<(), NoMemory>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    let pa = pages.alloc_frames(1, PAGE_SIZE_4K).ok_or(NoMemory)?;
    pages
        .map(va, pa, LeafSize::Size4K, flags)
        .inspect_err(|_| pages.free_unmapped(pa, 1))
}

/// Eager map with huge pages: one pooled aligned run per block, or 4K frames
/// for a block the pool has no run for (a fallback). Undoes everything on
/// failure.
fn populate_huge<M, PTE, H>(
    pages: &mut Pages<'_, M, PTE, H>,
    start: usize,
    end: usize,
    flags: MappingFlags,
    page: LeafSize,
) -> Result<(), NoMemory>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    let bytes = page.bytes();
    let mut va = start;
    // Counted only if the whole populate succeeds (a failed one is undone).
    let mut fallbacks = 0;
    let mut failure = None;
    'blocks: while va < end {
        if let Some(pa) = pages.pooled_run(page) {
            if let Err(e) = pages.map(va, pa, page, flags) {
                pages.free_unmapped(pa, bytes / PAGE_SIZE_4K);
                failure = Some(e);
                break;
            }
            va += bytes;
            continue;
        }
        fallbacks += 1;
        for _ in 0..bytes / PAGE_SIZE_4K {
            if let Err(e) = populate_4k(pages, va, flags) {
                failure = Some(e);
                break 'blocks;
            }
            va += PAGE_SIZE_4K;
        }
    }
    match failure {
        None => {
            pages.count_fallbacks(fallbacks);
            Ok(())
        }
        Some(e) => {
            pages.unmap(start, va, |_| Release::Free);
            Err(e)
        }
    }
}

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> Backend<M, PTE, H> for Alloc
{
    fn map(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        match (self.populate, self.page) {
            (Populate::Lazy, _) => Ok(()),
            _ if !accessible(flags) => Ok(()),
            (Populate::Eager, LeafSize::Size4K) => populate(pages, start, end, flags),
            (Populate::Eager, page) => populate_huge(pages, start, end, flags, page),
        }
    }

    fn unmap(&mut self, start: usize, end: usize, pages: &mut Pages<'_, M, PTE, H>) {
        pages.unmap(start, end, |_| Release::Free);
    }

    /// Present pages get the new flags, or are parked (4K each) when the
    /// flags allow no access (the data survives `PROT_NONE -> RW`).
    fn protect(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) {
        if !accessible(flags) {
            pages.park(start, end);
            return;
        }
        invariant!(
            !pages.has_parked(start, end),
            "parked pages in [{start:#x}, {end:#x}) not re-opened"
        );
        pages.protect(start, end, flags);
    }

    /// A parked frame comes back; otherwise the page needs a zeroed frame: a
    /// whole huge page if the aligned block around it is free, else 4K.
    #[inline]
    fn fault(
        &self,
        f: &Fault,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal> {
        if let Some(r) = pages.unpark(f.page(), f.flags) {
            r?;
            return Ok(FaultAction::Mapped);
        }
        let (base, size) = match self.page {
            LeafSize::Size4K => (f.page(), LeafSize::Size4K),
            size => {
                let base = f.page() & !(size.bytes() - 1);
                if pages.block_is_free(base, size, f.start, f.end) {
                    (base, size)
                } else {
                    (f.page(), LeafSize::Size4K)
                }
            }
        };
        Ok(FaultAction::Fresh { base, size })
    }

    fn split(&mut self, _start: usize, _at: usize, _end: usize) -> Self {
        *self
    }

    fn try_merge(&mut self, _start: usize, _mid: usize, next: &Self, _end: usize) -> bool {
        next == self
    }

    fn extend(&self, _start: usize, _end: usize, _new_end: usize) -> Option<Self> {
        Some(*self)
    }

    fn describe(&self, _start: usize) -> AreaKind {
        match self.page {
            LeafSize::Size4K => AreaKind::Alloc {
                populate: self.populate,
            },
            page_size => AreaKind::HugeAlloc {
                populate: self.populate,
                page_size,
            },
        }
    }

    fn collapse_2m(&self) -> bool {
        self.page == LeafSize::Size2M
    }

    fn zero_fill_4k(&self) -> bool {
        self.page == LeafSize::Size4K
    }
}
