//! Overflows a kernel stack on purpose: the kernel must report the fault on the
//! guard page below it as a stack overflow and end QEMU with a failing status.
//! With one CPU it is the boot stack; with several, the last CPU's own kernel
//! stack (the run is a job on that CPU): every CPU's stack has its guard page
//! and its overflow is reported as such.
//!
//! First it checks that the guard page is unmapped (a probed read faults) while
//! the stack right above it is not, and that traps taken with the stack pointer
//! just above the guard page still return (a lazy page faulted in, a probe fixed
//! up: riscv64 and aarch64 save such traps on the trap stack). Then it recurses
//! with large frames until one of them reaches the guard page. Each frame stays below the guard page's size
//! (4 KiB), so the stack pointer cannot step over the page: riscv64 has no stack
//! probes to catch a larger frame.
#![no_std]
#![no_main]

use core::hint::black_box;

use tessera::{AppResult, boot, check, mm, println, smp};

tessera::main!(main);

/// Bytes of each recursion level's array: large, but below the guard page.
const FRAME: usize = 2048;

fn main() -> AppResult {
    let cpu = smp::cpu_count() - 1;
    if cpu == 0 {
        return overflow();
    }
    // The job overflows its CPU's stack: the kernel ends the machine, and
    // the wait below never returns unless the job does.
    let job = smp::run_on(cpu, overflow).map_err(|e| tessera::format!("run_on: {e:?}"))?;
    job.wait()
}

/// Checks the calling CPU's kernel stack and its guard page, then overflows it.
fn overflow() -> AppResult {
    let cpu = smp::current();
    let stack = boot::stacks()
        .into_iter()
        .find(|s| s.cpu == cpu && s.name != "trap stack")
        .ok_or("no kernel stack for this CPU in the kernel's stack list")?;
    let (guard, bottom, top) = (stack.guard, stack.bottom, stack.top);
    println!(
        "overflow: the {stack}'s guard page at {guard:#x}, stack [{bottom:#x}, {top:#x}) on {}",
        boot::board_name()
    );
    check!(
        mm::read_faults(guard) && mm::read_faults(bottom - 1),
        "reading the guard page [{guard:#x}, {bottom:#x}) does not fault"
    );
    check!(
        !mm::read_faults(bottom),
        "the bottom of the {stack} {bottom:#x} is not readable"
    );
    println!("overflow: reading the guard page faults (probe at {guard:#x})");
    let sp = current_sp();
    check!(
        (bottom..top).contains(&sp),
        "the app does not run on the {stack} (sp {sp:#x})"
    );
    near_guard(bottom)?;
    println!(
        "overflow: recursing with {FRAME}-byte frames from sp {sp:#x}, {} KiB above the guard",
        (sp - bottom) >> 10
    );
    // Twice the levels the whole stack could hold: the guard page comes first.
    let limit = 2 * (top - bottom) / FRAME;
    let levels = recurse(0, limit);
    Err(tessera::format!(
        "the recursion returned after {levels} levels without reaching the guard page"
    ))
}

/// Descends to less than `NEAR` bytes above the guard page, then faults in a lazy
/// page and probes an unmapped one there: both traps must return.
fn near_guard(bottom: usize) -> AppResult {
    let rw = mm::Prot::READ | mm::Prot::WRITE;
    let page = mm::mmap(None, mm::PAGE_SIZE, rw, mm::MmapFlags::empty())
        .map_err(|e| tessera::format!("mmap: {e:?}"))?;
    let hole = mm::mmap(None, mm::PAGE_SIZE, rw, mm::MmapFlags::empty())
        .map_err(|e| tessera::format!("mmap: {e:?}"))?;
    mm::munmap(hole, mm::PAGE_SIZE).map_err(|e| tessera::format!("munmap: {e:?}"))?;
    let (sp, value, hole_faults) = descend(bottom, page, hole);
    check!(
        value == 0x5a,
        "the lazy page at {page:#x} read back {value:#x} after a fault taken near the guard page"
    );
    check!(
        hole_faults,
        "probing the unmapped {hole:#x} near the guard page did not report a fault"
    );
    println!(
        "overflow: traps near the guard page return (lazy page in, probe fixed up at sp {} bytes above the guard page)",
        sp - bottom
    );
    mm::munmap(page, mm::PAGE_SIZE).map_err(|e| tessera::format!("munmap: {e:?}"))
}

/// How close to the guard page `descend` goes.
const NEAR: usize = 3 * 1024;

/// Recurses with small frames until the stack pointer is less than [`NEAR`] bytes
/// above `bottom`, then writes and reads the lazy `page` and probes `hole`.
#[inline(never)]
fn descend(bottom: usize, page: usize, hole: usize) -> (usize, u8, bool) {
    let sp = current_sp();
    if sp - bottom < NEAR {
        let p = page as *mut u8;
        // SAFETY: `page` is a mapped (lazy) read-write page of the app window that
        // nothing else uses; the first access faults it in.
        let value = unsafe {
            p.write_volatile(0x5a);
            p.read_volatile()
        };
        return (sp, value, mm::read_faults(hole));
    }
    let frame = black_box([0u8; 512]);
    let (sp, value, faults) = black_box(descend)(bottom, page, hole);
    (sp, value.wrapping_add(frame[sp % 512]), faults)
}

/// An address in the current stack frame.
#[inline(never)]
fn current_sp() -> usize {
    let marker = 0u8;
    black_box(&raw const marker) as usize
}

/// Recurses down to `limit` levels, each filling a `FRAME`-byte array on the
/// stack, and returns the depth reached (only if the stack never overflowed).
/// `black_box` keeps the array in memory and the call from becoming a loop.
#[inline(never)]
fn recurse(depth: usize, limit: usize) -> usize {
    if depth >= limit {
        return depth;
    }
    let frame = black_box([depth as u8; FRAME]);
    let deeper = black_box(recurse)(black_box(depth + 1), limit);
    deeper.max(frame[depth % FRAME] as usize)
}
