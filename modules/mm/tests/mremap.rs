//! `mremap`: shrink, grow in place, move (with and without `FIXED`) by
//! moving page-table entries, huge leaves included; the error table's rows;
//! nothing changed on failure; frames and data kept page by page.

mod common;

use axerrno::AxError;
use common::{PAGE, Space, WIN, WSIZE, finish, read, snapshot, space, va, write};
use hal::Access;
use memory_addr::PhysAddr;
use mm::{AreaKind, LeafSize, MappingFlags, MemObject, MmapFlags, Prot, RemapFlags};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const M2: usize = 0x20_0000;

fn mmap(s: &mut Space, addr: Option<usize>, len: usize, flags: MmapFlags) -> usize {
    s.mmap(addr.map(va), len, RW, flags).unwrap().as_usize()
}

/// Frame, flags and leaf size of every page of `[a, a + len)`.
fn frames(s: &Space, a: usize, len: usize) -> Vec<Option<(PhysAddr, MappingFlags, LeafSize)>> {
    (a..a + len)
        .step_by(PAGE)
        .map(|p| {
            s.translate(va(p))
                .ok()
                .map(|t| (t.paddr, t.flags, t.page_size))
        })
        .collect()
}

fn fill(s: &Space, a: usize, len: usize) {
    for p in (a..a + len).step_by(PAGE) {
        s.handle_page_fault(va(p), Access::Write).unwrap();
        write(s, p, p as u64 ^ 0x5a5a);
    }
}

fn check(s: &Space, new: usize, old: usize, len: usize) {
    for i in (0..len).step_by(PAGE) {
        assert_eq!(read(s, new + i), (old + i) as u64 ^ 0x5a5a, "page {i:#x}");
    }
}

fn remap(
    s: &mut Space,
    old: usize,
    old_len: usize,
    new_len: usize,
    flags: RemapFlags,
    to: Option<usize>,
) -> Result<usize, AxError> {
    s.mremap(va(old), old_len, new_len, flags, to.map(va))
        .map(|v| v.as_usize())
}

#[test]
fn shrink_unmaps_the_tail_and_frees_its_frames() {
    let mut s = space();
    let a = mmap(&mut s, None, 16 * PAGE, MmapFlags::POPULATE);
    assert_eq!(
        remap(&mut s, a, 16 * PAGE, 5 * PAGE, RemapFlags::empty(), None),
        Ok(a)
    );
    assert_eq!(s.stats().data_frames, 5);
    assert!(s.translate(va(a + 5 * PAGE)).is_err());
    assert_eq!(s.areas().count(), 1);
    finish(s);
}

#[test]
fn grows_in_place_when_the_range_after_is_free() {
    let mut s = space();
    let a = mmap(&mut s, None, 4 * PAGE, MmapFlags::POPULATE);
    fill(&s, a, 4 * PAGE);
    let before = frames(&s, a, 4 * PAGE);
    assert_eq!(
        remap(&mut s, a, 4 * PAGE, 10 * PAGE, RemapFlags::empty(), None),
        Ok(a)
    );
    // One area, eager: the tail was populated; the head kept its frames.
    let areas: Vec<_> = s.areas().collect();
    assert_eq!(areas.len(), 1);
    assert_eq!(areas[0].size(), 10 * PAGE);
    assert_eq!(frames(&s, a, 4 * PAGE), before);
    assert_eq!(s.stats().data_frames, 10);
    check(&s, a, a, 4 * PAGE);
    finish(s);
}

#[test]
fn moves_by_moving_entries_keeping_frames_flags_and_data() {
    let mut s = space();
    let a = mmap(&mut s, None, 8 * PAGE, MmapFlags::empty());
    // Something right after it, so it cannot grow in place.
    mmap(&mut s, Some(a + 8 * PAGE), PAGE, MmapFlags::FIXED);
    fill(&s, a, 6 * PAGE); // two pages stay lazy
    let before = frames(&s, a, 8 * PAGE);
    let used = testing::frames_in_use();
    let n = remap(&mut s, a, 8 * PAGE, 12 * PAGE, RemapFlags::MAYMOVE, None).unwrap();
    assert_ne!(n, a);
    assert_eq!(frames(&s, n, 8 * PAGE), before, "same frames, flags, sizes");
    assert!(frames(&s, a, 8 * PAGE).iter().all(Option::is_none));
    check(&s, n, a, 2 * PAGE);
    // The lazy pages and the tail fault in at the new place.
    s.handle_page_fault(va(n + 7 * PAGE), Access::Write)
        .unwrap();
    s.handle_page_fault(va(n + 11 * PAGE), Access::Write)
        .unwrap();
    assert_eq!(s.stats().data_frames, 8);
    assert!(testing::frames_in_use() >= used);
    finish(s);
}

