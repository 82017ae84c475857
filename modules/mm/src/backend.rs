//! The mapping backends and the page-table wrapper they operate on.
//!
//! [`Backend`] implements the area set's [`AreaBackend`] with `Ctx = `[`Mapper`].
//! This file is the only one that touches the page table (`paging::PageTable`):
//! the rest of the crate uses the mapper's small internal interface (`query`,
//! `map_one`, `fault_alloc`, `fault_huge`, `split_edges`/`unsplit`,
//! `reserve_tables`, `reopen`/`close`, `table_frames`, the frame pools and
//! contiguous runs, and the per-kind map/unmap/protect of a range), so moving to
//! another page-table layer changes this file only.
//!
//! The mapper owns the hardware page table plus the state the page table
//! cannot express:
//! - `parked`: frames of populated allocated pages whose area is currently
//!   `PROT_NONE`. Their PTE is removed (never a "paddr with no flags" entry) and
//!   the frame is kept here, so the data survives `NONE -> RW`. Parking is per
//!   4K page: a parked huge page is parked as its 4K pieces (and comes back as
//!   4K pages).
//! - `pool` / `huge_pool`: frames (4K) and aligned runs (one huge page each)
//!   allocated before a populating map, so that running out of data frames is
//!   detected before anything is changed.
//! - `reserve`: frames held while a `FIXED` replacement removes the old mapping,
//!   released just before the new mapping allocates its page tables (see
//!   [`Mapper::reserve_tables`]).
//!
//! # Page table and flush
//! The table is a `paging::PageTable`; every change goes through its cursor,
//! which flushes the TLB when dropped and only then frees the table frames it
//! retired (tables emptied by an unmap are reclaimed in the same operation).
//! Data frames removed by an unmap are freed here after the cursor is dropped.
//! On the host (tests, benchmarks: not `target_os = "none"`) the table uses
//! `paging::NoFlush<M>`, so the platform's metadata types, whose flush is a
//! privileged instruction, can be used unchanged; on bare metal it uses `M`.
//!
//! # Huge pages
//! Linear areas with `huge` and allocated areas with a huge page size are
//! mapped with 2M/1G leaves where possible. An operation whose range ends
//! inside a huge leaf first splits that leaf at the range edges
//! ([`Mapper::split_edges`], before the area set changes anything), so the
//! backends' unmap and protect only ever meet whole leaves. The split keeps
//! every translation; the frames of a split huge data page are then freed
//! piecewise (the frame allocator accepts that).
//!
//! All PTE reads made outside the cursor read entries by value through
//! `H::phys_to_virt`; no reference into a live table is kept across calls.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::marker::PhantomData;

use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PageSize, PagingHandler, PagingMetaData};
use paging::{Leaf, LeafSize, Size1G, Size2M, Size4K};

use crate::area::{AreaKind, Populate};
use crate::areas::AreaBackend;
use crate::error::{MapError, SplitError};
use crate::flags::accessible;

const ENTRIES: usize = 512;
/// Leaves unmapped per cursor before it is dropped (flushed) and their frames
/// are freed.
const BATCH: usize = 32;

/// The metadata the page table is instantiated with: `M` on bare metal,
/// `paging::NoFlush<M>` on a hosted build (see the module docs).
#[cfg(target_os = "none")]
pub type Meta<M> = M;
/// The metadata the page table is instantiated with: `M` on bare metal,
/// `paging::NoFlush<M>` on a hosted build (see the module docs).
#[cfg(not(target_os = "none"))]
pub type Meta<M> = paging::NoFlush<M>;

/// The page table of an address space.
pub type PageTable<M, PTE, H> = paging::PageTable<Meta<M>, PTE, H>;

/// Ties a backend to a page-table format without owning one.
type Format<M, PTE, H> = PhantomData<fn() -> (M, PTE, H)>;

/// The backend of one area: what the area's virtual range maps to.
///
/// A thin typed wrapper around [`BackendKind`]; the type parameters only tie it
/// to the page-table format of its [`Mapper`].
pub struct Backend<M, PTE, H> {
    kind: BackendKind,
    _format: Format<M, PTE, H>,
}

