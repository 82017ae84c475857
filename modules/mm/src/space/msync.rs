//! [`AddrSpace::msync`]: writing back what shared mappings of objects
//! changed, through the objects' pagers.
//!
//! Each area of the range writes back its part ([`Backend::sync`]
//! (crate::Backend::sync)): a shared object mapping makes its writable
//! pages read-only, flushes that on every CPU, then writes the dirty pages
//! back (a page still writable through another mapping stays dirty);
//! other areas have nothing to write. The whole call is one operation
//! batch.

use axerrno::{AxError, AxResult};
use memory_addr::VirtAddr;
use page_table_entry::GenericPTE;
use page_table_multiarch::{PagingHandler, PagingMetaData};

use super::AddrSpace;
use crate::backend::Pages;
use crate::error::Uncovered;

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> AddrSpace<M, PTE, H>
{
    /// Writes the dirty pages of the shared object mappings in
    /// `[addr, addr + len)` (rounded up to pages) back through their
    /// objects' pagers; returns how many pages were written. Every page of
    /// the range must be mapped (else `NoMemory`, as Linux's `ENOMEM`, and
    /// nothing is written); a pager failure is `Io` (pages written before it
    /// are clean). Private and anonymous areas have nothing to write.
    pub fn msync(&mut self, addr: VirtAddr, len: usize) -> AxResult<usize> {
        self.batched(|s| s.msync_op(addr, len))
    }

    /// [`Self::msync`] inside its operation batch.
    fn msync_op(&mut self, addr: VirtAddr, len: usize) -> AxResult<usize> {
        let (s, e) = self.window_range(addr, len)?;
        if !self.set.covers(s, e) {
            return Err(Uncovered.into());
        }
        let m = self.mapper.get_mut();
        let mut written = 0;
        for (start, area) in self.set.range_mut(s, e) {
            let (from, to) = (start.max(s), area.end.min(e));
            written += area
                .backend
                .sync(start, from, to, &mut Pages::new(m))
                .map_err(AxError::from)?;
        }
        Ok(written)
    }
}
