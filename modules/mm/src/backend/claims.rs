//! Claims: the blocks a fault is filling without the table lock.
//!
//! A fault on an allocated page looks under the table lock, then allocates and
//! zeroes its frame (or a huge page's run) without it, then installs under it
//! again (the crate docs, "Locking protocol for several CPUs"). Between the
//! two looks it holds a *claim* on the block it fills: `[page, page + 4K)` or
//! the huge page's aligned block. A second fault whose block overlaps a claim
//! does not allocate a frame of its own: it releases the lock, waits until the
//! claim is gone, and looks again (and finds the page mapped). So a page that
//! several CPUs fault at the same moment gets exactly one frame, and the
//! others allocate nothing.
//!
//! The waiter spins with interrupts off (it is in a fault handler) and does
//! not answer TLB flush requests meanwhile. That is safe because the
//! claimant needs nothing from any other CPU to finish: it takes a frame
//! (the frame allocator's locks are held for a few instructions and never
//! across a wait), zeroes it, takes the table lock (never held across a
//! wait) and installs; no shootdown can be pending on the waiter's behalf
//! either, since a call that shoots down holds the address-space lock's
//! write side, which waits for both faults to end first.
//!
//! Invariants (all under the table lock): at most [`MAX_CLAIMS`] claims, no
//! two overlapping; a claim is removed by the fault that made it before that
//! fault returns, whatever the outcome. With every slot taken (more faults
//! filling at once than slots) a fault fills without a claim: the re-check at
//! install still makes it correct, it just may allocate a frame it then frees.

/// Claims held at once (faults filling at the same moment).
pub(crate) const MAX_CLAIMS: usize = 64;

/// The claimed blocks, `[start, end)` each.
pub(crate) struct Claims {
    ranges: [(usize, usize); MAX_CLAIMS],
    len: usize,
}

impl Claims {
    pub(crate) const fn new() -> Self {
        Self {
            ranges: [(0, 0); MAX_CLAIMS],
            len: 0,
        }
    }

    /// Whether some claim overlaps `[start, end)`.
    #[inline]
    pub(crate) fn overlaps(&self, start: usize, end: usize) -> bool {
        self.len != 0
            && self.ranges[..self.len]
                .iter()
                .any(|&(s, e)| s < end && start < e)
    }

    /// Claims `[start, end)` (which overlaps no claim); false if every slot is
    /// taken (the caller fills without a claim).
    #[inline]
    pub(crate) fn add(&mut self, start: usize, end: usize) -> bool {
        if self.len == MAX_CLAIMS {
            return false;
        }
        self.ranges[self.len] = (start, end);
        self.len += 1;
        true
    }

    /// Drops the claim that starts at `start`.
    #[inline]
    pub(crate) fn remove(&mut self, start: usize) {
        if let Some(i) = self.ranges[..self.len].iter().position(|r| r.0 == start) {
            self.len -= 1;
            self.ranges[i] = self.ranges[self.len];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_overlap_add_remove_and_fill_up() {
        let mut c = Claims::new();
        assert!(!c.overlaps(0, usize::MAX));
        assert!(c.add(0x1000, 0x2000));
        assert!(c.add(0x20_0000, 0x40_0000));
        assert!(c.overlaps(0x1000, 0x2000) && c.overlaps(0x3f_f000, 0x40_0000));
        assert!(!c.overlaps(0x2000, 0x3000) && !c.overlaps(0x40_0000, 0x40_1000));
        c.remove(0x1000);
        assert!(!c.overlaps(0x1000, 0x2000) && c.overlaps(0x20_0000, 0x20_1000));
        c.remove(0x20_0000);
        for i in 0..MAX_CLAIMS {
            assert!(c.add(i << 12, (i + 1) << 12));
        }
        assert!(!c.add(1 << 40, 2 << 40), "every slot taken");
    }
}
