//! The one place a board is chosen: one board crate per target architecture.
//! Everything else names `board::Current` and calls it through `hal::Board`.

#[cfg(target_arch = "aarch64")]
pub use aarch64_qemu_virt::ArmVirt as Current;
#[cfg(target_arch = "riscv64")]
pub use riscv64_qemu_virt::RiscvVirt as Current;
#[cfg(target_arch = "x86_64")]
pub use x86_64_qemu_q35::X86Q35 as Current;

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
