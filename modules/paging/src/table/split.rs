//! Range preparation: checks, and splitting huge leaves at a range's edges.
//!
//! Splitting replaces a huge leaf by a new table of 512 leaves one size down,
//! with the same flags and consecutive physical addresses, so no address
//! changes translation (only `MappingFlags` survive; architecture bits are
//! re-derived by the PTE format). Invariants kept here: a split is the only
//! allocation of a range operation other than `map`, and it happens before any
//! entry inside the range changes, so running out of memory leaves every
//! translation as it was; a split forces a full flush; ranges that touch a
//! shared root slot are rejected before any walk.

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, PagingHandler, PagingMetaData};

use super::entry::{ENTRIES, index, is_leaf, span};
use crate::error::RangeError;

use super::{Cursor, Pt};

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Cursor<'_, M, PTE, H> {
    /// Makes linear address `la` a leaf boundary, splitting huge leaves that
    /// straddle it. Keeps every translation and flag.
    fn split_at(&mut self, la: usize) -> Result<(), RangeError> {
        let mut table = self.pt.root;
        let mut h = Pt::<M, PTE, H>::TOP;
        while la & (span(h) - 1) != 0 {
            let idx = index(la, h);
            let pte = Pt::<M, PTE, H>::read(table, idx);
            if !pte.is_present() {
                return Ok(());
            }
            let next = if is_leaf(&pte, h) {
                let child = Self::split_leaf(&pte, h).ok_or(RangeError::NoMemory)?;
                Pt::<M, PTE, H>::write(table, idx, PTE::new_table(child));
                self.full = true;
                child
            } else {
                pte.paddr()
            };
            table = next;
            h -= 1;
        }
        Ok(())
    }

    /// A new table of 512 leaves one size down, covering what `pte` (a leaf at
    /// height `h > 0`) maps, with its flags.
    fn split_leaf(pte: &PTE, h: usize) -> Option<PhysAddr> {
        let child = H::alloc_frame()?;
        let flags = pte.flags();
        let base = pte.paddr().as_usize();
        let cs = span(h - 1);
        for i in 0..ENTRIES {
            let leaf = PTE::new_page(PhysAddr::from(base + i * cs), flags, h - 1 > 0);
            Pt::<M, PTE, H>::write(child, i, leaf);
        }
        Some(child)
    }

    /// Checks a range, rejects shared slots, and splits at both edges.
    pub(super) fn prepare_range(
        &mut self,
        va: usize,
        size: usize,
    ) -> Result<(usize, usize), RangeError> {
        let (s, e) = Pt::<M, PTE, H>::linear_range(va, size)?;
        if s == e {
            return Ok((s, e));
        }
        if self.pt.touches_shared(s, e) {
            return Err(RangeError::Shared);
        }
        self.split_at(s)?;
        if e <= Pt::<M, PTE, H>::LA_MASK {
            self.split_at(e)?;
        }
        Ok((s, e))
    }
}
