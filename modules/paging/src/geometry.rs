//! The shape every supported format shares: tables of [`ENTRIES`] eight-byte
//! entries, 4 KiB pages, 9 address bits per level. Height 0 holds 4K leaves,
//! height 1 2M leaves, height 2 1G leaves; a `LEVELS`-level table's root is at
//! height `LEVELS - 1`.
//!
//! The [`PageTable`](crate::PageTable) walks use these, and so do the boards'
//! boot tables, which are static data built before any page table exists: all
//! page-table index arithmetic is here.

/// Entries in one table.
pub const ENTRIES: usize = 512;

/// Bits of a linear address below the entries of height `h`.
#[inline(always)]
pub const fn shift(h: usize) -> usize {
    12 + 9 * h
}

/// Bytes one entry at height `h` covers.
#[inline(always)]
pub const fn span(h: usize) -> usize {
    1 << shift(h)
}

/// Index of the entry at height `h` for linear address `la`.
#[inline(always)]
pub const fn index(la: usize, h: usize) -> usize {
    (la >> shift(h)) & (ENTRIES - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights() {
        assert_eq!(
            (span(0), span(1), span(2)),
            (0x1000, 0x20_0000, 0x4000_0000)
        );
        assert_eq!(index(0xffff_8000_0000_0000, 3), 256);
        assert_eq!(index(0xffff_ffc0_8000_0000, 2), 258);
        assert_eq!(index(0x1234_5678_9000, 0), 0x189);
    }
}
