//! Concurrent lazy faults: `N` pages of one lazy read-write area faulted by one
//! thread, then by two threads at once (each its own half, disjoint), through
//! one shared `&AddrSpace` (what the kernel does under the read side of its
//! address-space lock), over `SharedPoolHandler` (below: per-thread frame
//! caches over a global free list, frames backed by host memory before the
//! clock runs; the frame allocator is not what is measured).
//!
//! Each sample maps a fresh area (not timed), starts the threads and times
//! until every thread is done (thread start included, the same one start per
//! thread for both), then unmaps (not timed). The figure of interest is the
//! ratio of the two medians: `faults/N/threads/1` / `faults/N/threads/2`.
//! `faults/N/separate_spaces_2` (two threads, each faulting its half in an
//! address space of its own) shows what two threads gain on this host with
//! nothing of `mm` shared: the ceiling for the shared case. Nothing is
//! asserted.
//!
//! `CARGO_TARGET_DIR=... cargo bench -p hostbench --bench faults`

use std::alloc::{Layout, alloc, dealloc};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use hal::Access;
use hostbench::{PAGE, RW, WIN, WSIZE, va};
use memory_addr::{PhysAddr, VirtAddr};
use mm::{AddrSpace, MmapFlags, PagingHandler};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::x86_64::X64PagingMetaData;

/// An address space over [`SharedPoolHandler`].
type SharedPoolSpace = AddrSpace<X64PagingMetaData, X64PTE, SharedPoolHandler>;

// The handler lives here, not in the `hostbench` library: code added there
// changes how `faultcount` (which links it) is compiled, and so its
// instruction count.

/// Free frames of [`SharedPoolHandler`] not in any thread's cache.
static SHARED_FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// Multi-frame runs of [`SharedPoolHandler`]: start -> layout.
static SHARED_RUNS: Mutex<Option<HashMap<usize, Layout>>> = Mutex::new(None);
/// Entries of `SHARED_RUNS` (lets a single-frame free skip that lock).
static SHARED_LIVE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A thread's cache of free frames; given back to the global list when the
/// thread ends.
struct LocalFrames(Vec<usize>);

impl Drop for LocalFrames {
    fn drop(&mut self) {
        if let Ok(mut g) = SHARED_FREE.lock() {
            g.append(&mut self.0);
        }
    }
}

thread_local! {
    static LOCAL: RefCell<LocalFrames> = const { RefCell::new(LocalFrames(Vec::new())) };
}

/// Frames moved between a thread's cache and the global list at once.
const SHARED_BATCH: usize = 256;

