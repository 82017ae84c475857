//! Seeded random operation sequences checked page by page against the reference
//! model of `common/model.rs` (shared with the libFuzzer target).
//!
//! Operations: mmap (hint, FIXED, FIXED_NOREPLACE, POPULATE, CONTIGUOUS,
//! HUGE_2M lazy and populated, now and then HUGE_1G or an invalid huge
//! combination), munmap, mprotect (short ranges that split huge pages, long
//! ones over whole blocks), page faults, translations, and any of them under a
//! frame limit (a call that needs frames must then succeed or fail with
//! `NoMemory` and change nothing; a huge fault may fall back to a 4K page).
//! The window holds 64 pages, three whole 2M blocks and 64 pages; most 4K work
//! lands in its first 132 pages (dense), huge work in the blocks. After every
//! operation the frame counts and huge counters are checked; every 256
//! operations every page (translation, leaf size, data), the leaf count and the
//! exact area list the model predicts are compared.
//!
//! `MM_FUZZ_OPS=<n>` sets the operations per seed (default 10,000);
//! `make fuzz` runs 1,000,000 per seed in release.

mod common;

use axerrno::AxError;
use common::model::{
    BLOCK, FIRST_BLOCK, Fault, Kind, Model, P, PAGES, PROTS, START, addr, window_pages,
};
use common::{Space, page_is_zero, va, write};
use hal::Access;
use mm::{AreaKind, MmapFlags};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Pages at the start of the window where most 4K work happens.
const DENSE: usize = 132;

