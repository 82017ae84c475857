//! Huge-leaf splits at the edges of an operation, their undo, and the count of
//! page-table frames a mapping would need.
//!
//! An operation whose range starts or ends inside a huge leaf first calls
//! [`Mapper::split_edges`], before the area set changes anything: each
//! straddling leaf becomes a table of next-size leaves with the same flags and
//! consecutive physical addresses (1G -> 2M -> 4K as needed), so every
//! translation of the rest is kept and the backends' unmap and protect only
//! ever meet whole leaves. A split needs one page-table frame per level; if
//! none is free, nothing is changed. When the operation fails afterwards,
//! [`Mapper::unsplit`] puts the huge leaves back (this cannot run out: removing
//! the split leaves frees at least the tables re-creating the leaf needs).
//! After a split, the frames of a huge data page are freed piecewise (the frame
//! allocator accepts that).
//!
//! [`Mapper::collapse_2m`] is the inverse: once an `mprotect` has given every
//! page of a split 2M block the same flags again, the table of 512 leaves over
//! one aligned run of frames becomes a 2M leaf again (no allocation; the table
//! frame is freed after the flush).
//!
//! [`Mapper::tables_needed`] counts, by walking the table, the frames a `FIXED`
//! replacement's new page tables will need ([`Mapper::reserve_tables`] holds
//! them).

use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};

use super::infallible;
use super::mapper::{ENTRIES, Mapper, block_end, read_pte, shift};
use crate::error::MapError;

/// A huge leaf split by [`Mapper::split_edges`], remembered so that a failing
/// operation can put it back ([`Mapper::unsplit`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split {
    base: usize,
    paddr: PhysAddr,
    size: usize,
    flags: MappingFlags,
}

/// The splits made at the two edges of a range.
pub(crate) type Splits = [Option<Split>; 2];

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler> Mapper<M, PTE, H> {
    /// Page-table frames that mapping every page of `[start, end)` with leaves
    /// of height `leaf_h` (0 = 4K, 1 = 2M, 2 = 1G) would allocate, given the
    /// tables that exist now (leaves in the range count as removed). Costs one
    /// walk per present table on the way, not per page.
    pub(super) fn tables_needed(&self, start: usize, end: usize, leaf_h: usize) -> usize {
        let top = M::LEVELS - 1;
        // The last missing table counted at each height (its id: address >> shift(h + 1)).
        let mut last = [usize::MAX; 8];
        let mut n = 0;
        let mut va = start;
        while va < end {
            let mut table = self.pt.root_paddr();
            let mut h = top;
            let hole_end = loop {
                if h == leaf_h {
                    // The table holding the leaves exists: nothing is missing in it.
                    break block_end(va, 1 << shift(h + 1), end);
                }
                let e = read_pte::<PTE, H>(table, (va >> shift(h)) & (ENTRIES - 1));
                if !e.is_present() || e.is_huge() {
                    break block_end(va, 1 << shift(h), end);
                }
                table = e.paddr();
                h -= 1;
            };
            // Tables at heights leaf_h..h are missing for [va, hole_end).
            for (j, seen) in last.iter_mut().enumerate().take(h).skip(leaf_h) {
                let (first, lastid) = (va >> shift(j + 1), (hole_end - 1) >> shift(j + 1));
                n += lastid - first + 1 - usize::from(*seen == first);
                *seen = lastid;
            }
            va = hole_end;
        }
        n
    }

    /// Splits a huge leaf that straddles `at`, keeping every translation.
    fn split_at(&mut self, at: usize) -> Result<Option<Split>, MapError> {
        let Some((pa, flags, size)) = self.query(VirtAddr::from(at)) else {
            return Ok(None);
        };
        let bytes = size.bytes();
        if at.is_multiple_of(bytes) {
            return Ok(None);
        }
        let base = at & !(bytes - 1);
        let paddr = pa - (at - base);
        // Protecting [base, at) with the leaf's own flags splits exactly at `at`.
        self.pt
            .cursor()
            .protect_region(base.into(), at - base, flags)
            .map_err(|_| MapError::NoMemory)?;
        Ok(Some(Split {
            base,
            paddr,
            size: bytes,
            flags,
        }))
    }

    /// Makes `start` and `end` leaf boundaries (splitting huge leaves that
    /// straddle them), so that unmapping or protecting `[start, end)` cannot
    /// fail afterwards. On failure nothing is changed.
    pub(crate) fn split_edges(&mut self, start: usize, end: usize) -> Result<Splits, MapError> {
        let a = self.split_at(start)?;
        match self.split_at(end) {
            Ok(b) => Ok([a, b]),
            Err(e) => {
                self.unsplit([a, None]);
                Err(e)
            }
        }
    }

    /// Turns every 2M block in `[start, end)` (both 2M aligned) that is a table
    /// of 4K leaves over one aligned run of frames with equal flags back into a
    /// 2M leaf. Returns how many it collapsed. One cursor: one flush at the end,
    /// then the freed tables go back.
    pub(crate) fn collapse_2m(&mut self, start: usize, end: usize) -> u64 {
        const M2: usize = 1 << 21;
        let mut c = self.pt.cursor();
        let mut n = 0;
        for block in (start..end).step_by(M2) {
            n += u64::from(c.collapse_2m(VirtAddr::from(block)));
        }
        n
    }

    /// Puts back the huge leaves of [`Self::split_edges`] (when the operation
    /// fails afterwards). Removing the split leaves frees at least as many
    /// table frames as re-creating the huge leaf needs, so this cannot run out.
    pub(crate) fn unsplit(&mut self, splits: Splits) {
        for s in splits.into_iter().rev().flatten() {
            let end = s.base + s.size;
            let r = self.pt.cursor().unmap_region(s.base.into(), s.size, |_| {});
            infallible(r, "unmap of a split huge page", s.base, end);
            let r = self
                .pt
                .cursor()
                .map_region(s.base.into(), s.paddr, s.size, s.flags, true);
            infallible(r, "restore of a huge page", s.base, end);
        }
    }
}
