//! The exception vector.
//!
//! VBAR_EL1 points at `tessera_a64_vectors`: 16 slots of 0x80 bytes (current EL with
//! SP_EL0, current EL with SP_ELx, lower EL AArch64, lower EL AArch32; each
//! synchronous, IRQ, FIQ, SError). The kernel runs at EL1 on SP_EL1 only, and the
//! CPU pushes nothing on an exception, so each slot first decides which stack the
//! frame goes on, with `x0` parked in SP_EL0 (otherwise unused) meanwhile:
//! - normally the current stack (the interrupted `sp`);
//! - the CPU's own **trap stack** when `sp` lies in the guard page of the CPU's
//!   kernel stack (the boot stack on CPU 0) or in the lowest 4 KiB of that stack
//!   (`sp - guard < 8 KiB`): a stack overflow faults with `sp` there, and storing
//!   the frame on that `sp` would abort again on every attempt. The frame then
//!   starts at the top of the trap stack;
//! - the top of the trap stack as well when `sp` is at the trap stack's own guard
//!   (`sp - trap guard < 8 KiB`): the trap stack itself ran out, which
//!   `handle_trap` reports without returning (the frames it overwrote are gone).
//!
//! Per CPU: the guard pages and the trap stack top come from the CPU's block
//! ([`crate::percpu`]), which TPIDR_EL1 points at on every CPU before VBAR_EL1
//! is set; with `x0` parked, `mrs x0, tpidr_el1; ldr x0, [x0, #field]` reads
//! them without touching memory below `sp`. (SP_EL0 is taken: it parks `x0`.)
//!
//! The slot then saves x0/x1 and the interrupted `sp`, puts its slot number in x0
//! and branches to the common entry, which saves the rest of the general
//! registers, ELR_EL1 and SPSR_EL1 into the [`TrapFrame`] and calls `handle_trap`.
//! On return the registers are restored, `sp` last, and `eret` resumes, so a trap
//! that used the trap stack (a lazy page faulted in with `sp` near the bottom of
//! the boot stack) returns as usual.
//! - synchronous data and instruction aborts (EC 0x24/0x25, 0x20/0x21) that are
//!   translation, access-flag or permission faults are decoded into a
//!   `hal::PageFault` (address from FAR_EL1, write from ESR.WnR, the fault kind and
//!   level from the DFSC/IFSC) and handed to `hal::kernel::page_fault`; a denied
//!   fault at a probe instruction is fixed up ([`crate::probe`]); any other denied
//!   fault goes to `hal::kernel::fatal_page_fault`, which reports it and ends the
//!   machine (a fault in a guard page as `stack overflow: the boot stack's guard
//!   page ...`);
//! - an IRQ at EL1 (slot 5: IRQs are unmasked while a CPU runs a job, and the
//!   wake-up SGI may come then) is acknowledged at the GIC: SGI 0 is ended and
//!   handed to `hal::kernel::ipi`, a spurious one (1023) ignored, and then the
//!   frame is restored and `eret` resumes; any other interrupt is reported and
//!   ends the machine with a failing status ([`crate::gic`]);
//! - every other exception (other EC, other fault codes such as alignment faults,
//!   IRQs in other slots, FIQ, SError) is reported here and ends the machine
//!   with a failing status.
//!
//! FP/SIMD registers are not saved: the kernel is built for a softfloat target.

use core::arch::global_asm;
use core::fmt::Write;
use core::sync::atomic::Ordering;

use aarch64_cpu::registers::{ESR_EL1, FAR_EL1, Readable, VBAR_EL1, Writeable};
use hal::{Access, Board, ConsoleWriter, ExitStatus, FaultOutcome, PageFault, RawCause};

use crate::{ArmVirt, gic, percpu};

/// Registers saved on exception entry.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0..x30.
    pub regs: [u64; 31],
    /// The stack pointer before the exception (the frame may be on another stack).
    pub sp: u64,
    /// Where to resume (ELR_EL1).
    pub elr: u64,
    /// Saved program status (SPSR_EL1).
    pub spsr: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE.is_multiple_of(16));

