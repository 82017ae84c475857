//! Model checks of the shootdown protocol's core with loom: every interleaving
//! (and every weak-memory outcome loom models) of two CPUs.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p tlb --test loom --release`
//! (`make test-host` does). A CPU's TLB is one atomic word: the frame it cached
//! for page 0, or `NONE`. The initiator unmaps page 0, shoots it down and then
//! gives the frame away (owner = `FREED`); a CPU that uses its cached frame
//! after that point has used a freed frame.

#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;

use tlb::{CpuMask, Flush, Platform, SpaceTlb, Tlb};

const NONE: usize = 0;
const FRAME: usize = 7;
const PAGE0: usize = 0;
const FREED: usize = usize::MAX;

/// Two CPUs' TLBs, the page table entry of page 0, and the frame's owner.
struct Machine {
    tlb: [AtomicUsize; 2],
    pte: AtomicUsize,
    owner: AtomicUsize,
}

#[derive(Clone)]
struct Plat(Arc<Machine>);

// SAFETY: `flush_local` empties the calling CPU's modelled TLB when the flush
// covers page 0; every target CPU of these models polls in its loop.
unsafe impl Platform for Plat {
    fn flush_local(&self, cpu: usize, flush: &Flush) {
        if flush.covers(PAGE0) {
            self.0.tlb[cpu].store(NONE, Ordering::SeqCst);
        }
    }

    fn send_ipi(&self, _targets: CpuMask) {}
}

fn machine() -> (Arc<Machine>, Arc<Tlb<Plat>>, Arc<SpaceTlb>) {
    let m = Arc::new(Machine {
        // CPU 1 walked page 0 earlier and cached its frame.
        tlb: [AtomicUsize::new(NONE), AtomicUsize::new(FRAME)],
        pte: AtomicUsize::new(FRAME),
        owner: AtomicUsize::new(PAGE0),
    });
    let tlb = Arc::new(Tlb::new(Plat(m.clone())));
    (m, tlb, Arc::new(SpaceTlb::new()))
}

/// Explores every interleaving with up to 4 preemptions (a bound is loom's
/// advice for models with spin loops). Each deliberate break of the protocol
/// (no wait for acknowledgements, no flush on leave or on enter, the active set
/// read before the generation bump) fails one of these models within it.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(4);
    b.max_branches = 100_000;
    b.check(f);
}

/// CPU `cpu` accesses page 0: through its TLB, or by walking the table.
fn access(m: &Machine, cpu: usize) {
    let mut f = m.tlb[cpu].load(Ordering::SeqCst);
    if f == NONE {
        f = m.pte.load(Ordering::SeqCst);
        if f == NONE {
            return;
        }
        m.tlb[cpu].store(f, Ordering::SeqCst);
    }
    assert_eq!(
        m.owner.load(Ordering::SeqCst),
        PAGE0,
        "cpu {cpu} used frame {f} after it was freed"
    );
}

/// A speculative walk by CPU `cpu`'s MMU: caches page 0's frame if mapped,
/// without using it.
fn fill(m: &Machine, cpu: usize) {
    if m.tlb[cpu].load(Ordering::SeqCst) == NONE {
        let f = m.pte.load(Ordering::SeqCst);
        m.tlb[cpu].store(f, Ordering::SeqCst);
    }
}

/// CPU 0 unmaps page 0, shoots it down, frees the frame.
fn unmap_and_free(m: &Machine, tlb: &Tlb<Plat>, space: &SpaceTlb) {
    m.pte.store(NONE, Ordering::SeqCst);
    let mut sd = tlb.shootdown(space, 0);
    sd.add(0, 4096);
    let _flushed = sd.finish();
    m.owner.store(FREED, Ordering::SeqCst);
}

/// CPU 1 runs `first`, then uses page 0 and answers its mailbox (as its IPI
/// handler would) until CPU 0, meanwhile, has unmapped page 0, shot it down and
/// freed its frame.
fn against_unmap(
    m: &Arc<Machine>,
    tlb: &Arc<Tlb<Plat>>,
    space: &Arc<SpaceTlb>,
    first: impl FnOnce(&Machine, &Tlb<Plat>, &SpaceTlb) + Send + 'static,
) {
    let done = Arc::new(AtomicBool::new(false));
    let t = {
        let (m, tlb, space, done) = (m.clone(), tlb.clone(), space.clone(), done.clone());
        thread::spawn(move || {
            first(&m, &tlb, &space);
            access(&m, 1);
            while !done.load(Ordering::SeqCst) {
                tlb.poll(1);
                access(&m, 1);
                thread::yield_now();
            }
        })
    };
    unmap_and_free(m, tlb, space);
    done.store(true, Ordering::SeqCst);
    t.join().unwrap();
}

