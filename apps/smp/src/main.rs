//! Several CPUs on one address space: jobs and barriers, concurrent faults,
//! and a seeded random stream of mmap/munmap/mprotect on CPU 0 while every
//! CPU keeps touching the same pages, each CPU checking its own view against
//! a model after every call.
//!
//! What it catches: QEMU keeps a software TLB per vCPU, so a translation that
//! CPU 0 removed or weakened but that another CPU still caches (a missing or
//! too early remote flush) shows up there as a page that is still readable or
//! writable, or as data of a frame that was freed and handed to a new mapping
//! (new mappings get a fresh pattern at once, so a stale translation reads
//! the wrong value).
//!
//! Rounds: every CPU touches a sample of pages (loads and stores through
//! probes, which cache translations) and keeps doing so while CPU 0 makes one
//! call; when the call returned, all meet at a barrier and each checks its
//! sample: pages the model says are unmapped or `PROT_NONE` must fault,
//! read-only pages must refuse stores, and the first word of every readable
//! page must be the model's value. The checkers' stores go to the last byte
//! of a page, loaded and stored back, so they never change a value the model
//! tracks.
#![no_std]
#![no_main]

extern crate alloc;

mod model;
mod phases;

use tessera::{AppResult, println, smp};

tessera::main!(main);

fn main() -> AppResult {
    let n = smp::cpu_count();
    println!("smp: {n} CPU(s) online");
    phases::jobs_and_barriers(n)?;
    println!("jobs and barriers on every CPU: ok");
    phases::concurrent_faults(n)?;
    println!("concurrent faults (disjoint and same pages, 4K and 2M): frames exact, none leaked");
    let s = model::stress(n)?;
    println!(
        "random operations with every CPU checking: {} ops, {} checks, {} huge maps",
        s.ops, s.checks, s.huge_maps
    );
    let t = smp::tlb_stats();
    println!(
        "tlb: {} shootdowns, {} IPIs, {} answered, {} full flushes on return from idle",
        t.shootdowns, t.ipis, t.answered, t.flushes_on_enter
    );
    Ok(())
}
