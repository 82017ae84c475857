//! Seeded random operation sequences checked page by page against the reference
//! model of `common/model.rs` (shared with the libFuzzer target).
//!
//! Operations: mmap (hint, FIXED, FIXED_NOREPLACE, POPULATE, CONTIGUOUS,
//! HUGE_2M lazy and populated, now and then HUGE_1G or an invalid huge
//! combination), munmap, mprotect (short ranges that split huge pages, long
//! ones over whole blocks), page faults, translations, and any of them under a
//! frame limit (a call that needs frames must then succeed or fail with
//! `NoMemory` and change nothing; a huge fault may fall back to a 4K page).
//!
//! Memory objects: `mmap_object` (shared or private, hint/FIXED placement,
//! POPULATE, random 4K offsets, mappings reaching past the object's end, and
//! the error cases) of three objects the test holds (two anonymous, one over
//! bytes whose pager it reads back), `mmap(SHARED)` (a new anonymous object
//! each), faults on object pages (read, write; a shared page becomes
//! writable and dirty, a private one gets its copy, or the object's frame if
//! the area holds the last reference and the page was never mapped writable;
//! past the end: `PastEnd`, even under a frame limit), writes of
//! tags through writable PTEs (checked at once through every other mapping
//! of the object page), `msync` over random ranges (its count, the dirty
//! flags, and the pager's bytes), `mremap` (shrink, grow in place, MAYMOVE,
//! FIXED, and the error rows; moved pages keep their frames and flags), and
//! now and then the test lets an object go. The model tracks per object page
//! its frame, data, dirty flag and the PTEs that map it.
//!
//! The window holds 64 pages, three whole 2M blocks and 64 pages; most 4K work
//! lands in its first 132 pages (dense), huge work in the blocks. After every
//! operation the frame counts (objects' resident pages included), shared
//! frames and huge counters are checked; after every object operation the
//! area list and the held objects' pages (`maps`, `wmaps`, dirty, frame);
//! every 256 operations every page (translation, leaf size, object frame,
//! data), the leaf count and the exact area list the model predicts are
//! compared. At the end the space and the objects are dropped: no frame may
//! leak.
//!
//! Two regression tests below pin mm bugs the model found (both fixed):
//! `mremap_fixed_grow_over_the_areas_head` and
//! `a_taken_page_mapped_again_shows_the_objects_last_data`.
//!
//! `MM_FUZZ_OPS=<n>` sets the operations per seed (default 10,000);
//! `make fuzz` runs 1,000,000 per seed in release.

mod common;

use axerrno::AxError;
use common::model::{
    BLOCK, FIRST_BLOCK, Fault, Kind, Model, Objects, Omap, P, PAGES, PROTS, Remap, START, addr,
    window_pages,
};
use common::{Space, page_is_zero, va};
use hal::Access;
use mm::{AreaKind, MemObject, MmapFlags, MsyncFlags, Prot, RemapFlags};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use testing::TrackingHandler;

/// Pages at the start of the window where most 4K work happens.
const DENSE: usize = 132;

type Obj = MemObject<TrackingHandler>;

/// What the run did, for its summary and its coverage checks.
#[derive(Default)]
struct Counts {
    fresh: u64,
    stale: u64,
    object_faults: u64,
    past_end: u64,
    pressure_failures: u64,
    object_maps: u64,
    shared_anon_maps: u64,
    msyncs: u64,
    remaps: [u64; 4],
    remap_errors: u64,
}

/// The area (per the model) of a page picked at random, often an object's:
/// (first page, end page).
fn pick_area(m: &Model, rng: &mut SmallRng) -> Option<(usize, usize)> {
    let from = rng.random_range(0..PAGES);
    let object = rng.random_bool(0.6);
    let p = m
        .pages
        .range(from..)
        .chain(m.pages.range(..from))
        .find(|(_, q)| !object || matches!(q.kind, Kind::Object { .. }))
        .map(|(&p, _)| p)?;
    m.area_of(p)
}

