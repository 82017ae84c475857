//! Unit tests of the public API, one rule at a time.

mod common;

use axerrno::AxError;
use common::*;
use hal::{Access, MemKind, MemRegion};
use memory_addr::PhysAddr;
use mm::{AreaKind, FaultError, LeafSize, MappingFlags, MmapFlags, PagingHandler, Populate, Prot};
use testing::TrackingHandler;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const NONE: MmapFlags = MmapFlags::empty();

#[test]
fn new_rejects_bad_windows() {
    testing::reset();
    assert!(matches!(
        Space::new(va(WIN + 1), WSIZE),
        Err(AxError::InvalidInput)
    ));
    assert!(matches!(Space::new(va(WIN), 0), Err(AxError::InvalidInput)));
    assert!(matches!(
        Space::new(va(WIN), 123),
        Err(AxError::InvalidInput)
    ));
    assert!(matches!(
        Space::new(va(usize::MAX & !0xfff), 2 * PAGE),
        Err(AxError::InvalidInput)
    ));
    // Non-canonical on x86_64.
    assert!(matches!(
        Space::new(va(1 << 47), PAGE),
        Err(AxError::InvalidInput)
    ));
    // Both ends canonical, across the hole between the halves: no app call
    // could map in it, so it is refused up front.
    let (lo, hi) = (0x0000_7fff_ffff_f000usize, 0xffff_8000_0000_0000usize);
    assert!(matches!(
        Space::new(va(lo), hi - lo + PAGE),
        Err(AxError::InvalidInput)
    ));
    testing::assert_no_leaks();
}

#[test]
fn mmap_bad_input_changes_nothing() {
    let mut s = space();
    s.mmap(None, 3 * PAGE, RW, MmapFlags::POPULATE).unwrap();
    let before = snapshot(&s);
    let cases: &[(Option<usize>, usize, Prot, MmapFlags)] = &[
        (None, 0, RW, NONE),
        (None, usize::MAX - 10, RW, NONE),
        (None, PAGE, Prot::WRITE, NONE),
        (None, PAGE, Prot::EXEC, NONE),
        (None, PAGE, Prot::from_bits_retain(0x40), NONE),
        (None, PAGE, RW, MmapFlags::FIXED),
        (Some(WIN + 1), PAGE, RW, MmapFlags::FIXED),
        (Some(WIN + 0x123), PAGE, RW, MmapFlags::FIXED_NOREPLACE),
        (Some(WIN - PAGE), 2 * PAGE, RW, MmapFlags::FIXED),
        (Some(WIN + WSIZE - PAGE), 2 * PAGE, RW, MmapFlags::FIXED),
        (Some(0), PAGE, RW, MmapFlags::FIXED),
    ];
    for &(addr, len, prot, flags) in cases {
        let r = s.mmap(addr.map(va), len, prot, flags);
        assert_eq!(
            r,
            Err(AxError::InvalidInput),
            "{addr:x?} {len:#x} {prot:?} {flags:?}"
        );
        assert_eq!(snapshot(&s), before);
    }
    finish(s);
}

#[test]
fn lazy_fault_maps_a_zeroed_frame() {
    let mut s = space();
    let a = s.mmap(None, 4 * PAGE, RW, NONE).unwrap().as_usize();
    assert_eq!(a, WIN);
    assert_eq!(s.stats().data_frames, 0);
    assert_eq!(s.translate(va(a + PAGE)), Err(AxError::BadAddress));
    s.handle_page_fault(va(a + PAGE + 17), Access::Write)
        .unwrap();
    assert!(
        page_is_zero(&s, a + PAGE),
        "the handler fills 0xA5; the fault must zero"
    );
    let t = s.translate(va(a + PAGE + 8)).unwrap();
    assert_eq!(t.page_size, LeafSize::Size4K);
    assert!(t.flags.contains(MappingFlags::READ | MappingFlags::WRITE));
    assert!(!t.flags.contains(MappingFlags::EXECUTE));
    assert_eq!(s.translate(va(a)), Err(AxError::BadAddress));
    let st = s.stats();
    assert_eq!(
        (st.data_frames, st.faults_handled, st.spurious_faults),
        (1, 1, 0)
    );
    // Present and allowed: a stale-TLB fault.
    s.handle_page_fault(va(a + PAGE), Access::Read).unwrap();
    let st = s.stats();
    assert_eq!(
        (st.data_frames, st.faults_handled, st.spurious_faults),
        (1, 1, 1)
    );
    assert_eq!(
        testing::frames_in_use(),
        st.data_frames + st.page_table_frames
    );
    finish(s);
}

