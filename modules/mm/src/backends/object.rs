//! [`ObjectMapping`]: an area over the pages of a [`MemObject`], shared
//! (`MAP_SHARED`: every mapping sees every write) or private (`MAP_PRIVATE`:
//! reads share the object's page, the first write copies it).
//!
//! Page `va` of the area maps object page `first + (va - start) / 4K`,
//! where `first = offset / 4K` is the object page of the area's first page;
//! a split gives the right part its own first page, and two parts merge only
//! if they map the same object at consecutive pages with the same sharing.
//! The state is kept in pages, not bytes, so that it cannot overflow: a
//! mapping whose byte offsets run past `usize::MAX` (an offset near the top
//! of the range, or the right part of a split of one) maps pages whose
//! index is past the end of every object, and faults there are
//! [`FaultRefusal::PastEnd`] (a byte offset would wrap to the object's first
//! pages in a build without overflow checks, and panic in one with them).
//! Pages are 4K and lazy: a fault maps the object's frame (made resident
//! through the pager on first use), or a private copy.
//!
//! # Invariants
//! - Every object page mapped here is counted by the object once per PTE
//!   (`maps`; `wmaps` for a writable PTE) and here in `shared_frames`.
//! - A shared page is mapped writable only after a write fault made it
//!   dirty (`MemObject::make_writable`); every other fault maps it
//!   read-only, so the object's dirty state misses no write. `msync` makes
//!   the writable PTEs of its range read-only again and flushes them on
//!   every CPU *before* it writes the pages back.
//! - A private mapping maps an object page read-only, always: the first
//!   write to it replaces the PTE by a private copy (copy-on-write, one entry
//!   write followed by a TLB shootdown before the fault returns, so no CPU
//!   keeps reading the object's frame through a stale entry), or takes the
//!   frame without a copy when nobody else can ever see it (the area holds
//!   the only reference to the object and the page has no other mapping).
//!   Private copies are owned by the area (`data_frames`), parked under
//!   `PROT_NONE` like allocated pages, and freed after the flush when
//!   unmapped.
//! - A page past the object's end is never mapped: a fault there is
//!   [`FaultRefusal::PastEnd`] (Linux's `SIGBUS`).
//! - Object frames are never freed here: the object frees them when it is
//!   dropped, which is after the last area holding it was removed and that
//!   operation's TLB flush (the address space drops removed backends only
//!   then).

use alloc::sync::Arc;

use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::LeafSize;

use crate::area::AreaKind;
use crate::backend::{Backend, Fault, FaultAction, FaultRefusal, Mapped, Pages, Release};
use crate::error::NoMemory;
use crate::flags::accessible;
use crate::object::{MemObject, ObjectError};

/// The pages of a memory object, shared or private.
pub struct ObjectMapping<H: PagingHandler + 'static> {
    object: Arc<MemObject<H>>,
    /// The object page of the area's first page (its byte offset / 4K).
    first: usize,
    shared: bool,
}

impl<H: PagingHandler + 'static> ObjectMapping<H> {
    /// A mapping of `object` from byte `offset` (4K aligned), shared or
    /// private.
    pub fn new(object: Arc<MemObject<H>>, offset: usize, shared: bool) -> Self {
        Self {
            object,
            first: offset / PAGE_SIZE_4K,
            shared,
        }
    }

    /// The object.
    pub fn object(&self) -> &Arc<MemObject<H>> {
        &self.object
    }

    /// The object page mapped at `va` of the area starting at `start`.
    #[inline]
    fn index(&self, start: usize, va: usize) -> usize {
        // Each term is at most `usize::MAX / 4K`, so this cannot overflow
        // for a mapping as made; saturating keeps an absurd one (grown and
        // shrunk from the front ~2^52 times) past the end of every object.
        self.first.saturating_add((va - start) / PAGE_SIZE_4K)
    }
}

