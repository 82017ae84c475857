//! What the crate does when it finds one of its invariants broken: it stops
//! (panics), in every build. The crate docs ("Broken invariants") say why.
//!
//! Only conditions that no input can cause reach this module: every argument
//! of a public call is checked, and refused with an error, before anything
//! relies on it.

use core::fmt;

/// Stops: an invariant of this crate does not hold (`what` says which).
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn broken(what: fmt::Arguments<'_>) -> ! {
    panic!("mm: broken invariant: {what}")
}

/// Checks a condition the crate's invariants guarantee; stops if it is false.
macro_rules! invariant {
    ($cond:expr, $($what:tt)+) => {
        if !$cond {
            $crate::invariant::broken(format_args!($($what)+))
        }
    };
}
pub(crate) use invariant;

/// Checks a page-table operation that cannot fail: an unmap or protect whose
/// ends are leaf boundaries already (`Mapper::split_edges`), over a valid
/// range the area set owns, with flags that allow access. A failure is a
/// broken invariant.
#[track_caller]
pub(crate) fn infallible<E: fmt::Debug>(r: Result<(), E>, op: &str, start: usize, end: usize) {
    if let Err(e) = r {
        broken(format_args!("{op} of [{start:#x}, {end:#x}) failed: {e:?}"));
    }
}
