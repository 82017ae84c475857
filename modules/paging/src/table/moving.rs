//! Moving translations ([`Cursor::move_region`], for `mremap`): every leaf of
//! a source range is re-linked at the same offset in a destination range, with
//! its frame and flags; no data is copied and no leaf is re-created where a
//! whole entry can move instead.
//!
//! A move is three walks over the source range, after checks that change
//! nothing (alignment, both ranges valid and disjoint, no shared root slot, no
//! huge leaf straddling a source edge, an empty destination):
//!
//! 1. **Count.** Decides, entry by entry, what goes where, and counts the
//!    destination tables that are missing. A source entry (a leaf, or a table
//!    link) moves *whole* when its span lies inside the range, the destination
//!    address is aligned to that span (`(to - from) % span == 0`) and the
//!    destination slot is free (unused, or under a table not built yet);
//!    otherwise a table is descended, and a huge leaf is re-written as leaves
//!    of the largest size the destination's alignment allows (its frames and
//!    flags, consecutive physical addresses: a split done by the move).
//! 2. **Move.** The missing tables are all allocated first (zeroed, chained
//!    through their first word, linked nowhere); if one runs out, those taken
//!    go straight back to `H` and the move fails with `NoMemory`, the table
//!    exactly as before. Then the same decisions are taken again on the same
//!    tree, so the walk uses exactly the counted tables: each entry is written
//!    at the destination (by value: a whole entry keeps every bit) and then
//!    cleared at the source.
//! 3. **Prune.** Source tables left empty are unlinked and retired (crate
//!    invariant 3; never a root). This waits for the whole move: a source
//!    table emptied early may still receive destination entries later in the
//!    walk (a downward move by less than the table's span).
//!
//! Invariants kept here: no source entry changes before every table the move
//! needs is held, so a failure at any point changes nothing; the destination
//! addresses the walks ask for never decrease, so one cached table per height
//! finds (and in the count, counts once) each destination table; a destination
//! table is never a table that moves whole (its span would meet both ranges)
//! and is never retired (it holds what was moved into it); every source leaf
//! removed is noted as weakened and every destination leaf written is noted,
//! and a table link that moves forces a full flush on every CPU (as an
//! unlinked table does), so stale walks through the old path are dropped
//! before the retired frames are freed.
//!
//! Between the copy of an entry and the clear of its source, the hardware may
//! set accessed/dirty bits in the source entry; those are lost (the entry is
//! read once). A huge leaf re-written as smaller leaves keeps only its
//! `MappingFlags`, as a split does. Foreign entries that translate nothing
//! (`Kind::Invalid`) are cleared from the source like an unmap does, except
//! inside a table that moves whole, where they move along with it.

use axerrno::AxError;
use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, PagingHandler, PagingMetaData};

use crate::error::RangeError;

use super::entry::{EmptyEntry, Kind, PAGE, index, kind, span};
use super::{Cursor, Pt};

/// Why a move ([`Cursor::move_region`]) failed. On error nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveError {
    /// An address or the size is not 4K aligned, or the size is 0.
    NotAligned,
    /// A range is outside the translated space or crosses the hole between
    /// the halves.
    OutOfRange,
    /// The source and destination ranges overlap.
    Overlap,
    /// A range touches root entries shared from another table.
    Shared,
    /// A huge leaf straddles the start or the end of the source range (split
    /// it first with [`Cursor::split_at`]).
    Straddles,
    /// Something is mapped in the destination range (a leaf, or an entry that
    /// is neither a table nor unused).
    AlreadyMapped,
    /// A destination table frame could not be allocated.
    NoMemory,
}

impl From<RangeError> for MoveError {
    fn from(e: RangeError) -> Self {
        match e {
            RangeError::NotAligned => Self::NotAligned,
            RangeError::OutOfRange => Self::OutOfRange,
            RangeError::Shared => Self::Shared,
            RangeError::NoMemory => Self::NoMemory,
        }
    }
}

/// The same [`AxError`] as the variant of the same name in the other error
/// enums; `Overlap` and `Straddles` (bad arguments) are `InvalidInput`.
impl From<MoveError> for AxError {
    fn from(e: MoveError) -> Self {
        match e {
            MoveError::AlreadyMapped => AxError::AlreadyExists,
            MoveError::NoMemory => AxError::NoMemory,
            MoveError::OutOfRange => AxError::BadAddress,
            MoveError::Shared => AxError::PermissionDenied,
            MoveError::NotAligned | MoveError::Overlap | MoveError::Straddles => {
                AxError::InvalidInput
            }
        }
    }
}

/// A destination table as a walk sees it.
#[derive(Debug, Clone, Copy)]
enum Dest {
    /// The table exists (or was just built, in the move pass).
    Table(PhysAddr),
    /// The table is missing (count pass only): it will be built.
    Missing,
}

