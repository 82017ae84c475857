//! Edge cases: splits inside huge leaves, both ends of the address space, bad
//! input, reclamation and the flush-then-free order, out-of-memory paths, and
//! shared kernel halves. Format: x86_64 (`X64PTE`) with a recording metadata.

mod common;

use common::*;
use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::MappingFlags as F;
use paging::{
    LeafSize, MapError, PageSize, PageTable, ProtectError, Size1G, Size2M, Size4K, UnmapError,
};
use testing::TrackingHandler;

type Pt = PageTable<X64Meta, X64PTE, TrackingHandler>;

const G1: usize = 1 << 30;
const M2: usize = 2 << 20;
const TOP: usize = 0usize.wrapping_sub(PAGE);

fn va(x: usize) -> VirtAddr {
    VirtAddr::from(x)
}
fn pa(x: usize) -> PhysAddr {
    PhysAddr::from(x)
}

fn rw() -> F {
    F::READ | F::WRITE
}

/// Every 4K page of `[base, base + size)` except `hole` translates to
/// `pbase + offset` with `flags`.
fn check_pages(
    pt: &Pt,
    base: usize,
    pbase: usize,
    size: usize,
    hole: usize,
    flags: F,
    hole_flags: Option<F>,
) {
    for off in (0..size).step_by(PAGE) {
        let q = pt.query(va(base + off));
        if base + off == hole {
            match hole_flags {
                None => assert!(q.is_err(), "hole {hole:#x} still mapped"),
                Some(f) => assert_eq!(q.map(|(p, fl, _)| (p.as_usize(), fl)), Ok((pbase + off, f))),
            }
        } else {
            let (p, fl, _) = q.unwrap();
            assert_eq!(
                (p.as_usize(), fl),
                (pbase + off, flags),
                "page {:#x}",
                base + off
            );
        }
    }
}

fn leaf_counts(pt: &Pt) -> [usize; 3] {
    let mut n = [0; 3];
    pt.for_each_leaf(|l| n[l.size.height()] += 1);
    n
}

