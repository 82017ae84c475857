//! The physical memory map.

use memory_addr::PhysAddr;

/// What a physical range holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemKind {
    /// Kernel code: mapped read + execute.
    Text,
    /// Kernel read-only data: mapped read-only.
    Rodata,
    /// Kernel data, bss and the kernel stacks (not their guard pages, which are in
    /// no region): mapped read + write, never execute.
    Data,
    /// RAM handed to the frame allocator: linearly mapped read + write.
    Free,
    /// RAM that must not be allocated (firmware, device tree): mapped read-only.
    Reserved,
    /// Device registers: mapped as device memory.
    Mmio,
}

/// One range of the physical memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    /// Start (page aligned).
    pub paddr: PhysAddr,
    /// Size in bytes (page aligned).
    pub size: usize,
    /// What it holds.
    pub kind: MemKind,
    /// A short name for the memory-map dump.
    pub name: &'static str,
}

/// The usable RAM the firmware reported (the multiboot memory map, the device
/// tree's `/memory` nodes): at most [`FirmwareRam::CAPACITY`] ranges, kept sorted
/// and merged. Empty means the firmware said nothing.
///
/// The kernel hands out only frames that are RAM both in the board's config and
/// here: firmware-reserved RAM (ACPI tables at the top of q35's RAM) stays out,
/// and a machine with less RAM than the kernel was built for (`MEM=`) loses the
/// missing part instead of faulting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareRam {
    ranges: [(usize, usize); Self::CAPACITY],
    len: usize,
    /// Ranges dropped because the list was full (they are then not used).
    dropped: usize,
}

impl Default for FirmwareRam {
    fn default() -> Self {
        Self::new()
    }
}

impl FirmwareRam {
    /// Most ranges kept.
    pub const CAPACITY: usize = 32;

    /// No information.
    pub const fn new() -> Self {
        Self {
            ranges: [(0, 0); Self::CAPACITY],
            len: 0,
            dropped: 0,
        }
    }

    /// Adds usable RAM `[start, start + size)` (clamped at the top of the
    /// address space), merging it with what it overlaps or touches.
    pub fn add(&mut self, start: usize, size: usize) {
        let end = start.saturating_add(size);
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        // Take out every range that overlaps or touches [s, e), widening it.
        let mut i = 0;
        while i < self.len {
            let (rs, re) = self.ranges[i];
            if rs <= e && s <= re {
                s = s.min(rs);
                e = e.max(re);
                self.ranges.copy_within(i + 1..self.len, i);
                self.len -= 1;
            } else {
                i += 1;
            }
        }
        if self.len == Self::CAPACITY {
            self.dropped += 1;
            return;
        }
        let at = self.ranges[..self.len].partition_point(|&(rs, _)| rs < s);
        self.ranges.copy_within(at..self.len, at + 1);
        self.ranges[at] = (s, e);
        self.len += 1;
    }

    /// Takes `[start, start + size)` out of the usable RAM (a firmware
    /// reservation inside it). A range cut in two needs a free slot; if the list
    /// is full the upper piece is dropped (and counted): RAM is only ever lost,
    /// never invented.
    pub fn remove(&mut self, start: usize, size: usize) {
        let end = start.saturating_add(size);
        if start >= end {
            return;
        }
        let mut i = 0;
        while i < self.len {
            let (rs, re) = self.ranges[i];
            if re <= start || end <= rs {
                i += 1;
                continue;
            }
            // Overlap: keep what lies below and above the hole.
            let (below, above) = (
                (rs < start).then_some((rs, start)),
                (end < re).then_some((end, re)),
            );
            match (below, above) {
                (Some(b), Some(a)) => {
                    self.ranges[i] = b;
                    if self.len == Self::CAPACITY {
                        self.dropped += 1;
                    } else {
                        self.ranges.copy_within(i + 1..self.len, i + 2);
                        self.ranges[i + 1] = a;
                        self.len += 1;
                    }
                    return;
                }
                (Some(piece), None) | (None, Some(piece)) => {
                    self.ranges[i] = piece;
                    i += 1;
                }
                (None, None) => {
                    self.ranges.copy_within(i + 1..self.len, i);
                    self.len -= 1;
                }
            }
        }
    }

    /// The ranges as (start, end), sorted, disjoint and not touching.
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges[..self.len]
    }

    /// Whether the firmware reported nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ranges that did not fit in the list (left out of RAM).
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Bytes of usable RAM reported.
    pub fn total(&self) -> usize {
        self.ranges().iter().map(|&(s, e)| e - s).sum()
    }

    /// Whether `[start, end)` lies inside one reported range.
    pub fn contains(&self, start: usize, end: usize) -> bool {
        self.ranges()
            .iter()
            .any(|&(rs, re)| rs <= start && end <= re)
    }

    /// The parts of `[start, end)` that are reported RAM, in address order.
    pub fn clip(&self, start: usize, end: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges().iter().filter_map(move |&(rs, re)| {
            let (s, e) = (rs.max(start), re.min(end));
            (s < e).then_some((s, e))
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn ranges_stay_sorted_and_merged() {
        let mut r = FirmwareRam::new();
        assert!(r.is_empty());
        r.add(0x10_0000, 0x7ee_0000); // [1M, 0x7fe_0000)
        r.add(0, 0x9_fc00);
        r.add(0x7fe_0000, 0); // empty: ignored
        assert_eq!(r.ranges(), [(0, 0x9_fc00), (0x10_0000, 0x7fe_0000)]);
        r.add(0x9_fc00, 0x6_0400); // touches both: one range
        assert_eq!(r.ranges(), [(0, 0x7fe_0000)]);
        r.add(usize::MAX - 0xfff, 0x2000); // clamped at the top
        assert_eq!(r.ranges()[1], (usize::MAX - 0xfff, usize::MAX));
        assert_eq!(r.total(), 0x7fe_0000 + 0xfff);
        assert!(r.contains(0x1000, 0x7fe_0000) && !r.contains(0x1000, 0x7fe_1000));
        let clipped: Vec<_> = r.clip(0x7f0_0000, 0x900_0000).collect();
        assert_eq!(clipped, [(0x7f0_0000, 0x7fe_0000)]);
    }

    #[test]
    fn reservations_cut_holes() {
        let mut r = FirmwareRam::new();
        r.add(0x8000_0000, 0x800_0000);
        r.remove(0x8000_0000, 0x4_0000); // at the start
        r.remove(0x8100_0000, 0x1000); // in the middle: two pieces
        r.remove(0x87ff_f000, 0x10_0000); // over the end
        r.remove(0x9000_0000, 0x1000); // outside: nothing
        assert_eq!(
            r.ranges(),
            [(0x8004_0000, 0x8100_0000), (0x8100_1000, 0x87ff_f000)]
        );
        r.remove(0, usize::MAX); // everything
        assert!(r.is_empty());
    }

    #[test]
    fn a_full_list_drops_and_counts() {
        let mut r = FirmwareRam::new();
        for i in 0..FirmwareRam::CAPACITY + 3 {
            r.add(i * 0x2000, 0x1000);
        }
        assert_eq!(r.ranges().len(), FirmwareRam::CAPACITY);
        assert_eq!(r.dropped(), 3);
        // A range bridging two kept ones still merges (it frees a slot).
        r.add(0x1000, 0x1000);
        assert_eq!(r.ranges()[0], (0, 0x3000));
    }
}
