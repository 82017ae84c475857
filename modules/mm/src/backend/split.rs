//! Huge leaves at the edges of an operation: split before it, put back if it
//! fails; and split 2M blocks collapsed once their pages agree again. The
//! page table does the work (`paging::Cursor::split_at`, `unsplit`,
//! `collapse_2m`); this file decides when.
//!
//! An operation whose range starts or ends inside a huge leaf first calls
//! [`Mapper::split_edges`], before the area set changes anything: each
//! straddling leaf becomes smaller leaves with the same flags and consecutive
//! physical addresses (1G -> 2M -> 4K as needed), so every translation of the
//! rest is kept and the backends' unmap and protect only ever meet whole
//! leaves. A split needs one page-table frame per level; if none is free,
//! nothing is changed. When the operation fails afterwards,
//! [`Mapper::unsplit`] puts the huge leaves back: `paging` writes each leaf
//! back over the tables the split made and frees them after the flush, with
//! no allocation, so this cannot fail while those tables are as the split
//! left them (the failing operation changed nothing under them). After a
//! split, the frames of a huge data page are freed piecewise (the frame
//! allocator accepts that).
//!
//! [`Mapper::collapse_2m`] is the inverse of a 2M split that stays: once an
//! `mprotect` has given every page of a split 2M block the same flags again,
//! the table of 512 leaves over one aligned run of frames becomes a 2M leaf
//! again (no allocation; the table frame is freed after the flush).

use memory_addr::VirtAddr;
use page_table_entry::GenericPTE;
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::{LeafSize, Split};

use super::mapper::Mapper;
use crate::error::NoMemory;
use crate::invariant::{broken, infallible};

/// The huge leaves split at the two edges of a range, in the order they were
/// split ([`Mapper::unsplit`] undoes them in reverse).
pub(crate) type Splits = [Option<Split<VirtAddr>>; 2];

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> Mapper<M, PTE, H>
{
    /// Splits a huge leaf that straddles `at`, keeping every translation.
    fn split_at(&mut self, at: usize) -> Result<Option<Split<VirtAddr>>, NoMemory> {
        // The first address past the end of a half is not a valid address,
        // and no leaf straddles it.
        if !M::vaddr_is_valid(at) {
            return Ok(None);
        }
        match self.pt.cursor().split_at(VirtAddr::from(at)) {
            Ok(split) => Ok(split),
            Err(paging::SplitError::NoMemory) => Err(NoMemory),
            // `at` is a 4K-aligned, valid address of an unshared table.
            Err(e) => broken(format_args!("split at {at:#x}: {e:?}")),
        }
    }

    /// Makes `start` and `end` leaf boundaries (splitting huge leaves that
    /// straddle them), so that unmapping or protecting `[start, end)` cannot
    /// fail afterwards. On failure nothing is changed.
    pub(crate) fn split_edges(&mut self, start: usize, end: usize) -> Result<Splits, NoMemory> {
        let a = self.split_at(start)?;
        match self.split_at(end) {
            Ok(b) => Ok([a, b]),
            Err(e) => {
                self.unsplit([a, None]);
                Err(e)
            }
        }
    }

    /// Puts back the huge leaves of [`Self::split_edges`] (when the operation
    /// fails afterwards), the last split first. Allocates nothing; the
    /// operation changed nothing under the split leaves, so a refusal is a
    /// broken invariant.
    pub(crate) fn unsplit(&mut self, splits: Splits) {
        let mut c = self.pt.cursor();
        for s in splits.into_iter().rev().flatten() {
            let leaf = *s.leaf();
            let start = leaf.vaddr.as_usize();
            let r = c.unsplit(s);
            infallible(
                r,
                "undo of a huge-page split",
                start,
                start + leaf.size.bytes(),
            );
        }
    }

    /// Turns every 2M block in `[start, end)` (both 2M aligned) that is a table
    /// of 4K leaves over one aligned run of frames with equal flags back into a
    /// 2M leaf. Returns how many it collapsed. One cursor: one flush at the end,
    /// then the freed tables go back.
    pub(crate) fn collapse_2m(&mut self, start: usize, end: usize) -> u64 {
        let mut c = self.pt.cursor();
        let mut n = 0;
        for block in (start..end).step_by(LeafSize::Size2M.bytes()) {
            n += u64::from(c.collapse_2m(VirtAddr::from(block)));
        }
        n
    }
}
