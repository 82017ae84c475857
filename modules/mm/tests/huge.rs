//! Huge pages: HUGE_2M/HUGE_1G areas (populate, lazy faults, 4K fallback),
//! splits by partial munmap/mprotect (data, physical addresses and frame
//! ownership of the rest unchanged), huge linear app areas (map_phys),
//! out-of-frames rollback, bad input.

mod common;

use axerrno::AxError;
use common::*;
use hal::Access;
use memory_addr::{PhysAddr, VirtAddr};
use mm::{AddrSpace, AreaKind, LeafSize, MappingFlags, MmapFlags, PagingHandler, Populate, Prot};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::x86_64::X64PagingMetaData;
use testing::TrackingHandler;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const M2: usize = 0x20_0000;
const H2: MmapFlags = MmapFlags::HUGE_2M;
const H1G: MmapFlags = MmapFlags::HUGE_1G;
const POP: MmapFlags = MmapFlags::POPULATE;
const FIX: MmapFlags = MmapFlags::FIXED;

/// Physical address and page size of every 4K page of `[start, start + len)`.
fn layout(s: &Space, start: usize, len: usize) -> Vec<Option<(usize, LeafSize)>> {
    (start..start + len)
        .step_by(PAGE)
        .map(|a| {
            s.translate(va(a))
                .ok()
                .map(|t| (t.paddr.as_usize(), t.page_size))
        })
        .collect()
}

/// Writes a distinct word into every page of the range.
fn stamp(s: &Space, start: usize, len: usize) {
    for a in (start..start + len).step_by(PAGE) {
        write(s, a + 8, a as u64 ^ 0x5a5a);
    }
}

fn stamped(s: &Space, a: usize) -> bool {
    read(s, a + 8) == a as u64 ^ 0x5a5a
}

#[test]
fn populate_maps_aligned_huge_frames() {
    let mut s = space();
    let tables = testing::frames_in_use();
    let a = s.mmap(None, 2 * M2, RW, H2 | POP).unwrap().as_usize();
    assert_eq!(a % M2, 0, "placed at a 2M-aligned address");
    for off in [0, PAGE, M2 - PAGE, M2, 2 * M2 - PAGE] {
        let t = s.translate(va(a + off)).unwrap();
        assert_eq!(t.page_size, LeafSize::Size2M);
        assert_eq!((t.paddr.as_usize() - off % M2) % M2, 0, "aligned frame");
        assert!(page_is_zero(&s, a + off));
    }
    let st = s.stats();
    assert_eq!(st.data_frames, 1024);
    assert_eq!((st.huge_faults, st.huge_fallbacks), (0, 0));
    // Root, PDPT, PD: no leaf tables for 2M pages.
    assert_eq!(st.page_table_frames, 3);
    assert_eq!(testing::frames_in_use(), tables + 1024 + 2);
    let area = s.area_at(va(a)).unwrap();
    assert_eq!(
        area.kind,
        AreaKind::HugeAlloc {
            populate: Populate::Eager,
            page_size: LeafSize::Size2M
        }
    );
    assert!(area.to_string().ends_with("rw- alloc(eager, 2M)"), "{area}");
    s.munmap(va(a), 2 * M2).unwrap();
    assert_eq!(testing::frames_in_use(), tables);
    assert_eq!(s.stats().page_table_frames, 1);
    finish(s);
}

#[test]
fn lazy_fault_maps_a_whole_huge_page() {
    let mut s = space();
    let a = s.mmap(None, 4 * M2, RW, H2).unwrap().as_usize();
    assert!(
        s.area_at(va(a))
            .unwrap()
            .to_string()
            .ends_with("alloc(lazy, 2M)")
    );
    assert_eq!(s.stats().data_frames, 0);
    s.handle_page_fault(va(a + M2 + 0x1234), Access::Write)
        .unwrap();
    let st = s.stats();
    assert_eq!(
        (st.faults_handled, st.huge_faults, st.data_frames),
        (1, 1, 512)
    );
    let t = s.translate(va(a + M2)).unwrap();
    assert_eq!(t.page_size, LeafSize::Size2M);
    assert_eq!(t.paddr.as_usize() % M2, 0);
    assert!(page_is_zero(&s, a + M2) && page_is_zero(&s, a + 2 * M2 - PAGE));
    // The other blocks are untouched; a second touch in the block is no fault.
    assert!(s.translate(va(a)).is_err() && s.translate(va(a + 2 * M2)).is_err());
    s.handle_page_fault(va(a + M2 + 0x10_0000), Access::Write)
        .unwrap();
    assert_eq!(s.stats().spurious_faults, 1);
    // A fault in another block: another huge page.
    s.handle_page_fault(va(a + 3 * M2), Access::Read).unwrap();
    assert_eq!(s.stats().huge_faults, 2);
    assert_eq!(s.stats().data_frames, 1024);
    finish(s);
}