#[test]
fn unmap_one_page_inside_1g_leaf() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    let (v, p) = (3 * G1, 7 * G1);
    pt.cursor().map::<Size1G>(va(v), pa(p), rw()).unwrap();
    let hole = v + 300 * M2 + 17 * PAGE;
    let l = pt.cursor().unmap::<Size4K>(va(hole)).unwrap();
    assert_eq!(
        (l.vaddr, l.paddr, l.size),
        (va(hole), pa(p + (hole - v)), LeafSize::Size4K)
    );
    assert_eq!(leaf_counts(&pt), [511, 511, 0]);
    check_pages(&pt, v, p, G1, hole, rw(), None);
    // Unmapping the rest reclaims every table but the root.
    pt.cursor().unmap_region(va(v), G1, |_| ()).unwrap();
    assert_eq!(pt.table_frames(), 1);
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn protect_one_page_inside_1g_and_2m_leaves() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    let (v, p) = (G1, 5 * G1);
    pt.cursor().map::<Size1G>(va(v), pa(p), rw()).unwrap();
    let hole = v + 511 * M2 + 511 * PAGE; // the very last 4K page of the 1G leaf
    pt.cursor().protect::<Size4K>(va(hole), F::READ).unwrap();
    check_pages(&pt, v, p, G1, hole, rw(), Some(F::READ));
    assert_eq!(leaf_counts(&pt), [512, 511, 0]);

    let (v2, p2) = (8 * G1 + 6 * M2, 9 * G1 + 40 * M2);
    pt.cursor()
        .map::<Size2M>(va(v2), pa(p2), F::READ | F::EXECUTE)
        .unwrap();
    let hole2 = v2; // the first 4K page of the 2M leaf
    pt.cursor().protect::<Size4K>(va(hole2), rw()).unwrap();
    check_pages(&pt, v2, p2, M2, hole2, F::READ | F::EXECUTE, Some(rw()));
    let l = pt.cursor().unmap::<Size4K>(va(v2 + PAGE)).unwrap();
    assert_eq!(l.paddr, pa(p2 + PAGE));
    check_pages(
        &pt,
        v2 + 2 * PAGE,
        p2 + 2 * PAGE,
        M2 - 2 * PAGE,
        0,
        F::READ | F::EXECUTE,
        None,
    );
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn ranges_straddling_leaf_and_table_boundaries() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    // 1G-aligned on both sides: [G, 4G + 6M + 12K) tiles as 3x1G, 3x2M, 3x4K.
    let size = 3 * G1 + 3 * M2 + 3 * PAGE;
    pt.cursor()
        .map_region(va(G1), pa(2 * G1), size, rw(), true)
        .unwrap();
    assert_eq!(leaf_counts(&pt), [3, 3, 3]);
    // Misaligned physical address: everything 4K.
    pt.cursor()
        .map_region(va(64 * G1), pa(2 * G1 + PAGE), 2 * M2, rw(), true)
        .unwrap();
    assert_eq!(leaf_counts(&pt), [3 + 1024, 3, 3]);
    // Unmap across the 1G/1G boundary and the 512G root-entry boundary region.
    let mut got = Vec::new();
    pt.cursor()
        .unmap_region(va(2 * G1 - PAGE), 2 * PAGE, |l| got.push(l))
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].paddr, pa(3 * G1 - PAGE));
    assert_eq!(got[1].paddr, pa(3 * G1));
    assert!(pt.query(va(2 * G1 - 2 * PAGE)).is_ok());
    assert!(pt.query(va(2 * G1 + PAGE)).is_ok());
    // Protect a range starting in a 2M leaf and ending among the 4K leaves.
    pt.cursor()
        .protect_region(va(4 * G1 + M2 + PAGE), 2 * M2, F::READ)
        .unwrap();
    assert_eq!(pt.query(va(4 * G1 + M2)).unwrap().1, rw());
    assert_eq!(pt.query(va(4 * G1 + M2 + PAGE)).unwrap().1, F::READ);
    assert_eq!(pt.query(va(4 * G1 + 3 * M2 + 2 * PAGE)).unwrap().1, rw());
    // Unmap everything, including holes and a range crossing a root entry.
    pt.cursor()
        .unmap_region(va(0), 512 * G1 + 2 * G1, |_| ())
        .unwrap();
    assert_eq!(pt.table_frames(), 1);
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn top_and_bottom_of_both_halves() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    let low_top = (1usize << 47) - PAGE;
    let high_bottom = 0usize.wrapping_sub(1 << 47);
    let mut c = pt.cursor();
    c.map::<Size4K>(va(0), pa(0x1000), rw()).unwrap();
    c.map::<Size4K>(va(low_top), pa(0x2000), rw()).unwrap();
    c.map::<Size4K>(va(high_bottom), pa(0x3000), rw()).unwrap();
    c.map::<Size4K>(va(TOP), pa(0x4000), rw()).unwrap();
    c.map::<Size1G>(va(0usize.wrapping_sub(2 * G1)), pa(G1), rw())
        .unwrap();
    drop(c);
    assert_eq!(pt.query(va(0x123)).unwrap().0, pa(0x1123));
    assert_eq!(pt.query(va(low_top + 5)).unwrap().0, pa(0x2005));
    assert_eq!(pt.query(va(high_bottom)).unwrap().0, pa(0x3000));
    assert_eq!(pt.query(va(usize::MAX)).unwrap().0, pa(0x4fff));
    assert_eq!(
        pt.query(va(0usize.wrapping_sub(G1) - 1)).unwrap(),
        (pa(2 * G1 - 1), rw(), LeafSize::Size1G)
    );
    // Leaves are reported with their sign-extended addresses.
    let mut vs = Vec::new();
    pt.for_each_leaf(|l| vs.push(l.vaddr.as_usize()));
    assert_eq!(
        vs,
        [0, low_top, high_bottom, 0usize.wrapping_sub(2 * G1), TOP]
    );
    // Ranges ending exactly at 2^64 work; past it, or across the hole, fail.
    let mut c = pt.cursor();
    assert_eq!(
        c.unmap_region(va(TOP), 2 * PAGE, |_| ()),
        Err(UnmapError::OutOfRange)
    );
    assert_eq!(
        c.protect_region(va(low_top), 2 * PAGE, F::READ),
        Err(ProtectError::OutOfRange)
    );
    assert_eq!(
        c.map::<Size4K>(va(1 << 47), pa(0), rw()),
        Err(MapError::OutOfRange)
    );
    assert_eq!(c.unmap::<Size4K>(va(1 << 47)), Err(UnmapError::OutOfRange));
    assert!(c.query(va(1 << 47)).is_err());
    c.protect_region(va(0usize.wrapping_sub(4 * G1)), 4 * G1, F::READ)
        .unwrap();
    assert_eq!(c.query(va(TOP)).unwrap().1, F::READ);
    let mut n = 0;
    c.unmap_region(va(0usize.wrapping_sub(1 << 47)), 1 << 47, |_| n += 1)
        .unwrap();
    c.unmap_region(va(0), 1 << 47, |_| n += 1).unwrap();
    assert_eq!(n, 5);
    drop(c);
    assert_eq!(pt.table_frames(), 1);
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn bad_input_is_an_error() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    let mut c = pt.cursor();
    assert_eq!(
        c.map::<Size2M>(va(M2 + PAGE), pa(0), rw()),
        Err(MapError::NotAligned)
    );
    assert_eq!(
        c.map::<Size2M>(va(M2), pa(PAGE), rw()),
        Err(MapError::NotAligned)
    );
    assert_eq!(
        c.map_region(va(0), pa(0), 100, rw(), true),
        Err(MapError::NotAligned)
    );
    assert_eq!(
        c.map::<Size4K>(va(0), pa(0), F::empty()),
        Err(MapError::InvalidFlags)
    );
    assert_eq!(
        c.map::<Size4K>(va(0), pa(1 << 52), rw()),
        Err(MapError::OutOfRange)
    );
    assert_eq!(
        c.map_region(va(0), pa(usize::MAX - 0xfff), 2 * PAGE, rw(), false),
        Err(MapError::OutOfRange)
    );
    assert_eq!(
        c.unmap_region(va(3), PAGE, |_| ()),
        Err(UnmapError::NotAligned)
    );
    assert_eq!(
        c.unmap_region(va(0), 5, |_| ()),
        Err(UnmapError::NotAligned)
    );
    assert_eq!(
        c.unmap_region(va(0), usize::MAX & !0xfff, |_| ()),
        Err(UnmapError::OutOfRange)
    );
    assert_eq!(
        c.protect_region(va(0), PAGE, F::WRITE),
        Err(ProtectError::InvalidFlags)
    );
    assert_eq!(c.unmap::<Size4K>(va(0)), Err(UnmapError::NotMapped));
    assert_eq!(
        c.protect::<Size1G>(va(0), rw()),
        Err(ProtectError::NotMapped)
    );
    c.map::<Size4K>(va(0), pa(0), rw()).unwrap();
    assert_eq!(
        c.map::<Size4K>(va(0), pa(0), rw()),
        Err(MapError::AlreadyMapped)
    );
    assert_eq!(
        c.map::<Size2M>(va(0), pa(0), rw()),
        Err(MapError::AlreadyMapped)
    );
    assert_eq!(
        c.map::<Size1G>(va(0), pa(0), rw()),
        Err(MapError::AlreadyMapped)
    );
    assert_eq!(c.unmap::<Size2M>(va(0)), Err(UnmapError::SizeMismatch));
    assert_eq!(
        c.protect::<Size2M>(va(0), rw()),
        Err(ProtectError::SizeMismatch)
    );
    c.map::<Size1G>(va(G1), pa(0), rw()).unwrap();
    assert_eq!(
        c.map::<Size4K>(va(G1 + M2), pa(0), rw()),
        Err(MapError::AlreadyMapped)
    );
    // Zero-sized ranges are no-ops.
    c.unmap_region(va(G1), 0, |_| panic!("nothing to report"))
        .unwrap();
    c.map_region(va(5 * G1), pa(0), 0, rw(), true).unwrap();
    drop(c);
    assert_eq!(
        axerrno::AxError::from(MapError::NoMemory),
        axerrno::AxError::NoMemory
    );
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn tables_freed_only_after_the_flush() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    pt.cursor()
        .map::<Size4K>(va(0x7000_0000_0000), pa(0x5000), rw())
        .unwrap();
    assert_eq!(testing::frames_in_use(), 4);
    let before = flushes();
    let mut c = pt.cursor();
    let mut leaves = Vec::new();
    c.unmap_region(va(0x7000_0000_0000), PAGE, |l| leaves.push(l))
        .unwrap();
    assert_eq!(leaves.len(), 1);
    // Unlinked but not yet freed: the TLB may still reference them.
    assert_eq!(testing::frames_in_use(), 4);
    assert_eq!(flushes(), before);
    drop(c);
    assert_eq!(flushes(), before + 1);
    assert_eq!(
        frames_at_last_flush(),
        4,
        "frames were freed before the flush"
    );
    assert_eq!(testing::frames_in_use(), 1);
    // Explicit flush does the same, and an idle cursor flushes nothing.
    let mut c = pt.cursor();
    c.map::<Size2M>(va(M2), pa(M2), rw()).unwrap();
    c.unmap_region(va(0), G1, |_| ()).unwrap();
    c.flush();
    assert_eq!(testing::frames_in_use(), 1);
    let n = flushes();
    drop(c);
    drop(pt.cursor());
    assert_eq!(flushes(), n);
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn sparse_unmap_visits_only_what_is_mapped() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    let base = 0x10_0000_0000;
    let mut c = pt.cursor();
    for i in 0..16 {
        c.map::<Size4K>(va(base + i * 4 * G1 + i * 3 * M2), pa(i * PAGE), rw())
            .unwrap();
    }
    let mut n = 0;
    c.unmap_region(va(base), 64 * G1, |_| n += 1).unwrap();
    c.protect_region(va(base), 64 * G1, F::READ).unwrap();
    drop(c);
    assert_eq!(n, 16);
    assert_eq!(pt.table_frames(), 1);
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn out_of_memory_leaves_the_table_unchanged() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    pt.cursor().map::<Size1G>(va(G1), pa(G1), rw()).unwrap();
    let used = testing::frames_in_use();
    testing::set_limit(Some(used));
    let mut c = pt.cursor();
    assert_eq!(c.unmap::<Size4K>(va(G1 + PAGE)), Err(UnmapError::NoMemory));
    assert_eq!(
        c.protect_region(va(G1), PAGE, F::READ),
        Err(ProtectError::NoMemory)
    );
    assert_eq!(
        c.query(va(G1 + PAGE)).unwrap(),
        (pa(G1 + PAGE), rw(), LeafSize::Size1G)
    );
    // A region map that runs out of tables halfway is rolled back.
    testing::set_limit(Some(used + 3));
    assert_eq!(
        c.map_region(va(0x100_0000_0000), pa(0), 4 * M2, rw(), false),
        Err(MapError::NoMemory)
    );
    assert!(c.query(va(0x100_0000_0000)).is_err());
    drop(c);
    assert_eq!(testing::frames_in_use(), used);
    testing::set_limit(None);
    // One more frame than needed for the first split: 1G -> 2M works, 2M -> 4K does not.
    testing::set_limit(Some(used + 1));
    assert_eq!(
        pt.cursor().unmap::<Size4K>(va(G1 + PAGE)),
        Err(UnmapError::NoMemory)
    );
    // ... and the 1G leaf stays whole: no 2M table left behind.
    assert_eq!(
        pt.query(va(G1 + PAGE)).unwrap(),
        (pa(G1 + PAGE), rw(), LeafSize::Size1G)
    );
    assert_eq!(testing::frames_in_use(), used);
    testing::set_limit(Some(used + 2));
    let leaf = pt.cursor().unmap::<Size4K>(va(G1 + M2 + PAGE)).unwrap();
    assert_eq!(
        (leaf.paddr, leaf.size),
        (pa(G1 + M2 + PAGE), LeafSize::Size4K)
    );
    assert_eq!(pt.query(va(G1)).unwrap().2, LeafSize::Size2M);
    assert_eq!(
        pt.query(va(G1 + M2 + 2 * PAGE)).unwrap(),
        (pa(G1 + M2 + 2 * PAGE), rw(), LeafSize::Size4K)
    );
    testing::set_limit(None);
    drop(pt);
    testing::assert_no_leaks();
}

