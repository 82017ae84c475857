//! Host-side test support.
//!
//! [`TrackingHandler`] is a `PagingHandler` whose "physical" frames are host heap
//! allocations (physical address = host pointer, so `phys_to_virt` is the identity).
//! It records every live run per test thread, so tests running in parallel do not
//! see each other's frames, and it:
//! - panics on a double free or a free of frames it did not hand out (both
//!   are bugs in the caller); like the kernel's frame allocator, it accepts the
//!   free of any part of a run (a contiguous run can be returned piecewise);
//! - fills new frames with `0xA5`, so code that forgets to zero a frame is caught;
//! - can be given a limit of frames in use, to drive out-of-memory paths.
//!
//! Call [`reset`] at the start of a test and [`assert_no_leaks`] at its end.
//!
//! [`SharedTrackingHandler`] does the same checks with one global state behind a
//! mutex, for tests whose frames are allocated and freed on several threads
//! (concurrent page faults). Its state is global, so such tests must not run
//! at the same time: each holds [`SharedTrackingHandler::exclusive`] for its
//! whole run (or lives alone in its own test binary).

use std::alloc::{Layout, alloc, dealloc};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use memory_addr::{PhysAddr, VirtAddr};
use page_table_multiarch::PagingHandler;

/// Frame size.
pub const FRAME: usize = 4096;

/// One live run: its layout on the host heap and which of its frames are freed.
struct Run {
    frames: usize,
    layout: Layout,
    freed: Vec<bool>,
    live: usize,
}

struct State {
    /// Start address -> live run.
    live: BTreeMap<usize, Run>,
    in_use: usize,
    peak: usize,
    limit: Option<usize>,
    allocs: usize,
    failed: usize,
}

impl State {
    const fn new() -> Self {
        Self {
            live: BTreeMap::new(),
            in_use: 0,
            peak: 0,
            limit: None,
            allocs: 0,
            failed: 0,
        }
    }

    fn alloc(&mut self, num: usize, align: usize) -> Option<PhysAddr> {
        if num == 0 || self.limit.is_some_and(|l| self.in_use + num > l) {
            self.failed += 1;
            return None;
        }
        let layout = Layout::from_size_align(num * FRAME, align.max(FRAME)).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        if ptr.is_null() {
            self.failed += 1;
            return None;
        }
        // SAFETY: `ptr` is a fresh allocation of `layout.size()` bytes.
        unsafe { ptr.write_bytes(0xA5, layout.size()) };
        self.live.insert(
            ptr as usize,
            Run {
                frames: num,
                layout,
                freed: vec![false; num],
                live: num,
            },
        );
        self.in_use += num;
        self.peak = self.peak.max(self.in_use);
        self.allocs += 1;
        Some(PhysAddr::from(ptr as usize))
    }

    fn dealloc(&mut self, paddr: PhysAddr, num: usize, who: &str) {
        let pa = paddr.as_usize();
        let found = self.live.range_mut(..=pa).next_back();
        let Some((&start, run)) = found
            .filter(|(start, run)| pa.is_multiple_of(FRAME) && pa < *start + run.frames * FRAME)
        else {
            panic!("{who}: free of {pa:#x} which is not allocated (double free?)");
        };
        let first = (pa - start) / FRAME;
        assert!(
            num > 0 && first + num <= run.frames,
            "{who}: free of {num} frames at {pa:#x} runs past its run at {start:#x}"
        );
        for (i, freed) in run.freed[first..first + num].iter_mut().enumerate() {
            assert!(
                !*freed,
                "{who}: free of {:#x} which is not allocated (double free?)",
                pa + i * FRAME
            );
            *freed = true;
        }
        run.live -= num;
        self.in_use -= num;
        if run.live == 0 {
            let layout = run.layout;
            self.live.remove(&start);
            // SAFETY: `start` was returned by `alloc` with exactly this layout,
            // every frame of it is now freed, and it is removed from the live
            // set, so it is freed once.
            unsafe { dealloc(start as *mut u8, layout) };
        }
    }

