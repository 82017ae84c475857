//! Several CPUs on object mappings.
//!
//! Each round: every CPU but the writer reads one page in a loop, so its TLB
//! caches the translation; they all meet the writer at a barrier, read the
//! page once more and say so (`hot`); then the writer stores a new value
//! and, once the store returned, raises `written`. A
//! reader that saw `written` and then reads the old value is reading through
//! a translation the writer's call replaced: for a private mapping, the
//! copy-on-write fault swapped the page's frame and had to shoot the old
//! read-only translation down before it returned (the old frame still holds
//! the old value, so a stale entry shows). Any such read fails the run; a
//! reader that still reads the old value after `STALE_READS` reads reports
//! a stale TLB entry that never went away.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tessera::mm::{self, MemObject, MmapFlags, MsyncFlags, PAGE_SIZE};
use tessera::smp::{self, Barrier};
use tessera::{AppResult, Context, check, check_eq, format, println};

use crate::{RW, get, pa, set};

/// Reads of the old value after `written` that mean the entry is not going
/// away.
const STALE_READS: u64 = 1_000_000;
/// Reads while waiting for the writer before giving up.
const WAIT_READS: u64 = 1 << 31;

/// One round's meeting point.
struct Round {
    barrier: Barrier,
    /// Readers that read the page after the barrier.
    hot: AtomicUsize,
    written: AtomicBool,
}

/// The value of page `page` before round `round` wrote it, and after.
fn old(page: usize) -> u64 {
    0x6f6c_6400_0000_0000 | page as u64
}

fn new(page: usize) -> u64 {
    0x6e65_7700_0000_0000 | page as u64
}

/// A reader: reads `va` (which must hold `old`) in a loop until it holds
/// `new`; fails on any old read after `written`.
fn reader(round: &Round, va: usize, old: u64, new: u64, writer: usize) -> Result<(), String> {
    let v = get(va);
    if v != old {
        return Err(format!("read {v:#x} before the write, expected {old:#x}"));
    }
    round.barrier.wait();
    let v = get(va);
    if v != old {
        return Err(format!("read {v:#x} before the write, expected {old:#x}"));
    }
    round.hot.fetch_add(1, Ordering::Release);
    let mut stale = 0u64;
    let mut waited = 0u64;
    loop {
        let done = round.written.load(Ordering::Acquire);
        let v = get(va);
        if v == new {
            if stale > 0 {
                return Err(format!(
                    "read the old value {old:#x} {stale} time(s) after CPU {writer}'s write had returned, then the new one: a stale TLB entry that was flushed too late"
                ));
            }
            return Ok(());
        }
        if v != old {
            return Err(format!("read {v:#x}: neither {old:#x} nor {new:#x}"));
        }
        if done {
            stale += 1;
            if stale >= STALE_READS {
                return Err(format!(
                    "still reads the old value {old:#x} {stale} times after CPU {writer}'s write returned: a stale TLB entry (the translation the write replaced was not shot down on this CPU)"
                ));
            }
        } else {
            waited += 1;
            if waited >= WAIT_READS {
                return Err(format!("CPU {writer} never wrote"));
            }
        }
    }
}

/// One round on every CPU: `writer` stores `new` at `write_va`, the others
/// read `read_va` until they see it.
fn round(
    n: usize,
    writer: usize,
    write_va: usize,
    read_va: usize,
    old: u64,
    new: u64,
) -> AppResult {
    let r = Arc::new(Round {
        barrier: Barrier::new(n),
        hot: AtomicUsize::new(0),
        written: AtomicBool::new(false),
    });
    let results: Vec<Result<(), String>> = smp::on_each(move |cpu| {
        if cpu == writer {
            r.barrier.wait();
            // The readers only read meanwhile: no flush request to answer.
            while r.hot.load(Ordering::Acquire) < n - 1 {
                core::hint::spin_loop();
            }
            set(write_va, new);
            r.written.store(true, Ordering::Release);
            Ok(())
        } else {
            reader(&r, read_va, old, new, writer)
        }
    });
    for (cpu, res) in results.into_iter().enumerate() {
        res.map_err(|e| format!("CPU {cpu} (writer CPU {writer}): {e}"))?;
    }
    Ok(())
}

