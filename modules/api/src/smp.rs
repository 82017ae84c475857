//! Several CPUs: how many run, which one this is, running a function on
//! another one, and a barrier.
//!
//! CPU 0 runs the app's `main`; the others idle until they are given work
//! with [`run_on`] (no scheduler: a CPU runs its jobs one after the other, in
//! the order they were posted). Every wait here ([`Pending::wait`],
//! [`Barrier::wait`]) keeps answering TLB flush requests, so a CPU that waits
//! never holds up another CPU's `munmap` or `mprotect`.
//!
//! ```ignore
//! use tessera::smp;
//! let job = smp::run_on(1, || smp::current())?;
//! assert_eq!(job.wait(), 1);
//! ```

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axerrno::{AxError, AxResult};
use spin::Mutex;

/// Number of CPUs running (CPU indices are `0..cpu_count()`).
pub fn cpu_count() -> usize {
    runtime::smp::cpu_count()
}

/// The index of the CPU this runs on.
pub fn current() -> usize {
    runtime::smp::current()
}

/// TLB shootdown counters so far: shootdowns, IPIs sent, requests answered,
/// full flushes when an idle CPU came back.
pub fn tlb_stats() -> tlb::TlbStats {
    runtime::shootdown::stats()
}

/// A function running on another CPU; [`Pending::wait`] gives its result.
#[must_use = "a job's result is only had by waiting for it"]
pub struct Pending<R> {
    slot: Arc<Slot<R>>,
}

struct Slot<R> {
    done: AtomicBool,
    value: Mutex<Option<R>>,
}

impl<R> Pending<R> {
    /// Whether the function has returned.
    pub fn is_done(&self) -> bool {
        self.slot.done.load(Ordering::Acquire)
    }

    /// Waits for the function to return and gives its result.
    pub fn wait(self) -> R {
        runtime::smp::wait_until(|| self.is_done());
        self.slot
            .value
            .lock()
            .take()
            .expect("a finished job left its result")
    }
}

/// Runs `f` on CPU `cpu` (after the jobs queued there before it) and returns
/// at once; on the calling CPU, runs it right away. `InvalidInput` if no such
/// CPU runs. CPU 0 runs the app's `main`: a job for CPU 0 from another CPU is
/// refused with `Unsupported` (it has no idle loop to run it in).
pub fn run_on<R, F>(cpu: usize, f: F) -> AxResult<Pending<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let slot = Arc::new(Slot {
        done: AtomicBool::new(false),
        value: Mutex::new(None),
    });
    if cpu == current() {
        *slot.value.lock() = Some(f());
        slot.done.store(true, Ordering::Release);
        return Ok(Pending { slot });
    }
    if cpu >= cpu_count() {
        return Err(AxError::InvalidInput);
    }
    if cpu == 0 {
        return Err(AxError::Unsupported);
    }
    let theirs = slot.clone();
    let job = Box::new(move || {
        let r = f();
        *theirs.value.lock() = Some(r);
        theirs.done.store(true, Ordering::Release);
    });
    runtime::smp::post(cpu, job).map_err(|_| AxError::InvalidInput)?;
    Ok(Pending { slot })
}

/// Runs `f(cpu)` on every CPU at once (the calling CPU included, last) and
/// returns the results by CPU index. For an app's `main` on CPU 0.
pub fn on_each<R, F>(f: F) -> Vec<R>
where
    F: Fn(usize) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    let f = Arc::new(f);
    let me = current();
    let others: Vec<(usize, Pending<R>)> = (0..cpu_count())
        .filter(|&c| c != me)
        .filter_map(|c| {
            let f = f.clone();
            run_on(c, move || f(c)).ok().map(|p| (c, p))
        })
        .collect();
    let mine = f(me);
    let mut out: Vec<(usize, R)> = others.into_iter().map(|(c, p)| (c, p.wait())).collect();
    out.push((me, mine));
    out.sort_unstable_by_key(|(c, _)| *c);
    out.into_iter().map(|(_, r)| r).collect()
}

/// A reusable barrier for `n` CPUs: [`Barrier::wait`] returns on each of them
/// once all `n` arrived (sense-reversing: the same barrier serves every round).
pub struct Barrier {
    n: usize,
    arrived: AtomicUsize,
    round: AtomicUsize,
}

impl Barrier {
    /// A barrier for `n` CPUs (`n >= 1`).
    pub const fn new(n: usize) -> Self {
        Self {
            n,
            arrived: AtomicUsize::new(0),
            round: AtomicUsize::new(0),
        }
    }

    /// Waits until `n` CPUs have called `wait` in this round. Returns true on
    /// exactly one of them (the last to arrive).
    pub fn wait(&self) -> bool {
        let round = self.round.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.round.store(round.wrapping_add(1), Ordering::Release);
            return true;
        }
        runtime::smp::wait_until(|| self.round.load(Ordering::Acquire) != round);
        false
    }
}
