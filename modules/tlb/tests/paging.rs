//! The whole flush-then-free path with real threads as CPUs: `paging`'s
//! cursors and operation batches, its shootdown hook, this crate's protocol,
//! and a frame handler that records every free.
//!
//! CPU 0 maps, unmaps and write-protects pages of a real `paging` page table
//! (behind a reader-writer lock, as the kernel's address space is), each
//! operation in a batch, freeing data frames with `free_after_flush`. CPUs 1
//! to 3 keep accessing random pages through a simulated TLB: an entry found
//! there is used as is; a miss walks the live table (`query`, under the read
//! lock) and caches the result. Their flush requests are answered in their
//! loop (the simulated IPI handler), including while they wait for the lock,
//! as the kernel's waiters do. CPU 3 also goes idle now and then (`leave`,
//! `enter`).
//!
//! Checked on every access: the frame a CPU reaches was not freed, and a
//! write goes through a writable translation only if the page is writable
//! now. Checked at the end: every frame was freed exactly once (no leak, no
//! double free), and every operation took exactly one shootdown.

#![cfg(not(loom))]

use std::alloc::Layout;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, LazyLock, Mutex, RwLock, TryLockError};
use std::thread;

use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::x86_64::X64PagingMetaData;
use page_table_multiarch::{MappingFlags, PagingHandler};
use paging::{NoFlush, PageTable, Shootdown, Size4K};
use tlb::{CpuMask, Flush, Platform, SpaceTlb, Tlb};

const CPUS: usize = 4;
const PAGES: usize = 48;
const BASE: usize = 0x10_0000_0000;
const PAGE: usize = 4096;
const OPS: usize = 300;

// ------------------------------------------------------------- frames

/// Frames: host memory that is never given back to the host allocator, so a
/// freed frame's address is never handed out again and a use after its free
/// is recognised for certain.
struct Frames;

static ALIVE: LazyLock<Mutex<HashSet<usize>>> = LazyLock::new(Default::default);
static FREED: LazyLock<Mutex<HashSet<usize>>> = LazyLock::new(Default::default);

impl PagingHandler for Frames {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        let layout = Layout::from_size_align(num * PAGE, align.max(PAGE)).ok()?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) } as usize;
        if p == 0 {
            return None;
        }
        let mut alive = ALIVE.lock().unwrap();
        for i in 0..num {
            alive.insert(p + i * PAGE);
        }
        Some(PhysAddr::from(p))
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        let mut alive = ALIVE.lock().unwrap();
        let mut freed = FREED.lock().unwrap();
        for i in 0..num {
            let f = paddr.as_usize() + i * PAGE;
            assert!(
                alive.remove(&f),
                "frame {f:#x} freed twice or never allocated"
            );
            freed.insert(f);
        }
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}

type Pt = PageTable<NoFlush<X64PagingMetaData>, X64PTE, Frames>;

// ---------------------------------------------------------------- CPUs

thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// A simulated TLB: page -> (frame, writable).
type SimTlb = HashMap<usize, (usize, bool)>;

/// Each CPU's simulated TLB.
static TLBS: LazyLock<Vec<Mutex<SimTlb>>> =
    LazyLock::new(|| (0..CPUS).map(|_| Mutex::new(HashMap::new())).collect());

struct Machine;

// SAFETY: `flush_local` drops the named pages (or all) from the calling CPU's
// simulated TLB before it returns; `send_ipi` needs nothing: every CPU polls
// its mailbox in its loop.
unsafe impl Platform for Machine {
    fn flush_local(&self, cpu: usize, flush: &Flush) {
        let mut tlb = TLBS[cpu].lock().unwrap();
        match flush {
            Flush::None => {}
            Flush::All => tlb.clear(),
            f => tlb.retain(|&va, _| !f.covers(va)),
        }
    }

    fn send_ipi(&self, _targets: CpuMask) {}
}

static TLB: LazyLock<Tlb<Machine>> = LazyLock::new(|| Tlb::new(Machine));
static SPACE: LazyLock<SpaceTlb> = LazyLock::new(SpaceTlb::new);
static PT: LazyLock<RwLock<Pt>> = LazyLock::new(|| RwLock::new(Pt::try_new().unwrap()));
static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
/// The first failed check, if any. A CPU whose check failed stops
/// accessing pages but keeps answering flush requests until the end, so that
/// the initiator is never left waiting for it.
static FAILURE: Mutex<Option<String>> = Mutex::new(None);

fn failed() -> bool {
    FAILURE.lock().unwrap().is_some()
}

/// Accesses made by each CPU so far.
static PROGRESS: [AtomicU64; CPUS] = [const { AtomicU64::new(0) }; CPUS];

/// `paging`'s hook: the protocol over the simulated machine.
struct Hook;

