//! Secondary CPUs: the real-mode trampoline, INIT-SIPI-SIPI, the per-CPU
//! register and the IPI table.
//!
//! # Start-up path of a secondary CPU
//! 1. [`install_trampoline`] (boot CPU, at boot, under the boot page table,
//!    after the multiboot information was read) copies the trampoline to
//!    physical [`TRAMPOLINE`]. That page lies in the config's reserved "bios"
//!    range [0, 1 MiB): the frame allocator never hands it out, the kernel
//!    maps it read-only and reads nothing there (QEMU's multiboot information
//!    starts at 0x9000 and is read before the copy).
//! 2. [`start`] (boot CPU) fills [`MAILBOX`] with the CPU's kernel page table,
//!    stacks and index, then sends INIT, waits 10 ms, STARTUP, 200 us,
//!    STARTUP. CPUs start one at a time: the kernel waits for each to come
//!    online before it starts the next, so one mailbox serves all.
//! 3. The trampoline (real mode at `TRAMPOLINE`, CS = 0x0800) loads its own
//!    GDT, enters 32-bit protected mode, loads the board's static boot page
//!    table (identity-maps the first 4 GiB and maps them at the high half),
//!    enables PAE, EFER.LME|NXE, paging with CR0.WP, jumps to 64-bit code and
//!    from there to `tessera_ap_entry` in the high half.
//! 4. `tessera_ap_entry` loads the kernel's page table (CR3 from the mailbox),
//!    switches to the CPU's kernel stack and calls [`ap_main`], which loads
//!    the CPU's own GDT/TSS (double-fault stack) and the shared IDT, sets the
//!    per-CPU register, enables the local APIC and interrupts, and calls
//!    `hal::kernel::secondary_main`.
//!
//! # Per-CPU register
//! IA32_GS_BASE of CPU `i` points at `INDEXES[i]`, whose value is `i`;
//! [`cpu_index`] reads `%gs:0`. Nothing loads the GS selector after that
//! (which would reset the base). `-cpu qemu64` has no RDTSCP, so
//! IA32_TSC_AUX is no alternative.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hal::smp::MAX_CPUS;
use x86_64::registers::model_specific::GsBase;

use crate::apic;

/// Physical address of the trampoline (page aligned, below 1 MiB).
pub const TRAMPOLINE: usize = 0x8000;
const _: () = assert!(TRAMPOLINE.is_multiple_of(4096) && TRAMPOLINE < 0x10_0000);

/// CR4.PAE.
const CR4_PAE: u32 = 1 << 5;
/// EFER: LME and NXE.
const EFER_LME_NXE: u32 = (1 << 8) | (1 << 11);
/// CR0: PE, WP and PG.
const CR0_PE_WP_PG: u32 = (1 << 0) | (1 << 16) | (1 << 31);

/// What the CPU being started reads in `tessera_ap_entry` (offsets fixed).
#[repr(C)]
struct Mailbox {
    /// Physical address of the kernel's PML4.
    cr3: AtomicU64,
    /// Top of the CPU's kernel stack.
    stack_top: AtomicU64,
    /// The CPU's kernel index.
    index: AtomicU64,
    /// Top of its double-fault stack.
    trap_stack_top: AtomicU64,
}

static MAILBOX: Mailbox = Mailbox {
    cr3: AtomicU64::new(0),
    stack_top: AtomicU64::new(0),
    index: AtomicU64::new(0),
    trap_stack_top: AtomicU64::new(0),
};

/// `INDEXES[i] == i`: the per-CPU blocks that GS bases point at.
static INDEXES: [usize; MAX_CPUS] = {
    let mut a = [0; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        a[i] = i;
        i += 1;
    }
    a
};

/// APIC id of each kernel CPU index, for [`send_ipi`].
static APIC_IDS: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

