//! The free-gap index: the address ranges no area covers, in a treap keyed by
//! gap start whose nodes also carry the longest gap of their subtree, so that
//! first-fit placement ("the lowest gap of at least `size` bytes above `lo`")
//! costs O(log n) expected instead of a walk over every area.
//!
//! This is what `mmap` without a fixed address needs when the low part of the
//! window is full of areas and small holes, where a walk over the areas (as
//! `memory_set`'s `find_free_area` does) costs O(n) per call.
//!
//! [`LazyGaps`] keeps the index only while placements use it: changes are
//! logged and applied when the next placement asks, and a log that grows past
//! the number of areas drops the index (rebuilt in O(n) from the areas when a
//! placement asks again). A run of `FIXED` mappings thus pays a `Vec` push per
//! change, and a run of placements O(log n) per change and per placement.
//!
//! Written by hand: the ordered maps of the field (`BTreeMap`, the intrusive
//! trees) cannot keep an aggregate of a subtree up to date, and a
//! gap-augmented tree is the one structure this needs (~200 lines, safe Rust,
//! nodes in a `Vec` linked by index).
//!
//! # Invariants
//! - Gaps are non-empty, disjoint and never adjacent (two adjacent gaps are one
//!   gap): together with the areas they tile `[0, usize::MAX)`.
//! - In-order traversal yields gaps by increasing start (binary-search-tree order
//!   on `start`), and every node's `prio` is at most its parent's (heap order;
//!   priorities are pseudo-random, so the expected depth is O(log n)).
//! - `lmax`/`rmax` of a node are the longest gap lengths in its left/right
//!   subtree.

use alloc::vec::Vec;

/// No node.
const NIL: u32 = u32::MAX;

/// The top of the tiled space: the byte at `usize::MAX` is never handed out.
pub(crate) const TOP: usize = usize::MAX;

/// One gap and its place in the tree.
#[derive(Clone, Copy)]
struct Node {
    start: usize,
    end: usize,
    /// Longest gap in the left and in the right subtree (0 if empty): kept in
    /// the parent so that an update after a change below reads only the child
    /// on the changed path.
    lmax: usize,
    rmax: usize,
    prio: u32,
    left: u32,
    right: u32,
}

impl Node {
    /// Longest gap in this node's subtree.
    fn max(&self) -> usize {
        (self.end - self.start).max(self.lmax).max(self.rmax)
    }
}

/// The gaps between areas (see the module docs).
pub(crate) struct Gaps {
    nodes: Vec<Node>,
    /// Slots of `nodes` not in the tree.
    free: Vec<u32>,
    root: u32,
    /// State of the priority generator.
    seed: u64,
}

