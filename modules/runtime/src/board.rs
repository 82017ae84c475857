//! The one place a board is chosen: one board crate per target architecture.
//! Everything else names `board::Current` and calls it through `hal::Board`.
//!
//! The other direction, board to kernel, is [`hal::kernel::KernelIf`]: its one
//! implementation, [`Kernel`], is here too.
//!
//! The arches and their boards are listed in `configs/arches.toml` and
//! `configs/platforms/`; `make test-tools` checks that the `pub use` lines below
//! name one board crate for each arch of that list, and no other.

#[cfg(target_arch = "aarch64")]
pub use aarch64_qemu_virt::ArmVirt as Current;
#[cfg(target_arch = "riscv64")]
pub use riscv64_qemu_virt::RiscvVirt as Current;
#[cfg(target_arch = "x86_64")]
pub use x86_64_qemu_q35::X86Q35 as Current;

use hal::{BootInfo, FaultOutcome, PageFault};

/// The kernel's side of the board -> kernel calls (`hal::kernel`).
pub struct Kernel;

#[crate_interface::impl_interface]
impl hal::kernel::KernelIf for Kernel {
    fn kernel_main(boot: &BootInfo) -> ! {
        crate::entry::kernel_main(boot)
    }

    fn page_fault(fault: &PageFault) -> FaultOutcome {
        crate::space::page_fault(fault)
    }

    fn fatal_page_fault(fault: &PageFault) -> ! {
        crate::space::fatal_page_fault(fault)
    }

    fn stack_guard(addr: usize) -> Option<core::ops::Range<usize>> {
        crate::space::stack_guard(addr)
    }

    fn secondary_main(cpu: usize) -> ! {
        crate::smp::secondary_main(cpu)
    }

    fn ipi() {
        crate::smp::ipi()
    }
}

/// The kernel's page table type on this board (what the kernel address space
/// owns: a `paging::PageTable` over the board's metadata, PTE and handler).
pub type PageTable = mm::PageTable<
    <Current as hal::Board>::PagingMeta,
    <Current as hal::Board>::Pte,
    <Current as hal::Board>::Paging,
>;

/// The kernel's address space type on this board.
pub type AddrSpace = mm::AddrSpace<
    <Current as hal::Board>::PagingMeta,
    <Current as hal::Board>::Pte,
    <Current as hal::Board>::Paging,
>;
