//! Seeded random operation sequences checked page by page against a reference model.
//!
//! Operations: mmap (hint, FIXED, FIXED_NOREPLACE, POPULATE, CONTIGUOUS), munmap,
//! mprotect, page faults, translations, and any of the populating ones under a
//! frame limit (each must then succeed or fail with `NoMemory` and change
//! nothing). After every operation the frame counts are checked; every 256
//! operations every page, and the exact area list the model predicts (areas are
//! maximally merged), are compared.
//!
//! `MM_FUZZ_OPS=<n>` sets the operations per seed (default 10,000);
//! `make fuzz` runs 1,000,000 per seed in release.

mod common;

use std::collections::BTreeMap;

use axerrno::AxError;
use common::*;
use hal::Access;
use mm::{AreaKind, FaultError, MappingFlags, MmapFlags, Populate, Prot};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Pages in the window; the window straddles a leaf-table boundary.
const PAGES: usize = 128;
const START: usize = WIN + 0x20_0000 - 64 * PAGE;

/// What backs a page (the kind of its area).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Lazy,
    Eager,
    /// Contiguous, with the physical frame of this page.
    Contig(usize),
}

#[derive(Debug, Clone, Copy)]
struct Page {
    prot: Prot,
    kind: Kind,
    populated: bool,
    /// The u64 expected at offset 0 of the frame (0 for a fresh zeroed frame).
    tag: u64,
}

struct Model {
    pages: BTreeMap<usize, Page>,
}

const PROTS: [Prot; 5] = [
    Prot::empty(),
    Prot::READ,
    Prot::READ.union(Prot::WRITE),
    Prot::READ.union(Prot::EXEC),
    Prot::all(),
];

fn addr(page: usize) -> usize {
    START + page * PAGE
}

fn allows(prot: Prot, access: Access) -> bool {
    match access {
        Access::Read => prot.contains(Prot::READ),
        Access::Write => prot.contains(Prot::WRITE),
        Access::Execute => prot.contains(Prot::EXEC),
    }
}

impl Model {
    fn free(&self, start: usize, n: usize) -> bool {
        self.pages.range(start..start + n).next().is_none()
    }

    fn lowest_free(&self, n: usize) -> Option<usize> {
        (0..=PAGES.checked_sub(n)?).find(|&p| self.free(p, n))
    }

    fn populated(&self) -> usize {
        self.pages.values().filter(|p| p.populated).count()
    }

    fn remove(&mut self, start: usize, n: usize) {
        for p in start..start + n {
            self.pages.remove(&p);
        }
    }
}

fn mapping_flags(prot: Prot) -> MappingFlags {
    prot.to_mapping_flags().unwrap()
}

/// Whether page `q` merges into the area of page `p = q - 1`.
fn mergeable(p: &Page, q: &Page) -> bool {
    p.prot == q.prot
        && match (p.kind, q.kind) {
            (Kind::Contig(a), Kind::Contig(b)) => a + PAGE == b,
            (a, b) => a == b,
        }
}

/// The area list the model predicts: maximal runs of mergeable pages.
fn expected_areas(m: &Model) -> Vec<(usize, usize, MappingFlags, AreaKind)> {
    let mut out: Vec<(usize, usize, MappingFlags, AreaKind)> = Vec::new();
    let mut prev: Option<(usize, Page)> = None;
    for (&n, p) in &m.pages {
        match prev {
            Some((pn, pp)) if pn + 1 == n && mergeable(&pp, p) => {
                out.last_mut().unwrap().1 = addr(n + 1);
            }
            _ => out.push((
                addr(n),
                addr(n + 1),
                mapping_flags(p.prot),
                match p.kind {
                    Kind::Lazy => AreaKind::Alloc {
                        populate: Populate::Lazy,
                    },
                    Kind::Eager => AreaKind::Alloc {
                        populate: Populate::Eager,
                    },
                    Kind::Contig(f) => AreaKind::Contiguous {
                        start_frame: f.into(),
                    },
                },
            )),
        }
        prev = Some((n, *p));
    }
    out
}

fn check_areas(s: &Space, m: &Model, ctx: &str) {
    let got: Vec<_> = s
        .areas()
        .map(|a| (a.start.as_usize(), a.end.as_usize(), a.flags, a.kind))
        .collect();
    assert_eq!(got, expected_areas(m), "{ctx}: area list");
}