impl Gaps {
    /// No gaps at all (the areas cover everything).
    const fn new() -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            seed: 0,
        }
    }

    /// The index of exactly `gaps` (sorted, disjoint, non-adjacent), built
    /// balanced in O(n): priorities fall with depth, so the heap order holds and
    /// later inserts (random priorities) sink to where they belong.
    fn from_sorted(gaps: &[(usize, usize)]) -> Self {
        let mut g = Self::new();
        g.nodes.reserve(gaps.len());
        g.root = g.build(gaps, 0);
        g
    }

    fn build(&mut self, gaps: &[(usize, usize)], depth: u32) -> u32 {
        if gaps.is_empty() {
            return NIL;
        }
        let mid = gaps.len() / 2;
        let (start, end) = gaps[mid];
        let t = self.alloc(start, end);
        self.nodes[t as usize].prio = u32::MAX - depth;
        let l = self.build(&gaps[..mid], depth + 1);
        let r = self.build(&gaps[mid + 1..], depth + 1);
        self.set_left(t, l);
        self.set_right(t, r);
        t
    }

    /// splitmix64 (high half): cheap, well spread priorities.
    fn next_prio(&mut self) -> u32 {
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }

    fn alloc(&mut self, start: usize, end: usize) -> u32 {
        let node = Node {
            start,
            end,
            lmax: 0,
            rmax: 0,
            prio: self.next_prio(),
            left: NIL,
            right: NIL,
        };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                let i = u32::try_from(self.nodes.len()).expect("fewer than 2^32 gaps");
                self.nodes.push(node);
                i
            }
        }
    }

    fn max_of(&self, t: u32) -> usize {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].max()
        }
    }

    fn set_left(&mut self, t: u32, child: u32) {
        let m = self.max_of(child);
        let n = &mut self.nodes[t as usize];
        n.left = child;
        n.lmax = m;
    }

    fn set_right(&mut self, t: u32, child: u32) {
        let m = self.max_of(child);
        let n = &mut self.nodes[t as usize];
        n.right = child;
        n.rmax = m;
    }

    /// Splits `t` into the gaps starting below `key` and the rest.
    fn split(&mut self, t: u32, key: usize) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let n = self.nodes[t as usize];
        if n.start < key {
            let (l, r) = self.split(n.right, key);
            self.set_right(t, l);
            (t, r)
        } else {
            let (l, r) = self.split(n.left, key);
            self.set_left(t, r);
            (l, t)
        }
    }

    /// Joins two trees, every gap of `a` below every gap of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio >= self.nodes[b as usize].prio {
            let r = self.merge(self.nodes[a as usize].right, b);
            self.set_right(a, r);
            a
        } else {
            let l = self.merge(a, self.nodes[b as usize].left);
            self.set_left(b, l);
            b
        }
    }

    /// Inserts node `x` into `t`: down the search path to where its priority
    /// belongs, then the subtree there is split around it (one pass).
    fn insert_node(&mut self, t: u32, x: u32) -> u32 {
        if t == NIL {
            return x;
        }
        let (xs, xp) = (self.nodes[x as usize].start, self.nodes[x as usize].prio);
        let n = self.nodes[t as usize];
        if xp > n.prio {
            let (l, r) = self.split(t, xs);
            self.set_left(x, l);
            self.set_right(x, r);
            return x;
        }
        if xs < n.start {
            let c = self.insert_node(n.left, x);
            self.set_left(t, c);
        } else {
            let c = self.insert_node(n.right, x);
            self.set_right(t, c);
        }
        t
    }

    fn insert(&mut self, start: usize, end: usize) {
        let x = self.alloc(start, end);
        self.root = self.insert_node(self.root, x);
    }

    /// Removes the gap starting at `key` from `t` (one pass; its subtrees are
    /// merged in its place).
    fn remove_node(&mut self, t: u32, key: usize) -> u32 {
        if t == NIL {
            crate::invariant::broken(format_args!("no gap starts at {key:#x}"));
        }
        let n = self.nodes[t as usize];
        if key == n.start {
            self.free.push(t);
            return self.merge(n.left, n.right);
        }
        if key < n.start {
            let c = self.remove_node(n.left, key);
            self.set_left(t, c);
        } else {
            let c = self.remove_node(n.right, key);
            self.set_right(t, c);
        }
        t
    }

    fn remove(&mut self, start: usize) {
        self.root = self.remove_node(self.root, start);
    }

    /// Changes the bounds of the gap starting at `key` to `[start, end)` in place
    /// (one pass). The caller keeps the order: the new start stays between the
    /// neighbours' starts.
    fn reshape_node(&mut self, t: u32, key: usize, start: usize, end: usize) {
        if t == NIL {
            crate::invariant::broken(format_args!("no gap starts at {key:#x}"));
        }
        let n = self.nodes[t as usize];
        if key == n.start {
            let n = &mut self.nodes[t as usize];
            n.start = start;
            n.end = end;
        } else if key < n.start {
            self.reshape_node(n.left, key, start, end);
            self.set_left(t, n.left);
        } else {
            self.reshape_node(n.right, key, start, end);
            self.set_right(t, n.right);
        }
    }

    fn reshape(&mut self, key: usize, start: usize, end: usize) {
        self.reshape_node(self.root, key, start, end);
    }

    /// The gap with the greatest start `<= x`, as (start, end).
    fn floor(&self, x: usize) -> Option<(usize, usize)> {
        let mut t = self.root;
        let mut best = None;
        while t != NIL {
            let n = &self.nodes[t as usize];
            if n.start <= x {
                best = Some((n.start, n.end));
                t = n.right;
            } else {
                t = n.left;
            }
        }
        best
    }

    /// The lowest gap starting at or above `lo` that is at least `size` long.
    fn first_from(&self, t: u32, lo: usize, size: usize) -> Option<(usize, usize)> {
        if t == NIL {
            return None;
        }
        let n = &self.nodes[t as usize];
        if n.start < lo {
            return (n.rmax >= size)
                .then(|| self.first_from(n.right, lo, size))
                .flatten();
        }
        (n.lmax >= size)
            .then(|| self.first_from(n.left, lo, size))
            .flatten()
            .or_else(|| (n.end - n.start >= size).then_some((n.start, n.end)))
            .or_else(|| {
                (n.rmax >= size)
                    .then(|| self.first_from(n.right, lo, size))
                    .flatten()
            })
    }

    /// Marks `[start, end)` as taken by an area. It must lie inside one gap.
    pub(crate) fn occupy(&mut self, start: usize, end: usize) {
        let Some((gs, ge)) = self.floor(start).filter(|&(_, ge)| end <= ge) else {
            crate::invariant::broken(format_args!(
                "occupy [{start:#x}, {end:#x}): not inside a gap"
            ));
        };
        match (gs < start, end < ge) {
            (true, true) => {
                self.reshape(gs, gs, start);
                self.insert(end, ge);
            }
            (true, false) => self.reshape(gs, gs, start),
            // The start moves up, but stays below the next gap's start.
            (false, true) => self.reshape(gs, end, ge),
            (false, false) => self.remove(gs),
        }
    }

    /// Marks `[start, end)`, which an area no longer covers, as free, joining the
    /// gaps next to it.
    pub(crate) fn release(&mut self, start: usize, end: usize) {
        let prev = start
            .checked_sub(1)
            .and_then(|x| self.floor(x))
            .filter(|&(_, pe)| pe == start);
        let next = self.floor(end).filter(|&(ns, _)| ns == end);
        match (prev, next) {
            (Some((ps, _)), Some((ns, ne))) => {
                self.remove(ns);
                self.reshape(ps, ps, ne);
            }
            (Some((ps, _)), None) => self.reshape(ps, ps, end),
            // The start moves down, but stays above the previous gap's end.
            (None, Some((ns, ne))) => self.reshape(ns, start, ne),
            (None, None) => self.insert(start, end),
        }
    }

    /// The lowest `x` that `fit(gap_start, gap_end)` returns over the gaps
    /// clipped to `[lo, hi)`, visiting in address order only gaps of at least
    /// `size` bytes (the clip of the gap holding `lo` is tried first, whatever its
    /// length). `fit` must only accept ranges of at least `size` bytes.
    pub(crate) fn first_fit(
        &self,
        lo: usize,
        hi: usize,
        size: usize,
        fit: impl Fn(usize, usize) -> Option<usize>,
    ) -> Option<usize> {
        if lo >= hi {
            return None;
        }
        if let Some((_, ge)) = self.floor(lo).filter(|&(_, ge)| ge > lo)
            && let Some(x) = fit(lo, ge.min(hi))
        {
            return Some(x);
        }
        let mut from = lo.checked_add(1)?;
        while let Some((gs, ge)) = self.first_from(self.root, from, size.max(1)) {
            if gs >= hi {
                return None;
            }
            if let Some(x) = fit(gs, ge.min(hi)) {
                return Some(x);
            }
            from = gs.checked_add(1)?;
        }
        None
    }

    /// Every gap in address order (for tests).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<(usize, usize)> {
        fn walk(g: &Gaps, t: u32, out: &mut Vec<(usize, usize)>) {
            if t == NIL {
                return;
            }
            let n = g.nodes[t as usize];
            walk(g, n.left, out);
            out.push((n.start, n.end));
            walk(g, n.right, out);
        }
        let mut out = Vec::new();
        walk(self, self.root, &mut out);
        out
    }

    /// Checks the invariants of the module docs (for tests).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        fn rec(g: &Gaps, t: u32, parent_prio: u32) -> usize {
            if t == NIL {
                return 0;
            }
            let n = g.nodes[t as usize];
            assert!(n.start < n.end, "empty gap");
            assert!(n.prio <= parent_prio, "heap order");
            let (l, r) = (rec(g, n.left, n.prio), rec(g, n.right, n.prio));
            assert_eq!(
                (n.lmax, n.rmax),
                (l, r),
                "stale subtree max at {:#x}",
                n.start
            );
            n.max()
        }
        rec(self, self.root, u32::MAX);
        let v = self.to_vec();
        for w in v.windows(2) {
            assert!(w[0].1 < w[1].0, "gaps overlap or touch: {w:x?}");
        }
    }
}

