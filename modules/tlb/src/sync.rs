//! Atomics and the mailbox lock, swapped for loom's under `--cfg loom` so the
//! protocol's core can be model-checked.
//!
//! The lock is written here rather than taken from `spin` because loom can only
//! explore interleavings of its own atomics; a lock built on `spin`'s cannot be
//! model-checked. It is a test-and-test-and-set spin lock with no fairness: it
//! guards a mailbox for the few instructions of a merge or a take.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[cfg(loom)]
use loom::cell::UnsafeCell;

/// Tells the model checker (or the CPU) that this thread is waiting.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// A spin lock around a `T`.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    #[cfg(not(loom))]
    value: core::cell::UnsafeCell<T>,
    #[cfg(loom)]
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through `with`, which holds the lock, so at
// most one thread touches it at a time; `T: Send` lets it move between them.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: core::cell::UnsafeCell::new(value),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value with the lock held.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                spin_hint();
            }
        }
        #[cfg(not(loom))]
        // SAFETY: the lock is held (the Acquire exchange above succeeded), so no
        // other reference to the value exists until the Release store below.
        let r = f(unsafe { &mut *self.value.get() });
        #[cfg(loom)]
        // SAFETY: as above; loom checks the claim.
        let r = self.value.with_mut(|p| f(unsafe { &mut *p }));
        self.locked.store(false, Ordering::Release);
        r
    }
}