/// A page fault at page `start` checked against the model; a successful one
/// is followed by a check of the page's data and a write of a new tag
/// (through a writable PTE only, for object pages).
#[allow(clippy::too_many_arguments)]
fn fault(
    s: &Space,
    m: &mut Model,
    start: usize,
    access: Access,
    offset: usize,
    spare: Option<usize>,
    next_tag: &mut u64,
    c: &mut Counts,
    ctx: &str,
) {
    let limited = spare.is_some();
    if let Some(spare) = spare {
        testing::set_limit(Some(testing::frames_in_use() + spare));
    }
    let r = s.handle_page_fault(va(addr(start) + offset), access);
    testing::set_limit(None);
    match m.fault(s, Some(start), access, r, limited, ctx) {
        Fault::NoArea | Fault::Denied => {}
        Fault::PastEnd => c.past_end += 1,
        Fault::NoMemory => c.pressure_failures += 1,
        f @ (Fault::Fresh { .. } | Fault::Spurious | Fault::Mapped) => {
            match f {
                Fault::Spurious => c.stale += 1,
                Fault::Mapped => {
                    c.fresh += 1;
                    c.object_faults += 1;
                }
                _ => {
                    assert!(page_is_zero(s, addr(start)), "{ctx}: fresh page not zeroed");
                    c.fresh += 1;
                }
            }
            assert_eq!(
                common::read(s, addr(start)),
                m.data(start),
                "{ctx}: content"
            );
            if m.write(s, start, *next_tag) {
                *next_tag += 1;
            }
        }
    }
}