global_asm!(
    ".macro TESSERA_A64_VECTOR slot",
    ".balign 0x80",
    // x0 waits in SP_EL0 (unused: the kernel runs on SP_EL1) while x0 decides
    // where the frame goes, before anything is stored.
    "   msr     sp_el0, x0",
    // sp in this CPU's kernel stack guard page or the 4 KiB above it: the
    // trap stack. TPIDR_EL1 points at this CPU's block (`crate::percpu`).
    "   mrs     x0, tpidr_el1",
    "   ldr     x0, [x0, #{stack_guard}]",
    "   sub     x0, sp, x0",
    "   lsr     x0, x0, #13",
    "   cbz     x0, 1f",
    // The same at the trap stack's own guard page: start it over (handle_trap
    // then does not return).
    "   mrs     x0, tpidr_el1",
    "   ldr     x0, [x0, #{trap_guard}]",
    "   sub     x0, sp, x0",
    "   lsr     x0, x0, #13",
    "   cbz     x0, 1f",
    // The usual case: the frame goes on the current stack.
    "   mov     x0, sp",
    "   b       2f",
    "1:",
    "   mrs     x0, tpidr_el1",
    "   ldr     x0, [x0, #{trap_top}]",
    "   sub     x0, sp, x0", // x0 = sp - top
    "   sub     sp, sp, x0", // sp = top
    "   add     x0, sp, x0", // x0 = the interrupted sp
    "2:",
    "   sub     sp, sp, #{size}",
    "   str     x0, [sp, #31*8]",
    "   mrs     x0, sp_el0",
    "   stp     x0, x1, [sp]",
    "   mov     x0, #\\slot",
    "   b       tessera_a64_trap_common",
    ".endm",
    "",
    ".section .text",
    ".balign 0x800",
    ".global tessera_a64_vectors",
    "tessera_a64_vectors:",
    "   TESSERA_A64_VECTOR 0",
    "   TESSERA_A64_VECTOR 1",
    "   TESSERA_A64_VECTOR 2",
    "   TESSERA_A64_VECTOR 3",
    "   TESSERA_A64_VECTOR 4",
    "   TESSERA_A64_VECTOR 5",
    "   TESSERA_A64_VECTOR 6",
    "   TESSERA_A64_VECTOR 7",
    "   TESSERA_A64_VECTOR 8",
    "   TESSERA_A64_VECTOR 9",
    "   TESSERA_A64_VECTOR 10",
    "   TESSERA_A64_VECTOR 11",
    "   TESSERA_A64_VECTOR 12",
    "   TESSERA_A64_VECTOR 13",
    "   TESSERA_A64_VECTOR 14",
    "   TESSERA_A64_VECTOR 15",
    // A slot longer than 0x80 bytes would shift every later slot: the table
    // would then end past 0x800 and this `.org` fail ("moves backwards").
    ".org tessera_a64_vectors + 0x800",
    "",
    ".balign 0x80",
    "tessera_a64_trap_common:",
    "   stp     x2, x3, [sp, #2*8]",
    "   stp     x4, x5, [sp, #4*8]",
    "   stp     x6, x7, [sp, #6*8]",
    "   stp     x8, x9, [sp, #8*8]",
    "   stp     x10, x11, [sp, #10*8]",
    "   stp     x12, x13, [sp, #12*8]",
    "   stp     x14, x15, [sp, #14*8]",
    "   stp     x16, x17, [sp, #16*8]",
    "   stp     x18, x19, [sp, #18*8]",
    "   stp     x20, x21, [sp, #20*8]",
    "   stp     x22, x23, [sp, #22*8]",
    "   stp     x24, x25, [sp, #24*8]",
    "   stp     x26, x27, [sp, #26*8]",
    "   stp     x28, x29, [sp, #28*8]",
    "   str     x30, [sp, #30*8]",
    "   mrs     x10, elr_el1",
    "   mrs     x11, spsr_el1",
    "   stp     x10, x11, [sp, #32*8]",
    "   mov     x1, x0",
    "   mov     x0, sp",
    "   bl      {handler}",
    "   ldp     x10, x11, [sp, #32*8]",
    "   msr     elr_el1, x10",
    "   msr     spsr_el1, x11",
    "   ldp     x2, x3, [sp, #2*8]",
    "   ldp     x4, x5, [sp, #4*8]",
    "   ldp     x6, x7, [sp, #6*8]",
    "   ldp     x8, x9, [sp, #8*8]",
    "   ldp     x10, x11, [sp, #10*8]",
    "   ldp     x12, x13, [sp, #12*8]",
    "   ldp     x14, x15, [sp, #14*8]",
    "   ldp     x16, x17, [sp, #16*8]",
    "   ldp     x18, x19, [sp, #18*8]",
    "   ldp     x20, x21, [sp, #20*8]",
    "   ldp     x22, x23, [sp, #22*8]",
    "   ldp     x24, x25, [sp, #24*8]",
    "   ldp     x26, x27, [sp, #26*8]",
    "   ldp     x28, x29, [sp, #28*8]",
    "   ldr     x30, [sp, #30*8]",
    // sp last: x0 waits in SP_EL0 meanwhile.
    "   ldr     x0, [sp]",
    "   msr     sp_el0, x0",
    "   ldr     x1, [sp, #8]",
    "   ldr     x0, [sp, #31*8]",
    "   mov     sp, x0",
    "   mrs     x0, sp_el0",
    "   eret",
    size = const FRAME_SIZE,
    stack_guard = const percpu::STACK_GUARD,
    trap_guard = const percpu::TRAP_GUARD,
    trap_top = const percpu::TRAP_TOP,
    handler = sym handle_trap,
);

