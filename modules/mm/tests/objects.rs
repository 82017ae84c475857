//! Memory objects through the address space: `mmap_object` (shared and
//! private), anonymous `MAP_SHARED`, copy-on-write, `msync`, faults past the
//! end of an object, errors, frame limits, `FIXED` replacement and faults on
//! several threads.
//!
//! There is no MMU on the host: a "write" to a mapped page is a fault for
//! `Write` (what the CPU would raise first) followed by a store through the
//! translated frame (`common::write`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axerrno::AxError;
use common::*;
use hal::Access;
use mm::{
    AreaInfo, AreaKind, BytesPager, FaultError, MappingFlags, MemObject, MmStats, MmapFlags,
    MsyncFlags, Pager, PagerError, Prot,
};
use testing::TrackingHandler;

type Obj = MemObject<TrackingHandler>;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const SHARED: MmapFlags = MmapFlags::SHARED;
const PRIVATE: MmapFlags = MmapFlags::PRIVATE;

/// `len` bytes of a pattern no page shares with another (`&'static`, as
/// `BytesPager` wants: leaked, a few pages per test).
fn text(len: usize) -> &'static [u8] {
    let v: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(7) ^ (i / PAGE).wrapping_mul(31) ^ 0x5a) as u8)
        .collect();
    Box::leak(v.into_boxed_slice())
}