#[test]
fn no_aligned_run_falls_back_to_4k_and_counts() {
    let mut s = space();
    let a = s.mmap(None, 2 * M2, RW, H2).unwrap().as_usize();
    // Room for tables and a few 4K frames, never for a 512-frame run.
    testing::set_limit(Some(testing::frames_in_use() + 16));
    s.handle_page_fault(va(a + PAGE), Access::Write).unwrap();
    let st = s.stats();
    assert_eq!(
        (st.huge_faults, st.huge_fallbacks, st.data_frames),
        (0, 1, 1)
    );
    assert_eq!(
        s.translate(va(a + PAGE)).unwrap().page_size,
        LeafSize::Size4K
    );
    assert!(
        s.translate(va(a)).is_err(),
        "only the faulting page is mapped"
    );
    testing::set_limit(None);
    // The block is partly mapped now: more faults there stay 4K, uncounted.
    s.handle_page_fault(va(a), Access::Write).unwrap();
    assert_eq!(s.stats().huge_fallbacks, 1);
    assert_eq!(s.translate(va(a)).unwrap().page_size, LeafSize::Size4K);
    // The other block gets its huge page.
    s.handle_page_fault(va(a + M2), Access::Write).unwrap();
    assert_eq!(s.stats().huge_faults, 1);
    // 1G areas fall back the same way (no 1 GiB run under the limit).
    let g = s.mmap(None, 1 << 30, RW, H1G).unwrap().as_usize();
    assert_eq!(g % (1 << 30), 0);
    testing::set_limit(Some(testing::frames_in_use() + 16));
    s.handle_page_fault(va(g + 5 * PAGE), Access::Read).unwrap();
    testing::set_limit(None);
    assert_eq!(s.stats().huge_fallbacks, 2);
    finish(s);
}

thread_local! {
    static NO_RUNS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The tracking handler, with "fragmented" memory on demand: while `NO_RUNS`
/// is set, no aligned run of more than one frame is available.
struct Fragmented;

impl PagingHandler for Fragmented {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        if num > 1 && NO_RUNS.get() {
            return None;
        }
        TrackingHandler::alloc_frames(num, align)
    }
    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        TrackingHandler::dealloc_frames(paddr, num)
    }
    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        TrackingHandler::phys_to_virt(paddr)
    }
}

#[test]
fn populate_without_aligned_runs_uses_4k_frames() {
    testing::reset();
    let mut s = AddrSpace::<X64PagingMetaData, X64PTE, Fragmented>::new(va(WIN), WSIZE).unwrap();
    NO_RUNS.set(true);
    let a = s.mmap(None, 2 * M2, RW, H2 | POP).unwrap().as_usize();
    let lazy = s.mmap(None, M2, RW, H2).unwrap();
    s.handle_page_fault(lazy, Access::Write).unwrap();
    NO_RUNS.set(false);
    let st = s.stats();
    assert_eq!(
        (st.huge_fallbacks, st.huge_faults, st.data_frames),
        (3, 0, 1025)
    );
    for off in [0, M2 - PAGE, M2, 2 * M2 - PAGE] {
        assert_eq!(
            s.translate(va(a + off)).unwrap().page_size,
            LeafSize::Size4K
        );
        let t = s.translate(va(a + off)).unwrap();
        // SAFETY: a live 4K frame of the tracking handler (phys == host pointer).
        let page = unsafe { core::slice::from_raw_parts(t.paddr.as_usize() as *const u8, PAGE) };
        assert!(page.iter().all(|&b| b == 0));
    }
    // Partial munmap of the 4K-backed block and the rest.
    s.munmap(va(a + PAGE), M2).unwrap();
    assert_eq!(s.stats().data_frames, 513);
    drop(s);
    testing::assert_no_leaks();
}

