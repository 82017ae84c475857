//! Linux-like mmap/munmap/mprotect semantics on the real page table: merging,
//! FIXED replacement, holes, 43 bad calls that must change nothing, area flags
//! that later faults obey, and a physically contiguous mapping.
#![no_std]
#![no_main]

use tessera::mm::{self, AreaInfo, AreaKind, MmapFlags, MsyncFlags, PAGE_SIZE, Prot};
use tessera::{AppResult, AxError, AxResult, Context, Vec, check, check_eq, println};

tessera::main!(main);

const RW: Prot = Prot::READ.union(Prot::WRITE);
const NONE: MmapFlags = MmapFlags::empty();
const FIX: MmapFlags = MmapFlags::FIXED;
const P: usize = PAGE_SIZE;

/// The app's areas (inside the mapping window), as (start, end).
fn spans(lo: usize, hi: usize) -> Vec<(usize, usize)> {
    mm::areas()
        .iter()
        .filter(|a| a.start.as_usize() >= lo && a.end.as_usize() <= hi)
        .map(|a| (a.start.as_usize(), a.end.as_usize()))
        .collect()
}

/// Everything a failed call must leave unchanged.
#[derive(PartialEq, Debug)]
struct Snapshot {
    areas: Vec<AreaInfo>,
    /// Frames in use but those the heap grew by (it keeps them for good).
    frames_but_heap: usize,
    data_frames: usize,
    page_table_frames: usize,
}

fn snapshot() -> Snapshot {
    let s = mm::stats();
    Snapshot {
        areas: mm::areas(),
        frames_but_heap: s.frames_used - s.heap_bytes / PAGE_SIZE,
        data_frames: s.data_frames,
        page_table_frames: s.page_table_frames,
    }
}

fn merging(base: usize) -> AppResult {
    let a = mm::mmap(Some(base), 2 * P, RW, FIX).context("mmap a")?;
    let b = mm::mmap(Some(base + 2 * P), 3 * P, RW, FIX).context("mmap b")?;
    check_eq!(b, a + 2 * P, "adjacent");
    let n = spans(base, base + 16 * P).len();
    println!("two adjacent mmaps: {n} area");
    check_eq!(n, 1, "adjacent mmaps merge");
    mm::mprotect(a + P, 2 * P, Prot::READ).context("mprotect R")?;
    let split = spans(base, base + 16 * P).len();
    mm::mprotect(a + P, 2 * P, RW).context("mprotect back")?;
    let back = spans(base, base + 16 * P).len();
    println!("mprotect middle R: {split} areas, back to RW: {back} area");
    check_eq!((split, back), (3, 1), "split and merge back");
    mm::munmap(base, 5 * P).context("munmap")
}

fn fixed(base: usize) -> AppResult {
    let a = mm::mmap(Some(base), 4 * P, RW, FIX | MmapFlags::POPULATE).context("mmap")?;
    for i in 0..4 {
        // SAFETY: page i of the populated read-write mapping just made.
        unsafe { mm::poke(a + i * P, 0x77 + i as u64) };
    }
    let r = mm::mmap(Some(a + P), P, RW, MmapFlags::FIXED_NOREPLACE);
    println!("FIXED_NOREPLACE over a mapping: {r:?}");
    check_eq!(r, Err(AxError::AlreadyExists), "NOREPLACE");
    mm::mmap(Some(a + P), 2 * P, RW, FIX).context("FIXED replace")?;
    // SAFETY: pages 0 and 3 are the old mapping's, still mapped; 1 is new (lazy).
    let (p0, p1, p3) = unsafe { (mm::peek(a), mm::peek(a + P), mm::peek(a + 3 * P)) };
    println!("FIXED replace: old {p0:#x} {p3:#x}, new page {p1:#x}");
    check_eq!(
        (p0, p1, p3),
        (0x77, 0, 0x7a),
        "FIXED replaced the middle only"
    );
    mm::munmap(a, 4 * P).context("munmap")
}

fn holes(base: usize) -> AppResult {
    for i in 0..4 {
        mm::mmap(Some(base + 3 * i * P), 2 * P, RW, FIX).context("mmap")?;
    }
    let before = snapshot();
    let r = mm::mprotect(base, 8 * P, Prot::READ);
    let unchanged = snapshot() == before;
    println!("mprotect over a hole: {r:?}, unchanged: {unchanged}");
    check_eq!(r, Err(AxError::NoMemory), "mprotect hole");
    check!(unchanged, "mprotect over a hole changed something");
    mm::munmap(base + P, 9 * P).context("munmap across holes")?;
    let left = spans(base, base + 16 * P);
    println!("munmap across holes: {} areas left", left.len());
    check_eq!(
        left,
        [(base, base + P), (base + 10 * P, base + 11 * P)],
        "what munmap left"
    );
    mm::munmap(base, 16 * P).context("munmap rest")
}