fn check_page(s: &Space, m: &Model, page: usize, ctx: &str) {
    let t = s.translate(va(addr(page)));
    match m.pages.get(&page) {
        Some(p) if p.populated && !p.prot.is_empty() => {
            let t = t.unwrap_or_else(|e| panic!("{ctx}: page {page} should be mapped: {e:?}"));
            if let Kind::Contig(frame) = p.kind {
                assert_eq!(t.paddr.as_usize(), frame, "{ctx}: frame of page {page}");
            }
            assert!(t.flags.contains(MappingFlags::READ), "{ctx}");
            assert_eq!(
                t.flags.contains(MappingFlags::WRITE),
                p.prot.contains(Prot::WRITE),
                "{ctx}: page {page}"
            );
            assert_eq!(
                t.flags.contains(MappingFlags::EXECUTE),
                p.prot.contains(Prot::EXEC),
                "{ctx}: page {page}"
            );
            assert_eq!(read(s, addr(page)), p.tag, "{ctx}: content of page {page}");
        }
        _ => assert_eq!(
            t,
            Err(AxError::BadAddress),
            "{ctx}: page {page} should be unmapped"
        ),
    }
}

fn check_counts(s: &Space, m: &Model, ctx: &str) {
    let st = s.stats();
    assert_eq!(st.data_frames, m.populated(), "{ctx}: data frames");
    assert_eq!(
        testing::frames_in_use(),
        st.data_frames + st.page_table_frames,
        "{ctx}: frames in use"
    );
}