    /// Frees every live run and clears everything.
    fn reset(&mut self) {
        for (pa, run) in std::mem::take(&mut self.live) {
            // SAFETY: each live run was allocated with its recorded layout.
            unsafe { dealloc(pa as *mut u8, run.layout) };
        }
        *self = State::new();
    }

    #[track_caller]
    fn assert_no_leaks(&self) {
        assert!(
            self.live.is_empty(),
            "leaked {} frames in {} runs: {:x?}",
            self.in_use,
            self.live.len(),
            self.live.keys().take(8).collect::<Vec<_>>()
        );
    }
}

thread_local! {
    static STATE: RefCell<State> = const { RefCell::new(State::new()) };
}

/// A `PagingHandler` over host memory with per-thread accounting.
pub struct TrackingHandler;

impl PagingHandler for TrackingHandler {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        STATE.with_borrow_mut(|s| s.alloc(num, align))
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        STATE.with_borrow_mut(|s| s.dealloc(paddr, num, "TrackingHandler"))
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}

/// Frees everything still live and clears all counters and the limit. Frames
/// still held by a previous test on this thread are released, not reported.
pub fn reset() {
    STATE.with_borrow_mut(State::reset)
}

/// Frames currently allocated on this thread.
pub fn frames_in_use() -> usize {
    STATE.with_borrow(|s| s.in_use)
}

/// Largest number of frames in use at once since the last [`reset`].
pub fn peak_frames() -> usize {
    STATE.with_borrow(|s| s.peak)
}

/// Allocation requests refused (by the limit or the host) since the last [`reset`].
pub fn failed_allocs() -> usize {
    STATE.with_borrow(|s| s.failed)
}

/// Limits the frames in use; `None` removes the limit.
pub fn set_limit(limit: Option<usize>) {
    STATE.with_borrow_mut(|s| s.limit = limit);
}

/// Panics unless every frame allocated on this thread has been freed.
#[track_caller]
pub fn assert_no_leaks() {
    STATE.with_borrow(|s| s.assert_no_leaks())
}

/// The state of [`SharedTrackingHandler`]: one for the whole process.
static SHARED: Mutex<State> = Mutex::new(State::new());

/// Held by a test for its whole run while it uses [`SharedTrackingHandler`].
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// Microseconds [`SharedTrackingHandler`] sleeps after a successful allocation.
static ALLOC_DELAY_US: AtomicU64 = AtomicU64::new(0);

/// The global state, even if a test panicked while holding it (a panic inside
/// the handler is a reported bug, not a reason to fail every later test).
fn shared() -> MutexGuard<'static, State> {
    SHARED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A thread-safe `PagingHandler` over host memory: the checks of
/// [`TrackingHandler`] (double free, free of frames it did not hand out, a
/// limit, `0xA5` fill, leaks) with one global state, so frames allocated on
/// one thread may be freed on another. Tests using it serialize themselves
/// with [`SharedTrackingHandler::exclusive`].
pub struct SharedTrackingHandler;

impl SharedTrackingHandler {
    /// Waits until no other test uses the shared state, then resets it (see
    /// [`SharedTrackingHandler::reset`]). Hold the guard for the whole test.
    pub fn exclusive() -> MutexGuard<'static, ()> {
        let guard = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
        Self::reset();
        guard
    }

    /// Frees everything still live and clears all counters, the limit and
    /// the allocation delay.
    pub fn reset() {
        shared().reset();
        ALLOC_DELAY_US.store(0, Ordering::Relaxed);
    }

    /// Makes every successful allocation sleep for `delay` (after the state
    /// is unlocked) before it returns, so that callers racing each other
    /// (faults on the same page) overlap even on a busy host with few cores.
    pub fn set_alloc_delay(delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        ALLOC_DELAY_US.store(us, Ordering::Relaxed);
    }

    /// Frames currently allocated (by any thread).
    pub fn frames_in_use() -> usize {
        shared().in_use
    }

    /// Largest number of frames in use at once since the last reset.
    pub fn peak_frames() -> usize {
        shared().peak
    }

    /// Allocation requests refused since the last reset.
    pub fn failed_allocs() -> usize {
        shared().failed
    }

    /// Limits the frames in use; `None` removes the limit.
    pub fn set_limit(limit: Option<usize>) {
        shared().limit = limit;
    }

    /// Panics unless every frame allocated since the last reset has been freed.
    #[track_caller]
    pub fn assert_no_leaks() {
        shared().assert_no_leaks();
    }
}

