//! One CPU: shared mappings of an anonymous object, `mmap(SHARED)`, a file
//! mapped shared and private, `msync`, and a read past an object's end.

use alloc::sync::Arc;

use tessera::mm::{
    self, AreaKind, BytesPager, MappingFlags, MemObject, MmapFlags, MsyncFlags, PAGE_SIZE, Prot,
};
use tessera::{AppResult, Context, check, check_eq, println};

use crate::{FILE, RW, file_len, file_word, get, mapped, pa, set};

/// The offsets written in every page (first word, second word, middle, last).
const OFFSETS: [usize; 4] = [0, 8, PAGE_SIZE / 2, PAGE_SIZE - 8];

/// A value naming the round, the page and the offset it was written at.
fn tag(round: u64, page: usize, off: usize) -> u64 {
    (round << 56) | ((page as u64) << 32) | (off as u64) | 0x5a00_0000
}

/// Whether the translation of `va` allows writes.
fn writable(va: usize) -> Result<bool, alloc::string::String> {
    Ok(mm::translate(va)
        .context("translate")?
        .flags
        .contains(MappingFlags::WRITE))
}

/// Everything mapped since `before` is gone: no owned or shared frame more,
/// no frame in use more (heap growth left out).
fn back(before: &mm::Stats, what: &str) -> AppResult {
    let now = mm::stats();
    check_eq!(
        now.shared_frames,
        before.shared_frames,
        "{what}: shared frames after unmapping"
    );
    now.back_to(before)
        .map_err(|e| tessera::format!("{what}: {e}"))
}

/// Two shared mappings of one anonymous object: writes both ways, the same
/// frames, and still after splitting one and partly unmapping the other.
pub fn two_shared_mappings() -> AppResult {
    const PAGES: usize = 16;
    let len = PAGES * PAGE_SIZE;
    let before = mm::stats();
    let obj = MemObject::anonymous(len).context("MemObject::anonymous")?;
    let a = mm::mmap_object(None, len, RW, MmapFlags::SHARED, &obj, 0).context("mmap_object a")?;
    let b = mm::mmap_object(None, len, RW, MmapFlags::SHARED, &obj, 0).context("mmap_object b")?;
    check!(a != b, "two mappings at one address");
    check_eq!(
        get(b + 3 * PAGE_SIZE),
        0,
        "a fresh anonymous object reads zero"
    );
    for page in 0..PAGES {
        let (w, r, dir) = if page % 2 == 0 {
            (a, b, "a -> b")
        } else {
            (b, a, "b -> a")
        };
        for off in OFFSETS {
            let v = tag(1, page, off);
            set(w + page * PAGE_SIZE + off, v);
            check_eq!(
                get(r + page * PAGE_SIZE + off),
                v,
                "page {page} +{off:#x} written {dir}, read through the other"
            );
        }
    }
    for page in 0..PAGES {
        let off = page * PAGE_SIZE;
        check_eq!(
            pa(a + off)?,
            pa(b + off)?,
            "frames of page {page} in a and b"
        );
    }
    let st = mm::stats();
    check_eq!(
        st.shared_frames - before.shared_frames,
        2 * PAGES,
        "shared frames: two mappings of {PAGES} pages"
    );
    check_eq!(st.data_frames, before.data_frames, "data frames");
    check_eq!(obj.pages(), PAGES, "resident pages of the object");
    println!(
        "two shared mappings of one object: writes both ways at {} offsets of {PAGES} pages seen through the other, same frames; shared frames +{}, data frames +0",
        OFFSETS.len(),
        2 * PAGES
    );

    // Split a in three (pages 4..8 read-only), cut pages 10..13 out of b.
    mm::mprotect(a + 4 * PAGE_SIZE, 4 * PAGE_SIZE, Prot::READ).context("mprotect a R")?;
    mm::munmap(b + 10 * PAGE_SIZE, 3 * PAGE_SIZE).context("munmap part of b")?;
    check_eq!(mm::stats().areas, st.areas + 3, "areas after the splits");
    check!(
        mm::write_faults(a + 4 * PAGE_SIZE) && !mm::read_faults(a + 4 * PAGE_SIZE),
        "a's pages 4..8 are read-only"
    );
    for page in 10..13 {
        check!(!mapped(b + page * PAGE_SIZE), "b's page {page} is unmapped");
    }
    for page in 0..PAGES {
        let in_b = !(10..13).contains(&page);
        let a_rw = !(4..8).contains(&page);
        for off in OFFSETS {
            let (va, vb) = (a + page * PAGE_SIZE + off, b + page * PAGE_SIZE + off);
            if in_b {
                let v = tag(2, page, off);
                set(vb, v);
                check_eq!(get(va), v, "after the splits: page {page} +{off:#x} b -> a");
            }
            if a_rw {
                let v = tag(3, page, off);
                set(va, v);
                if in_b {
                    check_eq!(get(vb), v, "after the splits: page {page} +{off:#x} a -> b");
                }
            }
        }
        if in_b {
            let off = page * PAGE_SIZE;
            check_eq!(
                pa(a + off)?,
                pa(b + off)?,
                "after the splits: frames of page {page}"
            );
        }
    }
    check_eq!(
        mm::stats().shared_frames - before.shared_frames,
        2 * PAGES - 3,
        "shared frames after unmapping 3 pages of b"
    );
    mm::mprotect(a + 4 * PAGE_SIZE, 4 * PAGE_SIZE, RW).context("mprotect a RW")?;
    check_eq!(
        mm::stats().areas,
        st.areas + 1,
        "areas after mprotect(RW) (a's three parts merge again)"
    );
    set(a + 5 * PAGE_SIZE, 55);
    check_eq!(
        get(b + 5 * PAGE_SIZE),
        55,
        "a's page 5 writable again, seen in b"
    );
    println!(
        "after mprotect(R) splitting one mapping and munmap of 3 pages of the other: the other 13 pages still shared (same frames, writes both ways); mprotect(RW) merges the parts again"
    );
    mm::munmap(a, len).context("munmap a")?;
    mm::munmap(b, len).context("munmap b")?;
    drop(obj);
    back(&before, "two shared mappings")
}

