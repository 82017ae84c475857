//! Area-set operations for an instruction count under callgrind
//! (`scripts/bench.py`): the operations of the `areas` criterion bench, each
//! through an unmangled, never-inlined wrapper, so that
//! `valgrind --tool=callgrind --toggle-collect=tessera_bench_area_<op>`
//! counts that operation only. Wall-clock rows at 1k-100k areas move by
//! 10-25% from run to run on a shared machine; instructions (and the L1 data
//! misses callgrind's cache model counts with `--cache-sim=yes`) do not, so
//! two versions of the area set can be compared to a few percent.
//!
//! `areacount N K` builds the scaling layout of `N` areas
//! ([`space_with_areas`]) and then, for `K` areas of the scrambled walk
//! ([`walk`]), runs each operation once, undoing it (uncounted) before the
//! next: a lookup, an `mprotect` that splits the area, a `munmap` that splits
//! it, an `mmap` into the hole left by unmapping it, and a lazy write fault
//! on one of its pages (a miss of the fault path's last-hit cache, as every
//! fault in another area than the last one is). Divide a wrapper's count by
//! `K`.

use hal::Access;
use hostbench::{AREA_PAGES, PAGE, TrackedSpace, area_start, map_area, space_with_areas, va, walk};
use mm::{AreaInfo, Prot};
use std::hint::black_box;

/// `area_at` in the middle of area `i`.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn tessera_bench_area_lookup(s: &TrackedSpace, i: usize) -> Option<AreaInfo> {
    black_box(s.area_at(va(area_start(i) + PAGE)))
}

/// `mprotect` of one page in the middle of area `i` (a split in three).
#[unsafe(no_mangle)]
#[inline(never)]
pub fn tessera_bench_area_mprotect(s: &mut TrackedSpace, i: usize) {
    s.mprotect(va(area_start(i) + 2 * PAGE), PAGE, Prot::READ)
        .expect("mprotect inside an area");
}

/// `munmap` of one page in the middle of area `i` (a split in two).
#[unsafe(no_mangle)]
#[inline(never)]
pub fn tessera_bench_area_munmap(s: &mut TrackedSpace, i: usize) {
    s.munmap(va(area_start(i) + 2 * PAGE), PAGE)
        .expect("munmap inside the window");
}

/// `mmap` of area `i` into its (free) slot.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn tessera_bench_area_mmap(s: &mut TrackedSpace, i: usize) {
    map_area(s, i);
}

/// A lazy write fault on the second page of area `i`.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn tessera_bench_area_fault(s: &TrackedSpace, i: usize) {
    s.handle_page_fault(va(area_start(i) + PAGE), Access::Write)
        .expect("a lazy fault in an area");
}

/// Puts area `i` back as the layout has it.
fn restore(s: &mut TrackedSpace, i: usize) {
    s.munmap(va(area_start(i)), AREA_PAGES * PAGE)
        .expect("munmap of a slot");
    map_area(s, i);
}

fn main() {
    let arg = |k: usize| {
        std::env::args()
            .nth(k)
            .and_then(|a| a.parse::<usize>().ok())
    };
    let (Some(n), Some(k)) = (arg(1), arg(2)) else {
        panic!("usage: areacount <areas> <operations of each kind>");
    };
    let mut s: TrackedSpace = space_with_areas(n);
    let order = walk(n);
    for &i in order.iter().cycle().take(k) {
        tessera_bench_area_lookup(&s, i).expect("an area in the slot");
        tessera_bench_area_mprotect(&mut s, i);
        restore(&mut s, i);
        tessera_bench_area_munmap(&mut s, i);
        s.munmap(va(area_start(i)), AREA_PAGES * PAGE)
            .expect("munmap of a slot");
        tessera_bench_area_mmap(&mut s, i);
        tessera_bench_area_fault(&s, i);
        restore(&mut s, i);
    }
    assert_eq!(s.areas().count(), n, "every operation was undone");
    println!("areacount: areas={n} ops={k}");
}
