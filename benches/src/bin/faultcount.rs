//! Lazy faults for an instruction count under callgrind (`scripts/bench.py`).
//!
//! `faultcount N` maps one lazy read-write area of `N` pages over
//! [`PoolHandler`] (frames reserved up front, so no fault calls the host
//! allocator) and resolves a write fault on each page through
//! [`tessera_bench_fault_one`], an unmangled, never-inlined wrapper of
//! `AddrSpace::handle_page_fault`. Run it with
//! `valgrind --tool=callgrind --toggle-collect=tessera_bench_fault_one` to count
//! the fault path only; the script subtracts the `memset` cost inside it (frame
//! and page-table zeroing) and divides by `N`. `N = 0` does the same setup with no
//! fault (the baseline of a whole-program count); nothing is torn down.

use hal::Access;
use hostbench::{PAGE, PoolHandler, PoolSpace, RW, WIN, WSIZE, va};
use memory_addr::VirtAddr;
use mm::{FaultError, MmapFlags};

/// One lazy fault: the function callgrind collects in.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn tessera_bench_fault_one(s: &mut PoolSpace, at: VirtAddr) -> Result<(), FaultError> {
    s.handle_page_fault(at, Access::Write)
}

/// Most faults one run may take; setup does not depend on the count asked for.
const MAX_FAULTS: usize = 4096;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .filter(|&n| n <= MAX_FAULTS)
        .expect("usage: faultcount <faults, at most 4096>");
    // The same setup whatever `n`, so whole-program counts of two runs differ by
    // the faults alone: all frames up front, one area of `MAX_FAULTS` pages, no
    // teardown (the process exits with the space still mapped).
    PoolHandler::reserve(MAX_FAULTS + MAX_FAULTS / 512 + 16);
    let mut s = PoolSpace::new(va(WIN), WSIZE).unwrap();
    let base = s
        .mmap(
            Some(va(WIN)),
            MAX_FAULTS * PAGE,
            RW,
            MmapFlags::FIXED_NOREPLACE,
        )
        .unwrap();
    let mut handled = 0;
    for p in 0..n {
        if tessera_bench_fault_one(&mut s, base + p * PAGE).is_ok() {
            handled += 1;
        }
    }
    println!("faultcount: faults={handled}");
    assert_eq!(handled, n, "every fault is resolved");
    std::mem::forget(s);
}
