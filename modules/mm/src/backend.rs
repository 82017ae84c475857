//! The mapping backends and the page-table wrapper they operate on.
//!
//! [`Backend`] implements the area set's [`AreaBackend`] with `Ctx = `[`Mapper`].
//! This file is the only one that touches the page table: the rest of the
//! crate uses the mapper's small internal interface (`lookup`, `map_one`,
//! `fault_alloc`, `prepare_tables`, `reclaim`, `table_frames`, the frame pool
//! and contiguous runs, and the per-kind map/unmap/protect of a range), so
//! moving to another page-table layer changes this file only.
//!
//! The mapper owns the hardware page table plus the state the page table
//! cannot express:
//! - `parked`: frames of populated allocated pages whose area is currently
//!   `PROT_NONE`. Their PTE is removed (never a "paddr with no flags" entry) and
//!   the frame is kept here, so the data survives `NONE -> RW`.
//! - `pool`: zero or more frames allocated before a populating map, so that
//!   running out of data frames is detected before anything is changed.
//!
//! All PTE reads made outside the cursor read entries by value through
//! `H::phys_to_virt`; no reference into a live table is kept across calls.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::marker::PhantomData;

use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PageSize, PageTable64, PagingHandler, PagingMetaData};

use crate::area::{AreaKind, Populate};
use crate::areas::AreaBackend;
use crate::error::{MapError, SplitError};
use crate::flags::accessible;

const ENTRIES: usize = 512;
/// Frames unmapped per cursor before it is dropped (flushed) and they are freed.
/// Equal to the cursor's per-page flush capacity.
const BATCH: usize = 32;

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
        /// Whether 2M/1G pages may be used where both addresses are aligned.
        /// Areas created for apps use `false`, so that a partial unmap or
        /// protect never meets a huge page.
        huge: bool,
    },
    /// Frames allocated (and zeroed) by the address space.
    Alloc {
        /// Allocated at map time or on first touch.
        populate: Populate,
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

    /// An allocating backend.
    pub const fn alloc(populate: Populate) -> Self {
        Self::new(BackendKind::Alloc { populate })
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
            BackendKind::Alloc { populate } => AreaKind::Alloc { populate },
            BackendKind::Contiguous { start_frame } => AreaKind::Contiguous { start_frame },
        }
    }
}

/// The page table plus the backend state it cannot express (see module docs).
pub struct Mapper<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> {
    pt: PageTable64<M, PTE, H>,
    parked: BTreeMap<VirtAddr, PhysAddr>,
    pool: Vec<PhysAddr>,
    data_frames: usize,
}

/// What the table holds for one address.
#[derive(Clone, Copy)]
pub(crate) enum Slot<PTE> {
    /// A present leaf of `size` bytes.
    Leaf { pte: PTE, size: usize },
    /// Nothing is mapped in the naturally aligned `size`-byte block around it.
    Hole { size: usize },
}

/// Frames to free after one TLB flush.
struct FreeBatch<M: PagingMetaData, H: PagingHandler> {
    frames: [PhysAddr; BATCH],
    n: usize,
    _p: PhantomData<fn() -> (M, H)>,
}

impl<M: PagingMetaData, H: PagingHandler> FreeBatch<M, H> {
    fn new() -> Self {
        Self {
            frames: [PhysAddr::from_usize(0); BATCH],
            n: 0,
            _p: PhantomData,
        }
    }

    /// Queues a page-table frame whose parent entry is already cleared.
    fn push(&mut self, pa: PhysAddr) {
        if self.n == BATCH {
            self.finish();
        }
        self.frames[self.n] = pa;
        self.n += 1;
    }

    /// Flushes the whole TLB (paging-structure caches included), then frees.
    fn finish(&mut self) {
        if self.n == 0 {
            return;
        }
        flush_all::<M>();
        for &pa in &self.frames[..self.n] {
            H::dealloc_frame(pa);
        }
        self.n = 0;
    }
}

