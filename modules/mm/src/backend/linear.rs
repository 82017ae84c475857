//! Linear areas (`va = pa + va_minus_pa`) and the page-table side of
//! contiguous areas (a contiguous area is a linear mapping of its run):
//! map, unmap and protect of a range.
//!
//! Invariants: the pages of a linear or contiguous area are all mapped while
//! its flags allow access and all absent while they do not (`PROT_NONE`
//! removes them, `reopen` re-creates them); huge leaves are used only where
//! both addresses are aligned and the area asked for them. These functions
//! own no frames: a contiguous run is freed by the backend after the unmap's
//! cursor is dropped.

use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};

use super::map_err;
use super::mapper::Mapper;
use crate::error::NoMemory;
use crate::flags::accessible;
use crate::invariant::infallible;

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> Mapper<M, PTE, H> {
    /// Linear map of `[start, end)` to `start - va_minus_pa`; huge leaves
    /// where both addresses are aligned if `huge`. On failure nothing is left
    /// mapped.
    pub(super) fn map_linear(
        &mut self,
        start: usize,
        end: usize,
        va_minus_pa: usize,
        flags: MappingFlags,
        huge: bool,
    ) -> Result<(), NoMemory> {
        if !accessible(flags) {
            return Ok(());
        }
        let pa = PhysAddr::from(start.wrapping_sub(va_minus_pa));
        self.pt
            .cursor()
            .map_region(start.into(), pa, end - start, flags, huge)
            .map_err(map_err)
    }

    /// Unmaps whatever is mapped in `[start, end)` of a linear area; skips holes.
    pub(super) fn unmap_linear(&mut self, start: usize, end: usize) {
        let r = self
            .pt
            .cursor()
            .unmap_region(start.into(), end - start, |_| {});
        infallible(r, "unmap", start, end);
    }

    /// New flags for a linear range: remove pages for flags without access,
    /// otherwise update the present pages (`mprotect` re-creates the pages of
    /// a `PROT_NONE` range before, see [`Self::reopen`]; a page still missing
    /// is re-created by the fault path).
    pub(super) fn protect_linear(&mut self, start: usize, end: usize, flags: MappingFlags) {
        if !accessible(flags) {
            self.unmap_linear(start, end);
            return;
        }
        let r = self
            .pt
            .cursor()
            .protect_region(start.into(), end - start, flags);
        infallible(r, "protect", start, end);
    }
}
