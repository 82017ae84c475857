//! A seeded random run of mmap/munmap/mprotect, writes and probes on the real
//! page table, checked page by page against a model after every step.
//!
//! What the host tests cannot show: a TLB. QEMU keeps a translation cache per
//! CPU just as hardware does, so a page that was accessed (its translation
//! cached), then unmapped or made read-only without a flush, would still be
//! readable or writable here. Before every munmap and mprotect the run reads a
//! page of the range, so that its translation is cached; right after, it probes
//! that page. Some mappings are 2 MiB pages, which later calls split. At the
//! end everything is unmapped and the data and page-table frames must be back
//! to where they were.
#![no_std]
#![no_main]

use tessera::mm::{self, MmapFlags, PAGE_SIZE, Prot};
use tessera::rng::Rng;
use tessera::{AppResult, AxError, Context, Vec, check, check_eq, println};

tessera::main!(main);

/// Pages of the stretch of the window the run works in: two 2 MiB blocks.
const PAGES: usize = 1024;
/// Pages of a 2 MiB page.
const HUGE_PAGES: usize = 512;
/// Random operations.
const OPS: usize = 3000;
const SEED: u64 = 0x5eed_7e55_e7a0_0001;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Page {
    Unmapped,
    /// Mapped with `prot`; `value` is the `u64` at the start of the page.
    Mapped {
        prot: Prot,
        value: u64,
    },
}

struct Run {
    base: usize,
    model: Vec<Page>,
    rng: Rng,
    /// Probes that saw a page the model says is gone or read-only (stale TLB
    /// entries or wrong flags): must stay 0.
    checks: usize,
    /// 2 MiB mappings made.
    huge_maps: usize,
}

const R: Prot = Prot::READ;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const NONE: Prot = Prot::empty();

impl Run {
    fn addr(&self, p: usize) -> usize {
        self.base + p * PAGE_SIZE
    }

    fn random_prot(&mut self) -> Prot {
        [RW, RW, R, NONE][self.rng.below(4)]
    }

    /// A random range `[p, p + n)` of the stretch.
    fn random_range(&mut self) -> (usize, usize) {
        let p = self.rng.below(PAGES);
        let n = 1 + self.rng.below(16.min(PAGES - p));
        (p, n)
    }

    /// Reads page `p` if the model says it is readable, so that its translation
    /// is in the TLB before the page is changed.
    fn prime(&mut self, p: usize) -> AppResult {
        if let Page::Mapped { prot, .. } = self.model[p]
            && prot.contains(Prot::READ)
        {
            self.check_page(p)?;
        }
        Ok(())
    }

    /// Checks page `p` against the model: what faults, and the value it holds.
    fn check_page(&mut self, p: usize) -> AppResult {
        self.checks += 1;
        let va = self.addr(p);
        let (readable, writable) = (!mm::read_faults(va), !mm::write_faults(va));
        match self.model[p] {
            Page::Unmapped => {
                check!(
                    !readable && !writable,
                    "page {p} ({va:#x}) is unmapped but accessible: r {readable} w {writable}"
                );
            }
            Page::Mapped { prot, value } => {
                check_eq!(
                    (readable, writable),
                    (prot.contains(Prot::READ), prot.contains(Prot::WRITE)),
                    "page {p} ({va:#x}) with {prot:?}: (readable, writable)"
                );
                if readable {
                    // SAFETY: the page is mapped readable by this app (checked by
                    // the probe just above) and nothing else refers to it.
                    let got = unsafe { mm::peek(va) };
                    check_eq!(got, value, "page {p} ({va:#x}): value");
                }
            }
        }
        Ok(())
    }