fn run(seed: u64, ops: usize) {
    testing::reset();
    let mut s = Space::new(va(START), PAGES * P).unwrap();
    let mut m = Model::new();
    let mut objects = Objects::<TrackingHandler>::new(&mut m);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut next_tag = 1u64;
    let mut c = Counts::default();
    let (mut contiguous_maps, mut huge_maps, mut splits) = (0u64, 0u64, 0u64);
    for i in 0..ops {
        if i % 256 == 0 {
            m.check(&s, true, &format!("seed {seed} before op {i}"));
            objects.check(&mut m, "full check");
        }
        let op = rng.random_range(0..131);
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
                    c.pressure_failures += 1;
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
                        c.pressure_failures += 1;
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
                        c.pressure_failures += 1;
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
                // (A first touch gets a spare frame or more, so that it can
                // fall back to a 4K page.)
                let spare = limited.then(|| rng.random_range(usize::from(first_touch)..3));
                fault(
                    &s,
                    &mut m,
                    start,
                    access,
                    offset,
                    spare,
                    &mut next_tag,
                    &mut c,
                    ctx,
                );
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
            99 => {
                s.munmap(va(START), PAGES * P).unwrap();
                m.remove(0, PAGES);
                assert_eq!(s.stats().page_table_frames, 1, "{ctx}: tables reclaimed");
                assert_eq!(s.stats().areas, 0);
                assert_eq!(s.stats().shared_frames, 0);
            }
            100..=107 => {
                // mmap_object of one of the test's objects, or mmap(SHARED);
                // writable half of the time, so that shared pages get dirty.
                let prot = if rng.random_bool(0.5) {
                    Prot::READ | Prot::WRITE
                } else {
                    PROTS[rng.random_range(0..PROTS.len())]
                };
                let mode = rng.random_range(0..6);
                // Mostly in the dense 4K part, so that huge work in the blocks
                // goes on.
                if rng.random_bool(0.8) {
                    start = rng.random_range(0..DENSE);
                }
                let anon = rng.random_bool(0.25);
                let (o, obj) = &objects.objs[rng.random_range(0..3)];
                let npages = m.objects[o].pages.len();
                if rng.random_bool(0.2) {
                    n = rng.random_range(1..=npages + 4);
                }
                let mut offset = rng.random_range(0..npages + 3) * P;
                let mut flags = if rng.random_bool(0.5) {
                    MmapFlags::SHARED
                } else {
                    MmapFlags::PRIVATE
                };
                if anon {
                    flags = MmapFlags::SHARED;
                }
                if mode == 1 || mode == 3 {
                    flags |= MmapFlags::POPULATE;
                }
                match mode {
                    2 | 3 => flags |= MmapFlags::FIXED,
                    4 => flags |= MmapFlags::FIXED_NOREPLACE,
                    _ => {}
                }
                // Error cases now and then.
                match rng.random_range(0..50) {
                    0 => offset += rng.random_range(1..P),
                    1 => offset = usize::MAX & !(P - 1),
                    2 => flags |= MmapFlags::SHARED | MmapFlags::PRIVATE,
                    3 => flags -= MmapFlags::SHARED | MmapFlags::PRIVATE,
                    4 => flags |= MmapFlags::CONTIGUOUS,
                    5 => {
                        flags |= MmapFlags::HUGE_2M;
                        n = BLOCK;
                        start = FIRST_BLOCK + BLOCK * rng.random_range(0..3);
                    }
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
                let expected = if anon {
                    m.mmap_result(hint, len, prot, flags)
                } else {
                    m.mmap_object_result(hint, len, prot, flags, offset)
                };
                // Under a limit only a FIXED mapping that splits a huge page
                // of the old mapping may fail (object pages come on faults;
                // POPULATE is best effort).
                let splits = fixed && matches!(expected, Ok(p) if m.splits(p, n));
                // (An error case above may have made the anonymous mapping
                // private: then it allocates as a plain mmap does.)
                let allocates = anon
                    && !flags.contains(MmapFlags::SHARED)
                    && (flags.contains(MmapFlags::CONTIGUOUS)
                        || (flags.contains(MmapFlags::POPULATE) && !prot.is_empty()));
                let limited = rng.random_bool(0.2);
                if limited {
                    testing::set_limit(Some(testing::frames_in_use() + rng.random_range(0..12)));
                }
                let r = if anon {
                    s.mmap(hint.map(va), len, prot, flags)
                } else {
                    s.mmap_object(hint.map(va), len, prot, flags, obj, offset)
                };
                testing::set_limit(None);
                if limited && (splits || allocates) && r == Err(AxError::NoMemory) {
                    c.pressure_failures += 1;
                } else {
                    assert_eq!(
                        r,
                        expected.map(|p| va(addr(p))),
                        "{ctx}: mmap_object {start} {n} {prot:?} {flags:?} {offset:#x} anon {anon}"
                    );
                    if let Ok(p) = expected {
                        if anon {
                            let frame = s.area_at(va(addr(p))).and_then(|a| match a.kind {
                                AreaKind::Contiguous { start_frame } => {
                                    Some(start_frame.as_usize() + addr(p) - a.start.as_usize())
                                }
                                _ => None,
                            });
                            m.mmap(&s, p, n, prot, flags, frame, limited, ctx);
                            c.shared_anon_maps += 1;
                        } else {
                            m.mmap_object(&s, p, n, prot, flags, *o, offset / P, limited, ctx);
                            c.object_maps += 1;
                        }
                        m.check(&s, false, ctx);
                    }
                }
                objects.check(&mut m, ctx);
            }
            108..=111 => {
                if rng.random_bool(0.7)
                    && let Some((a, b)) = pick_area(&m, &mut rng)
                {
                    start = rng.random_range(a..b);
                    n = rng.random_range(1..=b - start);
                }
                let mut a = addr(start);
                let mut len = n * P;
                match rng.random_range(0..40) {
                    0 => a += rng.random_range(1..P),
                    1 => len = 0,
                    2 => len -= rng.random_range(0..P),
                    _ => {}
                }
                // MS_SYNC mostly; the other valid sets, and now and then a
                // bad one (ASYNC with SYNC, an unknown bit). Picked by the
                // op's index, not drawn: the sequence of the other ops (and
                // what the seeds are known to cover) stays as it was.
                let flags = match i % 20 {
                    0 => 0,
                    1 => 1,
                    2 => 2,
                    3 => 3,
                    4 => 6,
                    5 => 5,
                    6 => 1 << (3 + i / 20 % 29),
                    _ => 4,
                };
                let expected = m.msync(a, len, flags);
                let r = s.msync(va(a), len, MsyncFlags::from_bits_retain(flags));
                assert_eq!(r, expected, "{ctx}: msync {a:#x} {len:#x} {flags:#x}");
                c.msyncs += u64::from(r.is_ok());
                objects.check(&mut m, ctx);
            }
            112..=118 => {
                if rng.random_bool(0.7)
                    && let Some((a, b)) = pick_area(&m, &mut rng)
                {
                    // Often a range that ends the area (it may grow in place).
                    start = rng.random_range(a..b);
                    n = if rng.random_bool(0.5) {
                        b - start
                    } else {
                        rng.random_range(1..=b - start)
                    };
                }
                let mut old_addr = addr(start);
                let mut old_len = n * P;
                let mut new_n = match rng.random_range(0..4) {
                    0 => n,
                    1 => rng.random_range(1..=n),
                    _ => rng.random_range(1..=12),
                };
                let mut flags = match rng.random_range(0..10) {
                    0..=2 => RemapFlags::empty(),
                    3..=6 => RemapFlags::MAYMOVE,
                    _ => RemapFlags::MAYMOVE | RemapFlags::FIXED,
                };
                let mut new_addr = Some(addr(if rng.random_bool(0.85) {
                    rng.random_range(0..DENSE)
                } else {
                    rng.random_range(0..PAGES)
                }));
                match rng.random_range(0..60) {
                    0 => old_addr += rng.random_range(1..P),
                    1 => old_len = 0,
                    2 => new_n = 0,
                    3 => flags = RemapFlags::FIXED,
                    4 => new_addr = None,
                    5 => new_addr = new_addr.map(|a| a + 8),
                    6 => old_len -= rng.random_range(0..P),
                    _ => {}
                }
                let new_len = new_n * P;
                let Some(plan) = m.mremap_result(old_addr, old_len, new_len, flags, new_addr)
                else {
                    // An old range in a huge area: not modelled.
                    continue;
                };
                let limited = rng.random_bool(0.15);
                let before: Vec<_> = match plan {
                    Ok(plan) => {
                        let (p, n, new_n, _) = plan.parts();
                        (p..p + n.min(new_n))
                            .map(|q| s.translate(va(addr(q))).ok())
                            .collect()
                    }
                    Err(_) => Vec::new(),
                };
                if limited {
                    testing::set_limit(Some(testing::frames_in_use() + rng.random_range(0..4)));
                }
                let r = s.mremap(va(old_addr), old_len, new_len, flags, new_addr.map(va));
                testing::set_limit(None);
                let what = format!(
                    "{ctx}: mremap {old_addr:#x} {old_len:#x} {new_len:#x} {flags:?} {new_addr:x?}: {plan:?}"
                );
                match plan {
                    Err(e) => {
                        assert_eq!(r, Err(e), "{what}");
                        c.remap_errors += 1;
                    }
                    Ok(plan)
                        if limited && m.remap_needs_frames(plan) && r == Err(AxError::NoMemory) =>
                    {
                        c.pressure_failures += 1;
                        m.mremap_no_memory(&s, plan, &what);
                    }
                    Ok(plan) => {
                        let (_, _, _, to) = plan.parts();
                        assert_eq!(r, Ok(va(addr(to))), "{what}");
                        m.mremap(plan);
                        // Moved pages keep their frames (and flags).
                        for (k, t) in before.iter().enumerate() {
                            assert_eq!(
                                s.translate(va(addr(to + k))).ok(),
                                *t,
                                "{what}: page {k} of the moved range"
                            );
                        }
                        c.remaps[match plan {
                            Remap::Shrink { .. } => 0,
                            Remap::Grow { .. } => 1,
                            Remap::Move { .. } => 2,
                            Remap::Fixed { .. } => 3,
                        }] += 1;
                    }
                }
                m.check(&s, false, &what);
                objects.check(&mut m, ctx);
            }
            130 => {
                // The test lets one of its objects go (areas keep it alive)
                // and maps a new one from now on.
                objects.replace(&mut m, rng.random_range(0..3));
                m.check_counts(&s, ctx);
                objects.check(&mut m, ctx);
            }
            _ => {
                // A fault on an object page (mapped, copied, past the end or not).
                // Mostly one where the fault has work to do (not copied, not
                // mapped writable, accessible).
                let from = rng.random_range(0..PAGES);
                let work = rng.random_bool(0.7);
                let found = m
                    .pages
                    .range(from..)
                    .chain(m.pages.range(..from))
                    .find(|(_, q)| {
                        matches!(q.kind, Kind::Object { .. })
                            && (!work || (!q.populated && q.omap != Omap::Rw && !q.prot.is_empty()))
                    })
                    .map(|(&p, _)| p);
                let Some(p) = found else { continue };
                let access = [Access::Read, Access::Write, Access::Write, Access::Execute]
                    [rng.random_range(0..4)];
                // And the same page again now and then (a read, then a write).
                let again = rng.random_bool(0.3);
                let spare = rng.random_bool(0.1).then(|| rng.random_range(0..3));
                fault(
                    &s,
                    &mut m,
                    p,
                    access,
                    rng.random_range(0..P),
                    spare,
                    &mut next_tag,
                    &mut c,
                    ctx,
                );
                if again {
                    fault(
                        &s,
                        &mut m,
                        p,
                        Access::Write,
                        0,
                        None,
                        &mut next_tag,
                        &mut c,
                        ctx,
                    );
                }
                objects.check(&mut m, ctx);
            }
        }
        m.check_counts(&s, ctx);
    }
    m.check(&s, true, "final");
    objects.check(&mut m, "final");
    let st = s.stats();
    let Counts {
        fresh,
        stale,
        object_faults,
        past_end,
        pressure_failures,
        object_maps,
        shared_anon_maps,
        msyncs,
        remaps,
        remap_errors,
    } = c;
    assert_eq!(
        (st.faults_handled, st.spurious_faults),
        (fresh + m.prefaults, stale)
    );
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
        assert!(
            object_maps > 0
                && shared_anon_maps > 0
                && object_faults > 0
                && past_end > 0
                && m.copies > 0
                && m.prefaults > 0
                && m.synced > 0
                && remaps.iter().all(|&r| r > 0)
                && remap_errors > 0,
            "the sequence maps objects, faults them in, copies on write, runs past \
             their ends, writes them back and remaps: {object_maps} {shared_anon_maps} \
             {object_faults} {past_end} {} {} {} {remaps:?} {remap_errors}",
            m.copies,
            m.prefaults,
            m.synced
        );
    }
    eprintln!(
        "seed {seed}: {ops} ops, {fresh} fresh and {stale} spurious faults, \
         {pressure_failures} out-of-frames failures, {contiguous_maps} contiguous and \
         {huge_maps} huge mmaps, {} huge faults, {} huge fallbacks, {splits} huge splits, \
         {} collapses; {object_maps} object and {shared_anon_maps} shared anonymous mmaps, \
         {object_faults} object faults ({} prefaults), {} private copies, {} pages made \
         resident, {past_end} faults past the end, {msyncs} msyncs writing {} pages, \
         mremaps (shrink, grow, move, fixed) {remaps:?} and {remap_errors} refused, \
         {} private pages that took the object's frame and {} that copied it (written \
         before); {} areas at the end",
        m.huge_faults,
        m.huge_fallbacks,
        m.huge_collapses,
        m.prefaults,
        m.copies,
        m.residents,
        m.synced,
        m.taken,
        m.written_copies,
        st.areas
    );
    drop(s);
    // Every mapping of the objects went with the space.
    objects.check_unmapped(&m);
    drop(objects);
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