/// The u64 of `bytes` at `off`.
fn word(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

fn fault(s: &Space, addr: usize, access: Access) -> Result<(), FaultError> {
    s.handle_page_fault(va(addr), access)
}

/// A write to `addr` as an app does it: the write fault, then the store.
fn store(s: &Space, addr: usize, v: u64) {
    fault(s, addr, Access::Write).unwrap();
    write(s, addr, v);
}

/// The frame mapped at `addr` (page aligned).
fn frame(s: &Space, addr: usize) -> usize {
    s.translate(va(addr)).expect("mapped").paddr.as_usize() & !(PAGE - 1)
}

fn pte_flags(s: &Space, addr: usize) -> MappingFlags {
    s.translate(va(addr)).expect("mapped").flags
}

/// The 4K bytes of the frame mapped at `addr`.
fn page_bytes(s: &Space, addr: usize) -> Vec<u8> {
    let f = frame(s, addr);
    // SAFETY: the tracking handler's frames are live host memory at their
    // physical address; the page is mapped, so its frame is allocated.
    unsafe { core::slice::from_raw_parts(f as *const u8, PAGE) }.to_vec()
}

/// The object's frame of page `i` (it must be resident).
fn obj_frame(o: &Obj, i: usize) -> usize {
    o.page_state(i).expect("resident").frame.as_usize()
}

/// (maps, wmaps) of object page `i`, `None` if not resident.
fn counts(o: &Obj, i: usize) -> Option<(usize, usize)> {
    o.page_state(i).map(|p| (p.maps, p.wmaps))
}

/// Everything an error must leave unchanged.
fn state(s: &Space) -> (Snapshot, MmStats) {
    (snapshot(s), s.stats())
}

/// Every page-table leaf: (address, frame, flags).
fn leaves(s: &Space) -> Vec<(usize, usize, MappingFlags)> {
    let mut v = Vec::new();
    s.page_table()
        .for_each_leaf(|l| v.push((l.vaddr.as_usize(), l.paddr.as_usize(), l.flags)));
    v
}

fn areas(s: &Space) -> Vec<AreaInfo> {
    s.areas().collect()
}

fn object_kind(shared: bool, offset: usize) -> AreaKind {
    AreaKind::Object { shared, offset }
}

/// (start, end, kind) of every area.
fn layout(s: &Space) -> Vec<(usize, usize, AreaKind)> {
    s.areas()
        .map(|a| (a.start.as_usize(), a.end.as_usize(), a.kind))
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Two shared mappings in one space.
// ---------------------------------------------------------------------------

#[test]
fn shared_mappings_in_one_space_see_each_others_writes() {
    let mut s = space();
    let obj = Obj::anonymous(8 * PAGE).unwrap();
    let a = s
        .mmap_object(None, 8 * PAGE, RW, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    let b = s
        .mmap_object(None, 8 * PAGE, RW, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    // Adjacent, but both start at offset 0: two areas.
    assert_eq!(
        layout(&s),
        vec![
            (a, a + 8 * PAGE, object_kind(true, 0)),
            (b, b + 8 * PAGE, object_kind(true, 0)),
        ]
    );
    for (k, p) in [0usize, 3, 7].into_iter().enumerate() {
        let off = p * PAGE + 8 * (k + 1);
        store(&s, a + off, 0x1000 + p as u64);
        assert_eq!(counts(&obj, p), Some((1, 1)));
        // A read through b maps the same frame, read-only.
        fault(&s, b + off, Access::Read).unwrap();
        assert_eq!(frame(&s, a + off), frame(&s, b + off));
        assert_eq!(frame(&s, b + off), obj_frame(&obj, p));
        assert!(!pte_flags(&s, b + off).contains(MappingFlags::WRITE));
        assert_eq!(read(&s, b + off), 0x1000 + p as u64);
        assert_eq!(counts(&obj, p), Some((2, 1)));
        // And a write through b is seen through a.
        store(&s, b + off, 0x2000 + p as u64);
        assert!(pte_flags(&s, b + off).contains(MappingFlags::WRITE));
        assert_eq!(counts(&obj, p), Some((2, 2)));
        assert_eq!(read(&s, a + off), 0x2000 + p as u64);
    }
    let st = s.stats();
    assert_eq!((st.data_frames, st.shared_frames), (0, 6));
    assert_eq!(obj.pages(), 3);
    assert_eq!(testing::frames_in_use(), 3 + st.page_table_frames);

    // mprotect splits a into three; page 3 is read-only there now.
    s.mprotect(va(a + 2 * PAGE), 2 * PAGE, Prot::READ).unwrap();
    assert_eq!(
        layout(&s),
        vec![
            (a, a + 2 * PAGE, object_kind(true, 0)),
            (a + 2 * PAGE, a + 4 * PAGE, object_kind(true, 2 * PAGE)),
            (a + 4 * PAGE, a + 8 * PAGE, object_kind(true, 4 * PAGE)),
            (b, b + 8 * PAGE, object_kind(true, 0)),
        ]
    );
    assert!(!pte_flags(&s, a + 3 * PAGE).contains(MappingFlags::WRITE));
    assert_eq!(counts(&obj, 3), Some((2, 1)));
    let before = state(&s);
    assert!(matches!(
        fault(&s, a + 3 * PAGE, Access::Write),
        Err(FaultError::Denied { area }) if area.start == va(a + 2 * PAGE)
    ));
    assert_eq!(state(&s), before);
    store(&s, b + 3 * PAGE + 16, 0x3333);
    assert_eq!(read(&s, a + 3 * PAGE + 16), 0x3333);
    assert_eq!(frame(&s, a + 3 * PAGE), frame(&s, b + 3 * PAGE));
    // Faults in the split-off parts map the object's pages at their offsets.
    fault(&s, a + 5 * PAGE, Access::Read).unwrap();
    fault(&s, b + 5 * PAGE, Access::Read).unwrap();
    assert_eq!(frame(&s, a + 5 * PAGE), frame(&s, b + 5 * PAGE));
    assert_eq!(frame(&s, a + 5 * PAGE), obj_frame(&obj, 5));

    // Back to RW: one area again (the pieces have consecutive offsets).
    s.mprotect(va(a + 2 * PAGE), 2 * PAGE, RW).unwrap();
    assert_eq!(layout(&s)[0], (a, a + 8 * PAGE, object_kind(true, 0)));
    assert_eq!(s.stats().areas, 2);
    // Still read-only in the table until a write fault dirties it again.
    assert!(!pte_flags(&s, a + 3 * PAGE).contains(MappingFlags::WRITE));
    store(&s, a + 3 * PAGE + 24, 0x4444);
    assert_eq!(read(&s, b + 3 * PAGE + 24), 0x4444);

    // A partial munmap of a: the rest keeps its offset, page 0 loses a map.
    s.munmap(va(a), 2 * PAGE).unwrap();
    assert_eq!(
        layout(&s)[0],
        (a + 2 * PAGE, a + 8 * PAGE, object_kind(true, 2 * PAGE))
    );
    assert_eq!(counts(&obj, 0), Some((1, 1)));
    assert_eq!(read(&s, b + 8), 0x2000);
    store(&s, a + 7 * PAGE + 24, 0x7777);
    assert_eq!(read(&s, b + 7 * PAGE + 24), 0x7777);

    // A mapping at a non-zero object offset (pages 6 and 7).
    let c = s
        .mmap_object(None, 2 * PAGE, RW, SHARED, &obj, 6 * PAGE)
        .unwrap()
        .as_usize();
    fault(&s, c + PAGE, Access::Read).unwrap();
    assert_eq!(frame(&s, c + PAGE), obj_frame(&obj, 7));
    assert_eq!(read(&s, c + PAGE + 24), 0x7777);
    store(&s, c + 8, 0x6666);
    assert_eq!(obj_frame(&obj, 6), frame(&s, c));
    fault(&s, b + 6 * PAGE, Access::Read).unwrap();
    assert_eq!(read(&s, b + 6 * PAGE + 8), 0x6666);

    // Two adjacent mmap_object calls with consecutive offsets merge.
    let d = WIN + 0x1000_0000;
    let fixed = SHARED | MmapFlags::FIXED_NOREPLACE;
    s.mmap_object(Some(va(d)), 2 * PAGE, RW, fixed, &obj, 0)
        .unwrap();
    s.mmap_object(Some(va(d + 2 * PAGE)), 2 * PAGE, RW, fixed, &obj, 2 * PAGE)
        .unwrap();
    // Not consecutive, or private: no merge.
    s.mmap_object(Some(va(d + 4 * PAGE)), PAGE, RW, fixed, &obj, 5 * PAGE)
        .unwrap();
    s.mmap_object(
        Some(va(d + 5 * PAGE)),
        PAGE,
        RW,
        PRIVATE | MmapFlags::FIXED_NOREPLACE,
        &obj,
        6 * PAGE,
    )
    .unwrap();
    let at_d: Vec<_> = layout(&s).into_iter().filter(|a| a.0 >= d).collect();
    assert_eq!(
        at_d,
        vec![
            (d, d + 4 * PAGE, object_kind(true, 0)),
            (d + 4 * PAGE, d + 5 * PAGE, object_kind(true, 5 * PAGE)),
            (d + 5 * PAGE, d + 6 * PAGE, object_kind(false, 6 * PAGE)),
        ]
    );
    fault(&s, d + 3 * PAGE, Access::Read).unwrap();
    assert_eq!(frame(&s, d + 3 * PAGE), frame(&s, b + 3 * PAGE));
    assert_eq!(read(&s, d + 3 * PAGE + 24), 0x4444);
    fault(&s, d + 4 * PAGE, Access::Read).unwrap();
    assert_eq!(frame(&s, d + 4 * PAGE), obj_frame(&obj, 5));

    // Dropping the space gives every mapping back; the object keeps its pages.
    let resident = obj.pages();
    drop(s);
    assert_eq!(obj.mapped_pages(), 0);
    assert_eq!(testing::frames_in_use(), resident);
    assert_eq!(Arc::strong_count(&obj), 1);
    drop(obj);
    testing::assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 2. Two address spaces.
// ---------------------------------------------------------------------------

fn two_spaces_with(obj: &Arc<Obj>) -> (Space, Space, usize, usize) {
    let mut s1 = Space::new(va(WIN), WSIZE).unwrap();
    let mut s2 = Space::new(va(WIN), WSIZE).unwrap();
    let a = s1
        .mmap_object(None, 4 * PAGE, RW, SHARED, obj, 0)
        .unwrap()
        .as_usize();
    // A different address in the second space, to be sure nothing relies on
    // equal addresses.
    let b = s2
        .mmap_object(Some(va(WIN + 0x20_0000)), 4 * PAGE, RW, SHARED, obj, 0)
        .unwrap()
        .as_usize();
    for p in 0..4 {
        store(&s1, a + p * PAGE + 8, p as u64 + 1);
        fault(&s2, b + p * PAGE, Access::Read).unwrap();
        assert_eq!(frame(&s1, a + p * PAGE), frame(&s2, b + p * PAGE));
        assert_eq!(read(&s2, b + p * PAGE + 8), p as u64 + 1);
        assert_eq!(counts(obj, p), Some((2, 1)));
    }
    store(&s2, b + 2 * PAGE + 16, 0xbeef);
    assert_eq!(read(&s1, a + 2 * PAGE + 16), 0xbeef);
    (s1, s2, a, b)
}

#[test]
fn two_spaces_share_one_object_spaces_dropped_first() {
    testing::reset();
    let obj = Obj::anonymous(4 * PAGE).unwrap();
    let (s1, s2, _, b) = two_spaces_with(&obj);
    let tables = |s: &Space| s.stats().page_table_frames;
    assert_eq!(testing::frames_in_use(), 4 + tables(&s1) + tables(&s2));

    // Dropping the first space keeps the object's pages.
    drop(s1);
    assert_eq!(testing::frames_in_use(), 4 + tables(&s2));
    assert_eq!(obj.pages(), 4);
    assert_eq!(counts(&obj, 1), Some((1, 0)));
    assert_eq!(read(&s2, b + 3 * PAGE + 8), 4);
    assert_eq!(read(&s2, b + 2 * PAGE + 16), 0xbeef);

    // The last space goes: the user's Arc still holds the pages.
    drop(s2);
    assert_eq!(testing::frames_in_use(), 4);
    assert_eq!(obj.mapped_pages(), 0);
    let other = obj.clone();
    drop(obj);
    assert_eq!(testing::frames_in_use(), 4);
    drop(other);
    testing::assert_no_leaks();
}

#[test]
fn two_spaces_share_one_object_arc_dropped_first() {
    testing::reset();
    let obj = Obj::anonymous(4 * PAGE).unwrap();
    let (s1, s2, a, _) = two_spaces_with(&obj);
    drop(obj);
    let t2 = s2.stats().page_table_frames;
    let t1 = s1.stats().page_table_frames;
    assert_eq!(testing::frames_in_use(), 4 + t1 + t2);
    drop(s2);
    // s1's mappings keep the object alive.
    assert_eq!(testing::frames_in_use(), 4 + t1);
    assert_eq!(read(&s1, a + 2 * PAGE + 16), 0xbeef);
    assert_eq!(s1.stats().shared_frames, 4);
    drop(s1);
    testing::assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 3. MAP_PRIVATE: copy-on-write.
// ---------------------------------------------------------------------------

#[test]
fn private_mapping_copies_on_write() {
    let mut s = space();
    // 2.5 pages: the last page's tail reads zero.
    let bytes = text(2 * PAGE + PAGE / 2);
    let obj = Obj::from_bytes(bytes);
    let sh = s
        .mmap_object(None, 3 * PAGE, RW, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    let p = s
        .mmap_object(None, 3 * PAGE, RW, PRIVATE, &obj, 0)
        .unwrap()
        .as_usize();
    assert_eq!(layout(&s)[1], (p, p + 3 * PAGE, object_kind(false, 0)));

    // A read maps the object's frame read-only.
    fault(&s, p, Access::Read).unwrap();
    let f0 = obj_frame(&obj, 0);
    assert_eq!(frame(&s, p), f0);
    assert!(!pte_flags(&s, p).contains(MappingFlags::WRITE));
    assert_eq!((s.stats().data_frames, s.stats().shared_frames), (0, 1));
    fault(&s, sh, Access::Read).unwrap();
    assert_eq!(frame(&s, sh), f0);
    assert_eq!(s.stats().shared_frames, 2);
    assert_eq!(counts(&obj, 0), Some((2, 0)));
    assert_eq!(page_bytes(&s, p), &bytes[..PAGE]);

    // The write fault copies.
    let in_use = testing::frames_in_use();
    fault(&s, p + 64, Access::Write).unwrap();
    let c0 = frame(&s, p);
    assert_ne!(c0, f0);
    assert!(pte_flags(&s, p).contains(MappingFlags::WRITE));
    assert_eq!(page_bytes(&s, p), &bytes[..PAGE]);
    assert_eq!((s.stats().data_frames, s.stats().shared_frames), (1, 1));
    assert_eq!(counts(&obj, 0), Some((1, 0)));
    assert_eq!(testing::frames_in_use(), in_use + 1);
    write(&s, p + 64, 0xc0c0);
    // The object and its other mapping keep the old content.
    assert_eq!(frame(&s, sh), f0);
    assert_eq!(read(&s, sh + 64), word(bytes, 64));
    assert_eq!(obj_frame(&obj, 0), f0);
    // A write through the shared mapping is not seen by the copy.
    store(&s, sh + 72, 0x5151);
    assert_eq!(read(&s, p + 72), word(bytes, 72));
    assert_eq!(read(&s, p + 64), 0xc0c0);

    // The rest of the private mapping still maps the object's pages: a write
    // through the shared mapping to page 1 is seen there until it is copied.
    fault(&s, p + PAGE, Access::Read).unwrap();
    assert_eq!(frame(&s, p + PAGE), obj_frame(&obj, 1));
    store(&s, sh + PAGE + 8, 0x1111);
    assert_eq!(read(&s, p + PAGE + 8), 0x1111);
    fault(&s, p + PAGE, Access::Write).unwrap();
    assert_ne!(frame(&s, p + PAGE), obj_frame(&obj, 1));
    assert_eq!(read(&s, p + PAGE + 8), 0x1111);
    store(&s, sh + PAGE + 8, 0x2222);
    assert_eq!(read(&s, p + PAGE + 8), 0x1111);

    // A first-touch write gets its own copy at once (the object's page is not
    // even made resident), with the object's content: 2.5 pages, so the
    // tail of page 2 is zero.
    let st = s.stats();
    fault(&s, p + 2 * PAGE, Access::Write).unwrap();
    assert_eq!(obj.page_state(2), None);
    let page2 = page_bytes(&s, p + 2 * PAGE);
    assert_eq!(&page2[..PAGE / 2], &bytes[2 * PAGE..]);
    assert!(page2[PAGE / 2..].iter().all(|&b| b == 0));
    assert!(pte_flags(&s, p + 2 * PAGE).contains(MappingFlags::WRITE));
    assert_eq!(s.stats().data_frames, st.data_frames + 1);
    assert_eq!(s.stats().shared_frames, st.shared_frames);

    // PROT_NONE round trip: the private copies survive (parked), the
    // object's pages are unmapped and come back on fault.
    fault(&s, sh + 2 * PAGE, Access::Read).unwrap();
    s.mprotect(va(p), 3 * PAGE, Prot::empty()).unwrap();
    assert_eq!(s.stats().data_frames, 3);
    s.mprotect(va(p), 3 * PAGE, RW).unwrap();
    assert_eq!(read(&s, p + 64), 0xc0c0);
    assert_eq!(read(&s, p + PAGE + 8), 0x1111);
    assert_eq!(
        &page_bytes(&s, p + 2 * PAGE)[..PAGE / 2],
        &bytes[2 * PAGE..]
    );

    // munmap frees the copies, not the object's pages.
    let resident = obj.pages();
    s.munmap(va(p), 3 * PAGE).unwrap();
    assert_eq!(s.stats().data_frames, 0);
    assert_eq!(s.stats().shared_frames, 3);
    assert_eq!(obj.pages(), resident);
    assert_eq!(
        testing::frames_in_use(),
        resident + s.stats().page_table_frames
    );
    drop(s);
    drop(obj);
    testing::assert_no_leaks();
}

#[test]
fn private_mapping_that_holds_the_only_reference_takes_the_frame() {
    let mut s = space();
    let bytes = text(2 * PAGE);
    let obj = Obj::from_bytes(bytes);
    let p = s
        .mmap_object(None, 2 * PAGE, RW, PRIVATE, &obj, 0)
        .unwrap()
        .as_usize();
    drop(obj);
    fault(&s, p, Access::Read).unwrap();
    let f = frame(&s, p);
    let st = s.stats();
    assert_eq!((st.data_frames, st.shared_frames), (0, 1));
    let in_use = testing::frames_in_use();
    // Nobody else can see the page: the write takes the frame.
    fault(&s, p, Access::Write).unwrap();
    assert_eq!(frame(&s, p), f);
    assert!(pte_flags(&s, p).contains(MappingFlags::WRITE));
    let st = s.stats();
    assert_eq!((st.data_frames, st.shared_frames), (1, 0));
    assert_eq!(testing::frames_in_use(), in_use);
    assert_eq!(page_bytes(&s, p), &bytes[..PAGE]);
    write(&s, p + 8, 0xabc);

    // A split gives the object a second holder: the next page is copied.
    s.mprotect(va(p + PAGE), PAGE, Prot::READ).unwrap();
    s.mprotect(va(p + PAGE), PAGE, RW).unwrap();
    assert_eq!(s.stats().areas, 1);
    fault(&s, p + PAGE, Access::Read).unwrap();
    let g = frame(&s, p + PAGE);
    // Merged again: one holder, so this one is taken as well.
    fault(&s, p + PAGE, Access::Write).unwrap();
    assert_eq!(frame(&s, p + PAGE), g);
    assert_eq!(s.stats().data_frames, 2);
    assert_eq!(read(&s, p + 8), 0xabc);

    s.munmap(va(p), 2 * PAGE).unwrap();
    assert_eq!(s.stats().data_frames, 0);
    assert_eq!(testing::frames_in_use(), s.stats().page_table_frames);
    finish(s);
}

#[test]
fn private_mapping_with_a_split_holder_copies() {
    let mut s = space();
    let bytes = text(2 * PAGE);
    let obj = Obj::from_bytes(bytes);
    let p = s
        .mmap_object(None, 2 * PAGE, RW, PRIVATE, &obj, 0)
        .unwrap()
        .as_usize();
    drop(obj);
    // Two areas hold the object now (different flags: no merge).
    s.mprotect(va(p + PAGE), PAGE, Prot::READ | Prot::EXEC)
        .unwrap();
    assert_eq!(s.stats().areas, 2);
    fault(&s, p, Access::Read).unwrap();
    let f = frame(&s, p);
    fault(&s, p, Access::Write).unwrap();
    assert_ne!(frame(&s, p), f);
    assert_eq!(page_bytes(&s, p), &bytes[..PAGE]);
    let st = s.stats();
    assert_eq!((st.data_frames, st.shared_frames), (1, 0));
    finish(s);
}

// ---------------------------------------------------------------------------
// 4. msync.
// ---------------------------------------------------------------------------

#[test]
fn msync_writes_dirty_shared_pages_back() {
    let mut s = space();
    let bytes = text(3 * PAGE);
    let pager = Arc::new(BytesPager::new(bytes));
    let obj = MemObject::<TrackingHandler>::new(pager.clone());
    let a = s
        .mmap_object(None, 3 * PAGE, RW, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    // Read faults leave pages clean.
    fault(&s, a, Access::Read).unwrap();
    assert_eq!(s.msync(va(a), 3 * PAGE, MsyncFlags::SYNC), Ok(0));
    assert_eq!(pager.pages_written(), 0);

    store(&s, a + PAGE + 16, 0x0123_4567_89ab_cdef);
    assert!(obj.page_state(1).unwrap().dirty);
    assert_eq!(s.msync(va(a), 3 * PAGE, MsyncFlags::SYNC), Ok(1));
    assert_eq!(pager.pages_written(), 1);
    let c = pager.contents();
    assert_eq!(word(&c, PAGE + 16), 0x0123_4567_89ab_cdef);
    assert_eq!(&c[..PAGE + 16], &bytes[..PAGE + 16]);
    assert_eq!(&c[PAGE + 24..], &bytes[PAGE + 24..]);
    // Read-only again, clean; a second msync writes nothing.
    assert!(!pte_flags(&s, a + PAGE).contains(MappingFlags::WRITE));
    let st = obj.page_state(1).unwrap();
    assert_eq!((st.maps, st.wmaps, st.dirty), (1, 0, false));
    assert_eq!(s.msync(va(a), 3 * PAGE, MsyncFlags::SYNC), Ok(0));
    assert_eq!(pager.pages_written(), 1);
    // A new write faults, dirties the page again and is written back.
    store(&s, a + PAGE + 16, 42);
    assert!(pte_flags(&s, a + PAGE).contains(MappingFlags::WRITE));
    assert!(obj.page_state(1).unwrap().dirty);
    // A range that does not cover page 1 writes nothing.
    assert_eq!(s.msync(va(a), PAGE, MsyncFlags::SYNC), Ok(0));
    assert!(pte_flags(&s, a + PAGE).contains(MappingFlags::WRITE));
    assert_eq!(s.msync(va(a + PAGE), 1, MsyncFlags::SYNC), Ok(1));
    assert_eq!(word(&pager.contents(), PAGE + 16), 42);
    assert_eq!(pager.pages_written(), 2);

    // A hole in the range: NoMemory, nothing written, nothing changed.
    let h = WIN + 0x1000_0000;
    let fixed = SHARED | MmapFlags::FIXED_NOREPLACE;
    s.mmap_object(Some(va(h)), PAGE, RW, fixed, &obj, 2 * PAGE)
        .unwrap();
    s.mmap_object(Some(va(h + 2 * PAGE)), PAGE, RW, fixed, &obj, 0)
        .unwrap();
    store(&s, h + 8, 7);
    store(&s, h + 2 * PAGE + 8, 9);
    let before = state(&s);
    let dirty = obj.dirty_pages();
    assert_eq!(
        s.msync(va(h), 3 * PAGE, MsyncFlags::SYNC),
        Err(AxError::NoMemory)
    );
    assert_eq!(state(&s), before);
    assert_eq!(pager.pages_written(), 2);
    assert_eq!(obj.dirty_pages(), dirty);
    assert!(pte_flags(&s, h).contains(MappingFlags::WRITE));
    // Each part on its own is fine.
    assert_eq!(s.msync(va(h), PAGE, MsyncFlags::SYNC), Ok(1));
    assert_eq!(s.msync(va(h + 2 * PAGE), PAGE, MsyncFlags::SYNC), Ok(1));
    assert_eq!(word(&pager.contents(), 2 * PAGE + 8), 7);
    assert_eq!(word(&pager.contents(), 8), 9);
    assert_eq!(pager.pages_written(), 4);

    // Private and anonymous areas write nothing.
    let p = s
        .mmap_object(None, 2 * PAGE, RW, PRIVATE, &obj, 0)
        .unwrap()
        .as_usize();
    store(&s, p + 8, 1);
    fault(&s, p + PAGE, Access::Read).unwrap();
    let anon = s
        .mmap(None, 2 * PAGE, RW, MmapFlags::empty())
        .unwrap()
        .as_usize();
    store(&s, anon, 1);
    let anon_shared = s.mmap(None, 2 * PAGE, RW, SHARED).unwrap().as_usize();
    store(&s, anon_shared, 1);
    assert_eq!(s.msync(va(p), 2 * PAGE, MsyncFlags::SYNC), Ok(0));
    assert_eq!(s.msync(va(anon), 2 * PAGE, MsyncFlags::SYNC), Ok(0));
    // Anonymous shared memory writes back to a pager that keeps nothing.
    assert_eq!(s.msync(va(anon_shared), 2 * PAGE, MsyncFlags::SYNC), Ok(1));
    assert_eq!(pager.pages_written(), 4);
    assert_eq!(read(&s, p + 8), 1);
    // Unchecked ranges.
    assert_eq!(
        s.msync(va(p + 1), PAGE, MsyncFlags::SYNC),
        Err(AxError::InvalidInput)
    );
    assert_eq!(
        s.msync(va(WIN - PAGE), PAGE, MsyncFlags::SYNC),
        Err(AxError::InvalidInput)
    );

    drop(s);
    drop(obj);
    assert_eq!(Arc::strong_count(&pager), 1);
    testing::assert_no_leaks();
}

/// `MS_*` flags: Linux's checks (unknown bits, `ASYNC` with `SYNC`) refuse
/// the call before anything is written; every valid set writes (there is no
/// writeback thread for `ASYNC` to leave the work to).
#[test]
fn msync_flags_are_checked_and_every_valid_set_writes() {
    let mut s = space();
    let pager = Arc::new(BytesPager::new(text(2 * PAGE)));
    let obj = MemObject::<TrackingHandler>::new(pager.clone());
    let a = s
        .mmap_object(None, 2 * PAGE, RW, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    let bad = [
        MsyncFlags::ASYNC | MsyncFlags::SYNC,
        MsyncFlags::ASYNC | MsyncFlags::SYNC | MsyncFlags::INVALIDATE,
        MsyncFlags::from_bits_retain(8),
        MsyncFlags::SYNC | MsyncFlags::from_bits_retain(1 << 31),
    ];
    let good = [
        MsyncFlags::SYNC,
        MsyncFlags::ASYNC,
        MsyncFlags::INVALIDATE,
        MsyncFlags::SYNC | MsyncFlags::INVALIDATE,
        MsyncFlags::ASYNC | MsyncFlags::INVALIDATE,
        MsyncFlags::empty(),
    ];
    for (i, &flags) in good.iter().enumerate() {
        store(&s, a + PAGE + 8, i as u64 + 100);
        for &b in &bad {
            let before = state(&s);
            assert_eq!(
                s.msync(va(a), 2 * PAGE, b),
                Err(AxError::InvalidInput),
                "{b:?}"
            );
            assert_eq!(state(&s), before, "{b:?}");
            assert!(obj.page_state(1).unwrap().dirty, "{b:?} wrote the page");
        }
        // One page written per valid set before this one.
        assert_eq!(pager.pages_written(), i);
        assert_eq!(s.msync(va(a), 2 * PAGE, flags), Ok(1), "{flags:?}");
        assert_eq!(
            word(&pager.contents(), PAGE + 8),
            i as u64 + 100,
            "{flags:?}"
        );
        assert!(!obj.page_state(1).unwrap().dirty, "{flags:?}");
    }
    // The flags are checked before the range.
    assert_eq!(
        s.msync(va(a + 1), PAGE, MsyncFlags::from_bits_retain(8)),
        Err(AxError::InvalidInput)
    );
    drop(s);
    drop(obj);
    assert_eq!(Arc::strong_count(&pager), 1);
    testing::assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 5. Past the end of an object.
// ---------------------------------------------------------------------------

#[test]
fn faults_past_the_end_of_an_object() {
    let mut s = space();
    let bytes = text(PAGE + PAGE / 2);
    let obj = Obj::from_bytes(bytes);
    let a = s
        .mmap_object(None, 3 * PAGE, RW, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    fault(&s, a, Access::Read).unwrap();
    fault(&s, a + PAGE, Access::Read).unwrap();
    let p1 = page_bytes(&s, a + PAGE);
    assert_eq!(&p1[..PAGE / 2], &bytes[PAGE..]);
    assert!(p1[PAGE / 2..].iter().all(|&b| b == 0));
    let area = s.areas().next().unwrap();
    let before = state(&s);
    let pages = obj.pages();
    for access in [Access::Read, Access::Write] {
        assert_eq!(
            fault(&s, a + 2 * PAGE + 8, access),
            Err(FaultError::PastEnd { area })
        );
        assert_eq!(state(&s), before);
        assert_eq!(obj.pages(), pages);
        assert!(s.translate(va(a + 2 * PAGE)).is_err());
    }
    assert_eq!(
        AxError::from(FaultError::PastEnd { area }),
        AxError::OutOfRange
    );

    // The same for a private mapping (a write would copy: the copy's frame
    // must go back).
    let p = s
        .mmap_object(None, 3 * PAGE, RW, PRIVATE, &obj, 0)
        .unwrap()
        .as_usize();
    let parea = s.area_at(va(p)).unwrap();
    let before = state(&s);
    for access in [Access::Read, Access::Write] {
        assert_eq!(
            fault(&s, p + 2 * PAGE, access),
            Err(FaultError::PastEnd { area: parea })
        );
        assert_eq!(state(&s), before);
    }
    // And for a mapping that starts past the end.
    let q = s
        .mmap_object(None, PAGE, RW, SHARED, &obj, 4 * PAGE)
        .unwrap()
        .as_usize();
    let before = state(&s);
    assert!(matches!(
        fault(&s, q, Access::Write),
        Err(FaultError::PastEnd { .. })
    ));
    assert_eq!(state(&s), before);
    drop(s);
    drop(obj);
    testing::assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 6. Argument errors and anonymous MAP_SHARED.
// ---------------------------------------------------------------------------

#[test]
fn mmap_object_bad_input_changes_nothing() {
    let mut s = space();
    let obj = Obj::anonymous(1 << 22).unwrap();
    const M2: usize = 2 << 20;
    // Something to replace, at a 2M-aligned address.
    let a = s
        .mmap_object(
            Some(va(WIN + M2)),
            M2,
            RW,
            SHARED | MmapFlags::FIXED,
            &obj,
            0,
        )
        .unwrap()
        .as_usize();
    fault(&s, a, Access::Write).unwrap();
    let before = state(&s);
    let fixed = MmapFlags::FIXED;
    let cases: &[(Option<usize>, usize, MmapFlags, usize, &str)] = &[
        (None, PAGE, SHARED | PRIVATE, 0, "shared and private"),
        (None, PAGE, MmapFlags::empty(), 0, "neither"),
        (Some(a), PAGE, fixed, 0, "neither, FIXED"),
        (None, PAGE, SHARED, 100, "unaligned offset"),
        (None, PAGE, PRIVATE, PAGE + 1, "unaligned offset (private)"),
        (
            None,
            PAGE,
            SHARED | MmapFlags::CONTIGUOUS,
            0,
            "shared contiguous",
        ),
        (
            None,
            PAGE,
            PRIVATE | MmapFlags::CONTIGUOUS,
            0,
            "private contiguous",
        ),
        (None, M2, SHARED | MmapFlags::HUGE_2M, 0, "shared huge"),
        (None, M2, PRIVATE | MmapFlags::HUGE_2M, 0, "private huge"),
        (
            Some(a),
            M2,
            PRIVATE | MmapFlags::HUGE_2M | fixed,
            0,
            "private huge FIXED",
        ),
        (
            Some(a),
            M2,
            PRIVATE | MmapFlags::CONTIGUOUS | fixed,
            0,
            "private contiguous FIXED",
        ),
        (None, 0, SHARED, 0, "len 0"),
        (Some(a + 1), PAGE, SHARED | fixed, 0, "FIXED unaligned"),
    ];
    for &(addr, len, flags, offset, what) in cases {
        assert_eq!(
            s.mmap_object(addr.map(va), len, RW, flags, &obj, offset),
            Err(AxError::InvalidInput),
            "{what}"
        );
        assert_eq!(state(&s), before, "{what}");
        assert_eq!(Arc::strong_count(&obj), 2, "{what}");
        assert_eq!(counts(&obj, 0), Some((1, 1)), "{what}");
    }
    // mmap: SHARED with PRIVATE, or with CONTIGUOUS / a huge flag.
    for (len, flags) in [
        (PAGE, SHARED | PRIVATE),
        (PAGE, SHARED | MmapFlags::CONTIGUOUS),
        (M2, SHARED | MmapFlags::HUGE_2M),
    ] {
        assert_eq!(
            s.mmap(None, len, RW, flags),
            Err(AxError::InvalidInput),
            "{flags:?}"
        );
        assert_eq!(state(&s), before);
    }
    drop(s);
    drop(obj);
    testing::assert_no_leaks();
}

#[test]
fn anonymous_shared_mmap_is_one_object() {
    let mut s = space();
    let a = s.mmap(None, 4 * PAGE, RW, SHARED).unwrap().as_usize();
    assert_eq!(layout(&s), vec![(a, a + 4 * PAGE, object_kind(true, 0))]);
    fault(&s, a + 8, Access::Read).unwrap();
    assert!(page_is_zero(&s, a));
    store(&s, a + 8, 0xfeed);
    store(&s, a + 3 * PAGE, 0xf00d);
    let (f0, f3) = (frame(&s, a), frame(&s, a + 3 * PAGE));
    let st = s.stats();
    // The frames are the object's, not the area's.
    assert_eq!((st.data_frames, st.shared_frames), (0, 2));
    // Split in two: both parts are the one object, at their offsets.
    s.mprotect(va(a + 2 * PAGE), 2 * PAGE, Prot::READ).unwrap();
    assert_eq!(
        layout(&s),
        vec![
            (a, a + 2 * PAGE, object_kind(true, 0)),
            (a + 2 * PAGE, a + 4 * PAGE, object_kind(true, 2 * PAGE)),
        ]
    );
    // PROT_NONE: the object's pages are unmapped, nothing is parked, and
    // they come back (the same frames, the same data) on the next faults.
    s.mprotect(va(a), 4 * PAGE, Prot::empty()).unwrap();
    let st = s.stats();
    assert_eq!((st.data_frames, st.shared_frames), (0, 0));
    assert!(s.translate(va(a)).is_err());
    assert_eq!(testing::frames_in_use(), 2 + st.page_table_frames);
    s.mprotect(va(a), 4 * PAGE, RW).unwrap();
    assert_eq!(layout(&s), vec![(a, a + 4 * PAGE, object_kind(true, 0))]);
    fault(&s, a + 3 * PAGE, Access::Read).unwrap();
    fault(&s, a, Access::Read).unwrap();
    assert_eq!((frame(&s, a), frame(&s, a + 3 * PAGE)), (f0, f3));
    assert_eq!(read(&s, a + 8), 0xfeed);
    assert_eq!(read(&s, a + 3 * PAGE), 0xf00d);
    // A second anonymous shared mapping is another object.
    let b = s.mmap(None, 4 * PAGE, RW, SHARED).unwrap().as_usize();
    fault(&s, b, Access::Read).unwrap();
    assert_ne!(frame(&s, b), f0);
    assert!(page_is_zero(&s, b));
    // munmap of the whole first mapping frees its object's frames.
    s.munmap(va(a), 4 * PAGE).unwrap();
    assert_eq!(testing::frames_in_use(), 1 + s.stats().page_table_frames);
    finish(s);
}

#[test]
fn populate_faults_object_pages_in() {
    let mut s = space();
    let bytes = text(2 * PAGE);
    let obj = Obj::from_bytes(bytes);
    let a = s
        .mmap_object(None, 3 * PAGE, RW, PRIVATE | MmapFlags::POPULATE, &obj, 0)
        .unwrap()
        .as_usize();
    // Best effort: the pages before the end, read-only.
    assert_eq!(frame(&s, a + PAGE), obj_frame(&obj, 1));
    assert!(!pte_flags(&s, a).contains(MappingFlags::WRITE));
    assert!(s.translate(va(a + 2 * PAGE)).is_err());
    assert_eq!(s.stats().shared_frames, 2);
    drop(s);
    drop(obj);
    testing::assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 7. Out of frames.
// ---------------------------------------------------------------------------

#[test]
fn object_faults_without_frames() {
    let mut s = space();
    let obj = Obj::anonymous(4 * PAGE).unwrap();
    let a = s
        .mmap_object(None, 4 * PAGE, RW, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    fault(&s, a, Access::Read).unwrap();
    let area = s.areas().next().unwrap();
    testing::set_limit(Some(testing::frames_in_use()));
    let before = state(&s);
    for access in [Access::Read, Access::Write] {
        assert_eq!(
            fault(&s, a + PAGE, access),
            Err(FaultError::NoMemory { area })
        );
        assert_eq!(state(&s), before);
        assert_eq!(obj.page_state(1), None);
        assert_eq!(obj.pages(), 1);
    }
    // A resident page needs no frame.
    fault(&s, a, Access::Write).unwrap();
    assert_eq!(counts(&obj, 0), Some((1, 1)));
    testing::set_limit(None);

    // Room for the object's frame but not for the page table: the page stays
    // resident (residency is permanent) with no mapping counted.
    let far = WIN + 0x4000_0000;
    s.mmap_object(
        Some(va(far)),
        PAGE,
        RW,
        SHARED | MmapFlags::FIXED_NOREPLACE,
        &obj,
        2 * PAGE,
    )
    .unwrap();
    let in_use = testing::frames_in_use();
    testing::set_limit(Some(in_use + 1));
    let before = state(&s);
    let (leaves_before, areas_before) = (leaves(&s), areas(&s));
    assert!(matches!(
        fault(&s, far, Access::Write),
        Err(FaultError::NoMemory { .. })
    ));
    // The space is as it was; the object holds one more frame.
    assert_eq!(s.stats(), before.1);
    assert_eq!(leaves(&s), leaves_before);
    assert_eq!(areas(&s), areas_before);
    assert_eq!(testing::frames_in_use(), in_use + 1);
    assert_eq!(counts(&obj, 2), Some((0, 0)));
    testing::set_limit(None);
    fault(&s, far, Access::Read).unwrap();
    assert_eq!(frame(&s, far), obj_frame(&obj, 2));
    assert_eq!(counts(&obj, 2), Some((1, 0)));
    drop(s);
    drop(obj);
    testing::assert_no_leaks();
}

#[test]
fn copy_on_write_without_a_frame_keeps_the_shared_page() {
    let mut s = space();
    let bytes = text(2 * PAGE);
    let obj = Obj::from_bytes(bytes);
    let p = s
        .mmap_object(None, 2 * PAGE, RW, PRIVATE, &obj, 0)
        .unwrap()
        .as_usize();
    fault(&s, p, Access::Read).unwrap();
    let f = frame(&s, p);
    testing::set_limit(Some(testing::frames_in_use()));
    let before = state(&s);
    assert!(matches!(
        fault(&s, p + 8, Access::Write),
        Err(FaultError::NoMemory { .. })
    ));
    assert_eq!(state(&s), before);
    assert_eq!(frame(&s, p), f);
    assert!(!pte_flags(&s, p).contains(MappingFlags::WRITE));
    assert_eq!(counts(&obj, 0), Some((1, 0)));
    // A first-touch write without a frame: nothing mapped, nothing resident.
    assert!(matches!(
        fault(&s, p + PAGE, Access::Write),
        Err(FaultError::NoMemory { .. })
    ));
    assert_eq!(state(&s), before);
    assert_eq!(obj.page_state(1), None);
    testing::set_limit(None);
    fault(&s, p + 8, Access::Write).unwrap();
    assert_ne!(frame(&s, p), f);
    assert_eq!(page_bytes(&s, p), &bytes[..PAGE]);
    drop(s);
    drop(obj);
    testing::assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 8. FIXED replacement.
// ---------------------------------------------------------------------------

#[test]
fn fixed_replaces_an_object_mapping() {
    let mut s = space();
    let obj = Obj::anonymous(4 * PAGE).unwrap();
    let a = s
        .mmap_object(None, 4 * PAGE, RW, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    for p in 0..4 {
        fault(&s, a + p * PAGE, Access::Read).unwrap();
    }
    store(&s, a + 2 * PAGE, 5);
    assert_eq!(s.stats().shared_frames, 4);

    // FIXED_NOREPLACE refuses, changing nothing.
    let before = state(&s);
    assert_eq!(
        s.mmap_object(
            Some(va(a + PAGE)),
            PAGE,
            RW,
            SHARED | MmapFlags::FIXED_NOREPLACE,
            &obj,
            0
        ),
        Err(AxError::AlreadyExists)
    );
    assert_eq!(
        s.mmap(Some(va(a)), PAGE, RW, MmapFlags::FIXED_NOREPLACE),
        Err(AxError::AlreadyExists)
    );
    assert_eq!(state(&s), before);
    assert_eq!(Arc::strong_count(&obj), 2);

    // FIXED replaces the middle: the object loses those mappings.
    s.mmap(Some(va(a + PAGE)), 2 * PAGE, RW, MmapFlags::FIXED)
        .unwrap();
    assert_eq!(
        layout(&s),
        vec![
            (a, a + PAGE, object_kind(true, 0)),
            (
                a + PAGE,
                a + 3 * PAGE,
                AreaKind::Alloc {
                    populate: mm::Populate::Lazy
                }
            ),
            (a + 3 * PAGE, a + 4 * PAGE, object_kind(true, 3 * PAGE)),
        ]
    );
    assert_eq!(counts(&obj, 1), Some((0, 0)));
    assert_eq!(counts(&obj, 2), Some((0, 0)));
    assert_eq!(counts(&obj, 0), Some((1, 0)));
    assert_eq!(counts(&obj, 3), Some((1, 0)));
    assert_eq!(s.stats().shared_frames, 2);
    assert!(s.translate(va(a + 2 * PAGE)).is_err());
    fault(&s, a + 2 * PAGE, Access::Read).unwrap();
    assert!(page_is_zero(&s, a + 2 * PAGE));
    // The object kept the data.
    let m = s
        .mmap_object(None, 4 * PAGE, Prot::READ, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    fault(&s, m + 2 * PAGE, Access::Read).unwrap();
    assert_eq!(read(&s, m + 2 * PAGE), 5);

    // An object mapping FIXED over allocated memory: its frames go.
    let data = s.stats().data_frames;
    assert_eq!(data, 1);
    s.mmap_object(
        Some(va(a)),
        4 * PAGE,
        RW,
        PRIVATE | MmapFlags::FIXED,
        &obj,
        0,
    )
    .unwrap();
    assert_eq!(layout(&s)[0], (a, a + 4 * PAGE, object_kind(false, 0)));
    assert_eq!(s.stats().data_frames, 0);
    assert_eq!(counts(&obj, 0), Some((0, 0)));
    assert_eq!(s.stats().shared_frames, 1);

    // Replacing every mapping of the object: only the user's Arc is left.
    s.mmap(Some(va(a)), 4 * PAGE, RW, MmapFlags::FIXED).unwrap();
    s.mmap(Some(va(m)), 4 * PAGE, RW, MmapFlags::FIXED).unwrap();
    assert_eq!(Arc::strong_count(&obj), 1);
    assert_eq!(obj.mapped_pages(), 0);
    assert_eq!(s.stats().shared_frames, 0);
    drop(s);
    drop(obj);
    testing::assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 9. Several threads.
// ---------------------------------------------------------------------------

#[test]
fn threads_fault_one_shared_object_mapping() {
    use mm::AddrSpace;
    use page_table_entry::x86_64::X64PTE;
    use page_table_multiarch::x86_64::X64PagingMetaData;
    use testing::SharedTrackingHandler as Frames;
    type TSpace = AddrSpace<X64PagingMetaData, X64PTE, Frames>;
    const THREADS: usize = 4;
    const PAGES: usize = 64;

    let _g = Frames::exclusive();
    // Slow allocations widen the windows in which faults race.
    Frames::set_alloc_delay(std::time::Duration::from_micros(50));
    let obj = MemObject::<Frames>::anonymous(PAGES * PAGE).unwrap();
    let mut s = TSpace::new(va(WIN), WSIZE).unwrap();
    let a = s
        .mmap_object(None, PAGES * PAGE, RW, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    let sp = &s;
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            sc.spawn(move || {
                // Every thread touches every page, each in its own order;
                // even threads write (their own word), odd ones read.
                for k in 0..PAGES {
                    let p = (k * 7 + t * 13) % PAGES;
                    let at = a + p * PAGE + 8 * t;
                    if t % 2 == 0 {
                        sp.handle_page_fault(va(at), Access::Write).unwrap();
                        let pa = sp.translate(va(at)).unwrap().paddr.as_usize();
                        // SAFETY: the frame is live host memory (the
                        // object holds it) and word `t` is this thread's.
                        unsafe { (pa as *mut u64).write_volatile((t << 16 | p) as u64) };
                    } else {
                        sp.handle_page_fault(va(at), Access::Read).unwrap();
                    }
                }
            });
        }
    });
    let st = s.stats();
    assert_eq!(st.shared_frames, PAGES);
    assert_eq!(st.data_frames, 0);
    assert_eq!(obj.pages(), PAGES);
    for p in 0..PAGES {
        let ps = obj.page_state(p).unwrap();
        assert_eq!((ps.maps, ps.wmaps, ps.dirty), (1, 1, true), "page {p}");
        let t = s.translate(va(a + p * PAGE)).unwrap();
        assert_eq!(t.paddr, ps.frame);
        assert!(t.flags.contains(MappingFlags::WRITE));
        for w in (0..THREADS).step_by(2) {
            // SAFETY: as above.
            let v = unsafe { ((ps.frame.as_usize() + 8 * w) as *const u64).read_volatile() };
            assert_eq!(v, (w << 16 | p) as u64);
        }
    }
    assert_eq!(Frames::frames_in_use(), PAGES + st.page_table_frames);
    drop(s);
    assert_eq!(Frames::frames_in_use(), PAGES);
    assert_eq!(obj.mapped_pages(), 0);
    drop(obj);
    Frames::set_alloc_delay(std::time::Duration::ZERO);
    Frames::assert_no_leaks();
}

// ---------------------------------------------------------------------------
// Offsets near the top of the address range.
// ---------------------------------------------------------------------------

/// An offset whose pages run past `usize::MAX`: either the call refuses it,
/// or every fault in it is past the end of the object (never a wrapped
/// offset that maps page 0, never an overflow).
#[test]
fn offset_at_the_top_never_wraps() {
    let mut s = space();
    let obj = Obj::anonymous(4 * PAGE).unwrap();
    let top = usize::MAX & !(PAGE - 1);
    for shared in [SHARED, PRIVATE] {
        let before = state(&s);
        match s.mmap_object(None, 2 * PAGE, RW, shared, &obj, top) {
            Err(e) => {
                assert_eq!(e, AxError::InvalidInput);
                assert_eq!(state(&s), before);
            }
            Ok(a) => {
                let a = a.as_usize();
                for p in 0..2 {
                    for access in [Access::Read, Access::Write] {
                        assert!(
                            matches!(
                                fault(&s, a + p * PAGE, access),
                                Err(FaultError::PastEnd { .. })
                            ),
                            "page {p} {access:?}"
                        );
                    }
                }
                assert_eq!(
                    s.area_at(va(a)).unwrap().kind,
                    object_kind(shared == SHARED, top)
                );
                // A split computes the right part's offset too.
                s.mprotect(va(a + PAGE), PAGE, Prot::READ).unwrap();
                s.munmap(va(a), 2 * PAGE).unwrap();
            }
        }
    }
    assert_eq!(obj.pages(), 0);
    drop(s);
    drop(obj);
    testing::assert_no_leaks();
}

// ---------------------------------------------------------------------------
// Pager errors.
// ---------------------------------------------------------------------------

/// A bytes pager whose reads and writes fail while told to.
struct Flaky {
    inner: BytesPager,
    fail_reads: AtomicBool,
    fail_writes: AtomicBool,
}

impl Pager for Flaky {
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn read(&self, offset: usize, page: &mut [u8]) -> Result<(), PagerError> {
        if self.fail_reads.load(Ordering::Relaxed) {
            return Err(PagerError);
        }
        self.inner.read(offset, page)
    }
    fn write(&self, offset: usize, page: &[u8]) -> Result<(), PagerError> {
        if self.fail_writes.load(Ordering::Relaxed) {
            return Err(PagerError);
        }
        self.inner.write(offset, page)
    }
}

#[test]
fn pager_errors_are_io_and_change_nothing() {
    let mut s = space();
    let bytes = text(2 * PAGE);
    let pager = Arc::new(Flaky {
        inner: BytesPager::new(bytes),
        fail_reads: AtomicBool::new(true),
        fail_writes: AtomicBool::new(false),
    });
    let obj = MemObject::<TrackingHandler>::new(pager.clone());
    let a = s
        .mmap_object(None, 2 * PAGE, RW, SHARED, &obj, 0)
        .unwrap()
        .as_usize();
    let p = s
        .mmap_object(None, 2 * PAGE, RW, PRIVATE, &obj, 0)
        .unwrap()
        .as_usize();
    // Build the page tables first, so that only the pager can fail below.
    let t = s
        .mmap(Some(va(a + 4 * PAGE)), PAGE, RW, MmapFlags::FIXED_NOREPLACE)
        .unwrap();
    fault(&s, t.as_usize(), Access::Read).unwrap();
    let before = state(&s);
    for (addr, access) in [
        (a, Access::Read),
        (a, Access::Write),
        (p, Access::Read),
        // A first-touch private write reads the page into its copy: the
        // copy's frame must go back.
        (p + PAGE, Access::Write),
    ] {
        let area = s.area_at(va(addr)).unwrap();
        assert_eq!(fault(&s, addr, access), Err(FaultError::Io { area }));
        assert_eq!(state(&s), before);
        assert_eq!(obj.pages(), 0);
    }
    assert_eq!(
        AxError::from(FaultError::Io {
            area: s.area_at(va(a)).unwrap()
        }),
        AxError::Io
    );
    pager.fail_reads.store(false, Ordering::Relaxed);
    store(&s, a + 8, 1);
    store(&s, a + PAGE + 8, 2);

    // A failed write-back: Io; the pages stay dirty (and were made read-only
    // before the write, as every msync does), and the next msync writes them.
    pager.fail_writes.store(true, Ordering::Relaxed);
    assert_eq!(s.msync(va(a), 2 * PAGE, MsyncFlags::SYNC), Err(AxError::Io));
    assert_eq!(obj.dirty_pages(), 2);
    assert_eq!(pager.inner.pages_written(), 0);
    assert!(!pte_flags(&s, a).contains(MappingFlags::WRITE));
    pager.fail_writes.store(false, Ordering::Relaxed);
    assert_eq!(s.msync(va(a), 2 * PAGE, MsyncFlags::SYNC), Ok(2));
    assert_eq!(word(&pager.inner.contents(), PAGE + 8), 2);
    assert_eq!(obj.dirty_pages(), 0);
    drop(s);
    drop(obj);
    testing::assert_no_leaks();
}
