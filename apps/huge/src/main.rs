//! Anonymous huge pages: the same memory touched with 4K pages and with 2M
//! pages (faults handled and page-table frames for each), the 4K fallback when
//! no aligned 2M run of frames is free, a partial `mprotect`/`munmap` that
//! splits a huge page while the rest keeps its frames and data, and an
//! `mprotect` round trip after which the split page is one huge page again.
//! Every frame comes back at the end.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

use tessera::mm::{self, LeafSize, MmapFlags, PAGE_SIZE, Prot};
use tessera::{AppResult, Context, check, check_eq, println};

tessera::main!(main);

const RW: Prot = Prot::READ.union(Prot::WRITE);
const M2: usize = 0x20_0000;
const MIB: usize = 1 << 20;

/// Maps `len` bytes lazily with `flags`, writes every 4K page, and reports the
/// faults handled and the page-table frames the region needed.
fn touch(name: &str, len: usize, flags: MmapFlags) -> Result<(u64, usize), String> {
    let before = mm::stats();
    let base = mm::mmap(None, len, RW, flags).context("mmap")?;
    for off in (0..len).step_by(PAGE_SIZE) {
        // SAFETY: inside the read-write mapping just made (the store faults the
        // page in).
        unsafe { mm::poke(base + off, off as u64) };
    }
    let during = mm::stats();
    for off in (0..len).step_by(64 * PAGE_SIZE) {
        // SAFETY: the same mapping, readable.
        let data = unsafe { mm::peek(base + off) };
        check_eq!(data, off as u64, "{name}: data at +{off:#x}");
    }
    let faults = during.faults_handled - before.faults_handled;
    let tables = during.page_table_frames - before.page_table_frames;
    println!("{name}: {faults} faults, {tables} page-table frames");
    mm::munmap(base, len).context("munmap")?;
    Ok((faults, tables))
}

/// Fills memory with populated 4K mappings until none fits, frees a few
/// pages at the end (fewer than a 2M run), and touches a lazy huge area.
fn fallback() -> AppResult {
    let huge = mm::mmap(None, M2, RW, MmapFlags::HUGE_2M).context("mmap huge")?;
    let mut fill: Vec<(usize, usize)> = Vec::new();
    fill.try_reserve(4096)
        .map_err(|_| String::from("reserve"))?;
    for chunk in [4 * MIB, 256 * 1024, PAGE_SIZE] {
        while fill.len() < fill.capacity() {
            match mm::mmap(None, chunk, RW, MmapFlags::POPULATE) {
                Ok(va) => fill.push((va, chunk)),
                Err(_) => break,
            }
        }
    }
    let spare = 16 * PAGE_SIZE;
    let filled: usize = fill.iter().map(|&(_, len)| len).sum();
    check!(filled >= spare, "too little memory filled");
    // Free the last 16 pages mapped: 16 frames, no aligned 2M run.
    let mut freed = 0;
    for &(va, len) in fill.iter().rev() {
        let n = (spare - freed).min(len);
        mm::munmap(va + len - n, n).context("munmap spare")?;
        freed += n;
        if freed == spare {
            break;
        }
    }
    let before = mm::stats();
    // SAFETY: the lazy read-write huge area mapped at the start; the store faults
    // its first page in.
    unsafe { mm::poke(huge, 42) };
    let after = mm::stats();
    let t = mm::translate(huge).context("translate")?;
    let fallbacks = after.huge_fallbacks - before.huge_fallbacks;
    println!(
        "fallback: memory full but {} pages: the fault mapped a {} page, fallbacks counted: {fallbacks}",
        spare / PAGE_SIZE,
        if t.page_size == LeafSize::Size4K {
            "4K"
        } else {
            "huge"
        }
    );
    check_eq!(t.page_size, LeafSize::Size4K, "fallback page size");
    check_eq!(fallbacks, 1, "fallbacks counted");
    check_eq!(after.huge_faults, before.huge_faults, "huge faults");
    for &(va, len) in &fill {
        mm::munmap(va, len).context("munmap fill")?;
    }
    mm::munmap(huge, M2).context("munmap huge")?;
    // With memory back, the same area gets a huge page again.
    let huge = mm::mmap(None, M2, RW, MmapFlags::HUGE_2M).context("mmap huge")?;
    // SAFETY: inside the lazy read-write huge area just mapped.
    unsafe { mm::poke(huge + PAGE_SIZE, 7) };
    let t = mm::translate(huge).context("translate")?;
    println!(
        "after freeing: the fault mapped a {} page",
        if t.page_size == LeafSize::Size2M {
            "2M"
        } else {
            "smaller"
        }
    );
    check_eq!(t.page_size, LeafSize::Size2M, "page size with memory back");
    mm::munmap(huge, M2).context("munmap huge")
}

