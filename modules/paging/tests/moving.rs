//! Moving translations (`Cursor::move_region`, for `mremap`): leaves keep
//! their frames, flags and sizes where the destination's alignment allows,
//! whole tables move with one entry, every error changes nothing, running out
//! of table frames at any point changes nothing and leaks nothing, and a
//! seeded random differential against a page model on every PTE format and
//! both root layouts. Most cases use x86_64 entries (`X64PTE`) with the
//! recording host metadata.

mod common;

use std::collections::BTreeSet;

use axerrno::AxError;
use common::*;
use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::{aarch64::A64PTE, loongarch64::LA64PTE, riscv::Rv64PTE, x86_64::X64PTE};
use page_table_multiarch::{GenericPTE, MappingFlags as F, PagingMetaData};
use paging::{Leaf, LeafSize, MoveError, PageTable, RootLayout, Size1G, Size2M, Size4K, Slot};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use testing::TrackingHandler;

type Table<M, PTE> = PageTable<M, PTE, TrackingHandler>;
type Pt = Table<X64Meta, X64PTE>;

const M2: usize = 2 << 20;
const G1: usize = 1 << 30;
const UPPER: usize = 0xffff_8000_0000_0000;

fn va(x: usize) -> VirtAddr {
    VirtAddr::from(x)
}
fn pa(x: usize) -> PhysAddr {
    PhysAddr::from(x)
}
fn rw() -> F {
    F::READ | F::WRITE
}

/// A leaf as (vaddr, paddr, size, flags).
type Row = (usize, usize, LeafSize, F);

/// Every leaf, in address order.
fn leaves<M, PTE>(pt: &Table<M, PTE>) -> Vec<Row>
where
    M: PagingMetaData<VirtAddr = VirtAddr>,
    PTE: GenericPTE,
{
    let mut out = Vec::new();
    pt.for_each_leaf(|l: Leaf<VirtAddr>| {
        out.push((l.vaddr.as_usize(), l.paddr.as_usize(), l.size, l.flags))
    });
    out
}

/// What must not change when a move fails: every leaf, the table frames, the
/// frames in use.
fn snapshot<M, PTE>(pt: &Table<M, PTE>) -> (Vec<Row>, usize, usize)
where
    M: PagingMetaData<VirtAddr = VirtAddr>,
    PTE: GenericPTE,
{
    (leaves(pt), pt.table_frames(), testing::frames_in_use())
}

/// The table frames a table holding exactly `leaves` needs with no empty
/// table: the roots plus, per leaf, the tables on its path (counted once).
fn tables_for<M: PagingMetaData>(leaves: &[Row], roots: usize) -> usize {
    let la_bits = 12 + 9 * M::LEVELS;
    let mut set = BTreeSet::new();
    for &(v, _, size, _) in leaves {
        let la = v & ((1usize << la_bits) - 1);
        for g in size.height()..M::LEVELS - 1 {
            // The table at height g covers 2^(12 + 9 * (g + 1)) bytes.
            let cover = 12 + 9 * (g + 1);
            set.insert((g, la >> cover));
        }
    }
    roots + set.len()
}

fn roots(layout: RootLayout) -> usize {
    match layout {
        RootLayout::Single => 1,
        RootLayout::PerHalf => 2,
    }
}

/// Every 4K page of `[v, v + size)` translates to `p + offset` with `flags`
/// and leaves of `size_is`; `[old, old + size)` translates nothing.
fn check_moved(pt: &Pt, old: usize, v: usize, p: usize, size: usize, flags: F, size_is: LeafSize) {
    for off in (0..size).step_by(PAGE) {
        let (q, f, s) = pt.query(va(v + off)).unwrap();
        assert_eq!(
            (q.as_usize(), f, s),
            (p + off, flags, size_is),
            "page {:#x}",
            v + off
        );
        assert!(
            pt.query(va(old + off)).is_err(),
            "{:#x} still mapped",
            old + off
        );
    }
}