#[test]
fn fault_checks_area_flags() {
    let mut s = space();
    let a = s.mmap(None, PAGE, Prot::READ, NONE).unwrap();
    assert_eq!(
        s.handle_page_fault(va(WIN + WSIZE - 1), Access::Read),
        Err(FaultError::NoArea)
    );
    assert_eq!(
        s.handle_page_fault(va(0), Access::Read),
        Err(FaultError::NoArea)
    );
    let area = s.area_at(a).unwrap();
    assert_eq!(
        s.handle_page_fault(a, Access::Write),
        Err(FaultError::Denied { area })
    );
    assert_eq!(
        s.handle_page_fault(a, Access::Execute),
        Err(FaultError::Denied { area })
    );
    assert_eq!(
        AxError::from(FaultError::Denied { area }),
        AxError::PermissionDenied
    );
    assert_eq!(AxError::from(FaultError::NoArea), AxError::BadAddress);
    assert_eq!(s.stats().data_frames, 0);
    s.handle_page_fault(a, Access::Read).unwrap();
    assert_eq!(s.stats().data_frames, 1);
    finish(s);
}

#[test]
fn mprotect_changes_area_flags_for_later_faults() {
    let mut s = space();
    let a = s.mmap(None, 2 * PAGE, RW, NONE).unwrap().as_usize();
    s.mprotect(va(a), 2 * PAGE, Prot::READ).unwrap();
    assert_eq!(s.area_at(va(a)).unwrap().flags, MappingFlags::READ);
    // Untouched lazy page: the write is refused now.
    assert!(matches!(
        s.handle_page_fault(va(a), Access::Write),
        Err(FaultError::Denied { .. })
    ));
    s.handle_page_fault(va(a + PAGE), Access::Read).unwrap();
    s.mprotect(va(a), 2 * PAGE, RW).unwrap();
    // ... and allowed again.
    s.handle_page_fault(va(a), Access::Write).unwrap();
    // The page faulted in read-only got its PTE updated: a write fault is spurious.
    let spurious = s.stats().spurious_faults;
    assert!(
        s.translate(va(a + PAGE))
            .unwrap()
            .flags
            .contains(MappingFlags::WRITE)
    );
    s.handle_page_fault(va(a + PAGE), Access::Write).unwrap();
    assert_eq!(s.stats().spurious_faults, spurious + 1);
    assert_eq!(s.stats().data_frames, 2);
    finish(s);
}