/// Single-page maps of size `S` at `targets` (each paired with the number of
/// tables its path lacks) fail with `NoMemory` for every frame budget below
/// that number, changing nothing; with exactly that budget they succeed.
fn single_map_out_of_frames<S: PageSize>(pt: &mut Pt, targets: &[(usize, usize)]) {
    let used = testing::frames_in_use();
    let tables = pt.table_frames();
    let leaves = leaf_counts(pt);
    for &(v, need) in targets {
        for extra in 0..need {
            testing::set_limit(Some(used + extra));
            let (failed, flushed) = (testing::failed_allocs(), flushes());
            let mut c = pt.cursor();
            assert_eq!(
                c.map::<S>(va(v), pa(S::SIZE), rw()),
                Err(MapError::NoMemory),
                "{:#x} with {extra} of {need} tables",
                v
            );
            // Nothing was linked, so nothing waits for a flush either.
            assert_eq!(testing::frames_in_use(), used);
            drop(c);
            assert_eq!(testing::failed_allocs(), failed + 1);
            assert_eq!(flushes(), flushed, "a failed map changed nothing to flush");
            assert_eq!(testing::frames_in_use(), used);
            assert_eq!(pt.table_frames(), tables);
            assert_eq!(leaf_counts(pt), leaves);
            assert!(pt.query(va(v)).is_err());
        }
        testing::set_limit(Some(used + need));
        pt.cursor().map::<S>(va(v), pa(S::SIZE), rw()).unwrap();
        assert_eq!(pt.table_frames(), tables + need);
        assert_eq!(
            pt.query(va(v)).unwrap(),
            (pa(S::SIZE), rw(), LeafSize::from_height(S::HEIGHT).unwrap())
        );
        testing::set_limit(None);
        pt.cursor().unmap::<S>(va(v)).unwrap();
        assert_eq!(testing::frames_in_use(), used);
        assert_eq!(pt.table_frames(), tables);
    }
}