/// Which walk is running (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Count,
    Move,
}

/// State of one walk over the source range.
struct Walk {
    pass: Pass,
    /// Destination linear address = source linear address + `delta` (wrapping).
    delta: usize,
    /// Virtual address = linear address + offset, for the source and the destination.
    src_off: usize,
    dst_off: usize,
    /// Per height below the root: the last destination table looked up, as
    /// (its base linear address, where it is).
    cache: [Option<(usize, Dest)>; 5],
    /// Count pass: destination tables missing so far.
    need: usize,
    /// Move pass: zeroed table frames held for the walk, chained through their
    /// first word (0 ends the chain), linked nowhere.
    pool: Option<PhysAddr>,
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Cursor<'_, M, PTE, H> {
    /// Moves every translation of `[from, from + size)` to `[to, to + size)`:
    /// same frames, same flags, same leaf sizes; nothing is copied. Afterwards
    /// the source range translates nothing and the destination translates
    /// each address `to + x` as `from + x` did before (where nothing was
    /// mapped, nothing is).
    ///
    /// The move works at the highest level it can: an entry whose span lies
    /// inside the range moves with one entry write when `to - from` is a
    /// multiple of its span, be it a leaf or a table link (a table of 512 4K
    /// leaves moves as one entry, and keeps its frame). Otherwise tables are
    /// descended; a huge leaf whose destination is not aligned to its size is
    /// re-written as leaves of the largest size that fits (a 2M leaf moved by
    /// a multiple of 4K only becomes 512 4K leaves of the same frames). Source
    /// tables left empty are unlinked and freed after the flush.
    ///
    /// Requirements, each checked before anything changes: `from`, `to` and
    /// `size` 4K aligned and `size > 0` (else `NotAligned`); both ranges
    /// inside the translated space, neither crossing the hole between the
    /// halves (else `OutOfRange`; the two ranges may lie in different halves,
    /// with either root layout); the ranges disjoint (else `Overlap`); no
    /// shared root slot in either (else `Shared`); no huge leaf straddling
    /// `from` or `from + size` (else `Straddles`: split it first with
    /// [`Cursor::split_at`]); nothing mapped in the destination (else
    /// `AlreadyMapped`). All or nothing: the destination tables the move needs
    /// are all allocated before the first source entry changes, so `NoMemory`
    /// leaves the table exactly as it was.
    ///
    /// TLB: the source translations are flushed on every CPU (through the
    /// shootdown) when the cursor flushes; a moved table link forces a full
    /// flush. Frames of the moved leaves stay in use: nothing is handed back.
    pub fn move_region(
        &mut self,
        from: M::VirtAddr,
        to: M::VirtAddr,
        size: usize,
    ) -> Result<(), MoveError> {
        let (fv, tv): (usize, usize) = (from.into(), to.into());
        if size == 0 || !(fv | tv | size).is_multiple_of(PAGE) {
            return Err(MoveError::NotAligned);
        }
        let (s, e) = Pt::<M, PTE, H>::linear_range(fv, size)?;
        let (t, te) = Pt::<M, PTE, H>::linear_range(tv, size)?;
        if s < te && t < e {
            return Err(MoveError::Overlap);
        }
        if self.pt.touches_shared(s, e) || self.pt.touches_shared(t, te) {
            return Err(MoveError::Shared);
        }
        if self.straddled(s) || self.straddled(e) {
            return Err(MoveError::Straddles);
        }
        let top = Pt::<M, PTE, H>::TOP;
        if !Pt::<M, PTE, H>::range_free(self.pt.root_for(t), top, t, te) {
            return Err(MoveError::AlreadyMapped);
        }
        let root = self.pt.root_for(s);
        let mut w = Walk {
            pass: Pass::Count,
            delta: t.wrapping_sub(s),
            src_off: fv.wrapping_sub(s),
            dst_off: tv.wrapping_sub(t),
            cache: [None; 5],
            need: 0,
            pool: None,
        };
        self.walk(&mut w, root, top, s, e)?;
        w.pool = Self::hold(w.need)?;
        w.pass = Pass::Move;
        w.cache = [None; 5];
        let r = self.walk(&mut w, root, top, s, e);
        // Exact by construction (same decisions on the same tree); a frame
        // left over was never linked and goes straight back.
        debug_assert!(r.is_ok() && w.pool.is_none(), "move: table count was wrong");
        while let Some(f) = Self::take(&mut w.pool) {
            H::dealloc_frame(f);
        }
        self.prune(root, top, s, e);
        r
    }