#[test]
fn mprotect_errors_change_nothing() {
    let mut s = space();
    s.mmap(
        Some(va(WIN)),
        2 * PAGE,
        RW,
        MmapFlags::FIXED | MmapFlags::POPULATE,
    )
    .unwrap();
    s.mmap(Some(va(WIN + 3 * PAGE)), PAGE, RW, MmapFlags::FIXED)
        .unwrap();
    let before = snapshot(&s);
    // Hole at WIN + 2 pages.
    assert_eq!(
        s.mprotect(va(WIN), 4 * PAGE, Prot::READ),
        Err(AxError::NoMemory)
    );
    assert_eq!(
        s.mprotect(va(WIN + 2 * PAGE), PAGE, Prot::READ),
        Err(AxError::NoMemory)
    );
    assert_eq!(
        s.mprotect(va(WIN + 1), PAGE, Prot::READ),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.mprotect(va(WIN), 0, Prot::READ),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.mprotect(va(WIN), PAGE, Prot::WRITE),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.mprotect(va(WIN - PAGE), 2 * PAGE, Prot::READ),
        Err(AxError::InvalidInput)
    );
    assert_eq!(snapshot(&s), before);
    assert!(
        s.translate(va(WIN))
            .unwrap()
            .flags
            .contains(MappingFlags::WRITE)
    );
    // Across two adjacent areas is fine.
    s.mmap(Some(va(WIN + 2 * PAGE)), PAGE, RW, MmapFlags::FIXED)
        .unwrap();
    s.mprotect(va(WIN + PAGE), 3 * PAGE, Prot::READ).unwrap();
    assert!(
        !s.translate(va(WIN + PAGE))
            .unwrap()
            .flags
            .contains(MappingFlags::WRITE)
    );
    assert!(
        s.translate(va(WIN))
            .unwrap()
            .flags
            .contains(MappingFlags::WRITE)
    );
    finish(s);
}

#[test]
fn prot_none_keeps_data_of_populated_pages() {
    let mut s = space();
    let a = s
        .mmap(None, 6 * PAGE, RW, MmapFlags::POPULATE)
        .unwrap()
        .as_usize();
    assert_eq!(s.stats().data_frames, 6);
    for i in 0..6 {
        assert!(page_is_zero(&s, a + i * PAGE));
        write(&s, a + i * PAGE, 0x1000 + i as u64);
    }
    s.mprotect(va(a + 2 * PAGE), 2 * PAGE, Prot::empty())
        .unwrap();
    assert_eq!(s.stats().areas, 3);
    assert_eq!(s.translate(va(a + 2 * PAGE)), Err(AxError::BadAddress));
    assert_eq!(s.translate(va(a + 3 * PAGE)), Err(AxError::BadAddress));
    assert_eq!(s.stats().data_frames, 6, "parked frames are still owned");
    assert!(matches!(
        s.handle_page_fault(va(a + 2 * PAGE), Access::Read),
        Err(FaultError::Denied { .. })
    ));
    s.mprotect(va(a + 2 * PAGE), 2 * PAGE, RW).unwrap();
    for i in 0..6 {
        assert_eq!(read(&s, a + i * PAGE), 0x1000 + i as u64);
    }
    // NONE again, then unmap while parked: the frames are freed.
    s.mprotect(va(a), 6 * PAGE, Prot::empty()).unwrap();
    assert_eq!(s.stats().data_frames, 6);
    s.munmap(va(a), 6 * PAGE).unwrap();
    assert_eq!(s.stats().data_frames, 0);
    assert_eq!(s.stats().page_table_frames, 1, "empty tables are reclaimed");
    assert_eq!(testing::frames_in_use(), 1);
    finish(s);
}

#[test]
fn prot_none_populate_populates_nothing() {
    let mut s = space();
    let a = s
        .mmap(None, 4 * PAGE, Prot::empty(), MmapFlags::POPULATE)
        .unwrap();
    assert_eq!(s.stats().data_frames, 0);
    assert_eq!(
        s.area_at(a).unwrap().kind,
        AreaKind::Alloc {
            populate: Populate::Lazy
        }
    );
    s.mprotect(a, 4 * PAGE, Prot::READ).unwrap();
    s.handle_page_fault(a, Access::Read).unwrap();
    assert_eq!(s.stats().data_frames, 1);
    finish(s);
}

