//! Page sizes as types.

mod sealed {
    pub trait Sealed {}
}

/// A page size the hardware can map with one leaf.
///
/// Implemented by [`Size4K`], [`Size2M`] and [`Size1G`] only.
pub trait PageSize: sealed::Sealed + Copy + Clone + core::fmt::Debug + 'static {
    /// Size in bytes.
    const SIZE: usize;
    /// Height of the table level that holds this leaf (0 for 4K, 1 for 2M, 2 for 1G).
    const HEIGHT: usize;
    /// The same size as a value.
    const LEAF: LeafSize;
}

/// A 4 KiB page.
#[derive(Debug, Clone, Copy)]
pub enum Size4K {}
/// A 2 MiB page.
#[derive(Debug, Clone, Copy)]
pub enum Size2M {}
/// A 1 GiB page.
#[derive(Debug, Clone, Copy)]
pub enum Size1G {}

impl sealed::Sealed for Size4K {}
impl sealed::Sealed for Size2M {}
impl sealed::Sealed for Size1G {}

impl PageSize for Size4K {
    const SIZE: usize = 0x1000;
    const HEIGHT: usize = 0;
    const LEAF: LeafSize = LeafSize::Size4K;
}
impl PageSize for Size2M {
    const SIZE: usize = 0x20_0000;
    const HEIGHT: usize = 1;
    const LEAF: LeafSize = LeafSize::Size2M;
}
impl PageSize for Size1G {
    const SIZE: usize = 0x4000_0000;
    const HEIGHT: usize = 2;
    const LEAF: LeafSize = LeafSize::Size1G;
}

/// The size of a leaf found in a table (the value-level twin of [`PageSize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeafSize {
    /// 4 KiB.
    Size4K,
    /// 2 MiB.
    Size2M,
    /// 1 GiB.
    Size1G,
}

impl LeafSize {
    /// Size in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            Self::Size4K => Size4K::SIZE,
            Self::Size2M => Size2M::SIZE,
            Self::Size1G => Size1G::SIZE,
        }
    }

    /// Height of the table level that holds this leaf.
    pub const fn height(self) -> usize {
        match self {
            Self::Size4K => 0,
            Self::Size2M => 1,
            Self::Size1G => 2,
        }
    }

    /// The leaf size held at `height`, if leaves can live there.
    pub const fn from_height(height: usize) -> Option<Self> {
        match height {
            0 => Some(Self::Size4K),
            1 => Some(Self::Size2M),
            2 => Some(Self::Size1G),
            _ => None,
        }
    }
}

impl From<LeafSize> for page_table_multiarch::PageSize {
    fn from(s: LeafSize) -> Self {
        match s {
            LeafSize::Size4K => Self::Size4K,
            LeafSize::Size2M => Self::Size2M,
            LeafSize::Size1G => Self::Size1G,
        }
    }
}
