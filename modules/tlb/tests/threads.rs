//! The shootdown protocol with real threads as CPUs.
//!
//! A simulated machine: a page table of `PAGES` slots (each a frame id or
//! `UNMAPPED`), a TLB per CPU (what that CPU cached: page -> frame), and for each
//! frame its owner (the page it is mapped at, or nobody once it was freed). A
//! reader CPU uses its TLB entry when it has one and walks the table otherwise;
//! every use checks that the frame still belongs to that page. Writers remap and
//! unmap pages, shoot the change down, and only then give the old frame away, as
//! the kernel does. A lost or early acknowledgement shows up as a use of a frame
//! that was already given to another page.

#![cfg(not(loom))]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use tlb::{CpuMask, Flush, Flushed, Platform, SpaceTlb, Tlb};

const PAGES: usize = 64;
const FRAMES: usize = 256;
const UNMAPPED: usize = usize::MAX;
const NOBODY: usize = usize::MAX;
const PAGE: usize = 4096;
/// Shootdowns per test.
const OPS: usize = 4000;
/// Accesses a reader makes between two looks at its mailbox.
const BURST: usize = 32;

struct Machine {
    table: Vec<AtomicUsize>,
    owner: Vec<AtomicUsize>,
    tlbs: Vec<Mutex<HashMap<usize, usize>>>,
    ipis_to: Vec<AtomicU64>,
    local_flushes: AtomicU64,
}

impl Machine {
    fn new(cpus: usize) -> Self {
        let m = Machine {
            table: (0..PAGES).map(|_| AtomicUsize::new(UNMAPPED)).collect(),
            owner: (0..FRAMES).map(|_| AtomicUsize::new(NOBODY)).collect(),
            tlbs: (0..cpus).map(|_| Mutex::new(HashMap::new())).collect(),
            ipis_to: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
            local_flushes: AtomicU64::new(0),
        };
        // Page p starts on frame p.
        for p in 0..PAGES {
            m.owner[p].store(p, Ordering::SeqCst);
            m.table[p].store(p, Ordering::SeqCst);
        }
        m
    }

    /// One access by `cpu` to page `p`: through its TLB, or a walk that fills it.
    /// Panics if the frame used does not belong to `p` any more.
    fn access(&self, cpu: usize, p: usize) {
        let mut tlb = self.tlbs[cpu].lock().unwrap();
        let frame = match tlb.get(&p) {
            Some(&f) => f,
            None => {
                let f = self.table[p].load(Ordering::SeqCst);
                if f == UNMAPPED {
                    return; // a page fault: nothing cached
                }
                tlb.insert(p, f);
                f
            }
        };
        let owner = self.owner[frame].load(Ordering::SeqCst);
        assert_eq!(
            owner, p,
            "cpu {cpu} used frame {frame} through a stale translation of page {p} \
             (the frame now belongs to {owner:#x})"
        );
    }
}

