//! Operation batches and the shootdown hook: with a shootdown installed,
//! cursors that only add translations flush locally; cursors that remove or
//! weaken them call the shootdown once per flush; inside a batch, every
//! cursor's flush waits for the batch's end, which shoots down once and only
//! then frees retired tables and data frames. The recording shootdown checks
//! the frame count at the moment it runs: nothing was freed before it.

mod common;

use std::cell::RefCell;

use common::*;
use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::{MappingFlags as F, PagingHandler};
use paging::{PageTable, Shootdown, Size4K};
use testing::TrackingHandler;

type Pt = PageTable<X64Meta, X64PTE, TrackingHandler>;

/// One recorded shootdown: its pages, whether it was full, and the frames in
/// use when it ran.
#[derive(Debug, Clone, PartialEq)]
struct Shot {
    pages: Vec<usize>,
    all: bool,
    frames_in_use: usize,
}

thread_local! {
    static SHOTS: RefCell<Vec<Shot>> = const { RefCell::new(Vec::new()) };
}

struct Recorder;

// SAFETY: host test: there are no other CPUs, and the recording runs on the
// calling thread before the cursor goes on.
unsafe impl Shootdown for Recorder {
    fn shootdown(&self, _root: PhysAddr, pages: &[usize], all: bool) {
        let frames_in_use = testing::frames_in_use();
        SHOTS.with(|s| {
            s.borrow_mut().push(Shot {
                pages: pages.to_vec(),
                all,
                frames_in_use,
            })
        });
    }
}

static RECORDER: Recorder = Recorder;

fn shots() -> Vec<Shot> {
    SHOTS.with(|s| core::mem::take(&mut *s.borrow_mut()))
}

fn setup() {
    paging::set_shootdown(&RECORDER);
    testing::reset();
    shots();
}

const BASE: usize = 0x4000_0000;

fn map_pages(pt: &mut Pt, n: usize) -> Vec<PhysAddr> {
    let mut c = pt.cursor();
    (0..n)
        .map(|i| {
            let frame = TrackingHandler::alloc_frame().unwrap();
            c.map::<Size4K>(VirtAddr::from(BASE + i * PAGE), frame, F::READ | F::WRITE)
                .unwrap();
            frame
        })
        .collect()
}

#[test]
fn maps_flush_locally_and_unmaps_shoot_down_once_per_cursor() {
    setup();
    let mut pt = Pt::try_new().unwrap();
    let frames = map_pages(&mut pt, 8);
    assert_eq!(
        shots(),
        vec![],
        "a map that only adds translations needs no shootdown"
    );
    for i in 0..2 {
        let mut c = pt.cursor();
        c.unmap_region(VirtAddr::from(BASE + i * 4 * PAGE), 4 * PAGE, |_| {})
            .unwrap();
    }
    let s = shots();
    assert_eq!(
        s.len(),
        2,
        "one shootdown per cursor outside a batch: {s:?}"
    );
    assert_eq!(
        s[0].pages,
        (0..4).map(|i| BASE + i * PAGE).collect::<Vec<_>>()
    );
    for f in frames {
        pt.free_after_flush(f, 1);
    }
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn a_batch_shoots_down_once_then_frees_tables_and_data_frames() {
    setup();
    let mut pt = Pt::try_new().unwrap();
    let frames = map_pages(&mut pt, 64);
    // A page far away: unmapping it empties and retires its tables.
    let far = TrackingHandler::alloc_frame().unwrap();
    pt.cursor()
        .map::<Size4K>(VirtAddr::from(0x80_0000_0000), far, F::READ)
        .unwrap();
    shots();
    let in_use = testing::frames_in_use();
    pt.begin_batch();
    for chunk in 0..4 {
        let mut c = pt.cursor();
        c.protect_region(VirtAddr::from(BASE + chunk * 16 * PAGE), 16 * PAGE, F::READ)
            .unwrap();
    }
    pt.cursor()
        .unmap_region(VirtAddr::from(0x80_0000_0000), PAGE, |_| {})
        .unwrap();
    pt.free_after_flush(far, 1);
    for &f in &frames[..32] {
        pt.free_after_flush(f, 1);
    }
    assert_eq!(shots(), vec![], "no shootdown before the batch ends");
    assert_eq!(
        testing::frames_in_use(),
        in_use,
        "no frame freed before the batch ends"
    );
    pt.end_batch();
    let s = shots();
    assert_eq!(s.len(), 1, "one shootdown for the whole batch: {s:?}");
    assert!(
        s[0].all,
        "a batch past 16 pages and with unlinked tables flushes everything"
    );
    assert_eq!(
        s[0].frames_in_use, in_use,
        "the shootdown ran before any frame was freed"
    );
    // The far page's three tables and 33 data frames are gone now.
    assert_eq!(testing::frames_in_use(), in_use - 3 - 33);
    for &f in &frames[32..] {
        pt.free_after_flush(f, 1);
    }
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn batches_nest_and_an_empty_batch_does_nothing() {
    setup();
    let mut pt = Pt::try_new().unwrap();
    let frames = map_pages(&mut pt, 2);
    pt.begin_batch();
    pt.end_batch();
    assert_eq!(shots(), vec![]);
    pt.begin_batch();
    pt.begin_batch();
    pt.cursor()
        .unmap_region(VirtAddr::from(BASE), 2 * PAGE, |_| {})
        .unwrap();
    pt.end_batch();
    assert_eq!(shots(), vec![], "the inner end does not flush");
    pt.end_batch();
    assert_eq!(shots().len(), 1);
    for f in frames {
        pt.free_after_flush(f, 1);
    }
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn dropping_a_table_with_an_open_batch_flushes_and_frees() {
    setup();
    let mut pt = Pt::try_new().unwrap();
    let frames = map_pages(&mut pt, 2);
    pt.begin_batch();
    pt.cursor()
        .unmap_region(VirtAddr::from(BASE), 2 * PAGE, |_| {})
        .unwrap();
    for f in frames {
        pt.free_after_flush(f, 1);
    }
    drop(pt);
    assert_eq!(shots().len(), 1);
    testing::assert_no_leaks();
}
