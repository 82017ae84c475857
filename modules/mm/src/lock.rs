//! The table lock: a small spin lock around the mapper, taken by the fault
//! path (which runs with `&AddrSpace`, on several CPUs at once) and by the
//! `&self` reads of the page table. `&mut self` paths reach the mapper with
//! [`TableLock::get_mut`] and pay nothing: the borrow checker already proves
//! them alone. The crate docs ("Locking protocol for several CPUs") say what it
//! protects and in which order it is taken. A waiter answers TLB flush
//! requests while it spins (`paging::relax`).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A test-and-test-and-set spin lock around `T`. It does not disable
/// interrupts: nothing that runs in an interrupt handler takes it (see the
/// crate docs).
pub(crate) struct TableLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through `lock` (one guard at a time, the
// flag acquired with `Acquire` and released with `Release`, so the accesses of
// consecutive holders are ordered) and through `get_mut`/`into_inner`, which
// need exclusive access to the lock itself. `T: Send` because a value changed
// by one CPU under the lock is then used by another.
unsafe impl<T: Send> Sync for TableLock<T> {}

impl<T> TableLock<T> {
    /// An unlocked lock around `value`.
    pub(crate) const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, without locking: `&mut self` proves nobody else can hold
    /// the lock.
    #[inline(always)]
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// Spins until the lock is free and takes it.
    #[inline]
    pub(crate) fn lock(&self) -> TableGuard<'_, T> {
        // `swap` is one instruction on x86 (`xchg`) and an `amoswap` on RISC-V.
        while self.locked.swap(true, Ordering::Acquire) {
            self.wait();
        }
        TableGuard { lock: self }
    }

    /// Spins (reading only, so the cache line is not bounced) while the lock
    /// is held. On a hosted build (tests, benchmarks) the holder is a thread
    /// the host may preempt, so after a while the waiter yields its CPU
    /// instead of spinning through the holder's time slice; a kernel's CPUs
    /// hold the lock for a few hundred instructions and just spin.
    #[cold]
    #[inline(never)]
    fn wait(&self) {
        let mut spins = 0u32;
        while self.locked.load(Ordering::Relaxed) {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 10) {
                host_yield();
            }
            // Answers TLB flush requests meanwhile: the holder may be
            // shooting down (a copy-on-write fault), waiting for this CPU.
            paging::relax();
        }
    }
}

/// Lets the host run another thread (hosted builds only).
#[cfg(not(target_os = "none"))]
pub(crate) fn host_yield() {
    extern crate std;
    std::thread::yield_now();
}

/// Bare metal: nothing to yield to, keep spinning.
#[cfg(target_os = "none")]
#[inline(always)]
pub(crate) fn host_yield() {}

/// Holds the [`TableLock`] until dropped.
pub(crate) struct TableGuard<'a, T> {
    lock: &'a TableLock<T>,
}

impl<T> Deref for TableGuard<'_, T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock, so no other reference to the value
        // exists (other CPUs wait in `lock`; `get_mut` needs `&mut` of the lock,
        // which cannot coexist with the guard's shared borrow).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for TableGuard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // handed out by this guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for TableGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_get_mut() {
        let mut l = TableLock::new(1);
        *l.lock() += 1;
        {
            let g = l.lock();
            assert_eq!(*g, 2);
        }
        *l.get_mut() += 1;
        assert_eq!(*l.lock(), 3);
    }
}
