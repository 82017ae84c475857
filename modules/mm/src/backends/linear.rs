//! [`Linear`]: areas over a fixed physical range, `va = pa + va_minus_pa`
//! (the kernel image, physical memory, MMIO, `map_phys`).
//!
//! Invariants: the pages of a linear area are all mapped while its flags
//! allow access and all absent while they do not (`PROT_NONE` removes them,
//! `reopen` maps them again); huge leaves are used only where both
//! addresses are aligned and the area asked for them. The area owns no
//! frame: unmapping releases nothing.

use memory_addr::{PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::LeafSize;

use crate::area::AreaKind;
use crate::backend::{Backend, Fault, FaultAction, FaultRefusal, Pages, Release};
use crate::error::NoMemory;

/// A fixed physical range mapped linearly.
///
/// One word (so that an area keeps it inline, see `backend/erased.rs`):
/// `va - pa` is a multiple of 4K, so its bit 0 holds whether huge pages
/// are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    packed: usize,
}

impl Linear {
    /// `va = pa + va_minus_pa` (wrapping; a multiple of 4K), with 2M/1G
    /// pages where both addresses are aligned if `huge`.
    pub const fn new(va_minus_pa: usize, huge: bool) -> Self {
        Self {
            packed: (va_minus_pa & !(PAGE_SIZE_4K - 1)) | huge as usize,
        }
    }

    /// `va - pa` (wrapping): added to a physical address, gives its virtual one.
    pub const fn va_minus_pa(&self) -> usize {
        self.packed & !(PAGE_SIZE_4K - 1)
    }

    /// Whether 2M/1G pages are used where both addresses are aligned.
    pub const fn huge(&self) -> bool {
        self.packed & 1 != 0
    }

    /// The physical address of `va`.
    #[inline]
    fn pa(&self, va: usize) -> PhysAddr {
        PhysAddr::from(va.wrapping_sub(self.va_minus_pa()))
    }
}

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> Backend<M, PTE, H> for Linear
{
    fn map(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        pages.map_linear(start, end, self.pa(start), flags, self.huge())
    }

    fn unmap(&mut self, start: usize, end: usize, pages: &mut Pages<'_, M, PTE, H>) {
        pages.unmap(start, end, |_| Release::Keep);
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
        _area_start: usize,
        s: usize,
        e: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        pages.map_linear(s, e, self.pa(s), flags, self.huge())
    }

    fn close(&mut self, s: usize, e: usize, pages: &mut Pages<'_, M, PTE, H>) {
        pages.unmap(s, e, |_| Release::Keep);
    }

    /// Every page is mapped while the flags allow access, so a fault is
    /// normally refused before it gets here; a missing page (defensive) is
    /// mapped again.
    fn fault(
        &self,
        f: &Fault,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal> {
        pages.map(f.page(), self.pa(f.page()), LeafSize::Size4K, f.flags)?;
        Ok(FaultAction::Mapped)
    }

    fn split(&mut self, _start: usize, _at: usize, _end: usize) -> Self {
        *self
    }

    fn try_merge(&mut self, _start: usize, _mid: usize, next: &Self, _end: usize) -> bool {
        next == self
    }

    fn relocate(&mut self, from: usize, to: usize) {
        *self = Self::new(
            self.va_minus_pa().wrapping_add(to.wrapping_sub(from)),
            self.huge(),
        );
    }

    fn describe(&self, _start: usize) -> AreaKind {
        AreaKind::Linear {
            va_minus_pa: self.va_minus_pa(),
        }
    }
}
