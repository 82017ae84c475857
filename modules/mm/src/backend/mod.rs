//! The mapping backends: what an area maps to, and the page-table wrapper
//! ([`Mapper`]) their operations act on.
//!
//! [`Backend`] implements the area set's [`AreaBackend`] with `Ctx = `[`Mapper`]
//! (this file); the mapper's work is split by concern:
//! - `mapper.rs`: the [`Mapper`] (page table + the state it cannot express),
//!   queries and table lookups, frame pools, contiguous runs, the `FIXED`
//!   reserve, `map_one`, and its `Drop`;
//! - `split.rs`: splitting huge leaves at range edges and putting them back,
//!   and counting the tables a mapping would need;
//! - `alloc.rs`: allocated areas: the fault path (4K and huge), populate,
//!   unmap and protect, and `reopen`/`close` around `PROT_NONE`;
//! - `linear.rs`: linear (and contiguous) areas: map, unmap, protect.
//!
//! This folder is the only code that touches the page table
//! (`paging::PageTable`): the rest of the crate uses the mapper's small
//! internal interface, so moving to another page-table layer changes these
//! files only.
//!
//! # Mapper state
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
//! Data frames removed by an unmap are freed after the cursor is dropped
//! (`alloc.rs`, and the contiguous arm of [`AreaBackend::unmap`] below).
//! On the host (tests, benchmarks: not `target_os = "none"`) the table uses
//! `paging::NoFlush<M>`, so the platform's metadata types, whose flush is a
//! privileged instruction, can be used unchanged; on bare metal it uses `M`.
//!
//! # Huge pages
//! Linear areas with `huge` and allocated areas with a huge page size are
//! mapped with 2M/1G leaves where possible. An operation whose range ends
//! inside a huge leaf first splits that leaf at the range edges
//! ([`Mapper::split_edges`], `split.rs`, before the area set changes
//! anything), so the backends' unmap and protect only ever meet whole leaves.
//!
//! All PTE reads made outside the cursor read entries by value through
//! `H::phys_to_virt`; no reference into a live table is kept across calls.

mod alloc;
mod linear;
mod mapper;
mod split;

use core::marker::PhantomData;

use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PageSize, PagingHandler, PagingMetaData};

use crate::area::{AreaKind, Populate};
use crate::areas::AreaBackend;
use crate::error::{MapError, SplitError};

pub use mapper::Mapper;

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

/// Checks a page-table operation that cannot fail: a region unmap or protect
/// whose ends are leaf boundaries already (`Mapper::split_edges`), or a change
/// the area set guarantees. A failure is a broken invariant: a panic in debug
/// builds (tests, fuzzing), logged as an error otherwise.
#[track_caller]
pub(crate) fn infallible<E: core::fmt::Debug>(
    r: Result<(), E>,
    op: &str,
    start: usize,
    end: usize,
) {
    if let Err(e) = r {
        if cfg!(debug_assertions) {
            panic!("{op} of [{start:#x}, {end:#x}) failed: {e:?}");
        }
        log::error!("{op} of [{start:#x}, {end:#x}) failed: {e:?}");
    }
}

/// The mapper's error for a failed page-table map.
fn map_err(e: paging::MapError) -> MapError {
    match e {
        paging::MapError::AlreadyMapped => MapError::AlreadyMapped,
        _ => MapError::NoMemory,
    }
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> AreaBackend
    for Backend<M, PTE, H>
{
    type Ctx = Mapper<M, PTE, H>;
    type View = BackendKind;

    fn view(&self) -> BackendKind {
        self.kind
    }

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
            BackendKind::Alloc { page, .. } => {
                m.protect_alloc(s, e, flags);
                if page == PageSize::Size2M && crate::flags::accessible(flags) {
                    m.huge_protected = true;
                }
            }
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
