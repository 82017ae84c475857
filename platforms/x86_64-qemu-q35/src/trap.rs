//! Descriptor tables and the trap entry.
//!
//! Each CPU has its own GDT (null, 64-bit code, data, a TSS) and TSS, whose
//! IST slot 1 is that CPU's double-fault stack (the boot CPU's: the linker
//! script's trap stack; a secondary's: `hal::CpuStart::trap_stack_top`; each
//! above its own unmapped guard page). All CPUs share one IDT, written once
//! by the boot CPU ([`init_idt`]) before any secondary starts, and read-only
//! afterwards; [`init_cpu`] loads a CPU's tables. The IDT has the 32
//! exception vectors, [`crate::apic::IPI_VECTOR`] (calls `hal::kernel::ipi`,
//! then EOI) and the APIC's spurious vector (returns at once, no EOI). Every
//! other slot is not present: a stray interrupt there raises #NP (QEMU: #GP)
//! with the IDT flag in its error code, reported as an unexpected interrupt.
//!
//! Each stub pushes a zero error code if the CPU pushes none, then the vector,
//! and jumps to `tessera_trap_common`, which saves the general registers into a
//! [`TrapFrame`] and calls [`handle_trap`] with the stack 16-byte aligned. The
//! handler may change the frame (the probe fixup sets `rax` and `rip`); the
//! registers are restored from it and `iretq` resumes.
//!
//! - #PF (14): CR2 is the address; error code bit 0 present (protection
//!   violation, else not present), bit 1 write, bit 3 reserved bit set, bit 4
//!   instruction fetch. Decoded into `hal::PageFault` and handed to
//!   `hal::kernel::page_fault`; a denied fault at a probe instruction is fixed up
//!   ([`crate::probe`]), any other denied fault goes to
//!   `hal::kernel::fatal_page_fault`. A reserved-bit fault is a broken page
//!   table, not an access: it is reported here.
//! - #DF (8), on the double-fault stack: a stack overflow ends here. The write
//!   into the guard page below the boot stack raises a #PF, whose frame the CPU
//!   pushes on the same stack, into the guard page: that fault during delivery is
//!   a #DF, which switches to IST 1. When CR2 lies in a guard page
//!   (`hal::kernel::stack_guard`) and the interrupted RSP at or just above it, the
//!   #DF goes to `hal::kernel::fatal_page_fault` as that page fault, which reports
//!   `stack overflow: the boot stack's guard page ...`.
//! - every other exception is reported (name, vector, error code, RIP, RSP,
//!   CR2) and ends the machine with a failing status.
//!
//! Trap handling code uses no floating point or SIMD (the target has none).

use core::arch::{asm, global_asm};
use core::fmt::Write;

use hal::smp::MAX_CPUS;
use hal::{Access, ConsoleWriter, ExitStatus, FaultOutcome, PageFault, RawCause};

use crate::boot::{KERNEL_CS, KERNEL_DS};

/// Registers saved on exception entry, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct TrapFrame {
    /// General registers, as pushed by `tessera_trap_common`.
    pub(crate) rax: u64,
    pub(crate) rbx: u64,
    pub(crate) rcx: u64,
    pub(crate) rdx: u64,
    pub(crate) rsi: u64,
    pub(crate) rdi: u64,
    pub(crate) rbp: u64,
    pub(crate) r8: u64,
    pub(crate) r9: u64,
    pub(crate) r10: u64,
    pub(crate) r11: u64,
    pub(crate) r12: u64,
    pub(crate) r13: u64,
    pub(crate) r14: u64,
    pub(crate) r15: u64,
    /// Pushed by the stub.
    pub(crate) vector: u64,
    /// Pushed by the CPU, or zero by the stub.
    pub(crate) error_code: u64,
    /// The interrupt frame pushed by the CPU.
    pub(crate) rip: u64,
    pub(crate) cs: u64,
    pub(crate) rflags: u64,
    pub(crate) rsp: u64,
    pub(crate) ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);

