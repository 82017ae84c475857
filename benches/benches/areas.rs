//! Area-set scaling: the cost of one mmap, one munmap that splits an area, one
//! mprotect that splits an area, one area lookup and one lazy fault, with 1k, 10k
//! and 100k areas already present; `memory_set` 0.4.1 used directly (with a
//! backend that does nothing) side by side as the anchor.
//!
//! `area_lookup` walks the areas in a scrambled order (each lookup a likely
//! cache miss at 100k areas); `area_lookup_seq` walks them in address order.
//! `area_mmap_anywhere` is an mmap without an address of 8 pages, more than any
//! hole between the areas holds, so first-fit placement must get past all `n`
//! areas (tessera: its gap index; memory_set: `find_free_area`, then `map`).
//!
//! Every operation that changes the set is undone after it, outside the timed
//! part (`iter_custom`): operations run in batches of [`BATCH`] on distinct areas
//! taken from [`hostbench::walk`], then the batch is undone, so the number of
//! areas stays `n` (± one batch) whatever the number of iterations.
//!
//! `HOSTBENCH_AREAS=1000,10000` (comma-separated) overrides the sizes.

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode};
use hal::Access;
use hostbench::{
    AREA_PAGES, AnchorSet, PAGE, RW, STRIDE_PAGES, TrackedSpace, Trivial, WIN, WSIZE,
    anchor_map_area, anchor_with_areas, area_start, map_area, space_with_areas, va, walk,
};
use memory_addr::VirtAddrRange;
use memory_set::MemoryArea;
use mm::{MappingFlags, MmapFlags, Prot};

/// Operations timed back to back before they are undone.
const BATCH: u64 = 64;

fn sizes() -> Vec<usize> {
    match std::env::var("HOSTBENCH_AREAS") {
        Ok(v) => v
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("HOSTBENCH_AREAS: comma-separated counts")
            })
            .collect(),
        Err(_) => vec![1_000, 10_000, 100_000],
    }
}

/// Times `op` on `iters` areas of `order` (continuing where the last call
/// stopped), undoing each batch with `undo` outside the timed part.
fn batched<S>(
    state: &mut S,
    order: &[usize],
    cursor: &Cell<usize>,
    iters: u64,
    mut op: impl FnMut(&mut S, usize),
    mut undo: impl FnMut(&mut S, usize),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(BATCH) as usize;
        let start = cursor.get();
        let pick = |k: usize| order[(start + k) % order.len()];
        let t = Instant::now();
        for k in 0..batch {
            op(state, pick(k));
        }
        total += t.elapsed();
        for k in 0..batch {
            undo(state, pick(k));
        }
        cursor.set((start + batch) % order.len());
        left -= batch as u64;
    }
    total
}

/// Pages of an `area_mmap_anywhere` mapping: more than a hole of the layout.
const ANYWHERE_PAGES: usize = STRIDE_PAGES;

/// Times `op` `iters` times, in batches of [`BATCH`] each followed (untimed) by
/// `undo`.
fn batched_plain<S>(
    state: &mut S,
    iters: u64,
    mut op: impl FnMut(&mut S),
    mut undo: impl FnMut(&mut S),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(BATCH);
        let t = Instant::now();
        for _ in 0..batch {
            op(state);
        }
        total += t.elapsed();
        undo(state);
        left -= batch;
    }
    total
}

/// Where the free space above the `n` areas of the layout begins.
fn top_of_layout(n: usize) -> usize {
    area_start(n - 1) + AREA_PAGES * PAGE
}

/// Replaces whatever an operation left of area `i` by the original area.
fn restore(s: &mut TrackedSpace, i: usize) {
    s.munmap(va(area_start(i)), AREA_PAGES * PAGE).unwrap();
    map_area(s, i);
}

fn anchor_restore(set: &mut AnchorSet, i: usize) {
    set.unmap(va(area_start(i)), AREA_PAGES * PAGE, &mut ())
        .unwrap();
    anchor_map_area(set, i);
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    // Each iteration is one operation; flat sampling keeps the slow O(n) cases
    // within the time budget.
    g.sampling_mode(SamplingMode::Flat);
    g
}