#[test]
fn moves_4k_pages_and_frees_the_old_tables() {
    testing::reset();
    {
        let mut pt = Pt::try_new().unwrap();
        let (a, b) = (0x10_0000_0000 + 5 * PAGE, 0x20_0000_0000 + 77 * PAGE);
        pt.cursor()
            .map_region(va(a), pa(0x8000_0000), 40 * PAGE, rw(), false)
            .unwrap();
        pt.cursor()
            .protect_region(va(a + 3 * PAGE), 2 * PAGE, F::READ)
            .unwrap();
        let n = flushes();
        pt.cursor().move_region(va(a), va(b), 40 * PAGE).unwrap();
        assert!(flushes() > n, "the move flushed");
        for i in 0..40 {
            let f = if (3..5).contains(&i) { F::READ } else { rw() };
            assert_eq!(
                pt.query(va(b + i * PAGE)).unwrap(),
                (pa(0x8000_0000 + i * PAGE), f, LeafSize::Size4K)
            );
            assert!(pt.query(va(a + i * PAGE)).is_err());
        }
        // The old tables are gone: exactly the tables the new leaves need.
        let l = leaves(&pt);
        assert_eq!(l.len(), 40);
        assert_eq!(pt.table_frames(), tables_for::<X64Meta>(&l, 1));
        // And back, into the same old place.
        pt.cursor().move_region(va(b), va(a), 40 * PAGE).unwrap();
        check_moved(&pt, b, a, 0x8000_0000, 3 * PAGE, rw(), LeafSize::Size4K);
        assert_eq!(pt.table_frames(), tables_for::<X64Meta>(&leaves(&pt), 1));
    }
    testing::assert_no_leaks();
}

#[test]
fn huge_leaves_keep_their_size_at_a_congruent_destination() {
    testing::reset();
    {
        let mut pt = Pt::try_new().unwrap();
        // 2M leaves to a 2M-aligned destination (not 1G aligned).
        let (a, b) = (3 * G1 + 4 * M2, 9 * G1 + 7 * M2);
        pt.cursor()
            .map_region(va(a), pa(6 * M2), 3 * M2, F::READ | F::EXECUTE, true)
            .unwrap();
        pt.cursor().move_region(va(a), va(b), 3 * M2).unwrap();
        check_moved(
            &pt,
            a,
            b,
            6 * M2,
            3 * M2,
            F::READ | F::EXECUTE,
            LeafSize::Size2M,
        );
        assert_eq!(leaves(&pt).len(), 3);
        // 1G leaves to a 1G-aligned destination.
        let (c, d) = (64 * G1, 130 * G1);
        pt.cursor()
            .map_region(va(c), pa(2 * G1), 2 * G1, rw(), true)
            .unwrap();
        pt.cursor().move_region(va(c), va(d), 2 * G1).unwrap();
        for off in [0, PAGE, G1 - PAGE, G1, 2 * G1 - PAGE] {
            assert_eq!(
                pt.query(va(d + off)).unwrap(),
                (pa(2 * G1 + off), rw(), LeafSize::Size1G)
            );
            assert!(pt.query(va(c + off)).is_err());
        }
        let l = leaves(&pt);
        assert_eq!(l.len(), 5);
        assert_eq!(pt.table_frames(), tables_for::<X64Meta>(&l, 1));
    }
    testing::assert_no_leaks();
}

#[test]
fn huge_leaves_become_smaller_at_a_non_congruent_destination() {
    testing::reset();
    {
        let mut pt = Pt::try_new().unwrap();
        // A 2M leaf moved by a multiple of 4K only: 512 4K leaves, same frames.
        let (a, b) = (G1 + 2 * M2, 2 * G1 + 5 * M2 + 3 * PAGE);
        pt.cursor().map::<Size2M>(va(a), pa(10 * M2), rw()).unwrap();
        pt.cursor().move_region(va(a), va(b), M2).unwrap();
        check_moved(&pt, a, b, 10 * M2, M2, rw(), LeafSize::Size4K);
        let l = leaves(&pt);
        assert_eq!(l.len(), 512);
        assert!(l.iter().all(|x| x.2 == LeafSize::Size4K));
        assert_eq!(pt.table_frames(), tables_for::<X64Meta>(&l, 1));
        pt.cursor().unmap_region(va(b), M2, |_| ()).unwrap();
        // A 1G leaf moved by a multiple of 2M only: 512 2M leaves.
        let (c, d) = (8 * G1, 20 * G1 + 3 * M2);
        pt.cursor().map::<Size1G>(va(c), pa(G1), F::READ).unwrap();
        pt.cursor().move_region(va(c), va(d), G1).unwrap();
        let l = leaves(&pt);
        assert_eq!(l.len(), 512);
        for (i, x) in l.iter().enumerate() {
            assert_eq!(*x, (d + i * M2, G1 + i * M2, LeafSize::Size2M, F::READ));
        }
        assert_eq!(pt.table_frames(), tables_for::<X64Meta>(&l, 1));
        // The same 2M leaves moved by 4K: 512 * 512 4K leaves.
        let e = 40 * G1 + PAGE;
        pt.cursor().move_region(va(d), va(e), G1).unwrap();
        let l = leaves(&pt);
        assert_eq!(l.len(), 512 * 512);
        assert!(
            l.iter()
                .enumerate()
                .all(|(i, x)| *x == (e + i * PAGE, G1 + i * PAGE, LeafSize::Size4K, F::READ))
        );
        assert_eq!(pt.table_frames(), tables_for::<X64Meta>(&l, 1));
    }
    testing::assert_no_leaks();
}

