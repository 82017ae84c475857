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
//! fault (the baseline of a whole-program count).

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

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: faultcount <faults>");
    PoolHandler::reserve(n + n / 512 + 16);
    let mut s = PoolSpace::new(va(WIN), WSIZE).unwrap();
    let base = s
        .mmap(
            Some(va(WIN)),
            n.max(1) * PAGE,
            RW,
            MmapFlags::FIXED_NOREPLACE,
        )
        .unwrap();
    for p in 0..n {
        tessera_bench_fault_one(&mut s, base + p * PAGE).unwrap();
    }
    let st = s.stats();
    assert_eq!(st.faults_handled, n as u64);
    println!(
        "faultcount: faults={} data_frames={} page_table_frames={}",
        st.faults_handled, st.data_frames, st.page_table_frames
    );
}