#[test]
fn munmap_across_areas_and_holes() {
    let mut s = space();
    let f = MmapFlags::FIXED;
    s.mmap(Some(va(WIN)), 4 * PAGE, RW, f | MmapFlags::POPULATE)
        .unwrap();
    s.mmap(
        Some(va(WIN + 6 * PAGE)),
        2 * PAGE,
        RW,
        f | MmapFlags::POPULATE,
    )
    .unwrap();
    s.mmap(Some(va(WIN + 10 * PAGE)), 4 * PAGE, Prot::READ, f)
        .unwrap();
    s.handle_page_fault(va(WIN + 12 * PAGE), Access::Read)
        .unwrap();
    s.handle_page_fault(va(WIN + 13 * PAGE), Access::Read)
        .unwrap();
    assert_eq!(s.stats().data_frames, 8);
    let before = snapshot(&s);
    assert_eq!(s.munmap(va(WIN + 1), PAGE), Err(AxError::InvalidInput));
    assert_eq!(s.munmap(va(WIN), 0), Err(AxError::InvalidInput));
    assert_eq!(
        s.munmap(va(WIN - PAGE), 2 * PAGE),
        Err(AxError::InvalidInput)
    );
    assert_eq!(s.munmap(va(WIN), usize::MAX), Err(AxError::InvalidInput));
    assert_eq!(snapshot(&s), before);
    // From the middle of the first area, across a hole, the second area, another
    // hole, into the third; len not a page multiple (rounded up).
    s.munmap(va(WIN + 2 * PAGE), 11 * PAGE - 100).unwrap();
    let areas: Vec<_> = s
        .areas()
        .map(|a| (a.start.as_usize(), a.end.as_usize()))
        .collect();
    assert_eq!(
        areas,
        [(WIN, WIN + 2 * PAGE), (WIN + 13 * PAGE, WIN + 14 * PAGE)]
    );
    assert_eq!(s.stats().data_frames, 3);
    assert!(s.translate(va(WIN + PAGE)).is_ok());
    assert!(s.translate(va(WIN + 2 * PAGE)).is_err());
    assert!(s.translate(va(WIN + 12 * PAGE)).is_err());
    assert!(s.translate(va(WIN + 13 * PAGE)).is_ok());
    // Unmapping only holes is fine.
    s.munmap(va(WIN + 20 * PAGE), 100 * PAGE).unwrap();
    assert_eq!(testing::frames_in_use(), 3 + s.stats().page_table_frames);
    finish(s);
}

#[test]
fn fixed_replaces_and_noreplace_refuses() {
    let mut s = space();
    let a = s
        .mmap(None, 4 * PAGE, RW, MmapFlags::POPULATE)
        .unwrap()
        .as_usize();
    for i in 0..4 {
        write(&s, a + i * PAGE, 7 + i as u64);
    }
    let before = snapshot(&s);
    let r = s.mmap(Some(va(a + PAGE)), PAGE, RW, MmapFlags::FIXED_NOREPLACE);
    assert_eq!(r, Err(AxError::AlreadyExists));
    let r = s.mmap(
        Some(va(a + PAGE)),
        PAGE,
        RW,
        MmapFlags::FIXED_NOREPLACE | MmapFlags::FIXED,
    );
    assert_eq!(r, Err(AxError::AlreadyExists));
    assert_eq!(snapshot(&s), before);
    let r = s.mmap(Some(va(a + 4 * PAGE)), PAGE, RW, MmapFlags::FIXED_NOREPLACE);
    assert_eq!(r, Ok(va(a + 4 * PAGE)));
    // FIXED over the middle two pages: replaced by a fresh lazy read-only mapping.
    let r = s.mmap(Some(va(a + PAGE)), 2 * PAGE, Prot::READ, MmapFlags::FIXED);
    assert_eq!(r, Ok(va(a + PAGE)));
    assert_eq!(s.stats().data_frames, 2);
    assert_eq!(read(&s, a), 7);
    assert_eq!(read(&s, a + 3 * PAGE), 10);
    assert!(s.translate(va(a + PAGE)).is_err());
    s.handle_page_fault(va(a + PAGE), Access::Read).unwrap();
    assert_eq!(read(&s, a + PAGE), 0);
    assert_eq!(
        s.area_at(va(a + 2 * PAGE)).unwrap().flags,
        MappingFlags::READ
    );
    assert_eq!(s.stats().areas, 4);
    finish(s);
}