global_asm!(
    ".section .text",
    // One stub per exception vector; vectors 8, 10-14, 17, 21, 29, 30 come with an
    // error code from the CPU.
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".balign 16",
    "tessera_trap_stub_\\n:",
    ".if (\\n == 8) || ((\\n >= 10) && (\\n <= 14)) || (\\n == 17) || (\\n == 21) || (\\n == 29) || (\\n == 30)",
    "   pushq   $\\n",
    ".else",
    "   pushq   $0",
    "   pushq   $\\n",
    ".endif",
    "   jmp     tessera_trap_common",
    ".endr",
    "",
    // The IPI: an interrupt, so no error code.
    ".balign 16",
    "tessera_trap_stub_ipi:",
    "   pushq   $0",
    "   pushq   ${ipi}",
    "   jmp     tessera_trap_common",
    // The APIC's spurious interrupt needs no EOI and no handler.
    ".balign 16",
    ".global tessera_trap_spurious",
    "tessera_trap_spurious:",
    "   iretq",
    "",
    "tessera_trap_common:",
    "   pushq   %r15",
    "   pushq   %r14",
    "   pushq   %r13",
    "   pushq   %r12",
    "   pushq   %r11",
    "   pushq   %r10",
    "   pushq   %r9",
    "   pushq   %r8",
    "   pushq   %rbp",
    "   pushq   %rdi",
    "   pushq   %rsi",
    "   pushq   %rdx",
    "   pushq   %rcx",
    "   pushq   %rbx",
    "   pushq   %rax",
    "   cld",
    "   movq    %rsp, %rdi",
    // The CPU aligns rsp to 16 before pushing its frame, but do not rely on it.
    "   movq    %rsp, %rbx",
    "   andq    $-16, %rsp",
    "   callq   {handler}",
    "   movq    %rbx, %rsp",
    "   popq    %rax",
    "   popq    %rbx",
    "   popq    %rcx",
    "   popq    %rdx",
    "   popq    %rsi",
    "   popq    %rdi",
    "   popq    %rbp",
    "   popq    %r8",
    "   popq    %r9",
    "   popq    %r10",
    "   popq    %r11",
    "   popq    %r12",
    "   popq    %r13",
    "   popq    %r14",
    "   popq    %r15",
    "   addq    $16, %rsp", // vector and error code
    "   iretq",
    "",
    ".section .rodata",
    ".balign 8",
    ".global tessera_trap_stubs",
    "tessera_trap_stubs:",
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "   .quad tessera_trap_stub_\\n",
    ".endr",
    ".global tessera_trap_stub_ipi",
    ".section .text",
    ipi = const crate::apic::IPI_VECTOR,
    handler = sym handle_trap,
    options(att_syntax)
);

unsafe extern "C" {
    /// Addresses of the 32 exception stubs.
    static tessera_trap_stubs: [usize; 32];
    /// The IPI's stub.
    fn tessera_trap_stub_ipi();
    /// The spurious interrupt's stub.
    fn tessera_trap_spurious();
}

/// The task-state segment: only the interrupt stack table is used.
#[repr(C, packed(4))]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

const _: () = assert!(core::mem::size_of::<Tss>() == 104);

/// One IDT gate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    _reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        _reserved: 0,
    };

    /// A present ring-0 interrupt gate (interrupts stay disabled in the handler).
    fn interrupt(handler: usize, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: KERNEL_CS,
            ist,
            attributes: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            _reserved: 0,
        }
    }
}

/// The operand of `lgdt`/`lidt`.
#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

const DOUBLE_FAULT: usize = 8;
const PAGE_FAULT: u64 = 14;
/// IST slot (1-based) of the double-fault stack.
const DOUBLE_FAULT_IST: u8 = 1;
const TSS_SELECTOR: u16 = 0x18;

unsafe extern "C" {
    /// Top of the trap stack (linker script): the boot CPU's double-fault
    /// stack, above its own guard page.
    static _etrap_stack: u8;
}

/// A CPU's TSS and GDT (null, 64-bit code, data, TSS in two slots).
#[repr(C, align(16))]
struct CpuTables {
    tss: Tss,
    gdt: [u64; 5],
}

const TABLES: CpuTables = CpuTables {
    tss: Tss {
        _reserved0: 0,
        rsp: [0; 3],
        _reserved1: 0,
        ist: [0; 7],
        _reserved2: 0,
        _reserved3: 0,
        iomap_base: core::mem::size_of::<Tss>() as u16,
    },
    gdt: [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff, 0, 0],
};

/// Slot `i`: CPU index `i`'s tables, written only by that CPU in [`init_cpu`].
static mut CPU_TABLES: [CpuTables; MAX_CPUS] = [TABLES; MAX_CPUS];
/// Written by the boot CPU in [`init_idt`], before any other CPU runs.
static mut IDT: [Gate; 256] = [Gate::MISSING; 256];

/// The boot CPU's tables: fills the IDT and loads CPU 0's tables with the
/// linker script's trap stack. Called once, on the boot CPU, before the kernel
/// and before any secondary CPU starts.
pub fn init() {
    init_idt();
    let stack_top = &raw const _etrap_stack as usize;
    // SAFETY: index 0 is the boot CPU's, and this runs on it, once.
    unsafe { init_cpu(0, stack_top) };
}

