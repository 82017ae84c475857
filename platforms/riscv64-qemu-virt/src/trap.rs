//! The trap vector.
//!
//! All traps arrive at `trap_vector` (stvec, direct mode). The kernel has one
//! privilege level, so the frame goes on a kernel stack; which one is decided
//! first, before anything is stored, with `sscratch` holding `t0` meanwhile. Each
//! hart has its own kernel stack and trap stack, each above a guard page; the
//! entry finds the calling hart's bounds in its `PerCpu` block, whose address is
//! in `tp` ([`crate::smp`]; CPU 0's are the linker script's `_sguard`,
//! `[_strap_stack, _etrap_stack)`, `_strap_guard`):
//! - normally the current stack (the interrupted `sp`);
//! - the hart's **trap stack** when `sp` lies in its kernel stack's guard page or
//!   in the lowest 4 KiB of that stack (`sp - stack_guard < 8 KiB`): a stack
//!   overflow faults with `sp` there, and storing the frame on that `sp` would
//!   fault again, forever. The frame then starts at the top of the trap stack;
//! - the top of the trap stack as well when `sp` is at the trap stack's own guard
//!   (`sp - trap_guard < 8 KiB`): the trap stack itself ran out, which
//!   `handle_trap` reports without returning (the frames it overwrote are gone).
//!
//! The entry saves the general registers, the interrupted `sp`, `sepc` and
//! `sstatus` into a [`TrapFrame`] and calls `handle_trap`; on return it restores
//! them, `sp` last, and `sret`s, so a trap that used the trap stack (a lazy page
//! faulted in with `sp` near the bottom of the boot stack) returns as usual.
//! - page faults (scause 12 fetch, 13 load, 15 store/AMO; address in stval) go to
//!   `hal::kernel::page_fault`; a denied fault at a probe instruction is fixed up
//!   ([`crate::probe`]); any other denied fault goes to
//!   `hal::kernel::fatal_page_fault`, which reports it and ends the machine (a
//!   fault in a guard page as `stack overflow: the boot stack's guard page ...`);
//! - the supervisor software interrupt (scause = interrupt | 1, an IPI; the only
//!   interrupt enabled) clears `sip.SSIP` and calls `hal::kernel::ipi`
//!   (`crate::smp::answer_ipi`), with interrupts off;
//! - every other exception or interrupt is reported here and ends the machine
//!   with a failing status.
//!
//! The target has no stack probes: a single frame larger than the 4 KiB guard page
//! can step over it into `.bss` (the trap stack's neighbour) without a fault.
//!
//! FP registers are not saved: trap-handling code (the page-fault path and the
//! kernel's IPI answer, which may interrupt any code) does not use floating point.

use core::arch::global_asm;
use core::fmt::Write;
use core::sync::atomic::Ordering;

use hal::{Access, Board, ConsoleWriter, ExitStatus, FaultOutcome, PageFault, RawCause};

use crate::RiscvVirt;

/// Registers saved on trap entry.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0..x31; the slot of x2 (`sp`) holds the stack pointer before the trap,
    /// the slot of x0 is unused.
    pub regs: [usize; 32],
    /// Where to resume.
    pub sepc: usize,
    /// Status at the trap.
    pub sstatus: usize,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE.is_multiple_of(16));