#[test]
fn hint_is_used_when_free_and_aligned() {
    let mut s = space();
    let h = WIN + 100 * PAGE;
    assert_eq!(s.mmap(Some(va(h)), PAGE, RW, NONE), Ok(va(h)));
    // Occupied hint: lowest free range.
    assert_eq!(s.mmap(Some(va(h)), PAGE, RW, NONE), Ok(va(WIN)));
    // Unaligned hint: lowest free range.
    assert_eq!(s.mmap(Some(va(h + 5)), PAGE, RW, NONE), Ok(va(WIN + PAGE)));
    // Hint outside the window: lowest free range.
    assert_eq!(
        s.mmap(Some(va(0x1000)), PAGE, RW, NONE),
        Ok(va(WIN + 2 * PAGE))
    );
    // Hint whose range crosses an area: lowest free range.
    assert_eq!(
        s.mmap(Some(va(h - PAGE)), 2 * PAGE, RW, NONE),
        Ok(va(WIN + 3 * PAGE))
    );
    finish(s);
}

#[test]
fn window_exhaustion_is_no_memory() {
    testing::reset();
    let mut s = Space::new(va(WIN), 16 * PAGE).unwrap();
    // A kernel area above the window must not be offered as free space.
    s.map_linear(
        va(WIN + 64 * PAGE),
        PhysAddr::from(0x8000_0000),
        PAGE,
        MappingFlags::READ,
        false,
    )
    .unwrap();
    s.mmap(None, 10 * PAGE, RW, NONE).unwrap();
    let before = snapshot(&s);
    assert_eq!(s.mmap(None, 7 * PAGE, RW, NONE), Err(AxError::NoMemory));
    assert_eq!(
        s.map_phys(PhysAddr::from(0x9000_0000), 7 * PAGE, Prot::READ, false),
        Err(AxError::NoMemory)
    );
    assert_eq!(snapshot(&s), before);
    assert_eq!(s.mmap(None, 6 * PAGE, RW, NONE), Ok(va(WIN + 10 * PAGE)));
    assert_eq!(s.mmap(None, PAGE, RW, NONE), Err(AxError::NoMemory));
    finish(s);
}

#[test]
fn populate_out_of_frames_rolls_back() {
    let mut s = space();
    s.mmap(
        Some(va(WIN)),
        4 * PAGE,
        RW,
        MmapFlags::FIXED | MmapFlags::POPULATE,
    )
    .unwrap();
    write(&s, WIN + PAGE, 42);
    let before = snapshot(&s);
    testing::set_limit(Some(testing::frames_in_use() + 5));
    assert_eq!(
        s.mmap(None, 10 * PAGE, RW, MmapFlags::POPULATE),
        Err(AxError::NoMemory)
    );
    assert_eq!(snapshot(&s), before);
    // FIXED over the populated area: data frames run out first, old mapping intact.
    let r = s.mmap(
        Some(va(WIN)),
        8 * PAGE,
        RW,
        MmapFlags::FIXED | MmapFlags::POPULATE,
    );
    assert_eq!(r, Err(AxError::NoMemory));
    assert_eq!(snapshot(&s), before);
    assert_eq!(read(&s, WIN + PAGE), 42);
    assert!(testing::failed_allocs() >= 2);
    // Fits: 5 pages in the same leaf table.
    s.mmap(None, 5 * PAGE, RW, MmapFlags::POPULATE).unwrap();
    testing::set_limit(None);
    finish(s);
}