#[test]
fn moves_huge_pages_as_huge_leaves() {
    let mut s = space();
    let a = mmap(
        &mut s,
        None,
        4 * M2,
        MmapFlags::HUGE_2M | MmapFlags::POPULATE,
    );
    mmap(&mut s, Some(a + 4 * M2), PAGE, MmapFlags::FIXED);
    let before = frames(&s, a, 4 * M2);
    assert!(before.iter().all(|f| f.unwrap().2 == LeafSize::Size2M));
    let n = remap(
        &mut s,
        a,
        4 * M2,
        4 * M2,
        RemapFlags::MAYMOVE | RemapFlags::FIXED,
        Some(WIN + WSIZE / 2),
    )
    .unwrap();
    assert_eq!(frames(&s, n, 4 * M2), before);
    assert_eq!(s.stats().data_frames, 4 * 512);
    // Not congruent modulo 2M: the same frames as 4K leaves.
    let odd = WIN + WSIZE / 4 + PAGE;
    let m = remap(
        &mut s,
        n,
        M2,
        M2,
        RemapFlags::MAYMOVE | RemapFlags::FIXED,
        Some(odd),
    )
    .unwrap();
    let moved = frames(&s, m, M2);
    for (i, f) in moved.iter().enumerate() {
        let (pa, _, size) = f.unwrap();
        assert_eq!(size, LeafSize::Size4K);
        assert_eq!(pa, before[i].unwrap().0);
    }
    finish(s);
}

#[test]
fn moves_a_populated_64m_region_with_the_same_frames() {
    let mut s = space();
    let len = 64 << 20;
    let a = mmap(&mut s, None, len, MmapFlags::POPULATE);
    for p in (a..a + len).step_by(PAGE) {
        write(&s, p, p as u64);
    }
    let before = frames(&s, a, len);
    let tables = s.stats().page_table_frames;
    let to = WIN + WSIZE / 2;
    let n = remap(
        &mut s,
        a,
        len,
        len,
        RemapFlags::MAYMOVE | RemapFlags::FIXED,
        Some(to),
    )
    .unwrap();
    assert_eq!(n, to);
    assert_eq!(frames(&s, n, len), before);
    for p in (0..len).step_by(PAGE) {
        assert_eq!(read(&s, n + p), (a + p) as u64);
    }
    // Whole tables moved: no more table frames than before (plus the
    // destination's upper levels).
    assert!(
        s.stats().page_table_frames <= tables + 2,
        "{} vs {tables}",
        s.stats().page_table_frames
    );
    finish(s);
}

#[test]
fn fixed_replaces_what_is_there_and_shrinks_or_grows() {
    let mut s = space();
    let a = mmap(&mut s, None, 4 * PAGE, MmapFlags::POPULATE);
    fill(&s, a, 4 * PAGE);
    let b = mmap(
        &mut s,
        Some(WIN + 0x100_0000),
        8 * PAGE,
        MmapFlags::POPULATE | MmapFlags::FIXED,
    );
    let head = frames(&s, a, 2 * PAGE);
    // Shrink while moving over part of b.
    let n = remap(
        &mut s,
        a,
        4 * PAGE,
        2 * PAGE,
        RemapFlags::MAYMOVE | RemapFlags::FIXED,
        Some(b + PAGE),
    )
    .unwrap();
    assert_eq!(n, b + PAGE);
    assert_eq!(frames(&s, n, 2 * PAGE), head);
    assert_eq!(s.stats().data_frames, 2 + 6);
    // Grow while moving.
    let m = remap(
        &mut s,
        n,
        2 * PAGE,
        5 * PAGE,
        RemapFlags::MAYMOVE | RemapFlags::FIXED,
        Some(WIN + 0x200_0000),
    )
    .unwrap();
    assert_eq!(frames(&s, m, 2 * PAGE), head);
    assert_eq!(s.stats().data_frames, 5 + 6);
    check(&s, m, a, 2 * PAGE);
    finish(s);
}

#[test]
fn parked_pages_move_with_their_area() {
    let mut s = space();
    let a = mmap(&mut s, None, 4 * PAGE, MmapFlags::empty());
    mmap(&mut s, Some(a + 4 * PAGE), PAGE, MmapFlags::FIXED);
    fill(&s, a, 4 * PAGE);
    s.mprotect(va(a), 4 * PAGE, Prot::empty()).unwrap();
    let n = remap(
        &mut s,
        a,
        4 * PAGE,
        4 * PAGE,
        RemapFlags::MAYMOVE | RemapFlags::FIXED,
        Some(WIN + 0x300_0000),
    )
    .unwrap();
    s.mprotect(va(n), 4 * PAGE, RW).unwrap();
    check(&s, n, a, 4 * PAGE);
    assert_eq!(s.stats().data_frames, 4);
    finish(s);
}