// SAFETY: `finish` returns after every CPU of `SPACE` answered (each flushes
// its simulated TLB in `poll`), the caller's own flush included.
unsafe impl Shootdown for Hook {
    fn shootdown(&self, _root: PhysAddr, pages: &[usize], all: bool) {
        SHOOTDOWNS.fetch_add(1, Ordering::SeqCst);
        let mut sd = TLB.shootdown(&SPACE, CPU.with(Cell::get));
        if all {
            sd.add_all();
        } else {
            for &va in pages {
                sd.add(va, va + PAGE);
            }
        }
        let _flushed = sd.finish();
    }
}

static HOOK: Hook = Hook;

/// Runs `f` on the table under the read lock, answering `cpu`'s flush
/// requests while it waits (as the kernel's lock waiters do).
fn read_pt<R>(cpu: usize, f: impl FnOnce(&Pt) -> R) -> R {
    loop {
        match PT.try_read() {
            Ok(pt) => return f(&pt),
            Err(TryLockError::WouldBlock) => {
                TLB.poll(cpu);
                std::hint::spin_loop();
            }
            Err(TryLockError::Poisoned(_)) => panic!("another CPU panicked"),
        }
    }
}

/// One access by the calling CPU to page `p`; `write` asks for a store.
fn access(cpu: usize, p: usize, write: bool) -> Result<(), String> {
    let va = BASE + p * PAGE;
    let cached = TLBS[cpu].lock().unwrap().get(&va).copied();
    let (frame, writable) = match cached {
        Some(e) => e,
        None => {
            // A hardware walk does not take locks; the simulation does, so it
            // must answer flush requests while it waits (as the kernel's
            // waiters for the address-space lock do).
            let walk = read_pt(cpu, |pt| pt.query(VirtAddr::from(va)).ok());
            let Some((pa, flags, _)) = walk else {
                return Ok(()); // a page fault: nothing cached
            };
            let e = (pa.as_usize(), flags.contains(MappingFlags::WRITE));
            TLBS[cpu].lock().unwrap().insert(va, e);
            e
        }
    };
    if FREED.lock().unwrap().contains(&frame) {
        return Err(format!(
            "CPU {cpu} reached frame {frame:#x} of page {p} after it was freed"
        ));
    }
    if write && writable {
        // What the stale writable translation would allow: a store the page
        // no longer permits. The truth is in the table, under the lock.
        let now = read_pt(cpu, |pt| pt.query(VirtAddr::from(va)).ok());
        // The entry is still cached (we polled in between only if the lock was
        // taken, and a poll that flushed it removed it): re-check it.
        if TLBS[cpu].lock().unwrap().get(&va) == Some(&(frame, true)) {
            let ok = now.is_some_and(|(pa, f, _)| {
                pa.as_usize() == frame && f.contains(MappingFlags::WRITE)
            });
            if !ok {
                return Err(format!(
                    "CPU {cpu} holds a writable translation of page {p} that is gone"
                ));
            }
        }
    }
    Ok(())
}