#[test]
fn a_populated_table_moves_whole() {
    testing::reset();
    {
        let mut pt = Pt::try_new().unwrap();
        // 512 4K leaves of mixed flags: one table at height 0.
        let (a, b) = (5 * G1 + 6 * M2, 11 * G1 + 9 * M2);
        pt.cursor()
            .map_region(va(a), pa(0x4000_0000), M2, rw(), false)
            .unwrap();
        pt.cursor()
            .protect_region(va(a + 100 * PAGE), 7 * PAGE, F::READ)
            .unwrap();
        let before = leaves(&pt);
        let tables = pt.table_frames();
        assert_eq!(tables, 1 + 1 + 1 + 1);
        // The move needs one table (the 1G table holding b's 2M entry) and
        // frees one (a's 1G table, left empty).
        testing::set_limit(Some(testing::frames_in_use() + 1));
        pt.cursor().move_region(va(a), va(b), M2).unwrap();
        testing::set_limit(None);
        assert_eq!(pt.table_frames(), tables);
        let after = leaves(&pt);
        assert_eq!(after.len(), 512);
        for (x, y) in before.iter().zip(&after) {
            assert_eq!((x.0 - a, x.1, x.2, x.3), (y.0 - b, y.1, y.2, y.3));
        }
        for i in 0..512 {
            assert!(pt.query(va(a + i * PAGE)).is_err());
        }
        // The whole 1G around it, to a 1G-aligned place: the 1G table
        // (holding the 4K table) moves with one entry, nothing allocated.
        let c = 300 * G1;
        testing::set_limit(Some(testing::frames_in_use()));
        pt.cursor().move_region(va(11 * G1), va(c), G1).unwrap();
        testing::set_limit(None);
        assert_eq!(pt.table_frames(), tables);
        let moved = leaves(&pt);
        for (x, y) in before.iter().zip(&moved) {
            assert_eq!((x.0 - a, x.1, x.2, x.3), (y.0 - c - 9 * M2, y.1, y.2, y.3));
        }
    }
    testing::assert_no_leaks();
}

#[test]
fn a_populated_gigabyte_moves_with_its_tables() {
    testing::reset();
    {
        let mut pt = Pt::try_new().unwrap();
        // 1G of 4K leaves: 512 tables of 512 leaves under one 1G table.
        let a = 2 * G1;
        pt.cursor()
            .map_region(va(a), pa(0), G1, rw(), false)
            .unwrap();
        let tables = pt.table_frames();
        assert_eq!(tables, 1 + 1 + 1 + 512);
        let in_use = testing::frames_in_use();
        // 2M congruent: the 512 tables move as 512 entries; the two 1G
        // tables the destination straddles are allocated, the source's is freed.
        let b = 7 * G1 + 8 * M2;
        testing::set_limit(Some(in_use + 2));
        pt.cursor().move_region(va(a), va(b), G1).unwrap();
        testing::set_limit(None);
        assert_eq!(pt.table_frames(), tables + 1);
        assert_eq!(testing::frames_in_use(), in_use + 1);
        // Back to a 1G-aligned place: the 512 entries again.
        pt.cursor().move_region(va(b), va(a), G1).unwrap();
        assert_eq!(pt.table_frames(), tables);
        // 1G congruent: the 1G table moves with one entry.
        let c = 100 * G1;
        testing::set_limit(Some(testing::frames_in_use()));
        pt.cursor().move_region(va(a), va(c), G1).unwrap();
        testing::set_limit(None);
        assert_eq!(pt.table_frames(), tables);
        for off in (0..G1).step_by(M2 + 5 * PAGE) {
            assert_eq!(
                pt.query(va(c + off)).unwrap(),
                (pa(off), rw(), LeafSize::Size4K)
            );
            assert!(pt.query(va(a + off)).is_err());
        }
        // No frame was allocated and no leaf rewritten: the speed of this
        // (against copying the data) is measured by `make bench`.
    }
    testing::assert_no_leaks();
}