#[test]
fn no_cpu_uses_a_frame_after_the_shootdown_freed_it() {
    model(|| {
        let (m, tlb, space) = machine();
        space.enter(&tlb, 0);
        space.enter(&tlb, 1);
        against_unmap(&m, &tlb, &space, |_, _, _| {});
        assert_eq!(tlb.stats().ipis, 1);
    });
}

#[test]
fn two_cpus_shooting_each_other_down_both_finish() {
    model(|| {
        let (_m, tlb, space) = machine();
        space.enter(&tlb, 0);
        space.enter(&tlb, 1);
        let finished = Arc::new(AtomicUsize::new(0));
        // Each shoots the other down, then keeps answering (as a halted CPU
        // takes IPIs) until both are done.
        let cpu =
            |cpu: usize, tlb: Arc<Tlb<Plat>>, space: Arc<SpaceTlb>, finished: Arc<AtomicUsize>| {
                let mut sd = tlb.shootdown(&space, cpu);
                sd.add(0x5000 * cpu, 0x5000 * cpu + 0x1000);
                let _ = sd.finish();
                finished.fetch_add(1, Ordering::SeqCst);
                while finished.load(Ordering::SeqCst) < 2 {
                    tlb.poll(cpu);
                    thread::yield_now();
                }
            };
        let t = {
            let (tlb, space, finished) = (tlb.clone(), space.clone(), finished.clone());
            thread::spawn(move || cpu(1, tlb, space, finished))
        };
        cpu(0, tlb.clone(), space, finished);
        t.join().unwrap();
        assert_eq!(tlb.stats().answered, 2);
    });
}

#[test]
fn a_cpu_that_left_while_idle_catches_up_before_it_uses_the_space() {
    model(|| {
        let (m, tlb, space) = machine();
        space.enter(&tlb, 0);
        space.enter(&tlb, 1);
        against_unmap(&m, &tlb, &space, |m, tlb, space| {
            space.leave(tlb, 1);
            // Idle, with the table still loaded: the walker may fill the TLB
            // speculatively. Then back to work.
            fill(m, 1);
            space.enter(tlb, 1);
        });
    });
}

/// A copy-on-write fault, as `mm` runs it: CPU 0 holds the address space's
/// table lock, rewrites page 0's PTE to a new frame (a copy), shoots the old
/// translation down, writes the new frame, and releases the lock. CPU 1
/// cached the old frame and now spins on that lock, answering its mailbox
/// meanwhile (`paging::relax`), reading page 0 through its TLB. Checked: CPU
/// 0's shootdown finishes (the waiter answers it), and once CPU 0's write is
/// done CPU 1 never reads the old frame again.
#[test]
fn a_shootdown_under_a_lock_finishes_while_the_waiter_relaxes() {
    const NEW: usize = 9;
    model(|| {
        let (m, tlb, space) = machine();
        space.enter(&tlb, 0);
        space.enter(&tlb, 1);
        let lock = Arc::new(AtomicBool::new(true)); // CPU 0 holds it
        let written = Arc::new(AtomicBool::new(false));
        let t = {
            let (m, tlb, lock, written) = (m.clone(), tlb.clone(), lock.clone(), written.clone());
            thread::spawn(move || {
                // The table lock's wait loop: relax (answer flush requests)
                // between tries, and CPU 1's reads of page 0 meanwhile.
                loop {
                    let seen_written = written.load(Ordering::SeqCst);
                    let mut f = m.tlb[1].load(Ordering::SeqCst);
                    if f == NONE {
                        f = m.pte.load(Ordering::SeqCst);
                        m.tlb[1].store(f, Ordering::SeqCst);
                    }
                    assert!(
                        !(seen_written && f == FRAME),
                        "CPU 1 read the old frame after the copy-on-write finished"
                    );
                    if lock
                        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        lock.store(false, Ordering::Release);
                        return;
                    }
                    tlb.poll(1);
                    thread::yield_now();
                }
            })
        };
        m.pte.store(NEW, Ordering::SeqCst);
        let mut sd = tlb.shootdown(&space, 0);
        sd.add(0, 4096);
        let _flushed = sd.finish();
        written.store(true, Ordering::SeqCst);
        lock.store(false, Ordering::Release);
        t.join().unwrap();
    });
}
