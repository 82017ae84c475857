//! The [`Mapper`]: an address space's page table plus the state a page table
//! cannot express (parked frames, populate pools, the `FIXED` reserve, frame
//! counters; see the backend module docs), and its basic operations:
//! queries and lookups (answered by `paging`), data-frame pools, contiguous
//! runs, the table-frame reserve, mapping one 4K page, and teardown.
//!
//! Invariants kept here:
//! - a pooled or reserved frame is never mapped: [`Mapper::drain_pool`] and
//!   [`Mapper::release_reserve`] free them without a flush;
//! - `data_frames` counts every frame owned by allocated areas (mapped or
//!   parked) and contiguous areas; a frame enters the count when it is mapped
//!   (or a contiguous run is allocated) and leaves it when it is freed.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::{LeafSize, Size4K, Slot};

use super::{BackendPtr, BoxedBackend, PageTable, map_err};
use crate::areas::LastHit;
use crate::error::NoMemory;
use crate::invariant::broken;

/// The page table plus the backend state it cannot express (see module docs).
pub(crate) struct Mapper<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> {
    pub(super) pt: PageTable<M, PTE, H>,
    pub(super) parked: BTreeMap<VirtAddr, PhysAddr>,
    pub(super) pool: Vec<PhysAddr>,
    /// Aligned runs for a huge populate: (first frame, frames).
    pub(super) huge_pool: Vec<(PhysAddr, usize)>,
    pub(super) reserve: Vec<PhysAddr>,
    pub(super) data_frames: usize,
    /// Pages mapped from memory objects (their backends count them).
    pub(super) shared_frames: usize,
    pub(crate) huge_faults: u64,
    pub(crate) huge_fallbacks: u64,
    /// Backends removed from the area set by the running operation: dropped
    /// only after its TLB flush (their `Drop` may free frames, or drop the
    /// last reference of an object that does).
    graveyard: Vec<BoxedBackend<M, PTE, H>>,
    /// The fault path's last-hit area (see `AreaSet::lookup`); here, under the
    /// table lock, so that faults on several CPUs can share it.
    pub(crate) last: LastHit<BackendPtr<M, PTE, H>>,
    /// Faults resolved by mapping a page.
    pub(crate) faults_handled: u64,
    /// Faults on a page mapped already with flags allowing the access.
    pub(crate) spurious_faults: u64,
    /// Faults that found the page mapped by another CPU: when they came to
    /// install the frame they had allocated (the frame was freed), or after
    /// waiting for another fault's claim on the page (no frame allocated).
    pub(crate) fault_races: u64,
    /// Blocks being filled by faults right now (`claims.rs`).
    pub(crate) claims: super::claims::Claims,
}

/// End of the naturally aligned `size` block containing `va`, capped at `end`.
#[inline]
pub(super) fn block_end(va: usize, size: usize, end: usize) -> usize {
    (va | (size - 1)).checked_add(1).map_or(end, |e| e.min(end))
}

/// Zeroes `frames` frames from `pa`.
pub(super) fn zero_frames<H: PagingHandler + 'static>(pa: PhysAddr, frames: usize) {
    let ptr = H::phys_to_virt(pa).as_mut_ptr();
    // SAFETY: `pa` starts a run of `frames` frames just allocated for us and not
    // yet mapped anywhere else; the handler maps physical memory linearly, so the
    // run is one range of `frames * 4K` bytes at `phys_to_virt(pa)`.
    unsafe { core::ptr::write_bytes(ptr, 0, frames * PAGE_SIZE_4K) };
}