#[test]
fn partial_munmap_splits_and_keeps_the_rest() {
    let mut s = space();
    let a = s.mmap(None, M2, RW, H2 | POP).unwrap().as_usize();
    stamp(&s, a, M2);
    let before = layout(&s, a, M2);
    let frames = testing::frames_in_use();
    let mid = a + 0x10_0000;
    s.munmap(va(mid), PAGE).unwrap();
    assert!(s.translate(va(mid)).is_err());
    let after = layout(&s, a, M2);
    for (i, (b, n)) in before.iter().zip(&after).enumerate() {
        let addr = a + i * PAGE;
        if addr == mid {
            continue;
        }
        let (b, n) = (b.unwrap(), n.unwrap());
        assert_eq!(b.0, n.0, "physical address of {addr:#x} kept");
        assert_eq!(n.1, LeafSize::Size4K);
        assert!(stamped(&s, addr), "data of {addr:#x} kept");
    }
    // Exactly one 4K frame freed, one leaf table added.
    assert_eq!(s.stats().data_frames, 511);
    assert_eq!(testing::frames_in_use(), frames - 1 + 1);
    assert_eq!(s.stats().areas, 2);
    // Unmapping the pieces frees the rest of the run piecewise.
    s.munmap(va(a), 0x10_0000).unwrap();
    assert_eq!(s.stats().data_frames, 255);
    s.munmap(va(mid + PAGE), M2).unwrap();
    assert_eq!(s.stats().data_frames, 0);
    assert_eq!(s.stats().page_table_frames, 1);
    finish(s);
}

#[test]
fn partial_mprotect_splits_and_keeps_the_rest() {
    let mut s = space();
    let a = s.mmap(None, 2 * M2, RW, H2 | POP).unwrap().as_usize();
    stamp(&s, a, 2 * M2);
    let before = layout(&s, a, 2 * M2);
    let mid = a + 0x10_0000;
    s.mprotect(va(mid), PAGE, Prot::READ).unwrap();
    let t = s.translate(va(mid)).unwrap();
    assert_eq!(t.page_size, LeafSize::Size4K);
    assert!(!t.flags.contains(MappingFlags::WRITE));
    assert_eq!(
        Some((t.paddr.as_usize(), LeafSize::Size2M)),
        before[0x100].map(|(p, _)| (p, LeafSize::Size2M))
    );
    assert!(s.handle_page_fault(va(mid), Access::Write).is_err());
    for off in [0, 0xff000, 0x101000, M2 - PAGE] {
        let t = s.translate(va(a + off)).unwrap();
        assert_eq!(t.paddr.as_usize(), before[off / PAGE].unwrap().0);
        assert_eq!(t.page_size, LeafSize::Size4K);
        assert!(t.flags.contains(MappingFlags::WRITE));
    }
    // The second block is untouched.
    assert_eq!(s.translate(va(a + M2)).unwrap().page_size, LeafSize::Size2M);
    assert!((0..2 * M2).step_by(PAGE).all(|o| stamped(&s, a + o)));
    assert_eq!(s.stats().areas, 3);
    // PROT_NONE over a range crossing into the second huge page parks its
    // pieces; back to RW they return with their data.
    s.mprotect(va(a + M2 - PAGE), 2 * PAGE, Prot::empty())
        .unwrap();
    assert!(s.translate(va(a + M2)).is_err());
    assert_eq!(
        s.translate(va(a + M2 + PAGE)).unwrap().paddr.as_usize(),
        before[513].unwrap().0
    );
    assert_eq!(s.stats().data_frames, 1024);
    s.mprotect(va(a), 2 * M2, RW).unwrap();
    assert_eq!(s.stats().areas, 1, "merged back");
    assert_eq!(
        layout(&s, a, 2 * M2)
            .iter()
            .map(|l| l.unwrap().0)
            .collect::<Vec<_>>(),
        before.iter().map(|l| l.unwrap().0).collect::<Vec<_>>()
    );
    assert!((0..2 * M2).step_by(PAGE).all(|o| stamped(&s, a + o)));
    finish(s);
}