#[test]
fn partial_ranges_move_and_the_rest_stays() {
    testing::reset();
    {
        let mut pt = Pt::try_new().unwrap();
        let a = G1;
        // 4M of 4K leaves then a 2M leaf; move from 1M in up to the 2M leaf.
        pt.cursor()
            .map_region(va(a), pa(0x1_0000_0000), 2 * M2, rw(), false)
            .unwrap();
        pt.cursor()
            .map::<Size2M>(va(a + 2 * M2), pa(0x2_0000_0000), F::READ)
            .unwrap();
        let (from, size) = (a + M2 / 2, 3 * M2 / 2);
        // The same offset in 2M: the first 2M table's half moves leaf by
        // leaf, the second table moves whole.
        let to = 3 * G1 + 3 * M2 + M2 / 2;
        pt.cursor().move_region(va(from), va(to), size).unwrap();
        let l = leaves(&pt);
        // Before `from`: 256 pages; after `from + size`: 256 pages and the 2M leaf.
        let (stay, moved): (Vec<_>, Vec<_>) = l.iter().partition(|x| x.0 < 2 * G1);
        let (stay, moved): (Vec<&Row>, Vec<_>) = (stay, moved);
        assert_eq!(stay.len(), 256 + 1);
        assert!(stay.iter().all(|x| x.0 < from || x.0 >= from + size));
        assert_eq!(moved.len(), 768);
        for x in &moved {
            let (p, f, _) = pt.query(va(x.0)).unwrap();
            assert_eq!(p.as_usize(), 0x1_0000_0000 + (x.0 - to + (from - a)));
            assert_eq!(f, rw());
        }
        assert_eq!(
            pt.query(va(a + 2 * M2 + 5 * PAGE)).unwrap(),
            (pa(0x2_0000_0000 + 5 * PAGE), F::READ, LeafSize::Size2M)
        );
        assert_eq!(pt.table_frames(), tables_for::<X64Meta>(&l, 1));
        // Holes in the source are fine and stay holes.
        pt.cursor().move_region(va(a), va(5 * G1), 4 * M2).unwrap();
        assert_eq!(
            pt.lookup(va(5 * G1 + M2 / 2 + PAGE)),
            Ok(Slot::Hole { size: PAGE })
        );
        assert_eq!(pt.lookup(va(5 * G1 + M2)), Ok(Slot::Hole { size: M2 }));
        assert_eq!(
            pt.query(va(5 * G1 + 2 * M2)).unwrap(),
            (pa(0x2_0000_0000), F::READ, LeafSize::Size2M)
        );
        // An empty source moves nothing.
        let s = snapshot(&pt);
        pt.cursor()
            .move_region(va(60 * G1), va(61 * G1), G1)
            .unwrap();
        assert_eq!(snapshot(&pt), s);
    }
    testing::assert_no_leaks();
}

