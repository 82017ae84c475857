//! What the memory calls cost on the board, in ticks of its cycle counter
//! (`tessera::time::cycles`): medians over several repetitions, printed as
//! `bench: key=value` lines for `scripts/bench.py`.
//!
//! - `lazy_fault_cycles`: one lazy fault (a store to a fresh page of a lazy
//!   area; the same loop over the then-mapped pages is subtracted);
//! - `populate_page_cycles`: `mmap(POPULATE)` per page;
//! - `lazy_cycle_page_cycles` / `populate_cycle_page_cycles`: mmap + a store to
//!   every page + munmap, per page, and `lazy_vs_populate_ratio` between them;
//! - `mmap_munmap_cycles`: one lazy one-page mmap + munmap pair;
//! - `mprotect_split_cycles`: mprotect of the middle page of a populated
//!   1000-page area (a split);
//! - `shared_fault_cycles`: one read fault on a `MAP_SHARED` mapping of a
//!   memory object whose pages another mapping made resident (no frame, no
//!   zeroing: the object's frame mapped read-only);
//! - `cow_fault_cycles`: one write fault on a page of a `MAP_PRIVATE` mapping
//!   of such an object that was read before (mapped read-only): a
//!   copy-on-write (new frame, 4 KiB copied, PTE replaced); both as
//!   `lazy_fault_cycles`, the same loop over the mapped pages subtracted;
//! - the SMP rows (`smp.rs`, every CPU count): IPIs, shootdowns and ticks per
//!   `munmap` / `mprotect` of 1 and 512 pages with the other CPUs busy reading
//!   the address space or idle (`smp_{busy,idle}_{munmap,mprotect}_{1,512}p_*`),
//!   and lazy-fault throughput with 1, 2 and 4 CPUs faulting disjoint pages of
//!   one area at once (`smp_fault_{n}cpu_*`).
//!
//! Without the `full` feature the counts are small, so `make test` runs it in a
//! moment; `make bench` builds it with `full`. Under QEMU's TCG the absolute
//! figures are emulation figures: compare ratios.
#![no_std]
#![no_main]

extern crate alloc;

mod smp;

use tessera::mm::{self, MemObject, MmapFlags, PAGE_SIZE, Prot};
use tessera::{AppResult, Context, String, Vec, check_eq, println, time};

/// What a measurement returns: ticks, or why it failed.
type Ticks = Result<u64, String>;

tessera::main!(main);

const RW: Prot = Prot::READ.union(Prot::WRITE);

#[cfg(feature = "full")]
mod counts {
    pub const PAGES: usize = 4096;
    pub const REPS: usize = 11;
    pub const PAIRS: usize = 500;
    pub const MPROTECT_REPS: usize = 21;
}
#[cfg(not(feature = "full"))]
mod counts {
    pub const PAGES: usize = 64;
    pub const REPS: usize = 3;
    pub const PAIRS: usize = 20;
    pub const MPROTECT_REPS: usize = 3;
}
use counts::*;

/// Pages of the area the mprotect measurement splits.
const AREA_PAGES: usize = 1000;

