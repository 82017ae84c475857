//! [`AddrSpace::msync`]: writing back what shared mappings of objects
//! changed, through the objects' pagers.
//!
//! Each area of the range writes back its part ([`Backend::sync`]
//! (crate::Backend::sync)): a shared object mapping makes its writable
//! pages read-only, flushes that on every CPU, then writes the dirty pages
//! back (a page still writable through another mapping stays dirty);
//! other areas have nothing to write. The whole call is one operation
//! batch.
//!
//! The flags are Linux's (`MS_ASYNC`, `MS_INVALIDATE`, `MS_SYNC`, same
//! values) and are checked the same way, but two of them need no work
//! here: there is no writeback thread, so `ASYNC` writes before it returns
//! too (POSIX asks that the writes be scheduled; done is scheduled), and
//! shared mappings map the object's own frames, so every mapping sees the
//! data `INVALIDATE` would make them read again (private copies keep their
//! own data, as in Linux).

use axerrno::{AxError, AxResult};
use memory_addr::VirtAddr;
use page_table_entry::GenericPTE;
use page_table_multiarch::{PagingHandler, PagingMetaData};

use super::AddrSpace;

bitflags::bitflags! {
    /// Flags of [`AddrSpace::msync`] (`MS_*`, with Linux's values).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct MsyncFlags: u32 {
        /// `MS_ASYNC`: start writing back. Written before the call returns,
        /// as with `SYNC` (no writeback thread). Not with `SYNC`.
        const ASYNC = 1;
        /// `MS_INVALIDATE`: other mappings of the objects see what was
        /// written. They always do (see the module docs); accepted.
        const INVALIDATE = 2;
        /// `MS_SYNC`: write the dirty pages back before returning.
        const SYNC = 4;
    }
}
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
    /// objects' pagers; returns how many pages were written. Unknown flags,
    /// or `ASYNC` with `SYNC`, are `InvalidInput`; no flag at all is
    /// accepted (as Linux; the pages are written either way, see the module
    /// docs). Every page of the range must be mapped (else `NoMemory`, as
    /// Linux's `ENOMEM`, and nothing is written); a pager failure is `Io`
    /// (pages written before it are clean). Private and anonymous areas
    /// have nothing to write.
    pub fn msync(&mut self, addr: VirtAddr, len: usize, flags: MsyncFlags) -> AxResult<usize> {
        if flags.bits() & !MsyncFlags::all().bits() != 0
            || flags.contains(MsyncFlags::ASYNC | MsyncFlags::SYNC)
        {
            return Err(AxError::InvalidInput);
        }
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