/// What an area maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A fixed physical range: `pa = va - pa_va_offset` (wrapping).
    Linear {
        /// `va - pa`, wrapping.
        pa_va_offset: usize,
        /// Whether 2M/1G pages are used where both addresses are aligned.
        huge: bool,
    },
    /// Frames allocated (and zeroed) by the address space.
    Alloc {
        /// Allocated at map time or on first touch.
        populate: Populate,
        /// The page size asked for: `Size4K`, or `Size2M`/`Size1G` for a huge
        /// area (frames are aligned runs of that size where available).
        page: PageSize,
    },
    /// A physically contiguous run of zeroed frames owned by the area, mapped
    /// at map time: page `va` maps `start_frame + (va - area start)`. A split
    /// gives the right part the frame at its own start; unmapping part of the
    /// area frees exactly the frames of that part.
    Contiguous {
        /// The frame of the area's first page.
        start_frame: PhysAddr,
    },
}

impl<M, PTE, H> Clone for Backend<M, PTE, H> {
    fn clone(&self) -> Self {
        Self::new(self.kind)
    }
}

impl<M, PTE, H> Backend<M, PTE, H> {
    /// A backend of the given kind.
    pub const fn new(kind: BackendKind) -> Self {
        Self {
            kind,
            _format: PhantomData,
        }
    }

    /// A linear backend.
    pub const fn linear(pa_va_offset: usize, huge: bool) -> Self {
        Self::new(BackendKind::Linear { pa_va_offset, huge })
    }

    /// An allocating backend with 4K pages.
    pub const fn alloc(populate: Populate) -> Self {
        Self::alloc_sized(populate, PageSize::Size4K)
    }

    /// An allocating backend with pages of `page` size.
    pub const fn alloc_sized(populate: Populate, page: PageSize) -> Self {
        Self::new(BackendKind::Alloc { populate, page })
    }

    /// A backend owning the contiguous frames starting at `start_frame`.
    pub const fn contiguous(start_frame: PhysAddr) -> Self {
        Self::new(BackendKind::Contiguous { start_frame })
    }

    /// Its kind.
    pub const fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The public description of its kind.
    pub const fn area_kind(&self) -> AreaKind {
        match self.kind {
            BackendKind::Linear { pa_va_offset, .. } => AreaKind::Linear { pa_va_offset },
            BackendKind::Alloc {
                populate,
                page: PageSize::Size4K,
            } => AreaKind::Alloc { populate },
            BackendKind::Alloc { populate, page } => AreaKind::HugeAlloc {
                populate,
                page_size: page,
            },
            BackendKind::Contiguous { start_frame } => AreaKind::Contiguous { start_frame },
        }
    }
}

/// A huge leaf split by [`Mapper::split_edges`], remembered so that a failing
/// operation can put it back ([`Mapper::unsplit`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split {
    base: usize,
    paddr: PhysAddr,
    size: usize,
    flags: MappingFlags,
}

/// The splits made at the two edges of a range.
pub(crate) type Splits = [Option<Split>; 2];

/// The page table plus the backend state it cannot express (see module docs).
pub struct Mapper<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> {
    pt: PageTable<M, PTE, H>,
    parked: BTreeMap<VirtAddr, PhysAddr>,
    pool: Vec<PhysAddr>,
    /// Aligned runs for a huge populate: (first frame, frames).
    huge_pool: Vec<(PhysAddr, usize)>,
    reserve: Vec<PhysAddr>,
    data_frames: usize,
    huge_faults: u64,
    huge_fallbacks: u64,
}

/// What the table holds for one address.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    /// A present leaf of `size` bytes.
    Leaf { size: usize },
    /// Nothing is mapped in the naturally aligned `size`-byte block around it.
    Hole { size: usize },
}

/// Shift of the entries of a table at height `h` (0 = leaf tables).
#[inline]
const fn shift(h: usize) -> usize {
    12 + 9 * h
}

/// End of the naturally aligned `size` block containing `va`, capped at `end`.
#[inline]
fn block_end(va: usize, size: usize, end: usize) -> usize {
    (va | (size - 1)).checked_add(1).map_or(end, |e| e.min(end))
}

/// Bytes of a page size.
#[inline]
pub(crate) const fn page_bytes(p: PageSize) -> usize {
    p as usize
}