// SAFETY: `flush_local` drops the named pages from the calling CPU's simulated
// TLB before returning (under its lock, so a later access walks the table), and
// every target CPU polls in its loop, so `send_ipi` only counts.
unsafe impl Platform for &'static Machine {
    fn flush_local(&self, cpu: usize, flush: &Flush) {
        self.local_flushes.fetch_add(1, Ordering::Relaxed);
        let mut tlb = self.tlbs[cpu].lock().unwrap();
        match flush {
            Flush::None => {}
            Flush::All => tlb.clear(),
            Flush::Ranges { .. } => tlb.retain(|&p, _| !flush.covers(p * PAGE)),
        }
    }

    fn send_ipi(&self, targets: CpuMask) {
        for t in targets.iter() {
            self.ipis_to[t].fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

/// xorshift64*, seeded per thread.
fn rng(seed: u64) -> impl FnMut() -> usize {
    let mut x = seed | 1;
    move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize
    }
}

/// Frames nobody owns, for remapping.
struct Pool(Mutex<Vec<usize>>);

impl Pool {
    fn new() -> Self {
        Pool(Mutex::new((PAGES..FRAMES).collect()))
    }
}

/// Writer `cpu` changes the pages `mine` (its own, disjoint from other writers'):
/// unmaps or remaps one or several at a time, shoots the change down, then
/// frees the old frames (owner = nobody) and returns them to the pool, where
/// another writer may map them at once.
fn writer(
    m: &'static Machine,
    tlb: &Tlb<&'static Machine>,
    space: &SpaceTlb,
    pool: &Pool,
    cpu: usize,
    mine: std::ops::Range<usize>,
    ops: usize,
) {
    let mut r = rng(0x9e37_79b9 ^ cpu as u64);
    for _ in 0..ops {
        let first = mine.start + r() % mine.len();
        let n = 1 + r() % 3;
        let mut sd = tlb.shootdown(space, cpu);
        let mut old = Vec::new();
        for p in first..(first + n).min(mine.end) {
            let new = if r().is_multiple_of(3) {
                UNMAPPED
            } else {
                match pool.0.lock().unwrap().pop() {
                    Some(f) => {
                        m.owner[f].store(p, Ordering::SeqCst);
                        f
                    }
                    None => UNMAPPED,
                }
            };
            let was = m.table[p].swap(new, Ordering::SeqCst);
            if was != UNMAPPED {
                old.push(was);
            }
            sd.add(p * PAGE, (p + 1) * PAGE);
        }
        // Only once the shootdown finished may the frames go: every CPU has
        // dropped the old translations.
        let _flushed: Flushed = sd.finish();
        for f in old {
            m.owner[f].store(NOBODY, Ordering::SeqCst);
            pool.0.lock().unwrap().push(f);
        }
        m.access(cpu, first);
        tlb.poll(cpu);
        thread::yield_now();
    }
}

/// What a CPU does once its work is done: it leaves the space and, like a
/// halted CPU taking IPIs, keeps answering what was posted to it before it
/// left, until `until` says every CPU is done.
fn idle(tlb: &Tlb<&'static Machine>, space: &SpaceTlb, cpu: usize, until: impl Fn() -> bool) {
    space.leave(tlb, cpu);
    while !until() {
        tlb.poll(cpu);
        thread::yield_now();
    }
    tlb.poll(cpu);
}

fn run(cpus: usize, writers: usize, idle_readers: bool, ops: usize) -> tlb::TlbStats {
    let m: &'static Machine = leak(Machine::new(cpus));
    let tlb: &'static Tlb<&'static Machine> = leak(Tlb::new(m));
    let space: &'static SpaceTlb = leak(SpaceTlb::new());
    let pool: &'static Pool = leak(Pool::new());
    for cpu in 0..cpus {
        space.enter(tlb, cpu);
    }
    let stop: &'static AtomicBool = leak(AtomicBool::new(false));
    let per = PAGES / writers;
    let mut readers = Vec::new();
    for cpu in writers..cpus {
        readers.push(thread::spawn(move || {
            let mut r = rng(cpu as u64 * 7919);
            let mut away = false;
            while !stop.load(Ordering::SeqCst) {
                // Flush requests are answered between bursts of accesses, as an
                // IPI arrives some time after it was sent.
                tlb.poll(cpu);
                if idle_readers && r().is_multiple_of(64) {
                    if away {
                        space.enter(tlb, cpu);
                    } else {
                        space.leave(tlb, cpu);
                    }
                    away = !away;
                }
                if !away {
                    for _ in 0..BURST {
                        m.access(cpu, r() % PAGES);
                    }
                }
                // More threads than cores on a small machine: let the writers run.
                thread::yield_now();
            }
            if away {
                space.enter(tlb, cpu);
            }
            idle(tlb, space, cpu, || true);
        }));
    }
    let finished: &'static AtomicUsize = leak(AtomicUsize::new(0));
    let ws: Vec<_> = (0..writers)
        .map(|w| {
            thread::spawn(move || {
                writer(m, tlb, space, pool, w, w * per..(w + 1) * per, ops);
                finished.fetch_add(1, Ordering::SeqCst);
                idle(tlb, space, w, || finished.load(Ordering::SeqCst) == writers);
            })
        })
        .collect();
    for w in ws {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    tlb.stats()
}

#[test]
fn readers_never_use_a_frame_after_it_was_given_away() {
    let s = run(4, 1, false, OPS);
    assert_eq!(s.shootdowns, OPS as u64);
    // One IPI per other active CPU per shootdown, never more.
    assert_eq!(s.ipis, 3 * OPS as u64);
}

#[test]
fn two_initiators_shooting_each_other_both_finish() {
    let s = run(4, 2, false, OPS / 2);
    assert_eq!(s.shootdowns, OPS as u64);
    // At most one IPI per other active CPU; fewer once the first writer is done
    // and has left the space.
    assert!(s.ipis <= 3 * OPS as u64 && s.ipis > 2 * OPS as u64, "{s:?}");
}

#[test]
fn idle_cpus_are_skipped_and_catch_up_when_they_come_back() {
    let s = run(4, 1, true, OPS);
    assert_eq!(s.shootdowns, OPS as u64);
    // Idle readers were left out of some shootdowns...
    assert!(s.ipis < 3 * OPS as u64, "{s:?}");
    // ...and flushed on their way back in.
    assert!(s.flushes_on_enter > 0, "{s:?}");
}

#[test]
fn one_cpu_sends_no_ipi_and_nothing_to_flush_sends_nothing() {
    let m: &'static Machine = leak(Machine::new(2));
    let tlb = Tlb::new(m);
    let space = SpaceTlb::new();
    space.enter(&tlb, 0);
    let mut sd = tlb.shootdown(&space, 0);
    sd.add(0, PAGE);
    let _ = sd.finish();
    let _ = tlb.shootdown(&space, 0).finish();
    let s = tlb.stats();
    assert_eq!((s.shootdowns, s.ipis), (1, 0));
    assert_eq!(m.ipis_to[1].load(Ordering::Relaxed), 0);
    assert_eq!(space.active(), CpuMask::one(0));
}

#[test]
fn a_dropped_shootdown_flushes_too() {
    let m: &'static Machine = leak(Machine::new(2));
    let tlb = Tlb::new(m);
    let space = SpaceTlb::new();
    space.enter(&tlb, 0);
    m.access(0, 3);
    assert!(m.tlbs[0].lock().unwrap().contains_key(&3));
    {
        let mut sd = tlb.shootdown(&space, 0);
        sd.add(3 * PAGE, 4 * PAGE);
    }
    assert!(!m.tlbs[0].lock().unwrap().contains_key(&3));
}