/// An mprotect round trip on one 4K page of a populated huge page: split, then
/// one 2M page again, with the same frames, data and page-table frames.
fn collapse() -> AppResult {
    let base = mm::mmap(None, M2, RW, MmapFlags::HUGE_2M | MmapFlags::POPULATE).context("mmap")?;
    for off in (0..M2).step_by(PAGE_SIZE) {
        // SAFETY: inside the populated read-write huge page just mapped.
        unsafe { mm::poke(base + off, !(off as u64)) };
    }
    let before = mm::stats();
    let pa = mm::translate(base).context("translate")?.paddr.as_usize();
    let page = base + 77 * PAGE_SIZE;
    mm::mprotect(page, PAGE_SIZE, Prot::READ).context("mprotect R")?;
    check_eq!(
        mm::translate(base).context("translate")?.page_size,
        LeafSize::Size4K,
        "page size after the split"
    );
    check_eq!(
        mm::stats().page_table_frames,
        before.page_table_frames + 1,
        "page-table frames after the split"
    );
    mm::mprotect(page, PAGE_SIZE, RW).context("mprotect RW")?;
    let after = mm::stats();
    for off in (0..M2).step_by(PAGE_SIZE) {
        let t = mm::translate(base + off).context("translate")?;
        check_eq!(
            (t.paddr.as_usize(), t.page_size),
            (pa + off, LeafSize::Size2M),
            "+{off:#x} after the round trip"
        );
        // SAFETY: the page is mapped read-write again.
        let data = unsafe { mm::peek(base + off) };
        check_eq!(data, !(off as u64), "data at +{off:#x}");
    }
    check!(!mm::write_faults(page), "the page is writable again");
    check_eq!(
        after.page_table_frames,
        before.page_table_frames,
        "page-table frames"
    );
    check_eq!(
        after.huge_collapses,
        before.huge_collapses + 1,
        "collapses counted"
    );
    println!(
        "collapse: mprotect R and back to RW of one 4K page: one 2M page again, same frames and data, page-table frames back to {}",
        after.page_table_frames
    );
    mm::munmap(base, M2).context("munmap")
}

/// A partial mprotect and munmap of a populated huge page.
fn splits() -> AppResult {
    let base = mm::mmap(None, M2, RW, MmapFlags::HUGE_2M | MmapFlags::POPULATE).context("mmap")?;
    for off in (0..M2).step_by(PAGE_SIZE) {
        // SAFETY: inside the populated read-write huge page just mapped.
        unsafe { mm::poke(base + off, off as u64) };
    }
    let pa = mm::translate(base).context("translate")?.paddr.as_usize();
    let data = mm::stats().data_frames;
    let mid = base + M2 / 2;
    mm::mprotect(mid, PAGE_SIZE, Prot::READ).context("mprotect")?;
    check!(
        mm::write_faults(mid) && !mm::read_faults(mid),
        "read-only page"
    );
    mm::munmap(mid + PAGE_SIZE, PAGE_SIZE).context("munmap")?;
    check!(mm::read_faults(mid + PAGE_SIZE), "unmapped page");
    for off in (0..M2).step_by(PAGE_SIZE) {
        if off == M2 / 2 + PAGE_SIZE {
            continue;
        }
        let t = mm::translate(base + off).context("translate")?;
        check_eq!(
            t.paddr.as_usize(),
            pa + off,
            "physical address of +{off:#x}"
        );
        check_eq!(t.page_size, LeafSize::Size4K, "page size of +{off:#x}");
        // SAFETY: every page but the unmapped one (skipped) is still readable.
        let data = unsafe { mm::peek(base + off) };
        check_eq!(data, off as u64, "data at +{off:#x}");
    }
    let freed = data - mm::stats().data_frames;
    println!(
        "split: mprotect + munmap of 4K pages in a 2M page: 4K pages now, 511 keep their frames and data, {freed} frame freed"
    );
    check_eq!(freed, 1, "frames freed by the partial munmap");
    mm::munmap(base, M2).context("munmap")
}

fn main() -> AppResult {
    let start = mm::stats();
    let free = (start.frames_total - start.frames_used) * PAGE_SIZE;
    let len = if free >= 72 * MIB { 64 * MIB } else { 32 * MIB };
    println!("touching {} MiB ({} MiB free)", len / MIB, free / MIB);
    let (f4, t4) = touch("4K", len, MmapFlags::empty())?;
    let (f2, t2) = touch("2M", len, MmapFlags::HUGE_2M)?;
    check_eq!(f4 as usize, len / PAGE_SIZE, "4K faults");
    check_eq!(f2 as usize, len / M2, "2M faults");
    check!(t2 < t4, "2M pages need fewer page-table frames");
    check_eq!(
        mm::stats().huge_fallbacks,
        start.huge_fallbacks,
        "fallbacks"
    );
    fallback()?;
    splits()?;
    collapse()?;
    let end = mm::stats();
    let leaked = end.frames_used_since(&start);
    println!("leaked frames: {leaked}");
    check_eq!(leaked, 0, "frames in use at the end");
    check_eq!(end.data_frames, start.data_frames, "anonymous frames");
    Ok(())
}