global_asm!(
    // ---- the trampoline, copied to TRAMPOLINE; runs at physical addresses ----
    ".section .rodata.ap_trampoline, \"a\"",
    ".balign 16",
    ".global tessera_ap_trampoline",
    "tessera_ap_trampoline:",
    ".code16",
    "   cli",
    "   cld",
    "   movw    %cs, %ax",
    "   movw    %ax, %ds",
    "   lgdtl   (ap_gdt_ptr - tessera_ap_trampoline)",
    "   movl    %cr0, %eax",
    "   orl     $1, %eax",
    "   movl    %eax, %cr0",
    "   ljmpl   $0x08, ${base} + (ap_32 - tessera_ap_trampoline)",
    ".code32",
    "ap_32:",
    "   movw    $0x18, %ax",
    "   movw    %ax, %ds",
    "   movw    %ax, %es",
    "   movw    %ax, %ss",
    "   movl    %cr4, %eax",
    "   orl     ${cr4_pae}, %eax",
    "   movl    %eax, %cr4",
    "   movl    {base} + (ap_pml4 - tessera_ap_trampoline), %eax",
    "   movl    %eax, %cr3",
    "   movl    $0xc0000080, %ecx",
    "   rdmsr",
    "   orl     ${efer}, %eax",
    "   wrmsr",
    "   movl    %cr0, %eax",
    "   orl     ${cr0}, %eax",
    "   movl    %eax, %cr0",
    "   ljmpl   $0x10, ${base} + (ap_64 - tessera_ap_trampoline)",
    ".code64",
    "ap_64:",
    "   movq    {base} + (ap_entry - tessera_ap_trampoline), %rax",
    "   jmpq    *%rax",
    ".balign 8",
    // null, 32-bit code (0x08), 64-bit code (0x10), data (0x18)
    "ap_gdt:",
    "   .quad 0",
    "   .quad 0x00cf9a000000ffff",
    "   .quad 0x00af9a000000ffff",
    "   .quad 0x00cf92000000ffff",
    "ap_gdt_ptr:",
    "   .word 4 * 8 - 1",
    "   .long {base} + (ap_gdt - tessera_ap_trampoline)",
    ".balign 8",
    "ap_pml4:",
    "   .quad tessera_boot_pml4_phys",
    "ap_entry:",
    "   .quad tessera_ap_entry",
    ".global tessera_ap_trampoline_end",
    "tessera_ap_trampoline_end:",
    "",
    // ---- 64-bit, high half, boot page table, interrupts off ----
    ".section .text",
    "tessera_ap_entry:",
    "   movabsq ${mailbox}, %rax",
    "   movq    0(%rax), %rcx",
    "   movq    %rcx, %cr3",
    "   movq    8(%rax), %rsp",
    "   movq    16(%rax), %rdi",
    "   movq    24(%rax), %rsi",
    "   xorl    %ebp, %ebp",
    // rsp is 16-byte aligned: the callee sees rsp % 16 == 8 after the call.
    "   movabsq ${main}, %rax",
    "   callq   *%rax",
    "3: hlt",
    "   jmp     3b",
    base = const TRAMPOLINE,
    cr4_pae = const CR4_PAE,
    efer = const EFER_LME_NXE,
    cr0 = const CR0_PE_WP_PG,
    mailbox = sym MAILBOX,
    main = sym ap_main,
    options(att_syntax)
);

unsafe extern "C" {
    static tessera_ap_trampoline: u8;
    static tessera_ap_trampoline_end: u8;
}

/// Copies the trampoline to [`TRAMPOLINE`].
///
/// # Safety
///
/// Called once on the boot CPU, under the boot page table (which maps low
/// memory writable at the high-half offset), after the multiboot information
/// was read.
pub unsafe fn install_trampoline() {
    let from = &raw const tessera_ap_trampoline;
    let len = &raw const tessera_ap_trampoline_end as usize - from as usize;
    assert!(len <= 4096, "the AP trampoline must fit in one page");
    let to = (TRAMPOLINE + config::PHYS_VIRT_OFFSET) as *mut u8;
    // SAFETY: the source is the trampoline in .rodata; the destination page is
    // reserved low memory nobody else uses (module docs), writable under the
    // boot table (the caller's promise); the two do not overlap.
    unsafe { core::ptr::copy_nonoverlapping(from, to, len) };
}

