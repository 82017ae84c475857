//! Lazy and populated anonymous mappings: fault counts, frame counts, contents,
//! and no leaked frames after munmap.
#![no_std]
#![no_main]

use tessera::mm::{self, MmapFlags, PAGE_SIZE, Prot};
use tessera::{AppResult, Context, check_eq, println};

tessera::main!(main);

const PAGES: usize = 64;

fn pattern(page: usize) -> u64 {
    0x5eed_0000_0000_0000 | (page as u64) << 8 | 0xa5
}

fn run(populate: bool) -> AppResult {
    let kind = if populate { "populated" } else { "lazy" };
    let flags = if populate {
        MmapFlags::POPULATE
    } else {
        MmapFlags::empty()
    };
    let before = mm::stats();
    let base =
        mm::mmap(None, PAGES * PAGE_SIZE, Prot::READ | Prot::WRITE, flags).context("mmap")?;
    let mapped = mm::stats();
    println!("{kind}: mapped {PAGES} pages at {base:#x}");
    for page in (0..PAGES).step_by(2) {
        // SAFETY: `page` is one of the PAGES pages just mapped read-write, which
        // only this loop and the reads below use.
        unsafe { mm::poke(base + page * PAGE_SIZE, pattern(page)) };
    }
    let touched = mm::stats();
    let faults = touched.faults_handled - before.faults_handled;
    let frames = touched.data_frames - before.data_frames;
    println!(
        "{kind}: wrote {} pages: {faults} faults, {frames} frames",
        PAGES / 2
    );
    let (want_faults, want_frames) = if populate {
        (0, PAGES)
    } else {
        (PAGES as u64 / 2, PAGES / 2)
    };
    check_eq!(faults, want_faults, "{kind}: faults handled");
    check_eq!(frames, want_frames, "{kind}: frames in use for the region");
    check_eq!(
        mapped.data_frames - before.data_frames,
        if populate { PAGES } else { 0 },
        "{kind}: frames after mmap"
    );
    for page in 0..PAGES {
        let want = if page % 2 == 0 { pattern(page) } else { 0 };
        // SAFETY: still inside the read-write mapping made above.
        let got = unsafe { mm::peek(base + page * PAGE_SIZE) };
        check_eq!(got, want, "{kind}: page {page} reads back");
    }
    println!("{kind}: read back {PAGES} pages");
    mm::munmap(base, PAGES * PAGE_SIZE).context("munmap")?;
    let after = mm::stats();
    // Page tables the region needed may stay for later mappings; they are not leaks.
    let kept_tables = after.page_table_frames - before.page_table_frames;
    let leaked = after.frames_used_since(&before) - kept_tables as isize;
    println!("{kind}: unmapped; leaked frames: {leaked} (page-table frames kept: {kept_tables})");
    check_eq!(leaked, 0, "{kind}: frames in use after munmap");
    check_eq!(
        after.data_frames,
        before.data_frames,
        "{kind}: anonymous frames after munmap"
    );
    check_eq!(
        mm::translate(base).is_err(),
        true,
        "{kind}: translate after munmap fails"
    );
    Ok(())
}

fn main() -> AppResult {
    run(false)?;
    run(true)
}