/// A change of the areas' union, waiting to be applied to the index.
#[derive(Clone, Copy)]
enum Change {
    Occupy(usize, usize),
    Release(usize, usize),
}

/// The gap index kept on demand (see the module docs).
pub(crate) struct LazyGaps {
    /// `None`: not built (no placement since the last drop).
    index: Option<Gaps>,
    /// Changes made since the index was last brought up to date.
    pending: Vec<Change>,
}

impl LazyGaps {
    /// Smallest log length that drops the index.
    const MIN_LOG: usize = 64;

    pub(crate) const fn new() -> Self {
        Self {
            index: None,
            pending: Vec::new(),
        }
    }

    fn log(&mut self, c: Change, areas: usize) {
        if self.index.is_none() {
            return;
        }
        self.pending.push(c);
        if self.pending.len() > areas.max(Self::MIN_LOG) {
            self.index = None;
            self.pending.clear();
        }
    }

    /// `[start, end)` was taken by an area; `areas` is the area count after it.
    pub(crate) fn occupy(&mut self, start: usize, end: usize, areas: usize) {
        self.log(Change::Occupy(start, end), areas);
    }

    /// `[start, end)` is no longer covered by any area.
    pub(crate) fn release(&mut self, start: usize, end: usize, areas: usize) {
        self.log(Change::Release(start, end), areas);
    }