#[test]
fn a_shared_object_mapping_stays_shared_after_a_move() {
    let mut s = space();
    let obj = MemObject::anonymous(4 * PAGE).unwrap();
    let a = s
        .mmap_object(None, 4 * PAGE, RW, MmapFlags::SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    let b = s
        .mmap_object(None, 4 * PAGE, RW, MmapFlags::SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    s.handle_page_fault(va(a + PAGE), Access::Write).unwrap();
    write(&s, a + PAGE, 77);
    let n = remap(
        &mut s,
        a,
        4 * PAGE,
        4 * PAGE,
        RemapFlags::MAYMOVE | RemapFlags::FIXED,
        Some(WIN + 0x400_0000),
    )
    .unwrap();
    s.handle_page_fault(va(b + PAGE), Access::Read).unwrap();
    assert_eq!(read(&s, b + PAGE), 77);
    write(&s, n + PAGE, 78);
    assert_eq!(read(&s, b + PAGE), 78);
    assert!(matches!(
        s.area_at(va(n)).unwrap().kind,
        AreaKind::Object {
            shared: true,
            offset: 0
        }
    ));
    drop(obj);
    finish(s);
}

#[test]
fn error_table_rows_change_nothing() {
    let mut s = space();
    let a = mmap(&mut s, None, 4 * PAGE, MmapFlags::POPULATE);
    let b = mmap(&mut s, Some(a + 4 * PAGE), 4 * PAGE, MmapFlags::FIXED);
    let phys = s
        .map_phys(PhysAddr::from(0x8000_0000), 2 * PAGE, RW, true)
        .unwrap()
        .as_usize();
    let snap = snapshot(&s);
    let mm = RemapFlags::MAYMOVE;
    let fx = RemapFlags::MAYMOVE | RemapFlags::FIXED;
    let cases: Vec<(&str, Result<usize, AxError>, AxError)> = vec![
        (
            "unaligned address",
            remap(&mut s, a + 1, PAGE, PAGE, mm, None),
            AxError::InvalidInput,
        ),
        (
            "new length 0",
            remap(&mut s, a, PAGE, 0, mm, None),
            AxError::InvalidInput,
        ),
        (
            "old length 0",
            remap(&mut s, a, 0, PAGE, mm, None),
            AxError::InvalidInput,
        ),
        (
            "FIXED without MAYMOVE",
            remap(
                &mut s,
                a,
                PAGE,
                PAGE,
                RemapFlags::FIXED,
                Some(WIN + 0x500_0000),
            ),
            AxError::InvalidInput,
        ),
        (
            "FIXED without an address",
            remap(&mut s, a, PAGE, PAGE, fx, None),
            AxError::InvalidInput,
        ),
        (
            "FIXED, unaligned new address",
            remap(&mut s, a, PAGE, PAGE, fx, Some(WIN + 0x500_0001)),
            AxError::InvalidInput,
        ),
        (
            "ranges overlap",
            remap(&mut s, a, 4 * PAGE, 4 * PAGE, fx, Some(a + 2 * PAGE)),
            AxError::InvalidInput,
        ),
        (
            "FIXED outside the window",
            remap(&mut s, a, PAGE, PAGE, fx, Some(WIN + WSIZE)),
            AxError::InvalidInput,
        ),
        (
            "old range across two areas",
            remap(&mut s, a, 8 * PAGE, 8 * PAGE, mm, None),
            AxError::BadAddress,
        ),
        (
            "old range not mapped",
            remap(&mut s, WIN + 0x600_0000, PAGE, PAGE, mm, None),
            AxError::BadAddress,
        ),
        (
            "no room to grow, no MAYMOVE",
            remap(&mut s, a, 4 * PAGE, 8 * PAGE, RemapFlags::empty(), None),
            AxError::NoMemory,
        ),
        (
            "a physical mapping cannot grow",
            remap(&mut s, phys, 2 * PAGE, 3 * PAGE, mm, None),
            AxError::BadAddress,
        ),
        (
            "unknown flag",
            remap(&mut s, a, PAGE, PAGE, RemapFlags::from_bits_retain(8), None),
            AxError::InvalidInput,
        ),
    ];
    for (what, got, want) in cases {
        assert_eq!(got, Err(want), "{what}");
        assert_eq!(snapshot(&s), snap, "{what} changed something");
    }
    let _ = b;
    finish(s);
}

#[test]
fn out_of_frames_changes_nothing() {
    for limit in 0..12 {
        let mut s = space();
        let a = mmap(&mut s, None, 4 * PAGE, MmapFlags::POPULATE);
        mmap(&mut s, Some(a + 4 * PAGE), PAGE, MmapFlags::FIXED);
        let to = WIN + 0x7fe_0000; // a fresh 1G/2M slot: tables needed
        let snap = snapshot(&s);
        testing::set_limit(Some(testing::frames_in_use() + limit));
        let r = remap(
            &mut s,
            a,
            4 * PAGE,
            8 * PAGE,
            RemapFlags::MAYMOVE | RemapFlags::FIXED,
            Some(to),
        );
        testing::set_limit(None);
        match r {
            Ok(n) => assert_eq!(n, to),
            Err(e) => {
                assert_eq!(e, AxError::NoMemory, "limit {limit}");
                assert_eq!(snapshot(&s), snap, "limit {limit}");
            }
        }
        finish(s);
    }
}
