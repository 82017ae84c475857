//! Page faults on several threads at once, through a shared `&AddrSpace`
//! (what the kernel does under the read side of its address-space lock).
//!
//! The frames come from `testing::SharedTrackingHandler` (one global state, so
//! a frame allocated on one thread may be freed on another): every test here
//! holds `SharedTrackingHandler::exclusive()` for its whole run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use hal::Access;
use memory_addr::VirtAddr;
use mm::{AddrSpace, LeafSize, MmapFlags, Prot};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::x86_64::X64PagingMetaData;
use testing::SharedTrackingHandler as Frames;

type Space = AddrSpace<X64PagingMetaData, X64PTE, Frames>;

const PAGE: usize = 4096;
const M2: usize = 2 << 20;
const WIN: usize = 0x10_0000_0000;
const WSIZE: usize = 0x1_0000_0000;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const THREADS: usize = 4;

fn va(a: usize) -> VirtAddr {
    VirtAddr::from(a)
}

/// Faults on `&AddrSpace` from several threads need it `Send` and `Sync`.
#[test]
fn addr_space_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Space>();
    check::<AddrSpace<X64PagingMetaData, X64PTE, testing::TrackingHandler>>();
}

/// Writes `v` at `addr` through the page table (host: phys == pointer).
fn write(s: &Space, addr: usize, v: u64) {
    let t = s.translate(va(addr)).expect("mapped");
    // SAFETY: the handler's physical addresses are live host pointers to its
    // frames; `addr` is 8-byte aligned inside a mapped page.
    unsafe { (t.paddr.as_usize() as *mut u64).write_volatile(v) }
}

/// Reads the u64 at `addr` through the page table.
fn read(s: &Space, addr: usize) -> u64 {
    let t = s.translate(va(addr)).expect("mapped");
    // SAFETY: as in `write`.
    unsafe { (t.paddr.as_usize() as *const u64).read_volatile() }
}

/// Every fault is counted once: mapped, spurious or lost race.
fn faults(s: &Space) -> u64 {
    let st = s.stats();
    st.faults_handled + st.spurious_faults + st.fault_races
}

/// (a) Four threads fault disjoint pages of one lazy 4K area (interleaved, so
/// they share leaf tables and build them concurrently): exactly one frame
/// per page, each page its own frame, nothing leaked after `munmap`.
#[test]
fn disjoint_pages_of_one_area() {
    let _g = Frames::exclusive();
    const PAGES: usize = 4096; // 8 leaf tables
    let mut s = Space::new(va(WIN), WSIZE).unwrap();
    let base = s
        .mmap(None, PAGES * PAGE, RW, MmapFlags::empty())
        .unwrap()
        .as_usize();
    let shared = &s;
    thread::scope(|sc| {
        for t in 0..THREADS {
            sc.spawn(move || {
                for p in (t..PAGES).step_by(THREADS) {
                    let at = base + p * PAGE;
                    shared.handle_page_fault(va(at + 8), Access::Write).unwrap();
                    write(shared, at, p as u64);
                }
            });
        }
    });
    let st = s.stats();
    assert_eq!(st.data_frames, PAGES);
    assert_eq!(st.faults_handled, PAGES as u64);
    assert_eq!((st.fault_races, st.spurious_faults), (0, 0));
    assert_eq!(Frames::frames_in_use(), PAGES + st.page_table_frames);
    let mut frames: Vec<usize> = (0..PAGES)
        .map(|p| {
            assert_eq!(read(&s, base + p * PAGE), p as u64);
            s.translate(va(base + p * PAGE)).unwrap().paddr.as_usize()
        })
        .collect();
    frames.sort_unstable();
    frames.dedup();
    assert_eq!(frames.len(), PAGES, "a frame mapped twice");
    s.munmap(va(base), PAGES * PAGE).unwrap();
    assert_eq!(s.stats().data_frames, 0);
    drop(s);
    Frames::assert_no_leaks();
}

/// Runs `rounds` rounds in which all threads fault at once at
/// `addr(round, thread)`; every fault must succeed, and each thread then
/// writes its own word of the page it faulted at. Each round starts with a
/// spinning barrier, so the threads that are running leave it within
/// nanoseconds of each other and their faults overlap (a blocking
/// `std::sync::Barrier` wakes them microseconds apart, and the first fault is
/// often done before the next one starts). A thread that panics (a failed
/// fault) stops the others instead of leaving them waiting forever.
fn same_pages(
    s: &Space,
    threads: usize,
    rounds: usize,
    addr: impl Fn(usize, usize) -> usize + Sync,
) {
    let arrived = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    thread::scope(|sc| {
        for t in 0..threads {
            let (arrived, failed, addr) = (&arrived, &failed, &addr);
            sc.spawn(move || {
                // Set if this thread unwinds.
                struct Stop<'a>(&'a AtomicBool);
                impl Drop for Stop<'_> {
                    fn drop(&mut self) {
                        if thread::panicking() {
                            self.0.store(true, Ordering::Release);
                        }
                    }
                }
                let _stop = Stop(failed);
                for r in 0..rounds {
                    arrived.fetch_add(1, Ordering::AcqRel);
                    let mut spins = 0u32;
                    while arrived.load(Ordering::Acquire) < threads * (r + 1) {
                        assert!(!failed.load(Ordering::Acquire), "another thread failed");
                        spins += 1;
                        if spins.is_multiple_of(1 << 8) {
                            // More threads than cores: let the late ones run.
                            thread::yield_now();
                        }
                        std::hint::spin_loop();
                    }
                    let at = addr(r, t);
                    s.handle_page_fault(va(at), Access::Write)
                        .unwrap_or_else(|e| panic!("thread {t} round {r}: {e:?}"));
                    write(s, (at & !(PAGE - 1)) + 8 * t, (r * threads + t) as u64);
                }
            });
        }
    });
}

