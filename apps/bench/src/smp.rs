//! The SMP rows: what a `munmap` or an `mprotect` costs in IPIs, shootdowns
//! and ticks while the other CPUs are busy in the address space or idle, and
//! lazy-fault throughput with several CPUs faulting at once.
//!
//! Every row is printed for any CPU count (with one CPU, "busy" has no other
//! CPU to be busy); the fault rows for 1, 2 and 4 CPUs up to `cpu_count()`.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tessera::mm::{self, MmapFlags, PAGE_SIZE, Prot};
use tessera::smp::{self, Barrier, Pending};
use tessera::{AppResult, Context, String, Vec, check_eq, format, println, time};

use crate::{RW, median};

#[cfg(feature = "full")]
mod counts {
    /// Repetitions of each munmap / mprotect measurement (after one warm-up).
    pub const OP_REPS: usize = 9;
    /// Pages each CPU faults in the throughput measurement.
    pub const FAULT_PAGES: usize = 1024;
    /// Repetitions of each throughput measurement (after one warm-up).
    pub const FAULT_REPS: usize = 5;
}
#[cfg(not(feature = "full"))]
mod counts {
    pub const OP_REPS: usize = 3;
    pub const FAULT_PAGES: usize = 32;
    pub const FAULT_REPS: usize = 2;
}
use counts::*;

/// Pages of the mapping the busy CPUs keep reading.
const READER_PAGES: usize = 64;
/// The lengths (in pages) of the measured calls.
const LENGTHS: [usize; 2] = [1, 512];
/// CPU counts of the fault-throughput rows.
const FAULT_CPUS: [usize; 3] = [1, 2, 4];

/// `n / d` with two decimals.
fn per(n: u64, d: u64) -> String {
    let h = (n * 100 + d / 2) / d.max(1);
    format!("{}.{:02}", h / 100, h % 100)
}

/// What one kind of call cost over the repetitions.
#[derive(Default)]
struct Calls {
    ticks: Vec<u64>,
    ipis: u64,
    shootdowns: u64,
}

impl Calls {
    fn print(&self, what: &str) {
        let n = self.ticks.len() as u64;
        println!("bench: smp_{what}_ipis={}", per(self.ipis, n));
        println!("bench: smp_{what}_shootdowns={}", per(self.shootdowns, n));
        println!("bench: smp_{what}_cycles={}", median(self.ticks.clone()));
    }
}

/// Times `f` and counts the IPIs and shootdowns it caused; `keep` says whether
/// this one counts (the first run of each measurement only warms up).
fn call(into: &mut Calls, keep: bool, f: impl FnOnce() -> AppResult) -> AppResult {
    let s0 = smp::tlb_stats();
    let t0 = time::cycles();
    f()?;
    let t1 = time::cycles();
    let s1 = smp::tlb_stats();
    if keep {
        into.ticks.push(t1 - t0);
        into.ipis += s1.ipis - s0.ipis;
        into.shootdowns += s1.shootdowns - s0.shootdowns;
    }
    Ok(())
}

/// `mprotect(READ)` then `munmap` of a populated read-write mapping of `pages`
/// pages (both remove or weaken translations, so both shoot down), repeated.
fn calls(state: &str, pages: usize) -> AppResult {
    let len = pages * PAGE_SIZE;
    let (mut prot, mut unmap) = (Calls::default(), Calls::default());
    for rep in 0..=OP_REPS {
        let keep = rep > 0;
        let base = mm::mmap(None, len, RW, MmapFlags::POPULATE).context("mmap")?;
        call(&mut prot, keep, || {
            mm::mprotect(base, len, Prot::READ).context("mprotect")
        })?;
        call(&mut unmap, keep, || mm::munmap(base, len).context("munmap"))?;
    }
    unmap.print(&format!("{state}_munmap_{pages}p"));
    prot.print(&format!("{state}_mprotect_{pages}p"));
    Ok(())
}

/// Jobs on every other CPU that keep reading the pages of their own read-only
/// mapping (so they run in the address space and cache its translations)
/// until [`Readers::stop`].
struct Readers {
    stop: Arc<AtomicBool>,
    jobs: Vec<Pending<u64>>,
    base: usize,
}

