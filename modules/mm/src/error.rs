//! Error types: [`FaultError`], the fault path's answer (public), and the
//! crate's own small ones, converted to [`AxError`] at the public boundary.
//!
//! The internal errors carry only what can really happen. What the page
//! table could report but `mm` rules out by construction (a map over a
//! present entry, a misaligned or out-of-range address, flags without
//! access, a shared root slot) is a broken invariant, handled as the crate
//! docs say ("Broken invariants"), never an error value.

use core::fmt;

use axerrno::AxError;

use crate::AreaInfo;

/// Out of frames, for data or for page tables. The operation that reports it
/// left nothing of its own behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoMemory;

impl From<NoMemory> for AxError {
    fn from(_: NoMemory) -> Self {
        AxError::NoMemory
    }
}

/// Why an area could not be inserted (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InsertError {
    /// The range overlaps an area.
    Overlap,
    /// The backend ran out of frames mapping it.
    NoMemory,
}

impl From<NoMemory> for InsertError {
    fn from(_: NoMemory) -> Self {
        InsertError::NoMemory
    }
}

impl From<InsertError> for AxError {
    fn from(e: InsertError) -> Self {
        match e {
            InsertError::Overlap => AxError::AlreadyExists,
            InsertError::NoMemory => AxError::NoMemory,
        }
    }
}

/// A page of the range is not covered by an area (POSIX `ENOMEM` for
/// `mprotect`); nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Uncovered;

impl From<Uncovered> for AxError {
    fn from(_: Uncovered) -> Self {
        AxError::NoMemory
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
    /// The page lies past the end of the object the area maps (Linux's
    /// `SIGBUS`).
    PastEnd {
        /// The area that covers the address.
        area: AreaInfo,
    },
    /// The object's pager could not read the page (Linux's `SIGBUS` too).
    Io {
        /// The area that covers the address.
        area: AreaInfo,
    },
}

impl FaultError {
    /// The area covering the address, if any.
    pub fn area(&self) -> Option<&AreaInfo> {
        match self {
            FaultError::NoArea => None,
            FaultError::Denied { area }
            | FaultError::NoMemory { area }
            | FaultError::PastEnd { area }
            | FaultError::Io { area } => Some(area),
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
            FaultError::PastEnd { area } => {
                write!(f, "bus error: past the end of the object mapped by {area}")
            }
            FaultError::Io { area } => {
                write!(
                    f,
                    "bus error: the object's pager could not read the page of {area}"
                )
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
            FaultError::PastEnd { .. } => AxError::OutOfRange,
            FaultError::Io { .. } => AxError::Io,
        }
    }
}