#[test]
fn every_error_changes_nothing() {
    testing::reset();
    {
        let mut kernel = Pt::try_new().unwrap();
        kernel
            .cursor()
            .map::<Size4K>(va(UPPER + G1), pa(0x5000), rw())
            .unwrap();
        let mut pt = Pt::try_new().unwrap();
        let a = G1;
        pt.cursor()
            .map_region(va(a), pa(0), 4 * M2, rw(), false)
            .unwrap();
        pt.cursor()
            .map::<Size2M>(va(a + 4 * M2), pa(8 * M2), rw())
            .unwrap();
        pt.cursor()
            .map::<Size4K>(va(8 * G1), pa(0x7000), rw())
            .unwrap();
        // SAFETY: `kernel` outlives `pt` and keeps its upper half.
        unsafe { pt.cursor().copy_kernel_half(&kernel) }.unwrap();
        let before = snapshot(&pt);
        let cases: Vec<(usize, usize, usize, MoveError)> = vec![
            (a + 1, 4 * G1, PAGE, MoveError::NotAligned),
            (a, 4 * G1 + 8, PAGE, MoveError::NotAligned),
            (a, 4 * G1, PAGE + 1, MoveError::NotAligned),
            (a, 4 * G1, 0, MoveError::NotAligned),
            (0x0000_8000_0000_0000, 4 * G1, PAGE, MoveError::OutOfRange),
            (a, 0x0000_8000_0000_0000, PAGE, MoveError::OutOfRange),
            (a, 0x0000_7fff_ffff_f000, 2 * PAGE, MoveError::OutOfRange),
            (a, usize::MAX & !(PAGE - 1), 2 * PAGE, MoveError::OutOfRange),
            (a, a + M2, 2 * M2, MoveError::Overlap),
            (a + M2, a, 2 * M2, MoveError::Overlap),
            (a, a, PAGE, MoveError::Overlap),
            (a, UPPER + 4 * G1, PAGE, MoveError::Shared),
            (UPPER + G1, 4 * G1, PAGE, MoveError::Shared),
            (a + 4 * M2 + PAGE, 4 * G1, PAGE, MoveError::Straddles),
            (a + 3 * M2, 4 * G1, M2 + PAGE, MoveError::Straddles),
            (a, 8 * G1 - 4 * M2, 5 * M2, MoveError::AlreadyMapped),
            (a, 8 * G1, PAGE, MoveError::AlreadyMapped),
            (8 * G1, a + 4 * M2 + PAGE, PAGE, MoveError::AlreadyMapped),
        ];
        for (from, to, size, want) in cases {
            let r = pt.cursor().move_region(va(from), va(to), size);
            assert_eq!(r, Err(want), "{from:#x} -> {to:#x} + {size:#x}");
            assert_eq!(snapshot(&pt), before, "{from:#x} -> {to:#x} + {size:#x}");
        }
        // Out of table frames: see `no_memory_at_every_point_changes_nothing`.
        testing::set_limit(Some(testing::frames_in_use()));
        assert_eq!(
            pt.cursor().move_region(va(a), va(20 * G1 + PAGE), PAGE),
            Err(MoveError::NoMemory)
        );
        testing::set_limit(None);
        assert_eq!(snapshot(&pt), before);
        drop(pt);
    }
    testing::assert_no_leaks();
}

#[test]
fn errors_convert_like_the_other_enums() {
    assert_eq!(
        AxError::from(MoveError::AlreadyMapped),
        AxError::AlreadyExists
    );
    assert_eq!(AxError::from(MoveError::NoMemory), AxError::NoMemory);
    assert_eq!(AxError::from(MoveError::OutOfRange), AxError::BadAddress);
    assert_eq!(AxError::from(MoveError::Shared), AxError::PermissionDenied);
    for e in [
        MoveError::NotAligned,
        MoveError::Overlap,
        MoveError::Straddles,
    ] {
        assert_eq!(AxError::from(e), AxError::InvalidInput);
    }
    assert_eq!(
        AxError::from(MoveError::NotAligned),
        AxError::from(paging::MapError::NotAligned)
    );
}

/// Sets up a table with `setup`, then tries the move under every frame limit
/// from "none free" up: each failure must be `NoMemory` with the table and
/// the frames in use exactly as before; the first success ends the loop.
/// Returns how many limits failed.
fn under_every_limit(setup: impl Fn(&mut Pt), from: usize, to: usize, size: usize) -> usize {
    testing::reset();
    let mut fails = 0;
    {
        let mut pt = Pt::try_new().unwrap();
        setup(&mut pt);
        let before = snapshot(&pt);
        let want = {
            // The same move on a copy, without a limit: the expected result.
            let mut other = Pt::try_new().unwrap();
            setup(&mut other);
            other.cursor().move_region(va(from), va(to), size).unwrap();
            leaves(&other)
        };
        let base = testing::frames_in_use();
        for extra in 0.. {
            testing::set_limit(Some(base + extra));
            let r = pt.cursor().move_region(va(from), va(to), size);
            testing::set_limit(None);
            match r {
                Ok(()) => break,
                Err(e) => {
                    assert_eq!(e, MoveError::NoMemory, "limit +{extra}");
                    assert_eq!(snapshot(&pt), before, "limit +{extra}");
                    fails += 1;
                }
            }
        }
        assert_eq!(leaves(&pt), want);
        assert_eq!(pt.table_frames(), tables_for::<X64Meta>(&want, 1));
    }
    testing::assert_no_leaks();
    fails
}