fn run(seed: u64, ops: usize) {
    testing::reset();
    let mut s = Space::new(va(START), PAGES * P).unwrap();
    let mut m = Model::new();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut next_tag = 1u64;
    let (mut fresh, mut stale) = (0u64, 0u64);
    let mut pressure_failures = 0u64;
    let (mut contiguous_maps, mut huge_maps, mut splits) = (0u64, 0u64, 0u64);
    for i in 0..ops {
        let op = rng.random_range(0..100);
        let mut start = if rng.random_bool(0.6) {
            rng.random_range(0..DENSE)
        } else {
            rng.random_range(0..PAGES + 4)
        };
        let mut n = if rng.random_bool(0.1) {
            rng.random_range(1..=2 * BLOCK)
        } else {
            rng.random_range(1..=10usize)
        };
        let ctx = format!("seed {seed} op {i}");
        let ctx = ctx.as_str();
        match op {
            0..=24 => {
                let prot = PROTS[rng.random_range(0..PROTS.len())];
                let mode = rng.random_range(0..6);
                let contiguous = rng.random_bool(0.15);
                let huge = rng.random_bool(if contiguous { 0.02 } else { 0.25 });
                let populate = mode == 1 || mode == 3;
                let mut flags = if populate {
                    MmapFlags::POPULATE
                } else {
                    MmapFlags::empty()
                };
                if contiguous {
                    flags |= MmapFlags::CONTIGUOUS;
                }
                if huge {
                    flags |= if rng.random_bool(0.03) {
                        MmapFlags::HUGE_1G
                    } else {
                        MmapFlags::HUGE_2M
                    };
                    if rng.random_bool(0.95) {
                        n = BLOCK * rng.random_range(1..=2);
                    }
                    if rng.random_bool(0.8) {
                        start = FIRST_BLOCK + BLOCK * rng.random_range(0..3);
                    }
                }
                match mode {
                    2 | 3 => flags |= MmapFlags::FIXED,
                    4 => flags |= MmapFlags::FIXED_NOREPLACE,
                    _ => {}
                }
                let len = n * P
                    - if rng.random_bool(0.3) {
                        rng.random_range(0..P)
                    } else {
                        0
                    };
                let fixed = (2..=4).contains(&mode);
                let hint = (mode == 5 || fixed).then(|| addr(start));
                let expected = m.mmap_result(hint, len, prot, flags);
                // Under a limit only calls that allocate at map time, or split a
                // huge page of the old mapping, may fail.
                let allocates = contiguous || (populate && !prot.is_empty());
                let splits = fixed && matches!(expected, Ok(p) if m.splits(p, n));
                let limited = rng.random_bool(0.2);
                if limited {
                    let spare = if rng.random_bool(0.3) {
                        rng.random_range(500..1200)
                    } else {
                        rng.random_range(0..12)
                    };
                    testing::set_limit(Some(testing::frames_in_use() + spare));
                }
                let r = s.mmap(hint.map(va), len, prot, flags);
                testing::set_limit(None);
                if limited
                    && (allocates || splits)
                    && expected.is_ok()
                    && r == Err(AxError::NoMemory)
                {
                    pressure_failures += 1;
                } else {
                    assert_eq!(
                        r,
                        expected.map(|p| va(addr(p))),
                        "{ctx}: mmap {start} {n} {prot:?} {flags:?}"
                    );
                    if let Ok(p) = expected {
                        let frame = match s.area_at(va(addr(p))) {
                            Some(a) => match a.kind {
                                AreaKind::Contiguous { start_frame } => {
                                    Some(start_frame.as_usize() + addr(p) - a.start.as_usize())
                                }
                                _ => None,
                            },
                            None => None,
                        };
                        m.mmap(&s, p, n, prot, flags, frame, limited, ctx);
                        contiguous_maps += u64::from(contiguous);
                        huge_maps += u64::from(huge);
                    }
                }
            }
            25..=39 => {
                let len = n * P;
                let limited = rng.random_bool(0.1);
                if limited {
                    testing::set_limit(Some(testing::frames_in_use() + rng.random_range(0..2)));
                }
                let r = s.munmap(va(addr(start)), len);
                testing::set_limit(None);
                match window_pages(addr(start), len) {
                    None => assert_eq!(r, Err(AxError::InvalidInput), "{ctx}"),
                    Some((p, n)) if limited && m.splits(p, n) && r == Err(AxError::NoMemory) => {
                        pressure_failures += 1;
                    }
                    Some((p, n)) => {
                        assert_eq!(r, Ok(()), "{ctx}: munmap {p} {n}");
                        splits += u64::from(m.splits(p, n));
                        m.remove(p, n);
                    }
                }
            }
            40..=59 => {
                let len = n * P;
                let prot = PROTS[rng.random_range(0..PROTS.len())];
                let limited = rng.random_bool(0.1);
                if limited {
                    testing::set_limit(Some(testing::frames_in_use() + rng.random_range(0..2)));
                }
                let r = s.mprotect(va(addr(start)), len, prot);
                testing::set_limit(None);
                match window_pages(addr(start), len) {
                    None => assert_eq!(r, Err(AxError::InvalidInput), "{ctx}"),
                    Some((p, n)) if (p..p + n).any(|q| !m.pages.contains_key(&q)) => {
                        assert_eq!(r, Err(AxError::NoMemory), "{ctx}")
                    }
                    Some((p, n))
                        if limited
                            && m.mprotect_needs_frames(p, n, prot)
                            && r == Err(AxError::NoMemory) =>
                    {
                        pressure_failures += 1;
                    }
                    Some((p, n)) => {
                        assert_eq!(r, Ok(()), "{ctx}: mprotect {p} {n} {prot:?}");
                        splits += u64::from(m.splits(p, n));
                        m.mprotect(p, n, prot);
                    }
                }
            }
            60..=89 => {
                if rng.random_bool(0.4) {
                    start = FIRST_BLOCK + rng.random_range(0..3 * BLOCK);
                }
                // The first touch of a lazy huge page runs out of frames more
                // often, so that huge faults fall back to 4K pages.
                let first_touch = m
                    .pages
                    .get(&start)
                    .is_some_and(|q| q.kind == Kind::HugeLazy && !q.populated);
                let access = [Access::Read, Access::Write, Access::Execute][rng.random_range(0..3)];
                let offset = rng.random_range(0..P);
                let limited = rng.random_bool(if first_touch { 0.3 } else { 0.05 });
                if limited {
                    testing::set_limit(Some(testing::frames_in_use() + rng.random_range(0..3)));
                }
                let r = s.handle_page_fault(va(addr(start) + offset), access);
                testing::set_limit(None);
                match m.fault(&s, Some(start), access, r, limited, ctx) {
                    Fault::NoArea | Fault::Denied => {}
                    Fault::NoMemory => pressure_failures += 1,
                    f @ (Fault::Fresh { .. } | Fault::Spurious) => {
                        if f == Fault::Spurious {
                            stale += 1;
                        } else {
                            assert!(
                                page_is_zero(&s, addr(start)),
                                "{ctx}: fresh page not zeroed"
                            );
                            fresh += 1;
                        }
                        let page = m.pages.get_mut(&start).unwrap();
                        assert_eq!(common::read(&s, addr(start)), page.tag, "{ctx}: content");
                        page.tag = next_tag;
                        write(&s, addr(start), next_tag);
                        next_tag += 1;
                    }
                }
            }
            90..=98 => {
                if start < PAGES {
                    m.check_page(&s, start, true, ctx);
                } else {
                    assert_eq!(
                        s.translate(va(addr(start))),
                        Err(AxError::BadAddress),
                        "{ctx}"
                    );
                }
            }
            _ => {
                s.munmap(va(START), PAGES * P).unwrap();
                m.remove(0, PAGES);
                assert_eq!(s.stats().page_table_frames, 1, "{ctx}: tables reclaimed");
                assert_eq!(s.stats().areas, 0);
            }
        }
        m.check_counts(&s, ctx);
        if i % 256 == 0 {
            m.check(&s, true, ctx);
        }
    }
    m.check(&s, true, "final");
    let st = s.stats();
    assert_eq!((st.faults_handled, st.spurious_faults), (fresh, stale));
    assert!(
        fresh > ops as u64 / 100 && stale > ops as u64 / 100,
        "the sequence exercises both fault paths: {fresh} {stale}"
    );
    assert!(
        pressure_failures > ops as u64 / 1000,
        "the sequence runs out of frames sometimes: {pressure_failures}"
    );
    if ops >= 10_000 {
        assert!(
            m.huge_faults > 0
                && m.huge_fallbacks > 0
                && huge_maps > 0
                && splits > 0
                && m.huge_collapses > 0,
            "the sequence maps, splits, collapses and falls back from huge pages: \
             {} {} {huge_maps} {splits} {}",
            m.huge_faults,
            m.huge_fallbacks,
            m.huge_collapses
        );
    }
    eprintln!(
        "seed {seed}: {ops} ops, {fresh} fresh and {stale} spurious faults, \
         {pressure_failures} out-of-frames failures, {contiguous_maps} contiguous and \
         {huge_maps} huge mmaps, {} huge faults, {} huge fallbacks, {splits} huge splits, \
         {} collapses, {} areas at the end",
        m.huge_faults, m.huge_fallbacks, m.huge_collapses, st.areas
    );
    drop(s);
    testing::assert_no_leaks();
}

/// Operations per seed: `MM_FUZZ_OPS`, default 10,000.
fn ops() -> usize {
    match std::env::var("MM_FUZZ_OPS") {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("MM_FUZZ_OPS={v}: not a number")),
        Err(_) => 10_000,
    }
}

#[test]
fn random_ops_seed_1() {
    run(1, ops());
}

#[test]
fn random_ops_seed_2() {
    run(2, ops());
}

#[test]
fn random_ops_seed_3() {
    run(0xdead_beef, ops());
}

#[test]
fn random_ops_seed_4() {
    run(42, ops());
}
