//! The board's cycle counter.

use hal::Board;
use runtime::board::Current;

/// Current value of the cycle (or constant-rate tick) counter.
pub fn cycles() -> u64 {
    Current::cycles()
}

/// Ticks per second, if the board knows it.
pub fn cycles_per_sec() -> Option<u64> {
    Current::cycles_per_sec()
}
