//! One small error enum per operation.

use axerrno::AxError;

/// Why a map operation failed. On error nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Part of the range is already mapped.
    AlreadyMapped,
    /// A table frame could not be allocated.
    NoMemory,
    /// An address or the size is not aligned to the page size.
    NotAligned,
    /// The virtual range is outside the translated space or crosses the hole
    /// between halves, or the physical range exceeds the format's limit.
    OutOfRange,
    /// The flags contain neither `READ` nor `EXECUTE` (no format can encode that leaf).
    InvalidFlags,
    /// The range touches root entries shared from another table.
    Shared,
}

/// Why an unmap operation failed. On error no leaf was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmapError {
    /// (Single-page unmap) nothing is mapped at the address.
    NotMapped,
    /// (Single-page unmap) the address is mapped with smaller pages than asked.
    SizeMismatch,
    /// A huge leaf at a range edge had to be split and no table frame was available.
    NoMemory,
    /// The address or the size is not aligned to the page size.
    NotAligned,
    /// The range is outside the translated space or crosses the hole.
    OutOfRange,
    /// The range touches root entries shared from another table.
    Shared,
}

/// Why a protect (flag update) operation failed. On error no flags were changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectError {
    /// (Single-page protect) nothing is mapped at the address.
    NotMapped,
    /// (Single-page protect) the address is mapped with smaller pages than asked.
    SizeMismatch,
    /// A huge leaf at a range edge had to be split and no table frame was available.
    NoMemory,
    /// The address or the size is not aligned to the page size.
    NotAligned,
    /// The range is outside the translated space or crosses the hole.
    OutOfRange,
    /// The flags contain neither `READ` nor `EXECUTE`.
    InvalidFlags,
    /// The range touches root entries shared from another table.
    Shared,
}

/// Why a query failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// Nothing is mapped at the address.
    NotMapped,
    /// The address is outside the translated space.
    OutOfRange,
}

impl From<MapError> for AxError {
    fn from(e: MapError) -> Self {
        match e {
            MapError::AlreadyMapped => AxError::AlreadyExists,
            MapError::NoMemory => AxError::NoMemory,
            MapError::OutOfRange => AxError::BadAddress,
            MapError::NotAligned | MapError::InvalidFlags => AxError::InvalidInput,
            MapError::Shared => AxError::PermissionDenied,
        }
    }
}

impl From<UnmapError> for AxError {
    fn from(e: UnmapError) -> Self {
        match e {
            UnmapError::NotMapped => AxError::NotFound,
            UnmapError::NoMemory => AxError::NoMemory,
            UnmapError::OutOfRange => AxError::BadAddress,
            UnmapError::NotAligned | UnmapError::SizeMismatch => AxError::InvalidInput,
            UnmapError::Shared => AxError::PermissionDenied,
        }
    }
}

impl From<ProtectError> for AxError {
    fn from(e: ProtectError) -> Self {
        match e {
            ProtectError::NotMapped => AxError::NotFound,
            ProtectError::NoMemory => AxError::NoMemory,
            ProtectError::OutOfRange => AxError::BadAddress,
            ProtectError::NotAligned | ProtectError::SizeMismatch | ProtectError::InvalidFlags => {
                AxError::InvalidInput
            }
            ProtectError::Shared => AxError::PermissionDenied,
        }
    }
}

impl From<QueryError> for AxError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::NotMapped => AxError::NotFound,
            QueryError::OutOfRange => AxError::BadAddress,
        }
    }
}