impl Readers {
    fn start(n: usize) -> Result<Self, String> {
        let len = READER_PAGES * PAGE_SIZE;
        let base = mm::mmap(None, len, Prot::READ, MmapFlags::POPULATE).context("mmap")?;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let mut jobs = Vec::new();
        for cpu in 1..n {
            let (stop, started) = (stop.clone(), started.clone());
            let job = smp::run_on(cpu, move || {
                started.fetch_add(1, Ordering::AcqRel);
                let mut passes = 0u64;
                while !stop.load(Ordering::Acquire) {
                    for p in 0..READER_PAGES {
                        // SAFETY: the page is in the read-only mapping made
                        // above, unmapped only after every reader returned.
                        unsafe { mm::peek(base + p * PAGE_SIZE) };
                    }
                    passes += 1;
                }
                passes
            })
            .context("run_on")?;
            jobs.push(job);
        }
        while started.load(Ordering::Acquire) < n - 1 {
            core::hint::spin_loop();
        }
        Ok(Self { stop, jobs, base })
    }

    /// Stops the readers; the passes each made over its pages.
    fn stop(self) -> Result<Vec<u64>, String> {
        self.stop.store(true, Ordering::Release);
        let passes = self.jobs.into_iter().map(Pending::wait).collect();
        mm::munmap(self.base, READER_PAGES * PAGE_SIZE).context("munmap")?;
        Ok(passes)
    }
}

/// `n` CPUs (0..n) fault their own `FAULT_PAGES` pages of one lazy area,
/// starting together; the ticks CPU 0 saw from the start to the moment every
/// CPU was done.
fn faults_once(n: usize) -> Result<u64, String> {
    let pages = n * FAULT_PAGES;
    let len = pages * PAGE_SIZE;
    let base = mm::mmap(None, len, RW, MmapFlags::empty()).context("mmap")?;
    let before = mm::stats().faults_handled;
    let barrier = Arc::new(Barrier::new(n));
    let work = move |cpu: usize, barrier: &Barrier| {
        barrier.wait();
        let t0 = time::cycles();
        let mine = base + cpu * FAULT_PAGES * PAGE_SIZE;
        for p in 0..FAULT_PAGES {
            // SAFETY: the page is in the lazy read-write mapping made above,
            // unmapped only after every job returned; only this CPU uses it.
            unsafe { ((mine + p * PAGE_SIZE) as *mut u8).write_volatile(1) };
        }
        barrier.wait();
        time::cycles() - t0
    };
    let mut jobs = Vec::new();
    for cpu in 1..n {
        let b = barrier.clone();
        jobs.push(smp::run_on(cpu, move || work(cpu, &b)).context("run_on")?);
    }
    let ticks = work(0, &barrier);
    for job in jobs {
        job.wait();
    }
    check_eq!(
        mm::stats().faults_handled - before,
        pages as u64,
        "faults taken by {n} CPUs"
    );
    mm::munmap(base, len).context("munmap")?;
    Ok(ticks)
}

/// Lazy-fault throughput with `n` CPUs faulting at once.
fn faults(n: usize) -> AppResult {
    faults_once(n)?;
    let mut v = Vec::with_capacity(FAULT_REPS);
    for _ in 0..FAULT_REPS {
        v.push(faults_once(n)?);
    }
    let ticks = median(v);
    let total = (n * FAULT_PAGES) as u64;
    println!(
        "bench: smp_fault_{n}cpu_cycles_per_fault={}",
        per(ticks, total)
    );
    if let Some(hz) = time::cycles_per_sec() {
        let per_sec = u128::from(total) * u128::from(hz) / u128::from(ticks.max(1));
        println!("bench: smp_fault_{n}cpu_per_sec={per_sec}");
    }
    Ok(())
}

/// Every SMP row.
pub fn run() -> AppResult {
    let n = smp::cpu_count();
    println!("bench: smp_cpus={n} smp_op_reps={OP_REPS} smp_fault_pages={FAULT_PAGES}");
    let start = mm::stats();
    // Idle first: the other CPUs have run no job yet, so none is in the
    // address space.
    for pages in LENGTHS {
        calls("idle", pages)?;
    }
    let readers = Readers::start(n)?;
    let busy: AppResult = LENGTHS.iter().try_for_each(|&pages| calls("busy", pages));
    let passes = readers.stop()?;
    busy?;
    println!(
        "bench: smp_reader_passes={}",
        passes.iter().min().copied().unwrap_or(0)
    );
    for k in FAULT_CPUS {
        if k <= n {
            faults(k)?;
        }
    }
    check_eq!(
        mm::stats().data_frames,
        start.data_frames,
        "anonymous frames left by the SMP rows"
    );
    Ok(())
}
