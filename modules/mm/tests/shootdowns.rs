//! One shootdown per call, whatever its length: with a recording shootdown
//! installed (as the kernel installs its own), every call that removes or
//! weakens translations reaches it exactly once, calls that only add
//! translations and page faults never do, and no frame is freed before it
//! ran. Its own test binary: the shootdown hook is global to the process.

mod common;

use std::cell::RefCell;

use common::*;
use hal::Access;
use memory_addr::PhysAddr;
use mm::{MmapFlags, Prot};
use paging::Shootdown;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const NONE: MmapFlags = MmapFlags::empty();
const M2: usize = 2 << 20;

thread_local! {
    /// Per shootdown: (pages named, full flush, frames in use when it ran).
    static SHOTS: RefCell<Vec<(usize, bool, usize)>> = const { RefCell::new(Vec::new()) };
}

struct Recorder;

// SAFETY: host test, one CPU: the recording is the whole flush.
unsafe impl Shootdown for Recorder {
    fn shootdown(&self, _root: PhysAddr, pages: &[usize], all: bool) {
        let in_use = testing::frames_in_use();
        SHOTS.with(|s| s.borrow_mut().push((pages.len(), all, in_use)));
    }
}

static RECORDER: Recorder = Recorder;

/// Runs `call` and returns the shootdowns it made; checks that none ran
/// after a frame of the call was freed.
fn shots_of(call: impl FnOnce()) -> Vec<(usize, bool, usize)> {
    paging::set_shootdown(&RECORDER);
    SHOTS.with(|s| s.borrow_mut().clear());
    let before = testing::frames_in_use();
    call();
    let shots = SHOTS.with(|s| s.borrow_mut().split_off(0));
    for &(_, _, in_use) in &shots {
        assert!(
            in_use >= before.min(testing::frames_in_use()),
            "a shootdown ran after frames of its call were freed"
        );
    }
    shots
}

#[test]
fn one_shootdown_per_call() {
    let mut s = space();
    // Three adjacent areas with different protections: three areas, populated.
    let flags = MmapFlags::FIXED | MmapFlags::POPULATE;
    let mk = |s: &mut Space, at: usize, n: usize, prot: Prot| {
        s.mmap(Some(va(at)), n * PAGE, prot, flags).unwrap();
    };
    let shots = shots_of(|| {
        mk(&mut s, WIN, 200, RW);
        mk(&mut s, WIN + 200 * PAGE, 200, Prot::READ);
        mk(&mut s, WIN + 400 * PAGE, 112, RW);
    });
    assert_eq!(
        shots.len(),
        0,
        "maps into empty ranges add translations only"
    );
    let used = testing::frames_in_use();
    let shots = shots_of(|| s.munmap(va(WIN + 100 * PAGE), 300 * PAGE).unwrap());
    assert_eq!(
        shots.len(),
        1,
        "munmap over three areas: one shootdown, {shots:?}"
    );
    assert_eq!(
        shots[0].2, used,
        "the shootdown ran before any frame was freed"
    );
    assert!(
        testing::frames_in_use() <= used - 300,
        "the 300 data frames were freed"
    );
    let shots = shots_of(|| s.munmap(va(WIN), PAGE).unwrap());
    assert_eq!(shots.len(), 1);
    assert_eq!(
        shots[0],
        (1, false, shots[0].2),
        "one page named, not a full flush"
    );
    let shots = shots_of(|| {
        s.mprotect(va(WIN + 400 * PAGE), 112 * PAGE, Prot::READ)
            .unwrap()
    });
    assert_eq!(shots.len(), 1, "mprotect of 112 pages: {shots:?}");
    let shots = shots_of(|| s.munmap(va(WIN + 9000 * PAGE), 64 * PAGE).unwrap());
    assert_eq!(shots.len(), 0, "munmap of a hole removes nothing");

    // A huge page: a partial mprotect splits it (one shootdown for the split
    // and the protect), a FIXED mapping over part of it removes pages.
    let huge = WIN + 512 * PAGE * 8;
    let hflags = MmapFlags::FIXED | MmapFlags::POPULATE | MmapFlags::HUGE_2M;
    assert_eq!(
        shots_of(|| {
            s.mmap(Some(va(huge)), 2 * M2, RW, hflags).unwrap();
        })
        .len(),
        0
    );
    let shots = shots_of(|| {
        s.mprotect(va(huge + 10 * PAGE), 3 * PAGE, Prot::READ)
            .unwrap()
    });
    assert_eq!(shots.len(), 1, "split + protect: {shots:?}");
    let shots = shots_of(|| {
        s.mmap(Some(va(huge + M2 - 8 * PAGE)), 16 * PAGE, RW, flags)
            .unwrap();
    });
    assert_eq!(
        shots.len(),
        1,
        "FIXED over the end of one huge page and the start of the next: {shots:?}"
    );

    // Faults only add translations.
    let lazy = s.mmap(None, 64 * PAGE, RW, NONE).unwrap().as_usize();
    let shots = shots_of(|| {
        for p in 0..64 {
            s.handle_page_fault(va(lazy + p * PAGE), Access::Write)
                .unwrap();
        }
    });
    assert_eq!(shots.len(), 0, "faults make no shootdown");
    let shots = shots_of(|| s.munmap(va(lazy), 64 * PAGE).unwrap());
    assert_eq!(shots.len(), 1);
    assert!(shots[0].1, "64 pages: a full flush");
    drop(s);
    testing::assert_no_leaks();
}