/// `mmap(None, len, RW, SHARED)`: a new anonymous object behind one mapping.
pub fn anonymous_shared() -> AppResult {
    const PAGES: usize = 8;
    let len = PAGES * PAGE_SIZE;
    let before = mm::stats();
    let va = mm::mmap(None, len, RW, MmapFlags::SHARED).context("mmap SHARED")?;
    let area = mm::areas()
        .into_iter()
        .find(|a| a.start.as_usize() == va)
        .ok_or_else(|| tessera::format!("no area at {va:#x}"))?;
    check!(
        matches!(area.kind, AreaKind::Object { shared: true, .. }),
        "mmap(SHARED) made the area {area}"
    );
    for page in 0..PAGES {
        let p = va + page * PAGE_SIZE;
        check_eq!(get(p + 16), 0, "page {page} reads zero at first");
        set(p + 16, tag(4, page, 16));
    }
    for page in 0..PAGES {
        check_eq!(
            get(va + page * PAGE_SIZE + 16),
            tag(4, page, 16),
            "page {page}"
        );
    }
    let st = mm::stats();
    check_eq!(
        st.shared_frames - before.shared_frames,
        PAGES,
        "shared frames of mmap(SHARED)"
    );
    check_eq!(
        st.data_frames,
        before.data_frames,
        "data frames of mmap(SHARED)"
    );
    mm::munmap(va, len).context("munmap")?;
    back(&before, "mmap(SHARED)")?;
    println!(
        "mmap(SHARED) without an object: {area}, zero-filled, {PAGES} shared frames and no data frames, all freed by munmap"
    );
    Ok(())
}

