//! TLB shootdown across CPUs.
//!
//! When a CPU removes or weakens a translation (unmap, protect, a huge-leaf
//! split or collapse, a reclaimed page table), every CPU that may hold it in its
//! TLB must drop it before the operation returns, and the frames it pointed to
//! may be reused only after that. This crate is the protocol for it; the page
//! table work, the instructions and the IPIs are the caller's (the platform's).
//!
//! # Pieces
//!
//! - [`Flush`]: what one CPU must forget: up to [`MAX_RANGES`] page ranges, or
//!   everything past [`FULL_FLUSH_PAGES`] pages.
//! - [`Platform`]: the local flush instruction and the IPI, per board.
//! - [`Tlb`]: one per kernel: a mailbox per CPU (flush requests posted to it) and
//!   counters ([`TlbStats`]).
//! - [`SpaceTlb`]: one per address space: the set of CPUs that run in it (and so
//!   may cache its translations), and a generation counter for CPUs that leave it
//!   while idle.
//! - [`Shootdown`]: one per operation: collects the ranges, and on
//!   [`Shootdown::finish`] (or drop) makes every CPU of the space flush them and
//!   returns a [`Flushed`] proof; frames are freed only with that proof in hand.
//!
//! # Protocol
//!
//! Initiator (the CPU `c` that changed entries, interrupts off):
//! 1. writes the page-table entries (the page table's own lock serialises writers);
//! 2. `generation += 1` (SeqCst), then reads the active set (SeqCst);
//! 3. flushes locally;
//! 4. for every other active CPU `t`: locks `t`'s mailbox, merges the flush into
//!    it, bumps its request number and remembers it, unlocks; then one IPI to all
//!    of them ([`Platform::send_ipi`]);
//! 5. waits until each `t`'s done number reaches the remembered request number,
//!    answering its own mailbox ([`Tlb::poll`]) while it waits;
//! 6. only then frees data and page-table frames ([`Flushed`]).
//!
//! Target (`t`, in its IPI handler, or in any loop that waits with interrupts
//! off, including step 5 of its own shootdowns): [`Tlb::poll`] reads its request
//! number, and if it is ahead of its done number, locks its mailbox, takes the
//! merged flush and the request number `r`, unlocks, flushes locally, and stores
//! `done = r` (Release). Every request numbered up to `r` was merged into what it
//! took, so an initiator that sees `done >= its number` knows its flush ran.
//!
//! Idle CPUs ([`SpaceTlb::leave`], [`SpaceTlb::enter`]): a CPU that stops
//! running in a space (waiting for work) clears its bit in the active set, reads
//! the generation as `seen` (both SeqCst) and flushes locally; initiators that
//! read the set afterwards do not interrupt it. While it is away its page table
//! stays loaded, so its MMU may still fill the TLB speculatively. Before it runs
//! in the space again it sets its bit, reads the generation (SeqCst), and
//! flushes everything if it differs from `seen`. Every change is either sent
//! to it (the initiator read the set before the clear, or after the set), or
//! covered by the flush at leave (its generation bump came before `seen` was
//! read, so its entry writes did too), or by the flush at enter (the bump came
//! after `seen` was read and before the generation was read back; a bump after
//! that read comes before the initiator's read of the set, which then holds the
//! CPU again). The `loom` tests model-check this argument, speculative fills
//! included.
//!
//! # Locking rules
//!
//! - A mailbox lock is held only to merge into or take from that mailbox: never
//!   while taking another lock, flushing, sending an IPI or waiting. So the lock
//!   order is trivial and no cycle can form.
//! - A CPU waiting for acknowledgements answers its own mailbox in the same loop,
//!   so two CPUs shooting each other down at once both finish. Any other loop
//!   that spins with interrupts off (waiting for an address-space lock) must call
//!   [`Tlb::poll`] as well: a flush request is never lost, only delayed until the
//!   target polls or takes the IPI.
//! - [`Tlb::poll`] must not be re-entered on one CPU (call it with interrupts
//!   off, as the IPI handler and the initiator's wait loop run).
//!
//! # Frames
//!
//! A frame that a removed translation pointed to may be handed out again only
//! after [`Shootdown::finish`] returned: that is what [`Flushed`] stands for, and
//! the only way to get one.
#![cfg_attr(not(test), no_std)]

mod flush;
mod sync;

pub use flush::{FULL_FLUSH_PAGES, Flush, MAX_RANGES};

use sync::{AtomicU64, Ordering, SpinLock, spin_hint};

/// CPUs a mask can name.
#[cfg(not(loom))]
pub const MAX_CPUS: usize = 64;
/// CPUs a mask can name (fewer under the model checker, which tracks every
/// atomic of every mailbox).
#[cfg(loom)]
pub const MAX_CPUS: usize = 4;

/// A set of CPUs (bit `i` = CPU `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuMask(pub u64);

impl CpuMask {
    /// No CPU.
    pub const EMPTY: CpuMask = CpuMask(0);