unsafe extern "C" {
    static tessera_a64_vectors: u8;
}

/// Points VBAR_EL1 at the vector table.
pub fn init() {
    VBAR_EL1.set(&raw const tessera_a64_vectors as u64);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Where the exception came from and what it is, by vector slot.
fn slot_name(slot: u64) -> &'static str {
    const NAMES: [&str; 16] = [
        "synchronous exception, current EL with SP_EL0",
        "IRQ, current EL with SP_EL0",
        "FIQ, current EL with SP_EL0",
        "SError, current EL with SP_EL0",
        "synchronous exception, current EL",
        "IRQ, current EL",
        "FIQ, current EL",
        "SError, current EL",
        "synchronous exception from a lower EL (AArch64)",
        "IRQ from a lower EL (AArch64)",
        "FIQ from a lower EL (AArch64)",
        "SError from a lower EL (AArch64)",
        "synchronous exception from a lower EL (AArch32)",
        "IRQ from a lower EL (AArch32)",
        "FIQ from a lower EL (AArch32)",
        "SError from a lower EL (AArch32)",
    ];
    NAMES
        .get(slot as usize)
        .copied()
        .unwrap_or("unknown vector slot")
}

/// ESR_EL1.EC values this handler names.
fn ec_name(ec: u64) -> &'static str {
    match ec {
        0x00 => "unknown reason (undefined instruction)",
        0x01 => "trapped WFI/WFE",
        0x07 => "trapped FP/SIMD access",
        0x0e => "illegal execution state",
        0x15 => "SVC",
        0x16 => "HVC",
        0x17 => "SMC",
        0x18 => "trapped MSR/MRS/system instruction",
        0x20 => "instruction abort from a lower EL",
        0x21 => "instruction abort",
        0x22 => "PC alignment fault",
        0x24 => "data abort from a lower EL",
        0x25 => "data abort",
        0x26 => "SP alignment fault",
        0x2c => "floating-point exception",
        0x2f => "SError",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software step",
        0x34 | 0x35 => "watchpoint",
        0x3c => "BRK instruction",
        _ => "unhandled exception class",
    }
}

/// The page-fault kinds among the DFSC/IFSC codes: `(kind, level)`.
/// 0b0001LL translation, 0b0010LL access flag, 0b0011LL permission fault.
fn fault_kind(fsc: u64) -> Option<(usize, usize)> {
    let level = (fsc & 0b11) as usize;
    match fsc >> 2 {
        0b0001 => Some((0, level)),
        0b0010 => Some((1, level)),
        0b0011 => Some((2, level)),
        _ => None,
    }
}

/// The report's words for an abort: `[data?][kind][level]`.
const ABORT_DETAIL: [[[&str; 4]; 3]; 2] = [
    [
        [
            "instruction abort, translation fault level 0",
            "instruction abort, translation fault level 1",
            "instruction abort, translation fault level 2",
            "instruction abort, translation fault level 3",
        ],
        [
            "instruction abort, access flag fault level 0",
            "instruction abort, access flag fault level 1",
            "instruction abort, access flag fault level 2",
            "instruction abort, access flag fault level 3",
        ],
        [
            "instruction abort, permission fault level 0",
            "instruction abort, permission fault level 1",
            "instruction abort, permission fault level 2",
            "instruction abort, permission fault level 3",
        ],
    ],
    [
        [
            "data abort, translation fault level 0",
            "data abort, translation fault level 1",
            "data abort, translation fault level 2",
            "data abort, translation fault level 3",
        ],
        [
            "data abort, access flag fault level 0",
            "data abort, access flag fault level 1",
            "data abort, access flag fault level 2",
            "data abort, access flag fault level 3",
        ],
        [
            "data abort, permission fault level 0",
            "data abort, permission fault level 1",
            "data abort, permission fault level 2",
            "data abort, permission fault level 3",
        ],
    ],
];

/// ISS bits of data aborts.
const ISS_WNR: u64 = 1 << 6;
const ISS_CM: u64 = 1 << 8;
const ISS_FNV: u64 = 1 << 10;

/// Decodes a synchronous exception as a page fault, if it is one.
fn decode_page_fault(esr: u64, far: u64, pc: u64) -> Option<PageFault> {
    let ec = esr >> 26;
    let iss = esr & 0x1ff_ffff;
    let data = match ec {
        0x24 | 0x25 => true,
        0x20 | 0x21 => false,
        _ => return None,
    };
    if iss & ISS_FNV != 0 {
        return None; // FAR_EL1 does not hold the address
    }
    let (kind, level) = fault_kind(iss & 0x3f)?;
    let access = if !data {
        Access::Execute
    } else if iss & ISS_WNR != 0 && iss & ISS_CM == 0 {
        Access::Write
    } else {
        // Cache maintenance sets WnR but needs only read permission.
        Access::Read
    };
    Some(PageFault {
        addr: far as usize,
        access,
        pc: pc as usize,
        cause: RawCause {
            register: "ESR_EL1",
            value: esr as usize,
            detail: ABORT_DETAIL[data as usize][kind][level],
        },
    })
}

