//! A backend defined outside `mm`, driven only through
//! `AddrSpace::mmap_backend` and the usual calls: the public `Backend`
//! contract is enough to write one.
//!
//! `Pattern` is lazy: every page gets a frame of its own (from
//! `Pages::alloc_frames`) filled with a pattern derived from its *offset* in
//! the mapping, so a page that a split, a merge or a `PROT_NONE` round trip
//! sent to the wrong offset, or whose data was lost, is seen at once.

mod common;

use axerrno::AxError;
use common::*;
use hal::Access;
use memory_addr::VirtAddr;
use mm::{
    AreaKind, Backend, Fault, FaultAction, FaultError, FaultRefusal, GenericPTE, LeafSize,
    MappingFlags, MmapFlags, NoMemory, Pages, PagingHandler, PagingMetaData, Prot, Release,
};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const NONE: MmapFlags = MmapFlags::empty();

/// Word `j` of the page at byte offset `off` of a pattern mapping.
fn pattern(seed: u64, off: usize, j: usize) -> u64 {
    seed ^ ((off as u64) << 16) ^ j as u64
}

/// Lazy pages filled with `pattern(seed, offset, ..)`; `base` is the offset
/// of the area's first page.
struct Pattern {
    seed: u64,
    base: usize,
}

fn accessible(flags: MappingFlags) -> bool {
    flags.intersects(MappingFlags::READ | MappingFlags::WRITE | MappingFlags::EXECUTE)
}

impl<M, PTE, H> Backend<M, PTE, H> for Pattern
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    fn map(
        &mut self,
        _start: usize,
        _end: usize,
        _flags: MappingFlags,
        _pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        Ok(())
    }

    fn unmap(&mut self, start: usize, end: usize, pages: &mut Pages<'_, M, PTE, H>) {
        pages.unmap(start, end, |_| Release::Free);
    }

    fn protect(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) {
        if accessible(flags) {
            pages.protect(start, end, flags);
        } else {
            pages.park(start, end);
        }
    }

    fn fault(
        &self,
        f: &Fault,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal> {
        let page = f.page();
        if let Some(r) = pages.unpark(page, f.flags) {
            r?;
            return Ok(FaultAction::Mapped);
        }
        let pa = pages.alloc_frames(1, PAGE).ok_or(FaultRefusal::NoMemory)?;
        let off = self.base + (page - f.start);
        let words = pages.phys_to_virt(pa).cast::<u64>();
        for j in 0..PAGE / 8 {
            // SAFETY: `pa` is a 4K frame just allocated for this area and
            // mapped nowhere yet; `phys_to_virt` reaches it.
            unsafe { words.add(j).write(pattern(self.seed, off, j)) };
        }
        if let Err(e) = pages.map(page, pa, LeafSize::Size4K, f.flags) {
            pages.free_unmapped(pa, 1);
            return Err(e.into());
        }
        Ok(FaultAction::Mapped)
    }

    fn split(&mut self, start: usize, at: usize, _end: usize) -> Self {
        Pattern {
            seed: self.seed,
            base: self.base + (at - start),
        }
    }

    fn try_merge(&mut self, start: usize, mid: usize, next: &Self, _end: usize) -> bool {
        next.seed == self.seed && self.base + (mid - start) == next.base
    }

    fn describe(&self, _start: usize) -> AreaKind {
        AreaKind::Other { name: &"pattern" }
    }
}

/// Reads are zero-filled by the address space (`Fresh`); writes are
/// refused by the backend itself.
struct ReadOnlyZero;

impl<M, PTE, H> Backend<M, PTE, H> for ReadOnlyZero
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    fn map(
        &mut self,
        _start: usize,
        _end: usize,
        _flags: MappingFlags,
        _pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        Ok(())
    }

    fn unmap(&mut self, start: usize, end: usize, pages: &mut Pages<'_, M, PTE, H>) {
        pages.unmap(start, end, |_| Release::Free);
    }

    fn protect(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) {
        if accessible(flags) {
            pages.protect(start, end, flags);
        } else {
            pages.park(start, end);
        }
    }

    fn fault(
        &self,
        f: &Fault,
        _pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal> {
        if f.access == Access::Write {
            return Err(FaultRefusal::Denied);
        }
        Ok(FaultAction::Fresh {
            base: f.page(),
            size: LeafSize::Size4K,
        })
    }

    fn split(&mut self, _start: usize, _at: usize, _end: usize) -> Self {
        ReadOnlyZero
    }

    fn try_merge(&mut self, _start: usize, _mid: usize, _next: &Self, _end: usize) -> bool {
        true
    }

    fn describe(&self, _start: usize) -> AreaKind {
        AreaKind::Other { name: &"ro-zero" }
    }
}

