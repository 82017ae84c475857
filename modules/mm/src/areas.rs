//! The area set: non-overlapping areas in a `BTreeMap` keyed by start address,
//! each with a backend that can split, shrink and merge with it.
//!
//! # Why not `memory_set::MemorySet`
//! `memory_set` 0.4 does not fit this crate:
//! - its `MappingBackend` answers `bool`, so the reason of a failure is lost;
//! - its `unmap` and `protect` visit every area of the set (O(n) per call), and
//!   its `find_free_area` walks every area below the free range it returns;
//! - it never merges areas, so an address space fragments without bound;
//! - its backends are cloned on a split, so state that depends on the position
//!   (an offset into an object, the first frame of a physical run) cannot stay
//!   correct in the right part.
//!
//! Here every operation finds the areas it touches with a range query: looking
//! up an address, checking a range for overlap or coverage, unmapping and
//! protecting cost O(log n + k) for k touched areas. [`AreaBackend::map`] says
//! why it failed (out of frames); unmap, protect and split cannot fail, since
//! whatever they need of the page table is done before the set is asked; the
//! `split` hook hands the right part its own state. After an insert or a
//! protect, the areas around the changed range are merged with their
//! neighbours when the flags are equal and [`AreaBackend::try_merge`] agrees
//! (an unmap only removes areas).
//!
//! # Invariants
//! - Areas are non-empty, page aligned and do not overlap.
//! - Two adjacent areas with equal flags whose backends would merge are merged
//!   (checked at the boundaries each operation touched; see
//!   [`AreaSet::merge_range`]).
//! - An area's backend state describes exactly `[start, end)` of that area.
//!
//! Finding a free range ([`AreaSet::find_free_aligned`]) asks the free-gap index
//! (`gaps.rs`), which the set brings up to date with the complement of its areas
//! when a placement asks: O(log n) expected per change and per gap tried while
//! placements happen, nothing while they do not.

use alloc::collections::BTreeMap;

use page_table_entry::MappingFlags;

use crate::error::{InsertError, NoMemory, Uncovered};
use crate::gaps::LazyGaps;

/// What an area maps to, and how that state follows the area through splits
/// and merges. `Ctx` is what the operations act on (the page table).
pub(crate) trait AreaBackend: Sized {
    /// The object the operations change (the page table and its side state).
    type Ctx;

    /// What the fault path needs to know of the backend, by value (kept in the
    /// last-hit cache, see [`AreaSet::lookup`]).
    type View: Copy;

    /// The backend's [`AreaBackend::View`].
    fn view(&self) -> Self::View;

    /// Maps `[start, end)` with `flags`. On error nothing of the range is left
    /// mapped and nothing the backend owns was released.
    fn map(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        ctx: &mut Self::Ctx,
    ) -> Result<(), NoMemory>;

    /// Unmaps `[start, end)` and releases what the backend owns there (after the
    /// TLB flush). Cannot fail: holes are skipped, frees cannot fail. Empty page
    /// tables are reclaimed by the caller afterwards.
    fn unmap(&mut self, start: usize, end: usize, ctx: &mut Self::Ctx);

    /// Gives `[start, end)` the flags `new`. Cannot fail: a page the backend
    /// cannot re-create now (no page-table frame) is re-created by the fault
    /// path on its first access, which checks the area's flags.
    fn protect(&mut self, start: usize, end: usize, new: MappingFlags, ctx: &mut Self::Ctx);

    /// Splits the backend of `[start, end)` at `at` (`start < at < end`):
    /// `self` keeps `[start, at)`, the result describes `[at, end)`. Cannot
    /// fail: whatever the split needs of the page table (a huge leaf split at
    /// `at`) was done before the area set is asked.
    fn split(&mut self, start: usize, at: usize, end: usize) -> Self;

    /// Whether `self`, describing `[start, mid)`, can absorb `next`, describing
    /// `[mid, end)`, so that `self` then describes `[start, end)`; if so, does
    /// it. (Shrinking from the front is a split whose left part is unmapped.)
    fn try_merge(&mut self, start: usize, mid: usize, next: &Self, end: usize) -> bool;

    /// Takes the backend of an area that was unmapped and removed: the
    /// context drops it after the operation's TLB flush (the default drops
    /// it now).
    fn retire(self, ctx: &mut Self::Ctx) {
        let _ = ctx;
    }
}

/// A copy of what an area is, for the fault path: start, end, flags and the
/// backend's view.
#[derive(Clone, Copy)]
pub(crate) struct AreaView<V> {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) flags: MappingFlags,
    pub(crate) backend: V,
}