    fn step(&mut self) -> AppResult {
        let (p, n) = self.random_range();
        match self.rng.below(11) {
            // A 2 MiB mapping over one of the two blocks (populated: 2 MiB pages).
            10 => {
                let block = self.rng.below(PAGES / HUGE_PAGES) * HUGE_PAGES;
                let prot = self.random_prot();
                let mut flags = MmapFlags::FIXED | MmapFlags::HUGE_2M;
                if self.rng.below(2) == 0 {
                    flags |= MmapFlags::POPULATE;
                }
                self.prime(block + p % HUGE_PAGES)?;
                let at = self.addr(block);
                mm::mmap(Some(at), HUGE_PAGES * PAGE_SIZE, prot, flags).context("mmap 2M")?;
                self.huge_maps += 1;
                for q in block..block + HUGE_PAGES {
                    self.model[q] = Page::Mapped { prot, value: 0 };
                }
                self.check_page(block + p % HUGE_PAGES)?;
            }
            // mmap FIXED over whatever is there, lazy or populated.
            0 | 1 => {
                let prot = self.random_prot();
                let flags = if self.rng.below(2) == 0 {
                    MmapFlags::FIXED
                } else {
                    MmapFlags::FIXED | MmapFlags::POPULATE
                };
                self.prime(p)?;
                mm::mmap(Some(self.addr(p)), n * PAGE_SIZE, prot, flags).context("mmap")?;
                for q in p..p + n {
                    self.model[q] = Page::Mapped { prot, value: 0 };
                }
                self.check_page(p)?;
            }
            2 | 3 => {
                self.prime(p)?;
                mm::munmap(self.addr(p), n * PAGE_SIZE).context("munmap")?;
                self.model[p..p + n].fill(Page::Unmapped);
                self.check_page(p)?;
            }
            4 | 5 => {
                let prot = self.random_prot();
                self.prime(p)?;
                let r = mm::mprotect(self.addr(p), n * PAGE_SIZE, prot);
                let covered = self.model[p..p + n].iter().all(|q| *q != Page::Unmapped);
                if covered {
                    r.context("mprotect")?;
                    for q in &mut self.model[p..p + n] {
                        if let Page::Mapped { prot: old, .. } = q {
                            *old = prot;
                        }
                    }
                } else {
                    check_eq!(
                        r,
                        Err(AxError::NoMemory),
                        "mprotect over a hole at page {p}"
                    );
                }
                self.check_page(p)?;
            }
            // A write where the model allows one.
            6 | 7 => {
                if let Page::Mapped { prot, .. } = self.model[p]
                    && prot.contains(Prot::WRITE)
                {
                    let value = self.rng.next_u64() | 1;
                    // SAFETY: the model says the page is mapped writable by this
                    // app, and nothing else refers to it.
                    unsafe { mm::poke(self.addr(p), value) };
                    self.model[p] = Page::Mapped { prot, value };
                }
            }
            _ => {
                for q in p..p + n {
                    self.check_page(q)?;
                }
            }
        }
        Ok(())
    }
}

fn main() -> AppResult {
    let (window, _) = mm::window();
    let before = mm::stats();
    let mut run = Run {
        base: window,
        model: (0..PAGES).map(|_| Page::Unmapped).collect(),
        rng: Rng::new(SEED),
        checks: 0,
        huge_maps: 0,
    };
    check!(
        window.is_multiple_of(HUGE_PAGES * PAGE_SIZE),
        "the window start {window:#x} is not 2 MiB aligned"
    );
    println!("{OPS} random operations on {PAGES} pages at {window:#x} (seed {SEED:#x})");
    for i in 0..OPS {
        run.step().map_err(|e| tessera::format!("step {i}: {e}"))?;
    }
    for p in 0..PAGES {
        run.check_page(p)?;
    }
    let mid = mm::stats();
    println!(
        "{} page checks against the model passed; {} 2 MiB mappings; faults handled {}, spurious {}",
        run.checks,
        run.huge_maps,
        mid.faults_handled - before.faults_handled,
        mid.spurious_faults - before.spurious_faults
    );
    mm::munmap(window, PAGES * PAGE_SIZE).context("final munmap")?;
    for p in 0..PAGES {
        run.model[p] = Page::Unmapped;
        run.check_page(p)?;
    }
    mm::stats()
        .back_to(&before)
        .map_err(|e| tessera::format!("after unmapping everything: {e}"))?;
    println!(
        "all unmapped: data frames, page-table frames and frames in use back to where they were"
    );
    Ok(())
}
