//! What one CPU must forget: a few page ranges, or everything.
//!
//! Invariants: ranges are page aligned, non-empty, sorted and disjoint (touching
//! ranges are merged); a flush holds at most [`MAX_RANGES`] ranges and at most
//! [`FULL_FLUSH_PAGES`] pages, and becomes a full flush ([`Flush::All`]) past
//! either limit, which is also what merging anything into a full flush gives.

/// Pages past which a targeted flush costs more than flushing everything. Linux
/// switches at 33 pages; page_table_multiarch and Asterinas at 32.
pub const FULL_FLUSH_PAGES: usize = 32;

/// Ranges a targeted flush keeps before it becomes a full flush.
pub const MAX_RANGES: usize = 4;

const PAGE: usize = 4096;

/// Translations to drop from a TLB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flush {
    /// Nothing.
    #[default]
    None,
    /// The pages of these ranges (`[start, end)`, page aligned; only the first
    /// `len` are used).
    Ranges {
        /// The ranges, sorted and disjoint.
        ranges: [(usize, usize); MAX_RANGES],
        /// How many of `ranges` are used (1..=MAX_RANGES).
        len: usize,
        /// Pages in all ranges.
        pages: usize,
    },
    /// Every translation (of the address space).
    All,
}

impl Flush {
    /// Whether there is nothing to flush.
    pub fn is_none(&self) -> bool {
        matches!(self, Flush::None)
    }

    /// The ranges of a targeted flush (empty for `None` and `All`).
    pub fn ranges(&self) -> &[(usize, usize)] {
        match self {
            Flush::Ranges { ranges, len, .. } => &ranges[..*len],
            _ => &[],
        }
    }

    /// Calls `f` with the address of every page of a targeted flush.
    pub fn for_each_page(&self, mut f: impl FnMut(usize)) {
        for &(s, e) in self.ranges() {
            (s..e).step_by(PAGE).for_each(&mut f);
        }
    }

    /// Adds `[start, end)` (rounded out to pages). An empty range adds nothing.
    pub fn add(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        let (s, e) = (
            start & !(PAGE - 1),
            end.saturating_add(PAGE - 1) & !(PAGE - 1),
        );
        let (mut v, mut n) = match *self {
            Flush::All => return,
            Flush::None => ([(0, 0); MAX_RANGES + 1], 0),
            Flush::Ranges { ranges, len, .. } => {
                let mut v = [(0, 0); MAX_RANGES + 1];
                v[..len].copy_from_slice(&ranges[..len]);
                (v, len)
            }
        };
        // Insert in order, then merge neighbours that touch or overlap.
        let at = v[..n].iter().position(|r| r.0 > s).unwrap_or(n);
        v.copy_within(at..n, at + 1);
        v[at] = (s, e);
        n += 1;
        let mut out = 0;
        for i in 0..n {
            if out > 0 && v[i].0 <= v[out - 1].1 {
                v[out - 1].1 = v[out - 1].1.max(v[i].1);
            } else {
                v[out] = v[i];
                out += 1;
            }
        }
        let pages: usize = v[..out].iter().map(|r| (r.1 - r.0) / PAGE).sum();
        *self = if out > MAX_RANGES || pages > FULL_FLUSH_PAGES {
            Flush::All
        } else {
            let mut ranges = [(0, 0); MAX_RANGES];
            ranges[..out].copy_from_slice(&v[..out]);
            Flush::Ranges {
                ranges,
                len: out,
                pages,
            }
        };
    }

    /// Adds everything `other` flushes.
    pub fn merge(&mut self, other: &Flush) {
        match other {
            Flush::None => {}
            Flush::All => *self = Flush::All,
            Flush::Ranges { .. } => {
                for &(s, e) in other.ranges() {
                    self.add(s, e);
                }
            }
        }
    }

    /// Takes the flush out, leaving `None`.
    pub fn take(&mut self) -> Flush {
        core::mem::take(self)
    }

    /// Whether this flush drops the translation of `va`.
    pub fn covers(&self, va: usize) -> bool {
        match self {
            Flush::None => false,
            Flush::All => true,
            Flush::Ranges { .. } => self.ranges().iter().any(|&(s, e)| (s..e).contains(&va)),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_sort_and_escalate() {
        let mut f = Flush::None;
        f.add(0x5000, 0x6000);
        f.add(0x1000, 0x3000);
        f.add(0x3000, 0x4000); // touches the second: merged
        assert_eq!(f.ranges(), &[(0x1000, 0x4000), (0x5000, 0x6000)]);
        assert!(f.covers(0x3fff) && !f.covers(0x4000));
        f.add(0x10_0000, 0x10_0001); // rounded out to a page
        f.add(0x20_0000, 0x20_1000);
        assert_eq!(f.ranges().len(), 4);
        f.add(0x30_0000, 0x30_1000); // a fifth range: everything
        assert_eq!(f, Flush::All);
        f.add(0, 0x1000);
        assert_eq!(f, Flush::All);
    }

    #[test]
    fn more_than_the_threshold_is_a_full_flush() {
        let mut f = Flush::None;
        f.add(0, FULL_FLUSH_PAGES * PAGE);
        assert!(matches!(
            f,
            Flush::Ranges {
                pages: FULL_FLUSH_PAGES,
                ..
            }
        ));
        f.add(FULL_FLUSH_PAGES * PAGE, (FULL_FLUSH_PAGES + 1) * PAGE);
        assert_eq!(f, Flush::All);
        let mut n = 0;
        Flush::None.for_each_page(|_| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn merge_and_take() {
        let (mut a, mut b) = (Flush::None, Flush::None);
        a.add(0x1000, 0x2000);
        b.add(0x8000, 0xa000);
        a.merge(&b);
        let mut pages = std::vec::Vec::new();
        a.for_each_page(|p| pages.push(p));
        assert_eq!(pages, [0x1000, 0x8000, 0x9000]);
        assert_eq!(a.take().ranges().len(), 2);
        assert!(a.is_none());
        a.add(5, 5);
        assert!(a.is_none());
        a.merge(&Flush::All);
        assert_eq!(a, Flush::All);
    }
}