/// Whether the vector restarted the trap stack because the interrupted `sp` was
/// at this CPU's trap stack guard page (see the module docs).
fn trap_stack_exhausted(sp: u64) -> bool {
    let guard = percpu::current().trap_guard.load(Ordering::Relaxed);
    (sp as usize).wrapping_sub(guard) < 8 * 1024
}

/// The vector slot of an IRQ taken at EL1 on SP_EL1 (the kernel's only mode).
const SLOT_IRQ_EL1: u64 = 5;

extern "C" fn handle_trap(tf: &mut TrapFrame, slot: u64) {
    if slot == SLOT_IRQ_EL1 {
        return handle_irq(tf, slot);
    }
    // Synchronous exceptions sit in slots 0, 4, 8 and 12.
    if !slot.is_multiple_of(4) {
        fatal_trap(tf, slot, Cause::None);
    }
    let esr = ESR_EL1.get();
    let far = FAR_EL1.get();
    let Some(fault) = decode_page_fault(esr, far, tf.elr) else {
        fatal_trap(tf, slot, Cause::Sync(esr, far));
    };
    if trap_stack_exhausted(tf.sp) {
        // The frames of the exception this one interrupted were overwritten:
        // never return. A fault in the guard page is reported as a stack overflow.
        hal::kernel::fatal_page_fault(&fault);
    }
    match hal::kernel::page_fault(&fault) {
        FaultOutcome::Resolved => {
            // Make the new or changed descriptor visible to the table walker before
            // the faulting instruction runs again (`eret` is context synchronising).
            aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISH);
        }
        FaultOutcome::Denied => match hal::probe::fixup(tf.elr as usize) {
            Some(resume) => {
                tf.regs[0] = 1; // x0: "faulted"
                tf.elr = resume as u64;
            }
            None => hal::kernel::fatal_page_fault(&fault),
        },
    }
}

/// An IRQ (interrupts were unmasked: a CPU running a job, see `crate::smp`):
/// the wake-up SGI is acknowledged, ended and handed to `hal::kernel::ipi`
/// ([`gic::handle`]); a spurious one (GICC_IAR 1023) is ignored; any other is
/// reported and ends the machine with a failing status. The vector saved and
/// restores every general register, ELR_EL1 and SPSR_EL1 as for a
/// synchronous exception; IRQs stay masked until `eret`.
fn handle_irq(tf: &mut TrapFrame, slot: u64) {
    if trap_stack_exhausted(tf.sp) {
        // The vector started the trap stack over: what it held is gone.
        fatal_trap(tf, slot, Cause::None);
    }
    match gic::handle() {
        gic::Irq::Ipi | gic::Irq::Spurious => {}
        gic::Irq::Unexpected(iar) => fatal_trap(tf, slot, Cause::Irq(iar)),
    }
}

/// What `fatal_trap` reports besides the slot.
enum Cause {
    None,
    /// A synchronous exception: ESR_EL1 and FAR_EL1.
    Sync(u64, u64),
    /// An unexpected interrupt: the GICC_IAR value.
    Irq(u32),
}

fn fatal_trap(tf: &TrapFrame, slot: u64, cause: Cause) -> ! {
    // The console cannot fail (see `hal::ConsoleWriter`): the results carry nothing.
    let mut out = ConsoleWriter::<ArmVirt>::new();
    let _ = write!(out, "\nunexpected trap: {}", slot_name(slot));
    match cause {
        Cause::None => {}
        Cause::Sync(esr, far) => {
            let ec = esr >> 26;
            let _ = write!(
                out,
                ": {} (ESR_EL1 {esr:#x}, EC {ec:#x}, ISS {:#x}), FAR_EL1 {far:#x}",
                ec_name(ec),
                esr & 0x1ff_ffff
            );
        }
        Cause::Irq(iar) => {
            let _ = write!(
                out,
                ": interrupt {} (GICC_IAR {iar:#x}) on CPU {}",
                iar & 0x3ff,
                percpu::index()
            );
        }
    }
    let _ = writeln!(
        out,
        "\n  at pc {:#x}, lr {:#x}, sp {:#x}, SPSR_EL1 {:#x}",
        tf.elr, tf.regs[30], tf.sp, tf.spsr
    );
    if trap_stack_exhausted(tf.sp) {
        let _ = writeln!(out, "  (taken with sp at the trap stack's guard page)");
    }
    ArmVirt::exit(ExitStatus::Fail)
}