fn pattern_box(seed: u64, base: usize) -> Pattern {
    Pattern { seed, base }
}

fn fault(s: &Space, addr: usize, access: Access) -> Result<(), FaultError> {
    s.handle_page_fault(va(addr), access)
}

/// Whether the page at `addr` holds the pattern of offset `off`, apart from
/// the words in `except` (with their values).
fn holds(s: &Space, addr: usize, seed: u64, off: usize, except: &[(usize, u64)]) -> bool {
    (0..PAGE / 8).all(|j| {
        let want = except
            .iter()
            .find(|&&(w, _)| w == j)
            .map_or(pattern(seed, off, j), |&(_, v)| v);
        read(s, addr + 8 * j) == want
    })
}

fn layout(s: &Space) -> Vec<(usize, usize, AreaKind)> {
    s.areas()
        .map(|a| (a.start.as_usize(), a.end.as_usize(), a.kind))
        .collect()
}

const KIND: AreaKind = AreaKind::Other { name: &"pattern" };

/// The frames the space's areas own (`Pages::alloc_frames` counts them).
fn data(s: &Space) -> usize {
    s.stats().data_frames
}

#[test]
fn pattern_pages_at_every_offset_after_splits_and_merges() {
    let mut s = space();
    let seed = 0x9e37_79b9_0000_0000;
    let a = s
        .mmap_backend(None, 8 * PAGE, RW, NONE, pattern_box(seed, 0))
        .unwrap()
        .as_usize();
    assert_eq!(layout(&s), vec![(a, a + 8 * PAGE, KIND)]);
    let area = s.areas().next().unwrap();
    assert_eq!(
        area.to_string(),
        format!("[{a:#x}, {:#x}) rw- pattern", a + 8 * PAGE)
    );
    assert!(s.translate(va(a)).is_err());
    assert_eq!(data(&s), 0);

    fault(&s, a + 8, Access::Read).unwrap();
    assert!(holds(&s, a, seed, 0, &[]));
    fault(&s, a + 2 * PAGE, Access::Write).unwrap();
    write(&s, a + 2 * PAGE + 8, 77);
    assert_eq!(data(&s), 2);

    // mprotect of the middle splits into three areas; the right parts have
    // the right offsets, so their faults fill the right patterns.
    s.mprotect(va(a + 3 * PAGE), 2 * PAGE, Prot::READ).unwrap();
    assert_eq!(
        layout(&s),
        vec![
            (a, a + 3 * PAGE, KIND),
            (a + 3 * PAGE, a + 5 * PAGE, KIND),
            (a + 5 * PAGE, a + 8 * PAGE, KIND),
        ]
    );
    for p in [4usize, 6, 7] {
        fault(&s, a + p * PAGE, Access::Read).unwrap();
        assert!(holds(&s, a + p * PAGE, seed, p * PAGE, &[]), "page {p}");
    }
    // The read-only part refuses writes (the area's flags).
    let before = snapshot(&s);
    assert!(matches!(
        fault(&s, a + 4 * PAGE, Access::Write),
        Err(FaultError::Denied { area }) if area.start == va(a + 3 * PAGE)
    ));
    assert_eq!(snapshot(&s), before);
    assert!(
        !s.translate(va(a + 4 * PAGE))
            .unwrap()
            .flags
            .contains(MappingFlags::WRITE)
    );

    // Back to RW: one area again, data unchanged.
    s.mprotect(va(a + 3 * PAGE), 2 * PAGE, RW).unwrap();
    assert_eq!(layout(&s), vec![(a, a + 8 * PAGE, KIND)]);
    assert!(
        s.translate(va(a + 4 * PAGE))
            .unwrap()
            .flags
            .contains(MappingFlags::WRITE)
    );
    assert!(holds(&s, a + 2 * PAGE, seed, 2 * PAGE, &[(1, 77)]));
    fault(&s, a + 3 * PAGE, Access::Write).unwrap();
    assert!(holds(&s, a + 3 * PAGE, seed, 3 * PAGE, &[]));

    // Partial munmaps: the front, a middle page, the back.
    let d = data(&s);
    s.munmap(va(a), PAGE).unwrap();
    assert_eq!(data(&s), d - 1);
    s.munmap(va(a + 5 * PAGE), PAGE).unwrap();
    s.munmap(va(a + 7 * PAGE), PAGE).unwrap();
    assert_eq!(
        layout(&s),
        vec![
            (a + PAGE, a + 5 * PAGE, KIND),
            (a + 6 * PAGE, a + 7 * PAGE, KIND),
        ]
    );
    fault(&s, a + PAGE, Access::Read).unwrap();
    assert!(holds(&s, a + PAGE, seed, PAGE, &[]));
    assert!(holds(&s, a + 6 * PAGE, seed, 6 * PAGE, &[]));
    assert!(holds(&s, a + 2 * PAGE, seed, 2 * PAGE, &[(1, 77)]));
    assert_eq!(data(&s), 5); // pages 1, 2, 3, 4, 6
    assert_eq!(
        testing::frames_in_use(),
        data(&s) + s.stats().page_table_frames
    );

    // A second mapping right after, continuing the offsets: merges.
    s.mmap_backend(
        Some(va(a + 7 * PAGE)),
        PAGE,
        RW,
        MmapFlags::FIXED_NOREPLACE,
        pattern_box(seed, 7 * PAGE),
    )
    .unwrap();
    assert_eq!(layout(&s)[1], (a + 6 * PAGE, a + 8 * PAGE, KIND));
    // Another seed, or a non-consecutive offset: no merge.
    s.mmap_backend(
        Some(va(a + 8 * PAGE)),
        PAGE,
        RW,
        MmapFlags::FIXED_NOREPLACE,
        pattern_box(seed + 1, 8 * PAGE),
    )
    .unwrap();
    s.mmap_backend(
        Some(va(a + 9 * PAGE)),
        PAGE,
        RW,
        MmapFlags::FIXED_NOREPLACE,
        pattern_box(seed + 1, 0),
    )
    .unwrap();
    assert_eq!(s.stats().areas, 4);
    fault(&s, a + 9 * PAGE, Access::Read).unwrap();
    assert!(holds(&s, a + 9 * PAGE, seed + 1, 0, &[]));
    // An allocated area next to it never merges with it.
    s.mmap(Some(va(a + 10 * PAGE)), PAGE, RW, MmapFlags::FIXED)
        .unwrap();
    assert_eq!(s.stats().areas, 5);
    finish(s);
}