#[test]
fn out_of_frames_changes_nothing() {
    let mut s = space();
    let a = s.mmap(None, M2, RW, H2 | POP).unwrap().as_usize();
    stamp(&s, a, M2);
    let before = snapshot(&s);
    let lay = layout(&s, a, M2);
    testing::set_limit(Some(testing::frames_in_use()));
    let mid = a + 0x8_0000;
    assert_eq!(s.munmap(va(mid), PAGE), Err(AxError::NoMemory));
    assert_eq!(
        s.mprotect(va(mid), PAGE, Prot::READ),
        Err(AxError::NoMemory)
    );
    assert_eq!(
        s.mprotect(va(mid), PAGE, Prot::empty()),
        Err(AxError::NoMemory)
    );
    assert_eq!(
        s.mmap(Some(va(mid)), PAGE, RW, FIX),
        Err(AxError::NoMemory),
        "FIXED over part of a huge page"
    );
    assert_eq!(s.mmap(None, M2, RW, H2 | POP), Err(AxError::NoMemory));
    assert_eq!(snapshot(&s), before);
    assert_eq!(layout(&s, a, M2), lay, "still one huge page");
    // One frame: the split fits, the FIXED replacement's data frame does not.
    testing::set_limit(Some(testing::frames_in_use() + 1));
    assert_eq!(
        s.mmap(Some(va(mid)), PAGE, RW, FIX | POP),
        Err(AxError::NoMemory)
    );
    assert_eq!(snapshot(&s), before);
    assert_eq!(layout(&s, a, M2), lay);
    // A lazy fault in a huge area with no frame at all.
    let b = s.mmap(None, M2, RW, H2).unwrap();
    let before = snapshot(&s);
    let counters = |s: &Space| (s.stats().huge_faults, s.stats().huge_fallbacks);
    let counted = counters(&s);
    testing::set_limit(Some(testing::frames_in_use()));
    assert!(s.handle_page_fault(b, Access::Write).is_err());
    assert_eq!(snapshot(&s), before);
    assert_eq!(counters(&s), counted, "a failed fault counts no fallback");
    testing::set_limit(None);
    assert!((0..M2).step_by(PAGE).all(|o| stamped(&s, a + o)));
    // With frames, FIXED over part of the huge page keeps the rest.
    s.mmap(Some(va(mid)), PAGE, RW, FIX | POP).unwrap();
    assert!(page_is_zero(&s, mid));
    assert!(stamped(&s, mid - PAGE) && stamped(&s, mid + PAGE));
    assert_eq!(
        s.translate(va(mid + PAGE)).unwrap().paddr.as_usize(),
        lay[0x81].unwrap().0
    );
    finish(s);
}

#[test]
fn bad_huge_calls_are_refused() {
    let mut s = space();
    s.mmap(Some(va(WIN)), PAGE, RW, FIX).unwrap();
    let before = snapshot(&s);
    let inv = Err(AxError::InvalidInput);
    assert_eq!(s.mmap(None, M2, RW, H2 | H1G), inv);
    assert_eq!(s.mmap(None, M2, RW, H2 | MmapFlags::CONTIGUOUS), inv);
    assert_eq!(s.mmap(None, M2 + PAGE, RW, H2), inv);
    assert_eq!(s.mmap(None, PAGE, RW, H2), inv);
    assert_eq!(s.mmap(None, M2, RW, H1G), inv);
    assert_eq!(s.mmap(Some(va(WIN + PAGE)), M2, RW, H2 | FIX), inv);
    assert_eq!(
        s.mmap(
            Some(va(WIN + M2 / 2)),
            M2,
            RW,
            H2 | MmapFlags::FIXED_NOREPLACE
        ),
        inv
    );
    assert_eq!(snapshot(&s), before);
    // An unaligned hint is ignored; the area starts aligned.
    let a = s.mmap(Some(va(WIN + 3 * PAGE)), M2, RW, H2).unwrap();
    assert_eq!(a.as_usize() % M2, 0);
    finish(s);
}

