//! The address space: [`AddrSpace`] (an area set over a [`Mapper`], the app
//! window, counters), its construction, queries and teardown.
//!
//! The calls are split by who makes them:
//! - `kernel.rs`: `map_linear`, `map_kernel` (boot; not restricted to the window);
//! - `mmap.rs`: `mmap`, `munmap`, `mprotect`, `map_phys` (apps; inside the window);
//! - `fault.rs`: `handle_page_fault`, where every page fault of the kernel's
//!   address space comes in.
//!
//! Invariants (the crate docs list them all): areas in the window were created
//! by the app calls and kernel areas lie outside it; every call either succeeds
//! or leaves the areas, the page table and the frame counts as they were.

mod fault;
mod kernel;
mod mmap;
mod mremap;
mod msync;

pub use mmap::CONTIGUOUS_MAX;
pub use mremap::RemapFlags;
pub use msync::MsyncFlags;

use axerrno::{AxError, AxResult};
use memory_addr::{AddrRange, MemoryAddr, PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::{Audit, LeafSize};

use crate::area::AreaInfo;
use crate::areas::{Area, AreaSet};
use crate::backend::{BoxedBackend, Mapper, PageTable};
use crate::lock::TableLock;

/// Result of [`AddrSpace::translate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Translation {
    /// Physical address of `va` (offset within the page included).
    pub paddr: PhysAddr,
    /// Flags of the PTE as the page-table format reports them.
    pub flags: MappingFlags,
    /// Size of the page (leaf) that maps `va`.
    pub page_size: LeafSize,
}

/// Counters of an address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MmStats {
    /// Frames owned by areas (allocated and contiguous ones, and private
    /// copies of object pages), mapped or parked.
    pub data_frames: usize,
    /// Pages mapped from memory objects (shared mappings, and the pages a
    /// private mapping has not copied yet): each is a frame that other
    /// mappings may map too, owned by its object, counted once per PTE here
    /// (object pages are never parked: under `PROT_NONE` they are unmapped
    /// and the object keeps them).
    pub shared_frames: usize,
    /// Page-table frames, the root included (counted by walking the table).
    pub page_table_frames: usize,
    /// Faults resolved by mapping a page.
    pub faults_handled: u64,
    /// Faults on a page already mapped with flags allowing the access (stale TLB).
    pub spurious_faults: u64,
    /// Faults that allocated a frame and then found the page mapped by a fault
    /// on another CPU (the frame was freed; the fault succeeded). Every fault
    /// that succeeds is counted once: here, in `faults_handled` or in
    /// `spurious_faults`.
    pub fault_races: u64,
    /// Faults in huge areas that mapped a whole huge page.
    pub huge_faults: u64,
    /// Huge pages that got 4K frames because no aligned run of frames was
    /// free: a fault in a huge area (the faulting 4K page is mapped) or a
    /// block of a huge `POPULATE` (all its pages get 4K frames).
    pub huge_fallbacks: u64,
    /// Split 2M blocks of huge areas that became one 2M page again, after an
    /// `mprotect` gave all their pages the same protection.
    pub huge_collapses: u64,
    /// Number of areas.
    pub areas: usize,
}

/// An address space: areas, their page table, the app window and counters.
///
/// `Send` and `Sync`: [`AddrSpace::handle_page_fault`] takes `&self` and may
/// run on several CPUs at once (see the crate docs, "Locking protocol for
/// several CPUs"); every call that changes areas takes `&mut self`.
pub struct AddrSpace<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> {
    /// Only read by faults; changed by `&mut self` calls only.
    set: AreaSet<BoxedBackend<M, PTE, H>>,
    /// The page table and its side state (parked frames, pools, the fault
    /// path's last-hit area and counters): under the table lock for `&self`
    /// callers, reached with `get_mut` by `&mut self` ones.
    mapper: TableLock<Mapper<M, PTE, H>>,
    window: AddrRange<VirtAddr>,
    huge_collapses: u64,
}

/// Rounds `len` up to whole pages; `None` for 0 or overflow.
fn page_len(len: usize) -> Option<usize> {
    if len == 0 {
        return None;
    }
    len.checked_add(PAGE_SIZE_4K - 1)
        .map(|l| l & !(PAGE_SIZE_4K - 1))
}