#[test]
fn pattern_prot_none_round_trip_keeps_data() {
    let mut s = space();
    let seed = 0x1234;
    let a = s
        .mmap_backend(None, 4 * PAGE, RW, NONE, pattern_box(seed, 0))
        .unwrap()
        .as_usize();
    for p in 0..3 {
        fault(&s, a + p * PAGE, Access::Write).unwrap();
        write(&s, a + p * PAGE, 100 + p as u64);
    }
    let frames: Vec<_> = (0..3)
        .map(|p| s.translate(va(a + p * PAGE)).unwrap().paddr)
        .collect();
    let in_use = testing::frames_in_use();
    s.mprotect(va(a + PAGE), 3 * PAGE, Prot::empty()).unwrap();
    assert!(s.translate(va(a + PAGE)).is_err());
    // Parked, not freed.
    assert_eq!(data(&s), 3);
    let before = snapshot(&s);
    assert!(matches!(
        fault(&s, a + PAGE, Access::Read),
        Err(FaultError::Denied { .. })
    ));
    assert_eq!(snapshot(&s), before);
    // Back: the parked frames are mapped again at once (the default reopen).
    s.mprotect(va(a + PAGE), 3 * PAGE, Prot::READ).unwrap();
    assert_eq!(s.translate(va(a + 2 * PAGE)).unwrap().paddr, frames[2]);
    assert!(holds(&s, a + PAGE, seed, PAGE, &[(0, 101)]));
    assert!(holds(&s, a + 2 * PAGE, seed, 2 * PAGE, &[(0, 102)]));
    s.mprotect(va(a + PAGE), 3 * PAGE, RW).unwrap();
    assert_eq!(layout(&s), vec![(a, a + 4 * PAGE, KIND)]);
    // The page never touched is filled on its first fault.
    fault(&s, a + 3 * PAGE, Access::Read).unwrap();
    assert!(holds(&s, a + 3 * PAGE, seed, 3 * PAGE, &[]));
    assert_eq!(testing::frames_in_use(), in_use + 1);

    // Parked again; unmapping parked pages frees them.
    s.mprotect(va(a), 4 * PAGE, Prot::empty()).unwrap();
    s.munmap(va(a + 3 * PAGE), PAGE).unwrap();
    assert_eq!(data(&s), 3);
    // Unmapping parked pages frees them.
    s.munmap(va(a), PAGE).unwrap();
    assert_eq!(data(&s), 2);
    finish(s);
}

