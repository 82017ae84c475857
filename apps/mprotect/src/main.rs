//! mprotect on populated and never-touched lazy pages: the hardware refuses what
//! the new protection forbids, and allows it again after protecting back.
#![no_std]
#![no_main]

use tessera::mm::{self, MmapFlags, PAGE_SIZE, Prot};
use tessera::{AppResult, Context, Vec, check, check_eq, println};

tessera::main!(main);

const RW: Prot = Prot::READ.union(Prot::WRITE);

fn describe(va: usize) -> &'static str {
    match (mm::read_faults(va), mm::write_faults(va)) {
        (false, false) => "read ok, write ok",
        (false, true) => "read ok, write faults",
        (true, false) => "read faults, write ok",
        (true, true) => "read faults, write faults",
    }
}

fn rw_to_r_and_back(populate: bool) -> AppResult {
    let kind = if populate { "populated" } else { "lazy" };
    let flags = if populate {
        MmapFlags::POPULATE
    } else {
        MmapFlags::empty()
    };
    let base = mm::mmap(None, 4 * PAGE_SIZE, RW, flags).context("mmap")?;
    if populate {
        // SAFETY: page 0 of the read-write mapping just made, used by this app only.
        unsafe { mm::poke(base, 0x1111) };
    }
    mm::mprotect(base, 4 * PAGE_SIZE, Prot::READ).context("mprotect R")?;
    // Page 1 was never touched: on the lazy region it is not mapped yet.
    let state = describe(base + PAGE_SIZE);
    println!("{kind}: after RW->R: {state}");
    check_eq!(state, "read ok, write faults", "{kind}: RW->R");
    check_eq!(
        describe(base),
        "read ok, write faults",
        "{kind}: RW->R on page 0"
    );
    mm::mprotect(base, 4 * PAGE_SIZE, RW).context("mprotect RW")?;
    let state = describe(base + 2 * PAGE_SIZE);
    println!("{kind}: after R->RW: {state}");
    check_eq!(state, "read ok, write ok", "{kind}: R->RW");
    // SAFETY: page 3 of the mapping, read-write again (the probe just saw page 2
    // of the same mprotect accept a write).
    unsafe { mm::poke(base + 3 * PAGE_SIZE, 0x2222) };
    // SAFETY: the same page, readable.
    let got = unsafe { mm::peek(base + 3 * PAGE_SIZE) };
    check_eq!(got, 0x2222, "{kind}: write after R->RW");
    if populate {
        // SAFETY: page 0 of the same mapping, readable.
        let kept = unsafe { mm::peek(base) };
        check_eq!(kept, 0x1111, "{kind}: data kept across mprotect");
    }
    mm::munmap(base, 4 * PAGE_SIZE).context("munmap")
}

fn none_in_the_middle(populate: bool) -> AppResult {
    let kind = if populate { "populated" } else { "lazy" };
    let flags = if populate {
        MmapFlags::POPULATE
    } else {
        MmapFlags::empty()
    };
    let base = mm::mmap(None, 3 * PAGE_SIZE, RW, flags).context("mmap")?;
    let middle = base + PAGE_SIZE;
    if populate {
        // SAFETY: the middle page of the read-write mapping just made.
        unsafe { mm::poke(middle, 0x3333) };
    }
    mm::mprotect(middle, PAGE_SIZE, Prot::empty()).context("mprotect NONE")?;
    let state = describe(middle);
    println!("{kind}: PROT_NONE page: {state}");
    check_eq!(state, "read faults, write faults", "{kind}: PROT_NONE page");
    check_eq!(
        describe(base),
        "read ok, write ok",
        "{kind}: page before PROT_NONE"
    );
    check_eq!(
        describe(base + 2 * PAGE_SIZE),
        "read ok, write ok",
        "{kind}: page after PROT_NONE"
    );
    mm::mprotect(middle, PAGE_SIZE, RW).context("mprotect back")?;
    check_eq!(
        describe(middle),
        "read ok, write ok",
        "{kind}: PROT_NONE -> RW"
    );
    if populate {
        // SAFETY: the middle page, read-write again (probed just above).
        let kept = unsafe { mm::peek(middle) };
        check_eq!(kept, 0x3333, "{kind}: data kept across PROT_NONE");
    }
    // Back to RW, the three pages merge into one area again, covering them all.
    let end = base + 3 * PAGE_SIZE;
    let over: Vec<_> = mm::areas()
        .into_iter()
        .filter(|a| a.start.as_usize() < end && a.end.as_usize() > base)
        .map(|a| {
            (
                a.start.as_usize() <= base && a.end.as_usize() >= end,
                a.flags,
            )
        })
        .collect();
    check!(
        over.len() == 1 && over[0].0,
        "{kind}: the region is not one area after PROT_NONE -> RW: {over:?}"
    );
    mm::munmap(base, 3 * PAGE_SIZE).context("munmap")
}

fn main() -> AppResult {
    let before = mm::stats();
    for populate in [true, false] {
        rw_to_r_and_back(populate)?;
        none_in_the_middle(populate)?;
    }
    check_eq!(
        mm::stats().data_frames,
        before.data_frames,
        "anonymous frames after munmap"
    );
    Ok(())
}
