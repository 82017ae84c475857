//! The backend contract: [`Backend`], the trait every kind of area
//! implements (the built-in ones in `backends/`, and any an OS author writes
//! in their own crate), [`Pages`], the page-table operations a backend may
//! use, and the mapper behind them.
//!
//! # The contract
//! An area is `[start, end)` with flags and one [`Backend`]. The
//! address space calls the backend for everything that depends on what the
//! area maps to, and does the rest itself (arguments, placement, huge-page
//! splits at range edges, merging, batching and TLB shootdowns, frame
//! accounting, the fault path's locking and claims):
//! - [`Backend::map`] when the area is created (`mmap`, `map_phys`,
//!   `map_linear`): map what must be mapped now (nothing, for a lazy
//!   backend). On error nothing of the range may be left mapped and the
//!   backend must have released whatever it took.
//! - [`Backend::unmap`] when `[s, e)` of the area goes (`munmap`, a `FIXED`
//!   replacement, teardown): remove every page of `[s, e)` (mapped or parked)
//!   and release what the backend owns there, through
//!   [`Pages::unmap`] (frames are freed after the TLB flush, never before).
//! - [`Backend::protect`] when the flags of `[s, e)` change: give the mapped
//!   pages the new flags, or, for flags without access, remove them. What a
//!   `PROT_NONE` page keeps is the backend's business: it can *park* its
//!   frames ([`Pages::park`]: the data survives `PROT_NONE -> RW`) or drop
//!   the translations (a linear area re-creates them). Before an `mprotect`
//!   gives a `PROT_NONE` range access again, the address space calls
//!   [`Backend::reopen`] (map the pages back; the default re-maps parked
//!   frames), and [`Backend::close`] to undo that if the call then fails.
//! - [`Backend::fault`] for a page fault in the area that its flags allow:
//!   map the page through [`Pages`] and answer [`FaultAction::Mapped`], or
//!   ask for a zeroed frame ([`FaultAction::Fresh`]: the address space
//!   allocates it without the table lock, claims the block so that
//!   concurrent faults get one frame, installs and counts it), or refuse.
//!   It runs under the table lock, with `&self`, on several CPUs at once.
//! - [`Backend::split`] and [`Backend::try_merge`]: the area set splits an
//!   area at an operation's edges (the right part gets its own state, e.g.
//!   an offset into an object) and merges adjacent areas with equal flags
//!   whose backends agree. Neither touches the page table.
//! - [`Backend::extend`] and [`Backend::relocate`] for `mremap`: a backend
//!   for the range right after the area (growing), and the area moving to
//!   another address (its pages' translations are moved by the address
//!   space).
//! - [`Backend::sync`] for `msync`: write back what the area changed of the
//!   object behind it.
//! - [`Backend::describe`] for area dumps and fault reports, and
//!   [`Backend::collapse_2m`]: whether split 2M blocks of the area may
//!   become 2M pages again after an `mprotect` (the frames of such a block
//!   must then be one aligned run owned by the area).
//!
//! `docs/WRITING_A_BACKEND.md` is the short guide, with a worked example in
//! `tests/custom_backend.rs`.
//!
//! # Frame ownership
//! A frame a backend maps is either *owned* by the area (counted in
//! `MmStats::data_frames`: taken with [`Pages::alloc_frames`] or a fault's
//! [`FaultAction::Fresh`], returned with [`Pages::free_after_flush`] or by
//! [`Pages::unmap`] answering [`Release::Free`]) or belongs to someone else
//! (a linear area's physical range; a memory object's page, whose mappings
//! the object counts and which is freed when the object goes; counted in
//! `MmStats::shared_frames` through [`Pages::count_shared`]). Whatever it
//! is, a frame is never freed while a TLB may still hold a translation to
//! it: [`Pages`] frees after the operation's flush, and a backend removed
//! from the area set is dropped only after that flush too (so a backend
//! whose `Drop` frees frames, or drops the last reference of an object
//! that does, is safe).
//!
//! # Page-table use
//! This folder is the only code of the crate that uses the page table
//! (`paging::PageTable`), and it only calls `paging`'s API (`mapper.rs`:
//! queries, pools, reserve; `pages.rs`: the operations offered to
//! backends; `split.rs`: huge leaves split at range edges and collapsed;
//! `claims.rs`: the fault path's claims). On the host (tests, benchmarks:
//! not `target_os = "none"`) the table uses `paging::NoFlush<M>`, so the
//! platform's metadata types, whose flush is a privileged instruction, can
//! be used unchanged; on bare metal it uses `M`.
//!
//! # Errors and broken invariants
//! A page-table map can only run out of frames here: the other reasons
//! `paging` has to refuse one are ruled out before it is called (see
//! `map_err`), so they are broken invariants, as is any failure of an unmap
//! or protect whose edges were split first (`infallible`).

mod claims;
mod erased;
mod mapper;
mod pages;
mod split;

use hal::Access;
use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::LeafSize;