/// A file mapped shared and private: the private mapping shares the frames
/// until it writes a page.
pub fn private_and_shared() -> AppResult {
    let len = file_len();
    let pages = len / PAGE_SIZE;
    let before = mm::stats();
    let obj = MemObject::from_bytes(FILE);
    let s =
        mm::mmap_object(None, len, RW, MmapFlags::SHARED, &obj, 0).context("mmap_object shared")?;
    let p = mm::mmap_object(None, len, RW, MmapFlags::PRIVATE, &obj, 0)
        .context("mmap_object private")?;
    for off in (0..len).step_by(8) {
        check_eq!(get(p + off), file_word(off), "private mapping at +{off:#x}");
        check_eq!(get(s + off), file_word(off), "shared mapping at +{off:#x}");
    }
    for page in 0..pages {
        let off = page * PAGE_SIZE;
        check_eq!(
            pa(p + off)?,
            pa(s + off)?,
            "frames of page {page} before the write"
        );
        check!(
            !writable(p + off)?,
            "the private mapping's page {page} is mapped writable before any write"
        );
    }
    let st1 = mm::stats();
    check_eq!(
        st1.shared_frames - before.shared_frames,
        2 * pages,
        "shared frames: the file mapped twice"
    );
    check_eq!(
        st1.data_frames,
        before.data_frames,
        "data frames before the write"
    );
    check_eq!(obj.pages(), pages, "resident pages of the file");

    let page = 2;
    let off = page * PAGE_SIZE + 24;
    let frame = pa(s + page * PAGE_SIZE)?;
    let v = u64::from_ne_bytes(*b"PRIVATE!");
    set(p + off, v);
    let st2 = mm::stats();
    let new = pa(p + page * PAGE_SIZE)?;
    check!(
        new != frame,
        "the written private page still maps the shared frame {frame:#x}"
    );
    check!(
        writable(p + page * PAGE_SIZE)?,
        "the copied page is writable"
    );
    check_eq!(
        pa(s + page * PAGE_SIZE)?,
        frame,
        "the shared mapping's frame"
    );
    check_eq!(get(p + off), v, "the private write");
    check_eq!(
        get(s + off),
        file_word(off),
        "the shared mapping where the private one wrote"
    );
    for o in (page * PAGE_SIZE..(page + 1) * PAGE_SIZE).step_by(8) {
        if o != off {
            check_eq!(get(p + o), file_word(o), "the private copy at +{o:#x}");
        }
    }
    // The object itself: a new mapping of it reads the file there.
    let r = mm::mmap_object(None, len, Prot::READ, MmapFlags::PRIVATE, &obj, 0)
        .context("mmap_object read-only")?;
    check_eq!(get(r + off), file_word(off), "a new mapping of the object");
    check_eq!(pa(r + page * PAGE_SIZE)?, frame, "a new mapping's frame");
    mm::munmap(r, len).context("munmap r")?;
    for i in (0..pages).filter(|&i| i != page) {
        let o = i * PAGE_SIZE;
        check_eq!(
            pa(p + o)?,
            pa(s + o)?,
            "frames of page {i} after the write to page {page}"
        );
    }
    check_eq!(
        st2.data_frames,
        st1.data_frames + 1,
        "data frames after the copy-on-write"
    );
    check_eq!(
        st2.shared_frames,
        st1.shared_frames - 1,
        "shared frames after the copy-on-write"
    );
    println!(
        "private mapping of the file: reads the file through the shared mapping's frames; a write to page {page} gave that page a new frame (data frames +1, shared frames -1); the shared mapping and the object keep the file's bytes there; the other {} pages still map the shared frames",
        pages - 1
    );
    // Pages the private mapping has not written follow the object (as in
    // Linux); the copied page does not.
    let w = u64::from_ne_bytes(*b"SHARED!!");
    set(s + 8, w);
    check_eq!(get(p + 8), w, "the private mapping's unwritten page 0");
    set(s + off, w);
    check_eq!(get(p + off), v, "the private mapping's copied page");
    println!(
        "a write through the shared mapping: seen by the private mapping's unwritten pages, not by its copied page"
    );
    mm::munmap(p, len).context("munmap p")?;
    mm::munmap(s, len).context("munmap s")?;
    drop(obj);
    back(&before, "file mappings")
}

