//! POSIX semantics on the area set: bad input, out of frames, merging,
//! splitting, the contiguous backend, atomic FIXED replacement.

mod common;

use axerrno::AxError;
use common::*;
use hal::Access;
use memory_addr::PhysAddr;
use mm::{AreaKind, FaultError, MappingFlags, MmapFlags, Populate, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const NONE: MmapFlags = MmapFlags::empty();
const FIX: MmapFlags = MmapFlags::FIXED;
const POP: MmapFlags = MmapFlags::POPULATE;
const CONT: MmapFlags = MmapFlags::CONTIGUOUS;

fn spans(s: &Space) -> Vec<(usize, usize)> {
    s.areas()
        .map(|a| (a.start.as_usize(), a.end.as_usize()))
        .collect()
}

fn pa(s: &Space, addr: usize) -> usize {
    s.translate(va(addr)).unwrap().paddr.as_usize()
}

/// A kernel area outside the window (as `map_kernel` would make).
const KERNEL: usize = 0xffff_8000_0000_0000;

#[test]
fn forty_bad_calls_change_nothing() {
    let mut s = space();
    s.map_linear(
        va(KERNEL),
        PhysAddr::from(0x20_0000),
        0x20_0000,
        MappingFlags::READ | MappingFlags::WRITE,
        true,
    )
    .unwrap();
    s.mmap(Some(va(WIN)), 4 * PAGE, RW, FIX | POP).unwrap();
    s.mmap(Some(va(WIN + 8 * PAGE)), 2 * PAGE, RW, FIX | CONT)
        .unwrap();
    s.mmap(Some(va(WIN + 12 * PAGE)), 4 * PAGE, Prot::READ, FIX)
        .unwrap();
    s.handle_page_fault(va(WIN + 12 * PAGE), Access::Read)
        .unwrap();
    let before = snapshot(&s);
    let inv = Err(AxError::InvalidInput);
    let top = WIN + WSIZE;
    let mut n = 0;
    macro_rules! check {
        ($r:expr, $want:expr, $what:expr $(,)?) => {{
            let r: Result<(), AxError> = $r;
            assert_eq!(r, $want, "{}", $what);
            assert_eq!(snapshot(&s), before, "{} changed something", $what);
            n += 1;
        }};
    }
    let mmap = |s: &mut Space, a: Option<usize>, len, prot, flags| {
        s.mmap(a.map(va), len, prot, flags).map(|_| ())
    };
    // mmap: lengths.
    check!(mmap(&mut s, None, 0, RW, NONE), inv, "mmap len 0");
    check!(
        mmap(&mut s, None, usize::MAX, RW, NONE),
        inv,
        "mmap len max",
    );
    check!(
        mmap(&mut s, None, usize::MAX - PAGE + 2, RW, POP),
        inv,
        "mmap len rounds over",
    );
    check!(mmap(&mut s, Some(WIN), 0, RW, FIX), inv, "mmap FIXED len 0",);
    // mmap: protections and flags.
    check!(mmap(&mut s, None, PAGE, Prot::WRITE, NONE), inv, "prot W",);
    check!(mmap(&mut s, None, PAGE, Prot::EXEC, NONE), inv, "prot X",);
    check!(
        mmap(&mut s, None, PAGE, Prot::WRITE | Prot::EXEC, NONE),
        inv,
        "prot WX",
    );
    check!(
        mmap(&mut s, None, PAGE, Prot::from_bits_retain(0x10), NONE),
        inv,
        "prot bit 4",
    );
    check!(
        mmap(
            &mut s,
            None,
            PAGE,
            RW,
            MmapFlags::SHARED | MmapFlags::PRIVATE
        ),
        inv,
        "flags MAP_SHARED with MAP_PRIVATE",
    );
    check!(
        mmap(&mut s, None, PAGE, RW, MmapFlags::from_bits_retain(0x20)),
        inv,
        "flag MAP_ANONYMOUS",
    );
    check!(
        mmap(
            &mut s,
            None,
            PAGE,
            RW,
            POP | MmapFlags::from_bits_retain(1 << 31),
        ),
        inv,
        "flag bit 31",
    );
    check!(
        mmap(&mut s, None, (64 << 20) + PAGE, RW, CONT),
        inv,
        "contiguous too large",
    );
    check!(
        mmap(
            &mut s,
            Some(WIN + 32 * PAGE),
            usize::MAX / 2,
            RW,
            CONT | FIX,
        ),
        inv,
        "contiguous huge FIXED",
    );
    // mmap: FIXED placement.
    check!(mmap(&mut s, None, PAGE, RW, FIX), inv, "FIXED without addr",);
    check!(
        mmap(&mut s, None, PAGE, RW, MmapFlags::FIXED_NOREPLACE),
        inv,
        "NOREPLACE without addr",
    );
    check!(
        mmap(&mut s, Some(WIN + 1), PAGE, RW, FIX),
        inv,
        "FIXED unaligned",
    );
    check!(
        mmap(&mut s, Some(WIN + 0x800), PAGE, RW, FIX | CONT),
        inv,
        "FIXED contiguous unaligned",
    );
    check!(
        mmap(&mut s, Some(WIN - PAGE), 2 * PAGE, RW, FIX),
        inv,
        "FIXED below window",
    );
    check!(
        mmap(&mut s, Some(top - PAGE), 2 * PAGE, RW, FIX),
        inv,
        "FIXED past window",
    );
    check!(
        mmap(&mut s, Some(top), PAGE, RW, FIX),
        inv,
        "FIXED at window end",
    );
    check!(mmap(&mut s, Some(0), PAGE, RW, FIX), inv, "FIXED at 0",);
    check!(
        mmap(&mut s, Some(usize::MAX & !0xfff), 2 * PAGE, RW, FIX),
        inv,
        "FIXED wraps",
    );
    check!(
        mmap(&mut s, Some(KERNEL), PAGE, RW, FIX),
        inv,
        "FIXED over a kernel area",
    );
    check!(
        mmap(
            &mut s,
            Some(WIN + PAGE),
            PAGE,
            RW,
            MmapFlags::FIXED_NOREPLACE,
        ),
        Err(AxError::AlreadyExists),
        "NOREPLACE overlap",
    );
    check!(
        mmap(
            &mut s,
            Some(WIN + 7 * PAGE),
            2 * PAGE,
            RW,
            MmapFlags::FIXED_NOREPLACE | FIX,
        ),
        Err(AxError::AlreadyExists),
        "NOREPLACE|FIXED overlap",
    );
    check!(
        mmap(
            &mut s,
            Some(WIN + 15 * PAGE),
            PAGE,
            RW,
            MmapFlags::FIXED_NOREPLACE | CONT,
        ),
        Err(AxError::AlreadyExists),
        "NOREPLACE contiguous overlap",
    );
    // munmap.
    check!(s.munmap(va(WIN + 1), PAGE), inv, "munmap unaligned");
    check!(s.munmap(va(WIN), 0), inv, "munmap len 0");
    check!(s.munmap(va(WIN), usize::MAX), inv, "munmap len max");
    check!(
        s.munmap(va(WIN - PAGE), 2 * PAGE),
        inv,
        "munmap below window",
    );
    check!(
        s.munmap(va(top - PAGE), 2 * PAGE),
        inv,
        "munmap past window",
    );
    check!(s.munmap(va(KERNEL), PAGE), inv, "munmap kernel area",);
    check!(
        s.munmap(va(KERNEL + 0x1000), 0x1000),
        inv,
        "munmap inside a kernel huge page",
    );
    check!(
        s.munmap(va(usize::MAX & !0xfff), 2 * PAGE),
        inv,
        "munmap wraps",
    );
    // mprotect.
    check!(
        s.mprotect(va(WIN + 1), PAGE, Prot::READ),
        inv,
        "mprotect unaligned",
    );
    check!(s.mprotect(va(WIN), 0, Prot::READ), inv, "mprotect len 0",);
    check!(
        s.mprotect(va(WIN), usize::MAX, Prot::READ),
        inv,
        "mprotect len max",
    );
    check!(
        s.mprotect(va(WIN), PAGE, Prot::WRITE),
        inv,
        "mprotect prot W",
    );
    check!(
        s.mprotect(va(WIN), PAGE, Prot::from_bits_retain(0x100)),
        inv,
        "mprotect unknown prot",
    );
    check!(
        s.mprotect(va(WIN - PAGE), 2 * PAGE, Prot::READ),
        inv,
        "mprotect below window",
    );
    check!(
        s.mprotect(va(KERNEL), PAGE, Prot::READ),
        inv,
        "mprotect kernel area",
    );
    check!(
        s.mprotect(va(WIN), 5 * PAGE, Prot::READ),
        Err(AxError::NoMemory),
        "mprotect into a hole",
    );
    check!(
        s.mprotect(va(WIN + 4 * PAGE), PAGE, Prot::READ),
        Err(AxError::NoMemory),
        "mprotect a hole",
    );
    check!(
        s.mprotect(va(WIN + 2 * PAGE), 14 * PAGE, Prot::empty()),
        Err(AxError::NoMemory),
        "mprotect across holes",
    );
    check!(
        s.mprotect(va(top - PAGE), PAGE, RW),
        Err(AxError::NoMemory),
        "mprotect last window page",
    );
    // map_phys and map_linear.
    let phys = |s: &mut Space, p: usize, len, prot| {
        s.map_phys(PhysAddr::from(p), len, prot, false).map(|_| ())
    };
    check!(
        phys(&mut s, 0x1000_0001, PAGE, Prot::READ),
        inv,
        "map_phys unaligned",
    );
    check!(
        phys(&mut s, 0x1000_0000, 0, Prot::READ),
        inv,
        "map_phys len 0",
    );
    check!(
        phys(&mut s, usize::MAX & !0xfff, 2 * PAGE, Prot::READ),
        inv,
        "map_phys wraps",
    );
    check!(
        phys(&mut s, 0x1000_0000, PAGE, Prot::EXEC),
        inv,
        "map_phys prot X",
    );
    check!(
        s.map_linear(
            va(KERNEL),
            PhysAddr::from(0),
            PAGE,
            MappingFlags::READ,
            false,
        ),
        Err(AxError::AlreadyExists),
        "map_linear overlap",
    );
    check!(
        s.map_linear(
            va(KERNEL + 0x40_0000),
            PhysAddr::from(0),
            PAGE,
            MappingFlags::empty(),
            false,
        ),
        inv,
        "map_linear no access",
    );
    // Faults that are refused change nothing either.
    let fault =
        |s: &mut Space, a: usize, acc| s.handle_page_fault(va(a), acc).map_err(AxError::from);
    check!(
        fault(&mut s, WIN + 4 * PAGE, Access::Read),
        Err(AxError::BadAddress),
        "fault in a hole",
    );
    check!(
        fault(&mut s, WIN + 13 * PAGE, Access::Write),
        Err(AxError::PermissionDenied),
        "write fault on R",
    );
    check!(
        fault(&mut s, WIN + 8 * PAGE, Access::Execute),
        Err(AxError::PermissionDenied),
        "exec fault on contiguous RW",
    );
    assert!(n >= 40, "{n} bad calls");
    finish(s);
}

#[test]
fn adjacent_mmaps_merge_and_mprotect_back_merges() {
    let mut s = space();
    let a = s.mmap(None, 2 * PAGE, RW, NONE).unwrap().as_usize();
    let b = s.mmap(None, 3 * PAGE, RW, NONE).unwrap().as_usize();
    assert_eq!(b, a + 2 * PAGE);
    assert_eq!(
        spans(&s),
        [(a, a + 5 * PAGE)],
        "two adjacent lazy mmaps: one area"
    );
    s.mprotect(va(a + PAGE), 2 * PAGE, Prot::READ).unwrap();
    assert_eq!(
        spans(&s),
        [
            (a, a + PAGE),
            (a + PAGE, a + 3 * PAGE),
            (a + 3 * PAGE, a + 5 * PAGE)
        ]
    );
    s.mprotect(va(a + PAGE), PAGE, RW).unwrap();
    assert_eq!(
        spans(&s),
        [
            (a, a + 2 * PAGE),
            (a + 2 * PAGE, a + 3 * PAGE),
            (a + 3 * PAGE, a + 5 * PAGE)
        ]
    );
    s.mprotect(va(a + 2 * PAGE), PAGE, RW).unwrap();
    assert_eq!(spans(&s), [(a, a + 5 * PAGE)], "mprotect back merges");
    // A hint right after the area merges too; different flags or kind do not.
    s.mmap(Some(va(a + 5 * PAGE)), PAGE, RW, NONE).unwrap();
    s.mmap(None, PAGE, Prot::READ, NONE).unwrap();
    s.mmap(None, PAGE, RW, POP).unwrap();
    s.mmap(None, PAGE, RW, POP).unwrap();
    assert_eq!(
        spans(&s),
        [
            (a, a + 6 * PAGE),
            (a + 6 * PAGE, a + 7 * PAGE),
            (a + 7 * PAGE, a + 9 * PAGE)
        ]
    );
    assert_eq!(
        s.area_at(va(a + 8 * PAGE)).unwrap().kind,
        AreaKind::Alloc {
            populate: Populate::Eager
        }
    );
    // Closing the gap between two areas with a FIXED mapping merges all three.
    s.munmap(va(a + 2 * PAGE), PAGE).unwrap();
    assert_eq!(s.stats().areas, 4);
    s.mmap(Some(va(a + 2 * PAGE)), PAGE, RW, FIX).unwrap();
    assert_eq!(s.stats().areas, 3);
    // Faults still see the right flags after merges.
    s.handle_page_fault(va(a + 2 * PAGE), Access::Write)
        .unwrap();
    assert!(matches!(
        s.handle_page_fault(va(a + 6 * PAGE), Access::Write),
        Err(FaultError::Denied { .. })
    ));
    finish(s);
}

#[test]
fn linear_areas_merge_only_at_the_same_offset() {
    let mut s = space();
    let f = MappingFlags::READ;
    s.map_linear(va(KERNEL), PhysAddr::from(0x10_0000), PAGE, f, false)
        .unwrap();
    s.map_linear(va(KERNEL + PAGE), PhysAddr::from(0x10_1000), PAGE, f, false)
        .unwrap();
    s.map_linear(
        va(KERNEL + 2 * PAGE),
        PhysAddr::from(0x30_0000),
        PAGE,
        f,
        false,
    )
    .unwrap();
    assert_eq!(
        spans(&s),
        [
            (KERNEL, KERNEL + 2 * PAGE),
            (KERNEL + 2 * PAGE, KERNEL + 3 * PAGE)
        ]
    );
    finish(s);
}

#[test]
fn contiguous_mapping_is_physically_contiguous_and_splits_keep_frames() {
    let mut s = space();
    let frames0 = testing::frames_in_use();
    let a = s.mmap(None, 8 * PAGE, RW, CONT).unwrap().as_usize();
    assert_eq!(
        s.stats().data_frames,
        8,
        "allocated and mapped at mmap time"
    );
    let first = pa(&s, a);
    let AreaKind::Contiguous { start_frame } = s.area_at(va(a)).unwrap().kind else {
        panic!("not contiguous")
    };
    assert_eq!(start_frame.as_usize(), first);
    for i in 0..8 {
        assert_eq!(pa(&s, a + i * PAGE), first + i * PAGE, "page {i}");
        assert!(page_is_zero(&s, a + i * PAGE));
        write(&s, a + i * PAGE, 100 + i as u64);
    }
    // Already mapped: a fault is a stale TLB entry, never a new frame.
    s.handle_page_fault(va(a), Access::Write).unwrap();
    assert_eq!(s.stats().spurious_faults, 1);
    // Split by mprotect: the right part's start frame follows.
    s.mprotect(va(a + 3 * PAGE), 2 * PAGE, Prot::READ).unwrap();
    let kinds: Vec<_> = s.areas().map(|x| x.kind).collect();
    let frame = |i: usize| AreaKind::Contiguous {
        start_frame: PhysAddr::from(first + i * PAGE),
    };
    assert_eq!(kinds, [frame(0), frame(3), frame(5)]);
    // PROT_NONE keeps the frames; back to RW re-maps the same frames.
    s.mprotect(va(a + 3 * PAGE), 2 * PAGE, Prot::empty())
        .unwrap();
    assert_eq!(s.translate(va(a + 3 * PAGE)), Err(AxError::BadAddress));
    assert_eq!(s.stats().data_frames, 8);
    s.mprotect(va(a + 3 * PAGE), 2 * PAGE, RW).unwrap();
    assert_eq!(
        spans(&s),
        [(a, a + 8 * PAGE)],
        "physically adjacent parts merge back"
    );
    assert_eq!(s.area_at(va(a)).unwrap().kind, frame(0));
    // Unmap the middle: exactly those frames are freed, the rest keep theirs.
    let used = testing::frames_in_use();
    s.munmap(va(a + 2 * PAGE), 3 * PAGE).unwrap();
    assert_eq!(testing::frames_in_use(), used - 3);
    assert_eq!(s.stats().data_frames, 5);
    assert_eq!(kinds_of(&s), [frame(0), frame(5)]);
    for i in [0, 1, 5, 6, 7] {
        assert_eq!(pa(&s, a + i * PAGE), first + i * PAGE, "page {i}");
        assert_eq!(read(&s, a + i * PAGE), 100 + i as u64, "data of page {i}");
    }
    // Shrink from the front and the back.
    s.munmap(va(a), PAGE).unwrap();
    s.munmap(va(a + 7 * PAGE), PAGE).unwrap();
    assert_eq!(kinds_of(&s), [frame(1), frame(5)]);
    assert_eq!(
        spans(&s),
        [(a + PAGE, a + 2 * PAGE), (a + 5 * PAGE, a + 7 * PAGE)]
    );
    assert_eq!(s.stats().data_frames, 3);
    // Re-mapping the hole with new contiguous memory does not merge (other frames).
    s.mmap(Some(va(a + 2 * PAGE)), 3 * PAGE, RW, FIX | CONT)
        .unwrap();
    assert_eq!(s.stats().areas, 3);
    // Freeing the rest frees the remaining frames once each (the tracker would
    // panic on a double free) and nothing leaks.
    s.munmap(va(a), 8 * PAGE).unwrap();
    assert_eq!(testing::frames_in_use(), frames0);
    finish(s);
}

fn kinds_of(s: &Space) -> Vec<AreaKind> {
    s.areas().map(|x| x.kind).collect()
}

#[test]
fn fixed_replaces_contiguous_and_prot_none_contiguous() {
    let mut s = space();
    let a = s.mmap(None, 4 * PAGE, Prot::empty(), CONT).unwrap();
    assert_eq!(s.stats().data_frames, 4, "frames owned even without access");
    assert_eq!(s.translate(a), Err(AxError::BadAddress));
    assert!(matches!(
        s.handle_page_fault(a, Access::Read),
        Err(FaultError::Denied { .. })
    ));
    s.mprotect(a, 4 * PAGE, Prot::READ).unwrap();
    let AreaKind::Contiguous { start_frame } = s.area_at(a).unwrap().kind else {
        panic!()
    };
    assert_eq!(
        pa(&s, a.as_usize() + 3 * PAGE),
        start_frame.as_usize() + 3 * PAGE
    );
    // FIXED lazy over the middle of it: the middle frames are freed.
    s.mmap(Some(a + PAGE), 2 * PAGE, RW, FIX).unwrap();
    assert_eq!(s.stats().data_frames, 2);
    assert_eq!(s.stats().areas, 3);
    finish(s);
}

#[test]
fn out_of_frames_rolls_back() {
    let mut s = space();
    s.mmap(Some(va(WIN)), 4 * PAGE, RW, FIX | POP).unwrap();
    write(&s, WIN + PAGE, 42);
    let lazy = s.mmap(Some(va(WIN + 8 * PAGE)), PAGE, RW, FIX).unwrap();
    let before = snapshot(&s);
    // Two frames to spare.
    testing::set_limit(Some(testing::frames_in_use() + 2));
    for flags in [POP, CONT, CONT | POP] {
        assert_eq!(
            s.mmap(None, 3 * PAGE, RW, flags),
            Err(AxError::NoMemory),
            "{flags:?}"
        );
        assert_eq!(snapshot(&s), before, "{flags:?}");
        let r = s.mmap(Some(va(WIN)), 3 * PAGE, RW, FIX | flags);
        assert_eq!(r, Err(AxError::NoMemory), "FIXED {flags:?}");
        assert_eq!(snapshot(&s), before, "FIXED {flags:?}");
        assert_eq!(read(&s, WIN + PAGE), 42, "old mapping intact");
    }
    // Frames for the data fit, the page table of a new 2M block does not: the
    // old mapping must survive a FIXED replace that spans into that block,
    // whether unmapping it would free frames (eager) or not (lazy).
    testing::set_limit(None);
    let edge = WIN + 0x20_0000;
    s.mmap(Some(va(edge - 2 * PAGE)), 2 * PAGE, RW, FIX | POP)
        .unwrap();
    write(&s, edge - PAGE, 7);
    let high = edge + 0x40_0000;
    s.mmap(Some(va(high - 4 * PAGE)), PAGE, RW, FIX | POP)
        .unwrap();
    s.mmap(Some(va(high - 2 * PAGE)), 4 * PAGE, Prot::READ, FIX)
        .unwrap();
    let before = snapshot(&s);
    testing::set_limit(Some(testing::frames_in_use() + 4));
    for flags in [POP, CONT] {
        for at in [edge, high] {
            let r = s.mmap(Some(va(at - 2 * PAGE)), 4 * PAGE, RW, FIX | flags);
            assert_eq!(r, Err(AxError::NoMemory), "{flags:?} across {at:#x}");
            assert_eq!(snapshot(&s), before, "{flags:?} across {at:#x}");
            assert_eq!(read(&s, edge - PAGE), 7);
        }
    }
    // A lazy fault with no frame: NoMemory with a readable report, nothing leaked.
    testing::set_limit(Some(testing::frames_in_use()));
    let r = s.handle_page_fault(lazy, Access::Write);
    let Err(e @ FaultError::NoMemory { area }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(area.start, lazy);
    assert_eq!(AxError::from(e), AxError::NoMemory);
    assert_eq!(
        e.to_string(),
        format!(
            "no free frame for the page (out of memory) in [{:#x}, {:#x}) rw- alloc(lazy)",
            lazy.as_usize(),
            lazy.as_usize() + PAGE
        )
    );
    assert_eq!(snapshot(&s), before);
    testing::set_limit(None);
    s.handle_page_fault(lazy, Access::Write).unwrap();
    finish(s);
}

#[test]
fn mprotect_reopen_without_table_frames_changes_nothing() {
    let mut s = space();
    let a = s.mmap(None, 4 * PAGE, RW, CONT).unwrap();
    let b = s
        .mmap(Some(va(WIN + 0x40_0000)), 2 * PAGE, RW, FIX | POP)
        .unwrap();
    write(&s, b.as_usize(), 9);
    // NONE frees the leaf tables of both (nothing else is mapped there).
    s.mprotect(a, 4 * PAGE, Prot::empty()).unwrap();
    s.mprotect(b, 2 * PAGE, Prot::empty()).unwrap();
    assert_eq!(s.stats().page_table_frames, 1);
    let before = snapshot(&s);
    testing::set_limit(Some(testing::frames_in_use() + 1));
    assert_eq!(s.mprotect(a, 4 * PAGE, RW), Err(AxError::NoMemory));
    assert_eq!(snapshot(&s), before);
    assert_eq!(s.mprotect(b, PAGE, Prot::READ), Err(AxError::NoMemory));
    assert_eq!(snapshot(&s), before);
    testing::set_limit(None);
    s.mprotect(b, PAGE, Prot::READ).unwrap();
    assert_eq!(read(&s, b.as_usize()), 9, "parked data comes back");
    s.mprotect(a, 4 * PAGE, RW).unwrap();
    assert!(s.translate(a + 3 * PAGE).is_ok());
    finish(s);
}

#[test]
fn munmap_across_holes_splits_and_merges_nothing_wrongly() {
    let mut s = space();
    for i in 0..8 {
        s.mmap(Some(va(WIN + 3 * i * PAGE)), 2 * PAGE, RW, FIX | POP)
            .unwrap();
    }
    assert_eq!(s.stats().areas, 8);
    s.munmap(va(WIN + PAGE), 20 * PAGE).unwrap();
    assert_eq!(
        spans(&s),
        [(WIN, WIN + PAGE), (WIN + 21 * PAGE, WIN + 23 * PAGE)]
    );
    assert_eq!(s.stats().data_frames, 3);
    // Only holes: fine, nothing changes.
    let before = snapshot(&s);
    s.munmap(va(WIN + 2 * PAGE), 10 * PAGE).unwrap();
    assert_eq!(snapshot(&s), before);
    finish(s);
}

#[test]
fn many_unmergeable_areas() {
    // 20,000 separate areas (alternating flags so they cannot merge), then a
    // fault and an mprotect to the same flags on each: nothing splits or merges.
    let mut s = space();
    for i in 0..20_000 {
        let prot = if i % 2 == 0 { RW } else { Prot::READ };
        s.mmap(None, PAGE, prot, NONE).unwrap();
    }
    assert_eq!(s.stats().areas, 20_000);
    for i in 0..20_000 {
        let a = va(WIN + i * PAGE);
        s.handle_page_fault(a, Access::Read).unwrap();
        let prot = if i % 2 == 0 { RW } else { Prot::READ };
        s.mprotect(a, PAGE, prot).unwrap();
    }
    s.munmap(va(WIN + 100 * PAGE), PAGE).unwrap();
    assert_eq!(s.stats().areas, 19_999);
    assert_eq!(s.stats().data_frames, 19_999);
    finish(s);
}