#[test]
fn pattern_fixed_replacement_and_drop() {
    let mut s = space();
    let seed = 0xabcd;
    let a = s
        .mmap(None, 4 * PAGE, RW, MmapFlags::POPULATE)
        .unwrap()
        .as_usize();
    assert_eq!(data(&s), 4);
    // A pattern mapping FIXED over the allocated area's middle.
    s.mmap_backend(
        Some(va(a + PAGE)),
        2 * PAGE,
        RW,
        MmapFlags::FIXED,
        pattern_box(seed, 0x100 * PAGE),
    )
    .unwrap();
    assert_eq!(data(&s), 2);
    assert_eq!(layout(&s)[1], (a + PAGE, a + 3 * PAGE, KIND));
    assert!(s.translate(va(a + PAGE)).is_err());
    fault(&s, a + 2 * PAGE, Access::Read).unwrap();
    assert!(holds(&s, a + 2 * PAGE, seed, 0x101 * PAGE, &[]));
    fault(&s, a + PAGE, Access::Read).unwrap();
    assert_eq!(data(&s), 4);

    // FIXED_NOREPLACE refuses, changing nothing.
    let before = snapshot(&s);
    assert_eq!(
        s.mmap_backend(
            Some(va(a)),
            PAGE,
            RW,
            MmapFlags::FIXED_NOREPLACE,
            pattern_box(seed, 0)
        ),
        Err(AxError::AlreadyExists)
    );
    assert_eq!(snapshot(&s), before);

    // FIXED over the pattern area: its frames are freed.
    s.mmap(Some(va(a)), 4 * PAGE, RW, MmapFlags::FIXED).unwrap();
    assert_eq!(data(&s), 0);
    assert_eq!(testing::frames_in_use(), s.stats().page_table_frames);

    // And a pattern area FIXED over a pattern area.
    s.mmap_backend(
        Some(va(a)),
        4 * PAGE,
        RW,
        MmapFlags::FIXED,
        pattern_box(seed, 0),
    )
    .unwrap();
    for p in 0..4 {
        fault(&s, a + p * PAGE, Access::Read).unwrap();
    }
    s.mmap_backend(
        Some(va(a + PAGE)),
        PAGE,
        RW,
        MmapFlags::FIXED,
        pattern_box(seed + 9, 0),
    )
    .unwrap();
    assert_eq!(data(&s), 3);
    fault(&s, a + PAGE, Access::Read).unwrap();
    assert!(holds(&s, a + PAGE, seed + 9, 0, &[]));
    assert!(holds(&s, a + 2 * PAGE, seed, 2 * PAGE, &[]));

    // Dropping the space frees every frame the backends hold.
    assert_eq!(data(&s), 4);
    finish(s);
}

#[test]
fn pattern_faults_without_frames() {
    let mut s = space();
    let a = s
        .mmap_backend(None, 2 * PAGE, RW, NONE, pattern_box(1, 0))
        .unwrap()
        .as_usize();
    fault(&s, a, Access::Read).unwrap();
    testing::set_limit(Some(testing::frames_in_use()));
    let before = snapshot(&s);
    let area = s.areas().next().unwrap();
    assert_eq!(
        fault(&s, a + PAGE, Access::Read),
        Err(FaultError::NoMemory { area })
    );
    assert_eq!(snapshot(&s), before);
    testing::set_limit(None);
    fault(&s, a + PAGE, Access::Read).unwrap();
    assert!(holds(&s, a + PAGE, 1, PAGE, &[]));
    finish(s);
}

