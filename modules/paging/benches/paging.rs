//! Our table vs `PageTable64`, same work, side by side.
//!
//! Cases: map 1 GiB with 4K pages; map 1 GiB with huge pages (a 2M-aligned but
//! not 1G-aligned physical address, so 512 2M leaves); protect 1 GiB of 4K pages;
//! unmap a 64 GiB region holding 16 scattered 4K pages (for `PageTable64`, the
//! loop its users must write: unmap each 4K page, skip `NotMapped`).
//!
//! Every timed iteration is also recorded here, and after each case a line
//! prints both medians and the ratio ours/theirs (time). Then the case is
//! timed once more with the two sides alternating, one iteration each, the
//! order flipped every pair (`AB <case>: ours_ns .. theirs_ns .. pairs ..`):
//! the side-by-side figure `make bench` reports, since criterion runs one
//! side's samples after the other's and a shared host drifts in between.
//! Run: `CARGO_TARGET_DIR=/tmp/target-paging cargo bench -p paging --bench paging`.

#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::x86_64::X64PagingMetaData;
use page_table_multiarch::{MappingFlags, PageSize, PageTable64, PagingError};
use paging::{NoFlush, PageTable};
use testing::TrackingHandler;

/// x86_64 geometry without the privileged flush (host build) for both tables.
type Meta = NoFlush<X64PagingMetaData>;
type Ours = PageTable<Meta, X64PTE, TrackingHandler>;
type Theirs = PageTable64<Meta, X64PTE, TrackingHandler>;

const G1: usize = 1 << 30;
const M2: usize = 2 << 20;
const PAGE: usize = 4096;
const BASE: usize = 0x40_0000_0000;

fn rw() -> MappingFlags {
    MappingFlags::READ | MappingFlags::WRITE
}

/// Times `op` once per iteration on a fresh `setup()` value (setup and drop
/// untimed), records each iteration, returns the total.
fn timed<T>(
    log: &mut Vec<Duration>,
    iters: u64,
    mut setup: impl FnMut() -> T,
    mut op: impl FnMut(&mut T),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut t = setup();
        let start = Instant::now();
        op(&mut t);
        let d = start.elapsed();
        black_box(&t);
        drop(t);
        total += d;
        log.push(d);
    }
    total
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(case: &str, ours: &mut [Duration], theirs: &mut [Duration]) {
    if ours.is_empty() || theirs.is_empty() {
        // A filter left one side out: nothing to compare.
        return;
    }
    let (o, t) = (median(ours), median(theirs));
    println!(
        "RATIO {case}: ours {o:?} theirs {t:?} (medians of {} / {} iterations) ours/theirs = {:.4} (theirs is {:.1}x ours)",
        ours.len(),
        theirs.len(),
        o.as_secs_f64() / t.as_secs_f64(),
        t.as_secs_f64() / o.as_secs_f64(),
    );
}

/// Times ours and theirs alternately, one iteration each per pair with the
/// order flipped every pair (A B, B A, ...), until `AB_TIME` has passed (at
/// least `AB_MIN` and at most `AB_MAX` pairs): the two sides see the same
/// machine, whatever else it does meanwhile.
fn alternate<TO, TT>(
    setup_ours: &mut impl FnMut() -> TO,
    op_ours: &mut impl FnMut(&mut TO),
    setup_theirs: &mut impl FnMut() -> TT,
    op_theirs: &mut impl FnMut(&mut TT),
) -> (Vec<Duration>, Vec<Duration>) {
    const AB_TIME: Duration = Duration::from_millis(1500);
    const AB_MIN: usize = 11;
    const AB_MAX: usize = 401;
    let (mut o, mut t) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while o.len() < AB_MIN || (o.len() < AB_MAX && start.elapsed() < AB_TIME) {
        if o.len().is_multiple_of(2) {
            timed(&mut o, 1, &mut *setup_ours, &mut *op_ours);
            timed(&mut t, 1, &mut *setup_theirs, &mut *op_theirs);
        } else {
            timed(&mut t, 1, &mut *setup_theirs, &mut *op_theirs);
            timed(&mut o, 1, &mut *setup_ours, &mut *op_ours);
        }
    }
    (o, t)
}