    /// Whether a huge leaf straddles linear address `la` (not a leaf boundary).
    fn straddled(&self, la: usize) -> bool {
        la <= Pt::<M, PTE, H>::LA_MASK
            && matches!(self.pt.descend(la), Ok((_, h)) if la & (span(h) - 1) != 0)
    }

    /// `n` zeroed table frames chained through their first word (the head,
    /// `None` for 0), or `NoMemory` (every frame taken returned to `H`) if
    /// one cannot be allocated.
    fn hold(n: usize) -> Result<Option<PhysAddr>, MoveError> {
        let mut pool = None;
        for _ in 0..n {
            let Some(f) = Pt::<M, PTE, H>::alloc_table() else {
                while let Some(f) = Self::take(&mut pool) {
                    H::dealloc_frame(f);
                }
                return Err(MoveError::NoMemory);
            };
            let next = pool.map_or(0, |p: PhysAddr| p.as_usize());
            // SAFETY: `f` is a fresh table frame from `H`, owned by us and
            // linked nowhere; its first word holds the chain until `take`.
            unsafe { Self::word(f).write_volatile(next) };
            pool = Some(f);
        }
        Ok(pool)
    }

    /// Takes a frame from a chain built by `hold`, zeroed again (ready to link).
    fn take(pool: &mut Option<PhysAddr>) -> Option<PhysAddr> {
        let f = (*pool)?;
        // SAFETY: `f` is a frame of the chain: owned by us, linked nowhere,
        // its first word written by `hold`; clearing it makes the frame a
        // zeroed table again.
        let next = unsafe {
            let next = Self::word(f).read_volatile();
            Self::word(f).write_volatile(0);
            next
        };
        *pool = (next != 0).then(|| PhysAddr::from(next));
        Some(f)
    }

    /// The first word of table frame `f`.
    fn word(f: PhysAddr) -> *mut usize {
        H::phys_to_virt(f).as_mut_ptr().cast::<usize>()
    }

    /// One walk (the count or the move, by `w.pass`) over the source range
    /// `[s, e)` under `table` at height `h` (see the module docs).
    fn walk(
        &mut self,
        w: &mut Walk,
        table: PhysAddr,
        h: usize,
        s: usize,
        e: usize,
    ) -> Result<(), MoveError> {
        let (tb, last) = (Pt::<M, PTE, H>::table_base(s, h), index(e - 1, h));
        let sp = span(h);
        let mut i = index(s, h);
        while let Some(idx) = Pt::<M, PTE, H>::next_used(table, i, last) {
            i = idx + 1;
            let la = s.max(tb + idx * sp);
            let ee = e.min(tb + (idx + 1) * sp);
            let d = la.wrapping_add(w.delta);
            let pte = Pt::<M, PTE, H>::read(table, idx);
            match kind(&pte, h) {
                Kind::Unused => continue,
                Kind::Invalid => {}
                Kind::Leaf => {
                    // The source edges are leaf boundaries (checked).
                    debug_assert!(ee - la == sp);
                    // A huge leaf's slot could hold an empty table (only in an
                    // adopted table): its leaves then go into that table.
                    if d & (sp - 1) == 0 && (h == 0 || self.slot_free(w, d, h)?) {
                        self.put(w, d, h, pte)?;
                    } else {
                        // The largest leaf size the destination's alignment
                        // (or the table in the way) allows.
                        let lh = (0..h).rev().find(|&g| d & (span(g) - 1) == 0).unwrap_or(0);
                        let (pa, flags) = (pte.paddr().as_usize(), pte.flags());
                        for off in (0..sp).step_by(span(lh)) {
                            let leaf = PTE::new_page((pa + off).into(), flags, lh > 0);
                            self.put(w, d + off, lh, leaf)?;
                        }
                    }
                    if w.pass == Pass::Move {
                        self.note_weakened(la.wrapping_add(w.src_off));
                    }
                }
                Kind::Table => {
                    if ee - la == sp && d & (sp - 1) == 0 && self.slot_free(w, d, h)? {
                        self.put(w, d, h, pte)?;
                        if w.pass == Pass::Move {
                            // The old path to the table may be cached.
                            self.weaken_all();
                        }
                    } else {
                        self.walk(w, pte.paddr(), h - 1, la, ee)?;
                        continue;
                    }
                }
            }
            if w.pass == Pass::Move {
                Pt::<M, PTE, H>::write(table, idx, PTE::empty_entry());
            }
        }
        Ok(())
    }

