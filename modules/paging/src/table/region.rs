//! Map, unmap and protect over a range of pages, skipping what is not there.
//!
//! Invariants kept here: `map_region` is all or nothing (it checks the range is
//! empty before writing, and rolls back what it created if a table allocation
//! fails); unmap and protect run only after `split::prepare_range` has made both
//! edges leaf boundaries, so every leaf they touch lies wholly inside the range;
//! the unmap and protect walks visit only entries that are in use (absent
//! subtrees cost one zero-scan), so their cost follows what is mapped; a table
//! left empty by an unmap is unlinked and retired to the cursor (crate
//! invariant 3), never the root; every changed leaf is noted for the flush.

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use crate::error::{MapError, ProtectError, UnmapError};

use super::entry::{EmptyEntry, Kind, MAX_LEAF_HEIGHT, PAGE, entry_end, index, kind};
use super::entry::{leaf_flags_ok, leaf_size, span};
use super::{Cursor, Leaf, PageTable, Pt};

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> PageTable<M, PTE, H> {
    /// Whether nothing (no leaf, no `Invalid` entry) overlaps the linear range
    /// `[s, e)` under `table`.
    fn range_empty(table: PhysAddr, h: usize, s: usize, e: usize) -> bool {
        let (tb, last) = (Self::table_base(s, h), index(e - 1, h));
        let mut i = index(s, h);
        while let Some(j) = Self::next_used(table, i, last) {
            let la = s.max(tb + j * span(h));
            let ee = e.min(tb + (j + 1) * span(h));
            let pte = Self::read(table, j);
            let empty = match kind(&pte, h) {
                Kind::Table => Self::range_empty(pte.paddr(), h - 1, la, ee),
                Kind::Unused => true,
                Kind::Leaf | Kind::Invalid => false,
            };
            if !empty {
                return false;
            }
            i = j + 1;
        }
        true
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Cursor<'_, M, PTE, H> {
    // ---------------------------------------------------------------- map

    /// Maps `[vaddr, vaddr + size)` to `[paddr, paddr + size)`.
    ///
    /// With `allow_huge`, each step uses the largest leaf (1G, 2M, else 4K) that
    /// both addresses' alignment and the remaining size permit. All or nothing:
    /// on error the table is as before.
    pub fn map_region(
        &mut self,
        vaddr: M::VirtAddr,
        paddr: PhysAddr,
        size: usize,
        flags: MappingFlags,
        allow_huge: bool,
    ) -> Result<(), MapError> {
        let max_h = if allow_huge { MAX_LEAF_HEIGHT } else { 0 };
        self.map_impl(vaddr.into(), paddr.as_usize(), size, flags, max_h)
    }

    /// The checks every map makes, in order (each failing with its own error):
    /// the virtual range, the physical alignment, the flags, the physical range
    /// (skipped if `size` is 0) and shared root slots. Returns the range in
    /// linear space.
    #[inline(always)]
    pub(super) fn map_checks(
        &self,
        va: usize,
        pa: usize,
        size: usize,
        flags: MappingFlags,
    ) -> Result<(usize, usize), MapError> {
        let (s, e) = Pt::<M, PTE, H>::linear_range(va, size)?;
        if !pa.is_multiple_of(PAGE) {
            return Err(MapError::NotAligned);
        }
        if !leaf_flags_ok::<PTE>(flags) {
            return Err(MapError::InvalidFlags);
        }
        if size == 0 {
            return Ok((s, e));
        }
        match pa.checked_add(size - 1) {
            Some(last) if M::paddr_is_valid(last) => {}
            _ => return Err(MapError::OutOfRange),
        }
        if self.pt.touches_shared(s, e) {
            return Err(MapError::Shared);
        }
        Ok((s, e))
    }

    fn map_impl(
        &mut self,
        va: usize,
        pa: usize,
        size: usize,
        flags: MappingFlags,
        max_h: usize,
    ) -> Result<(), MapError> {
        let (s, e) = self.map_checks(va, pa, size, flags)?;
        if s == e {
            return Ok(());
        }
        let root = self.pt.root_for(s);
        if !Pt::<M, PTE, H>::range_empty(root, Pt::<M, PTE, H>::TOP, s, e) {
            return Err(MapError::AlreadyMapped);
        }
        let delta = va.wrapping_sub(s);
        let r = self.map_rec(root, Pt::<M, PTE, H>::TOP, s, e, pa, flags, max_h, delta);
        if r.is_err() {
            // Roll back: the range was empty, so removing everything in it (and the
            // tables that become empty) restores the previous state.
            self.unmap_rec(root, Pt::<M, PTE, H>::TOP, s, e, delta, &mut |_| {});
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn map_rec(
        &mut self,
        table: PhysAddr,
        h: usize,
        s: usize,
        e: usize,
        pa_s: usize,
        flags: MappingFlags,
        max_h: usize,
        delta: usize,
    ) -> Result<(), MapError> {
        let sp = span(h);
        let mut la = s;
        while la < e {
            let ee = entry_end(la, h).min(e);
            let pa = pa_s + (la - s);
            let idx = index(la, h);
            let pte = Pt::<M, PTE, H>::read(table, idx);
            if h <= max_h && ee - la == sp && pa & (sp - 1) == 0 {
                if !pte.is_unused() {
                    return Err(MapError::AlreadyMapped);
                }
                Pt::<M, PTE, H>::write(table, idx, PTE::new_page(pa.into(), flags, h > 0));
                self.note(la.wrapping_add(delta));
            } else {
                let child = if pte.is_unused() {
                    let child = Pt::<M, PTE, H>::alloc_table().ok_or(MapError::NoMemory)?;
                    Pt::<M, PTE, H>::write(table, idx, PTE::new_table(child));
                    child
                } else if kind(&pte, h) != Kind::Table {
                    return Err(MapError::AlreadyMapped);
                } else {
                    pte.paddr()
                };
                self.map_rec(child, h - 1, la, ee, pa, flags, max_h, delta)?;
            }
            la = ee;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- unmap

    /// Unmaps whatever is mapped in `[vaddr, vaddr + size)` (any 4K-aligned range;
    /// holes are fine and cost nothing). Huge leaves crossing the edges are split
    /// first; tables left empty are unlinked and freed after the flush.
    ///
    /// `on_leaf` receives each removed leaf; free its frame only after the flush.
    /// On error nothing was unmapped.
    pub fn unmap_region(
        &mut self,
        vaddr: M::VirtAddr,
        size: usize,
        mut on_leaf: impl FnMut(Leaf<M::VirtAddr>),
    ) -> Result<(), UnmapError> {
        let va: usize = vaddr.into();
        let (s, e) = self.prepare_range(va, size)?;
        if s < e {
            let root = self.pt.root_for(s);
            let delta = va.wrapping_sub(s);
            self.unmap_rec(root, Pt::<M, PTE, H>::TOP, s, e, delta, &mut on_leaf);
        }
        Ok(())
    }

    /// Clears the leaves in `[s, e)` under `table` (edges are leaf boundaries).
    /// Returns whether `table` is empty afterwards.
    fn unmap_rec<F: FnMut(Leaf<M::VirtAddr>)>(
        &mut self,
        table: PhysAddr,
        h: usize,
        s: usize,
        e: usize,
        delta: usize,
        on_leaf: &mut F,
    ) -> bool {
        // The 4K level gets its own copy of the loop, with the height a
        // constant, so `kind` reduces to a present-bit test there.
        if h == 0 {
            self.unmap_table(table, 0, s, e, delta, on_leaf)
        } else {
            self.unmap_table(table, h, s, e, delta, on_leaf)
        }
    }

    #[inline(always)]
    fn unmap_table<F: FnMut(Leaf<M::VirtAddr>)>(
        &mut self,
        table: PhysAddr,
        h: usize,
        s: usize,
        e: usize,
        delta: usize,
        on_leaf: &mut F,
    ) -> bool {
        let (tb, last) = (Pt::<M, PTE, H>::table_base(s, h), index(e - 1, h));
        let mut i = index(s, h);
        while let Some(idx) = Pt::<M, PTE, H>::next_used(table, i, last) {
            i = idx + 1;
            let la = s.max(tb + idx * span(h));
            let ee = e.min(tb + (idx + 1) * span(h));
            let pte = Pt::<M, PTE, H>::read(table, idx);
            match kind(&pte, h) {
                Kind::Unused => {}
                // Translates nothing: cleared, not reported.
                Kind::Invalid => Pt::<M, PTE, H>::write(table, idx, PTE::empty_entry()),
                Kind::Leaf => {
                    // Edges were split, so this leaf lies wholly inside the range.
                    Pt::<M, PTE, H>::write(table, idx, PTE::empty_entry());
                    let va = la.wrapping_add(delta);
                    self.note_weakened(va);
                    on_leaf(Leaf {
                        vaddr: va.into(),
                        paddr: pte.paddr(),
                        size: leaf_size(h),
                        flags: pte.flags(),
                    });
                }
                Kind::Table => {
                    let child = pte.paddr();
                    if self.unmap_rec(child, h - 1, la, ee, delta, on_leaf) {
                        Pt::<M, PTE, H>::write(table, idx, PTE::empty_entry());
                        self.retire(child);
                    }
                }
            }
        }
        if h == Pt::<M, PTE, H>::TOP {
            return false; // the root is never retired
        }
        let whole = s & (span(h + 1) - 1) == 0 && e - s == span(h + 1);
        whole || Pt::<M, PTE, H>::table_is_empty(table)
    }

    // ---------------------------------------------------------------- protect

    /// Sets `flags` on every leaf in `[vaddr, vaddr + size)` (any 4K-aligned range;
    /// holes are skipped whole). Huge leaves crossing the edges are split first.
    /// On error no flags were changed.
    pub fn protect_region(
        &mut self,
        vaddr: M::VirtAddr,
        size: usize,
        flags: MappingFlags,
    ) -> Result<(), ProtectError> {
        if !leaf_flags_ok::<PTE>(flags) {
            return Err(ProtectError::InvalidFlags);
        }
        let va: usize = vaddr.into();
        let (s, e) = self.prepare_range(va, size)?;
        if s < e {
            let root = self.pt.root_for(s);
            self.protect_rec(root, Pt::<M, PTE, H>::TOP, s, e, va.wrapping_sub(s), flags);
        }
        Ok(())
    }

    fn protect_rec(
        &mut self,
        table: PhysAddr,
        h: usize,
        s: usize,
        e: usize,
        delta: usize,
        flags: MappingFlags,
    ) {
        // As in `unmap_rec`: a copy of the loop for the 4K level.
        if h == 0 {
            self.protect_table(table, 0, s, e, delta, flags);
        } else {
            self.protect_table(table, h, s, e, delta, flags);
        }
    }

    #[inline(always)]
    fn protect_table(
        &mut self,
        table: PhysAddr,
        h: usize,
        s: usize,
        e: usize,
        delta: usize,
        flags: MappingFlags,
    ) {
        let (tb, last) = (Pt::<M, PTE, H>::table_base(s, h), index(e - 1, h));
        let mut i = index(s, h);
        while let Some(idx) = Pt::<M, PTE, H>::next_used(table, i, last) {
            i = idx + 1;
            let la = s.max(tb + idx * span(h));
            let ee = e.min(tb + (idx + 1) * span(h));
            let mut pte = Pt::<M, PTE, H>::read(table, idx);
            match kind(&pte, h) {
                Kind::Leaf => {
                    let old = pte.flags();
                    pte.set_flags(flags, h > 0);
                    Pt::<M, PTE, H>::write(table, idx, pte);
                    if flags.contains(old) {
                        // Only access was added: a CPU with the old entry
                        // cached faults and flushes it (a spurious fault), so
                        // the flush is local.
                        self.note(la.wrapping_add(delta));
                    } else {
                        self.note_weakened(la.wrapping_add(delta));
                    }
                }
                Kind::Table => self.protect_rec(pte.paddr(), h - 1, la, ee, delta, flags),
                Kind::Unused | Kind::Invalid => {}
            }
        }
    }
}