fn bad_calls(base: usize, window_end: usize) -> AppResult {
    mm::mmap(Some(base), 2 * P, RW, FIX | MmapFlags::POPULATE).context("mmap")?;
    mm::mmap(Some(base + 4 * P), 2 * P, Prot::READ, FIX).context("mmap")?;
    let kernel = mm::areas()
        .iter()
        .find(|a| {
            let s = a.start.as_usize();
            matches!(a.kind, AreaKind::Linear { .. }) && (s < mm::window().0 || s >= window_end)
        })
        .map(|a| a.start.as_usize())
        .context_str("no kernel area")?;
    let before = snapshot();
    let inv = Err(AxError::InvalidInput);
    let m = |a: Option<usize>, len, prot, flags| mm::mmap(a, len, prot, flags).map(|_| ());
    let cases: [(&str, AxResult, AxResult); 43] = [
        ("mmap len 0", m(None, 0, RW, NONE), inv),
        ("mmap len max", m(None, usize::MAX, RW, NONE), inv),
        (
            "mmap len overflow",
            m(None, usize::MAX - 5, RW, MmapFlags::POPULATE),
            inv,
        ),
        ("prot W", m(None, P, Prot::WRITE, NONE), inv),
        ("prot X", m(None, P, Prot::EXEC, NONE), inv),
        (
            "prot bits",
            m(None, P, Prot::from_bits_retain(0x40), NONE),
            inv,
        ),
        (
            "flag bits",
            m(None, P, RW, MmapFlags::from_bits_retain(1 << 30)),
            inv,
        ),
        (
            "SHARED with PRIVATE",
            m(None, P, RW, MmapFlags::SHARED | MmapFlags::PRIVATE),
            inv,
        ),
        (
            "flag bit 31",
            m(None, P, RW, MmapFlags::from_bits_retain(1 << 31)),
            inv,
        ),
        (
            "contiguous too large",
            m(None, 1 << 30, RW, MmapFlags::CONTIGUOUS),
            inv,
        ),
        ("FIXED no addr", m(None, P, RW, FIX), inv),
        ("FIXED unaligned", m(Some(base + 1), P, RW, FIX), inv),
        (
            "NOREPLACE unaligned",
            m(Some(base + 8), P, RW, MmapFlags::FIXED_NOREPLACE),
            inv,
        ),
        ("FIXED at 0", m(Some(0), P, RW, FIX), inv),
        (
            "FIXED past window",
            m(Some(window_end - P), 2 * P, RW, FIX),
            inv,
        ),
        (
            "FIXED wraps",
            m(Some(usize::MAX & !0xfff), 2 * P, RW, FIX),
            inv,
        ),
        ("FIXED kernel", m(Some(kernel), P, RW, FIX), inv),
        (
            "NOREPLACE overlap",
            m(Some(base + P), P, RW, MmapFlags::FIXED_NOREPLACE),
            Err(AxError::AlreadyExists),
        ),
        (
            "NOREPLACE|FIXED",
            m(
                Some(base + 3 * P),
                2 * P,
                RW,
                FIX | MmapFlags::FIXED_NOREPLACE,
            ),
            Err(AxError::AlreadyExists),
        ),
        ("munmap unaligned", mm::munmap(base + 1, P), inv),
        ("munmap len 0", mm::munmap(base, 0), inv),
        ("munmap len max", mm::munmap(base, usize::MAX), inv),
        ("munmap past window", mm::munmap(window_end - P, 2 * P), inv),
        ("munmap kernel", mm::munmap(kernel, P), inv),
        ("munmap wraps", mm::munmap(usize::MAX & !0xfff, 2 * P), inv),
        ("munmap at 0", mm::munmap(0, P), inv),
        (
            "mprotect unaligned",
            mm::mprotect(base + 1, P, Prot::READ),
            inv,
        ),
        ("mprotect len 0", mm::mprotect(base, 0, Prot::READ), inv),
        (
            "mprotect len max",
            mm::mprotect(base, usize::MAX, Prot::READ),
            inv,
        ),
        ("mprotect prot W", mm::mprotect(base, P, Prot::WRITE), inv),
        (
            "mprotect prot bits",
            mm::mprotect(base, P, Prot::from_bits_retain(0x80)),
            inv,
        ),
        ("mprotect kernel", mm::mprotect(kernel, P, RW), inv),
        (
            "mprotect past window",
            mm::mprotect(window_end - P, 2 * P, Prot::READ),
            inv,
        ),
        (
            "mprotect hole",
            mm::mprotect(base + 2 * P, P, Prot::READ),
            Err(AxError::NoMemory),
        ),
        (
            "mprotect into hole",
            mm::mprotect(base, 3 * P, Prot::READ),
            Err(AxError::NoMemory),
        ),
        (
            "mprotect across hole",
            mm::mprotect(base, 6 * P, Prot::empty()),
            Err(AxError::NoMemory),
        ),
        (
            "mprotect last page",
            mm::mprotect(window_end - P, P, RW),
            Err(AxError::NoMemory),
        ),
        (
            "msync ASYNC|SYNC",
            mm::msync(base, P, MsyncFlags::ASYNC | MsyncFlags::SYNC).map(|_| ()),
            inv,
        ),
        (
            "msync flag bits",
            mm::msync(base, P, MsyncFlags::from_bits_retain(8)).map(|_| ()),
            inv,
        ),
        (
            "map_phys unaligned",
            mm::map_phys(0x1000_0001, P, Prot::READ, true).map(|_| ()),
            inv,
        ),
        (
            "map_phys len 0",
            mm::map_phys(0x1000_0000, 0, Prot::READ, true).map(|_| ()),
            inv,
        ),
        (
            "map_phys wraps",
            mm::map_phys(usize::MAX & !0xfff, 2 * P, Prot::READ, false).map(|_| ()),
            inv,
        ),
        (
            "map_phys prot X",
            mm::map_phys(0x1000_0000, P, Prot::EXEC, true).map(|_| ()),
            inv,
        ),
    ];
    let mut ok = 0;
    for (what, got, want) in &cases {
        check_eq!(got, want, "{what}");
        ok += 1;
    }
    let unchanged = snapshot() == before;
    println!(
        "bad calls: {ok} of {} returned their error, unchanged: {unchanged}",
        cases.len()
    );
    check!(unchanged, "a bad call changed the areas or frame counts");
    mm::munmap(base, 8 * P).context("munmap")
}