/// xorshift64*.
fn next(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// CPU 0: random map / unmap / protect, each an operation batch.
fn initiator(seed: u64, stop: &AtomicBool) -> (u64, u64) {
    let mut s = seed;
    let (mut ops, mut shooting_ops) = (0, 0);
    for _ in 0..OPS {
        if failed() {
            break;
        }
        let p = (next(&mut s) % PAGES as u64) as usize;
        let n = 1 + (next(&mut s) % 8) as usize;
        let n = n.min(PAGES - p);
        let va = VirtAddr::from(BASE + p * PAGE);
        let before = SHOOTDOWNS.load(Ordering::SeqCst);
        let weakens;
        {
            let mut pt = loop {
                match PT.try_write() {
                    Ok(pt) => break pt,
                    Err(TryLockError::WouldBlock) => {
                        TLB.poll(0);
                    }
                    Err(TryLockError::Poisoned(_)) => panic!("another CPU panicked"),
                }
            };
            pt.begin_batch();
            match next(&mut s) % 3 {
                0 => {
                    // Map the free pages of the range, a fresh frame each.
                    let mut c = pt.cursor();
                    for q in 0..n {
                        let qa = VirtAddr::from(va.as_usize() + q * PAGE);
                        if c.query(qa).is_err() {
                            let f = Frames::alloc_frame().unwrap();
                            let rw = MappingFlags::READ | MappingFlags::WRITE;
                            c.map::<Size4K>(qa, f, rw).unwrap();
                        }
                    }
                    weakens = false;
                }
                1 => {
                    let mut leaves = Vec::new();
                    pt.cursor()
                        .unmap_region(va, n * PAGE, |l| leaves.push(l.paddr))
                        .unwrap();
                    weakens = !leaves.is_empty();
                    for f in leaves {
                        pt.free_after_flush(f, 1);
                    }
                }
                _ => {
                    // Write-protect in two cursors: still one shootdown.
                    let half = n / 2;
                    let mut weak = false;
                    for (from, len) in [(0, half), (half, n - half)] {
                        let at = VirtAddr::from(va.as_usize() + from * PAGE);
                        let mut c = pt.cursor();
                        for q in 0..len {
                            let qa = at + q * PAGE;
                            if let Ok((_, flags, _)) = c.query(qa) {
                                c.protect::<Size4K>(qa, MappingFlags::READ).unwrap();
                                // Only taking WRITE away weakens (a page
                                // read-only already keeps its translation).
                                weak |= flags.contains(MappingFlags::WRITE);
                            }
                        }
                    }
                    weakens = weak;
                }
            }
            pt.end_batch();
        }
        let shots = SHOOTDOWNS.load(Ordering::SeqCst) - before;
        assert_eq!(shots, u64::from(weakens), "shootdowns for one operation");
        ops += 1;
        shooting_ops += u64::from(weakens);
        // Let every other CPU use (and cache) pages before the next change.
        let marks: Vec<u64> = PROGRESS.iter().map(|p| p.load(Ordering::SeqCst)).collect();
        for cpu in 1..CPUS {
            while PROGRESS[cpu].load(Ordering::SeqCst) < marks[cpu] + 16 {
                if failed() {
                    break;
                }
                TLB.poll(0);
                std::thread::yield_now();
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    (ops, shooting_ops)
}

/// CPUs 1..: random accesses; CPU 3 also goes idle now and then.
fn accessor(cpu: usize, seed: u64, stop: &AtomicBool) -> u64 {
    let mut s = seed;
    let mut accesses = 0;
    let mut ok = true;
    while !stop.load(Ordering::SeqCst) {
        TLB.poll(cpu);
        if !ok {
            continue;
        }
        let p = (next(&mut s) % PAGES as u64) as usize;
        if let Err(e) = access(cpu, p, next(&mut s).is_multiple_of(2)) {
            FAILURE.lock().unwrap().get_or_insert(e);
            ok = false;
        }
        accesses += 1;
        PROGRESS[cpu].fetch_add(1, Ordering::SeqCst);
        if cpu == 3 && next(&mut s).is_multiple_of(64) {
            SPACE.leave(&*TLB, cpu);
            for _ in 0..(next(&mut s) % 50) {
                std::hint::spin_loop();
            }
            SPACE.enter(&*TLB, cpu);
        }
    }
    accesses
}

#[test]
fn frames_are_freed_only_after_every_cpu_flushed_one_shootdown_per_operation() {
    paging::set_shootdown(&HOOK);
    let stop = AtomicBool::new(false);
    let start = Barrier::new(CPUS);
    let (ops, accesses) = thread::scope(|sc| {
        let workers: Vec<_> = (1..CPUS)
            .map(|cpu| {
                let (stop, start) = (&stop, &start);
                sc.spawn(move || {
                    CPU.with(|c| c.set(cpu));
                    SPACE.enter(&*TLB, cpu);
                    start.wait();
                    let n = accessor(cpu, 0x1234_5678 + cpu as u64, stop);
                    SPACE.leave(&*TLB, cpu);
                    n
                })
            })
            .collect();
        SPACE.enter(&*TLB, 0);
        start.wait();
        // A failed check on CPU 0 must end the test, not leave the other CPUs
        // spinning forever: stop them, then fail.
        let ops = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            initiator(0x5eed_f00d, &stop)
        }));
        stop.store(true, Ordering::SeqCst);
        let accesses: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let ops = ops.unwrap_or_else(|e| std::panic::resume_unwind(e));
        (ops, accesses)
    });
    if let Some(e) = FAILURE.lock().unwrap().take() {
        panic!("{e}");
    }
    assert!(
        accesses.iter().all(|&a| a > 0),
        "every CPU ran: {accesses:?}"
    );
    assert!(
        ops.1 > 100,
        "enough operations removed translations: {ops:?}"
    );
    assert!(TLB.stats().answered > 0, "the other CPUs answered requests");
    // Unmap everything, then the table frees its own frames.
    {
        let mut pt = PT.write().unwrap();
        pt.begin_batch();
        let mut leaves = Vec::new();
        pt.cursor()
            .unmap_region(VirtAddr::from(BASE), PAGES * PAGE, |l| leaves.push(l.paddr))
            .unwrap();
        for f in leaves {
            pt.free_after_flush(f, 1);
        }
        pt.end_batch();
        assert_eq!(pt.table_frames(), 1, "only the root is left");
    }
    let root = PT.read().unwrap().root_paddr();
    assert_eq!(
        *ALIVE.lock().unwrap(),
        HashSet::from([root.as_usize()]),
        "every frame but the root was freed"
    );
}
