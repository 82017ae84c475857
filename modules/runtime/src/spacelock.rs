//! The lock around the kernel address space.
//!
//! A reader-writer spin lock that knows which CPUs hold it. Written here
//! rather than taken from `spin` because waiting must answer TLB flush
//! requests ([`crate::shootdown::relax`]: the holder may be waiting for this
//! CPU's acknowledgement), and because the fault path must tell "another CPU
//! holds it" (wait) from "this CPU holds it" (a fault inside a locked section:
//! a kernel bug, reported instead of deadlocking).
//!
//! # Protocol
//! - `state`: bit 63 is the writer, bit 62 a waiting writer, the low bits the
//!   number of readers. A writer takes the lock when `state` is 0 or only the
//!   waiting bit; a reader when neither writer bit is set (a waiting writer
//!   stops new readers, so a stream of faults cannot starve `munmap`).
//! - `holds[cpu]` is set by the CPU itself right after it got the lock and
//!   cleared right before it releases it; only that CPU reads its own entry
//!   to decide "held by me", so a plain relaxed flag suffices.
//! - Nobody holding this lock takes it again, and nothing waits for this lock
//!   while holding a frame-allocator, heap or mailbox lock (those are held
//!   only for their own few instructions), so no cycle forms. A holder may
//!   wait for other CPUs' flush acknowledgements: every waiter for this lock
//!   answers them while it spins.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hal::Board;
use hal::smp::MAX_CPUS;

use crate::board::Current;
use crate::shootdown::relax;

const WRITER: u64 = 1 << 63;
const WAITING: u64 = 1 << 62;
const READERS: u64 = WAITING - 1;

/// A reader-writer lock around `T` that records its holders per CPU.
pub struct SpaceLock<T> {
    state: AtomicU64,
    holds: [AtomicBool; MAX_CPUS],
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through `read` (shared, readers counted
// in `state`, no writer; it requires `T: Sync`) and `write` (exclusive, the
// writer bit set with no reader; `T: Send` lets it move between CPUs).
unsafe impl<T: Send> Sync for SpaceLock<T> {}

impl<T> SpaceLock<T> {
    /// An unlocked lock around `value`.
    pub const fn new(value: T) -> Self {
        Self {
            state: AtomicU64::new(0),
            holds: [const { AtomicBool::new(false) }; MAX_CPUS],
            value: UnsafeCell::new(value),
        }
    }

    /// Whether the calling CPU holds the lock (reading or writing).
    pub fn held_here(&self) -> bool {
        self.holds[Current::cpu_index()].load(Ordering::Relaxed)
    }

    /// Runs `f` with the value shared (other readers may run at once).
    #[allow(
        dead_code,
        reason = "the fault path takes it once mm's fault path needs only `&AddrSpace`"
    )]
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R
    where
        T: Sync,
    {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & (WRITER | WAITING) != 0 {
                relax();
                s = self.state.load(Ordering::Relaxed);
                continue;
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        let _held = Held::new(self);
        // SAFETY: we are counted as a reader and no writer holds the lock, so
        // only shared references exist until we leave (`Held` drops first).
        let r = f(unsafe { &*self.value.get() });
        drop(_held);
        self.state.fetch_sub(1, Ordering::Release);
        r
    }

    /// Runs `f` with the value exclusive.
    pub fn write<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & !WAITING == 0 {
                if self
                    .state
                    .compare_exchange_weak(s, WRITER, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    break;
                }
                continue;
            }
            if s & WAITING == 0 && s & READERS != 0 {
                self.state.fetch_or(WAITING, Ordering::Relaxed);
            }
            relax();
        }
        let held = Held::new(self);
        // SAFETY: the writer bit is set and no reader is counted, so this is
        // the only reference until the Release store below.
        let r = f(unsafe { &mut *self.value.get() });
        drop(held);
        self.state.store(0, Ordering::Release);
        r
    }
}

/// Marks the calling CPU as a holder while it lives.
struct Held<'a>(&'a AtomicBool);

impl<'a> Held<'a> {
    fn new<T>(lock: &'a SpaceLock<T>) -> Self {
        let flag = &lock.holds[Current::cpu_index()];
        flag.store(true, Ordering::Relaxed);
        Held(flag)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}