/// The area [`AreaSet::lookup`] found last, tagged with the set's generation
/// at that time. It lives outside the set (the address space keeps it under
/// its table lock), so the set stays `Sync` and its lookups need only `&self`.
pub(crate) struct LastHit<V> {
    generation: u64,
    view: Option<AreaView<V>>,
}

impl<V> LastHit<V> {
    /// An empty cache.
    pub(crate) const fn new() -> Self {
        Self {
            generation: 0,
            view: None,
        }
    }
}

/// One area: `[start, end)` with `flags`; the start is the map key.
pub(crate) struct Area<B: AreaBackend> {
    pub(crate) end: usize,
    pub(crate) flags: MappingFlags,
    pub(crate) backend: B,
}

/// The areas of an address space, by start address.
pub(crate) struct AreaSet<B: AreaBackend> {
    areas: BTreeMap<usize, Area<B>>,
    /// The ranges no area covers (told only where the union of the areas
    /// changes: insert, unmap, clear; splits and merges keep it).
    gaps: LazyGaps,
    /// Bumped first by every `&mut self` method, so a [`LastHit`] taken
    /// before a change of the set is never used after it (the fault path only
    /// reads the set; faults in one area come in runs). Starts at 1, so an
    /// empty [`LastHit`] (generation 0) never matches.
    generation: u64,
}

impl<B: AreaBackend> AreaSet<B> {
    pub(crate) const fn new() -> Self {
        Self {
            areas: BTreeMap::new(),
            gaps: LazyGaps::new(),
            generation: 1,
        }
    }

    /// Number of areas.
    pub(crate) fn len(&self) -> usize {
        self.areas.len()
    }

