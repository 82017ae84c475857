//! Board: QEMU `q35`, x86_64, 4-level paging, loaded by QEMU's multiboot loader.
//!
//! - [`boot`]: the multiboot header, the 32-bit entry `_start`, the boot page
//!   table (the first 4 GiB both identity-mapped and at the high-half offset,
//!   2 MiB leaves), the switch to long mode and to the high half, then
//!   `hal::kernel::kernel_main`.
//! - [`trap`]: per-CPU GDT and TSS (double-fault stack), one shared IDT (the
//!   exceptions and the IPI vector); page faults (#PF) are
//!   decoded into `hal::PageFault` and handed to the kernel; a double fault
//!   (#DF) whose CR2 is a stack's guard page is the page fault of a stack
//!   overflow and is reported as such; every other exception is reported and
//!   ends the machine with a failing status.
//! - stacks (linker script, `build.rs`): the boot stack and the trap stack (the
//!   double-fault IST stack), each above a 4 KiB guard page that the kernel
//!   address space leaves unmapped.
//! - [`probe`]: byte loads/stores whose faults are fixed up instead of fatal.
//! - [`console`]: COM1 (16550 at I/O port 0x3f8); exit: QEMU's `isa-debug-exit`
//!   device at port 0xf4 (writing `v` exits with `(v << 1) | 1`: 0x10 -> 33 for
//!   pass, 0x11 -> 35 for fail; a triple fault exits with 0, a failure).
//! - [`cpu`]: the privileged instructions (port I/O, CR2/CR3, invlpg, rdtsc).
//! - [`timer`]: the cycle counter is the TSC; its rate is measured once against
//!   the HPET.
//!
//! # Several CPUs
//! - [`acpi`]: at boot, under the boot table, the MADT's enabled local APICs;
//!   `cpus` lists the boot CPU (its APIC id from its APIC) first, then the
//!   others in MADT order.
//! - [`smp`]: `start_cpu` sends INIT, STARTUP, STARTUP to the CPU's APIC id;
//!   the CPU runs a real-mode trampoline at physical 0x8000 (copied there at
//!   boot; in the config's reserved "bios" range) that climbs to long mode on
//!   the boot page table, then loads the kernel's page table, its own stack,
//!   GDT/TSS (double-fault IST on its trap stack) and the shared IDT, sets
//!   its GS base (the per-CPU register: `%gs:0` is its kernel index), enables
//!   its local APIC and interrupts and calls `hal::kernel::secondary_main`.
//! - [`apic`]: xAPIC MMIO at 0xFEE0_0000. IPIs are fixed vector
//!   [`apic::IPI_VECTOR`] (0xF0) to the target's APIC id (a table kernel
//!   index -> APIC id); the handler calls `hal::kernel::ipi` and sends EOI.
//!   The 8259 PIC is remapped and masked at boot, so IPIs (and the APIC's
//!   ignored spurious vector) are the only interrupts; any other is reported
//!   as unexpected and fails the run. The boot CPU enables its APIC and
//!   interrupts before `kernel_main`. `wait_for_ipi` is `sti; hlt; cli`.
//! - TLB flushes are local (`TLB_BROADCAST` false): shootdowns use IPIs.
//!
//! The crate is empty unless built for `x86_64-unknown-none`.
#![no_std]
#![cfg(all(target_arch = "x86_64", target_os = "none"))]

pub mod acpi;
pub mod apic;
pub mod boot;
pub mod console;
pub mod cpu;
pub mod probe;
pub mod smp;
pub mod timer;
pub mod trap;

use hal::{Board, BootInfo, ExitStatus, KnownWord, RootLayout, Roots};
use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::x86_64::X64PagingMetaData;

/// The board.
pub struct X86Q35;

/// I/O port of QEMU's `isa-debug-exit` device (see the board's `[qemu]` args).
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Written for a pass: QEMU exits with `(0x10 << 1) | 1 = 33`.
const DEBUG_EXIT_PASS: u8 = 0x10;
/// Written for a failure: QEMU exits with 35.
const DEBUG_EXIT_FAIL: u8 = 0x11;

/// What QEMU's local APIC returns from its version register: version 0x14, and
/// 5 in bits 23:16 (six LVT entries).
const LOCAL_APIC_VERSION: u32 = 0x0005_0014;

impl Board for X86Q35 {
    const NAME: &'static str = "x86_64-qemu-q35";
    type PagingMeta = X64PagingMetaData;
    type Pte = X64PTE;
    const ROOT_LAYOUT: RootLayout = RootLayout::Single;
    type Paging = frames::global::GlobalPaging;

    fn console_write(bytes: &[u8]) {
        console::write(bytes);
    }

    fn exit(status: ExitStatus) -> ! {
        let value = match status {
            ExitStatus::Pass => DEBUG_EXIT_PASS,
            ExitStatus::Fail => DEBUG_EXIT_FAIL,
        };
        // SAFETY: the isa-debug-exit device at this port ends QEMU with a status
        // derived from the value; nothing runs after it.
        unsafe { cpu::outb(DEBUG_EXIT_PORT, value) };
        // Without the device (another machine), stop here.
        loop {
            cpu::halt();
        }
    }

    fn cycles() -> u64 {
        cpu::rdtsc()
    }

    fn cycles_per_sec() -> Option<u64> {
        timer::tsc_hz()
    }

    unsafe fn activate_page_table(roots: Roots) {
        let root = roots.lower;
        // SAFETY: the caller guarantees that `roots` (one root: `ROOT_LAYOUT` is
        // `Single`) is a complete 4-level table that
        // maps the running kernel at its current addresses. Loading CR3 flushes every
        // TLB entry: the board sets no global pages (CR4.PGE stays clear).
        unsafe { cpu::write_cr3(root.as_usize()) };
    }

    fn flush_tlb(vaddr: Option<VirtAddr>) {
        match vaddr {
            Some(va) => cpu::invlpg(va.as_usize()),
            None => cpu::flush_all(),
        }
    }

    fn known_word(_boot: &BootInfo) -> KnownWord {
        KnownWord {
            paddr: PhysAddr::from(cpu::LOCAL_APIC + cpu::APIC_VERSION),
            value: LOCAL_APIC_VERSION,
            big_endian: false,
            device: true,
            what: "local APIC version",
        }
    }

    fn cpus(boot: &BootInfo) -> hal::CpuList {
        acpi::cpus(boot.cpu_id)
    }

    unsafe fn start_cpu(start: &hal::CpuStart) -> Result<(), hal::StartError> {
        // SAFETY: the caller's promise (once per CPU, from the boot CPU, its
        // own stacks, the kernel's page table); the trampoline was installed
        // at boot.
        unsafe { smp::start(start) };
        Ok(())
    }

    fn cpu_index() -> usize {
        smp::cpu_index()
    }

    fn send_ipi(targets: u64) {
        smp::send_ipi(targets);
    }

    fn wait_for_ipi() {
        smp::wait_for_ipi();
    }
}