/// Copy-on-write while other CPUs read the page: CPU `w` writes page `w` of
/// a private mapping, the others must see the new value as soon as the
/// write returned.
pub fn cow(n: usize) -> AppResult {
    let len = n * PAGE_SIZE;
    let before = mm::stats();
    let obj = MemObject::anonymous(len).context("MemObject::anonymous")?;
    let s = mm::mmap_object(None, len, RW, MmapFlags::SHARED, &obj, 0).context("mmap_object")?;
    for page in 0..n {
        set(s + page * PAGE_SIZE, old(page));
    }
    let p = mm::mmap_object(None, len, RW, MmapFlags::PRIVATE, &obj, 0)
        .context("mmap_object private")?;
    let tlb0 = smp::tlb_stats();
    for w in 0..n {
        let va = p + w * PAGE_SIZE;
        round(n, w, va, va, old(w), new(w)).map_err(|e| format!("copy-on-write: {e}"))?;
        check!(
            pa(va)? != pa(s + w * PAGE_SIZE)?,
            "page {w} written by CPU {w} still maps the object's frame"
        );
        check_eq!(get(s + w * PAGE_SIZE), old(w), "the object under page {w}");
    }
    let tlb = smp::tlb_stats();
    let st = mm::stats();
    check_eq!(
        st.data_frames,
        before.data_frames + n,
        "data frames: one copy per page"
    );
    check_eq!(
        st.shared_frames,
        before.shared_frames + n,
        "shared frames: the shared mapping's pages only"
    );
    println!(
        "copy-on-write under SMP: each of {n} CPUs wrote a private page while the others read it in a loop; none read the old frame after the write returned ({} shootdowns)",
        tlb.shootdowns - tlb0.shootdowns
    );
    mm::munmap(p, len).context("munmap private")?;
    mm::munmap(s, len).context("munmap shared")?;
    drop(obj);
    mm::stats()
        .back_to(&before)
        .map_err(|e| format!("copy-on-write under SMP: {e}"))
}

/// Two shared mappings of one page: each CPU in turn writes through one of
/// them, the others read through the other (or the same one).
pub fn shared(n: usize) -> AppResult {
    let before = mm::stats();
    let obj = MemObject::anonymous(PAGE_SIZE).context("MemObject::anonymous")?;
    let a = mm::mmap_object(None, PAGE_SIZE, RW, MmapFlags::SHARED, &obj, 0).context("mmap a")?;
    let b = mm::mmap_object(None, PAGE_SIZE, RW, MmapFlags::SHARED, &obj, 0).context("mmap b")?;
    let off = 64;
    set(a + off, old(0));
    let mut prev = old(0);
    for i in 0..2 * n {
        let w = i % n;
        // Even rounds write through a (the readers read b), odd ones through
        // b, the mapping the readers read.
        let write_va = if i % 2 == 0 { a + off } else { b + off };
        let v = new(i);
        round(n, w, write_va, b + off, prev, v).map_err(|e| format!("shared mapping: {e}"))?;
        check_eq!(get(a + off), v, "round {i} through a");
        prev = v;
    }
    check_eq!(pa(a)?, pa(b)?, "one frame for both mappings");
    println!(
        "shared mappings under SMP: {} rounds, each CPU writing through either mapping; every other CPU saw each write once it returned",
        2 * n
    );
    mm::munmap(a, PAGE_SIZE).context("munmap a")?;
    mm::munmap(b, PAGE_SIZE).context("munmap b")?;
    drop(obj);
    mm::stats()
        .back_to(&before)
        .map_err(|e| format!("shared mappings under SMP: {e}"))
}

/// `msync` on CPU 0 write-protects a page CPU 1 has writable in its TLB: CPU
/// 1's next write must fault (and dirty the page again), or it would be lost
/// to the next `msync`.
pub fn msync() -> AppResult {
    const ROUNDS: usize = 4;
    let before = mm::stats();
    let obj = MemObject::anonymous(PAGE_SIZE).context("MemObject::anonymous")?;
    let s = mm::mmap_object(None, PAGE_SIZE, RW, MmapFlags::SHARED, &obj, 0).context("mmap")?;
    let bar = Arc::new(Barrier::new(2));
    let theirs = Arc::clone(&bar);
    let job = smp::run_on(1, move || {
        for i in 0..ROUNDS {
            set(s + 8, i as u64 + 1);
            theirs.wait(); // CPU 0 msyncs
            theirs.wait();
        }
    })
    .context("run_on 1")?;
    let mut written = Vec::new();
    for i in 0..ROUNDS {
        bar.wait();
        let dirty = obj.dirty_pages();
        let n = mm::msync(s, PAGE_SIZE, MsyncFlags::SYNC).context("msync")?;
        check_eq!(
            (dirty, n),
            (1, 1),
            "round {i}: (dirty pages, msync) after CPU 1's write (0 would mean CPU 1's write went through a writable TLB entry the previous msync should have shot down)"
        );
        check_eq!(get(s + 8), i as u64 + 1, "round {i}: CPU 1's write");
        check_eq!(obj.dirty_pages(), 0, "round {i}: dirty pages after msync");
        written.push(n);
        bar.wait();
    }
    job.wait();
    println!(
        "msync under SMP: CPU 1 wrote between {ROUNDS} msyncs on CPU 0; each msync wrote its page ({written:?}): msync's write-protection reached CPU 1's TLB"
    );
    mm::munmap(s, PAGE_SIZE).context("munmap")?;
    drop(obj);
    mm::stats()
        .back_to(&before)
        .map_err(|e| format!("msync under SMP: {e}"))
}