use crate::area::AreaKind;
use crate::error::NoMemory;
use crate::invariant::broken;
use crate::object::ObjectError;

pub(crate) use erased::{BackendPtr, BoxedBackend, boxed};
pub(crate) use mapper::{Mapper, fault_frame};
pub use pages::{Pages, Release, Removed};

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

/// A page fault in an area whose flags allow the access, as the address
/// space hands it to [`Backend::fault`] and [`Backend::fault_mapped`].
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// The faulting address.
    pub va: VirtAddr,
    /// What the access was.
    pub access: Access,
    /// The area's first address.
    pub start: usize,
    /// One past the area's last address.
    pub end: usize,
    /// The area's current flags (they allow `access`).
    pub flags: MappingFlags,
}

impl Fault {
    /// The faulting page (4K aligned).
    #[inline(always)]
    pub fn page(&self) -> usize {
        self.va.as_usize() & !(PAGE_SIZE_4K - 1)
    }
}

/// What the page table maps at a faulting page whose PTE does not allow the
/// access (see [`Backend::fault_mapped`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mapped {
    /// The frame of the page.
    pub frame: PhysAddr,
    /// The PTE's flags.
    pub flags: MappingFlags,
    /// The size of the leaf that maps it.
    pub size: LeafSize,
}

/// What [`Backend::fault`] did, or needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// The backend mapped the page (through [`Pages`]).
    Mapped,
    /// The page needs a zeroed frame owned by the area, mapped with the
    /// area's flags by one `size` leaf at `base` (`base` is the page for
    /// 4K; for a huge size, the aligned block around the page, which must lie
    /// inside the area with nothing of it mapped or parked: see
    /// [`Pages::block_is_free`]). The address space allocates and zeroes it
    /// without the table lock, so that concurrent faults on the block get
    /// one frame; with no aligned run free a huge request gets a 4K frame at
    /// the page (counted as a fallback).
    Fresh {
        /// The first address of the leaf.
        base: usize,
        /// The leaf size.
        size: LeafSize,
    },
}

/// Why [`Backend::fault`] refused a fault (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultRefusal {
    /// The access is not allowed (e.g. the page is mapped with flags the
    /// backend does not upgrade).
    Denied,
    /// No frame (or page-table frame) was available.
    NoMemory,
    /// The page lies past the end of the object the area maps (Linux's
    /// `SIGBUS`).
    PastEnd,
    /// The object's pager failed to read the page.
    Io,
}

impl From<NoMemory> for FaultRefusal {
    fn from(_: NoMemory) -> Self {
        FaultRefusal::NoMemory
    }
}