#[test]
fn mmap_backend_refuses_the_flags_that_are_the_backends_business() {
    let mut s = space();
    let a = s
        .mmap_backend(None, 2 * PAGE, RW, NONE, pattern_box(3, 0))
        .unwrap()
        .as_usize();
    fault(&s, a, Access::Write).unwrap();
    let before = snapshot(&s);
    const M2: usize = 2 << 20;
    for (len, flags) in [
        (PAGE, MmapFlags::POPULATE),
        (PAGE, MmapFlags::SHARED),
        (PAGE, MmapFlags::PRIVATE),
        (PAGE, MmapFlags::CONTIGUOUS),
        (M2, MmapFlags::HUGE_2M),
        (1 << 30, MmapFlags::HUGE_1G),
        (PAGE, MmapFlags::FIXED | MmapFlags::POPULATE),
    ] {
        let addr = flags.contains(MmapFlags::FIXED).then_some(va(a));
        assert_eq!(
            s.mmap_backend(addr, len, RW, flags, pattern_box(3, 0)),
            Err(AxError::InvalidInput),
            "{flags:?}"
        );
        assert_eq!(snapshot(&s), before, "{flags:?}");
    }
    // The usual argument checks apply too.
    assert_eq!(
        s.mmap_backend(None, 0, RW, NONE, pattern_box(3, 0)),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.mmap_backend(None, PAGE, Prot::WRITE, NONE, pattern_box(3, 0)),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.mmap_backend(None, PAGE, RW, MmapFlags::FIXED, pattern_box(3, 0)),
        Err(AxError::InvalidInput)
    );
    assert_eq!(snapshot(&s), before);
    finish(s);
}

#[test]
fn backend_refusing_writes_gives_denied() {
    let mut s = space();
    let a = s
        .mmap_backend(None, 2 * PAGE, RW, NONE, ReadOnlyZero)
        .unwrap()
        .as_usize();
    let area = s.areas().next().unwrap();
    assert_eq!(area.kind, AreaKind::Other { name: &"ro-zero" });
    let before = snapshot(&s);
    // The area allows writes; the backend refuses them.
    assert_eq!(
        fault(&s, a + 8, Access::Write),
        Err(FaultError::Denied { area })
    );
    assert_eq!(snapshot(&s), before);
    // Reads get a zeroed frame owned by the area (FaultAction::Fresh).
    fault(&s, a + 8, Access::Read).unwrap();
    assert!(page_is_zero(&s, a));
    assert_eq!(data(&s), 1);
    let t = s.translate(va(a)).unwrap();
    // Fresh frames get the area's flags: the page is writable now, so the
    // write no longer reaches the backend.
    assert!(t.flags.contains(MappingFlags::WRITE));
    fault(&s, a + 8, Access::Write).unwrap();
    assert_eq!(s.stats().spurious_faults, 1);
    // A write to the other (unmapped) page is still refused.
    assert!(matches!(
        fault(&s, a + PAGE, Access::Write),
        Err(FaultError::Denied { .. })
    ));
    assert_eq!(
        AxError::from(fault(&s, a + PAGE, Access::Write).unwrap_err()),
        AxError::PermissionDenied
    );
    finish(s);
}

/// `unmap` gives back exactly the frames of the unmapped part, mapped or
/// parked.
#[test]
fn pattern_unmap_releases_what_fault_took() {
    let mut s = space();
    let a = s
        .mmap_backend(None, 16 * PAGE, RW, NONE, pattern_box(5, 0))
        .unwrap()
        .as_usize();
    for p in (0..16).step_by(3) {
        fault(&s, a + p * PAGE, Access::Read).unwrap();
    }
    assert_eq!(data(&s), 6);
    s.mprotect(va(a + 4 * PAGE), 4 * PAGE, Prot::empty())
        .unwrap();
    s.munmap(va(a + 2 * PAGE), 8 * PAGE).unwrap();
    // Pages 0, 12, 15 are left.
    assert_eq!(data(&s), 3);
    assert_eq!(testing::frames_in_use(), 3 + s.stats().page_table_frames);
    finish(s);
}