fn info<M, PTE, H>(start: usize, area: &Area<BoxedBackend<M, PTE, H>>) -> AreaInfo
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    area.backend.info(start, area.end, area.flags)
}

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> AddrSpace<M, PTE, H>
{
    /// An empty address space whose app calls may use
    /// `[window_start, window_start + window_size)`.
    pub fn new(window_start: VirtAddr, window_size: usize) -> AxResult<Self> {
        Self::new_with(window_start, window_size, paging::RootLayout::Single)
    }

    /// Like [`AddrSpace::new`], over a page table with the given root layout
    /// (a root per half for architectures with a translation base register per
    /// half, such as AArch64: see [`paging::RootLayout`]).
    pub fn new_with(
        window_start: VirtAddr,
        window_size: usize,
        layout: paging::RootLayout,
    ) -> AxResult<Self> {
        let window = Self::valid_range(window_start, window_size).ok_or(AxError::InvalidInput)?;
        let mapper = Mapper::try_new(layout).map_err(AxError::from)?;
        Ok(Self {
            set: AreaSet::new(),
            mapper: TableLock::new(mapper),
            window,
            huge_collapses: 0,
        })
    }

    /// A page-aligned, non-empty range the page table accepts: translated
    /// virtual addresses (see `paging::PageTable::translates`), not crossing
    /// the hole between the halves.
    fn valid_range(start: VirtAddr, size: usize) -> Option<AddrRange<VirtAddr>> {
        if size == 0 {
            return None;
        }
        PageTable::<M, PTE, H>::check_range(start, size).ok()?;
        AddrRange::try_from_start_size(start, size)
    }

    /// Runs one operation that changes the page table as one batch
    /// (`paging::PageTable::begin_batch`): its cursors share one flush at the
    /// end (one shootdown, whatever the number of areas, splits and pages),
    /// and the frames it freed go back to the allocator only after it.
    fn batched<R>(&mut self, op: impl FnOnce(&mut Self) -> R) -> R {
        self.mapper.get_mut().begin_batch();
        let r = op(self);
        self.mapper.get_mut().end_batch();
        r
    }

    /// The app window.
    pub fn window(&self) -> AddrRange<VirtAddr> {
        self.window
    }

    /// Physical address of the root page table of the lower half (the only
    /// root with [`paging::RootLayout::Single`]).
    pub fn page_table_root(&self) -> PhysAddr {
        self.mapper.lock().page_table().root_paddr()
    }

    /// Calls `f` with the first address and the size of every leaf of the
    /// page table, lowest first, each half walked from its own root as the
    /// hardware walks it. Holds the table lock while it walks: `f` must not
    /// fault on this address space (faults on other CPUs wait).
    pub fn for_each_leaf(&self, mut f: impl FnMut(VirtAddr, usize)) {
        self.mapper
            .lock()
            .page_table()
            .for_each_leaf(|l| f(l.vaddr, l.size.bytes()));
    }

    /// The root page tables (what the board activates).
    pub fn page_table_roots(&self) -> paging::Roots {
        self.mapper.lock().page_table().roots()
    }

    /// `[addr, addr + len)` rounded to pages, checked to be aligned and inside the
    /// window, as `(start, end)`.
    fn window_range(&self, addr: VirtAddr, len: usize) -> AxResult<(usize, usize)> {
        let size = page_len(len).ok_or(AxError::InvalidInput)?;
        if !addr.is_aligned_4k() {
            return Err(AxError::InvalidInput);
        }
        let range = AddrRange::try_from_start_size(addr, size).ok_or(AxError::InvalidInput)?;
        if !self.window.contains_range(range) {
            return Err(AxError::InvalidInput);
        }
        Ok((range.start.as_usize(), range.end.as_usize()))
    }

    /// What `va` is mapped to.
    pub fn translate(&self, va: VirtAddr) -> AxResult<Translation> {
        let r = self.mapper.lock().page_table().query(va);
        match r {
            Ok((paddr, flags, page_size)) => Ok(Translation {
                paddr,
                flags,
                page_size,
            }),
            Err(_) => Err(AxError::BadAddress),
        }
    }

    /// The page table, for reads: translations, leaf walks
    /// (`for_each_leaf`: every leaf's address, frame, size and flags),
    /// lookups. Every change goes through the address space's calls.
    ///
    /// The table lock is held until the returned guard is dropped: faults on
    /// other CPUs wait meanwhile, and a fault on this address space by the
    /// holder itself would never end.
    pub fn page_table(&self) -> impl core::ops::Deref<Target = PageTable<M, PTE, H>> + '_ {
        PageTableGuard(self.mapper.lock())
    }

    /// Audits the page table as the hardware sees it (every leaf, each half
    /// from its own root): leaves, writable and executable leaves, and
    /// whether the NULL page is mapped. See [`paging::PageTable::audit`].
    pub fn audit(&self) -> Audit {
        self.mapper.lock().page_table().audit()
    }

    /// Counters.
    pub fn stats(&self) -> MmStats {
        let m = self.mapper.lock();
        let (huge_faults, huge_fallbacks) = m.huge_counts();
        MmStats {
            huge_faults,
            huge_fallbacks,
            data_frames: m.data_frames(),
            shared_frames: m.shared_frames(),
            page_table_frames: m.table_frames(),
            faults_handled: m.faults_handled,
            spurious_faults: m.spurious_faults,
            fault_races: m.fault_races,
            huge_collapses: self.huge_collapses,
            areas: self.set.len(),
        }
    }

    /// All areas, by address.
    pub fn areas(&self) -> impl Iterator<Item = AreaInfo> + '_ {
        self.set.iter().map(|(s, a)| info(s, a))
    }

    /// The area containing `va`.
    pub fn area_at(&self, va: VirtAddr) -> Option<AreaInfo> {
        self.set.find(va.as_usize()).map(|(s, a)| info(s, a))
    }
}

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> Drop for AddrSpace<M, PTE, H>
{
    /// Unmaps every area and frees every data frame; the page table then frees
    /// its tables.
    fn drop(&mut self) {
        self.batched(|s| s.set.clear(s.mapper.get_mut()));
    }
}

/// [`AddrSpace::page_table`]: the page table, with the table lock held.
struct PageTableGuard<
    'a,
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
>(crate::lock::TableGuard<'a, Mapper<M, PTE, H>>);

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> core::ops::Deref for PageTableGuard<'_, M, PTE, H>
{
    type Target = PageTable<M, PTE, H>;

    fn deref(&self) -> &Self::Target {
        self.0.page_table()
    }
}