#[test]
fn map_phys_uses_huge_pages_and_splits() {
    let mut s = space();
    let h = s.mmap(None, 2 * M2, RW, H2 | POP).unwrap().as_usize();
    stamp(&s, h, 2 * M2);
    let pa = s.translate(va(h)).unwrap().paddr;
    let pa2 = s.translate(va(h + M2)).unwrap().paddr;
    let frames = testing::frames_in_use();
    let l = s.map_phys(pa, M2, RW, false).unwrap().as_usize();
    assert_eq!(l % M2, 0);
    assert_eq!(s.translate(va(l)).unwrap().page_size, LeafSize::Size2M);
    assert!(stamped(&s, h + 0x1000) && read(&s, l + 0x1008) == read(&s, h + 0x1008));
    // Split in the middle; neighbours keep frames and flags.
    let mid = l + 0x10_0000;
    s.mprotect(va(mid), PAGE, Prot::READ).unwrap();
    for off in [0, 0xff000, 0x101000, M2 - PAGE] {
        let t = s.translate(va(l + off)).unwrap();
        assert_eq!(t.paddr.as_usize(), pa.as_usize() + off);
        assert_eq!(t.page_size, LeafSize::Size4K);
        assert!(t.flags.contains(MappingFlags::WRITE));
    }
    let t = s.translate(va(mid)).unwrap();
    assert_eq!(
        (t.paddr.as_usize(), t.page_size),
        (pa.as_usize() + 0x10_0000, LeafSize::Size4K)
    );
    assert!(!t.flags.contains(MappingFlags::WRITE));
    s.munmap(va(mid), PAGE).unwrap();
    assert!(s.translate(va(mid)).is_err());
    assert_eq!(
        s.translate(va(mid + PAGE)).unwrap().paddr.as_usize(),
        pa.as_usize() + 0x10_1000
    );
    s.munmap(va(l), M2).unwrap();
    assert_eq!(
        testing::frames_in_use(),
        frames,
        "linear areas own no frames"
    );
    // A misaligned physical start: 4K pages up to the first aligned block.
    let l = s
        .map_phys(pa2 - 2 * PAGE, M2 + 2 * PAGE, Prot::READ, false)
        .unwrap()
        .as_usize();
    assert_eq!(s.translate(va(l)).unwrap().page_size, LeafSize::Size4K);
    assert_eq!(
        s.translate(va(l + 2 * PAGE)).unwrap().page_size,
        LeafSize::Size2M
    );
    assert!(stamped(&s, h + M2) && read(&s, l + 2 * PAGE + 8) == read(&s, h + M2 + 8));
    s.munmap(va(l), M2 + 2 * PAGE).unwrap();
    assert!((0..2 * M2).step_by(PAGE).all(|o| stamped(&s, h + o)));
    finish(s);
}

/// Random munmap/mprotect of 4K-aligned ranges over two populated huge pages,
/// some under a tight frame limit, checked page by page against a model: each
/// remaining page keeps its physical address and data, its flags follow the
/// last mprotect, a failure (`NoMemory`) changes nothing, frames are exact.
#[test]
fn random_splits_keep_frames_and_data() {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    const PROTS: [Prot; 3] = [Prot::empty(), Prot::READ, RW];
    for seed in 1..=4u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut s = space();
        let n = 2 * M2 / PAGE;
        let (mut a, mut pa, mut model) = (0, Vec::new(), Vec::new());
        let (mut oks, mut refused) = (0, 0);
        for step in 0..400 {
            if step % 25 == 0 {
                // A fresh pair of huge pages every 25 steps, so splits keep coming.
                if step > 0 {
                    s.munmap(va(a), 2 * M2).unwrap();
                }
                a = s.mmap(None, 2 * M2, RW, H2 | POP).unwrap().as_usize();
                stamp(&s, a, 2 * M2);
                pa = layout(&s, a, 2 * M2).iter().map(|l| l.unwrap().0).collect();
                // Per page: None = unmapped, Some(prot).
                model = vec![Some(RW); n];
            }
            let first = rng.random_range(0..n);
            let cap = if rng.random_bool(0.8) { 4 } else { n };
            let len = rng.random_range(1..=(n - first).min(cap));
            let (start, bytes) = (a + first * PAGE, len * PAGE);
            let limited = rng.random_bool(0.25);
            let before = snapshot(&s);
            if limited {
                testing::set_limit(Some(testing::frames_in_use() + rng.random_range(0..2)));
            }
            let unmap = rng.random_bool(0.3);
            let prot = PROTS[rng.random_range(0..3)];
            let r = if unmap {
                s.munmap(va(start), bytes)
            } else {
                s.mprotect(va(start), bytes, prot)
            };
            testing::set_limit(None);
            let covered = model[first..first + len].iter().all(Option::is_some);
            match r {
                Ok(()) => {
                    oks += 1;
                    assert!(
                        unmap || covered,
                        "seed {seed} step {step}: mprotect over a hole"
                    );
                    for m in &mut model[first..first + len] {
                        *m = if unmap { None } else { Some(prot) };
                    }
                }
                Err(AxError::NoMemory) if limited || !covered => {
                    refused += usize::from(covered);
                    assert_eq!(
                        snapshot(&s),
                        before,
                        "seed {seed} step {step}: failure changed something"
                    );
                }
                Err(e) => panic!("seed {seed} step {step}: {e:?}"),
            }
            for (i, m) in model.iter().enumerate() {
                let addr = a + i * PAGE;
                let t = s.translate(va(addr));
                match m {
                    Some(p) if !p.is_empty() => {
                        let t = t.unwrap_or_else(|e| {
                            panic!("seed {seed} step {step}: {addr:#x}: {e:?}")
                        });
                        assert_eq!(
                            t.paddr.as_usize(),
                            pa[i],
                            "seed {seed} step {step}: frame of {addr:#x}"
                        );
                        assert_eq!(
                            t.flags.contains(MappingFlags::WRITE),
                            p.contains(Prot::WRITE)
                        );
                        assert!(
                            stamped(&s, addr),
                            "seed {seed} step {step}: data of {addr:#x}"
                        );
                    }
                    _ => assert!(t.is_err(), "seed {seed} step {step}: {addr:#x} mapped"),
                }
            }
            let live = model.iter().filter(|m| m.is_some()).count();
            assert_eq!(s.stats().data_frames, live, "seed {seed} step {step}");
            assert_eq!(
                testing::frames_in_use(),
                live + s.stats().page_table_frames,
                "seed {seed} step {step}: frames in use"
            );
        }
        assert!(
            oks > 100 && refused > 0,
            "seed {seed}: {oks} done, {refused} out of frames"
        );
        // Whatever is parked comes back with its data.
        let covered = model.iter().all(Option::is_some);
        if covered {
            s.mprotect(va(a), 2 * M2, RW).unwrap();
            assert!((0..2 * M2).step_by(PAGE).all(|o| stamped(&s, a + o)));
        }
        finish(s);
    }
}