/// A zeroed frame (`Size4K`) or aligned run of frames (a huge `size`) for
/// the fault path, taken from the handler and zeroed without the table lock
/// (the pools belong to `&mut self` paths). `None` if the handler has none.
#[inline]
pub(crate) fn fault_frame<H: PagingHandler + 'static>(size: LeafSize) -> Option<PhysAddr> {
    let frames = size.bytes() / PAGE_SIZE_4K;
    let pa = match size {
        LeafSize::Size4K => H::alloc_frame(),
        _ => H::alloc_frames(frames, size.bytes()),
    }?;
    zero_frames::<H>(pa, frames);
    // The zeroes must be visible before the PTE that maps the frame: another
    // CPU may reach it through that PTE without faulting (Linux's smp_wmb()
    // before set_pte). The install writes the PTE after this (and after the
    // table lock's acquire, which orders only later accesses).
    core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    Some(pa)
}

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> Mapper<M, PTE, H>
{
    /// A mapper over a new, empty page table.
    pub(crate) fn try_new(layout: paging::RootLayout) -> Result<Self, NoMemory> {
        Ok(Self {
            // `try_new_with` fails only when the root frame(s) cannot be had.
            pt: PageTable::try_new_with(layout).map_err(|_| NoMemory)?,
            parked: BTreeMap::new(),
            pool: Vec::new(),
            huge_pool: Vec::new(),
            reserve: Vec::new(),
            data_frames: 0,
            shared_frames: 0,
            huge_faults: 0,
            huge_fallbacks: 0,
            graveyard: Vec::new(),
            last: LastHit::new(),
            claims: super::claims::Claims::new(),
            faults_handled: 0,
            spurious_faults: 0,
            fault_races: 0,
        })
    }

    /// Opens an operation batch on the page table (see
    /// `paging::PageTable::begin_batch`).
    pub(crate) fn begin_batch(&mut self) {
        self.pt.begin_batch();
    }

    /// Closes it: one flush, then the frames are freed.
    /// Then the backends the operation removed are dropped.
    pub(crate) fn end_batch(&mut self) {
        self.pt.end_batch();
        self.graveyard.clear();
    }

    /// Flushes the open batch now and frees what it freed, keeping it open
    /// (`paging::PageTable::flush_batch`); the removed backends go too.
    pub(crate) fn flush_batch(&mut self) {
        self.pt.flush_batch();
        self.graveyard.clear();
    }

    /// Takes a backend the area set removed: dropped after the operation's
    /// flush (at once outside a batch: its cursors flushed already).
    pub(crate) fn retire(&mut self, b: BoxedBackend<M, PTE, H>) {
        if self.pt.in_batch() {
            self.graveyard.push(b);
        }
    }

    /// Whether any frame is parked (the fault path's fast check).
    #[inline(always)]
    pub(crate) fn has_parked(&self) -> bool {
        !self.parked.is_empty()
    }

    /// Pages mapped from memory objects.
    pub(crate) fn shared_frames(&self) -> usize {
        self.shared_frames
    }

    /// The page table.
    pub(crate) fn page_table(&self) -> &PageTable<M, PTE, H> {
        &self.pt
    }

    /// Frames owned by allocated and contiguous areas (mapped or parked).
    pub(crate) fn data_frames(&self) -> usize {
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

    /// What the page table holds at `va`: the leaf that maps it, or the size
    /// of the empty, naturally aligned block around it. `va` lies in an area,
    /// so inside the translated space.
    #[inline]
    pub(crate) fn lookup(&self, va: usize) -> Slot<VirtAddr> {
        match self.pt.lookup(VirtAddr::from(va)) {
            Ok(slot) => slot,
            Err(e) => broken(format_args!("lookup of {va:#x}: {e:?}")),
        }
    }

    /// Allocates `pages` frames into the pool (for a populating map), or frees
    /// what it got and fails.
    pub(crate) fn fill_pool(&mut self, pages: usize) -> Result<(), NoMemory> {
        self.drain_pool();
        if !take_frames::<H>(&mut self.pool, pages) {
            self.drain_pool();
            return Err(NoMemory);
        }
        Ok(())
    }

    /// Allocates `blocks` aligned runs of `page` size into the huge pool (for a
    /// huge populating map); a block without a free aligned run gets 4K frames
    /// in the 4K pool instead. On failure frees what it got.
    pub(crate) fn fill_huge_pool(&mut self, blocks: usize, page: LeafSize) -> Result<(), NoMemory> {
        self.drain_pool();
        let (bytes, frames) = (page.bytes(), page.bytes() / PAGE_SIZE_4K);
        if self.huge_pool.try_reserve_exact(blocks).is_err() {
            return Err(NoMemory);
        }
        for _ in 0..blocks {
            if let Some(pa) = H::alloc_frames(frames, bytes) {
                self.huge_pool.push((pa, frames));
                continue;
            }
            if !take_frames::<H>(&mut self.pool, frames) {
                self.drain_pool();
                return Err(NoMemory);
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
    pub(crate) fn alloc_contiguous(&mut self, pages: usize) -> Result<PhysAddr, NoMemory> {
        let pa = H::alloc_frames(pages, PAGE_SIZE_4K).ok_or(NoMemory)?;
        zero_frames::<H>(pa, pages);
        self.data_frames += pages;
        Ok(pa)
    }

    /// Frees `pages` frames of a contiguous run from `pa` (no longer mapped):
    /// after the flush of the operation's batch, or at once outside one.
    pub(crate) fn free_contiguous(&mut self, pa: PhysAddr, pages: usize) {
        self.pt.free_after_flush(pa, pages);
        self.data_frames -= pages;
    }

    /// Holds as many frames as mapping `[start, end)` with `leaf`-size leaves
    /// needs for its page tables (`paging` counts them, the tables an unmap
    /// of the range would free included), so that a `FIXED` replacement can
    /// find out it would run out of them before the old mapping is removed.
    /// [`Self::release_reserve`] returns them right before the new mapping is
    /// made (nothing allocates in between). Fails with nothing held.
    pub(crate) fn reserve_tables(
        &mut self,
        start: usize,
        end: usize,
        leaf: LeafSize,
    ) -> Result<(), NoMemory> {
        self.release_reserve();
        let n = match self
            .pt
            .tables_needed(VirtAddr::from(start), end - start, leaf)
        {
            Ok(n) => n,
            // The range is part of the window, checked at creation.
            Err(e) => broken(format_args!(
                "tables_needed of [{start:#x}, {end:#x}): {e:?}"
            )),
        };
        if !take_frames::<H>(&mut self.reserve, n) {
            self.release_reserve();
            return Err(NoMemory);
        }
        Ok(())
    }

    /// Returns the reserved frames (never mapped).
    pub(crate) fn release_reserve(&mut self) {
        for pa in self.reserve.drain(..) {
            H::dealloc_frame(pa);
        }
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
            LeafSize::Size2M => self.pt.cursor().map::<paging::Size2M>(va.into(), pa, flags),
            LeafSize::Size1G => self.pt.cursor().map::<paging::Size1G>(va.into(), pa, flags),
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

    /// Moves every translation of `[from, from + size)` (whose ends are leaf
    /// boundaries) to `[to, to + size)` (empty), and the frames parked there
    /// with them. `NoMemory` (no frame for a destination table) changes
    /// nothing.
    pub(crate) fn move_range(
        &mut self,
        from: usize,
        to: usize,
        size: usize,
    ) -> Result<(), NoMemory> {
        match self
            .pt
            .cursor()
            .move_region(VirtAddr::from(from), VirtAddr::from(to), size)
        {
            Ok(()) => {}
            Err(paging::MoveError::NoMemory) => return Err(NoMemory),
            // Both ranges are inside the window, disjoint and page aligned;
            // the source's ends were split, the destination is free.
            Err(e) => broken(format_args!(
                "move of [{from:#x}, {:#x}) to {to:#x}: {e:?}",
                from + size
            )),
        }
        let (s, e) = (VirtAddr::from(from), VirtAddr::from(from + size));
        let moved: Vec<(VirtAddr, PhysAddr)> =
            self.parked.range(s..e).map(|(&v, &p)| (v, p)).collect();
        for (va, pa) in moved {
            self.parked.remove(&va);
            self.parked.insert(va - from + to, pa);
        }
        Ok(())
    }

    /// Maps one 4K page; on failure the table is unchanged.
    pub(crate) fn map_one(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        flags: MappingFlags,
    ) -> Result<(), NoMemory> {
        self.pt
            .cursor()
            .map::<Size4K>(va, pa, flags)
            .map_err(map_err)
    }
}

/// Appends `n` frames from the handler to `v`. `false` if the vector could not
/// grow or a frame ran out; the frames taken so far are then left in `v` for
/// the caller to free.
fn take_frames<H: PagingHandler + 'static>(v: &mut Vec<PhysAddr>, n: usize) -> bool {
    v.try_reserve(n).is_ok() && (0..n).all(|_| H::alloc_frame().map(|pa| v.push(pa)).is_some())
}

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> Drop for Mapper<M, PTE, H>
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