#[test]
fn populate_out_of_table_frames_rolls_back() {
    let mut s = space();
    assert_eq!(testing::frames_in_use(), 1);
    // The data frame fits, the three tables do not.
    testing::set_limit(Some(3));
    assert_eq!(
        s.mmap(None, PAGE, RW, MmapFlags::POPULATE),
        Err(AxError::NoMemory)
    );
    assert_eq!(testing::frames_in_use(), 1);
    assert_eq!(
        s.stats(),
        mm::MmStats {
            page_table_frames: 1,
            ..Default::default()
        }
    );
    // Same for a fault.
    let a = s.mmap(None, PAGE, RW, NONE).unwrap();
    let area = s.area_at(a).unwrap();
    assert_eq!(
        s.handle_page_fault(a, Access::Write),
        Err(FaultError::NoMemory { area })
    );
    assert_eq!(testing::frames_in_use(), 1);
    testing::set_limit(Some(1));
    assert_eq!(
        s.handle_page_fault(a, Access::Write),
        Err(FaultError::NoMemory { area })
    );
    assert_eq!(testing::frames_in_use(), 1);
    testing::set_limit(None);
    s.handle_page_fault(a, Access::Write).unwrap();
    assert_eq!(testing::frames_in_use(), 5);
    finish(s);
}

#[test]
fn map_phys_and_translate() {
    let mut s = space();
    let frame = TrackingHandler::alloc_frames(2, PAGE).unwrap();
    // SAFETY: a live 2-frame host allocation.
    unsafe { ((frame.as_usize() + PAGE + 8) as *mut u64).write(0xfeed) };
    let v = s
        .map_phys(frame, 2 * PAGE, Prot::READ, false)
        .unwrap()
        .as_usize();
    let t = s.translate(va(v + PAGE + 8)).unwrap();
    assert_eq!(t.paddr.as_usize(), frame.as_usize() + PAGE + 8);
    assert_eq!(t.page_size, LeafSize::Size4K);
    assert_eq!(read(&s, v + PAGE + 8), 0xfeed);
    let info = s.area_at(va(v)).unwrap();
    assert_eq!(
        info.kind,
        AreaKind::Linear {
            va_minus_pa: v.wrapping_sub(frame.as_usize())
        }
    );
    // A linear area is fully mapped: a write fault is denied, not resolved.
    assert!(matches!(
        s.handle_page_fault(va(v), Access::Write),
        Err(FaultError::Denied { .. })
    ));
    // NONE removes the PTEs, READ re-creates them.
    s.mprotect(va(v), PAGE, Prot::empty()).unwrap();
    assert_eq!(s.translate(va(v)), Err(AxError::BadAddress));
    s.mprotect(va(v), 2 * PAGE, RW).unwrap();
    assert_eq!(s.translate(va(v)).unwrap().paddr, frame);
    let d = s
        .map_phys(PhysAddr::from(0x1000_0000), PAGE, RW, true)
        .unwrap();
    assert!(s.area_at(d).unwrap().flags.contains(MappingFlags::DEVICE));
    s.mprotect(d, PAGE, Prot::READ).unwrap();
    assert!(
        s.area_at(d).unwrap().flags.contains(MappingFlags::DEVICE),
        "device stays device"
    );
    let before = snapshot(&s);
    assert_eq!(
        s.map_phys(PhysAddr::from(0x1000_0001), PAGE, RW, false),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.map_phys(PhysAddr::from(0x1000_0000), 0, RW, false),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.map_phys(PhysAddr::from(0x1000_0000), PAGE, Prot::WRITE, false),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.map_phys(PhysAddr::from(usize::MAX & !0xfff), 2 * PAGE, RW, false),
        Err(AxError::InvalidInput)
    );
    assert_eq!(snapshot(&s), before);
    s.munmap(va(v), 2 * PAGE).unwrap();
    s.munmap(d, PAGE).unwrap();
    assert_eq!(s.stats().page_table_frames, 1);
    drop(s);
    TrackingHandler::dealloc_frames(frame, 2);
    testing::assert_no_leaks();
}