#[test]
fn single_page_map_out_of_frames_at_each_level() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    // One 4K page owns a full path: root slot 2, its 1G and 2M entries.
    let a = 0x100_0000_0000;
    pt.cursor().map::<Size4K>(va(a), pa(0x7000), rw()).unwrap();
    let fresh_root_slot = 5 << 39;
    single_map_out_of_frames::<Size4K>(
        &mut pt,
        &[
            (fresh_root_slot, 3),
            (a + 3 * G1, 2),
            (a + 5 * M2, 1),
            (a + 7 * PAGE, 0),
        ],
    );
    single_map_out_of_frames::<Size2M>(
        &mut pt,
        &[(fresh_root_slot, 2), (a + 3 * G1, 1), (a + 5 * M2, 0)],
    );
    single_map_out_of_frames::<Size1G>(&mut pt, &[(fresh_root_slot, 1), (a + 3 * G1, 0)]);
    assert_eq!(pt.table_frames(), 4);
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn single_page_map_over_a_huge_leaf_creates_nothing() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    let (g, m) = (G1, 8 * G1 + 6 * M2);
    pt.cursor().map::<Size1G>(va(g), pa(G1), rw()).unwrap();
    pt.cursor().map::<Size2M>(va(m), pa(M2), rw()).unwrap();
    let (used, tables, leaves) = (
        testing::frames_in_use(),
        pt.table_frames(),
        leaf_counts(&pt),
    );
    // No frame to spare: creating any table would fail with NoMemory instead.
    testing::set_limit(Some(used));
    let (failed, flushed) = (testing::failed_allocs(), flushes());
    let mut c = pt.cursor();
    let e = Err(MapError::AlreadyMapped);
    // A huge leaf on the way down...
    assert_eq!(c.map::<Size4K>(va(g + M2 + PAGE), pa(0), rw()), e);
    assert_eq!(c.map::<Size2M>(va(g + 4 * M2), pa(0), rw()), e);
    assert_eq!(c.map::<Size4K>(va(m + 3 * PAGE), pa(0), rw()), e);
    // ...or in the slot itself, or smaller leaves below the slot.
    assert_eq!(c.map::<Size1G>(va(g), pa(0), rw()), e);
    assert_eq!(c.map::<Size2M>(va(m), pa(0), rw()), e);
    assert_eq!(c.map::<Size1G>(va(8 * G1), pa(0), rw()), e);
    drop(c);
    testing::set_limit(None);
    assert_eq!(testing::failed_allocs(), failed, "no table was attempted");
    assert_eq!(flushes(), flushed);
    assert_eq!(testing::frames_in_use(), used);
    assert_eq!(pt.table_frames(), tables);
    assert_eq!(leaf_counts(&pt), leaves);
    assert_eq!(
        pt.query(va(g + M2 + PAGE)).unwrap(),
        (pa(G1 + M2 + PAGE), rw(), LeafSize::Size1G)
    );
    assert_eq!(
        pt.query(va(m + 3 * PAGE)).unwrap(),
        (pa(M2 + 3 * PAGE), rw(), LeafSize::Size2M)
    );
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn shared_kernel_half() {
    testing::reset();
    let mut kernel = Pt::try_new().unwrap();
    let kbase = 0xffff_8000_0000_0000;
    kernel
        .cursor()
        .map_region(va(kbase), pa(0), 4 * M2, rw(), true)
        .unwrap();
    {
        let mut user = Pt::try_new().unwrap();
        user.cursor()
            .map::<Size4K>(va(0x1000), pa(0x9000), rw())
            .unwrap();
        // SAFETY: `kernel` outlives `user` and its upper half is not unmapped meanwhile.
        unsafe { user.cursor().copy_kernel_half(&kernel) }.unwrap();
        assert_eq!(user.query(va(kbase + M2 + 5)).unwrap().0, pa(M2 + 5));
        let mut c = user.cursor();
        assert_eq!(
            c.map::<Size4K>(va(kbase + 8 * M2), pa(0), rw()),
            Err(MapError::Shared)
        );
        assert_eq!(
            c.unmap_region(va(kbase), PAGE, |_| ()),
            Err(UnmapError::Shared)
        );
        assert_eq!(
            c.protect_region(va(kbase), PAGE, F::READ),
            Err(ProtectError::Shared)
        );
        c.unmap_region(va(0), 1 << 47, |_| ()).unwrap();
        drop(c);
        assert_eq!(user.table_frames(), 1);
    }
    // The kernel's tables survived the user table.
    assert_eq!(kernel.query(va(kbase + 5)).unwrap().0, pa(5));
    drop(kernel);
    testing::assert_no_leaks();
}

