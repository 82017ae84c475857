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
    /// The flags contain neither `READ` nor `EXECUTE`, or the format cannot
    /// encode them as a present leaf (AArch64: execute-only).
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
    /// The flags contain neither `READ` nor `EXECUTE`, or the format cannot
    /// encode them as a present leaf (AArch64: execute-only).
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

/// Why a lookup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    /// The address is outside the translated space.
    OutOfRange,
}

/// Why a range was refused by a read that takes one
/// ([`PageTable::check_range`](crate::PageTable::check_range),
/// [`PageTable::tables_needed`](crate::PageTable::tables_needed)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRange {
    /// The address or the size is not 4K aligned.
    NotAligned,
    /// The range is outside the translated space or crosses the hole.
    OutOfRange,
}

/// Why an explicit split at an address failed. On error no entry was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// No table frame was available for the smaller leaves.
    NoMemory,
    /// The address is not 4K aligned.
    NotAligned,
    /// The address is outside the translated space.
    OutOfRange,
    /// The address lies in root entries shared from another table.
    Shared,
}

/// Why undoing a split failed. On error no entry was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsplitError {
    /// The tables under the split leaf's range no longer hold exactly the
    /// leaves the split made (something was mapped, unmapped or protected
    /// there since, or that split was undone already).
    Changed,
}

/// Why a range check or edge split failed, before any entry changed (crate-internal;
/// converted to the operation's own error by variant name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeError {
    NotAligned,
    OutOfRange,
    Shared,
    NoMemory,
}

/// Why a single-page unmap or protect found no page of the asked size (crate-internal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageError {
    NotMapped,
    SizeMismatch,
}

/// `impl From<$from> for $to`, mapping each listed variant to the variant of the
/// same name. The match is exhaustive, so a variant added to `$from` and not
/// listed is a compile error.
macro_rules! by_name {
    ($from:ident => $to:ident: $($v:ident)|+) => {
        impl From<$from> for $to {
            fn from(e: $from) -> Self {
                match e {
                    $($from::$v => $to::$v,)+
                }
            }
        }
    };
}

by_name!(RangeError => MapError: NotAligned | OutOfRange | Shared | NoMemory);
by_name!(RangeError => UnmapError: NotAligned | OutOfRange | Shared | NoMemory);
by_name!(RangeError => ProtectError: NotAligned | OutOfRange | Shared | NoMemory);
by_name!(RangeError => SplitError: NotAligned | OutOfRange | Shared | NoMemory);
by_name!(PageError => UnmapError: NotMapped | SizeMismatch);
by_name!(PageError => ProtectError: NotMapped | SizeMismatch);

/// Every variant name used by the public error enums. A name means the same
/// [`AxError`] in every enum; this is the one place that says which.
enum Cause {
    AlreadyMapped,
    NotMapped,
    SizeMismatch,
    NoMemory,
    NotAligned,
    OutOfRange,
    InvalidFlags,
    Shared,
    Changed,
}

impl From<Cause> for AxError {
    fn from(c: Cause) -> Self {
        match c {
            Cause::AlreadyMapped => AxError::AlreadyExists,
            Cause::NotMapped => AxError::NotFound,
            Cause::NoMemory => AxError::NoMemory,
            Cause::OutOfRange => AxError::BadAddress,
            Cause::NotAligned | Cause::SizeMismatch | Cause::InvalidFlags => AxError::InvalidInput,
            Cause::Shared => AxError::PermissionDenied,
            Cause::Changed => AxError::BadState,
        }
    }
}

/// `impl From<$e> for AxError` for each public error enum, through [`Cause`].
macro_rules! to_ax_error {
    ($($e:ident),+) => {$(
        impl From<$e> for AxError {
            fn from(e: $e) -> Self {
                Cause::from(e).into()
            }
        }
    )+};
}

by_name!(MapError => Cause: AlreadyMapped | NoMemory | NotAligned | OutOfRange | InvalidFlags | Shared);
by_name!(UnmapError => Cause: NotMapped | SizeMismatch | NoMemory | NotAligned | OutOfRange | Shared);
by_name!(ProtectError => Cause: NotMapped | SizeMismatch | NoMemory | NotAligned | OutOfRange | InvalidFlags | Shared);
by_name!(QueryError => Cause: NotMapped | OutOfRange);
by_name!(LookupError => Cause: OutOfRange);
by_name!(InvalidRange => Cause: NotAligned | OutOfRange);
by_name!(SplitError => Cause: NoMemory | NotAligned | OutOfRange | Shared);
by_name!(UnsplitError => Cause: Changed);
to_ax_error!(
    MapError,
    UnmapError,
    ProtectError,
    QueryError,
    LookupError,
    InvalidRange,
    SplitError,
    UnsplitError
);