/// Flushes one page's TLB entry (a stale entry found by the fault path).
#[inline]
pub(crate) fn flush_one<M: PagingMetaData<VirtAddr = VirtAddr>>(va: VirtAddr) {
    <Meta<M> as PagingMetaData>::flush_tlb(Some(va));
}

/// Zeroes `frames` frames from `pa`.
fn zero_frames<H: PagingHandler>(pa: PhysAddr, frames: usize) {
    let ptr = H::phys_to_virt(pa).as_mut_ptr();
    // SAFETY: `pa` starts a run of `frames` frames just allocated for us and not
    // yet mapped anywhere else; the handler maps physical memory linearly, so the
    // run is one range of `frames * 4K` bytes at `phys_to_virt(pa)`.
    unsafe { core::ptr::write_bytes(ptr, 0, frames * PAGE_SIZE_4K) };
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> Mapper<M, PTE, H> {
    /// A mapper over a new, empty page table.
    pub(crate) fn try_new() -> Result<Self, MapError> {
        Ok(Self {
            pt: PageTable::try_new().map_err(|_| MapError::NoMemory)?,
            parked: BTreeMap::new(),
            pool: Vec::new(),
            huge_pool: Vec::new(),
            reserve: Vec::new(),
            data_frames: 0,
            huge_faults: 0,
            huge_fallbacks: 0,
        })
    }

    /// The page table.
    pub fn page_table(&self) -> &PageTable<M, PTE, H> {
        &self.pt
    }

    /// Frames owned by allocated and contiguous areas (mapped or parked).
    pub fn data_frames(&self) -> usize {
        self.data_frames
    }

    /// Huge pages mapped by faults, and faults or populated huge pages that got
    /// 4K frames because no aligned run was free.
    pub(crate) fn huge_counts(&self) -> (u64, u64) {
        (self.huge_faults, self.huge_fallbacks)
    }

    /// Page-table frames in use (the root included).
    pub(crate) fn table_frames(&self) -> usize {
        self.pt.table_frames()
    }

    /// Translation of `va`: physical address, flags, leaf size.
    pub(crate) fn query(&self, va: VirtAddr) -> Option<(PhysAddr, MappingFlags, LeafSize)> {
        self.pt.query(va).ok()
    }

    /// What the page table holds at `va` (with the size of a hole), read
    /// without a cursor.
    pub(crate) fn lookup(&self, va: usize) -> Slot {
        let mut table = self.pt.root_paddr();
        let mut h = M::LEVELS - 1;
        loop {
            let e = read_pte::<PTE, H>(table, (va >> shift(h)) & (ENTRIES - 1));
            if !e.is_present() {
                return Slot::Hole {
                    size: 1 << shift(h),
                };
            }
            if h == 0 || e.is_huge() {
                return Slot::Leaf {
                    size: 1 << shift(h),
                };
            }
            table = e.paddr();
            h -= 1;
        }
    }

    // ------------------------------------------------------------ frames

    /// Takes a data frame from the pool or the handler; zeroes it.
    fn alloc_data_frame(&mut self) -> Option<PhysAddr> {
        let pa = self.pool.pop().or_else(H::alloc_frame)?;
        zero_frames::<H>(pa, 1);
        Some(pa)
    }

    /// Allocates `pages` frames into the pool (for a populating map), or frees
    /// what it got and fails.
    pub(crate) fn fill_pool(&mut self, pages: usize) -> Result<(), MapError> {
        self.drain_pool();
        self.pool
            .try_reserve_exact(pages)
            .map_err(|_| MapError::NoMemory)?;
        for _ in 0..pages {
            match H::alloc_frame() {
                Some(pa) => self.pool.push(pa),
                None => {
                    self.drain_pool();
                    return Err(MapError::NoMemory);
                }
            }
        }
        Ok(())
    }

    /// Allocates `blocks` aligned runs of `page` size into the huge pool (for a
    /// huge populating map); a block without a free aligned run gets 4K frames
    /// in the 4K pool instead. On failure frees what it got.
    pub(crate) fn fill_huge_pool(&mut self, blocks: usize, page: PageSize) -> Result<(), MapError> {
        self.drain_pool();
        let (bytes, frames) = (page_bytes(page), page_bytes(page) / PAGE_SIZE_4K);
        if self.huge_pool.try_reserve_exact(blocks).is_err() {
            return Err(MapError::NoMemory);
        }
        for _ in 0..blocks {
            if let Some(pa) = H::alloc_frames(frames, bytes) {
                self.huge_pool.push((pa, frames));
                continue;
            }
            let ok = self.pool.try_reserve(frames).is_ok()
                && (0..frames).all(|_| H::alloc_frame().map(|pa| self.pool.push(pa)).is_some());
            if !ok {
                self.drain_pool();
                return Err(MapError::NoMemory);
            }
        }
        Ok(())
    }

    /// Whether the populate pool holds 4K frames (a 4K populate, or huge
    /// blocks that fell back to 4K frames).
    pub(crate) fn pool_has_4k(&self) -> bool {
        !self.pool.is_empty()
    }

    /// Frees the frames left in the pools (never mapped, so no flush needed).
    pub(crate) fn drain_pool(&mut self) {
        for pa in self.pool.drain(..) {
            H::dealloc_frame(pa);
        }
        for (pa, n) in self.huge_pool.drain(..) {
            H::dealloc_frames(pa, n);
        }
        self.pool = Vec::new();
        self.huge_pool = Vec::new();
    }

    /// A zeroed run of `pages` physically contiguous frames for a contiguous area.
    pub(crate) fn alloc_contiguous(&mut self, pages: usize) -> Result<PhysAddr, MapError> {
        let pa = H::alloc_frames(pages, PAGE_SIZE_4K).ok_or(MapError::NoMemory)?;
        zero_frames::<H>(pa, pages);
        self.data_frames += pages;
        Ok(pa)
    }

    /// Frees `pages` frames of a contiguous run from `pa` (no longer mapped, TLB
    /// already flushed).
    pub(crate) fn free_contiguous(&mut self, pa: PhysAddr, pages: usize) {
        H::dealloc_frames(pa, pages);
        self.data_frames -= pages;
    }

    // ------------------------------------------------------------ tables

    /// Page-table frames that mapping every page of `[start, end)` with leaves
    /// of height `leaf_h` (0 = 4K, 1 = 2M, 2 = 1G) would allocate, given the
    /// tables that exist now (leaves in the range count as removed). Costs one
    /// walk per present table on the way, not per page.
    fn tables_needed(&self, start: usize, end: usize, leaf_h: usize) -> usize {
        let top = M::LEVELS - 1;
        // The last missing table counted at each height (its id: address >> shift(h + 1)).
        let mut last = [usize::MAX; 8];
        let mut n = 0;
        let mut va = start;
        while va < end {
            let mut table = self.pt.root_paddr();
            let mut h = top;
            let hole_end = loop {
                if h == leaf_h {
                    // The table holding the leaves exists: nothing is missing in it.
                    break block_end(va, 1 << shift(h + 1), end);
                }
                let e = read_pte::<PTE, H>(table, (va >> shift(h)) & (ENTRIES - 1));
                if !e.is_present() || e.is_huge() {
                    break block_end(va, 1 << shift(h), end);
                }
                table = e.paddr();
                h -= 1;
            };
            // Tables at heights leaf_h..h are missing for [va, hole_end).
            for (j, seen) in last.iter_mut().enumerate().take(h).skip(leaf_h) {
                let (first, lastid) = (va >> shift(j + 1), (hole_end - 1) >> shift(j + 1));
                n += lastid - first + 1 - usize::from(*seen == first);
                *seen = lastid;
            }
            va = hole_end;
        }
        n
    }

    /// Holds as many frames as mapping `[start, end)` with leaves of height
    /// `leaf_h` needs for its page tables, so that a `FIXED` replacement can
    /// find out it would run out of them before the old mapping is removed.
    /// [`Self::release_reserve`] returns them right before the new mapping is
    /// made (nothing allocates in between). Fails with nothing held.
    pub(crate) fn reserve_tables(
        &mut self,
        start: usize,
        end: usize,
        leaf_h: usize,
    ) -> Result<(), MapError> {
        self.release_reserve();
        let n = self.tables_needed(start, end, leaf_h);
        if self.reserve.try_reserve_exact(n).is_err() {
            return Err(MapError::NoMemory);
        }
        for _ in 0..n {
            match H::alloc_frame() {
                Some(pa) => self.reserve.push(pa),
                None => {
                    self.release_reserve();
                    return Err(MapError::NoMemory);
                }
            }
        }
        Ok(())
    }

    /// Returns the reserved frames (never mapped).
    pub(crate) fn release_reserve(&mut self) {
        for pa in self.reserve.drain(..) {
            H::dealloc_frame(pa);
        }
    }

    /// Splits a huge leaf that straddles `at`, keeping every translation.
    fn split_at(&mut self, at: usize) -> Result<Option<Split>, MapError> {
        let Some((pa, flags, size)) = self.query(VirtAddr::from(at)) else {
            return Ok(None);
        };
        let bytes = size.bytes();
        if at.is_multiple_of(bytes) {
            return Ok(None);
        }
        let base = at & !(bytes - 1);
        let paddr = pa - (at - base);
        // Protecting [base, at) with the leaf's own flags splits exactly at `at`.
        self.pt
            .cursor()
            .protect_region(base.into(), at - base, flags)
            .map_err(|_| MapError::NoMemory)?;
        Ok(Some(Split {
            base,
            paddr,
            size: bytes,
            flags,
        }))
    }

    /// Makes `start` and `end` leaf boundaries (splitting huge leaves that
    /// straddle them), so that unmapping or protecting `[start, end)` cannot
    /// fail afterwards. On failure nothing is changed.
    pub(crate) fn split_edges(&mut self, start: usize, end: usize) -> Result<Splits, MapError> {
        let a = self.split_at(start)?;
        match self.split_at(end) {
            Ok(b) => Ok([a, b]),
            Err(e) => {
                self.unsplit([a, None]);
                Err(e)
            }
        }
    }

    /// Puts back the huge leaves of [`Self::split_edges`] (when the operation
    /// fails afterwards). Removing the split leaves frees at least as many
    /// table frames as re-creating the huge leaf needs, so this cannot run out.
    pub(crate) fn unsplit(&mut self, splits: Splits) {
        for s in splits.into_iter().rev().flatten() {
            let _ = self.pt.cursor().unmap_region(s.base.into(), s.size, |_| {});
            let r = self
                .pt
                .cursor()
                .map_region(s.base.into(), s.paddr, s.size, s.flags, true);
            if r.is_err() {
                log::error!("could not restore the huge page at {:#x}", s.base);
            }
        }
    }

    // ------------------------------------------------------------ faults

    /// Maps one 4K page; on failure the table is unchanged.
    pub(crate) fn map_one(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        flags: MappingFlags,
    ) -> Result<(), MapError> {
        debug_assert!(accessible(flags));
        self.pt
            .cursor()
            .map::<Size4K>(va, pa, flags)
            .map_err(map_err)
    }

    /// Fault path of an allocated area: re-map a parked frame or map a new zeroed one.
    pub(crate) fn fault_alloc(
        &mut self,
        page: VirtAddr,
        flags: MappingFlags,
    ) -> Result<(), MapError> {
        if let Some(pa) = self.parked.remove(&page) {
            return self.map_one(page, pa, flags).inspect_err(|_| {
                self.parked.insert(page, pa);
            });
        }
        let pa = self.alloc_data_frame().ok_or(MapError::NoMemory)?;
        match self.map_one(page, pa, flags) {
            Ok(()) => {
                self.data_frames += 1;
                Ok(())
            }
            Err(e) => {
                H::dealloc_frame(pa);
                Err(e)
            }
        }
    }

    /// Fault path of a huge allocated area `[area_start, area_end)`: if the
    /// aligned `size` block around `page` lies inside the area and nothing of
    /// it is mapped or parked, map one zeroed huge frame over it; if no aligned
    /// run is free, count a fallback and map a 4K frame (as for a block that
    /// is partly mapped already, e.g. after a split).
    pub(crate) fn fault_huge(
        &mut self,
        page: VirtAddr,
        area_start: usize,
        area_end: usize,
        size: PageSize,
        flags: MappingFlags,
    ) -> Result<(), MapError> {
        let bytes = page_bytes(size);
        let base = page.as_usize() & !(bytes - 1);
        let fits = base >= area_start
            && base.checked_add(bytes).is_some_and(|e| e <= area_end)
            && matches!(self.lookup(base), Slot::Hole { size: hole } if hole >= bytes)
            && self
                .parked
                .range(VirtAddr::from(base)..VirtAddr::from(base + bytes))
                .next()
                .is_none();
        if fits {
            let frames = bytes / PAGE_SIZE_4K;
            match H::alloc_frames(frames, bytes) {
                Some(pa) => {
                    zero_frames::<H>(pa, frames);
                    let va = VirtAddr::from(base);
                    let mut c = self.pt.cursor();
                    let r = match size {
                        PageSize::Size1G => c.map::<Size1G>(va, pa, flags),
                        _ => c.map::<Size2M>(va, pa, flags),
                    };
                    drop(c);
                    return match r {
                        Ok(()) => {
                            self.data_frames += frames;
                            self.huge_faults += 1;
                            Ok(())
                        }
                        Err(e) => {
                            H::dealloc_frames(pa, frames);
                            Err(map_err(e))
                        }
                    };
                }
                None => self.huge_fallbacks += 1,
            }
        }
        self.fault_alloc(page, flags)
    }

    // ------------------------------------------------------------ alloc

    /// Eager map with 4K pages: a zeroed frame per page. Undoes everything on
    /// failure.
    fn populate(&mut self, start: usize, end: usize, flags: MappingFlags) -> Result<(), MapError> {
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

    fn populate_4k(&mut self, va: usize, flags: MappingFlags) -> Result<(), MapError> {
        let pa = self.alloc_data_frame().ok_or(MapError::NoMemory)?;
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
    fn populate_huge(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        page: PageSize,
    ) -> Result<(), MapError> {
        if !accessible(flags) {
            return Ok(());
        }
        let bytes = page_bytes(page);
        let mut va = start;
        let mut failure = None;
        'blocks: while va < end {
            if let Some((pa, frames)) = self.huge_pool.pop() {
                zero_frames::<H>(pa, frames);
                let mut c = self.pt.cursor();
                let r = match page {
                    PageSize::Size1G => c.map::<Size1G>(va.into(), pa, flags),
                    _ => c.map::<Size2M>(va.into(), pa, flags),
                };
                drop(c);
                if let Err(e) = r {
                    H::dealloc_frames(pa, frames);
                    failure = Some(map_err(e));
                    break;
                }
                self.data_frames += frames;
                va += bytes;
                continue;
            }
            self.huge_fallbacks += 1;
            for _ in 0..bytes / PAGE_SIZE_4K {
                if let Err(e) = self.populate_4k(va, flags) {
                    failure = Some(e);
                    break 'blocks;
                }
                va += PAGE_SIZE_4K;
            }
        }
        match failure {
            None => Ok(()),
            Some(e) => {
                self.unmap_alloc(start, va);
                Err(e)
            }
        }
    }

    /// Unmaps the allocated pages of `[start, end)` and frees their frames after
    /// the flush (a huge leaf's run at once); frees parked frames; skips holes.
    fn unmap_alloc(&mut self, start: usize, end: usize) {
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
                match self.lookup(va) {
                    Slot::Leaf { size } => {
                        n += 1;
                        va = block_end(va, size, end);
                    }
                    Slot::Hole { size } => va = block_end(va, size, end),
                }
            }
            let mut frames = [(PhysAddr::from_usize(0), 0usize); BATCH];
            let mut k = 0;
            {
                let mut c = self.pt.cursor();
                let r = c.unmap_region(from.into(), va - from, |l: Leaf<VirtAddr>| {
                    if k < BATCH {
                        frames[k] = (l.paddr, l.size.bytes() / PAGE_SIZE_4K);
                        k += 1;
                    }
                });
                if r.is_err() {
                    log::warn!("unmap of [{from:#x}, {va:#x}) failed: a huge page straddles it");
                }
            } // cursor dropped: TLB flushed, retired tables freed
            for &(pa, n) in &frames[..k] {
                H::dealloc_frames(pa, n);
                self.data_frames -= n;
            }
        }
    }

    /// New flags for an allocated range: present pages get the new flags, or are
    /// parked (4K each) when the flags allow no access; parked pages are
    /// re-mapped when the flags allow access (a page that cannot be re-mapped
    /// stays parked and is re-mapped on its next fault; `mprotect` re-maps them
    /// before changing anything, see [`Self::reopen`]).
    fn protect_alloc(&mut self, start: usize, end: usize, flags: MappingFlags) {
        if !accessible(flags) {
            self.close(
                BackendKind::Alloc {
                    populate: Populate::Lazy,
                    page: PageSize::Size4K,
                },
                start,
                end,
            );
            return;
        }
        let mut c = self.pt.cursor();
        if c.protect_region(start.into(), end - start, flags).is_err() {
            log::warn!("protect of [{start:#x}, {end:#x}) failed: a huge page straddles it");
        }
        let mut from = VirtAddr::from(start);
        let until = VirtAddr::from(end);
        while let Some((&page, &pa)) = self.parked.range(from..until).next() {
            from = page + PAGE_SIZE_4K;
            if c.map::<Size4K>(page, pa, flags).is_ok() {
                self.parked.remove(&page);
            } else {
                log::debug!("protect: page {page:?} stays parked");
            }
        }
    }

    // ------------------------------------------------------------ linear

    /// Linear map of `[start, end)` to `start - off`; huge leaves where both
    /// addresses are aligned if `huge`. On failure nothing is left mapped.
    fn map_linear(
        &mut self,
        start: usize,
        end: usize,
        off: usize,
        flags: MappingFlags,
        huge: bool,
    ) -> Result<(), MapError> {
        if !accessible(flags) {
            return Ok(());
        }
        let pa = PhysAddr::from(start.wrapping_sub(off));
        self.pt
            .cursor()
            .map_region(start.into(), pa, end - start, flags, huge)
            .map_err(map_err)
    }

    /// Unmaps whatever is mapped in `[start, end)` of a linear area; skips holes.
    fn unmap_linear(&mut self, start: usize, end: usize) {
        let r = self
            .pt
            .cursor()
            .unmap_region(start.into(), end - start, |_| {});
        if r.is_err() {
            log::warn!("unmap of [{start:#x}, {end:#x}) failed: a huge page straddles it");
        }
    }

    /// New flags for a linear range: remove pages for flags without access,
    /// otherwise update the present pages (`mprotect` re-creates the pages of
    /// a `PROT_NONE` range before, see [`Self::reopen`]; a page still missing
    /// is re-created by the fault path).
    fn protect_linear(&mut self, start: usize, end: usize, flags: MappingFlags) {
        if !accessible(flags) {
            self.unmap_linear(start, end);
            return;
        }
        let r = self
            .pt
            .cursor()
            .protect_region(start.into(), end - start, flags);
        if r.is_err() {
            log::warn!("protect of [{start:#x}, {end:#x}) failed: a huge page straddles it");
        }
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
    ) -> Result<(), MapError> {
        match kind {
            BackendKind::Linear { pa_va_offset, huge } => {
                self.map_linear(s, e, pa_va_offset, flags, huge)
            }
            BackendKind::Contiguous { start_frame } => {
                let off = s.wrapping_sub((start_frame + (s - area_start)).as_usize());
                self.map_linear(s, e, off, flags, false)
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
            BackendKind::Alloc { .. } => {
                let parked = &mut self.parked;
                let r = self.pt.cursor().unmap_region(s.into(), e - s, |l| {
                    for i in 0..l.size.bytes() / PAGE_SIZE_4K {
                        parked.insert(l.vaddr + i * PAGE_SIZE_4K, l.paddr + i * PAGE_SIZE_4K);
                    }
                });
                if r.is_err() {
                    log::warn!("unmap of [{s:#x}, {e:#x}) failed: a huge page straddles it");
                }
            }
        }
    }
}

/// The mapper's error for a failed page-table map.
fn map_err(e: paging::MapError) -> MapError {
    match e {
        paging::MapError::AlreadyMapped => MapError::AlreadyMapped,
        _ => MapError::NoMemory,
    }
}

/// Reads entry `idx` of the table at `table`.
#[inline]
fn read_pte<PTE: GenericPTE, H: PagingHandler>(table: PhysAddr, idx: usize) -> PTE {
    debug_assert!(idx < ENTRIES);
    let ptr = H::phys_to_virt(table).as_ptr() as *const PTE;
    // SAFETY: callers pass the root of a live page table or the target of a
    // present non-leaf entry of one, so `table` is a live table frame of ENTRIES
    // entries that `phys_to_virt` makes accessible, and `idx < ENTRIES`. The entry
    // is copied out (volatile: the MMU may update A/D bits); no reference is kept.
    unsafe { ptr.add(idx).read_volatile() }
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> Drop
    for Mapper<M, PTE, H>
{
    /// Frees parked, pooled and reserved frames (none are mapped). Data frames
    /// still mapped are the owner's job ([`crate::AddrSpace`] unmaps all areas
    /// first); the page table frees its own tables when dropped after this.
    fn drop(&mut self) {
        for (_, pa) in core::mem::take(&mut self.parked) {
            H::dealloc_frame(pa);
            self.data_frames -= 1;
        }
        self.drain_pool();
        self.release_reserve();
    }
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> AreaBackend
    for Backend<M, PTE, H>
{
    type Ctx = Mapper<M, PTE, H>;

    fn map(
        &mut self,
        s: usize,
        e: usize,
        flags: MappingFlags,
        m: &mut Mapper<M, PTE, H>,
    ) -> Result<(), MapError> {
        match self.kind {
            BackendKind::Linear { pa_va_offset, huge } => {
                m.map_linear(s, e, pa_va_offset, flags, huge)
            }
            BackendKind::Alloc {
                populate: Populate::Eager,
                page: PageSize::Size4K,
            } => m.populate(s, e, flags),
            BackendKind::Alloc {
                populate: Populate::Eager,
                page,
            } => m.populate_huge(s, e, flags, page),
            BackendKind::Alloc {
                populate: Populate::Lazy,
                ..
            } => Ok(()),
            BackendKind::Contiguous { start_frame } => {
                m.map_linear(s, e, contiguous_offset(s, start_frame), flags, false)
            }
        }
    }

    fn unmap(&mut self, s: usize, e: usize, m: &mut Mapper<M, PTE, H>) {
        match self.kind {
            BackendKind::Linear { .. } => m.unmap_linear(s, e),
            BackendKind::Alloc { .. } => m.unmap_alloc(s, e),
            BackendKind::Contiguous { start_frame } => {
                // The cursor flushed the TLB when `unmap_linear` returned.
                m.unmap_linear(s, e);
                m.free_contiguous(start_frame, (e - s) / PAGE_SIZE_4K);
            }
        }
    }

    fn protect(&mut self, s: usize, e: usize, flags: MappingFlags, m: &mut Mapper<M, PTE, H>) {
        match self.kind {
            BackendKind::Linear { .. } | BackendKind::Contiguous { .. } => {
                m.protect_linear(s, e, flags)
            }
            BackendKind::Alloc { .. } => m.protect_alloc(s, e, flags),
        }
    }

    fn split(
        &mut self,
        s: usize,
        at: usize,
        _e: usize,
        _m: &Mapper<M, PTE, H>,
    ) -> Result<Self, SplitError> {
        // Huge leaves at `at` were split by `Mapper::split_edges` beforehand.
        match self.kind {
            BackendKind::Linear { .. } | BackendKind::Alloc { .. } => Ok(self.clone()),
            BackendKind::Contiguous { start_frame } => Ok(Self::contiguous(start_frame + (at - s))),
        }
    }

    fn try_merge(&mut self, s: usize, mid: usize, next: &Self, _e: usize) -> bool {
        match (self.kind, next.kind) {
            (BackendKind::Linear { .. }, BackendKind::Linear { .. })
            | (BackendKind::Alloc { .. }, BackendKind::Alloc { .. }) => self.kind == next.kind,
            (
                BackendKind::Contiguous { start_frame },
                BackendKind::Contiguous {
                    start_frame: next_frame,
                },
            ) => start_frame.as_usize().checked_add(mid - s) == Some(next_frame.as_usize()),
            _ => false,
        }
    }
}

/// `va - pa` of a contiguous area starting at `start` with frame `start_frame`.
#[inline]
fn contiguous_offset(start: usize, start_frame: PhysAddr) -> usize {
    start.wrapping_sub(start_frame.as_usize())
}