#[test]
fn no_memory_at_every_point_changes_nothing() {
    // 4K pages over two 2M tables and two 1G tables, to a fresh 512G slot:
    // 1G table, 2M tables, ... all missing.
    let spread = |pt: &mut Pt| {
        let mut c = pt.cursor();
        c.map_region(
            va(G1 - M2 - 3 * PAGE),
            pa(0x9000_0000),
            2 * M2 + 6 * PAGE,
            rw(),
            false,
        )
        .unwrap();
    };
    let n = under_every_limit(
        spread,
        G1 - M2 - 3 * PAGE,
        0x80_0000_0000 + 5 * PAGE,
        2 * M2 + 6 * PAGE,
    );
    assert_eq!(n, 1 + 1 + 3, "a 512G table, a 1G table, three 2M tables");
    // A 2M leaf moved by 4K: its 4K table (and the path) are needed.
    let leaf = |pt: &mut Pt| {
        pt.cursor()
            .map::<Size2M>(va(4 * M2), pa(2 * M2), rw())
            .unwrap();
    };
    assert_eq!(under_every_limit(leaf, 4 * M2, 3 * G1 + PAGE, M2), 1 + 2);
    // A 1G leaf moved by 4K: two 1G tables and 513 4K tables.
    let big = |pt: &mut Pt| {
        pt.cursor().map::<Size1G>(va(G1), pa(G1), rw()).unwrap();
    };
    assert_eq!(under_every_limit(big, G1, 4 * G1 + PAGE, G1), 2 + 513);
    // A table moved whole to a new 1G slot: one table.
    let table = |pt: &mut Pt| {
        pt.cursor()
            .map_region(va(M2), pa(0), M2, rw(), false)
            .unwrap();
    };
    assert_eq!(under_every_limit(table, M2, 5 * G1 + 7 * M2, M2), 1);
}

#[test]
fn moves_between_halves_with_either_layout() {
    for layout in [RootLayout::Single, RootLayout::PerHalf] {
        testing::reset();
        {
            let mut pt = Pt::try_new_with(layout).unwrap();
            let (a, b) = (3 * G1 + 5 * M2, UPPER + 7 * G1 + 9 * M2);
            pt.cursor()
                .map_region(va(a), pa(0), M2 + 3 * PAGE, rw(), false)
                .unwrap();
            pt.cursor()
                .move_region(va(a), va(b), M2 + 3 * PAGE)
                .unwrap();
            check_moved(&pt, a, b, 0, M2 + 3 * PAGE, rw(), LeafSize::Size4K);
            let l = leaves(&pt);
            assert_eq!(pt.table_frames(), tables_for::<X64Meta>(&l, roots(layout)));
            // A whole root entry (512G) to the other half and back.
            let c = 0x80_0000_0000;
            pt.cursor()
                .map::<Size1G>(va(c + 3 * G1), pa(G1), F::READ)
                .unwrap();
            let frames = pt.table_frames();
            pt.cursor()
                .move_region(va(c), va(UPPER + 4 * c), c)
                .unwrap();
            assert_eq!(
                pt.query(va(UPPER + 4 * c + 3 * G1)).unwrap(),
                (pa(G1), F::READ, LeafSize::Size1G)
            );
            assert_eq!(pt.table_frames(), frames);
            pt.cursor()
                .move_region(va(b), va(a), M2 + 3 * PAGE)
                .unwrap();
            check_moved(&pt, b, a, 0, M2 + 3 * PAGE, rw(), LeafSize::Size4K);
            let l = leaves(&pt);
            assert_eq!(pt.table_frames(), tables_for::<X64Meta>(&l, roots(layout)));
        }
        testing::assert_no_leaks();
    }
}