/// The refusal for an object's error.
fn refusal(e: ObjectError) -> FaultRefusal {
    match e {
        ObjectError::PastEnd => FaultRefusal::PastEnd,
        ObjectError::NoMemory => FaultRefusal::NoMemory,
        ObjectError::Io => FaultRefusal::Io,
    }
}

impl<H: PagingHandler + 'static> ObjectMapping<H> {
    /// A private copy of object page `index` in a new frame owned by the
    /// area (counted); `None` if no frame is free or the object failed.
    fn copy<M, PTE>(
        &self,
        index: usize,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<PhysAddr, FaultRefusal>
    where
        M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
        PTE: GenericPTE + 'static,
    {
        let pa = pages
            .alloc_frames(1, PAGE_SIZE_4K)
            .ok_or(FaultRefusal::NoMemory)?;
        // SAFETY: `pa` is a frame just allocated for this area and not
        // mapped anywhere yet (and so not one of the object's).
        if let Err(e) = unsafe { self.object.copy_page(index, pa) } {
            pages.free_unmapped(pa, 1);
            return Err(refusal(e));
        }
        Ok(pa)
    }
}

impl<M, PTE, H> Backend<M, PTE, H> for ObjectMapping<H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    /// Nothing is mapped now: pages come in on faults.
    fn map(
        &mut self,
        _start: usize,
        _end: usize,
        _flags: MappingFlags,
        _pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        Ok(())
    }

    /// `[start, end)` is the whole area (the set split it first).
    fn unmap(&mut self, start: usize, end: usize, pages: &mut Pages<'_, M, PTE, H>) {
        let mut shared = 0isize;
        let object = &self.object;
        pages.unmap(start, end, |r| {
            let index = self.index(start, r.va);
            match r.flags {
                Some(flags) if object.is_frame(index, r.frame) => {
                    object.unmap_page(index, r.frame, flags.contains(MappingFlags::WRITE));
                    shared += 1;
                    Release::Keep
                }
                // A private copy (mapped or parked).
                _ => Release::Free,
            }
        });
        pages.count_shared(-shared);
    }

    /// Object pages stay mapped read-only (a write faults again: dirty
    /// tracking, copy-on-write) or, without access, are unmapped (the
    /// object keeps them); private copies get the flags, or are parked.
    fn protect(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) {
        let mut found: alloc::vec::Vec<(usize, PhysAddr, MappingFlags)> = alloc::vec::Vec::new();
        pages.leaves(start, end, |va, pa, _, f| found.push((va, pa, f)));
        let ro = flags - MappingFlags::WRITE;
        for (va, pa, old) in found {
            let index = self.index(start, va);
            if self.object.is_frame(index, pa) {
                let was_writable = old.contains(MappingFlags::WRITE);
                if accessible(flags) {
                    pages.protect(va, va + PAGE_SIZE_4K, ro);
                    if was_writable {
                        self.object.make_readonly(index);
                    }
                } else {
                    pages.unmap_page(va);
                    self.object.unmap_page(index, pa, was_writable);
                    pages.count_shared(-1);
                }
            } else if accessible(flags) {
                pages.protect(va, va + PAGE_SIZE_4K, flags);
            } else {
                pages.park(va, va + PAGE_SIZE_4K);
            }
        }
    }

    fn fault(
        &self,
        f: &Fault,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal> {
        let page = f.page();
        if let Some(r) = pages.unpark(page, f.flags) {
            r?;
            return Ok(FaultAction::Mapped);
        }
        let index = self.index(f.start, page);
        // Past the end is past the end, whatever else would fail.
        if index >= self.object.size().div_ceil(PAGE_SIZE_4K) {
            return Err(FaultRefusal::PastEnd);
        }
        let write = f.access == hal::Access::Write;
        if write && !self.shared {
            // A private page's first touch is a write: its own copy at once.
            let pa = self.copy(index, pages)?;
            if let Err(e) = pages.map(page, pa, LeafSize::Size4K, f.flags) {
                pages.free_unmapped(pa, 1);
                return Err(e.into());
            }
            return Ok(FaultAction::Mapped);
        }
        // Mapped read-only first; a write makes it writable (and dirty) only
        // once the PTE is there, so a failed fault leaves the page clean.
        let pa = self.object.map_page(index, false).map_err(refusal)?;
        let flags = if write {
            f.flags
        } else {
            f.flags - MappingFlags::WRITE
        };
        if let Err(e) = pages.map(page, pa, LeafSize::Size4K, flags) {
            self.object.unmap_page(index, pa, false);
            return Err(e.into());
        }
        if write {
            self.object.make_writable(index);
        }
        pages.count_shared(1);
        Ok(FaultAction::Mapped)
    }

    /// A write to a page mapped read-only: a shared page becomes dirty and
    /// writable; a private mapping's object page is copied (or taken, if
    /// nobody else can see it); a private copy (read-only after an
    /// `mprotect`) becomes writable.
    fn fault_mapped(
        &self,
        f: &Fault,
        mapped: Mapped,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal> {
        if f.access != hal::Access::Write || mapped.size != LeafSize::Size4K {
            return Err(FaultRefusal::Denied);
        }
        let page = f.page();
        let index = self.index(f.start, page);
        let frame = PhysAddr::from(mapped.frame.as_usize() & !(PAGE_SIZE_4K - 1));
        if self.shared {
            self.object.make_writable(index);
            pages.protect(page, page + PAGE_SIZE_4K, f.flags);
        } else if !self.object.is_frame(index, frame) {
            pages.protect(page, page + PAGE_SIZE_4K, f.flags);
        } else if Arc::strong_count(&self.object) == 1 && self.object.take_sole(index, frame) {
            // Only this area holds the object, and only this PTE the page:
            // nobody can see the page any more, so it becomes the area's.
            pages.adopt(1);
            pages.count_shared(-1);
            pages.protect(page, page + PAGE_SIZE_4K, f.flags);
        } else {
            let pa = self.copy(index, pages)?;
            let old = pages.replace(page, pa, f.flags);
            self.object.unmap_page(index, old, false);
            pages.count_shared(-1);
        }
        Ok(FaultAction::Mapped)
    }

    fn split(&mut self, start: usize, at: usize, _end: usize) -> Self {
        Self {
            object: self.object.clone(),
            first: self.index(start, at),
            shared: self.shared,
        }
    }

    fn try_merge(&mut self, start: usize, mid: usize, next: &Self, _end: usize) -> bool {
        Arc::ptr_eq(&self.object, &next.object)
            && self.shared == next.shared
            && self.index(start, mid) == next.first
    }

    fn extend(&self, start: usize, end: usize, _new_end: usize) -> Option<Self> {
        Some(Self {
            object: self.object.clone(),
            first: self.index(start, end),
            shared: self.shared,
        })
    }

    fn sync(
        &mut self,
        area_start: usize,
        s: usize,
        e: usize,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<usize, ObjectError> {
        if !self.shared {
            return Ok(0);
        }
        // 1. Writable PTEs of the range become read-only (a later write
        //    faults and dirties the page again), 2. on every CPU, 3. then the
        //    dirty pages are written back.
        let mut writable: alloc::vec::Vec<(usize, MappingFlags)> = alloc::vec::Vec::new();
        pages.leaves(s, e, |va, _, _, f| {
            if f.contains(MappingFlags::WRITE) {
                writable.push((va, f));
            }
        });
        for &(va, f) in &writable {
            pages.protect(va, va + PAGE_SIZE_4K, f - MappingFlags::WRITE);
            self.object.make_readonly(self.index(area_start, va));
        }
        if !writable.is_empty() {
            pages.flush();
        }
        let first = self.index(area_start, s);
        self.object.sync(first, first + (e - s) / PAGE_SIZE_4K)
    }

    fn describe(&self, _start: usize) -> AreaKind {
        AreaKind::Object {
            shared: self.shared,
            // Past `usize::MAX` only for a part of a mapping that maps
            // nothing (every page is past the end of the object).
            offset: self.first.saturating_mul(PAGE_SIZE_4K),
        }
    }
}
