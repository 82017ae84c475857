//! Error types of the operations, converted to [`AxError`] at the public boundary.

use core::fmt;

use axerrno::AxError;

use crate::AreaInfo;

/// Why a backend could not map (or re-map) pages. Recorded by the backend in
/// [`crate::Mapper`], because `memory_set` only passes a `bool` back.
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
            FaultError::NoMemory { area } => write!(f, "out of memory in {area}"),
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
