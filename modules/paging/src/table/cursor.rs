//! The cursor: flush-on-drop guard, retired-frame list, single-page operations.
//!
//! A [`Cursor`] mutably borrows its [`PageTable`] and is the only way to change
//! it. Invariants kept here: every changed leaf address is recorded (`note`) or
//! the cursor is switched to a full flush; unlinking a table or splitting a leaf
//! forces a full flush; a retired table frame is linked into a list through its
//! first word (tagged so that a stale hardware walk reads an invalid entry in
//! every format: `entry::retired_link`) and returned to `H` only after
//! `M::flush_tlb` has run, in [`Cursor::flush`] or on drop. Single-page `map` descends once from the root
//! and builds missing tables off to the side, linking them with one write (a
//! path it cannot finish is freed unlinked, never having been reachable); the
//! single-page unmap and protect check their page and defer to `region`.

use core::ops::Deref;

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use crate::error::{MapError, PageError, ProtectError, RangeError, UnmapError};
use crate::size::PageSize;

use super::batch::Pending;
use super::entry::{ENTRIES, Kind, RETIRED_TAG, index, kind, leaf_flags_ok};
use super::{Leaf, PageTable, Pt};

/// A batch of changes to a [`PageTable`].
///
/// Records what the TLB must forget; on drop (or [`Cursor::flush`]) it calls
/// `M::flush_tlb` (or the installed shootdown), then frees the table frames it
/// retired; inside an operation batch ([`PageTable::begin_batch`]) it hands
/// both to the batch instead. Dereferences to the table for queries.
pub struct Cursor<'a, M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> {
    pub(super) pt: &'a mut PageTable<M, PTE, H>,
    pub(super) st: Pending,
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Deref for Cursor<'_, M, PTE, H> {
    type Target = PageTable<M, PTE, H>;

    fn deref(&self) -> &Self::Target {
        self.pt
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Drop for Cursor<'_, M, PTE, H> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> PageTable<M, PTE, H> {
    /// Starts a batch of changes. The cursor flushes the TLB when dropped.
    pub fn cursor(&mut self) -> Cursor<'_, M, PTE, H> {
        Cursor {
            pt: self,
            st: Pending::new(),
        }
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> PageTable<M, PTE, H> {
    /// Checks that `va` is a valid address aligned to `S`; returns it in linear space.
    pub(super) fn page_la<S: PageSize>(va: usize) -> Result<usize, RangeError> {
        if !va.is_multiple_of(S::SIZE) {
            return Err(RangeError::NotAligned);
        }
        if !Self::translates(va) {
            return Err(RangeError::OutOfRange);
        }
        Ok(va & Self::LA_MASK)
    }

    /// Checks that a leaf of size `S` or larger maps linear address `la`.
    fn mapped_as<S: PageSize>(&self, la: usize) -> Result<(), PageError> {
        match self.find(la) {
            None => Err(PageError::NotMapped),
            Some((_, h)) if h < S::HEIGHT => Err(PageError::SizeMismatch),
            Some(_) => Ok(()),
        }
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Cursor<'_, M, PTE, H> {
    /// Flushes the TLB for everything changed so far, then frees the retired
    /// table frames. Does nothing if nothing changed.
    pub fn flush(&mut self) {
        if self.st.is_empty() || self.pt.defer(&mut self.st) {
            return;
        }
        let root = self.pt.root_paddr();
        self.st.run::<M, H>(root);
    }

    #[inline(always)]
    pub(super) fn note(&mut self, va: usize) {
        self.st.note(va);
    }

    /// Records that the translation of the leaf at `va` was removed or
    /// weakened: every CPU must flush it.
    #[inline(always)]
    pub(super) fn note_weakened(&mut self, va: usize) {
        self.st.weakened = true;
        self.st.note(va);
    }

    /// Asks for a full flush on every CPU (a split leaf, an unlinked table).
    #[inline(always)]
    pub(super) fn weaken_all(&mut self) {
        self.st.weakened = true;
        self.st.full = true;
    }

    /// Queues an unlinked table frame (empty, or a collapsed table of leaves) to
    /// be freed after the next flush.
    pub(super) fn retire(&mut self, frame: PhysAddr) {
        self.weaken_all();
        let next = self.st.retired.map_or(0, |p| p.as_usize());
        let link = H::phys_to_virt(frame).as_mut_ptr().cast::<usize>();
        // SAFETY: `frame` is a table just unlinked from its parent and owned by
        // us. Its first word becomes the list link, tagged so that a stale
        // hardware walk reads an invalid entry in every format
        // (`entry::retired_link`).
        unsafe { link.write_volatile(next | RETIRED_TAG) };
        self.st.retired = Some(frame);
    }

    /// Maps one page of size `S` at `vaddr` to `paddr`, creating the tables down
    /// to `S`'s level. Fails with `AlreadyMapped` if anything is mapped there
    /// (a larger leaf covering it, or smaller leaves inside it).
    ///
    /// One descent from the root, not the region walk: the checks are those of
    /// [`Cursor::map_region`] (same errors), then the existing tables are followed
    /// down to `S`'s level; the missing ones are built off to the side and linked
    /// with a single write (see `new_path`). On error nothing was changed.
    pub fn map<S: PageSize>(
        &mut self,
        vaddr: M::VirtAddr,
        paddr: PhysAddr,
        flags: MappingFlags,
    ) -> Result<(), MapError> {
        let va: usize = vaddr.into();
        let pa = paddr.as_usize();
        if !va.is_multiple_of(S::SIZE) || !pa.is_multiple_of(S::SIZE) {
            return Err(MapError::NotAligned);
        }
        let (la, _) = self.map_checks(va, pa, S::SIZE, flags)?;
        self.map_page(la, pa, flags, S::HEIGHT)?;
        self.note(va);
        Ok(())
    }

    /// Writes a leaf at height `leaf_h` mapping linear address `la` (aligned to
    /// that leaf) to `pa`, creating the missing tables. Fails with `AlreadyMapped`,
    /// changing nothing, if the slot is not unused or the path to it holds a leaf
    /// (or any entry that is neither unused nor a table).
    #[inline(always)]
    fn map_page(
        &mut self,
        la: usize,
        pa: usize,
        flags: MappingFlags,
        leaf_h: usize,
    ) -> Result<(), MapError> {
        let mut table = self.pt.root_for(la);
        let mut h = Pt::<M, PTE, H>::TOP;
        loop {
            let idx = index(la, h);
            let pte = Pt::<M, PTE, H>::read(table, idx);
            if h == leaf_h {
                if !pte.is_unused() {
                    return Err(MapError::AlreadyMapped);
                }
                Pt::<M, PTE, H>::write(table, idx, PTE::new_page(pa.into(), flags, h > 0));
                return Ok(());
            }
            if pte.is_unused() {
                let top = Self::new_path(la, pa, flags, h - 1, leaf_h)?;
                Pt::<M, PTE, H>::write(table, idx, PTE::new_table(top));
                return Ok(());
            }
            if kind(&pte, h) != Kind::Table {
                return Err(MapError::AlreadyMapped);
            }
            table = pte.paddr();
            h -= 1;
        }
    }

    /// Builds the tables at heights `h` down to `leaf_h` on the path to linear
    /// address `la`, each linked into the one above, with the leaf for `pa` in the
    /// lowest; returns the highest, not yet linked anywhere.
    ///
    /// If a frame runs out, the frames taken so far go straight back to `H`:
    /// none was ever reachable from the root, so no walk and no TLB can hold
    /// them and the flush-then-free rule (which is for unlinked tables) does not
    /// apply. The page table is then exactly as before.
    #[inline(never)]
    fn new_path(
        la: usize,
        pa: usize,
        flags: MappingFlags,
        h: usize,
        leaf_h: usize,
    ) -> Result<PhysAddr, MapError> {
        // Heights h..=leaf_h, at most LEVELS - 1 <= 4 tables below the root.
        let mut frames = [PhysAddr::from(0); 4];
        let n = h - leaf_h + 1;
        for k in 0..n {
            match Pt::<M, PTE, H>::alloc_table() {
                Some(f) => frames[k] = f,
                None => {
                    frames[..k].iter().for_each(|&f| H::dealloc_frame(f));
                    return Err(MapError::NoMemory);
                }
            }
        }
        // frames[k] is the table at height h - k.
        let leaf = PTE::new_page(pa.into(), flags, leaf_h > 0);
        Pt::<M, PTE, H>::write(frames[n - 1], index(la, leaf_h), leaf);
        for k in (0..n - 1).rev() {
            let child = PTE::new_table(frames[k + 1]);
            Pt::<M, PTE, H>::write(frames[k], index(la, h - k), child);
        }
        Ok(frames[0])
    }

    /// Unmaps the page of size `S` at `vaddr` and returns it. If a larger leaf
    /// covers it, that leaf is split and the rest stays mapped.
    pub fn unmap<S: PageSize>(
        &mut self,
        vaddr: M::VirtAddr,
    ) -> Result<Leaf<M::VirtAddr>, UnmapError> {
        let la = Pt::<M, PTE, H>::page_la::<S>(vaddr.into())?;
        self.pt.mapped_as::<S>(la)?;
        let mut out = None;
        self.unmap_region(vaddr, S::SIZE, |l| out = Some(l))?;
        out.ok_or(UnmapError::NotMapped)
    }

    /// Sets `flags` on the page of size `S` at `vaddr`. If a larger leaf covers
    /// it, that leaf is split and the rest keeps its flags.
    pub fn protect<S: PageSize>(
        &mut self,
        vaddr: M::VirtAddr,
        flags: MappingFlags,
    ) -> Result<(), ProtectError> {
        let la = Pt::<M, PTE, H>::page_la::<S>(vaddr.into())?;
        if !leaf_flags_ok::<PTE>(flags) {
            return Err(ProtectError::InvalidFlags);
        }
        self.pt.mapped_as::<S>(la)?;
        self.protect_region(vaddr, S::SIZE, flags)
    }

    /// Shares the upper half of the translated space (root slots 256..512)
    /// with `other`, for address spaces that share the kernel half: with one
    /// root the slots' entries are copied; with a root per half
    /// ([`super::RootLayout::PerHalf`]) `other`'s upper root becomes this
    /// table's upper root. The shared slots are not owned: this table never
    /// frees, changes or maps into them (operations touching them fail with
    /// `Shared`).
    ///
    /// Fails with `AlreadyMapped` if this table has anything of its own there,
    /// and with `Shared` if the two tables' layouts differ.
    ///
    /// # Safety
    ///
    /// The tables referenced by the copied entries (or the shared upper root)
    /// must stay alive and in place as long as this table exists: `other` must
    /// outlive it, and nothing may unmap `other`'s upper half in a way that
    /// frees those tables. With a root per half this table's upper root
    /// changes: a CPU that has the table active must load [`PageTable::roots`]
    /// again before it uses the upper half (the old upper root is retired, so
    /// it is freed only after this cursor's flush, but a translation register
    /// still naming it would point at a freed frame afterwards).
    pub unsafe fn copy_kernel_half(
        &mut self,
        other: &PageTable<M, PTE, H>,
    ) -> Result<(), MapError> {
        if self.pt.layout() != other.layout() {
            return Err(MapError::Shared);
        }
        let root = self.pt.roots[1];
        for i in ENTRIES / 2..ENTRIES {
            if !self.pt.is_shared(i) && !Pt::<M, PTE, H>::read(root, i).is_unused() {
                return Err(MapError::AlreadyMapped);
            }
        }
        if self.pt.roots[0] != root {
            if !self.pt.is_shared(ENTRIES / 2) {
                // Our own upper root is empty (checked above); a CPU with this
                // table active may still walk it until the flush, so it goes
                // through the retired list like any unlinked table.
                self.retire(root);
            }
            self.pt.roots[1] = other.roots[1];
        } else {
            for i in ENTRIES / 2..ENTRIES {
                Pt::<M, PTE, H>::write(root, i, Pt::<M, PTE, H>::read(other.roots[1], i));
            }
        }
        for i in ENTRIES / 2..ENTRIES {
            self.pt.shared[i / 64] |= 1 << (i % 64);
        }
        self.weaken_all();
        Ok(())
    }
}