global_asm!(
    ".section .text",
    ".balign 4",
    ".global trap_vector",
    "trap_vector:",
    "   csrw    sscratch, t0",
    // tp = this hart's `PerCpu` (crate::smp). sp in the kernel stack's guard
    // page or the 4 KiB above it: use the trap stack.
    "   ld      t0, {stack_guard}(tp)",
    "   sub     t0, sp, t0",
    "   srli    t0, t0, 13",
    "   beqz    t0, 1f",
    // The same at the trap stack's own guard page: start it over (handle_trap
    // then does not return).
    "   ld      t0, {trap_guard}(tp)",
    "   sub     t0, sp, t0",
    "   srli    t0, t0, 13",
    "   beqz    t0, 1f",
    // The usual case: the frame goes on the current stack.
    "   mv      t0, sp",
    "   addi    sp, sp, -{size}",
    "   j       2f",
    "1:",
    "   mv      t0, sp",
    "   ld      sp, {trap_top}(tp)",
    "   addi    sp, sp, -{size}",
    "2:",
    // t0 = the interrupted sp, sp = the frame; the interrupted t0 is in sscratch.
    "   sd      t0, 2*8(sp)",
    "   csrr    t0, sscratch",
    "   sd      x1, 1*8(sp)",
    "   sd      x3, 3*8(sp)",
    "   sd      x4, 4*8(sp)",
    "   sd      x5, 5*8(sp)",
    "   sd      x6, 6*8(sp)",
    "   sd      x7, 7*8(sp)",
    "   sd      x8, 8*8(sp)",
    "   sd      x9, 9*8(sp)",
    "   sd      x10, 10*8(sp)",
    "   sd      x11, 11*8(sp)",
    "   sd      x12, 12*8(sp)",
    "   sd      x13, 13*8(sp)",
    "   sd      x14, 14*8(sp)",
    "   sd      x15, 15*8(sp)",
    "   sd      x16, 16*8(sp)",
    "   sd      x17, 17*8(sp)",
    "   sd      x18, 18*8(sp)",
    "   sd      x19, 19*8(sp)",
    "   sd      x20, 20*8(sp)",
    "   sd      x21, 21*8(sp)",
    "   sd      x22, 22*8(sp)",
    "   sd      x23, 23*8(sp)",
    "   sd      x24, 24*8(sp)",
    "   sd      x25, 25*8(sp)",
    "   sd      x26, 26*8(sp)",
    "   sd      x27, 27*8(sp)",
    "   sd      x28, 28*8(sp)",
    "   sd      x29, 29*8(sp)",
    "   sd      x30, 30*8(sp)",
    "   sd      x31, 31*8(sp)",
    "   csrr    t0, sepc",
    "   sd      t0, 32*8(sp)",
    "   csrr    t0, sstatus",
    "   sd      t0, 33*8(sp)",
    "   mv      a0, sp",
    "   call    {handler}",
    "   ld      t0, 32*8(sp)",
    "   csrw    sepc, t0",
    "   ld      t0, 33*8(sp)",
    "   csrw    sstatus, t0",
    "   ld      x1, 1*8(sp)",
    "   ld      x3, 3*8(sp)",
    "   ld      x4, 4*8(sp)",
    "   ld      x5, 5*8(sp)",
    "   ld      x6, 6*8(sp)",
    "   ld      x7, 7*8(sp)",
    "   ld      x8, 8*8(sp)",
    "   ld      x9, 9*8(sp)",
    "   ld      x10, 10*8(sp)",
    "   ld      x11, 11*8(sp)",
    "   ld      x12, 12*8(sp)",
    "   ld      x13, 13*8(sp)",
    "   ld      x14, 14*8(sp)",
    "   ld      x15, 15*8(sp)",
    "   ld      x16, 16*8(sp)",
    "   ld      x17, 17*8(sp)",
    "   ld      x18, 18*8(sp)",
    "   ld      x19, 19*8(sp)",
    "   ld      x20, 20*8(sp)",
    "   ld      x21, 21*8(sp)",
    "   ld      x22, 22*8(sp)",
    "   ld      x23, 23*8(sp)",
    "   ld      x24, 24*8(sp)",
    "   ld      x25, 25*8(sp)",
    "   ld      x26, 26*8(sp)",
    "   ld      x27, 27*8(sp)",
    "   ld      x28, 28*8(sp)",
    "   ld      x29, 29*8(sp)",
    "   ld      x30, 30*8(sp)",
    "   ld      x31, 31*8(sp)",
    "   ld      sp, 2*8(sp)",
    "   sret",
    size = const FRAME_SIZE,
    stack_guard = const crate::smp::OFF_STACK_GUARD,
    trap_guard = const crate::smp::OFF_TRAP_GUARD,
    trap_top = const crate::smp::OFF_TRAP_TOP,
    handler = sym handle_trap,
);

