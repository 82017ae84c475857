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

use std::alloc::{Layout, alloc, dealloc};
use std::cell::RefCell;
use std::collections::BTreeMap;

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

#[derive(Default)]
struct State {
    /// Start address -> live run.
    live: BTreeMap<usize, Run>,
    in_use: usize,
    peak: usize,
    limit: Option<usize>,
    allocs: usize,
    failed: usize,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// A `PagingHandler` over host memory with per-thread accounting.
pub struct TrackingHandler;

impl PagingHandler for TrackingHandler {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        STATE.with_borrow_mut(|s| {
            if num == 0 || s.limit.is_some_and(|l| s.in_use + num > l) {
                s.failed += 1;
                return None;
            }
            let layout = Layout::from_size_align(num * FRAME, align.max(FRAME)).ok()?;
            // SAFETY: the layout has a non-zero size.
            let ptr = unsafe { alloc(layout) };
            if ptr.is_null() {
                s.failed += 1;
                return None;
            }
            // SAFETY: `ptr` is a fresh allocation of `layout.size()` bytes.
            unsafe { ptr.write_bytes(0xA5, layout.size()) };
            s.live.insert(
                ptr as usize,
                Run {
                    frames: num,
                    layout,
                    freed: vec![false; num],
                    live: num,
                },
            );
            s.in_use += num;
            s.peak = s.peak.max(s.in_use);
            s.allocs += 1;
            Some(PhysAddr::from(ptr as usize))
        })
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        STATE.with_borrow_mut(|s| {
            let pa = paddr.as_usize();
            let found = s.live.range_mut(..=pa).next_back();
            let Some((&start, run)) = found.filter(|(start, run)| {
                pa.is_multiple_of(FRAME) && pa < *start + run.frames * FRAME
            }) else {
                panic!("TrackingHandler: free of {pa:#x} which is not allocated (double free?)");
            };
            let first = (pa - start) / FRAME;
            assert!(
                num > 0 && first + num <= run.frames,
                "TrackingHandler: free of {num} frames at {pa:#x} runs past its run at {start:#x}"
            );
            for (i, freed) in run.freed[first..first + num].iter_mut().enumerate() {
                assert!(
                    !*freed,
                    "TrackingHandler: free of {:#x} which is not allocated (double free?)",
                    pa + i * FRAME
                );
                *freed = true;
            }
            run.live -= num;
            s.in_use -= num;
            if run.live == 0 {
                let layout = run.layout;
                s.live.remove(&start);
                // SAFETY: `start` was returned by `alloc` with exactly this layout,
                // every frame of it is now freed, and it is removed from the live
                // set, so it is freed once.
                unsafe { dealloc(start as *mut u8, layout) };
            }
        })
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}

/// Frees everything still live and clears all counters and the limit. Frames
/// still held by a previous test on this thread are released, not reported.
pub fn reset() {
    STATE.with_borrow_mut(|s| {
        for (pa, run) in std::mem::take(&mut s.live) {
            // SAFETY: each live run was allocated with its recorded layout.
            unsafe { dealloc(pa as *mut u8, run.layout) };
        }
        *s = State::default();
    })
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
    STATE.with_borrow(|s| {
        assert!(
            s.live.is_empty(),
            "leaked {} frames in {} runs: {:x?}",
            s.in_use,
            s.live.len(),
            s.live.keys().take(8).collect::<Vec<_>>()
        );
    })
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
}