    /// Puts entry `pte` at height `h` for destination linear address `d`
    /// (move pass), or counts the tables that needs (count pass).
    fn put(&mut self, w: &mut Walk, d: usize, h: usize, pte: PTE) -> Result<(), MoveError> {
        let dest = self.dest_table(w, d, h)?;
        if let (Pass::Move, Dest::Table(t)) = (w.pass, dest) {
            let idx = index(d, h);
            debug_assert!(Pt::<M, PTE, H>::read(t, idx).is_unused());
            Pt::<M, PTE, H>::write(t, idx, pte);
            self.note(d.wrapping_add(w.dst_off));
        }
        Ok(())
    }

    /// Whether the destination slot at height `h` for `d` is free: unused, or
    /// under a table that is missing.
    fn slot_free(&mut self, w: &mut Walk, d: usize, h: usize) -> Result<bool, MoveError> {
        Ok(match self.dest_table(w, d, h)? {
            Dest::Missing => true,
            Dest::Table(t) => Pt::<M, PTE, H>::read(t, index(d, h)).is_unused(),
        })
    }

    /// The destination table at height `h` (holding the height-`h` entries)
    /// that covers `d`: found, counted as missing (count pass) or built from
    /// the held frames (move pass).
    fn dest_table(&mut self, w: &mut Walk, d: usize, h: usize) -> Result<Dest, MoveError> {
        if h == Pt::<M, PTE, H>::TOP {
            return Ok(Dest::Table(self.pt.root_for(d)));
        }
        let base = Pt::<M, PTE, H>::table_base(d, h);
        if let Some((b, dest)) = w.cache[h]
            && b == base
        {
            return Ok(dest);
        }
        let dest = match self.dest_table(w, d, h + 1)? {
            Dest::Missing => {
                w.need += 1;
                Dest::Missing
            }
            Dest::Table(p) => {
                let idx = index(d, h + 1);
                let pte = Pt::<M, PTE, H>::read(p, idx);
                match kind(&pte, h + 1) {
                    Kind::Table => Dest::Table(pte.paddr()),
                    Kind::Unused if w.pass == Pass::Count => {
                        w.need += 1;
                        Dest::Missing
                    }
                    Kind::Unused => {
                        // Counted in the count pass, so the pool has it; the
                        // fallback allocation is never expected to run.
                        let f = match Self::take(&mut w.pool) {
                            Some(f) => f,
                            None => {
                                debug_assert!(false, "move: a table was not counted");
                                Pt::<M, PTE, H>::alloc_table().ok_or(MoveError::NoMemory)?
                            }
                        };
                        Pt::<M, PTE, H>::write(p, idx, PTE::new_table(f));
                        Dest::Table(f)
                    }
                    // The destination was checked empty.
                    Kind::Leaf | Kind::Invalid => return Err(MoveError::AlreadyMapped),
                }
            }
        };
        w.cache[h] = Some((base, dest));
        Ok(dest)
    }

    /// Unlinks and retires the tables under `table` (at height `h`) that the
    /// move left empty in the source range `[s, e)`; returns whether `table`
    /// itself is empty (never true for a root).
    fn prune(&mut self, table: PhysAddr, h: usize, s: usize, e: usize) -> bool {
        if h > 0 {
            let (tb, last) = (Pt::<M, PTE, H>::table_base(s, h), index(e - 1, h));
            let mut i = index(s, h);
            while let Some(idx) = Pt::<M, PTE, H>::next_used(table, i, last) {
                i = idx + 1;
                let pte = Pt::<M, PTE, H>::read(table, idx);
                if kind(&pte, h) != Kind::Table {
                    continue;
                }
                let la = s.max(tb + idx * span(h));
                let ee = e.min(tb + (idx + 1) * span(h));
                if self.prune(pte.paddr(), h - 1, la, ee) {
                    Pt::<M, PTE, H>::write(table, idx, PTE::empty_entry());
                    self.retire(pte.paddr());
                }
            }
        }
        h != Pt::<M, PTE, H>::TOP && Pt::<M, PTE, H>::table_is_empty(table)
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Pt<M, PTE, H> {
    /// Whether nothing (no leaf, no `Invalid` entry) overlaps the linear range
    /// `[s, e)` under `table` at height `h`; empty tables do not count.
    fn range_free(table: PhysAddr, h: usize, s: usize, e: usize) -> bool {
        let (tb, last) = (Self::table_base(s, h), index(e - 1, h));
        let mut i = index(s, h);
        while let Some(j) = Self::next_used(table, i, last) {
            i = j + 1;
            let pte = Self::read(table, j);
            let free = match kind(&pte, h) {
                Kind::Table => {
                    let la = s.max(tb + j * span(h));
                    let ee = e.min(tb + (j + 1) * span(h));
                    Self::range_free(pte.paddr(), h - 1, la, ee)
                }
                Kind::Unused => true,
                Kind::Leaf | Kind::Invalid => false,
            };
            if !free {
                return false;
            }
        }
        true
    }
}