    /// All areas by address, as `(start, area)`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Area<B>)> {
        self.areas.iter().map(|(&s, a)| (s, a))
    }

    /// The areas intersecting `[start, end)`, as `(start, area)`. O(log n + k).
    pub(crate) fn range(
        &self,
        start: usize,
        end: usize,
    ) -> impl Iterator<Item = (usize, &Area<B>)> {
        let first = self
            .areas
            .range(..start)
            .next_back()
            .filter(|(_, a)| a.end > start);
        first
            .into_iter()
            .chain(self.areas.range(start..end.max(start)))
            .map(|(&s, a)| (s, a))
    }

    /// The areas intersecting `[start, end)`, as `(start, area)`, mutably
    /// (their backends may change; their ranges and flags must not).
    /// O(log n + k).
    pub(crate) fn range_mut(
        &mut self,
        start: usize,
        end: usize,
    ) -> impl Iterator<Item = (usize, &mut Area<B>)> {
        self.changing();
        let first = self
            .areas
            .range(..start)
            .next_back()
            .filter(|(_, a)| a.end > start)
            .map(|(&s, _)| s)
            .unwrap_or(start);
        self.areas
            .range_mut(first..end.max(first))
            .filter(move |(_, a)| a.end > start)
            .map(|(&s, a)| (s, a))
    }

    /// The area containing `va`. O(log n).
    pub(crate) fn find(&self, va: usize) -> Option<(usize, &Area<B>)> {
        self.areas
            .range(..=va)
            .next_back()
            .filter(|(_, a)| va < a.end)
            .map(|(&s, a)| (s, a))
    }

    /// The area containing `va`, by value: O(1) when it is the area `last`
    /// holds from a lookup since the set last changed, else O(log n) (and
    /// `last` then holds it).
    #[inline]
    pub(crate) fn lookup(
        &self,
        va: usize,
        last: &mut LastHit<B::View>,
    ) -> Option<AreaView<B::View>> {
        if last.generation == self.generation
            && let Some(v) = last.view
            && v.start <= va
            && va < v.end
        {
            return Some(v);
        }
        let (start, a) = self.find(va)?;
        let v = AreaView {
            start,
            end: a.end,
            flags: a.flags,
            backend: a.backend.view(),
        };
        *last = LastHit {
            generation: self.generation,
            view: Some(v),
        };
        Some(v)
    }

    /// Makes every [`LastHit`] stale: called first by every method that
    /// changes the set.
    fn changing(&mut self) {
        self.generation += 1;
    }

    /// Whether any area intersects `[start, end)`. O(log n).
    pub(crate) fn overlaps(&self, start: usize, end: usize) -> bool {
        self.areas
            .range(..end)
            .next_back()
            .is_some_and(|(_, a)| a.end > start)
    }

    /// Whether every page of `[start, end)` lies in some area. O(log n + k).
    pub(crate) fn covers(&self, start: usize, end: usize) -> bool {
        let mut at = start;
        while at < end {
            match self.find(at) {
                Some((_, a)) => at = a.end,
                None => return false,
            }
        }
        true
    }

    /// The lowest `size`-byte gap inside `[lo, hi)`.
    #[cfg(test)]
    pub(crate) fn find_free(&mut self, lo: usize, hi: usize, size: usize) -> Option<usize> {
        self.find_free_aligned(lo, hi, size, 1, 0)
    }

    /// The lowest start `x` of a `size`-byte gap inside `[lo, hi)` with
    /// `x % align == phase` (`align` a power of two, `phase < align`).
    /// O(log n) expected per gap of at least `size` bytes that is tried.
    pub(crate) fn find_free_aligned(
        &mut self,
        lo: usize,
        hi: usize,
        size: usize,
        align: usize,
        phase: usize,
    ) -> Option<usize> {
        self.changing();
        // The lowest x >= at with x = phase (mod align) that leaves `size` bytes below `limit`.
        let fit = |at: usize, limit: usize| -> Option<usize> {
            let x = at.checked_add(phase.wrapping_sub(at) & (align - 1))?;
            (limit.checked_sub(x)? >= size).then_some(x)
        };
        let areas = &self.areas;
        self.gaps
            .get(|| areas.iter().map(|(&s, a)| (s, a.end)))
            .first_fit(lo, hi, size, fit)
    }

    /// Inserts the area `[start, end)` (non-empty: the callers check their
    /// lengths) after mapping it with its backend. O(log n) plus the
    /// backend's mapping work.
    pub(crate) fn insert(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        mut backend: B,
        ctx: &mut B::Ctx,
    ) -> Result<(), InsertError> {
        self.changing();
        crate::invariant::invariant!(start < end, "insert of [{start:#x}, {end:#x})");
        if self.overlaps(start, end) {
            return Err(InsertError::Overlap);
        }
        backend.map(start, end, flags, ctx)?;
        self.areas.insert(
            start,
            Area {
                end,
                flags,
                backend,
            },
        );
        self.gaps.occupy(start, end, self.areas.len());
        // A new area has two boundaries: with the next area, then the previous.
        self.merge_at(end);
        self.merge_at(start);
        Ok(())
    }

    /// Makes `at` an area boundary if it lies strictly inside an area.
    fn split_at(&mut self, at: usize) {
        self.changing();
        let Some((&start, area)) = self.areas.range_mut(..at).next_back() else {
            return;
        };
        if area.end <= at {
            return;
        }
        let right = area.backend.split(start, at, area.end);
        let (end, flags) = (area.end, area.flags);
        area.end = at;
        self.areas.insert(
            at,
            Area {
                end,
                flags,
                backend: right,
            },
        );
    }

    /// Merges the area ending at `at` with the one starting there, if their
    /// flags are equal and the backends agree.
    fn merge_at(&mut self, at: usize) {
        self.changing();
        let mut it = self.areas.range_mut(..=at);
        let (Some((&n, next)), Some((&start, prev))) = (it.next_back(), it.next_back()) else {
            return;
        };
        if n != at || prev.end != at || prev.flags != next.flags {
            return;
        }
        let end = next.end;
        if prev.backend.try_merge(start, at, &next.backend, end) {
            prev.end = end;
            self.areas.remove(&at);
        }
    }

    /// Merges at every area boundary in `[start, end]` (both ends included).
    /// O(k log n) for k boundaries.
    pub(crate) fn merge_range(&mut self, start: usize, end: usize) {
        self.changing();
        let mut at = start;
        while at <= end {
            let Some(&key) = self.areas.range(at..=end).next().map(|(k, _)| k) else {
                break;
            };
            self.merge_at(key);
            // The area at `key` (merged into its predecessor or not) ends after it.
            match key.checked_add(1) {
                Some(n) => at = n,
                None => break,
            }
        }
    }

    /// Unmaps `[start, end)`: areas are split at its ends, everything inside is
    /// unmapped and removed; holes are skipped. O(log n + k).
    pub(crate) fn unmap(&mut self, start: usize, end: usize, ctx: &mut B::Ctx) {
        self.changing();
        if start >= end {
            return;
        }
        self.split_at(start);
        self.split_at(end);
        while let Some((&s, _)) = self.areas.range(start..end).next() {
            let mut area = self.areas.remove(&s).expect("found above");
            self.gaps.release(s, area.end, self.areas.len());
            area.backend.unmap(s, area.end, ctx);
            area.backend.retire(ctx);
        }
    }

    /// Takes `[start, end)` (non-empty, inside one area) out of the set
    /// without unmapping anything: the area is split at both ends and the
    /// middle part returned (`mremap` moves it). O(log n).
    pub(crate) fn take(&mut self, start: usize, end: usize) -> Area<B> {
        self.changing();
        self.split_at(start);
        self.split_at(end);
        let area = self.areas.remove(&start);
        crate::invariant::invariant!(
            area.as_ref().is_some_and(|a| a.end == end),
            "take of [{start:#x}, {end:#x}), which is not one area's part"
        );
        let area = area.expect("checked above");
        self.gaps.release(start, end, self.areas.len());
        area
    }

    /// Puts `area` (taken with [`Self::take`], its end set by the caller) back
    /// at `start`, where nothing is, without mapping anything, and merges it
    /// with its neighbours. O(log n).
    pub(crate) fn put(&mut self, start: usize, area: Area<B>) {
        self.changing();
        let end = area.end;
        crate::invariant::invariant!(
            start < end && !self.overlaps(start, end),
            "put of [{start:#x}, {end:#x}) over an area"
        );
        self.areas.insert(start, area);
        self.gaps.occupy(start, end, self.areas.len());
        self.merge_at(end);
        self.merge_at(start);
    }

    /// Sets the flags of every area in `[start, end)` to `update(old)`, splitting
    /// at the ends, then merges around the range. Every page must be covered by
    /// an area, else nothing changes. O(log n + k).
    pub(crate) fn protect(
        &mut self,
        start: usize,
        end: usize,
        update: impl Fn(MappingFlags) -> MappingFlags,
        ctx: &mut B::Ctx,
    ) -> Result<(), Uncovered> {
        self.changing();
        if start >= end {
            return Ok(());
        }
        if !self.covers(start, end) {
            return Err(Uncovered);
        }
        self.split_at(start);
        self.split_at(end);
        for (&s, area) in self.areas.range_mut(start..end) {
            let new = update(area.flags);
            if new != area.flags {
                area.backend.protect(s, area.end, new, ctx);
                area.flags = new;
            }
        }
        self.merge_range(start, end);
        Ok(())
    }

    /// Unmaps and removes every area.
    pub(crate) fn clear(&mut self, ctx: &mut B::Ctx) {
        self.changing();
        while let Some((s, mut area)) = self.areas.pop_first() {
            area.backend.unmap(s, area.end, ctx);
            area.backend.retire(ctx);
        }
        self.gaps.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A backend whose state is a position-dependent "object offset", and a log
    /// of what was mapped (as a page bitmap in the context).
    #[derive(Debug, PartialEq)]
    struct Obj {
        offset: usize,
    }

    #[derive(Default)]
    struct Ctx {
        mapped: Vec<(usize, usize)>,
        fail_map: bool,
    }

    impl AreaBackend for Obj {
        type Ctx = Ctx;
        type View = usize;
        fn view(&self) -> usize {
            self.offset
        }
        fn map(
            &mut self,
            s: usize,
            e: usize,
            _: MappingFlags,
            c: &mut Ctx,
        ) -> Result<(), NoMemory> {
            if c.fail_map {
                return Err(NoMemory);
            }
            c.mapped.push((s, e));
            Ok(())
        }
        fn unmap(&mut self, s: usize, e: usize, c: &mut Ctx) {
            c.mapped.push((e, s));
        }
        fn protect(&mut self, _: usize, _: usize, _: MappingFlags, _: &mut Ctx) {}
        fn split(&mut self, s: usize, at: usize, _: usize) -> Self {
            Obj {
                offset: self.offset + (at - s),
            }
        }
        fn try_merge(&mut self, s: usize, mid: usize, next: &Self, _: usize) -> bool {
            next.offset == self.offset + (mid - s)
        }
    }

    /// The gap index is the complement of the areas.
    fn check_gaps(s: &mut AreaSet<Obj>) {
        let areas = &s.areas;
        let gaps = s.gaps.get(|| areas.iter().map(|(&st, a)| (st, a.end)));
        gaps.check();
        let mut want = Vec::new();
        let mut at = 0;
        for (&st, a) in areas {
            if st > at {
                want.push((at, st));
            }
            at = a.end;
        }
        want.push((at, crate::gaps::TOP));
        assert_eq!(gaps.to_vec(), want);
    }

    const R: MappingFlags = MappingFlags::READ;
    const RW: MappingFlags = MappingFlags::READ.union(MappingFlags::WRITE);

    fn dump(s: &mut AreaSet<Obj>) -> Vec<(usize, usize, usize)> {
        check_gaps(s);
        s.iter()
            .map(|(st, a)| (st, a.end, a.backend.offset))
            .collect()
    }

    fn obj(offset: usize) -> Obj {
        Obj { offset }
    }

    #[test]
    fn split_carries_offsets_and_merge_restores() {
        let mut c = Ctx::default();
        let mut s = AreaSet::new();
        s.insert(0x1000, 0x9000, RW, obj(0), &mut c).unwrap();
        s.protect(0x3000, 0x5000, |_| R, &mut c).unwrap();
        assert_eq!(
            dump(&mut s),
            [
                (0x1000, 0x3000, 0),
                (0x3000, 0x5000, 0x2000),
                (0x5000, 0x9000, 0x4000)
            ]
        );
        s.protect(0x3000, 0x5000, |_| RW, &mut c).unwrap();
        assert_eq!(dump(&mut s), [(0x1000, 0x9000, 0)]);
        // Unmap the middle: the right part keeps its offset.
        s.unmap(0x2000, 0x4000, &mut c);
        assert_eq!(
            dump(&mut s),
            [(0x1000, 0x2000, 0), (0x4000, 0x9000, 0x3000)]
        );
        // Re-inserting the same object range merges back into one area.
        s.insert(0x2000, 0x4000, RW, obj(0x1000), &mut c).unwrap();
        assert_eq!(dump(&mut s), [(0x1000, 0x9000, 0)]);
        // Incompatible offset: no merge.
        s.insert(0x9000, 0xa000, RW, obj(0), &mut c).unwrap();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn queries_and_errors() {
        let mut c = Ctx::default();
        let mut s = AreaSet::new();
        s.insert(0x1000, 0x3000, RW, obj(0), &mut c).unwrap();
        s.insert(0x5000, 0x6000, RW, obj(0), &mut c).unwrap();
        assert_eq!(
            s.insert(0x2000, 0x4000, RW, obj(0), &mut c),
            Err(InsertError::Overlap)
        );
        c.fail_map = true;
        assert_eq!(
            s.insert(0x3000, 0x4000, RW, obj(0), &mut c),
            Err(InsertError::NoMemory)
        );
        assert_eq!(s.len(), 2);
        c.fail_map = false;
        assert!(s.find(0x2fff).is_some() && s.find(0x3000).is_none());
        assert!(s.overlaps(0x2fff, 0x5001) && !s.overlaps(0x3000, 0x5000));
        assert!(s.covers(0x1000, 0x3000) && !s.covers(0x1000, 0x5000));
        assert_eq!(s.find_free(0x1000, 0x10000, 0x2000), Some(0x3000));
        assert_eq!(s.find_free(0x1000, 0x10000, 0x3000), Some(0x6000));
        assert_eq!(s.find_free(0x1000, 0x8000, 0x3000), None);
        assert_eq!(s.find_free(0x2000, 0x5000, 0x1000), Some(0x3000));
        // Aligned, with a phase.
        assert_eq!(
            s.find_free_aligned(0x1000, 0x10000, 0x1000, 0x4000, 0),
            Some(0x4000)
        );
        assert_eq!(
            s.find_free_aligned(0x1000, 0x10000, 0x1000, 0x4000, 0x3000),
            Some(0x3000)
        );
        assert_eq!(
            s.find_free_aligned(0x1000, 0x10000, 0x2000, 0x4000, 0x2000),
            Some(0x6000)
        );
        assert_eq!(
            s.find_free_aligned(0x1000, 0x7000, 0x2000, 0x4000, 0x2000),
            None
        );
        // A hole in the range: nothing changes.
        let before = dump(&mut s);
        assert_eq!(s.protect(0x1000, 0x6000, |_| R, &mut c), Err(Uncovered));
        assert_eq!(dump(&mut s), before);
        s.insert(0x10000, 0x20000, RW, obj(0), &mut c).unwrap();
        // Unmap across areas and holes.
        s.unmap(0x2000, 0x10000, &mut c);
        assert_eq!(dump(&mut s), [(0x1000, 0x2000, 0), (0x10000, 0x20000, 0)]);
        s.clear(&mut c);
        check_gaps(&mut s);
        assert_eq!(s.len(), 0);
    }
}