fn case<TO, TT>(
    c: &mut Criterion,
    name: &str,
    mut setup_ours: impl FnMut() -> TO,
    mut op_ours: impl FnMut(&mut TO),
    mut setup_theirs: impl FnMut() -> TT,
    mut op_theirs: impl FnMut(&mut TT),
) {
    let (mut lo, mut lt) = (Vec::new(), Vec::new());
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("ours", |b| {
        b.iter_custom(|n| timed(&mut lo, n, &mut setup_ours, &mut op_ours))
    });
    g.bench_function("PageTable64", |b| {
        b.iter_custom(|n| timed(&mut lt, n, &mut setup_theirs, &mut op_theirs))
    });
    g.finish();
    report(name, &mut lo, &mut lt);
    let (mut ao, mut at) = alternate(
        &mut setup_ours,
        &mut op_ours,
        &mut setup_theirs,
        &mut op_theirs,
    );
    let (mo, mt) = (median(&mut ao), median(&mut at));
    println!(
        "AB {name}: ours_ns {} theirs_ns {} pairs {} ours/theirs = {:.4}",
        mo.as_nanos(),
        mt.as_nanos(),
        ao.len(),
        mo.as_secs_f64() / mt.as_secs_f64()
    );
}

/// Maps 1 GiB at `BASE` to `phys` (huge leaves allowed with `huge`).
fn map_ours(t: &mut Ours, phys: usize, huge: bool) {
    t.cursor()
        .map_region(VirtAddr::from(BASE), PhysAddr::from(phys), G1, rw(), huge)
        .unwrap();
}

/// `map_ours` for `PageTable64`.
fn map_theirs(t: &mut Theirs, phys: usize, huge: bool) {
    t.cursor()
        .map_region(
            VirtAddr::from(BASE),
            |v| PhysAddr::from(v.as_usize() - BASE + phys),
            G1,
            rw(),
            huge,
        )
        .unwrap();
}

fn scattered() -> impl Iterator<Item = usize> {
    (0..16).map(|i| BASE + i * 4 * G1 + (i * 37 % 512) * M2 + (i * 101 % 512) * PAGE)
}

fn benches(c: &mut Criterion) {
    testing::reset();

    // The huge case maps a 2M-aligned, not 1G-aligned address: 512 x 2M leaves.
    for (name, phys, huge) in [
        ("map 1GiB 4K pages", 0, false),
        ("map 1GiB huge pages", G1 + M2, true),
    ] {
        case(
            c,
            name,
            || Ours::try_new().unwrap(),
            |t| map_ours(t, phys, huge),
            || Theirs::try_new().unwrap(),
            |t| map_theirs(t, phys, huge),
        );
    }

    // Protect: one table each, built once; the flags alternate per iteration.
    let mut ours = Ours::try_new().unwrap();
    map_ours(&mut ours, 0, false);
    let mut theirs = Theirs::try_new().unwrap();
    map_theirs(&mut theirs, 0, false);
    let (mut fo, mut ft) = (false, false);
    let ro = MappingFlags::READ;
    case(
        c,
        "protect 1GiB of 4K pages",
        || (),
        |()| {
            fo = !fo;
            ours.cursor()
                .protect_region(VirtAddr::from(BASE), G1, if fo { ro } else { rw() })
                .unwrap()
        },
        || (),
        |()| {
            ft = !ft;
            theirs
                .cursor()
                .protect_region(VirtAddr::from(BASE), G1, if ft { ro } else { rw() })
                .unwrap()
        },
    );
    drop((ours, theirs));

    case(
        c,
        "unmap 64GiB sparse (16 x 4K)",
        || {
            let mut t = Ours::try_new().unwrap();
            let mut cur = t.cursor();
            for v in scattered() {
                cur.map::<paging::Size4K>(VirtAddr::from(v), PhysAddr::from(v - BASE), rw())
                    .unwrap();
            }
            drop(cur);
            t
        },
        |t| {
            let mut n = 0;
            t.cursor()
                .unmap_region(VirtAddr::from(BASE), 64 * G1, |_| n += 1)
                .unwrap();
            assert_eq!(n, 16);
        },
        || {
            let mut t = Theirs::try_new().unwrap();
            let mut cur = t.cursor();
            for v in scattered() {
                cur.map(
                    VirtAddr::from(v),
                    PhysAddr::from(v - BASE),
                    PageSize::Size4K,
                    rw(),
                )
                .unwrap();
            }
            drop(cur);
            t
        },
        |t| {
            let mut cur = t.cursor();
            let mut n = 0;
            for v in (BASE..BASE + 64 * G1).step_by(PAGE) {
                match cur.unmap(VirtAddr::from(v)) {
                    Ok(_) => n += 1,
                    Err(PagingError::NotMapped) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
            assert_eq!(n, 16);
        },
    );
}

criterion_group!(paging_benches, benches);
criterion_main!(paging_benches);