impl PagingHandler for SharedTrackingHandler {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        let pa = shared().alloc(num, align)?;
        let us = ALLOC_DELAY_US.load(Ordering::Relaxed);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
        Some(pa)
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        // The panic on a bad free happens with the state locked; `shared`
        // recovers it for later tests.
        shared().dealloc(paddr, num, "SharedTrackingHandler")
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_and_limits() {
        reset();
        let a = TrackingHandler::alloc_frame().unwrap();
        let b = TrackingHandler::alloc_frames(512, 2 << 20).unwrap();
        assert_eq!(b.as_usize() % (2 << 20), 0);
        assert_eq!(frames_in_use(), 513);
        set_limit(Some(513));
        assert!(TrackingHandler::alloc_frame().is_none());
        assert_eq!(failed_allocs(), 1);
        TrackingHandler::dealloc_frame(a);
        TrackingHandler::dealloc_frames(b, 512);
        assert_no_leaks();
    }

    #[test]
    fn runs_can_be_freed_piecewise() {
        reset();
        let a = TrackingHandler::alloc_frames(4, FRAME).unwrap();
        TrackingHandler::dealloc_frames(a + FRAME, 2);
        assert_eq!(frames_in_use(), 2);
        TrackingHandler::dealloc_frame(a);
        TrackingHandler::dealloc_frame(a + 3 * FRAME);
        assert_eq!(frames_in_use(), 0);
        assert_no_leaks();
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn partial_double_free_panics() {
        reset();
        let a = TrackingHandler::alloc_frames(4, FRAME).unwrap();
        TrackingHandler::dealloc_frames(a + FRAME, 2);
        TrackingHandler::dealloc_frame(a + 2 * FRAME);
    }

    #[test]
    #[should_panic(expected = "runs past its run")]
    fn free_past_the_run_panics() {
        reset();
        let a = TrackingHandler::alloc_frames(2, FRAME).unwrap();
        TrackingHandler::dealloc_frames(a + FRAME, 2);
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn double_free_panics() {
        reset();
        let a = TrackingHandler::alloc_frame().unwrap();
        TrackingHandler::dealloc_frame(a);
        TrackingHandler::dealloc_frame(a);
    }

    #[test]
    #[should_panic(expected = "leaked 1 frames")]
    fn leak_is_reported() {
        reset();
        let _a = TrackingHandler::alloc_frame().unwrap();
        assert_no_leaks();
    }

    #[test]
    fn shared_frames_cross_threads() {
        let _g = SharedTrackingHandler::exclusive();
        let frames: Vec<PhysAddr> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|_| sc.spawn(|| SharedTrackingHandler::alloc_frame().unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(SharedTrackingHandler::frames_in_use(), 4);
        // Freed on another thread than the one that allocated them.
        for pa in frames {
            SharedTrackingHandler::dealloc_frame(pa);
        }
        SharedTrackingHandler::set_limit(Some(0));
        assert!(SharedTrackingHandler::alloc_frame().is_none());
        assert_eq!(SharedTrackingHandler::failed_allocs(), 1);
        assert_eq!(SharedTrackingHandler::peak_frames(), 4);
        SharedTrackingHandler::assert_no_leaks();
    }

    #[test]
    #[should_panic(expected = "SharedTrackingHandler: free of")]
    fn shared_double_free_panics() {
        let _g = SharedTrackingHandler::exclusive();
        let a = SharedTrackingHandler::alloc_frame().unwrap();
        SharedTrackingHandler::dealloc_frame(a);
        SharedTrackingHandler::dealloc_frame(a);
    }

    #[test]
    #[should_panic(expected = "leaked 2 frames")]
    fn shared_leak_is_reported() {
        let _g = SharedTrackingHandler::exclusive();
        let _a = SharedTrackingHandler::alloc_frames(2, FRAME).unwrap();
        SharedTrackingHandler::assert_no_leaks();
    }
}