/// Sets this CPU's per-CPU register to index `cpu`.
pub fn set_cpu_index(cpu: usize) {
    let block = &INDEXES[cpu] as *const usize as u64;
    GsBase::write(x86_64::VirtAddr::new(block));
}

/// The calling CPU's kernel index (from its GS base).
pub fn cpu_index() -> usize {
    let index: usize;
    // SAFETY: every CPU set its GS base to its `INDEXES` slot before any
    // kernel code runs on it (boot: `boot::rust_entry`; secondaries:
    // `ap_main`), and nothing reloads the GS selector.
    unsafe {
        asm!("movq %gs:0, {}", out(reg) index, options(att_syntax, nostack, readonly, preserves_flags))
    };
    index
}

/// Records that kernel CPU `cpu` has APIC id `apic_id`.
pub fn set_apic_id(cpu: usize, apic_id: usize) {
    APIC_IDS[cpu].store(apic_id, Ordering::Relaxed);
}

/// Sends the IPI to each CPU of `targets` (bit `i` = CPU index `i`).
pub fn send_ipi(targets: u64) {
    let mut t = targets;
    while t != 0 {
        let cpu = t.trailing_zeros() as usize;
        t &= t - 1;
        apic::send_ipi(APIC_IDS[cpu].load(Ordering::Relaxed));
    }
}

/// Busy-waits `micros` microseconds on the cycle counter.
fn delay_us(micros: u64) {
    let hz = crate::timer::tsc_hz().unwrap_or(1_000_000_000);
    let ticks = hz / 1_000_000 * micros;
    let start = crate::cpu::rdtsc();
    while crate::cpu::rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// Starts the CPU of `start` (see the module documentation).
///
/// # Safety
///
/// As `hal::Board::start_cpu`: once per CPU, from the boot CPU, with the
/// trampoline installed; the stacks are that CPU's; the roots are the
/// kernel's page table.
pub unsafe fn start(start: &hal::CpuStart) {
    set_apic_id(start.index, start.hw_id);
    MAILBOX
        .cr3
        .store(start.roots.lower.as_usize() as u64, Ordering::Relaxed);
    MAILBOX
        .stack_top
        .store(start.stack_top as u64, Ordering::Relaxed);
    MAILBOX.index.store(start.index as u64, Ordering::Relaxed);
    MAILBOX
        .trap_stack_top
        .store(start.trap_stack_top as u64, Ordering::Release);
    let page = (TRAMPOLINE >> 12) as u8;
    // SAFETY: the target has not run kernel code (started once, the caller's
    // promise); the trampoline page holds the start code (installed at boot).
    unsafe {
        apic::send_init(start.hw_id);
        delay_us(10_000);
        apic::send_startup(start.hw_id, page);
        delay_us(200);
        apic::send_startup(start.hw_id, page);
    }
}

/// First Rust code of a secondary CPU: kernel page table, own stack,
/// interrupts off.
extern "C" fn ap_main(index: usize, trap_stack_top: usize) -> ! {
    // SAFETY: this CPU runs index `index` (the mailbox's), once, interrupts
    // off; the boot CPU filled the IDT before starting any CPU; the trap
    // stack is this CPU's alone.
    unsafe { crate::trap::init_cpu(index, trap_stack_top) };
    set_cpu_index(index);
    apic::enable();
    x86_64::instructions::interrupts::enable();
    hal::kernel::secondary_main(index)
}

/// Waits for an IPI: called and returns with interrupts disabled.
pub fn wait_for_ipi() {
    // `sti` takes effect after the next instruction, so an IPI pending before
    // `hlt` wakes it rather than being taken before it sleeps.
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}
