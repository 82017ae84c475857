//! Range preparation: checks, and splitting huge leaves at a range's edges.
//!
//! Splitting replaces a huge leaf by a new table of 512 leaves one size down,
//! with the same flags and consecutive physical addresses, so no address
//! changes translation (only `MappingFlags` survive; architecture bits are
//! re-derived by the PTE format). Invariants kept here: a split is the only
//! allocation of a range operation other than `map`, and it happens before any
//! entry inside the range changes; the tables of one edge (two for a 1G leaf
//! split down to 4K) are all allocated before the straddling leaf is replaced
//! with one write, so running out of memory at an edge changes no entry; a
//! split forces a full flush; ranges that touch a
//! shared root slot are rejected before any walk.

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, PagingHandler, PagingMetaData};

use super::entry::{ENTRIES, Kind, MAX_LEAF_HEIGHT, index, kind, span};
use crate::error::RangeError;

use super::{Cursor, Pt};

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Cursor<'_, M, PTE, H> {
    /// Makes linear address `la` a leaf boundary, splitting huge leaves that
    /// straddle it. Keeps every translation and flag. On `NoMemory` no entry
    /// was changed.
    fn split_at(&mut self, la: usize) -> Result<(), RangeError> {
        let mut table = self.pt.root;
        let mut h = Pt::<M, PTE, H>::TOP;
        while la & (span(h) - 1) != 0 {
            let idx = index(la, h);
            let pte = Pt::<M, PTE, H>::read(table, idx);
            match kind(&pte, h) {
                Kind::Unused | Kind::Invalid => return Ok(()),
                Kind::Leaf => {
                    let child = Self::split_leaf(&pte, h, la).ok_or(RangeError::NoMemory)?;
                    Pt::<M, PTE, H>::write(table, idx, PTE::new_table(child));
                    self.full = true;
                    return Ok(());
                }
                Kind::Table => {}
            }
            table = pte.paddr();
            h -= 1;
        }
        Ok(())
    }

    /// The tables that replace `pte` (a leaf at height `h > 0` straddling
    /// linear address `la`): a table of 512 leaves one size down with its
    /// flags and consecutive physical addresses, and below it, if `la` still
    /// falls inside one of them, another such table for that one (1G -> 2M ->
    /// 4K). Returns the top table, not yet linked anywhere.
    ///
    /// Every frame is taken before any is filled: if one runs out, those taken
    /// go straight back to `H` (never reachable, so no flush is owed) and the
    /// caller fails with nothing changed, never with a leaf split halfway.
    fn split_leaf(pte: &PTE, h: usize, la: usize) -> Option<PhysAddr> {
        // Tables needed: one per height from `h` down while `la` stays inside a leaf.
        let mut n = 1;
        while n < h && la & (span(h - n) - 1) != 0 {
            n += 1;
        }
        let mut frames = [PhysAddr::from(0); MAX_LEAF_HEIGHT];
        for k in 0..n {
            match H::alloc_frame() {
                Some(f) => frames[k] = f,
                None => {
                    frames[..k].iter().for_each(|&f| H::dealloc_frame(f));
                    return None;
                }
            }
        }
        // frames[k] holds the leaves at height h - 1 - k; its entry for `la` is
        // replaced by frames[k + 1] (written before frames[k] is linked).
        let flags = pte.flags();
        let mut base = pte.paddr().as_usize();
        for k in 0..n {
            let ch = h - 1 - k;
            let cs = span(ch);
            for i in 0..ENTRIES {
                let leaf = PTE::new_page(PhysAddr::from(base + i * cs), flags, ch > 0);
                Pt::<M, PTE, H>::write(frames[k], i, leaf);
            }
            if k > 0 {
                Pt::<M, PTE, H>::write(frames[k - 1], index(la, ch + 1), PTE::new_table(frames[k]));
            }
            base += index(la, ch) * cs;
        }
        Some(frames[0])
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
