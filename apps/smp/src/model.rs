//! The random stream on CPU 0 and the checkers on every CPU (see the crate
//! docs for the round protocol).
//!
//! One round: CPU 0 publishes the range of its next call; all meet (R0);
//! the other CPUs keep touching the range and a few random pages while CPU 0
//! primes the range, makes the call, writes fresh patterns into the new
//! writable pages and updates the model; all meet (R1); every CPU checks the
//! range and a few random pages against the model; all meet (R2). The model
//! is written by CPU 0 only, between R0 and R1, and read by everyone between
//! R1 and R2: the barriers order the accesses.

use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use tessera::mm::{self, MmapFlags, PAGE_SIZE, Prot};
use tessera::rng::Rng;
use tessera::smp::{self, Barrier};
use tessera::{AppResult, AxError, Context, Vec, check, check_eq, format, println};

/// Pages of the stretch of the window the run works in: two 2 MiB blocks.
const PAGES: usize = 1024;
/// Pages of a 2 MiB page.
const HUGE_PAGES: usize = 512;
/// Calls CPU 0 makes.
const OPS: usize = 400;
/// Random pages each CPU touches and checks per round, besides the range.
const RANDOM_PAGES: usize = 8;
/// Most pages of a call's range (calls are 1..=16 pages, or a 2 MiB block of
/// which a random 16-page window is checked).
const RANGE_MAX: usize = 16;
const SEED: u64 = 0x5eed_0005_3e9a_0001;

const R: Prot = Prot::READ;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const NONE: Prot = Prot::empty();

/// What a run did.
pub struct Summary {
    /// Calls made by CPU 0.
    pub ops: usize,
    /// Page checks by all CPUs.
    pub checks: usize,
    /// 2 MiB mappings made.
    pub huge_maps: usize,
}

/// State shared by all CPUs.
struct Shared {
    base: usize,
    barrier: Barrier,
    /// Per page: 0 unmapped, else 1 + prot bits (READ 1, WRITE 2).
    state: Vec<AtomicU8>,
    /// Per page: the `u64` at its start, if it is mapped.
    value: Vec<AtomicU64>,
    /// The range of this round's call: first page and page count.
    first: AtomicUsize,
    count: AtomicUsize,
    /// CPU 0 made this round's call.
    op_done: AtomicBool,
    /// A CPU found a page that disagrees with the model.
    failed: AtomicBool,
    /// No more rounds.
    stop: AtomicBool,
}

fn encode(prot: Prot) -> u8 {
    1 + u8::from(prot.contains(Prot::READ)) + 2 * u8::from(prot.contains(Prot::WRITE))
}

impl Shared {
    fn addr(&self, p: usize) -> usize {
        self.base + p * PAGE_SIZE
    }

    fn set(&self, p: usize, prot: Option<Prot>, value: u64) {
        self.state[p].store(prot.map_or(0, encode), Ordering::Relaxed);
        self.value[p].store(value, Ordering::Relaxed);
    }

    /// (mapped, readable, writable, value) per the model.
    fn model(&self, p: usize) -> (bool, bool, bool, u64) {
        let s = self.state[p].load(Ordering::Relaxed);
        if s == 0 {
            return (false, false, false, 0);
        }
        let bits = s - 1;
        (
            true,
            bits & 1 != 0,
            bits & 2 != 0,
            self.value[p].load(Ordering::Relaxed),
        )
    }

    /// Loads page `p` and stores its last byte back (caches its translations).
    fn touch(&self, p: usize) {
        let va = self.addr(p);
        if !mm::read_faults(va) {
            mm::write_faults(va + PAGE_SIZE - 1);
        }
    }

    /// Checks page `p` as this CPU sees it against the model.
    fn check(&self, cpu: usize, p: usize) -> Result<(), String> {
        let va = self.addr(p);
        let (mapped, r, w, value) = self.model(p);
        let readable = !mm::read_faults(va);
        let writable = !mm::write_faults(va + PAGE_SIZE - 1);
        if (readable, writable) != (r, w) {
            let model = match (mapped, r, w) {
                (false, ..) => "unmapped",
                (true, false, _) => "PROT_NONE",
                (true, true, false) => "read-only",
                (true, true, true) => "read-write",
            };
            return Err(format!(
                "CPU {cpu}: page {p} ({va:#x}) is {model} in the model, but this CPU can \
                 read it: {readable}, write it: {writable} (a stale translation?)"
            ));
        }
        if readable {
            // SAFETY: the page is mapped readable (the probe just said so and
            // the model agrees); no call changes mappings between R1 and R2.
            let got = unsafe { mm::peek(va) };
            if got != value {
                return Err(format!(
                    "CPU {cpu}: page {p} ({va:#x}) holds {got:#x}, the model says {value:#x} \
                     (a stale translation to a reused frame?)"
                ));
            }
        }
        Ok(())
    }