    /// Only `cpu`.
    pub const fn one(cpu: usize) -> Self {
        CpuMask(1 << cpu)
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        self.0 & (1 << cpu) != 0
    }

    /// How many CPUs are in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The CPUs in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_CPUS).filter(move |&c| self.contains(c))
    }
}

/// What a board provides for shootdowns.
///
/// # Safety
///
/// [`Platform::flush_local`] must have dropped every translation the flush
/// names from the calling CPU's TLB (and made earlier page-table writes visible
/// to its walker) before it returns; with [`Platform::BROADCAST`] it must have
/// done so on every CPU. [`Platform::send_ipi`] must make each target CPU call
/// [`Tlb::poll`] with its own id soon, even if it is halted, unless it polls by
/// itself. Freed frames are reused on the strength of these promises.
pub unsafe trait Platform {
    /// Whether [`Platform::flush_local`] already reaches every CPU (AArch64's
    /// `TLBI ...IS` completed by `DSB ISH`): then no request is posted and no
    /// IPI sent.
    const BROADCAST: bool = false;

    /// Drops the translations `flush` names from this CPU's TLB (or every CPU's
    /// with [`Platform::BROADCAST`]).
    fn flush_local(&self, cpu: usize, flush: &Flush);

    /// Interrupts the CPUs of `targets`, whose handlers call [`Tlb::poll`].
    fn send_ipi(&self, targets: CpuMask);
}

/// Counters, for benchmarks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlbStats {
    /// Shootdowns that had something to flush.
    pub shootdowns: u64,
    /// CPUs interrupted (one per target CPU per shootdown).
    pub ipis: u64,
    /// Requests answered by [`Tlb::poll`].
    pub answered: u64,
    /// Full local flushes done by [`SpaceTlb::enter`] because the space changed
    /// while the CPU was away.
    pub flushes_on_enter: u64,
}

/// One CPU's flush requests.
struct Mailbox {
    /// What was asked and not yet taken.
    pending: SpinLock<Flush>,
    /// Number of the last request posted (written under the lock).
    requested: AtomicU64,
    /// Number of the last request answered.
    done: AtomicU64,
}

impl Mailbox {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Self {
            pending: SpinLock::new(Flush::None),
            requested: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Self {
            pending: SpinLock::new(Flush::None),
            requested: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }

    /// Merges `flush` into the mailbox; returns the request's number.
    fn post(&self, flush: &Flush) -> u64 {
        self.pending.with(|p| {
            p.merge(flush);
            let n = self.requested.load(Ordering::Relaxed) + 1;
            self.requested.store(n, Ordering::Release);
            n
        })
    }
}

/// The shootdown state of a kernel: a mailbox per CPU (see the crate docs).
pub struct Tlb<P: Platform> {
    platform: P,
    mailboxes: [Mailbox; MAX_CPUS],
    shootdowns: AtomicU64,
    ipis: AtomicU64,
    answered: AtomicU64,
    flushes_on_enter: AtomicU64,
}

impl<P: Platform> Tlb<P> {
    /// Shootdown state over `platform`, with empty mailboxes.
    #[cfg(not(loom))]
    pub const fn new(platform: P) -> Self {
        Self {
            platform,
            mailboxes: [const { Mailbox::new() }; MAX_CPUS],
            shootdowns: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            flushes_on_enter: AtomicU64::new(0),
        }
    }