unsafe extern "C" {
    fn trap_vector();
}

/// Points stvec at the trap vector (direct mode).
pub fn init() {
    // SAFETY: `trap_vector` is 4-byte aligned (direct mode needs the low two bits
    // clear) and handles every trap as described in the module docs.
    unsafe {
        riscv::register::stvec::write(riscv::register::stvec::Stvec::new(
            trap_vector as *const () as usize,
            riscv::register::stvec::TrapMode::Direct,
        ))
    };
}

const SCAUSE_INTERRUPT: usize = 1 << 63;
/// Interrupt code of the supervisor software interrupt (an IPI).
const SSOFT: usize = 1;

fn exception_name(code: usize) -> &'static str {
    match code {
        0 => "instruction address misaligned",
        1 => "instruction access fault",
        2 => "illegal instruction",
        3 => "breakpoint",
        4 => "load address misaligned",
        5 => "load access fault",
        6 => "store/AMO address misaligned",
        7 => "store/AMO access fault",
        8 => "environment call from U-mode",
        9 => "environment call from S-mode",
        12 => "instruction page fault",
        13 => "load page fault",
        15 => "store/AMO page fault",
        _ => "reserved exception",
    }
}

/// Whether the trap entry restarted the trap stack because the interrupted `sp`
/// was at the calling hart's trap stack's guard page (see the module docs).
fn trap_stack_exhausted(sp: usize) -> bool {
    let guard = crate::smp::current().trap_guard.load(Ordering::Relaxed);
    sp.wrapping_sub(guard) < 8 * 1024
}

extern "C" fn handle_trap(tf: &mut TrapFrame) {
    let scause = riscv::register::scause::read().bits();
    let stval = riscv::register::stval::read();
    if scause == SCAUSE_INTERRUPT | SSOFT {
        // An IPI (the only interrupt enabled): answered with interrupts off.
        crate::smp::answer_ipi();
        return;
    }
    let exhausted = trap_stack_exhausted(tf.regs[2]);
    let access = match scause {
        12 => Some(Access::Execute),
        13 => Some(Access::Read),
        15 => Some(Access::Write),
        _ => None,
    };
    let Some(access) = access else {
        fatal_trap(tf, scause, stval, exhausted);
    };
    let fault = PageFault {
        addr: stval,
        access,
        pc: tf.sepc,
        cause: RawCause {
            register: "scause",
            value: scause,
            detail: exception_name(scause),
        },
    };
    if exhausted {
        // The frames of the trap this one interrupted were overwritten: never
        // return. A fault in the guard page is reported as a stack overflow.
        hal::kernel::fatal_page_fault(&fault);
    }
    match hal::kernel::page_fault(&fault) {
        FaultOutcome::Resolved => {}
        FaultOutcome::Denied => match hal::probe::fixup(tf.sepc) {
            Some(resume) => {
                tf.regs[10] = 1; // a0: "faulted"
                tf.sepc = resume;
            }
            None => hal::kernel::fatal_page_fault(&fault),
        },
    }
}

fn fatal_trap(tf: &TrapFrame, scause: usize, stval: usize, exhausted: bool) -> ! {
    let what = if scause & SCAUSE_INTERRUPT != 0 {
        "unexpected interrupt"
    } else {
        exception_name(scause)
    };
    // The console cannot fail (see `hal::ConsoleWriter`): the results carry nothing.
    let mut out = ConsoleWriter::<RiscvVirt>::new();
    let _ = writeln!(
        out,
        "\nunexpected trap: {what} (scause {scause:#x}) at pc {:#x}, stval {stval:#x}, ra {:#x}, sp {:#x}",
        tf.sepc, tf.regs[1], tf.regs[2]
    );
    if exhausted {
        let _ = writeln!(out, "  (taken with sp at the trap stack's guard page)");
    }
    RiscvVirt::exit(ExitStatus::Fail)
}
