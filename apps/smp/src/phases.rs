//! The first two phases: jobs and barriers on every CPU, and concurrent
//! faults on disjoint and on the same pages.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};

use tessera::mm::{self, MmapFlags, PAGE_SIZE, Prot};
use tessera::smp::{self, Barrier};
use tessera::{AppResult, AxError, Context, Vec, check, check_eq, format};

const RW: Prot = Prot::READ.union(Prot::WRITE);
/// Pages each CPU faults in the disjoint run.
const PER_CPU: usize = 64;
/// Pages every CPU faults in the same-page runs (4K area).
const SAME: usize = 64;
/// Pages of a 2 MiB page.
const HUGE_PAGES: usize = 512;

/// Every CPU runs a job and reports its own index; barriers hold every CPU
/// until all arrived, round after round.
pub fn jobs_and_barriers(n: usize) -> AppResult {
    let ids = smp::on_each(|_| smp::current());
    check_eq!(
        ids,
        (0..n).collect::<Vec<_>>(),
        "CPU index seen by each CPU's job"
    );
    check_eq!(
        smp::run_on(n, || 0).err(),
        Some(AxError::InvalidInput),
        "run_on a CPU that does not exist"
    );
    for cpu in 1..n {
        let job = smp::run_on(cpu, move || smp::current() * 10).context("run_on")?;
        check_eq!(job.wait(), cpu * 10, "result of the job on CPU {cpu}");
    }
    const ROUNDS: usize = 50;
    let barrier = Arc::new(Barrier::new(n));
    let count = Arc::new(AtomicUsize::new(0));
    let (b, c) = (barrier.clone(), count.clone());
    let bad = smp::on_each(move |_| {
        let mut bad = 0;
        for round in 1..=ROUNDS {
            c.fetch_add(1, Ordering::AcqRel);
            b.wait();
            // Every CPU added one for this round before anyone got here.
            if c.load(Ordering::Acquire) < round * n {
                bad += 1;
            }
            b.wait();
        }
        bad
    });
    check!(
        bad.iter().all(|&b| b == 0),
        "a CPU left a barrier before every CPU arrived: {bad:?}"
    );
    check_eq!(count.load(Ordering::Acquire), ROUNDS * n, "barrier rounds");
    Ok(())
}

/// All CPUs fault at once: disjoint pages of one lazy area, then the same
/// pages of a lazy 4K area, then the same 2M pages of a lazy huge area. Frame
/// counts must be exact and every CPU must see the same frames.
pub fn concurrent_faults(n: usize) -> AppResult {
    let before = mm::stats();
    disjoint(n)?;
    same_pages(n, SAME, MmapFlags::empty(), SAME)?;
    same_pages(n, 2 * HUGE_PAGES, MmapFlags::HUGE_2M, 2 * HUGE_PAGES)?;
    let after = mm::stats();
    check_eq!(
        after.data_frames,
        before.data_frames,
        "data frames after the concurrent faults"
    );
    check_eq!(
        after.frames_used_since(&before),
        0,
        "frames in use after the concurrent faults"
    );
    Ok(())
}

fn disjoint(n: usize) -> AppResult {
    let pages = n * PER_CPU;
    let len = pages * PAGE_SIZE;
    let before = mm::stats();
    let base = mm::mmap(None, len, RW, MmapFlags::empty()).context("mmap")?;
    let barrier = Arc::new(Barrier::new(n));
    let errors = smp::on_each(move |cpu| {
        barrier.wait();
        for i in 0..PER_CPU {
            let va = base + (cpu * PER_CPU + i) * PAGE_SIZE;
            // SAFETY: the page lies in the RW mapping made above, which nobody
            // unmaps before every job returned; this CPU alone writes it.
            unsafe { mm::poke(va, ((cpu as u64) << 32) | i as u64) };
        }
        barrier.wait();
        (0..pages)
            .filter(|&p| {
                let va = base + p * PAGE_SIZE;
                let want = (((p / PER_CPU) as u64) << 32) | (p % PER_CPU) as u64;
                // SAFETY: as above; every page was written before the barrier.
                unsafe { mm::peek(va) != want }
            })
            .count()
    });
    check!(
        errors.iter().all(|&e| e == 0),
        "pages with another CPU's data, per CPU: {errors:?}"
    );
    let mid = mm::stats();
    check_eq!(
        mid.data_frames - before.data_frames,
        pages,
        "data frames after {n} CPUs faulted {PER_CPU} pages each"
    );
    mm::munmap(base, len).context("munmap")?;
    check_eq!(
        mm::stats().data_frames,
        before.data_frames,
        "data frames after munmap"
    );
    Ok(())
}

/// Every CPU touches pages `0..pages` of a new lazy area in the same order,
/// starting together, so they fault the same page at the same moment.
fn same_pages(n: usize, pages: usize, flags: MmapFlags, frames: usize) -> AppResult {
    let len = pages * PAGE_SIZE;
    let before = mm::stats();
    let base = mm::mmap(None, len, RW, flags).context("mmap")?;
    let barrier = Arc::new(Barrier::new(n));
    let views = smp::on_each(move |_| {
        barrier.wait();
        let mut faulted = 0;
        for p in 0..pages {
            // A store of the byte's own value (the last byte of the page):
            // every CPU faults the page, none changes its data.
            faulted += usize::from(mm::write_faults(base + p * PAGE_SIZE + PAGE_SIZE - 1));
        }
        let frames: Vec<usize> = (0..pages)
            .map(|p| mm::translate(base + p * PAGE_SIZE).map_or(0, |t| t.paddr.as_usize()))
            .collect();
        (faulted, frames)
    });
    for (cpu, (faulted, _)) in views.iter().enumerate() {
        check_eq!(*faulted, 0, "stores that failed on CPU {cpu} ({flags:?})");
    }
    let first = &views[0].1;
    check!(
        first.iter().all(|&pa| pa != 0),
        "a page is not mapped after every CPU touched it ({flags:?})"
    );
    for (cpu, (_, frames)) in views.iter().enumerate() {
        check!(
            frames == first,
            "CPU {cpu} sees other frames than CPU 0 ({flags:?})"
        );
    }
    let mid = mm::stats();
    check_eq!(
        mid.data_frames - before.data_frames,
        frames,
        "data frames after {n} CPUs faulted the same {pages} pages ({flags:?})"
    );
    mm::munmap(base, len).context("munmap")?;
    check_eq!(
        mm::stats().data_frames,
        before.data_frames,
        "{}",
        format!("data frames after munmap ({flags:?})")
    );
    Ok(())
}