/// (b) `threads` threads fault the same page of a lazy 4K area at the same moment,
/// round after round: every fault succeeds, all threads see one frame per
/// page, exactly one frame per page stays allocated, nothing leaks.
fn same_pages_4k(threads: usize, rounds: usize, delay: Option<Duration>) -> u64 {
    let _g = Frames::exclusive();
    let mut s = Space::new(va(WIN), WSIZE).unwrap();
    let base = s
        .mmap(None, rounds * PAGE, RW, MmapFlags::empty())
        .unwrap()
        .as_usize();
    if let Some(d) = delay {
        Frames::set_alloc_delay(d);
    }
    same_pages(&s, threads, rounds, |r, _| base + r * PAGE);
    Frames::set_alloc_delay(Duration::ZERO);
    let st = s.stats();
    println!("same_pages_4k({threads}, {delay:?}): {st:?}");
    assert_eq!(st.data_frames, rounds);
    assert_eq!(st.faults_handled, rounds as u64);
    assert_eq!(faults(&s), (rounds * threads) as u64);
    assert_eq!(Frames::frames_in_use(), rounds + st.page_table_frames);
    // Frames only came in so far: a frame allocated for a page that already
    // had one, or was getting one, would show as a peak above the count now.
    assert_eq!(
        Frames::peak_frames(),
        Frames::frames_in_use(),
        "a fault allocated a frame for a page another fault was filling"
    );
    for r in 0..rounds {
        let page = base + r * PAGE;
        let t = s.translate(va(page)).unwrap();
        assert_eq!(t.page_size, LeafSize::Size4K);
        // Every thread's word landed in the one frame mapped there.
        for th in 0..threads {
            assert_eq!(read(&s, page + 8 * th), (r * threads + th) as u64);
        }
    }
    s.munmap(va(base), rounds * PAGE).unwrap();
    assert_eq!(s.stats().data_frames, 0);
    drop(s);
    Frames::assert_no_leaks();
    st.fault_races
}

/// Four threads, as fast as they go: whether two faults overlap depends on
/// the host's scheduling (`fault_races` is printed, not asserted).
#[test]
fn same_pages_4k_four_threads() {
    same_pages_4k(THREADS, 4096, None);
}

/// Four threads, each allocation held up for 200 us: the faults of a round
/// overlap (one claims the page and allocates; the others find the claim and
/// wait for it), so the waiting path runs in almost every round, whatever the
/// host's load, and no round allocates more than one frame.
#[test]
fn same_pages_4k_overlapping() {
    let races = same_pages_4k(THREADS, 256, Some(Duration::from_micros(200)));
    assert!(races > 0, "no fault lost a race: the test did not test it");
}

/// (b) The same with a 2M area: the threads fault different 4K pages of the
/// same 2M block at once; one huge page is mapped per block, one run of 512
/// frames stays allocated.
#[test]
fn same_pages_2m() {
    let _g = Frames::exclusive();
    const ROUNDS: usize = 32;
    let mut s = Space::new(va(WIN), WSIZE).unwrap();
    let base = s
        .mmap(None, ROUNDS * M2, RW, MmapFlags::HUGE_2M)
        .unwrap()
        .as_usize();
    let at = |r: usize, t: usize| base + r * M2 + t * 97 * PAGE;
    Frames::set_alloc_delay(Duration::from_micros(200));
    same_pages(&s, THREADS, ROUNDS, at);
    Frames::set_alloc_delay(Duration::ZERO);
    let st = s.stats();
    assert!(st.fault_races > 0, "no fault lost a race");
    println!("same_pages_2m: {st:?}");
    assert_eq!(st.data_frames, ROUNDS * 512);
    assert_eq!(st.huge_faults, ROUNDS as u64);
    assert_eq!(st.faults_handled, ROUNDS as u64);
    assert_eq!(st.huge_fallbacks, 0);
    assert_eq!(faults(&s), (ROUNDS * THREADS) as u64);
    assert_eq!(Frames::frames_in_use(), ROUNDS * 512 + st.page_table_frames);
    assert_eq!(
        Frames::peak_frames(),
        Frames::frames_in_use(),
        "a fault allocated a run for a block another fault was filling"
    );
    for r in 0..ROUNDS {
        let block = s.translate(va(base + r * M2)).unwrap();
        assert_eq!(block.page_size, LeafSize::Size2M);
        for th in 0..THREADS {
            let a = at(r, th);
            let t = s.translate(va(a)).unwrap();
            assert_eq!(
                t.paddr.as_usize(),
                block.paddr.as_usize() + (a - base - r * M2)
            );
            assert_eq!(
                read(&s, (a & !(PAGE - 1)) + 8 * th),
                (r * THREADS + th) as u64
            );
        }
    }
    s.munmap(va(base), ROUNDS * M2).unwrap();
    assert_eq!(s.stats().data_frames, 0);
    drop(s);
    Frames::assert_no_leaks();
}