/// `msync` on a shared mapping of the file: writes back exactly the pages
/// written since the last `msync`, through the object's pager.
pub fn msync() -> AppResult {
    let len = file_len();
    let last = len / PAGE_SIZE - 1;
    let before = mm::stats();
    // `MemObject::from_bytes(FILE)` is `MemObject::new(BytesPager::new(FILE))`;
    // holding the pager too lets us read what was written back.
    let pager = Arc::new(BytesPager::new(FILE));
    let obj = MemObject::new(Arc::clone(&pager));
    let s =
        mm::mmap_object(None, len, RW, MmapFlags::SHARED, &obj, 0).context("mmap_object shared")?;
    let p = mm::mmap_object(None, len, RW, MmapFlags::PRIVATE, &obj, 0)
        .context("mmap_object private")?;
    for page in 0..=last {
        check_eq!(
            get(s + page * PAGE_SIZE),
            file_word(page * PAGE_SIZE),
            "page {page}"
        );
    }
    check_eq!(
        mm::msync(s, len, MsyncFlags::SYNC).context("msync")?,
        0,
        "msync after reads only"
    );
    let offs = [8, 3 * PAGE_SIZE + 64, last * PAGE_SIZE + 16];
    for (i, &off) in offs.iter().enumerate() {
        set(s + off, 0x6d73_796e_6300 + i as u64);
    }
    check_eq!(
        obj.dirty_pages(),
        offs.len(),
        "dirty pages after the writes"
    );
    let n1 = mm::msync(s, len, MsyncFlags::SYNC).context("msync")?;
    check_eq!(n1, offs.len(), "msync after writing pages 0, 3 and {last}");
    check_eq!(pager.pages_written(), offs.len(), "pages the pager wrote");
    let store = pager.contents();
    for (i, &off) in offs.iter().enumerate() {
        let got = u64::from_ne_bytes(store[off..off + 8].try_into().unwrap_or([0; 8]));
        check_eq!(
            got,
            0x6d73_796e_6300 + i as u64,
            "the pager's bytes at +{off:#x}"
        );
    }
    check_eq!(store.len(), FILE.len(), "the pager's size");
    check_eq!(obj.dirty_pages(), 0, "dirty pages after msync");
    let n2 = mm::msync(s, len, MsyncFlags::SYNC).context("msync")?;
    check_eq!(n2, 0, "a second msync");
    // msync write-protected the pages: the next write faults and dirties again.
    set(s + offs[1], 1);
    check_eq!(
        mm::msync(s, len, MsyncFlags::SYNC).context("msync")?,
        1,
        "msync after writing page 3 again"
    );
    set(s, 2);
    set(s + last * PAGE_SIZE, 3);
    check_eq!(
        mm::msync(s, PAGE_SIZE, MsyncFlags::SYNC).context("msync")?,
        1,
        "msync of page 0 only"
    );
    // MS_ASYNC writes too (there is no writeback thread to leave it to).
    check_eq!(
        mm::msync(s, len, MsyncFlags::ASYNC).context("msync")?,
        1,
        "msync(MS_ASYNC) of the rest"
    );
    // A private write is not the object's: nothing to write back.
    set(p + PAGE_SIZE, 4);
    check_eq!(
        mm::msync(p, len, MsyncFlags::SYNC).context("msync")?,
        0,
        "msync of the private mapping"
    );
    check_eq!(
        get(s + PAGE_SIZE),
        file_word(PAGE_SIZE),
        "the object under the private write"
    );
    println!(
        "msync: {n1} pages written (the 3 written since the mapping), the pager holds their new bytes; a second msync writes {n2}; a write after msync faults and is written by the next one; a private write is not written back"
    );
    mm::munmap(p, len).context("munmap p")?;
    mm::munmap(s, len).context("munmap s")?;
    drop(obj);
    drop(pager);
    back(&before, "msync")
}

/// A read past the end of an object faults (probed, so it cannot end the run).
pub fn past_end() -> AppResult {
    const PAGES: usize = 8;
    let len = PAGES * PAGE_SIZE;
    let before = mm::stats();
    let obj = MemObject::from_bytes(FILE);
    let va = mm::mmap_object(None, len, Prot::READ, MmapFlags::PRIVATE, &obj, 0)
        .context("mmap_object past the end")?;
    let last = FILE.len() / PAGE_SIZE;
    let tail = FILE.len().next_multiple_of(8);
    check!(
        !mm::read_faults(va + FILE.len() - 1),
        "the file's last byte faults"
    );
    check_eq!(get(va + tail), 0, "past the size in the last page (zero)");
    check_eq!(
        get(va + tail - 8),
        file_word(tail - 8),
        "the file's last word"
    );
    let mut faulted = 0;
    for page in last + 1..PAGES {
        let p = va + page * PAGE_SIZE;
        check!(
            mm::read_faults(p),
            "a read of page {page}, past the end of the object, did not fault (it got a page: {:?})",
            mm::translate(p)
        );
        check!(!mapped(p), "page {page} past the end got mapped");
        faulted += 1;
    }
    mm::munmap(va, len).context("munmap")?;
    drop(obj);
    back(&before, "past the end")?;
    println!(
        "past the end of the object: page {last} (partial) reads the file then zeros; reads of the {faulted} pages after it fault (probed), none mapped"
    );
    Ok(())
}