fn bench_tessera(c: &mut Criterion, n: usize, s: &mut TrackedSpace, order: &[usize]) {
    let cursor = Cell::new(0);
    let id = || BenchmarkId::new("tessera", n);

    group(c, "area_mmap").bench_function(id(), |b| {
        b.iter_custom(|iters| {
            batched(
                s,
                order,
                &cursor,
                iters,
                |s, i| {
                    let at = va(area_start(i) + (AREA_PAGES + 1) * PAGE);
                    black_box(s.mmap(Some(at), PAGE, RW, MmapFlags::FIXED_NOREPLACE)).unwrap();
                },
                |s, i| {
                    s.munmap(va(area_start(i) + (AREA_PAGES + 1) * PAGE), PAGE)
                        .unwrap()
                },
            )
        })
    });
    group(c, "area_mmap_anywhere").bench_function(id(), |b| {
        let top = top_of_layout(n);
        b.iter_custom(|iters| {
            batched_plain(
                s,
                iters,
                |s| {
                    black_box(s.mmap(None, ANYWHERE_PAGES * PAGE, RW, MmapFlags::empty())).unwrap();
                },
                |s| s.munmap(va(top), WIN + WSIZE - top).unwrap(),
            )
        })
    });
    group(c, "area_munmap_split").bench_function(id(), |b| {
        b.iter_custom(|iters| {
            batched(
                s,
                order,
                &cursor,
                iters,
                |s, i| black_box(s.munmap(va(area_start(i) + 2 * PAGE), PAGE)).unwrap(),
                restore,
            )
        })
    });
    group(c, "area_mprotect_split").bench_function(id(), |b| {
        b.iter_custom(|iters| {
            batched(
                s,
                order,
                &cursor,
                iters,
                |s, i| {
                    black_box(s.mprotect(va(area_start(i) + 2 * PAGE), PAGE, Prot::READ)).unwrap()
                },
                restore,
            )
        })
    });
    group(c, "area_lookup").bench_function(id(), |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % order.len();
            black_box(s.area_at(va(area_start(order[k]) + PAGE)))
        })
    });
    group(c, "area_lookup_seq").bench_function(id(), |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % n;
            black_box(s.area_at(va(area_start(i) + PAGE)))
        })
    });
    group(c, "area_lazy_fault").bench_function(id(), |b| {
        b.iter_custom(|iters| {
            batched(
                s,
                order,
                &cursor,
                iters,
                |s, i| {
                    black_box(s.handle_page_fault(va(area_start(i) + 2 * PAGE), Access::Write))
                        .unwrap()
                },
                restore,
            )
        })
    });
}

fn bench_anchor(c: &mut Criterion, n: usize, set: &mut AnchorSet, order: &[usize]) {
    let cursor = Cell::new(0);
    let id = || BenchmarkId::new("memory_set", n);
    let rw = MappingFlags::READ | MappingFlags::WRITE;

    group(c, "area_mmap").bench_function(id(), |b| {
        b.iter_custom(|iters| {
            batched(
                set,
                order,
                &cursor,
                iters,
                |set, i| {
                    let at = va(area_start(i) + (AREA_PAGES + 1) * PAGE);
                    black_box(set.map(MemoryArea::new(at, PAGE, rw, Trivial), &mut (), false))
                        .unwrap()
                },
                |set, i| {
                    set.unmap(va(area_start(i) + (AREA_PAGES + 1) * PAGE), PAGE, &mut ())
                        .unwrap()
                },
            )
        })
    });
    group(c, "area_mmap_anywhere").bench_function(id(), |b| {
        let top = top_of_layout(n);
        let window = VirtAddrRange::from_start_size(va(WIN), WSIZE);
        b.iter_custom(|iters| {
            batched_plain(
                set,
                iters,
                |set| {
                    let size = ANYWHERE_PAGES * PAGE;
                    let at = set.find_free_area(va(WIN), size, window, PAGE).unwrap();
                    black_box(set.map(MemoryArea::new(at, size, rw, Trivial), &mut (), false))
                        .unwrap()
                },
                |set| set.unmap(va(top), WIN + WSIZE - top, &mut ()).unwrap(),
            )
        })
    });
    group(c, "area_munmap_split").bench_function(id(), |b| {
        b.iter_custom(|iters| {
            batched(
                set,
                order,
                &cursor,
                iters,
                |set, i| black_box(set.unmap(va(area_start(i) + 2 * PAGE), PAGE, &mut ())).unwrap(),
                anchor_restore,
            )
        })
    });
    group(c, "area_mprotect_split").bench_function(id(), |b| {
        b.iter_custom(|iters| {
            batched(
                set,
                order,
                &cursor,
                iters,
                |set, i| {
                    black_box(set.protect(
                        va(area_start(i) + 2 * PAGE),
                        PAGE,
                        |_| Some(MappingFlags::READ),
                        &mut (),
                    ))
                    .unwrap()
                },
                anchor_restore,
            )
        })
    });
    group(c, "area_lookup").bench_function(id(), |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % order.len();
            black_box(set.find(va(area_start(order[k]) + PAGE)).map(|a| a.start()))
        })
    });
    group(c, "area_lookup_seq").bench_function(id(), |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % n;
            black_box(set.find(va(area_start(i) + PAGE)).map(|a| a.start()))
        })
    });
}

fn areas(c: &mut Criterion) {
    for n in sizes() {
        testing::reset();
        let order = walk(n);
        let mut s: TrackedSpace = space_with_areas(n);
        bench_tessera(c, n, &mut s, &order);
        assert_eq!(
            s.stats().areas,
            n,
            "the benchmarks left the area count as it was"
        );
        drop(s);
        testing::assert_no_leaks();
        let mut set = anchor_with_areas(n);
        bench_anchor(c, n, &mut set, &order);
        assert_eq!(set.len(), n);
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    areas(&mut c);
    c.final_summary();
}