/// (b) A 2M area whose aligned runs cannot be had (the frame limit is below
/// 512): the threads fault the same page at once, each falls back to a 4K
/// frame, one wins; the fallback is counted once per page.
#[test]
fn same_pages_2m_fallback() {
    let _g = Frames::exclusive();
    const ROUNDS: usize = 64;
    let mut s = Space::new(va(WIN), WSIZE).unwrap();
    let base = s
        .mmap(None, ROUNDS * M2, RW, MmapFlags::HUGE_2M)
        .unwrap()
        .as_usize();
    // Room for the upper tables, a leaf table and a frame per round (one page
    // per block) and every thread's spare frame: never for a 512-frame run.
    Frames::set_limit(Some(Frames::frames_in_use() + 4 + 2 * ROUNDS + THREADS));
    Frames::set_alloc_delay(Duration::from_micros(200));
    same_pages(&s, THREADS, ROUNDS, |r, _| base + r * M2 + 5 * PAGE);
    Frames::set_alloc_delay(Duration::ZERO);
    Frames::set_limit(None);
    let st = s.stats();
    assert!(st.fault_races > 0, "no fault lost a race");
    println!("same_pages_2m_fallback: {st:?}");
    assert_eq!(st.data_frames, ROUNDS);
    assert_eq!((st.huge_faults, st.huge_fallbacks), (0, ROUNDS as u64));
    assert_eq!(st.faults_handled, ROUNDS as u64);
    assert_eq!(faults(&s), (ROUNDS * THREADS) as u64);
    for r in 0..ROUNDS {
        let t = s.translate(va(base + r * M2 + 5 * PAGE)).unwrap();
        assert_eq!(t.page_size, LeafSize::Size4K);
    }
    s.munmap(va(base), ROUNDS * M2).unwrap();
    drop(s);
    Frames::assert_no_leaks();
}

/// A fault on a page of a huge block that another fault is filling waits for
/// it instead of allocating a frame of its own (`claims.rs`): thread A takes
/// the block's run and is held up in the allocator; thread B faults another
/// page of the block meanwhile, finds A's claim, waits, and then finds its
/// page inside A's huge page. B allocates nothing (it would have had room for
/// a 4K frame and its tables under the limit).
#[test]
fn a_fault_waits_for_the_claim_on_its_huge_block() {
    let _g = Frames::exclusive();
    let mut s = Space::new(va(WIN), WSIZE).unwrap();
    let base = s.mmap(None, M2, RW, MmapFlags::HUGE_2M).unwrap().as_usize();
    // A's run and its upper tables; room for B's 4K frame and leaf table too,
    // which B must not take.
    let before = Frames::frames_in_use();
    Frames::set_limit(Some(before + 512 + 8));
    Frames::set_alloc_delay(Duration::from_millis(300));
    let sp = &s;
    thread::scope(|sc| {
        let a = sc.spawn(move || sp.handle_page_fault(va(base + 3 * PAGE), Access::Write));
        // A holds its run (asleep in the allocator): let B go undelayed.
        while Frames::frames_in_use() < before + 512 {
            thread::yield_now();
        }
        Frames::set_alloc_delay(Duration::ZERO);
        sp.handle_page_fault(va(base + 7 * PAGE), Access::Write)
            .unwrap();
        a.join().unwrap().unwrap();
    });
    Frames::set_limit(None);
    let st = s.stats();
    assert_eq!((st.huge_faults, st.huge_fallbacks), (1, 0));
    assert_eq!(
        (st.faults_handled, st.fault_races),
        (1, 1),
        "B waited, A mapped"
    );
    assert_eq!(st.data_frames, 512);
    assert_eq!(Frames::frames_in_use(), 512 + st.page_table_frames);
    let a = s.translate(va(base + 3 * PAGE)).unwrap();
    let b = s.translate(va(base + 7 * PAGE)).unwrap();
    assert_eq!(
        (a.page_size, b.page_size),
        (LeafSize::Size2M, LeafSize::Size2M)
    );
    assert_eq!(
        b.paddr.as_usize() - a.paddr.as_usize(),
        4 * PAGE,
        "one huge frame"
    );
    s.munmap(va(base), M2).unwrap();
    drop(s);
    Frames::assert_no_leaks();
}