    /// Shootdown state over `platform`, with empty mailboxes.
    #[cfg(loom)]
    pub fn new(platform: P) -> Self {
        Self {
            platform,
            mailboxes: core::array::from_fn(|_| Mailbox::new()),
            shootdowns: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            flushes_on_enter: AtomicU64::new(0),
        }
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Answers the flush requests posted to `cpu` (the calling CPU): the IPI
    /// handler calls it, and so does every loop that waits with interrupts off.
    /// Returns whether there was one. Not re-entrant on one CPU.
    pub fn poll(&self, cpu: usize) -> bool {
        let mb = &self.mailboxes[cpu];
        if mb.requested.load(Ordering::Acquire) == mb.done.load(Ordering::Relaxed) {
            return false;
        }
        let (flush, n) = mb
            .pending
            .with(|p| (p.take(), mb.requested.load(Ordering::Relaxed)));
        self.platform.flush_local(cpu, &flush);
        mb.done.store(n, Ordering::Release);
        self.answered.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Starts the shootdown of one operation by `cpu` (the calling CPU, with
    /// interrupts off until it finishes) in `space`.
    pub fn shootdown<'a>(&'a self, space: &'a SpaceTlb, cpu: usize) -> Shootdown<'a, P> {
        Shootdown {
            tlb: self,
            space,
            cpu,
            flush: Flush::None,
        }
    }

    /// The counters.
    pub fn stats(&self) -> TlbStats {
        TlbStats {
            shootdowns: self.shootdowns.load(Ordering::Relaxed),
            ipis: self.ipis.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            flushes_on_enter: self.flushes_on_enter.load(Ordering::Relaxed),
        }
    }
}

/// The CPUs running in one address space, and its change generation.
pub struct SpaceTlb {
    active: AtomicU64,
    generation: AtomicU64,
    /// Per CPU: the generation read when it left the space.
    seen: [AtomicU64; MAX_CPUS],
}

impl Default for SpaceTlb {
    fn default() -> Self {
        Self::new()
    }
}

impl SpaceTlb {
    /// A space no CPU runs in.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            active: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            seen: [const { AtomicU64::new(0) }; MAX_CPUS],
        }
    }

    /// A space no CPU runs in.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            active: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            seen: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Reads `word` for the protocol's store-then-read steps (the initiator's
    /// bump then read of the active set, `leave`'s clear then read of the
    /// generation, `enter`'s set then read): each is a write to one word followed
    /// by a read of the other, which only a total order over all four accesses
    /// makes safe. A read-modify-write of 0 is ordered after every earlier write
    /// to `word` in its modification order, so the argument in the crate docs
    /// holds even where a SeqCst load is weaker (and under loom, which models
    /// SeqCst loads as acquire loads).
    #[inline]
    fn read(word: &AtomicU64) -> u64 {
        word.fetch_add(0, Ordering::SeqCst)
    }

    /// The CPUs that run in the space (and may cache its translations).
    pub fn active(&self) -> CpuMask {
        CpuMask(self.active.load(Ordering::SeqCst))
    }

    /// `cpu` (the caller) runs in the space from now on; if the space changed
    /// since it left, its TLB is flushed first. Call before touching the
    /// space's memory.
    pub fn enter<P: Platform>(&self, tlb: &Tlb<P>, cpu: usize) {
        self.active.fetch_or(1 << cpu, Ordering::SeqCst);
        let g = Self::read(&self.generation);
        if g != self.seen[cpu].load(Ordering::Relaxed) {
            tlb.platform.flush_local(cpu, &Flush::All);
            tlb.flushes_on_enter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `cpu` (the caller) stops running in the space (it goes idle): later
    /// shootdowns skip it, and [`SpaceTlb::enter`] catches it up. Answers what
    /// was already posted to it.
    pub fn leave<P: Platform>(&self, tlb: &Tlb<P>, cpu: usize) {
        self.active.fetch_and(!(1 << cpu), Ordering::SeqCst);
        let g = Self::read(&self.generation);
        self.seen[cpu].store(g, Ordering::Relaxed);
        tlb.platform.flush_local(cpu, &Flush::All);
        tlb.poll(cpu);
    }
}

/// Proof that a shootdown finished: every CPU that may have cached the removed
/// translations has dropped them, so their frames may be reused.
#[derive(Debug)]
#[must_use = "frames may be freed only once the shootdown finished"]
pub struct Flushed(());

/// One operation's shootdown: collects ranges, flushes them everywhere on
/// [`Shootdown::finish`] or drop.
#[must_use = "dropping a shootdown flushes at once; keep it across the page-table changes"]
pub struct Shootdown<'a, P: Platform> {
    tlb: &'a Tlb<P>,
    space: &'a SpaceTlb,
    cpu: usize,
    flush: Flush,
}

impl<P: Platform> Shootdown<'_, P> {
    /// Adds `[start, end)` to what every CPU must flush.
    pub fn add(&mut self, start: usize, end: usize) {
        self.flush.add(start, end);
    }

    /// Asks for a full flush (a table was unlinked, a huge leaf split).
    pub fn add_all(&mut self) {
        self.flush = Flush::All;
    }

    /// What will be flushed.
    pub fn pending(&self) -> &Flush {
        &self.flush
    }

    /// Flushes everywhere and waits for every CPU of the space (see the crate
    /// docs); returns the proof that frames may now be freed.
    pub fn finish(mut self) -> Flushed {
        self.run();
        Flushed(())
    }

    fn run(&mut self) {
        let flush = self.flush.take();
        if flush.is_none() {
            return;
        }
        let tlb = self.tlb;
        tlb.shootdowns.fetch_add(1, Ordering::Relaxed);
        self.space.generation.fetch_add(1, Ordering::SeqCst);
        // A read-modify-write, not a load: see `SpaceTlb::read`.
        let targets = CpuMask(SpaceTlb::read(&self.space.active) & !(1 << self.cpu));
        tlb.platform.flush_local(self.cpu, &flush);
        if P::BROADCAST || targets.is_empty() {
            return;
        }
        let mut numbers = [0u64; MAX_CPUS];
        for t in targets.iter() {
            numbers[t] = tlb.mailboxes[t].post(&flush);
        }
        tlb.ipis.fetch_add(targets.len() as u64, Ordering::Relaxed);
        tlb.platform.send_ipi(targets);
        for t in targets.iter() {
            while tlb.mailboxes[t].done.load(Ordering::Acquire) < numbers[t] {
                tlb.poll(self.cpu);
                spin_hint();
            }
        }
    }
}

impl<P: Platform> Drop for Shootdown<'_, P> {
    fn drop(&mut self) {
        self.run();
    }
}