#[test]
fn retired_tables_are_freed_after_the_flush() {
    testing::reset();
    {
        let mut pt = Pt::try_new().unwrap();
        pt.cursor()
            .map_region(va(G1), pa(0), 3 * PAGE, rw(), false)
            .unwrap();
        let in_use = testing::frames_in_use();
        let mut c = pt.cursor();
        c.move_region(va(G1), va(2 * G1 + M2 + PAGE), 3 * PAGE)
            .unwrap();
        // Two new tables (a 1G table and a 4K table); the two old ones wait
        // for the flush.
        assert_eq!(testing::frames_in_use(), in_use + 2);
        drop(c);
        assert_eq!(frames_at_last_flush(), in_use + 2);
        assert_eq!(testing::frames_in_use(), in_use);
    }
    testing::assert_no_leaks();
}

// ------------------------------------------------------------ differential

/// A random window of a few 1G slots (and the upper half's), so that moves
/// meet 4K, 2M and 1G alignment, tables shared by both ranges, and holes.
fn pick<M: PagingMetaData>(rng: &mut SmallRng, upper: bool) -> usize {
    pick_in::<M>(rng, upper, 4)
}

/// [`pick`] in the first `slots` 1G slots of a half.
fn pick_in<M: PagingMetaData>(rng: &mut SmallRng, upper: bool, slots: usize) -> usize {
    let la_bits = 12 + 9 * M::LEVELS;
    let g = rng.random_range(0..slots) * G1;
    let m = rng.random_range(0..512usize) * M2;
    let p = if rng.random_ratio(1, 2) {
        rng.random_range(0..512usize) * PAGE
    } else {
        0
    };
    let off = if rng.random_ratio(1, 4) { 0 } else { m + p };
    let base = if upper {
        usize::MAX << (la_bits - 1)
    } else {
        0
    };
    base + g + off
}

fn random_size(rng: &mut SmallRng) -> usize {
    match rng.random_range(0..16) {
        0..=4 => rng.random_range(1..64usize) * PAGE,
        5..=9 => rng.random_range(1..4usize) * M2,
        10..=14 => rng.random_range(1..1024usize) * PAGE,
        _ => G1,
    }
}

