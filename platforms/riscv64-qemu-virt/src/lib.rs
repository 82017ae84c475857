//! Board: QEMU `virt`, riscv64, Sv39, entered in S-mode by OpenSBI.
//!
//! - [`boot`]: `_start` at the load address (MMU off), the boot page table (the
//!   devices' GiB and every GiB of RAM both identity-mapped and at the high-half
//!   offset, 1 GiB leaves), the jump to the high half, then
//!   `hal::kernel::kernel_main`.
//! - [`trap`]: the trap vector; page faults (scause 12/13/15) are decoded into
//!   `hal::PageFault` and handed to the kernel; anything else is reported and ends
//!   the machine with a failing status, except the IPI (the supervisor software
//!   interrupt). When `sp` is at the hart's kernel stack's guard page (a stack
//!   overflow), the vector saves its frame on the hart's trap stack instead, so
//!   the overflow is reported (`stack overflow: ...`) rather than faulting again
//!   on every push.
//! - [`smp`]: several harts. The per-CPU register is `tp`: it points at the
//!   hart's `PerCpu` block (kernel index, hart id, stack bounds for the trap
//!   entry). `cpus` lists the boot hart, then the other enabled harts of the
//!   device tree's `/cpus` (`reg` = hart id). `start_cpu` fills the hart's block
//!   and calls SBI HSM `hart_start` with the block's physical address as
//!   `opaque`; the hart's assembly entry turns on the boot page table, moves to
//!   the high half, sets `tp`, loads the kernel's `satp` and its kernel stack,
//!   then Rust installs the trap vector, enables the IPI and calls
//!   `hal::kernel::secondary_main`. IPIs are SBI `send_ipi` (supervisor software
//!   interrupt, the only interrupt enabled, on every hart, the boot hart
//!   included, from before `kernel_main`); `wait_for_ipi` is `wfi` with
//!   `sstatus.SIE` off. `TLB_BROADCAST` is false: remote flushes are the
//!   kernel's, through these IPIs (SBI RFENCE is not used).
//! - stacks (linker script, `build.rs`): each CPU's kernel stack (CPU 0's boot
//!   stack) and trap stack, each above a 4 KiB guard page that the kernel
//!   address space leaves unmapped.
//! - [`probe`]: byte loads/stores whose faults are fixed up instead of fatal.
//! - console: legacy SBI putchar; exit: the `sifive_test` device (status 0 for
//!   pass, 1 for fail; SBI shutdown cannot carry a status).
#![no_std]

pub mod boot;
pub mod probe;
pub mod smp;
pub mod trap;

use hal::{Board, BootInfo, ExitStatus, KnownWord, RootLayout, Roots};
use memory_addr::VirtAddr;
use page_table_entry::riscv::Rv64PTE;
use page_table_multiarch::riscv::Sv39MetaData;

/// The board.
pub struct RiscvVirt;

/// Physical address of QEMU's `sifive_test` device (exit with a status).
const SIFIVE_TEST: usize = 0x10_0000;
/// Ticks per second of `time` on QEMU virt.
const TIMEBASE_HZ: u64 = 10_000_000;

impl Board for RiscvVirt {
    const NAME: &'static str = "riscv64-qemu-virt";
    type PagingMeta = Sv39MetaData<VirtAddr>;
    type Pte = Rv64PTE;
    const ROOT_LAYOUT: RootLayout = RootLayout::Single;
    type Paging = frames::global::GlobalPaging;

    fn console_write(bytes: &[u8]) {
        for &b in bytes {
            #[allow(deprecated)]
            sbi_rt::legacy::console_putchar(b as usize);
        }
    }

    fn exit(status: ExitStatus) -> ! {
        let value: u32 = match status {
            ExitStatus::Pass => 0x5555,
            ExitStatus::Fail => (1 << 16) | 0x3333,
        };
        let reg = (SIFIVE_TEST + config::PHYS_VIRT_OFFSET) as *mut u32;
        // SAFETY: the sifive_test register is mapped at the high-half offset both by
        // the boot page table (first GiB) and by the kernel address space (it is
        // an MMIO region of this board's config); a 32-bit store ends the machine.
        unsafe { reg.write_volatile(value) };
        loop {
            riscv::asm::wfi();
        }
    }

    fn cycles() -> u64 {
        riscv::register::time::read64()
    }

    fn cycles_per_sec() -> Option<u64> {
        Some(TIMEBASE_HZ)
    }

    unsafe fn activate_page_table(roots: Roots) {
        let root = roots.lower;
        // SAFETY: the caller guarantees that `roots` (one root: `ROOT_LAYOUT` is
        // `Single`) is a complete Sv39 table that
        // maps the running kernel at its current addresses.
        unsafe {
            riscv::register::satp::set(riscv::register::satp::Mode::Sv39, 0, root.as_usize() >> 12)
        };
        riscv::asm::sfence_vma_all();
    }

    fn flush_tlb(vaddr: Option<VirtAddr>) {
        match vaddr {
            Some(va) => riscv::asm::sfence_vma(0, va.as_usize()),
            None => riscv::asm::sfence_vma_all(),
        }
    }

    fn known_word(boot: &BootInfo) -> KnownWord {
        KnownWord::fdt_magic(boot)
    }

    fn cpus(boot: &BootInfo) -> hal::CpuList {
        smp::cpus(boot)
    }

    unsafe fn start_cpu(start: &hal::CpuStart) -> Result<(), hal::StartError> {
        // SAFETY: the caller's contract is `smp::start`'s.
        unsafe { smp::start(start) }
    }

    fn cpu_index() -> usize {
        smp::current()
            .index
            .load(core::sync::atomic::Ordering::Relaxed)
    }

    fn send_ipi(targets: u64) {
        smp::send_ipi(targets);
    }

    fn wait_for_ipi() {
        smp::wait_for_ipi();
    }
}
