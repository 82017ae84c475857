//! Collapsing: the inverse of a split. A table of 512 4K leaves that map one
//! 2M-aligned run of consecutive frames with equal flags is what splitting a 2M
//! leaf produces; once every page is back to the same flags (an `mprotect`
//! round trip), the table is replaced by that 2M leaf again with one write, and
//! the table frame is retired (freed after the flush, like every unlinked table).
//!
//! Invariants kept here: no translation changes (every address keeps its frame
//! and flags, only the leaf size grows); nothing is allocated, so a collapse
//! cannot fail halfway; a table whose entries differ in anything but the
//! consecutive addresses is left alone; shared root slots are never touched.

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use super::entry::{ENTRIES, Kind, PAGE, index, kind, span};
use super::{Cursor, Pt};

/// Height of 2M leaves.
const H2M: usize = 1;

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Cursor<'_, M, PTE, H> {
    /// Replaces the table of 4K leaves under the 2M entry at `vaddr` (2M
    /// aligned) by a single 2M leaf, if its 512 entries are present leaves
    /// with equal flags mapping consecutive frames from a 2M-aligned one.
    /// Returns whether it did; anything else (not aligned, not mapped, already
    /// a huge leaf, a hole, mixed flags or frames, a shared root slot) changes
    /// nothing and returns `false`.
    pub fn collapse_2m(&mut self, vaddr: M::VirtAddr) -> bool {
        let va: usize = vaddr.into();
        let Ok((la, _)) = Pt::<M, PTE, H>::linear_range(va, span(H2M)) else {
            return false;
        };
        if !la.is_multiple_of(span(H2M)) || self.pt.touches_shared(la, la + span(H2M)) {
            return false;
        }
        // Down to the table that holds the 2M entry.
        let mut table = self.pt.root_for(la);
        let mut h = Pt::<M, PTE, H>::TOP;
        while h > H2M {
            let pte = Pt::<M, PTE, H>::read(table, index(la, h));
            if kind(&pte, h) != Kind::Table {
                return false;
            }
            table = pte.paddr();
            h -= 1;
        }
        let idx = index(la, H2M);
        let entry = Pt::<M, PTE, H>::read(table, idx);
        if kind(&entry, H2M) != Kind::Table {
            return false;
        }
        let child = entry.paddr();
        let Some((base, flags)) = Self::uniform_run(child) else {
            return false;
        };
        Pt::<M, PTE, H>::write(table, idx, PTE::new_page(base, flags, true));
        self.retire(child);
        true
    }

    /// The first frame and the flags of a table of 4K leaves that map one
    /// 2M-aligned run of consecutive frames with equal flags, if it is one.
    fn uniform_run(child: PhysAddr) -> Option<(PhysAddr, MappingFlags)> {
        let first = Pt::<M, PTE, H>::read(child, 0);
        let base = first.paddr();
        if kind(&first, 0) != Kind::Leaf || !base.as_usize().is_multiple_of(span(H2M)) {
            return None;
        }
        let flags = first.flags();
        (1..ENTRIES)
            .all(|i| {
                let pte = Pt::<M, PTE, H>::read(child, i);
                kind(&pte, 0) == Kind::Leaf
                    && pte.flags() == flags
                    && pte.paddr().as_usize() == base.as_usize() + i * PAGE
            })
            .then_some((base, flags))
    }
}