/// Flushes the whole TLB. Like the page-table cursor, only on bare metal: host
/// tests run in user mode, where the flush instruction would trap.
#[inline]
#[cfg_attr(not(target_os = "none"), allow(clippy::extra_unused_type_parameters))]
fn flush_all<M: PagingMetaData>() {
    #[cfg(target_os = "none")]
    M::flush_tlb(None);
}

/// Flushes one page's TLB entry (bare metal only, see [`flush_all`]).
#[inline]
#[cfg_attr(not(target_os = "none"), allow(clippy::extra_unused_type_parameters))]
pub(crate) fn flush_one<M: PagingMetaData<VirtAddr = VirtAddr>>(va: VirtAddr) {
    #[cfg(target_os = "none")]
    M::flush_tlb(Some(va));
    #[cfg(not(target_os = "none"))]
    let _ = va;
}

const fn shift<M: PagingMetaData>(level: usize) -> usize {
    12 + 9 * (M::LEVELS - 1 - level)
}

/// End of the naturally aligned `size` block containing `va`, capped at `end`.
#[inline]
fn block_end(va: usize, size: usize, end: usize) -> usize {
    (va | (size - 1)).checked_add(1).map_or(end, |e| e.min(end))
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> Mapper<M, PTE, H> {
    /// A mapper over a new, empty page table.
    pub(crate) fn try_new() -> Result<Self, MapError> {
        Ok(Self {
            pt: PageTable64::try_new().map_err(|_| MapError::NoMemory)?,
            parked: BTreeMap::new(),
            pool: Vec::new(),
            data_frames: 0,
        })
    }

    /// The page table.
    pub fn page_table(&self) -> &PageTable64<M, PTE, H> {
        &self.pt
    }

    /// Frames owned by allocated areas (mapped or parked).
    pub fn data_frames(&self) -> usize {
        self.data_frames
    }

    /// What the page table holds at `va`, read without a cursor.
    pub(crate) fn lookup(&self, va: VirtAddr) -> Slot<PTE> {
        lookup::<M, PTE, H>(self.pt.root_paddr(), va.as_usize())
    }

    /// Page-table frames in use, by walking the tree.
    pub(crate) fn table_frames(&self) -> usize {
        self.count_tables(self.pt.root_paddr(), 0)
    }

    fn count_tables(&self, table: PhysAddr, level: usize) -> usize {
        let mut n = 1;
        if level + 1 < M::LEVELS {
            for idx in 0..ENTRIES {
                let e = read_pte::<PTE, H>(table, idx);
                if e.is_present() && !e.is_huge() {
                    n += self.count_tables(e.paddr(), level + 1);
                }
            }
        }
        n
    }

    /// Frees page tables below the root that became empty in `[start, end)`.
    /// Their parent entries are cleared first, then the TLB is flushed, then the
    /// frames are freed.
    pub(crate) fn reclaim(&mut self, start: usize, end: usize) {
        let mut batch = FreeBatch::<M, H>::new();
        Self::reclaim_in(self.pt.root_paddr(), 0, start, end, &mut batch);
        batch.finish();
    }

    fn reclaim_in(
        table: PhysAddr,
        level: usize,
        start: usize,
        end: usize,
        batch: &mut FreeBatch<M, H>,
    ) {
        if level + 1 >= M::LEVELS {
            return;
        }
        let sh = shift::<M>(level);
        let mut va = start;
        while va < end {
            let next = block_end(va, 1 << sh, end);
            let idx = (va >> sh) & (ENTRIES - 1);
            let mut e = read_pte::<PTE, H>(table, idx);
            if e.is_present() && !e.is_huge() {
                let child = e.paddr();
                Self::reclaim_in(child, level + 1, va, next, batch);
                if (0..ENTRIES).all(|i| read_pte::<PTE, H>(child, i).is_unused()) {
                    e.clear();
                    write_pte::<PTE, H>(table, idx, e);
                    batch.push(child);
                }
            }
            va = next;
        }
    }

    /// Takes a data frame from the pool or the handler; zeroes it.
    fn alloc_data_frame(&mut self) -> Option<PhysAddr> {
        let pa = self.pool.pop().or_else(H::alloc_frame)?;
        let ptr = H::phys_to_virt(pa).as_mut_ptr();
        // SAFETY: `pa` is a frame just allocated for us and mapped by
        // `phys_to_virt`; nothing else refers to it yet.
        unsafe { core::ptr::write_bytes(ptr, 0, PAGE_SIZE_4K) };
        Some(pa)
    }

    /// Allocates `pages` frames into the pool (for a populating map), or frees
    /// what it got and fails.
    pub(crate) fn fill_pool(&mut self, pages: usize) -> Result<(), MapError> {
        self.drain_pool();
        if self.pool.try_reserve_exact(pages).is_err() {
            return Err(MapError::NoMemory);
        }
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

    /// A zeroed run of `pages` physically contiguous frames for a contiguous area.
    pub(crate) fn alloc_contiguous(&mut self, pages: usize) -> Result<PhysAddr, MapError> {
        let pa = H::alloc_frames(pages, PAGE_SIZE_4K).ok_or(MapError::NoMemory)?;
        for i in 0..pages {
            let ptr = H::phys_to_virt(pa + i * PAGE_SIZE_4K).as_mut_ptr();
            // SAFETY: frame `i` of a run just allocated for us, mapped by
            // `phys_to_virt`; nothing else refers to it yet.
            unsafe { core::ptr::write_bytes(ptr, 0, PAGE_SIZE_4K) };
        }
        self.data_frames += pages;
        Ok(pa)
    }

    /// Frees `pages` frames of a contiguous run from `pa` (no longer mapped, TLB
    /// already flushed).
    pub(crate) fn free_contiguous(&mut self, pa: PhysAddr, pages: usize) {
        H::dealloc_frames(pa, pages);
        self.data_frames -= pages;
    }

    /// The frame of the first pooled page (the pool is filled first).
    pub(crate) fn pool_frame(&self) -> Option<PhysAddr> {
        self.pool.last().copied()
    }

    /// Makes sure every page table needed to map any 4K page of `[start, end)`
    /// exists, so that mapping pages there afterwards cannot run out of table
    /// frames. A missing leaf table is created by mapping `scratch` (a frame the
    /// caller owns) read-only at one page of it and unmapping it again in the
    /// same cursor (the tables stay; the cursor flushes the page when dropped).
    /// Costs one lookup per 2M block of the range. On failure, the tables it
    /// created are freed again and nothing is changed.
    pub(crate) fn prepare_tables(
        &mut self,
        start: usize,
        end: usize,
        scratch: PhysAddr,
    ) -> Result<(), MapError> {
        let root = self.pt.root_paddr();
        let leaf_span = 1usize << shift::<M>(M::LEVELS - 2);
        let mut va = start;
        let mut failed = false;
        {
            let mut cursor = self.pt.cursor();
            while va < end {
                match lookup::<M, PTE, H>(root, va) {
                    // A huge leaf never lies in a range mapped with 4K pages.
                    Slot::Leaf { size, .. } => va = block_end(va, size.max(leaf_span), end),
                    Slot::Hole { size } if size == PAGE_SIZE_4K => {
                        va = block_end(va, leaf_span, end)
                    }
                    Slot::Hole { .. } => {
                        let page = VirtAddr::from(va);
                        if cursor
                            .map(page, scratch, PageSize::Size4K, MappingFlags::READ)
                            .is_err()
                        {
                            failed = true;
                            break;
                        }
                        let _ = cursor.unmap(page);
                        va = block_end(va, leaf_span, end);
                    }
                }
            }
        }
        if failed {
            self.reclaim(start, end);
            return Err(MapError::NoMemory);
        }
        Ok(())
    }

    /// Prepares the tables an `mprotect` to accessible flags needs in
    /// `[s, e)` of an area starting at `area_start` whose flags allow no access
    /// now: linear and contiguous areas re-create every page, allocated areas
    /// their parked pages. On failure the caller reclaims the range.
    pub(crate) fn prepare_reopen(
        &mut self,
        kind: BackendKind,
        area_start: usize,
        s: usize,
        e: usize,
    ) -> Result<(), MapError> {
        match kind {
            BackendKind::Linear { pa_va_offset, .. } => {
                self.prepare_tables(s, e, PhysAddr::from(s.wrapping_sub(pa_va_offset)))
            }
            BackendKind::Contiguous { start_frame } => {
                self.prepare_tables(s, e, start_frame + (s - area_start))
            }
            BackendKind::Alloc { .. } => {
                let mut from = VirtAddr::from(s);
                let until = VirtAddr::from(e);
                while let Some((&page, &pa)) = self.parked.range(from..until).next() {
                    self.prepare_tables(page.as_usize(), page.as_usize() + PAGE_SIZE_4K, pa)?;
                    from = page + PAGE_SIZE_4K;
                }
                Ok(())
            }
        }
    }

    /// Frees the frames left in the pool (never mapped, so no flush needed).
    pub(crate) fn drain_pool(&mut self) {
        for pa in self.pool.drain(..) {
            H::dealloc_frame(pa);
        }
        self.pool = Vec::new();
    }

    /// Maps one 4K page; on failure frees tables it created.
    pub(crate) fn map_one(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        flags: MappingFlags,
    ) -> Result<(), MapError> {
        debug_assert!(accessible(flags));
        let r = self.pt.cursor().map(va, pa, PageSize::Size4K, flags);
        match r {
            Ok(()) => Ok(()),
            Err(page_table_multiarch::PagingError::AlreadyMapped) => Err(MapError::AlreadyMapped),
            Err(_) => {
                self.reclaim(va.as_usize(), va.as_usize() + PAGE_SIZE_4K);
                Err(MapError::NoMemory)
            }
        }
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

    /// Eager map: a zeroed frame per page. Undoes everything on failure.
    fn populate(&mut self, start: usize, end: usize, flags: MappingFlags) -> Result<(), MapError> {
        if !accessible(flags) {
            return Ok(());
        }
        let mut va = start;
        let mut failure = None;
        while va < end {
            let Some(pa) = self.alloc_data_frame() else {
                failure = Some(MapError::NoMemory);
                break;
            };
            let r = self.pt.cursor().map(va.into(), pa, PageSize::Size4K, flags);
            if let Err(e) = r {
                H::dealloc_frame(pa);
                failure = Some(match e {
                    page_table_multiarch::PagingError::AlreadyMapped => MapError::AlreadyMapped,
                    _ => MapError::NoMemory,
                });
                break;
            }
            self.data_frames += 1;
            va += PAGE_SIZE_4K;
        }
        match failure {
            None => Ok(()),
            Some(e) => {
                self.unmap_alloc(start, va);
                self.reclaim(start, end);
                Err(e)
            }
        }
    }

    /// Unmaps the allocated pages of `[start, end)` and frees their frames after
    /// the flush; frees parked frames; skips holes. Leaves empty tables to the
    /// caller's [`Self::reclaim`].
    fn unmap_alloc(&mut self, start: usize, end: usize) {
        let (s, e) = (VirtAddr::from(start), VirtAddr::from(end));
        while let Some((&va, &pa)) = self.parked.range(s..e).next() {
            self.parked.remove(&va);
            H::dealloc_frame(pa);
            self.data_frames -= 1;
        }
        let root = self.pt.root_paddr();
        let mut va = start;
        while va < end {
            let mut frames = [PhysAddr::from_usize(0); BATCH];
            let mut n = 0;
            {
                let mut cursor = self.pt.cursor();
                while va < end && n < BATCH {
                    match lookup::<M, PTE, H>(root, va) {
                        Slot::Leaf { size, .. } => {
                            let base = va & !(size - 1);
                            if let Ok((pa, _, _)) = cursor.unmap(base.into()) {
                                frames[n] = pa;
                                n += 1;
                            }
                            va = block_end(va, size, end);
                        }
                        Slot::Hole { size } => va = block_end(va, size, end),
                    }
                }
            } // cursor dropped: TLB flushed for every page unmapped above
            for &pa in &frames[..n] {
                H::dealloc_frame(pa);
            }
            self.data_frames -= n;
        }
    }

    /// Linear map of `[start, end)` to `start - off`; undoes everything on failure.
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
        let mut va = start;
        let mut failure = None;
        {
            let mut cursor = self.pt.cursor();
            while va < end {
                let pa = va.wrapping_sub(off);
                let size = [PageSize::Size1G, PageSize::Size2M]
                    .into_iter()
                    .find(|&s| {
                        huge && s.is_aligned(va) && s.is_aligned(pa) && end - va >= s as usize
                    })
                    .unwrap_or(PageSize::Size4K);
                if let Err(e) = cursor.map(va.into(), pa.into(), size, flags) {
                    failure = Some(match e {
                        page_table_multiarch::PagingError::AlreadyMapped => MapError::AlreadyMapped,
                        _ => MapError::NoMemory,
                    });
                    break;
                }
                va += size as usize;
            }
        }
        match failure {
            None => Ok(()),
            Some(e) => {
                self.unmap_linear(start, va);
                self.reclaim(start, end);
                Err(e)
            }
        }
    }

    /// Unmaps whatever is mapped in `[start, end)` of a linear area; skips holes.
    /// Leaves empty tables to the caller's [`Self::reclaim`].
    ///
    /// A huge page that straddles the range is removed whole: the API never
    /// partially unmaps a huge linear area (those are kernel areas outside the
    /// app window), so this only keeps a stale mapping from surviving a misuse.
    fn unmap_linear(&mut self, start: usize, end: usize) {
        let root = self.pt.root_paddr();
        {
            let mut cursor = self.pt.cursor();
            let mut va = start;
            while va < end {
                match lookup::<M, PTE, H>(root, va) {
                    Slot::Leaf { size, .. } => {
                        let base = va & !(size - 1);
                        if base < start || base + size > end {
                            log::warn!("unmap of part of a huge linear page at {base:#x}");
                        }
                        let _ = cursor.unmap(base.into());
                        va = block_end(va, size, end);
                    }
                    Slot::Hole { size } => va = block_end(va, size, end),
                }
            }
        }
    }

    /// New flags for a linear range: remove pages for flags without access,
    /// otherwise update present pages and re-create removed ones (4K each).
    /// A page that cannot be re-created (no table frame) stays absent; the fault
    /// path re-creates it on first touch.
    fn protect_linear(&mut self, start: usize, end: usize, off: usize, flags: MappingFlags) {
        if !accessible(flags) {
            self.unmap_linear(start, end);
            self.reclaim(start, end);
            return;
        }
        let root = self.pt.root_paddr();
        let mut cursor = self.pt.cursor();
        let mut va = start;
        while va < end {
            match lookup::<M, PTE, H>(root, va) {
                Slot::Leaf { size, .. } => {
                    let base = va & !(size - 1);
                    let _ = cursor.protect(base.into(), flags);
                    va = block_end(va, size, end);
                }
                Slot::Hole { size } => {
                    let hole_end = block_end(va, size, end);
                    while va < hole_end {
                        if cursor
                            .map(
                                va.into(),
                                va.wrapping_sub(off).into(),
                                PageSize::Size4K,
                                flags,
                            )
                            .is_err()
                        {
                            log::debug!("protect: could not re-create linear page {va:#x}");
                            return;
                        }
                        va += PAGE_SIZE_4K;
                    }
                }
            }
        }
    }

    /// New flags for an allocated range: present pages get the new flags, or are
    /// parked when the flags allow no access; parked pages are re-mapped when the
    /// flags allow access (a page that cannot be re-mapped stays parked and is
    /// re-mapped on its next fault); absent lazy pages are skipped.
    fn protect_alloc(&mut self, start: usize, end: usize, flags: MappingFlags) {
        let root = self.pt.root_paddr();
        let park = !accessible(flags);
        {
            let mut cursor = self.pt.cursor();
            let mut va = start;
            while va < end {
                match lookup::<M, PTE, H>(root, va) {
                    Slot::Leaf { size, .. } => {
                        let base = va & !(size - 1);
                        if park {
                            if let Ok((pa, _, _)) = cursor.unmap(base.into()) {
                                self.parked.insert(base.into(), pa);
                            }
                        } else {
                            let _ = cursor.protect(base.into(), flags);
                        }
                        va = block_end(va, size, end);
                    }
                    Slot::Hole { size } => va = block_end(va, size, end),
                }
            }
            if !park {
                let mut from = VirtAddr::from(start);
                let until = VirtAddr::from(end);
                while let Some((&page, &pa)) = self.parked.range(from..until).next() {
                    from = page + PAGE_SIZE_4K;
                    if cursor.map(page, pa, PageSize::Size4K, flags).is_ok() {
                        self.parked.remove(&page);
                    } else {
                        log::debug!("protect: page {page:?} stays parked");
                    }
                }
            }
        }
        if park {
            self.reclaim(start, end);
        }
    }
}

/// What the table rooted at `root` holds at `va`.
pub(crate) fn lookup<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler>(
    root: PhysAddr,
    va: usize,
) -> Slot<PTE> {
    let mut table = root;
    for level in 0..M::LEVELS {
        let sh = shift::<M>(level);
        let e = read_pte::<PTE, H>(table, (va >> sh) & (ENTRIES - 1));
        if !e.is_present() {
            return Slot::Hole { size: 1 << sh };
        }
        if level + 1 == M::LEVELS || e.is_huge() {
            return Slot::Leaf {
                pte: e,
                size: 1 << sh,
            };
        }
        table = e.paddr();
    }
    Slot::Hole { size: PAGE_SIZE_4K }
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

/// Writes entry `idx` of the table at `table`.
#[inline]
fn write_pte<PTE: GenericPTE, H: PagingHandler>(table: PhysAddr, idx: usize, pte: PTE) {
    debug_assert!(idx < ENTRIES);
    let ptr = H::phys_to_virt(table).as_mut_ptr() as *mut PTE;
    // SAFETY: as in `read_pte`; callers hold `&mut` to the page table's owner, so
    // no cursor or other access to this table is live.
    unsafe { ptr.add(idx).write_volatile(pte) }
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> Drop
    for Mapper<M, PTE, H>
{
    /// Frees parked and pooled frames (none are mapped). Data frames still mapped
    /// are the owner's job ([`crate::AddrSpace`] unmaps all areas first); the
    /// page table frees its own tables when dropped after this.
    fn drop(&mut self) {
        for (_, pa) in core::mem::take(&mut self.parked) {
            H::dealloc_frame(pa);
            self.data_frames -= 1;
        }
        self.drain_pool();
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
            } => m.populate(s, e, flags),
            BackendKind::Alloc {
                populate: Populate::Lazy,
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
            BackendKind::Linear { pa_va_offset, .. } => m.protect_linear(s, e, pa_va_offset, flags),
            BackendKind::Alloc { .. } => m.protect_alloc(s, e, flags),
            BackendKind::Contiguous { start_frame } => {
                m.protect_linear(s, e, contiguous_offset(s, start_frame), flags)
            }
        }
    }

    fn split(
        &mut self,
        s: usize,
        at: usize,
        _e: usize,
        m: &Mapper<M, PTE, H>,
    ) -> Result<Self, SplitError> {
        match self.kind {
            BackendKind::Linear { huge: true, .. } => match m.lookup(VirtAddr::from(at)) {
                Slot::Leaf { size, .. } if !at.is_multiple_of(size) => Err(SplitError::HugePage),
                _ => Ok(self.clone()),
            },
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