/// Regression test of an mm bug the model found (seeds 2 and 42):
/// `mremap(MAYMOVE | FIXED)` growing an object mapping whose destination
/// overlaps the head of the old range's own area. `move_fixed` clears the
/// destination first, which splits that area (it now starts at the
/// destination's end); the tail's first object page must come from the area
/// as it is then (`grow_at` looks it up itself), not from the start looked
/// up before, or the tail maps the wrong object pages (13 and 14 instead of
/// 8 and 9) and does not merge with the moved page.
#[test]
fn mremap_fixed_grow_over_the_areas_head() {
    testing::reset();
    let mut s = Space::new(va(START), PAGES * P).unwrap();
    let obj = Obj::anonymous(32 * P).unwrap();
    let rw = mm::Prot::READ | mm::Prot::WRITE;
    let a = s
        .mmap_object(None, 8 * P, rw, MmapFlags::SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    // Page 7 (object page 7) goes to a + 2P, growing to 3 pages: object
    // pages 7, 8, 9 there. The destination [a + 2P, a + 5P) cuts the area
    // [a, a + 8P) but not the old range [a + 7P, a + 8P).
    let r = s.mremap(
        va(a + 7 * P),
        P,
        3 * P,
        RemapFlags::MAYMOVE | RemapFlags::FIXED,
        Some(va(a + 2 * P)),
    );
    assert_eq!(r, Ok(va(a + 2 * P)));
    let areas: Vec<_> = s
        .areas()
        .map(|x| (x.start.as_usize() - a, x.end.as_usize() - a, x.kind))
        .collect();
    let object = |offset| AreaKind::Object {
        shared: true,
        offset,
    };
    assert_eq!(
        areas,
        [
            (0, 2 * P, object(0)),
            (2 * P, 5 * P, object(7 * P)),
            (5 * P, 7 * P, object(5 * P)),
        ]
    );
    drop(s);
    drop(obj);
    testing::assert_no_leaks();
}

/// Regression test of an mm bug the model found: a private page's first
/// write may *take* the object's frame when the area holds the only
/// reference to the object (`MemObject::take_sole`), and the object then
/// forgets the page. The same area can map that object page again (shrink
/// it off with `mremap`, grow back in place), and the object reads it from
/// its pager. So a page that was ever mapped writable (here written through
/// a shared mapping, never synced; an `AnonPager` keeps nothing even after a
/// sync) must be copied, not taken, or that write is lost.
#[test]
fn a_taken_page_mapped_again_shows_the_objects_last_data() {
    testing::reset();
    let mut s = Space::new(va(START), PAGES * P).unwrap();
    let obj = Obj::anonymous(2 * P).unwrap();
    let rw = Prot::READ | Prot::WRITE;
    // A shared write to object page 1, never synced.
    let a = s
        .mmap_object(None, 2 * P, rw, MmapFlags::SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    s.handle_page_fault(va(a + P), Access::Write).unwrap();
    common::write(&s, a + P, 0x5eed);
    s.munmap(va(a), 2 * P).unwrap();
    // A private mapping holds the last reference; a read, then a write of
    // page 1: copied (the page was written before), not taken.
    let b = s
        .mmap_object(None, 2 * P, rw, MmapFlags::PRIVATE, &obj, 0)
        .unwrap()
        .as_usize();
    drop(obj);
    s.handle_page_fault(va(b + P), Access::Read).unwrap();
    assert_eq!(common::read(&s, b + P), 0x5eed);
    s.handle_page_fault(va(b + P), Access::Write).unwrap();
    assert_eq!(
        s.stats().shared_frames,
        0,
        "the private copy replaced the PTE"
    );
    assert_eq!(s.stats().data_frames, 1, "the private copy");
    assert_eq!(common::read(&s, b + P), 0x5eed, "the copy's data");
    // Shrink page 1 off, grow it back: object page 1 again.
    s.mremap(va(b), 2 * P, P, RemapFlags::empty(), None)
        .unwrap();
    s.mremap(va(b), P, 2 * P, RemapFlags::empty(), None)
        .unwrap();
    s.handle_page_fault(va(b + P), Access::Read).unwrap();
    assert_eq!(common::read(&s, b + P), 0x5eed, "the object's last data");
    drop(s);
    testing::assert_no_leaks();
}