#[test]
fn a_split_2m_leaf_collapses_back_once_its_pages_agree() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    let (v, p) = (5 * G1 + 8 * M2, 3 * G1 + 22 * M2);
    pt.cursor().map::<Size2M>(va(v), pa(p), rw()).unwrap();
    let tables = pt.table_frames();
    let page = v + 300 * PAGE;
    pt.cursor().protect::<Size4K>(va(page), F::READ).unwrap();
    assert_eq!(leaf_counts(&pt), [512, 0, 0]);
    assert_eq!(pt.table_frames(), tables + 1);
    // Mixed flags: nothing changes.
    assert!(!pt.cursor().collapse_2m(va(v)));
    check_pages(&pt, v, p, M2, page, rw(), Some(F::READ));
    // Back to one set of flags: one 2M leaf again, the table freed after the flush.
    pt.cursor().protect::<Size4K>(va(page), rw()).unwrap();
    let before = flushes();
    let mut c = pt.cursor();
    assert!(c.collapse_2m(va(v)));
    assert_eq!(
        testing::frames_in_use(),
        tables + 1,
        "freed before the flush"
    );
    drop(c);
    assert_eq!(flushes(), before + 1);
    assert_eq!(testing::frames_in_use(), tables);
    assert_eq!(leaf_counts(&pt), [0, 1, 0]);
    assert_eq!(
        pt.query(va(page)).map(|(a, f, s)| (a.as_usize(), f, s)),
        Ok((p + 300 * PAGE, rw(), LeafSize::Size2M))
    );
    // Already a leaf, unaligned, unmapped: nothing to do.
    assert!(!pt.cursor().collapse_2m(va(v)));
    assert!(!pt.cursor().collapse_2m(va(v + PAGE)));
    assert!(!pt.cursor().collapse_2m(va(v + M2)));
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn only_a_uniform_run_of_frames_collapses() {
    testing::reset();
    let mut pt = Pt::try_new().unwrap();
    let v = 7 * G1;
    let map_run = |pt: &mut Pt, base: usize, skip: Option<usize>, swap: Option<usize>| {
        let mut c = pt.cursor();
        for i in 0..512 {
            if Some(i) == skip {
                continue;
            }
            // `swap` exchanges the frames of pages i and i + 1.
            let j = match swap {
                Some(s) if i == s => s + 1,
                Some(s) if i == s + 1 => s,
                _ => i,
            };
            c.map::<Size4K>(va(base + i * PAGE), pa(G1 + j * PAGE), rw())
                .unwrap();
        }
    };
    // A hole, two swapped frames, a run that does not start 2M-aligned.
    map_run(&mut pt, v, Some(511), None);
    map_run(&mut pt, v + M2, None, Some(100));
    {
        let mut c = pt.cursor();
        for i in 0..512 {
            c.map::<Size4K>(va(v + 2 * M2 + i * PAGE), pa(G1 + PAGE + i * PAGE), rw())
                .unwrap();
        }
    }
    for b in 0..3 {
        assert!(!pt.cursor().collapse_2m(va(v + b * M2)), "block {b}");
    }
    assert_eq!(leaf_counts(&pt), [511 + 512 + 512, 0, 0]);
    // A uniform run built page by page collapses too.
    map_run(&mut pt, v + 3 * M2, None, None);
    assert!(pt.cursor().collapse_2m(va(v + 3 * M2)));
    assert_eq!(leaf_counts(&pt), [511 + 512 + 512, 1, 0]);
    pt.cursor().unmap_region(va(v), 4 * M2, |_| ()).unwrap();
    assert_eq!(pt.table_frames(), 1);
    drop(pt);
    testing::assert_no_leaks();
}