fn kernel_regions() -> [MemRegion; 6] {
    let r = |pa: usize, size: usize, kind, name| MemRegion {
        paddr: PhysAddr::from(pa),
        size,
        kind,
        name,
    };
    [
        r(0, 2 * PAGE, MemKind::Reserved, "firmware"),
        r(0x20_0000, 0x20_0000, MemKind::Text, "text"),
        r(0x40_0000, 0x1000, MemKind::Rodata, "rodata"),
        r(0x60_0000, 0x20_0000, MemKind::Data, "data"),
        r(0x80_0000, 0x40_0000 + PAGE, MemKind::Free, "free"),
        r(0x1000_0000, PAGE, MemKind::Mmio, "uart"),
    ]
}

#[test]
fn map_kernel_flags_and_null_page() {
    for off in [0usize, 0xffff_8000_0000_0000] {
        let mut s = space();
        s.map_kernel(&kernel_regions(), off).unwrap();
        assert_eq!(
            s.translate(va(0)),
            Err(AxError::BadAddress),
            "NULL stays unmapped"
        );
        let k = |pa: usize| va(pa.wrapping_add(off));
        let t = |s: &Space, pa: usize| s.translate(k(pa)).unwrap();
        if off == 0 {
            assert_eq!(s.translate(k(0)), Err(AxError::BadAddress));
        } else {
            assert_eq!(t(&s, 0).flags, MappingFlags::READ);
        }
        assert_eq!(t(&s, PAGE).flags, MappingFlags::READ);
        assert_eq!(
            t(&s, 0x20_0000).flags,
            MappingFlags::READ | MappingFlags::EXECUTE
        );
        assert_eq!(t(&s, 0x20_0000).page_size, LeafSize::Size2M);
        assert_eq!(t(&s, 0x40_0000).flags, MappingFlags::READ);
        assert_eq!(
            t(&s, 0x60_0000).flags,
            MappingFlags::READ | MappingFlags::WRITE
        );
        assert_eq!(t(&s, 0x60_0000).page_size, LeafSize::Size2M);
        assert_eq!(t(&s, 0xc0_0000).page_size, LeafSize::Size4K);
        assert_eq!(t(&s, 0x80_1234).paddr.as_usize(), 0x80_1234);
        // x86_64 reports device memory as uncached.
        assert!(
            t(&s, 0x1000_0000)
                .flags
                .contains(MappingFlags::READ | MappingFlags::WRITE)
        );
        assert!(t(&s, 0x1000_0000).flags.contains(MappingFlags::UNCACHED));
        assert!(
            s.area_at(k(0x1000_0000))
                .unwrap()
                .flags
                .contains(MappingFlags::DEVICE)
        );
        // Data and Free are adjacent, both rw- at the same offset: one area.
        assert_eq!(s.stats().areas, 5);
        // App calls cannot touch kernel areas.
        assert_eq!(s.munmap(k(0x60_0000), PAGE), Err(AxError::InvalidInput));
        assert_eq!(
            s.mprotect(k(0x60_0000), PAGE, Prot::READ),
            Err(AxError::InvalidInput)
        );
        // A second map of the same regions overlaps: nothing changes.
        let before = snapshot(&s);
        assert_eq!(
            s.map_kernel(&kernel_regions(), off),
            Err(AxError::AlreadyExists)
        );
        assert_eq!(snapshot(&s), before);
        finish(s);
    }
}

#[test]
fn map_kernel_rolls_back_on_error() {
    let mut s = space();
    let mut regions = kernel_regions().to_vec();
    regions.push(MemRegion {
        paddr: PhysAddr::from(0x2000_0001),
        size: PAGE,
        kind: MemKind::Mmio,
        name: "bad",
    });
    assert_eq!(s.map_kernel(&regions, 0), Err(AxError::InvalidInput));
    assert_eq!(s.stats().areas, 0);
    assert_eq!(testing::frames_in_use(), 1);
    finish(s);
}

