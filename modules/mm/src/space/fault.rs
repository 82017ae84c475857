//! Where a page fault goes in: [`AddrSpace::handle_page_fault`].
//!
//! The board's trap handler decodes (address, access) and the runtime calls
//! this for the kernel's address space. The fault is checked against the
//! area's *current* flags (so `mprotect` takes effect at once); a lazy page
//! gets a zeroed frame (`Mapper::fault_alloc`, or a whole huge page with
//! `Mapper::fault_huge`, in `backend/alloc.rs`); anything else is an error the
//! caller reports. A failed fault changes nothing (no frame or table leaks).

use hal::Access;
use memory_addr::{MemoryAddr, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::LeafSize;

use super::{AddrSpace, info};
use crate::area::AreaInfo;
use crate::backend::{BackendKind, flush_one};
use crate::error::FaultError;
use crate::flags::allows;

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler>
    AddrSpace<M, PTE, H>
{
    /// Resolves a page fault at `va` for `access`, or says why it cannot.
    ///
    /// Order: area lookup (O(1) for the area of the previous fault, else
    /// O(log n); none: [`FaultError::NoArea`]); the area's
    /// current flags must allow the access (else [`FaultError::Denied`]); a page
    /// already mapped with flags allowing the access is a stale TLB entry: it is
    /// flushed and counted in
    /// [`MmStats::spurious_faults`](crate::MmStats::spurious_faults). Otherwise
    /// an Alloc page gets its parked frame back or a new zeroed frame. Linear and
    /// contiguous pages are all mapped while their area allows access, so such
    /// a fault is normally denied by the flag check; a missing page of theirs
    /// (defensive: `mprotect` creates their tables up front) is re-created
    /// here. Allocates nothing but the frame (and page tables), logs at trace
    /// level only.
    pub fn handle_page_fault(&mut self, va: VirtAddr, access: Access) -> Result<(), FaultError> {
        let area = self.set.lookup(va.as_usize()).ok_or(FaultError::NoArea)?;
        let (start, end, flags, kind) = (area.start, area.end, area.flags, area.backend);
        if !allows(flags, access) {
            return Err(self.denied(start));
        }
        let page = va.align_down_4k();
        if let Some((_, pte_flags, _)) = self.mapper.query(page) {
            return self.mapped_already(va, pte_flags, access, start);
        }
        let r = match kind {
            BackendKind::Linear { va_minus_pa, .. } => {
                let pa = PhysAddr::from(page.as_usize().wrapping_sub(va_minus_pa));
                self.mapper.map_one(page, pa, flags)
            }
            BackendKind::Contiguous { start_frame } => {
                let pa = start_frame + (page.as_usize() - start);
                self.mapper.map_one(page, pa, flags)
            }
            BackendKind::Alloc {
                page: LeafSize::Size4K,
                ..
            } => self.mapper.fault_alloc(page, flags),
            BackendKind::Alloc { page: size, .. } => {
                self.mapper.fault_huge(page, start, end, size, flags)
            }
        };
        match r {
            Ok(()) => {
                self.faults_handled += 1;
                log::trace!("fault at {va:?} ({access}) mapped");
                Ok(())
            }
            Err(_) => Err(self.no_memory(start)),
        }
    }

    /// A fault at `va` on a page that is mapped already: a stale TLB entry if the PTE
    /// allows `access` (flushed, counted), else denied. Kept out of line: the
    /// lazy path does not need its registers.
    #[cold]
    #[inline(never)]
    fn mapped_already(
        &mut self,
        va: VirtAddr,
        pte_flags: MappingFlags,
        access: Access,
        start: usize,
    ) -> Result<(), FaultError> {
        if allows(pte_flags, access) {
            // Stale TLB entry (e.g. after a protect on another path): drop it.
            flush_one::<M>(va.align_down_4k());
            self.spurious_faults += 1;
            log::trace!("spurious fault at {va:?}");
            return Ok(());
        }
        Err(self.denied(start))
    }

    /// [`FaultError::Denied`] for the area starting at `start` (the fault path
    /// changes no area, so it is still there).
    #[cold]
    #[inline(never)]
    fn denied(&self, start: usize) -> FaultError {
        self.area_error(start, |area| FaultError::Denied { area })
    }

    /// [`FaultError::NoMemory`] for the area starting at `start`.
    #[cold]
    #[inline(never)]
    fn no_memory(&self, start: usize) -> FaultError {
        self.area_error(start, |area| FaultError::NoMemory { area })
    }

    /// `make(area)` for the area starting at `start`.
    fn area_error(&self, start: usize, make: fn(AreaInfo) -> FaultError) -> FaultError {
        match self.set.find(start) {
            Some((s, area)) => make(info(s, area)),
            None => FaultError::NoArea,
        }
    }
}