/// Seeded random maps, unmaps and moves, each compared with the model; after
/// every step the leaves equal the model and the table holds no empty table.
fn differential<M, PTE>(seed: u64, layout: RootLayout, steps: usize)
where
    M: PagingMetaData<VirtAddr = VirtAddr>,
    PTE: GenericPTE,
{
    testing::reset();
    {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut pt = Table::<M, PTE>::try_new_with(layout).unwrap();
        let mut model = Model::default();
        let flag_set = [rw(), F::READ, F::READ | F::EXECUTE];
        // Moves that moved something, Straddles, AlreadyMapped, Overlap.
        let mut seen = [0usize; 4];
        for step in 0..steps {
            let upper = rng.random_ratio(1, 3);
            match rng.random_range(0..10) {
                0..=3 => {
                    let (v, size) = (pick::<M>(&mut rng, upper), random_size(&mut rng));
                    let p = (rng.random_range(0..1usize << 20) * PAGE) & !(size.min(G1) - 1);
                    let p = if rng.random_ratio(1, 2) {
                        p | (v & (G1 - 1))
                    } else {
                        p
                    };
                    let f = norm::<PTE>(flag_set[rng.random_range(0..3)]);
                    let r = pt.cursor().map_region(va(v), pa(p), size, f, true);
                    if r.is_ok() {
                        model.map(v, p, size, f);
                    } else {
                        assert!(
                            Table::<M, PTE>::check_range(va(v), size).is_err()
                                || model.any_mapped(v, size),
                            "step {step}: map {v:#x}+{size:#x}: {r:?}"
                        );
                    }
                }
                4 => {
                    let (v, size) = (pick::<M>(&mut rng, upper), random_size(&mut rng));
                    if pt.cursor().unmap_region(va(v), size, |_| ()).is_ok() {
                        model.unmap(v, size);
                    }
                }
                _ => {
                    // Often from a mapped run (somewhere around its start).
                    let runs = model.canonical();
                    let from = if !runs.is_empty() && rng.random_ratio(2, 3) {
                        let run = runs[rng.random_range(0..runs.len())];
                        let back = rng.random_range(0..4usize) * PAGE;
                        let back = if rng.random_ratio(1, 2) { back } else { 0 };
                        run.0.wrapping_sub(back)
                    } else {
                        pick::<M>(&mut rng, upper)
                    };
                    let to_upper = rng.random_ratio(1, 3);
                    let to = pick_in::<M>(&mut rng, to_upper, 8);
                    let size = random_size(&mut rng);
                    let valid = Table::<M, PTE>::check_range(va(from), size).is_ok()
                        && Table::<M, PTE>::check_range(va(to), size).is_ok();
                    let before = snapshot(&pt);
                    let mut r = pt.cursor().move_region(va(from), va(to), size);
                    let mut split = false;
                    let straddles = |x: usize| matches!(pt.lookup(va(x)), Ok(Slot::Leaf(l)) if l.vaddr.as_usize() != x);
                    let want = if !valid {
                        None
                    } else if (from as u128) < to as u128 + size as u128
                        && (to as u128) < from as u128 + size as u128
                    {
                        Some(Err(MoveError::Overlap))
                    } else if straddles(from)
                        || (from.wrapping_add(size) != 0 && straddles(from.wrapping_add(size)))
                    {
                        Some(Err(MoveError::Straddles))
                    } else if model.any_mapped(to, size) {
                        Some(Err(MoveError::AlreadyMapped))
                    } else {
                        Some(Ok(()))
                    };
                    match want {
                        None => assert_eq!(r, Err(MoveError::OutOfRange), "step {step}"),
                        Some(w) => {
                            assert_eq!(r, w, "step {step}: {from:#x} -> {to:#x} + {size:#x}")
                        }
                    }
                    match r {
                        Err(MoveError::Straddles) => seen[1] += 1,
                        Err(MoveError::AlreadyMapped) => seen[2] += 1,
                        Err(MoveError::Overlap) => seen[3] += 1,
                        Ok(()) if model.any_mapped(from, size) => seen[0] += 1,
                        _ => {}
                    }
                    if r == Err(MoveError::Straddles) && rng.random_ratio(1, 2) {
                        // What a caller does: split the edges, then move.
                        assert_eq!(snapshot(&pt), before, "step {step}: failed move changed");
                        let mut c = pt.cursor();
                        c.split_at(va(from)).unwrap();
                        if from.wrapping_add(size) != 0 {
                            c.split_at(va(from.wrapping_add(size))).unwrap();
                        }
                        r = c.move_region(va(from), va(to), size);
                        drop(c);
                        split = true;
                        let want = if model.any_mapped(to, size) {
                            Err(MoveError::AlreadyMapped)
                        } else {
                            Ok(())
                        };
                        assert_eq!(r, want, "step {step}: after splitting the edges");
                    }
                    if r.is_ok() {
                        let old = model.clone();
                        for (v, p, n) in model.unmap(from, size) {
                            let f = old.query(v).unwrap().1;
                            model.map(v.wrapping_sub(from).wrapping_add(to), p, n, f);
                        }
                    } else if !split {
                        assert_eq!(snapshot(&pt), before, "step {step}: failed move changed");
                    }
                }
            }
            let l = leaves(&pt);
            let got = canonical(l.iter().map(|&(v, p, s, f)| (v, p, s.bytes(), f)));
            assert_eq!(got, model.canonical(), "step {step}");
            assert_eq!(
                pt.table_frames(),
                tables_for::<M>(&l, roots(layout)),
                "step {step}: an empty table is left"
            );
        }
        eprintln!("moves: {seen:?} (moved something, Straddles, AlreadyMapped, Overlap)");
        assert!(seen[..3].iter().all(|&n| n > 0), "{seen:?}");
        assert!(seen[0] > steps / 20, "{seen:?}");
    }
    testing::assert_no_leaks();
}

#[test]
fn differential_x86_64() {
    differential::<X64Meta, X64PTE>(1, RootLayout::Single, 400);
    differential::<X64Meta, X64PTE>(2, RootLayout::PerHalf, 400);
}

#[test]
fn differential_riscv_sv39_sv48() {
    differential::<Sv39Meta, Rv64PTE>(3, RootLayout::Single, 400);
    differential::<Sv48Meta, Rv64PTE>(4, RootLayout::Single, 400);
}

#[test]
fn differential_aarch64_per_half() {
    differential::<A64Meta, A64PTE>(5, RootLayout::PerHalf, 400);
}

#[test]
fn differential_loongarch64() {
    differential::<La64Meta, LA64PTE>(6, RootLayout::PerHalf, 400);
}