#[test]
fn map_linear_checks() {
    let mut s = space();
    let pa = PhysAddr::from(0x4000_0000);
    let r = MappingFlags::READ;
    s.map_linear(
        va(0x4000_0000),
        pa,
        0x4000_0000,
        r | MappingFlags::WRITE,
        true,
    )
    .unwrap();
    assert_eq!(
        s.translate(va(0x4000_1000)).unwrap().page_size,
        LeafSize::Size1G
    );
    assert_eq!(s.stats().page_table_frames, 2);
    let before = snapshot(&s);
    assert_eq!(
        s.map_linear(va(0x4000_0000), pa, PAGE, r, false),
        Err(AxError::AlreadyExists)
    );
    assert_eq!(
        s.map_linear(va(0x1), pa, PAGE, r, false),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.map_linear(va(0x1000), pa + 1, PAGE, r, false),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.map_linear(va(0x1000), pa, 0, r, false),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.map_linear(va(0x1000), pa, 100, r, false),
        Err(AxError::InvalidInput)
    );
    // Flags without READ: no access, write-only, execute-only.
    for flags in [
        MappingFlags::empty(),
        MappingFlags::WRITE,
        MappingFlags::EXECUTE,
        MappingFlags::DEVICE,
    ] {
        assert_eq!(
            s.map_linear(va(0x1000), pa, PAGE, flags, false),
            Err(AxError::InvalidInput),
            "{flags:?}"
        );
    }
    // Across the hole between the halves.
    assert_eq!(
        s.map_linear(
            va(0x0000_7fff_ffff_f000),
            pa,
            0xffff_8000_0000_1000 - 0x0000_7fff_ffff_f000,
            r,
            false
        ),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.map_linear(va(usize::MAX & !0xfff), pa, 2 * PAGE, r, false),
        Err(AxError::InvalidInput)
    );
    assert_eq!(snapshot(&s), before);
    // Out of table frames: nothing stays mapped.
    testing::set_limit(Some(testing::frames_in_use() + 1));
    assert_eq!(
        s.map_linear(va(0x8000_0000), pa, PAGE, r, false),
        Err(AxError::NoMemory)
    );
    assert_eq!(snapshot(&s), before);
    testing::set_limit(None);
    finish(s);
}

#[test]
fn area_display() {
    let mut s = space();
    s.mmap(Some(va(0x10_0000_0000)), 0x40000, RW, MmapFlags::FIXED)
        .unwrap();
    s.map_linear(
        va(0xffff_ffc0_0020_0000),
        PhysAddr::from(0x20_0000),
        PAGE,
        MappingFlags::READ | MappingFlags::EXECUTE,
        false,
    )
    .ok();
    let d = s
        .map_phys(PhysAddr::from(0x1000_0000), PAGE, RW, true)
        .unwrap();
    let e = s.mmap(None, PAGE, RW, MmapFlags::POPULATE).unwrap();
    assert_eq!(
        s.area_at(va(0x10_0000_0000)).unwrap().to_string(),
        "[0x1000000000, 0x1000040000) rw- alloc(lazy)"
    );
    assert_eq!(
        s.area_at(d).unwrap().to_string(),
        format!(
            "[{:#x}, {:#x}) rw- device linear(+{:#x})",
            d.as_usize(),
            d.as_usize() + PAGE,
            d.as_usize() - 0x1000_0000
        )
    );
    assert!(
        s.area_at(e)
            .unwrap()
            .to_string()
            .ends_with("rw- alloc(eager)")
    );
    let info = mm::AreaInfo {
        start: va(0xffff_ffc0_8020_0000),
        end: va(0xffff_ffc0_8040_0000),
        flags: MappingFlags::READ | MappingFlags::EXECUTE,
        kind: AreaKind::Linear {
            va_minus_pa: 0xffff_ffc0_0000_0000,
        },
    };
    assert_eq!(
        info.to_string(),
        "[0xffffffc080200000, 0xffffffc080400000) r-x linear(+0xffffffc000000000)"
    );
    finish(s);
}