/// Host memory for `frames` frames, written once so the host has backed it
/// (the benchmark then measures `mm`, not the host's own page faults).
fn host_frames(frames: usize) -> Option<impl Iterator<Item = usize>> {
    let layout = Layout::from_size_align(frames * PAGE, PAGE).ok()?;
    // SAFETY: the layout has a non-zero size. The chunk is never freed: its
    // frames circulate through the free lists until the process ends.
    let ptr = unsafe { alloc(layout) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` is a fresh allocation of `layout.size()` bytes.
    unsafe { ptr.write_bytes(0, layout.size()) };
    Some((0..frames).rev().map(move |k| ptr as usize + k * PAGE))
}

/// A thread-safe `PagingHandler` for measurements: single frames come from a
/// per-thread cache, refilled from (and overflowing to) a global free list in
/// batches of 256, so two threads faulting at once meet on a lock once per
/// 256 frames; runs come from the host allocator. Frames are not filled and
/// nothing is checked (tests use `testing::SharedTrackingHandler`).
pub struct SharedPoolHandler;

impl SharedPoolHandler {
    /// Makes sure at least `frames` free frames, already backed by host
    /// memory, are in the global list.
    pub fn reserve(frames: usize) {
        let mut g = SHARED_FREE.lock().unwrap();
        if g.len() < frames {
            let more =
                host_frames(frames - g.len()).expect("SharedPoolHandler: host out of memory");
            g.extend(more);
        }
    }
}

impl PagingHandler for SharedPoolHandler {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        if num == 1 && align <= PAGE {
            return LOCAL.with_borrow_mut(|l| {
                if l.0.is_empty() {
                    let mut g = SHARED_FREE.lock().ok()?;
                    let from = g.len().saturating_sub(SHARED_BATCH);
                    l.0.extend(g.drain(from..));
                    drop(g);
                    if l.0.is_empty() {
                        l.0.extend(host_frames(SHARED_BATCH)?);
                    }
                }
                l.0.pop().map(PhysAddr::from)
            });
        }
        let layout = Layout::from_size_align(num.checked_mul(PAGE)?, align.max(PAGE)).ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        if ptr.is_null() {
            return None;
        }
        let mut runs = SHARED_RUNS.lock().ok()?;
        runs.get_or_insert_with(HashMap::new)
            .insert(ptr as usize, layout);
        SHARED_LIVE_RUNS.fetch_add(1, Ordering::Relaxed);
        Some(PhysAddr::from(ptr as usize))
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        let pa = paddr.as_usize();
        if SHARED_LIVE_RUNS.load(Ordering::Relaxed) > 0 {
            let mut runs = SHARED_RUNS.lock().unwrap();
            if let Some(layout) = runs.as_mut().and_then(|r| r.remove(&pa)) {
                SHARED_LIVE_RUNS.fetch_sub(1, Ordering::Relaxed);
                // SAFETY: `pa` was returned by `alloc` with exactly this layout
                // and is removed from the run map, so it is freed once.
                unsafe { dealloc(pa as *mut u8, layout) };
                return;
            }
        }
        LOCAL.with_borrow_mut(|l| {
            l.0.extend((0..num).map(|k| pa + k * PAGE));
            if l.0.len() > 4 * SHARED_BATCH {
                let from = l.0.len() - 2 * SHARED_BATCH;
                SHARED_FREE.lock().unwrap().extend(l.0.drain(from..));
            }
        })
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}

/// Pages faulted per sample: 8 MiB (the data fits in the host's last-level
/// cache) and 32 MiB (it does not: zeroing then shares memory bandwidth).
/// Either is long enough that starting a thread (tens of microseconds) is
/// small beside it.
const SIZES: [usize; 2] = [2048, 8192];

/// Faults `pages` pages of a fresh area with `threads` threads, each its own
/// contiguous share; returns the time from the start of the first thread to
/// the end of the last.
fn run(threads: usize, pages: usize) -> Duration {
    let mut s = SharedPoolSpace::new(va(WIN), WSIZE).unwrap();
    let base = s
        .mmap(None, pages * PAGE, RW, MmapFlags::empty())
        .unwrap()
        .as_usize();
    let share = pages / threads;
    let space = &s;
    let start = Instant::now();
    thread::scope(|sc| {
        for t in 0..threads {
            sc.spawn(move || {
                for p in t * share..(t + 1) * share {
                    space
                        .handle_page_fault(va(base + p * PAGE), Access::Write)
                        .unwrap();
                }
            });
        }
    });
    let took = start.elapsed();
    assert_eq!(s.stats().data_frames, pages);
    s.munmap(va(base), pages * PAGE).unwrap();
    took
}

/// The reference for what two threads can gain on this host: each thread
/// faults its half in an address space of its own (nothing shared but the
/// frame handler's global list and the host).
fn run_separate(pages: usize) -> Duration {
    let mut spaces: Vec<SharedPoolSpace> = (0..2)
        .map(|_| SharedPoolSpace::new(va(WIN), WSIZE).unwrap())
        .collect();
    let share = pages / 2;
    let base = spaces
        .iter_mut()
        .map(|s| s.mmap(None, share * PAGE, RW, MmapFlags::empty()).unwrap())
        .last()
        .unwrap()
        .as_usize();
    let start = Instant::now();
    thread::scope(|sc| {
        for s in &spaces {
            sc.spawn(move || {
                for p in 0..share {
                    s.handle_page_fault(va(base + p * PAGE), Access::Write)
                        .unwrap();
                }
            });
        }
    });
    let took = start.elapsed();
    for mut s in spaces {
        s.munmap(va(base), share * PAGE).unwrap();
    }
    took
}

fn faults(c: &mut Criterion) {
    for pages in SIZES {
        // Every frame the samples need, backed by host memory now.
        SharedPoolHandler::reserve(pages + pages / 256 + 64);
        let mut g = c.benchmark_group(format!("faults/{pages}"));
        g.throughput(Throughput::Elements(pages as u64));
        for threads in [1usize, 2] {
            g.bench_function(BenchmarkId::new("threads", threads), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run(threads, pages)).sum())
            });
        }
        g.bench_function("separate_spaces_2", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_separate(pages)).sum())
        });
        g.finish();
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    faults(&mut c);
    c.final_summary();
}
