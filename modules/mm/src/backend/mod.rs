//! The mapping backends: what an area maps to, and the page-table wrapper
//! ([`Mapper`]) their operations act on.
//!
//! [`Backend`] implements the area set's [`AreaBackend`] with `Ctx = `[`Mapper`]
//! (this file); the mapper's work is split by concern:
//! - `mapper.rs`: the [`Mapper`] (page table + the state it cannot express),
//!   queries, frame pools, contiguous runs, the `FIXED` reserve, `map_one`,
//!   and its `Drop`;
//! - `split.rs`: huge leaves split at range edges and put back, and split 2M
//!   blocks collapsed (both done by `paging`, through the cursor);
//! - `alloc.rs`: allocated areas: the fault path (4K and huge), populate,
//!   unmap and protect, and `reopen`/`close` around `PROT_NONE`;
//! - `linear.rs`: linear (and contiguous) areas: map, unmap, protect.
//!
//! This folder is the only code of the crate that uses the page table
//! (`paging::PageTable`), and it only calls `paging`'s API: every entry is
//! read and written by `paging` (lookups, splits and their undo, table
//! counts, leaf walks, the audit). The rest of the crate uses the mapper's
//! small internal interface, so moving to another page-table layer changes
//! these files only.
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
//! (`Mapper::split_edges`, `split.rs`, before the area set changes
//! anything), so the backends' unmap and protect only ever meet whole leaves.
//!
//! # Errors and broken invariants
//! A page-table map can only run out of frames here: the other reasons
//! `paging` has to refuse one are ruled out before it is called (see
//! `map_err`), so they are broken invariants, as is any failure of an unmap
//! or protect whose edges were split first (`infallible`).

mod alloc;
mod claims;
mod linear;
mod mapper;
mod split;

use core::marker::PhantomData;

use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::LeafSize;

use crate::area::{AreaKind, Populate};
use crate::areas::AreaBackend;
use crate::error::NoMemory;
use crate::invariant::broken;

pub(crate) use mapper::{Mapper, fault_frame};

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
pub(crate) struct Backend<M, PTE, H> {
    kind: BackendKind,
    _format: Format<M, PTE, H>,
}

/// What an area maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendKind {
    /// A fixed physical range: `va = pa + va_minus_pa` (wrapping).
    Linear {
        /// `va - pa` (wrapping): added to a physical address, gives its
        /// virtual one.
        va_minus_pa: usize,
        /// Whether 2M/1G pages are used where both addresses are aligned.
        huge: bool,
    },
    /// Frames allocated (and zeroed) by the address space.
    Alloc {
        /// Allocated at map time or on first touch.
        populate: Populate,
        /// The page size asked for: `Size4K`, or `Size2M`/`Size1G` for a huge
        /// area (frames are aligned runs of that size where available).
        page: LeafSize,
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
    pub(crate) const fn new(kind: BackendKind) -> Self {
        Self {
            kind,
            _format: PhantomData,
        }
    }

    /// A linear backend: `va = pa + va_minus_pa`.
    pub(crate) const fn linear(va_minus_pa: usize, huge: bool) -> Self {
        Self::new(BackendKind::Linear { va_minus_pa, huge })
    }

    /// An allocating backend with pages of `page` size.
    pub(crate) const fn alloc_sized(populate: Populate, page: LeafSize) -> Self {
        Self::new(BackendKind::Alloc { populate, page })
    }

    /// A backend owning the contiguous frames starting at `start_frame`.
    pub(crate) const fn contiguous(start_frame: PhysAddr) -> Self {
        Self::new(BackendKind::Contiguous { start_frame })
    }

    /// Its kind.
    pub(crate) const fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The public description of its kind.
    pub(crate) const fn area_kind(&self) -> AreaKind {
        match self.kind {
            BackendKind::Linear { va_minus_pa, .. } => AreaKind::Linear { va_minus_pa },
            BackendKind::Alloc {
                populate,
                page: LeafSize::Size4K,
            } => AreaKind::Alloc { populate },
            BackendKind::Alloc { populate, page } => AreaKind::HugeAlloc {
                populate,
                page_size: page,
            },
            BackendKind::Contiguous { start_frame } => AreaKind::Contiguous { start_frame },
        }
    }
}

/// Flushes one page's TLB entry (a stale entry found by the fault path).
#[inline]
pub(crate) fn flush_one<M: PagingMetaData<VirtAddr = VirtAddr>>(va: VirtAddr) {
    <Meta<M> as PagingMetaData>::flush_tlb(Some(va));
}

/// The mapper's error for a failed page-table map: running out of table
/// frames is the one failure that can happen. The others are impossible by
/// construction, so they are broken invariants:
/// - `AlreadyMapped`: every present leaf lies inside an area (crate
///   invariant 1), and a map goes only where no area is, or where the fault
///   path or a huge fault's lookup found no leaf, or where a `PROT_NONE` area
///   removed its pages;
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
    ) -> Result<(), NoMemory> {
        match self.kind {
            BackendKind::Linear { va_minus_pa, huge } => {
                m.map_linear(s, e, va_minus_pa, flags, huge)
            }
            BackendKind::Alloc {
                populate: Populate::Eager,
                page: LeafSize::Size4K,
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
                m.map_linear(s, e, contiguous_va_minus_pa(s, start_frame), flags, false)
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
                if page == LeafSize::Size2M && crate::flags::accessible(flags) {
                    m.huge_protected = true;
                }
            }
        }
    }

    fn split(&mut self, s: usize, at: usize, _e: usize) -> Self {
        // Huge leaves at `at` were split by `Mapper::split_edges` beforehand.
        match self.kind {
            BackendKind::Linear { .. } | BackendKind::Alloc { .. } => self.clone(),
            BackendKind::Contiguous { start_frame } => Self::contiguous(start_frame + (at - s)),
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
fn contiguous_va_minus_pa(start: usize, start_frame: PhysAddr) -> usize {
    start.wrapping_sub(start_frame.as_usize())
}
