//! The kernel heap: buddy_system_allocator, seeded with a static arena in .bss
//! and grown from the frame allocator when it runs dry.
//!
//! Growth takes whole runs of frames (at least `GROW_MIN`, 1 MiB) and never gives them
//! back; they count as frames in use.

use core::sync::atomic::{AtomicBool, Ordering};

use buddy_system_allocator::{Heap, LockedHeapWithRescue};
use hal::Board;
use page_table_multiarch::PagingHandler;

use crate::board::Current;

/// The static arena the heap starts with.
const ARENA_SIZE: usize = 4 << 20;
/// Smallest growth step.
const GROW_MIN: usize = 1 << 20;

#[repr(C, align(4096))]
struct Arena([u8; ARENA_SIZE]);

static mut ARENA: Arena = Arena([0; ARENA_SIZE]);

#[global_allocator]
static HEAP: LockedHeapWithRescue<32> = LockedHeapWithRescue::new(grow);

fn grow(heap: &mut Heap<32>, layout: &core::alloc::Layout) {
    let bytes = (layout.size() + layout.align())
        .next_power_of_two()
        .max(GROW_MIN);
    let frames = bytes / frames::FRAME_SIZE;
    match frames::global::alloc(frames, frames::FRAME_SIZE) {
        Ok(pa) => {
            let va = <Current as Board>::Paging::phys_to_virt(pa.into()).as_usize();
            // SAFETY: the frames were just allocated for the heap alone and are
            // mapped read-write through the physical-memory window.
            unsafe { heap.add_to_heap(va, va + bytes) };
        }
        Err(e) => log::error!("heap growth of {bytes:#x} bytes failed: {e}"),
    }
}

/// Set by the first [`init`].
static ARENA_GIVEN: AtomicBool = AtomicBool::new(false);

/// Hands the static arena to the heap. Called once, first thing at boot.
///
/// # Panics
///
/// On a second call: the arena would be handed out twice.
pub fn init() {
    assert!(
        !ARENA_GIVEN.swap(true, Ordering::Relaxed),
        "kernel heap: init called twice"
    );
    let start = (&raw mut ARENA) as usize;
    // SAFETY: `ARENA` is named nowhere else, is page aligned and lives forever, and
    // the check above lets only the first call through, so the heap receives the
    // arena once and owns it alone.
    unsafe { HEAP.lock().init(start, ARENA_SIZE) };
}

/// Bytes the heap manages and bytes in use.
pub fn usage() -> (usize, usize) {
    let h = HEAP.lock();
    (h.stats_total_bytes(), h.stats_alloc_actual())
}