    /// All areas are gone.
    pub(crate) fn clear(&mut self) {
        self.index = None;
        self.pending = Vec::new();
    }

    /// The index, up to date with `areas` (the areas' `(start, end)` in address
    /// order, read only if the index must be rebuilt).
    pub(crate) fn get<I>(&mut self, areas: impl FnOnce() -> I) -> &Gaps
    where
        I: Iterator<Item = (usize, usize)>,
    {
        let pending = core::mem::take(&mut self.pending);
        self.index.get_or_insert_with(|| {
            let mut gaps = Vec::new();
            let mut at = 0;
            for (s, e) in areas() {
                if s > at {
                    gaps.push((at, s));
                }
                at = e;
            }
            if at < TOP {
                gaps.push((at, TOP));
            }
            Gaps::from_sorted(&gaps)
        });
        let index = self.index.as_mut().expect("set above");
        // A rebuilt index already reflects the log; `take` above emptied it only
        // when the index existed before, as `log` records nothing without one.
        for c in pending {
            match c {
                Change::Occupy(s, e) => index.occupy(s, e),
                Change::Release(s, e) => index.release(s, e),
            }
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    /// A naive model: the areas as a map start -> end.
    fn model_gaps(areas: &BTreeMap<usize, usize>) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        for (&s, &e) in areas {
            if s > at {
                out.push((at, s));
            }
            at = e;
        }
        if at < TOP {
            out.push((at, TOP));
        }
        out
    }

    fn model_first_fit(
        areas: &BTreeMap<usize, usize>,
        lo: usize,
        hi: usize,
        size: usize,
    ) -> Option<usize> {
        model_gaps(areas)
            .into_iter()
            .map(|(s, e)| (s.max(lo), e.min(hi)))
            .find(|&(s, e)| s < e && e - s >= size)
            .map(|(s, _)| s)
    }

    /// A seeded xorshift64: `rnd(n)` is in `0..n`.
    fn xorshift(mut x: u64) -> impl FnMut(usize) -> usize {
        move |n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        }
    }