/// `Option` -> `AppResult` error.
trait OptionContext<T> {
    fn context_str(self, what: &str) -> Result<T, tessera::String>;
}

impl<T> OptionContext<T> for Option<T> {
    fn context_str(self, what: &str) -> Result<T, tessera::String> {
        self.ok_or_else(|| what.into())
    }
}

fn lazy_flags(base: usize) -> AppResult {
    let a = mm::mmap(Some(base), 2 * P, RW, FIX).context("mmap")?;
    mm::mprotect(a, 2 * P, Prot::READ).context("mprotect R")?;
    let refused = mm::write_faults(a + P);
    mm::mprotect(a, 2 * P, RW).context("mprotect RW")?;
    let accepted = !mm::write_faults(a + P);
    println!("lazy RW->R: write refused: {refused}; back to RW: write accepted: {accepted}");
    check!(refused && accepted, "lazy area flags not obeyed");
    mm::munmap(a, 2 * P).context("munmap")
}

fn contiguous() -> AppResult {
    let before = mm::stats().data_frames;
    let a = mm::mmap(None, 8 * P, RW, MmapFlags::CONTIGUOUS).context("mmap contiguous")?;
    let first = mm::translate(a).context("translate")?.paddr.as_usize();
    let mut consecutive = true;
    for i in 0..8 {
        let pa = mm::translate(a + i * P)
            .context("translate")?
            .paddr
            .as_usize();
        consecutive &= pa == first + i * P;
    }
    println!("contiguous: 8 pages at consecutive frames: {consecutive}");
    check!(consecutive, "contiguous frames are not consecutive");
    // SAFETY: page 6 of the read-write contiguous mapping just made.
    unsafe { mm::poke(a + 6 * P, 0xd3a) };
    mm::munmap(a + 2 * P, 3 * P).context("munmap middle")?;
    let pa6 = mm::translate(a + 6 * P)
        .context("translate")?
        .paddr
        .as_usize();
    // SAFETY: page 6 is still mapped RW.
    let v = unsafe { mm::peek(a + 6 * P) };
    let freed = before + 8 - mm::stats().data_frames;
    println!(
        "contiguous split: frame kept {}, data kept {}, {freed} frames freed",
        pa6 == first + 6 * P,
        v == 0xd3a
    );
    check_eq!(
        (pa6, v, freed),
        (first + 6 * P, 0xd3a, 3),
        "contiguous split"
    );
    mm::munmap(a, 8 * P).context("munmap")?;
    check_eq!(mm::stats().data_frames, before, "contiguous frames freed");
    Ok(())
}

fn main() -> AppResult {
    let (win_start, win_end) = mm::window();
    // A free range of the window: where the first lazy mmap lands.
    let base = mm::mmap(None, 64 * P, RW, NONE).context("probe mmap")?;
    mm::munmap(base, 64 * P).context("probe munmap")?;
    check!(base >= win_start, "mmap outside the window");
    merging(base)?;
    fixed(base)?;
    holes(base)?;
    bad_calls(base, win_end)?;
    lazy_flags(base)?;
    contiguous()?;
    Ok(())
}