/// What an area maps to: the behaviour of one kind of area, implemented by
/// the built-in backends (`backends/`) and by any backend an OS author
/// writes. The module docs give the contract; every method is called with
/// `[start, end)` inside the area, page aligned, and huge leaves already
/// split at the range's edges.
///
/// Implementations are generic over the page-table format like the address
/// space (`M`, `PTE`, `H`); a backend that needs frames takes them through
/// [`Pages`] (which counts them) or from its own source.
pub trait Backend<M, PTE, H>: Sized + Send + Sync + 'static
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    /// Maps `[start, end)` (a new area) with `flags`. On error nothing of
    /// the range is left mapped and the backend released what it took.
    fn map(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory>;

    /// Removes every page of `[start, end)` (mapped or parked) and releases
    /// what the backend owns there. Cannot fail: holes are skipped.
    fn unmap(&mut self, start: usize, end: usize, pages: &mut Pages<'_, M, PTE, H>);

    /// Gives `[start, end)` the flags `flags` (the area's new flags). Cannot
    /// fail. Flags without access: remove the pages (parking what must
    /// survive). Accessible flags: [`Backend::reopen`] ran before, so only
    /// mapped pages need new flags.
    fn protect(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    );

    /// Before an `mprotect` gives `[s, e)` of a `PROT_NONE` area starting at
    /// `area_start` the accessible `flags`: maps the pages that must be
    /// mapped while the area is accessible (the default re-maps parked
    /// frames). On failure nothing of `[s, e)` is mapped.
    fn reopen(
        &mut self,
        area_start: usize,
        s: usize,
        e: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        let _ = area_start;
        pages.reopen_parked(s, e, flags)
    }

    /// Undoes [`Backend::reopen`] of `[s, e)` (the `mprotect` failed later):
    /// the default parks what is mapped there again.
    fn close(&mut self, s: usize, e: usize, pages: &mut Pages<'_, M, PTE, H>) {
        pages.park(s, e);
    }

    /// A page fault on a page of the area that nothing maps, and that the
    /// area's flags allow (see [`Fault`]). Runs under the table lock, with
    /// `&self`, on several CPUs at once: it may map through `pages` and must
    /// not block for long. A backend that parks frames should first try
    /// [`Pages::unpark`].
    fn fault(
        &self,
        fault: &Fault,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal>;

    /// A page fault on a page of the area that is mapped with PTE flags
    /// (`mapped`) that do not allow the access, while the area's flags do:
    /// e.g. a write to a page mapped read-only for copy-on-write or dirty
    /// tracking. The backend may change the page's translation through
    /// `pages` ([`Pages::replace`], [`Pages::protect`]) and answer
    /// [`FaultAction::Mapped`] ([`FaultAction::Fresh`] is not allowed here).
    /// The default refuses ([`FaultRefusal::Denied`]). Same context as
    /// [`Backend::fault`].
    fn fault_mapped(
        &self,
        fault: &Fault,
        mapped: Mapped,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal> {
        let _ = (fault, mapped, pages);
        Err(FaultRefusal::Denied)
    }

    /// Splits the backend of `[start, end)` at `at` (`start < at < end`):
    /// `self` keeps `[start, at)`, the result describes `[at, end)`.
    fn split(&mut self, start: usize, at: usize, end: usize) -> Self;

    /// Whether `self`, describing `[start, mid)`, can absorb `next`,
    /// describing `[mid, end)` (adjacent, equal flags, and of the same
    /// backend type: areas of different types never merge); if so, does it.
    fn try_merge(&mut self, start: usize, mid: usize, next: &Self, end: usize) -> bool;

    /// For `mremap` growing the area `[start, end)` in place to `new_end`: a
    /// backend describing `[end, new_end)` that continues this one (it is
    /// then mapped with [`Backend::map`] and merged), or `None` if the area
    /// cannot grow (the default; Linux refuses to grow a mapping of a fixed
    /// physical range too).
    fn extend(&self, start: usize, end: usize, new_end: usize) -> Option<Self> {
        let _ = (start, end, new_end);
        None
    }

    /// For `mremap` moving the area from `from` to `to` (its translations
    /// and parked frames are moved by the address space): updates state that
    /// depends on the virtual address. The default keeps everything.
    fn relocate(&mut self, from: usize, to: usize) {
        let _ = (from, to);
    }

    /// For `msync` of `[s, e)` of the area starting at `start`: writes back
    /// what the area changed of the object behind it (through its pager)
    /// and returns how many pages it wrote. The default (areas over no
    /// object) writes nothing.
    fn sync(
        &mut self,
        start: usize,
        s: usize,
        e: usize,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<usize, ObjectError> {
        let _ = (start, s, e, pages);
        Ok(0)
    }

    /// What the area starting at `start` is, for area lookups, area dumps
    /// and fault reports. Asked on every [`AddrSpace::area_at`] (one call
    /// through the area's type table): keep it cheap, and free of side
    /// effects.
    ///
    /// [`AddrSpace::area_at`]: crate::AddrSpace::area_at
    fn describe(&self, start: usize) -> AreaKind;

    /// Whether every fault on a page of the area that is neither mapped nor
    /// parked gets a zeroed 4K frame owned by the area at that page (what
    /// [`Backend::fault`] would answer: `Fresh` at the page, 4K). The
    /// address space then takes its fast path and does not call
    /// [`Backend::fault`] for such pages (asked once per area lookup, so the
    /// answer must not change while the area exists). Default: no.
    fn zero_fill_4k(&self) -> bool {
        false
    }

    /// Whether split 2M blocks of the area may be collapsed into 2M pages
    /// again (the block's 512 pages then map one aligned run the area owns,
    /// with equal flags). Default: no.
    fn collapse_2m(&self) -> bool {
        false
    }
}

/// Flushes one page's TLB entry (a stale entry found by the fault path).
#[inline]
pub(crate) fn flush_one<M: PagingMetaData<VirtAddr = VirtAddr> + 'static>(va: VirtAddr) {
    <Meta<M> as PagingMetaData>::flush_tlb(Some(va));
}

/// The mapper's error for a failed page-table map: running out of table
/// frames is the one failure that can happen. The others are impossible by
/// construction, so they are broken invariants:
/// - `AlreadyMapped`: every present leaf lies inside an area (crate
///   invariant 1), and a map goes only where no area is, or where the fault
///   path or a huge fault's lookup found no leaf, or where a `PROT_NONE` area
///   removed its pages (a backend that maps over its own page breaks its
///   contract);
/// - `NotAligned`, `OutOfRange`: every range is 4K aligned and was checked
///   by `paging::PageTable::check_range` (the window at creation, kernel
///   ranges per call), physical ranges by `M::paddr_is_valid`, and frames come
///   from `H` aligned to what was asked;
/// - `InvalidFlags`: only flags with `READ` are mapped (apps' `Prot` needs
///   `READ` for any access, the kernel calls check it);
/// - `Shared`: no address space shares root entries with another.
#[cold]
#[inline(never)]
fn map_err(e: paging::MapError) -> NoMemory {
    match e {
        paging::MapError::NoMemory => NoMemory,
        e => broken(format_args!("page-table map failed: {e:?}")),
    }
}