    #[test]
    fn random_occupy_release_against_a_model() {
        let mut g = Gaps::from_sorted(&[(0, TOP)]);
        let mut areas: BTreeMap<usize, usize> = BTreeMap::new();
        let mut rnd = xorshift(0x1234_5678);
        for step in 0..20_000 {
            let s = rnd(512) * 16;
            let e = s + (1 + rnd(8)) * 16;
            let free = areas.range(..e).next_back().is_none_or(|(_, &ae)| ae <= s);
            if free && rnd(3) != 0 {
                g.occupy(s, e);
                areas.insert(s, e);
            } else if let Some((&as_, &ae)) = areas.range(..=s).next_back() {
                areas.remove(&as_);
                g.release(as_, ae);
            }
            if step % 97 == 0 {
                g.check();
                assert_eq!(g.to_vec(), model_gaps(&areas), "step {step}");
            }
            let (lo, hi, size) = (rnd(8192), rnd(9000), 1 + rnd(200));
            let fit = |s: usize, e: usize| (e.saturating_sub(s) >= size).then_some(s);
            assert_eq!(
                g.first_fit(lo, hi, size, fit),
                model_first_fit(&areas, lo, hi, size),
                "step {step}: first fit of {size} in [{lo}, {hi})"
            );
        }
        while let Some((s, e)) = areas.pop_first() {
            g.release(s, e);
        }
        g.check();
        assert_eq!(g.to_vec(), [(0, TOP)]);
    }

    #[test]
    fn lazy_index_follows_the_areas_through_logs_drops_and_rebuilds() {
        let mut lazy = LazyGaps::new();
        let mut areas: BTreeMap<usize, usize> = BTreeMap::new();
        let mut rnd = xorshift(0x9abc_def0);
        let (mut rebuilt, mut dropped) = (0, 0);
        for step in 0..20_000 {
            let s = rnd(4096) * 16;
            let e = s + (1 + rnd(8)) * 16;
            let free = areas.range(..e).next_back().is_none_or(|(_, &ae)| ae <= s);
            if free && rnd(2) == 0 {
                areas.insert(s, e);
                lazy.occupy(s, e, areas.len());
            } else if let Some((&as_, &ae)) = areas.range(..=s).next_back() {
                areas.remove(&as_);
                lazy.release(as_, ae, areas.len());
            }
            if lazy.index.is_none() {
                dropped += 1;
            }
            // Placements come in bursts, with long runs of changes between.
            if (step / 500) % 2 == 0 && rnd(4) == 0 {
                let had = lazy.index.is_some();
                let g = lazy.get(|| areas.iter().map(|(&s, &e)| (s, e)));
                rebuilt += usize::from(!had);
                g.check();
                assert_eq!(g.to_vec(), model_gaps(&areas), "step {step}");
            }
        }
        assert!(
            rebuilt > 1 && dropped > 0,
            "rebuilt {rebuilt}, dropped {dropped}"
        );
        lazy.clear();
        areas.clear();
        assert_eq!(
            lazy.get(|| areas.iter().map(|(&s, &e)| (s, e))).to_vec(),
            [(0, TOP)]
        );
    }

    #[test]
    fn built_index_of_no_gap_stays_exact() {
        let mut g = Gaps::from_sorted(&[]);
        assert_eq!(g.to_vec(), []);
        assert_eq!(g.first_fit(0, 0x1000, 1, |s, _| Some(s)), None);
        g.release(0x1000, 0x2000);
        g.check();
        assert_eq!(g.to_vec(), [(0x1000, 0x2000)]);
    }

    #[test]
    fn occupy_of_the_whole_space_and_back() {
        let mut g = Gaps::from_sorted(&[(0, TOP)]);
        assert_eq!(
            g.first_fit(0x1000, 0x9000, 0x2000, |s, _| Some(s)),
            Some(0x1000)
        );
        g.occupy(0x1000, 0x3000);
        assert_eq!(g.to_vec(), [(0, 0x1000), (0x3000, TOP)]);
        assert_eq!(
            g.first_fit(0x1000, 0x9000, 0x2000, |s, e| (e - s >= 0x2000)
                .then_some(s)),
            Some(0x3000)
        );
        g.release(0x1000, 0x3000);
        assert_eq!(g.to_vec(), [(0, TOP)]);
        g.occupy(0, TOP);
        assert_eq!(g.to_vec(), []);
        g.check();
    }
}
