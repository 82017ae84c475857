//! Error types of the operations, converted to [`AxError`] at the public boundary.

use core::fmt;

use axerrno::AxError;

use crate::AreaInfo;

/// Why a backend could not map pages (nothing of the range is left mapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Out of frames (for data or for page tables).
    NoMemory,
    /// A PTE was already present where the area expected none: a broken invariant.
    AlreadyMapped,
}

impl From<MapError> for AxError {
    fn from(e: MapError) -> Self {
        match e {
            MapError::NoMemory => AxError::NoMemory,
            MapError::AlreadyMapped => AxError::BadState,
        }
    }
}

/// Why an area could not be split at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// A huge page of a linear area straddles the address.
    HugePage,
}

impl From<SplitError> for AxError {
    fn from(e: SplitError) -> Self {
        match e {
            SplitError::HugePage => AxError::InvalidInput,
        }
    }
}

/// Why an area could not be inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// The range is empty.
    Empty,
    /// The range overlaps an area.
    Overlap,
    /// The backend could not map it.
    Map(MapError),
}

impl From<MapError> for InsertError {
    fn from(e: MapError) -> Self {
        InsertError::Map(e)
    }
}

impl From<InsertError> for AxError {
    fn from(e: InsertError) -> Self {
        match e {
            InsertError::Empty => AxError::InvalidInput,
            InsertError::Overlap => AxError::AlreadyExists,
            InsertError::Map(e) => e.into(),
        }
    }
}

/// Why a range could not be unmapped (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmapError {
    /// An end of the range lies inside a huge page.
    Split(SplitError),
}

impl From<SplitError> for UnmapError {
    fn from(e: SplitError) -> Self {
        UnmapError::Split(e)
    }
}

impl From<UnmapError> for AxError {
    fn from(e: UnmapError) -> Self {
        match e {
            UnmapError::Split(e) => e.into(),
        }
    }
}

/// Why the protection of a range could not be changed (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectError {
    /// A page of the range is not covered by an area (POSIX `ENOMEM`).
    Unmapped,
    /// An end of the range lies inside a huge page.
    Split(SplitError),
    /// Page-table frames needed to re-map pages are not available.
    NoMemory,
}

impl From<SplitError> for ProtectError {
    fn from(e: SplitError) -> Self {
        ProtectError::Split(e)
    }
}

impl From<ProtectError> for AxError {
    fn from(e: ProtectError) -> Self {
        match e {
            ProtectError::Unmapped | ProtectError::NoMemory => AxError::NoMemory,
            ProtectError::Split(e) => e.into(),
        }
    }
}

/// Why a page fault was not resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultError {
    /// No area covers the address.
    NoArea,
    /// The area's current flags do not allow the access.
    Denied {
        /// The area that covers the address.
        area: AreaInfo,
    },
    /// The access is allowed but no frame (or page-table frame) was available.
    NoMemory {
        /// The area that covers the address.
        area: AreaInfo,
    },
}

impl FaultError {
    /// The area covering the address, if any.
    pub fn area(&self) -> Option<&AreaInfo> {
        match self {
            FaultError::NoArea => None,
            FaultError::Denied { area } | FaultError::NoMemory { area } => Some(area),
        }
    }
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::NoArea => f.write_str("no area"),
            FaultError::Denied { area } => write!(f, "not allowed by {area}"),
            FaultError::NoMemory { area } => {
                write!(f, "no free frame for the page (out of memory) in {area}")
            }
        }
    }
}

impl From<FaultError> for AxError {
    fn from(e: FaultError) -> Self {
        match e {
            FaultError::NoArea => AxError::BadAddress,
            FaultError::Denied { .. } => AxError::PermissionDenied,
            FaultError::NoMemory { .. } => AxError::NoMemory,
        }
    }
}