fn init_idt() {
    // SAFETY: `tessera_trap_stubs` is an initialised table in .rodata.
    let stubs: &[usize; 32] = unsafe { &tessera_trap_stubs };
    // SAFETY: called once by the boot CPU before any other CPU starts or any
    // IDT is loaded: nothing else reads or writes the IDT meanwhile.
    unsafe {
        let idt = (&raw mut IDT).cast::<Gate>();
        for (vector, &stub) in stubs.iter().enumerate() {
            let ist = if vector == DOUBLE_FAULT {
                DOUBLE_FAULT_IST
            } else {
                0
            };
            idt.add(vector).write(Gate::interrupt(stub, ist));
        }
        let ipi = tessera_trap_stub_ipi as *const () as usize;
        idt.add(crate::apic::IPI_VECTOR as usize)
            .write(Gate::interrupt(ipi, 0));
        let spurious = tessera_trap_spurious as *const () as usize;
        idt.add(crate::apic::SPURIOUS_VECTOR as usize)
            .write(Gate::interrupt(spurious, 0));
    }
}

/// Loads CPU `cpu`'s GDT and TSS (double-fault stack `trap_stack_top`) and the
/// shared IDT.
///
/// # Safety
///
/// Called once per CPU index, on that CPU, with interrupts disabled, after
/// [`init_idt`]; `trap_stack_top` is the top of a stack that belongs to this
/// CPU alone.
pub unsafe fn init_cpu(cpu: usize, trap_stack_top: usize) {
    // SAFETY: only the slot's address is taken (the index is bounds-checked).
    let tables = unsafe { &raw mut CPU_TABLES[cpu] };
    let limit = core::mem::size_of::<Tss>() as u64 - 1;
    // SAFETY: slot `cpu` is written only by CPU `cpu`, once (the caller's
    // promise), through this raw pointer; the hardware reads it only after
    // `lgdt`/`ltr` below.
    unsafe {
        (*tables).tss.ist[(DOUBLE_FAULT_IST - 1) as usize] = trap_stack_top as u64;
        let tss = &raw const (*tables).tss as u64;
        // Available 64-bit TSS (type 9), present.
        (*tables).gdt[3] = (limit & 0xffff)
            | ((tss & 0xff_ffff) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (((tss >> 24) & 0xff) << 56);
        (*tables).gdt[4] = tss >> 32;
    }
    let gdtr = DescriptorPointer {
        limit: (core::mem::size_of::<[u64; 5]>() - 1) as u16,
        // SAFETY: a place projection of a valid pointer; nothing is read.
        base: unsafe { &raw const (*tables).gdt } as u64,
    };
    let idtr = DescriptorPointer {
        limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
        base: &raw const IDT as u64,
    };
    // SAFETY: the GDT keeps the boot GDT's selectors (code 0x08, data 0x10),
    // so reloading CS and the data segments with them is consistent; the TSS
    // descriptor is marked available before `ltr`; the IDT is complete
    // (`init_idt` ran) and never written again.
    unsafe {
        asm!(
            "lgdt ({gdtr})",
            // Reload CS with a far return, then the data segments.
            "pushq ${cs}",
            "leaq 2f(%rip), {tmp}",
            "pushq {tmp}",
            "lretq",
            "2:",
            "movw ${ds}, {tmp:x}",
            "movw {tmp:x}, %ds",
            "movw {tmp:x}, %es",
            "movw {tmp:x}, %ss",
            "movw ${tss}, {tmp:x}",
            "ltr {tmp:x}",
            "lidt ({idtr})",
            gdtr = in(reg) &gdtr,
            idtr = in(reg) &idtr,
            tmp = out(reg) _,
            cs = const KERNEL_CS,
            ds = const KERNEL_DS,
            tss = const TSS_SELECTOR,
            options(att_syntax, preserves_flags)
        );
    }
}

fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error (#DE)",
        1 => "debug (#DB)",
        2 => "non-maskable interrupt",
        3 => "breakpoint (#BP)",
        4 => "overflow (#OF)",
        5 => "bound range exceeded (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        9 => "coprocessor segment overrun",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack-segment fault (#SS)",
        13 => "general protection (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 floating-point error (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD floating-point (#XM)",
        20 => "virtualization (#VE)",
        21 => "control protection (#CP)",
        _ => "reserved exception",
    }
}

/// #PF error code bits.
const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;
const PF_RESERVED: u64 = 1 << 3;
const PF_FETCH: u64 = 1 << 4;

/// What the #PF error code says, in words.
fn page_fault_detail(error: u64) -> (Access, &'static str) {
    let present = error & PF_PRESENT != 0;
    if error & PF_FETCH != 0 {
        let d = if present {
            "instruction fetch from a no-execute page"
        } else {
            "instruction fetch from a non-present page"
        };
        (Access::Execute, d)
    } else if error & PF_WRITE != 0 {
        let d = if present {
            "write to a read-only page"
        } else {
            "write to a non-present page"
        };
        (Access::Write, d)
    } else {
        let d = if present {
            "read protection violation"
        } else {
            "read from a non-present page"
        };
        (Access::Read, d)
    }
}