    /// The pages a CPU checks this round: the call's range and random ones.
    fn sample(&self, rng: &mut Rng) -> impl Iterator<Item = usize> + use<> {
        let first = self.first.load(Ordering::Relaxed);
        let count = self.count.load(Ordering::Relaxed);
        let randoms: [usize; RANDOM_PAGES] = core::array::from_fn(|_| rng.below(PAGES));
        (first..first + count).chain(randoms)
    }
}

/// CPU 0's stream of calls, with the model.
struct Stream {
    rng: Rng,
    huge_maps: usize,
}

impl Stream {
    fn random_prot(&mut self) -> Prot {
        [RW, RW, R, NONE][self.rng.below(4)]
    }

    /// Picks the next call: its kind and range.
    fn pick(&mut self) -> (usize, usize, usize) {
        let kind = self.rng.below(11);
        if kind == 10 {
            let block = self.rng.below(PAGES / HUGE_PAGES) * HUGE_PAGES;
            return (kind, block, HUGE_PAGES);
        }
        let p = self.rng.below(PAGES);
        (kind, p, 1 + self.rng.below(RANGE_MAX.min(PAGES - p)))
    }

    /// Fresh data in every writable page of `[p, p + n)`, in the model too:
    /// a frame freed by an earlier call and reused here gets new contents.
    fn fill(&mut self, sh: &Shared, p: usize, n: usize, prot: Prot) {
        let pattern = self.rng.next_u64() | 1;
        for q in p..p + n {
            let value = if prot.contains(Prot::WRITE) {
                let v = pattern ^ ((q as u64) << 20);
                // SAFETY: CPU 0 just mapped `[p, p + n)` writable; the checkers
                // only load and store back the last byte of a page.
                unsafe { mm::poke(sh.addr(q), v) };
                v
            } else {
                0
            };
            sh.set(q, Some(prot), value);
        }
    }

    /// Makes the call `kind` over `[p, p + n)` and updates the model.
    fn call(&mut self, sh: &Shared, kind: usize, p: usize, n: usize) -> AppResult {
        match kind {
            10 => {
                let prot = self.random_prot();
                let mut flags = MmapFlags::FIXED | MmapFlags::HUGE_2M;
                if self.rng.below(2) == 0 {
                    flags |= MmapFlags::POPULATE;
                }
                mm::mmap(Some(sh.addr(p)), n * PAGE_SIZE, prot, flags).context("mmap 2M")?;
                self.huge_maps += 1;
                self.fill(sh, p, n, prot);
            }
            0..=2 => {
                let prot = self.random_prot();
                let mut flags = MmapFlags::FIXED;
                if self.rng.below(2) == 0 {
                    flags |= MmapFlags::POPULATE;
                }
                mm::mmap(Some(sh.addr(p)), n * PAGE_SIZE, prot, flags).context("mmap")?;
                self.fill(sh, p, n, prot);
            }
            3..=5 => {
                mm::munmap(sh.addr(p), n * PAGE_SIZE).context("munmap")?;
                for q in p..p + n {
                    sh.set(q, None, 0);
                }
            }
            6..=8 => {
                let prot = self.random_prot();
                let r = mm::mprotect(sh.addr(p), n * PAGE_SIZE, prot);
                if (p..p + n).all(|q| sh.model(q).0) {
                    r.context("mprotect")?;
                    for q in p..p + n {
                        sh.set(q, Some(prot), sh.model(q).3);
                    }
                } else {
                    check_eq!(
                        r,
                        Err(AxError::NoMemory),
                        "mprotect over a hole at page {p}"
                    );
                }
            }
            _ => {
                if let (true, _, true, _) = sh.model(p) {
                    let value = self.rng.next_u64() | 1;
                    // SAFETY: the model says the page is mapped writable.
                    unsafe { mm::poke(sh.addr(p), value) };
                    sh.set(p, Some(RW), value);
                }
            }
        }
        Ok(())
    }
}

