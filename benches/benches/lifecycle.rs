//! mmap + touch every page + munmap of 1, 16 and 256 pages, lazy and populated,
//! over [`PoolHandler`] (frames from a free list: the cost shown is `mm`'s,
//! frame zeroing included).
//!
//! On the host nothing faults by itself: "touch" is, for a lazy mapping, the
//! fault `handle_page_fault(va, Write)` the CPU would raise, and then, for both
//! kinds, a translation of the page and a one-byte store through it (the same
//! extra work on both sides). A one-page populated area at the end of the first
//! 2 MiB of the window keeps its leaf page table allocated, as other mappings of
//! a running app would, so the figures do not include creating and freeing it.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use hal::Access;
use hostbench::{PAGE, PoolHandler, PoolSpace, RW, WIN, WSIZE, va};
use mm::MmapFlags;

fn touch(s: &mut PoolSpace, base: usize, pages: usize, lazy: bool) {
    for p in 0..pages {
        let at = va(base + p * PAGE);
        if lazy {
            s.handle_page_fault(at, Access::Write).unwrap();
        }
        let pa = s.translate(at).unwrap().paddr.as_usize();
        // SAFETY: with `PoolHandler` a physical address is the host address of a
        // live frame owned by the mapping, which stays mapped until the munmap
        // below.
        unsafe { (pa as *mut u8).write_volatile(1) };
    }
}

fn lifecycle(c: &mut Criterion) {
    let mut s = PoolSpace::new(va(WIN), WSIZE).unwrap();
    let keep = va(WIN + 0x20_0000 - PAGE);
    s.mmap(Some(keep), PAGE, RW, MmapFlags::FIXED | MmapFlags::POPULATE)
        .unwrap();
    PoolHandler::reserve(1024);
    let mut g = c.benchmark_group("lifecycle");
    for pages in [1usize, 16, 256] {
        for (name, flags) in [
            ("lazy", MmapFlags::empty()),
            ("populate", MmapFlags::POPULATE),
        ] {
            let lazy = flags.is_empty();
            g.bench_function(BenchmarkId::new(name, pages), |b| {
                b.iter(|| {
                    let base = s.mmap(None, pages * PAGE, RW, flags).unwrap();
                    touch(&mut s, base.as_usize(), pages, lazy);
                    black_box(s.munmap(base, pages * PAGE)).unwrap();
                })
            });
        }
    }
    g.finish();
    assert_eq!(s.stats().areas, 1);
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    lifecycle(&mut c);
    c.final_summary();
}
