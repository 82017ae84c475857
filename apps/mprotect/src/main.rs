//! mprotect on populated and never-touched lazy pages: the hardware refuses what
//! the new protection forbids, and allows it again after protecting back.
#![no_std]
#![no_main]

use tessera::mm::{self, MmapFlags, PAGE_SIZE, Prot};
use tessera::{AppResult, Context, check, check_eq, println};

tessera::main!(main);

const RW: Prot = Prot::READ.union(Prot::WRITE);

fn write(va: usize, v: u64) {
    // SAFETY: callers pass addresses the app mapped writable (checked by a probe
    // first where the protection changed).
    unsafe { (va as *mut u64).write_volatile(v) }
}

fn read(va: usize) -> u64 {
    // SAFETY: callers pass addresses the app mapped readable.
    unsafe { (va as *const u64).read_volatile() }
}

fn describe(va: usize) -> &'static str {
    match (mm::read_faults(va), mm::write_faults(va)) {
        (false, false) => "read ok, write ok",
        (false, true) => "read ok, write faults",
        (true, _) => "read faults, write faults",
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
        write(base, 0x1111);
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
    write(base + 3 * PAGE_SIZE, 0x2222);
    check_eq!(
        read(base + 3 * PAGE_SIZE),
        0x2222,
        "{kind}: write after R->RW"
    );
    if populate {
        check_eq!(read(base), 0x1111, "{kind}: data kept across mprotect");
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
        write(middle, 0x3333);
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
        check_eq!(read(middle), 0x3333, "{kind}: data kept across PROT_NONE");
    }
    let in_areas = mm::areas()
        .iter()
        .filter(|a| a.start.as_usize() >= base && a.end.as_usize() <= base + 3 * PAGE_SIZE)
        .count();
    check!(in_areas >= 1, "{kind}: the region has no area");
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