/// Bytes the CPU pushes to deliver a #PF: SS, RSP, RFLAGS, CS, RIP, error code.
const PF_PUSH: usize = 6 * 8;

/// A double fault that a stack overflow caused, as the page fault it began as.
///
/// The #PF on the guard page could not be delivered because the CPU pushes its
/// frame on the same stack, at the guard page: that second fault made the #DF.
/// So CR2 lies in a stack's guard page, and the interrupted RSP within that page
/// or less than one #PF frame above it. (CR2 alone could be stale: a probe of a
/// guard page leaves it there too.)
fn overflow_fault(tf: &TrapFrame) -> Option<PageFault> {
    let cr2 = crate::cpu::cr2();
    let guard = hal::kernel::stack_guard(cr2)?;
    let rsp = tf.rsp as usize;
    (guard.start <= rsp && rsp < guard.end + PF_PUSH).then_some(PageFault {
        addr: cr2,
        // The push of the #PF frame, if not the access that faulted first.
        access: Access::Write,
        // The CPU does not promise a meaningful RIP in a #DF frame; QEMU saves the
        // faulting instruction's.
        pc: tf.rip as usize,
        cause: RawCause {
            register: "#DF error code",
            value: tf.error_code as usize,
            detail: "double fault: page fault while delivering a page fault on the same stack",
        },
    })
}

extern "C" fn handle_trap(tf: &mut TrapFrame) {
    if tf.vector == crate::apic::IPI_VECTOR as u64 {
        hal::kernel::ipi();
        crate::apic::eoi();
        return;
    }
    if tf.vector == DOUBLE_FAULT as u64
        && let Some(fault) = overflow_fault(tf)
    {
        hal::kernel::fatal_page_fault(&fault);
    }
    if tf.vector != PAGE_FAULT || tf.error_code & PF_RESERVED != 0 {
        fatal_trap(tf);
    }
    let (access, detail) = page_fault_detail(tf.error_code);
    let fault = PageFault {
        addr: crate::cpu::cr2(),
        access,
        pc: tf.rip as usize,
        cause: RawCause {
            register: "#PF error code",
            value: tf.error_code as usize,
            detail,
        },
    };
    match hal::kernel::page_fault(&fault) {
        FaultOutcome::Resolved => {}
        FaultOutcome::Denied => match hal::probe::fixup(tf.rip as usize) {
            Some(resume) => {
                tf.rax = 1; // the probe's result: "faulted"
                tf.rip = resume as u64;
            }
            None => hal::kernel::fatal_page_fault(&fault),
        },
    }
}

/// #NP/#GP error code: the selector is an IDT gate (bit 1). The SDM puts the
/// vector in bits 15:3; QEMU (TCG, long mode) puts the gate's byte offset
/// there instead, vector * 16 (checked here: vector 0x40 gave 0x402).
const ERROR_IDT: u64 = 1 << 1;
const QEMU_GATE_SHIFT: u32 = 4;
const SEGMENT_NOT_PRESENT: u64 = 11;
const GENERAL_PROTECTION: u64 = 13;

fn fatal_trap(tf: &TrapFrame) -> ! {
    // An interrupt through a missing gate (the kernel issues no `int n`).
    if (tf.vector == SEGMENT_NOT_PRESENT || tf.vector == GENERAL_PROTECTION)
        && tf.error_code & ERROR_IDT != 0
    {
        // The console cannot fail (see `hal::ConsoleWriter`).
        let _ = writeln!(
            ConsoleWriter::<crate::X86Q35>::new(),
            "\nunexpected interrupt: vector {:#x} (no handler; {} error code {:#x}) at rip {:#x} on CPU {}",
            tf.error_code >> QEMU_GATE_SHIFT,
            exception_name(tf.vector),
            tf.error_code,
            tf.rip,
            crate::smp::cpu_index()
        );
        <crate::X86Q35 as hal::Board>::exit(ExitStatus::Fail)
    }
    let name = if tf.vector == PAGE_FAULT {
        "page fault with a reserved bit set in a page-table entry"
    } else {
        exception_name(tf.vector)
    };
    // The console cannot fail (see `hal::ConsoleWriter`): the result carries nothing.
    let _ = writeln!(
        ConsoleWriter::<crate::X86Q35>::new(),
        "\nunexpected exception: {name} (vector {}, error code {:#x}) at rip {:#x}, rsp {:#x}, cr2 {:#x}, rflags {:#x}",
        tf.vector,
        tf.error_code,
        tf.rip,
        tf.rsp,
        crate::cpu::cr2(),
        tf.rflags
    );
    <crate::X86Q35 as hal::Board>::exit(ExitStatus::Fail)
}