fn run(seed: u64, ops: usize) {
    testing::reset();
    let mut s = Space::new(va(START), PAGES * PAGE).unwrap();
    let mut m = Model {
        pages: BTreeMap::new(),
    };
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut next_tag = 1u64;
    let (mut fresh, mut stale) = (0u64, 0u64);
    let mut pressure_failures = 0u64;
    let mut contiguous_maps = 0u64;
    for i in 0..ops {
        let op = rng.random_range(0..100);
        let start = rng.random_range(0..PAGES + 4);
        let n = rng.random_range(1..=10usize);
        let len = n * PAGE
            - if rng.random_bool(0.3) {
                rng.random_range(0..PAGE)
            } else {
                0
            };
        let ctx = format!("seed {seed} op {i}");
        let ctx = ctx.as_str();
        match op {
            0..=24 => {
                let prot = PROTS[rng.random_range(0..PROTS.len())];
                let mode = rng.random_range(0..6);
                let contiguous = rng.random_bool(0.15);
                let populate = mode == 1 || mode == 3;
                let mut flags = if populate {
                    MmapFlags::POPULATE
                } else {
                    MmapFlags::empty()
                };
                if contiguous {
                    flags |= MmapFlags::CONTIGUOUS;
                }
                match mode {
                    2 | 3 => flags |= MmapFlags::FIXED,
                    4 => flags |= MmapFlags::FIXED_NOREPLACE,
                    _ => {}
                }
                // Under memory pressure only calls that allocate at map time can fail.
                let allocates = contiguous || (populate && !prot.is_empty());
                let limited = allocates && rng.random_bool(0.2);
                if limited {
                    testing::set_limit(Some(testing::frames_in_use() + rng.random_range(0..12)));
                }
                let hint = (mode == 5 || mode >= 2).then(|| va(addr(start)));
                let r = s.mmap(hint, len, prot, flags);
                testing::set_limit(None);
                let fixed = (2..=4).contains(&mode);
                let expected = if fixed {
                    if start + n > PAGES {
                        Err(AxError::InvalidInput)
                    } else if mode == 4 && !m.free(start, n) {
                        Err(AxError::AlreadyExists)
                    } else {
                        Ok(start)
                    }
                } else if mode == 5 && start + n <= PAGES && m.free(start, n) {
                    Ok(start)
                } else {
                    m.lowest_free(n).ok_or(AxError::NoMemory)
                };
                if limited && expected.is_ok() && r == Err(AxError::NoMemory) {
                    pressure_failures += 1;
                } else {
                    assert_eq!(
                        r,
                        expected.map(|p| va(addr(p))),
                        "{ctx}: mmap {start} {n} {prot:?} {flags:?}"
                    );
                    if let Ok(p) = expected {
                        m.remove(p, n);
                        let first_frame = match s.area_at(va(addr(p))).map(|a| a.kind) {
                            Some(AreaKind::Contiguous { start_frame }) if contiguous => Some(
                                start_frame.as_usize()
                                    + (addr(p) - s.area_at(va(addr(p))).unwrap().start.as_usize()),
                            ),
                            _ => None,
                        };
                        assert_eq!(first_frame.is_some(), contiguous, "{ctx}: contiguous area");
                        contiguous_maps += u64::from(contiguous);
                        let populated = populate && !prot.is_empty();
                        for q in p..p + n {
                            let kind = match first_frame {
                                Some(f) => Kind::Contig(f + (q - p) * PAGE),
                                None if populated => Kind::Eager,
                                None => Kind::Lazy,
                            };
                            m.pages.insert(
                                q,
                                Page {
                                    prot,
                                    kind,
                                    populated: populated || contiguous,
                                    tag: 0,
                                },
                            );
                        }
                    }
                }
            }
            25..=39 => {
                let r = s.munmap(va(addr(start)), len);
                if start + n > PAGES {
                    assert_eq!(r, Err(AxError::InvalidInput), "{ctx}");
                } else {
                    assert_eq!(r, Ok(()), "{ctx}");
                    m.remove(start, n);
                }
            }
            40..=59 => {
                let prot = PROTS[rng.random_range(0..PROTS.len())];
                let r = s.mprotect(va(addr(start)), len, prot);
                if start + n > PAGES {
                    assert_eq!(r, Err(AxError::InvalidInput), "{ctx}");
                } else if (start..start + n).any(|p| !m.pages.contains_key(&p)) {
                    assert_eq!(r, Err(AxError::NoMemory), "{ctx}");
                } else {
                    assert_eq!(r, Ok(()), "{ctx}");
                    for p in start..start + n {
                        m.pages.get_mut(&p).unwrap().prot = prot;
                    }
                }
            }
            60..=89 => {
                let access = [Access::Read, Access::Write, Access::Execute][rng.random_range(0..3)];
                let offset = rng.random_range(0..PAGE);
                let limited = rng.random_bool(0.05);
                if limited {
                    testing::set_limit(Some(testing::frames_in_use() + rng.random_range(0..3)));
                }
                let r = s.handle_page_fault(va(addr(start) + offset), access);
                testing::set_limit(None);
                if limited && matches!(r, Err(FaultError::NoMemory { .. })) {
                    let p = m.pages[&start];
                    assert!(!p.populated && allows(p.prot, access), "{ctx}: {r:?}");
                    pressure_failures += 1;
                    check_counts(&s, &m, ctx);
                    continue;
                }
                match m.pages.get_mut(&start) {
                    None => assert_eq!(r, Err(FaultError::NoArea), "{ctx}"),
                    Some(p) if !allows(p.prot, access) => {
                        assert!(matches!(r, Err(FaultError::Denied { .. })), "{ctx}: {r:?}");
                        let area = r.unwrap_err().area().copied().unwrap();
                        assert!(
                            area.start.as_usize() <= addr(start)
                                && addr(start) < area.end.as_usize()
                        );
                    }
                    Some(p) => {
                        assert_eq!(r, Ok(()), "{ctx}: touch {start} {access}");
                        if !p.populated {
                            assert!(
                                page_is_zero(&s, addr(start)),
                                "{ctx}: fresh page not zeroed"
                            );
                            p.populated = true;
                            fresh += 1;
                        } else {
                            stale += 1;
                        }
                        assert_eq!(read(&s, addr(start)), p.tag, "{ctx}: content");
                        p.tag = next_tag;
                        write(&s, addr(start), next_tag);
                        next_tag += 1;
                    }
                }
            }
            90..=98 => {
                if start < PAGES {
                    check_page(&s, &m, start, ctx);
                } else {
                    assert_eq!(
                        s.translate(va(addr(start))),
                        Err(AxError::BadAddress),
                        "{ctx}"
                    );
                }
            }
            _ => {
                s.munmap(va(START), PAGES * PAGE).unwrap();
                m.pages.clear();
                assert_eq!(s.stats().page_table_frames, 1, "{ctx}: tables reclaimed");
                assert_eq!(s.stats().areas, 0);
            }
        }
        check_counts(&s, &m, ctx);
        if i % 256 == 0 {
            for p in 0..PAGES {
                check_page(&s, &m, p, ctx);
            }
            check_areas(&s, &m, ctx);
        }
    }
    for p in 0..PAGES {
        check_page(&s, &m, p, "final");
    }
    check_areas(&s, &m, "final");
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
    eprintln!(
        "seed {seed}: {ops} ops, {fresh} fresh and {stale} spurious faults, \
         {pressure_failures} out-of-frames failures, {contiguous_maps} contiguous mmaps, \
         {} areas at the end",
        st.areas
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