/// A 1G leaf split at a 4K edge needs two page-table frames (1G -> 2M -> 4K).
/// With only one free, every call that would split it fails with `NoMemory`
/// and leaves the leaf whole: no half-done split (a 2M table left behind).
#[test]
fn half_a_1g_split_changes_nothing() {
    const G1: usize = 1 << 30;
    let mut s = space();
    let l = s
        .map_phys(PhysAddr::from(G1), G1, RW, false)
        .unwrap()
        .as_usize();
    assert_eq!(l % G1, 0);
    assert_eq!(s.translate(va(l)).unwrap().page_size, LeafSize::Size1G);
    let before = snapshot(&s);
    let tables = s.stats().page_table_frames;
    testing::set_limit(Some(testing::frames_in_use() + 1));
    let mid = l + M2 + PAGE;
    assert_eq!(s.munmap(va(mid), PAGE), Err(AxError::NoMemory));
    assert_eq!(
        s.mprotect(va(mid), PAGE, Prot::READ),
        Err(AxError::NoMemory)
    );
    assert_eq!(s.mmap(Some(va(mid)), PAGE, RW, FIX), Err(AxError::NoMemory));
    // The end of the range inside the leaf, the start on its boundary.
    assert_eq!(s.munmap(va(l), M2 + PAGE), Err(AxError::NoMemory));
    assert_eq!(snapshot(&s), before);
    assert_eq!(s.stats().page_table_frames, tables);
    for off in [0, mid - l, G1 - PAGE] {
        let t = s.translate(va(l + off)).unwrap();
        assert_eq!(t.page_size, LeafSize::Size1G, "still one 1G leaf");
        assert_eq!(t.paddr.as_usize(), G1 + off);
    }
    // With both frames the split succeeds and keeps the rest.
    testing::set_limit(None);
    s.munmap(va(mid), PAGE).unwrap();
    assert!(s.translate(va(mid)).is_err());
    let t = s.translate(va(mid + PAGE)).unwrap();
    assert_eq!(
        (t.paddr.as_usize(), t.page_size),
        (G1 + M2 + 2 * PAGE, LeafSize::Size4K)
    );
    assert_eq!(s.translate(va(l)).unwrap().page_size, LeafSize::Size2M);
    finish(s);
}