/// What each CPU runs: CPU 0 the stream, the others the checker; all check.
fn run_cpu(sh: &Shared, cpu: usize) -> Result<usize, String> {
    let mut rng = Rng::new(SEED ^ (cpu as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut stream = Stream {
        rng: Rng::new(SEED),
        huge_maps: 0,
    };
    let mut checks = 0;
    let mut error: Option<String> = None;
    for i in 0..=OPS {
        let mut call = None;
        if cpu == 0 {
            if i == OPS || sh.failed.load(Ordering::Relaxed) {
                sh.stop.store(true, Ordering::Relaxed);
            } else {
                let (kind, p, n) = stream.pick();
                sh.first.store(p, Ordering::Relaxed);
                sh.count.store(n.min(RANGE_MAX), Ordering::Relaxed);
                sh.op_done.store(false, Ordering::Relaxed);
                call = Some((kind, p, n));
            }
        }
        sh.barrier.wait(); // R0
        if sh.stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some((kind, p, n)) = call {
            for q in p..p + n.min(RANGE_MAX) {
                sh.touch(q);
            }
            let r = stream
                .call(sh, kind, p, n)
                .map_err(|e| format!("call {i}: {e}"));
            if let Err(e) = r {
                error.get_or_insert(e);
                sh.failed.store(true, Ordering::Relaxed);
            }
            sh.op_done.store(true, Ordering::Release);
        } else {
            while !sh.op_done.load(Ordering::Acquire) {
                for p in sh.sample(&mut rng) {
                    sh.touch(p);
                }
            }
        }
        sh.barrier.wait(); // R1
        for p in sh.sample(&mut rng) {
            checks += 1;
            if let Err(e) = sh.check(cpu, p) {
                error.get_or_insert(format!("round {i}: {e}"));
                sh.failed.store(true, Ordering::Relaxed);
            }
        }
        sh.barrier.wait(); // R2
    }
    if cpu == 0 {
        // Reported through the summary line.
        sh.first.store(stream.huge_maps, Ordering::Relaxed);
    }
    match error {
        Some(e) => Err(e),
        None => Ok(checks),
    }
}

/// The random stream with every CPU checking, then a full check, the final
/// unmap and the frame counts.
pub fn stress(n: usize) -> Result<Summary, String> {
    let (window, _) = mm::window();
    check!(
        window.is_multiple_of(HUGE_PAGES * PAGE_SIZE),
        "the window start {window:#x} is not 2 MiB aligned"
    );
    let before = mm::stats();
    let sh = Arc::new(Shared {
        base: window,
        barrier: Barrier::new(n),
        state: (0..PAGES).map(|_| AtomicU8::new(0)).collect(),
        value: (0..PAGES).map(|_| AtomicU64::new(0)).collect(),
        first: AtomicUsize::new(0),
        count: AtomicUsize::new(0),
        op_done: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    println!("{OPS} random calls on {PAGES} pages at {window:#x} on {n} CPU(s) (seed {SEED:#x})");
    let theirs = sh.clone();
    let results = smp::on_each(move |cpu| run_cpu(&theirs, cpu));
    let mut checks = 0;
    for r in results {
        checks += r?;
    }
    let huge_maps = sh.first.load(Ordering::Relaxed);
    // Every CPU checks every page once more, then everything goes.
    let theirs = sh.clone();
    for r in smp::on_each(move |cpu| (0..PAGES).try_for_each(|p| theirs.check(cpu, p))) {
        r?;
    }
    mm::munmap(window, PAGES * PAGE_SIZE).context("final munmap")?;
    for p in 0..PAGES {
        sh.set(p, None, 0);
    }
    let theirs = sh.clone();
    for r in smp::on_each(move |cpu| (0..PAGES).try_for_each(|p| theirs.check(cpu, p))) {
        r?;
    }
    mm::stats()
        .back_to(&before)
        .map_err(|e| tessera::format!("after unmapping everything: {e}"))?;
    Ok(Summary {
        ops: OPS,
        checks: checks + 2 * n * PAGES,
        huge_maps,
    })
}