/// A one-byte store to the first byte of each of `pages` pages from `base`.
///
/// # Safety
///
/// `[base, base + pages * PAGE_SIZE)` is a read-write mapping this app made and
/// uses for nothing else.
unsafe fn touch(base: usize, pages: usize) {
    for p in 0..pages {
        // SAFETY: the page is in the read-write mapping the caller vouches for.
        unsafe { ((base + p * PAGE_SIZE) as *mut u8).write_volatile(1) };
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Runs `f` once to warm up (under TCG, the first run also translates the
/// code), then `reps` times, and returns the median of what those return.
fn med(reps: usize, mut f: impl FnMut() -> Ticks) -> Ticks {
    f()?;
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        v.push(f()?);
    }
    Ok(median(v))
}

fn lazy_fault() -> Ticks {
    let base = mm::mmap(None, PAGES * PAGE_SIZE, RW, MmapFlags::empty()).context("mmap")?;
    let before = mm::stats().faults_handled;
    let t0 = time::cycles();
    // SAFETY: `base` is the PAGES-page read-write mapping just made.
    unsafe { touch(base, PAGES) };
    let t1 = time::cycles();
    // SAFETY: the same mapping, now faulted in.
    unsafe { touch(base, PAGES) };
    let t2 = time::cycles();
    check_eq!(
        mm::stats().faults_handled - before,
        PAGES as u64,
        "faults taken"
    );
    mm::munmap(base, PAGES * PAGE_SIZE).context("munmap")?;
    let faulting = t1 - t0;
    let mapped = t2 - t1;
    Ok(faulting.saturating_sub(mapped) / PAGES as u64)
}

fn populate_page() -> Ticks {
    let t0 = time::cycles();
    let base = mm::mmap(None, PAGES * PAGE_SIZE, RW, MmapFlags::POPULATE).context("mmap")?;
    let t1 = time::cycles();
    mm::munmap(base, PAGES * PAGE_SIZE).context("munmap")?;
    Ok((t1 - t0) / PAGES as u64)
}

/// mmap + touch every page + munmap, per page.
fn life_cycle(flags: MmapFlags) -> Ticks {
    let t0 = time::cycles();
    let base = mm::mmap(None, PAGES * PAGE_SIZE, RW, flags).context("mmap")?;
    // SAFETY: `base` is the PAGES-page read-write mapping just made.
    unsafe { touch(base, PAGES) };
    mm::munmap(base, PAGES * PAGE_SIZE).context("munmap")?;
    let t1 = time::cycles();
    Ok((t1 - t0) / PAGES as u64)
}

fn mmap_munmap() -> Ticks {
    let t0 = time::cycles();
    for _ in 0..PAIRS {
        let va = mm::mmap(None, PAGE_SIZE, RW, MmapFlags::empty()).context("mmap")?;
        mm::munmap(va, PAGE_SIZE).context("munmap")?;
    }
    let t1 = time::cycles();
    Ok((t1 - t0) / PAIRS as u64)
}

fn mprotect_split() -> Ticks {
    let len = AREA_PAGES * PAGE_SIZE;
    let base = mm::mmap(None, len, RW, MmapFlags::POPULATE).context("mmap")?;
    let t0 = time::cycles();
    mm::mprotect(base + AREA_PAGES / 2 * PAGE_SIZE, PAGE_SIZE, Prot::READ).context("mprotect")?;
    let t1 = time::cycles();
    mm::munmap(base, len).context("munmap")?;
    Ok(t1 - t0)
}

/// A one-byte load from the first byte of each of `pages` pages from `base`.
///
/// # Safety
///
/// `[base, base + pages * PAGE_SIZE)` is a readable mapping this app made.
unsafe fn read(base: usize, pages: usize) {
    for p in 0..pages {
        // SAFETY: the page is in the readable mapping the caller vouches for.
        unsafe { ((base + p * PAGE_SIZE) as *const u8).read_volatile() };
    }
}

/// Ticks per fault of `faulting` (run first, taking exactly `PAGES` faults)
/// less those of the same loop run again over the then-mapped pages.
fn per_fault(mut faulting: impl FnMut()) -> Ticks {
    let before = mm::stats().faults_handled;
    let t0 = time::cycles();
    faulting();
    let t1 = time::cycles();
    faulting();
    let t2 = time::cycles();
    check_eq!(
        mm::stats().faults_handled - before,
        PAGES as u64,
        "faults taken"
    );
    Ok((t1 - t0).saturating_sub(t2 - t1) / PAGES as u64)
}

/// An anonymous object of `PAGES` pages, all resident (a shared mapping of
/// it, returned, read every page).
fn resident_object() -> Result<(alloc::sync::Arc<MemObject>, usize), String> {
    let len = PAGES * PAGE_SIZE;
    let obj = MemObject::anonymous(len).context("object")?;
    let src = mm::mmap_object(None, len, RW, MmapFlags::SHARED, &obj, 0).context("mmap_object")?;
    // SAFETY: `src` is the PAGES-page read-write mapping just made.
    unsafe { read(src, PAGES) };
    check_eq!(obj.pages(), PAGES, "resident pages");
    Ok((obj, src))
}

fn shared_fault() -> Ticks {
    let len = PAGES * PAGE_SIZE;
    let (obj, src) = resident_object()?;
    let base = mm::mmap_object(None, len, Prot::READ, MmapFlags::SHARED, &obj, 0)
        .context("mmap_object")?;
    let t = per_fault(|| {
        // SAFETY: `base` is the PAGES-page readable mapping just made.
        unsafe { read(base, PAGES) }
    });
    mm::munmap(base, len).context("munmap")?;
    mm::munmap(src, len).context("munmap")?;
    t
}

fn cow_fault() -> Ticks {
    let len = PAGES * PAGE_SIZE;
    let (obj, src) = resident_object()?;
    let base =
        mm::mmap_object(None, len, RW, MmapFlags::PRIVATE, &obj, 0).context("mmap_object")?;
    // SAFETY: `base` is the PAGES-page read-write mapping just made, used
    // for nothing else: every page mapped read-only (the object's frame).
    unsafe { read(base, PAGES) };
    let t = per_fault(|| {
        // SAFETY: the same mapping.
        unsafe { touch(base, PAGES) }
    });
    mm::munmap(base, len).context("munmap")?;
    mm::munmap(src, len).context("munmap")?;
    t
}

fn main() -> AppResult {
    let hz = time::cycles_per_sec();
    match hz {
        Some(hz) => println!("bench: counter={hz}Hz pages={PAGES} reps={REPS}"),
        None => println!("bench: counter=unknown pages={PAGES} reps={REPS}"),
    }
    let start = mm::stats();
    let fault = med(REPS, lazy_fault)?;
    println!("bench: lazy_fault_cycles={fault}");
    let populate = med(REPS, populate_page)?;
    println!("bench: populate_page_cycles={populate}");
    let lazy_cycle = med(REPS, || life_cycle(MmapFlags::empty()))?;
    println!("bench: lazy_cycle_page_cycles={lazy_cycle}");
    let populate_cycle = med(REPS, || life_cycle(MmapFlags::POPULATE))?;
    println!("bench: populate_cycle_page_cycles={populate_cycle}");
    let milli = lazy_cycle * 1000 / populate_cycle.max(1);
    println!(
        "bench: lazy_vs_populate_ratio={}.{:03}",
        milli / 1000,
        milli % 1000
    );
    let pair = med(REPS, mmap_munmap)?;
    println!("bench: mmap_munmap_cycles={pair}");
    let split = med(MPROTECT_REPS, mprotect_split)?;
    println!("bench: mprotect_split_cycles={split}");
    let shared = med(REPS, shared_fault)?;
    println!("bench: shared_fault_cycles={shared}");
    let cow = med(REPS, cow_fault)?;
    println!("bench: cow_fault_cycles={cow}");
    let end = mm::stats();
    check_eq!(end.data_frames, start.data_frames, "anonymous frames left");
    smp::run()
}
