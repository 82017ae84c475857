//! Operation batches: several cursors, one flush.
//!
//! An address-space operation (an `munmap` over several areas, an
//! `mprotect` that splits a huge leaf first, a `FIXED` mapping over old ones)
//! runs several cursors. Between [`PageTable::begin_batch`] and
//! [`PageTable::end_batch`], a cursor's flush does not flush: it hands what it
//! changed and the table frames it retired to the table's batch. The data
//! frames its unmaps removed go to [`PageTable::free_after_flush`].
//! `end_batch` then flushes once (one shootdown, when a translation was
//! removed or weakened: see `crate::shootdown`), and only then frees the
//! retired tables and the data frames. This is what makes "one shootdown per
//! operation, whatever its length" hold, and keeps the rule that no frame is
//! freed before every CPU flushed.
//!
//! Invariants: outside a batch `pending` is empty and `frees` is empty;
//! batches nest (a depth count), and only the outermost `end_batch` flushes;
//! dropping the table with a batch open flushes and frees as `end_batch`
//! would.

use alloc::vec::Vec;

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, PagingHandler, PagingMetaData};

use super::PageTable;
use super::entry::RETIRED_TAG;

/// Leaf addresses remembered for a targeted flush before falling back to a
/// full one (per cursor, and per batch).
pub(super) const FLUSH_BATCH: usize = 16;

/// What the TLB must forget, and the table frames waiting for it.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) addrs: [usize; FLUSH_BATCH],
    pub(super) n_addrs: usize,
    pub(super) full: bool,
    /// A translation was removed or weakened (not only added).
    pub(super) weakened: bool,
    /// Head of the list of retired table frames, linked through their first
    /// word (tagged: `entry::retired_link`).
    pub(super) retired: Option<PhysAddr>,
}

impl Pending {
    pub(super) const fn new() -> Self {
        Self {
            addrs: [0; FLUSH_BATCH],
            n_addrs: 0,
            full: false,
            weakened: false,
            retired: None,
        }
    }

    #[inline(always)]
    pub(super) fn note(&mut self, va: usize) {
        if !self.full {
            if self.n_addrs < FLUSH_BATCH {
                self.addrs[self.n_addrs] = va;
                self.n_addrs += 1;
            } else {
                self.full = true;
            }
        }
    }

    /// Whether there is nothing to flush or free.
    pub(super) fn is_empty(&self) -> bool {
        self.n_addrs == 0 && !self.full && self.retired.is_none()
    }

    /// Moves everything of `other` into `self`.
    pub(super) fn absorb<H: PagingHandler>(&mut self, other: &mut Pending) {
        if other.full {
            self.full = true;
        }
        for &va in &other.addrs[..other.n_addrs] {
            self.note(va);
        }
        self.weakened |= other.weakened;
        if let Some(head) = other.retired.take() {
            // Append our list after the tail of `other`'s.
            let mut tail = head;
            loop {
                let link = H::phys_to_virt(tail).as_ptr().cast::<usize>();
                // SAFETY: `tail` is a retired table frame still owned (not freed);
                // its first word holds the next link, written by `retire`.
                let next = unsafe { link.read_volatile() } & !RETIRED_TAG;
                if next == 0 {
                    let ours = self.retired.map_or(0, |p| p.as_usize());
                    let link = H::phys_to_virt(tail).as_mut_ptr().cast::<usize>();
                    // SAFETY: as above; the tag keeps the word an invalid entry
                    // for a stale hardware walk.
                    unsafe { link.write_volatile(ours | RETIRED_TAG) };
                    break;
                }
                tail = PhysAddr::from(next);
            }
            self.retired = Some(head);
        }
        other.n_addrs = 0;
        other.full = false;
        other.weakened = false;
    }

    /// Flushes (every CPU through the installed shootdown if a translation was
    /// weakened, else locally), then frees the retired table frames.
    pub(super) fn run<M: PagingMetaData, H: PagingHandler>(&mut self, root: PhysAddr) {
        match crate::shootdown::installed() {
            Some(s) if self.weakened => s.shootdown(root, &self.addrs[..self.n_addrs], self.full),
            _ if self.full => M::flush_tlb(None),
            _ => {
                for &va in &self.addrs[..self.n_addrs] {
                    M::flush_tlb(Some(va.into()));
                }
            }
        }
        self.full = false;
        self.weakened = false;
        self.n_addrs = 0;
        while let Some(frame) = self.retired {
            let link = H::phys_to_virt(frame).as_ptr().cast::<usize>();
            // SAFETY: `frame` is a retired table frame we still own (not yet
            // freed); its first word holds the next link, written by `retire`.
            let next = unsafe { link.read_volatile() } & !RETIRED_TAG;
            self.retired = (next != 0).then(|| PhysAddr::from(next));
            H::dealloc_frame(frame);
        }
    }
}

/// A table's open batch (see the module docs).
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) depth: u32,
    pub(super) pending: Pending,
    /// Data frames to free after the flush: (first frame, frames).
    pub(super) frees: Vec<(PhysAddr, usize)>,
}

impl Batch {
    pub(super) const fn new() -> Self {
        Self {
            depth: 0,
            pending: Pending::new(),
            frees: Vec::new(),
        }
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> PageTable<M, PTE, H> {
    /// Opens a batch: until the matching [`PageTable::end_batch`], cursors
    /// leave their flush to the batch (see the module docs). Batches nest.
    pub fn begin_batch(&mut self) {
        self.batch.depth += 1;
    }

    /// Whether a batch is open.
    pub fn in_batch(&self) -> bool {
        self.batch.depth > 0
    }

    /// Closes a batch; the outermost one flushes once, then frees the retired
    /// tables and the data frames given to [`PageTable::free_after_flush`].
    /// Without an open batch, does nothing.
    pub fn end_batch(&mut self) {
        match self.batch.depth {
            0 => {}
            1 => {
                self.settle();
                self.batch.depth = 0;
            }
            _ => self.batch.depth -= 1,
        }
    }

    /// Flushes what the open batch gathered so far and frees its frames,
    /// keeping the batch open: for an operation that must reuse the frames it
    /// freed (a `FIXED` mapping over an old one, whose new tables take the
    /// place of those the removal freed). Without a batch, does nothing.
    pub fn flush_batch(&mut self) {
        if self.batch.depth > 0 {
            self.settle();
        }
    }

    fn settle(&mut self) {
        let root = self.root_paddr();
        self.batch.pending.run::<M, H>(root);
        for (pa, n) in self.batch.frees.drain(..) {
            H::dealloc_frames(pa, n);
        }
    }

    /// Frees `frames` data frames from `pa` that a dropped (or flushed) cursor
    /// of this table unmapped: at once outside a batch (the cursor flushed),
    /// after the batch's flush inside one. If the list cannot grow, the batch
    /// flushes now and the frames are freed at once.
    pub fn free_after_flush(&mut self, pa: PhysAddr, frames: usize) {
        if self.batch.depth == 0 {
            H::dealloc_frames(pa, frames);
        } else if self.batch.frees.try_reserve(1).is_ok() {
            self.batch.frees.push((pa, frames));
        } else {
            self.settle();
            H::dealloc_frames(pa, frames);
        }
    }

    /// Hands a cursor's flush to the open batch; false without one.
    pub(super) fn defer(&mut self, p: &mut Pending) -> bool {
        if self.batch.depth == 0 {
            return false;
        }
        self.batch.pending.absorb::<H>(p);
        debug_assert!(p.is_empty());
        true
    }
}
