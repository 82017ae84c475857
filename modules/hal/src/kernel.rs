//! The calls a board makes into the kernel.
//!
//! [`KernelIf`] is the kernel's half of the contract between a board and the
//! kernel: what a board may ask of the kernel. The kernel (`runtime`) implements
//! it once, with `#[crate_interface::impl_interface]`; a board calls it only through
//! the safe wrappers of this module ([`kernel_main`], [`page_fault`],
//! [`fatal_page_fault`], [`stack_guard`]).
//!
//! The compiler checks both sides against the trait: the implementation's
//! signatures must be the trait's, and the wrappers call the functions the trait
//! declares. `crate_interface` links the two through one symbol per method
//! (`__KernelIf_<method>`), so an image without the kernel's implementation does
//! not link, and an image with two does not link either.

use crate::{BootInfo, FaultOutcome, PageFault};

/// What a board may ask of the kernel. Implemented by the kernel (`runtime`) with
/// `#[crate_interface::impl_interface]`; boards call the wrappers of this module.
#[crate_interface::def_interface]
pub trait KernelIf {
    /// The kernel entry: see [`kernel_main`].
    fn kernel_main(boot: &BootInfo) -> !;
    /// The page-fault hook: see [`page_fault`].
    fn page_fault(fault: &PageFault) -> FaultOutcome;
    /// The report of a denied fault: see [`fatal_page_fault`].
    fn fatal_page_fault(fault: &PageFault) -> !;
    /// The guard-page lookup: see [`stack_guard`].
    fn stack_guard(addr: usize) -> Option<core::ops::Range<usize>>;
    /// A secondary CPU's entry: see [`secondary_main`].
    fn secondary_main(cpu: usize) -> !;
    /// The IPI hook: see [`ipi`].
    fn ipi();
}

/// Enters the kernel once the board has a stack, the high-half mapping, a trap
/// vector and a console.
pub fn kernel_main(boot: &BootInfo) -> ! {
    crate_interface::call_interface!(KernelIf::kernel_main(boot))
}

/// Hands a page fault to the memory module. Called from the trap handler with
/// interrupts disabled.
pub fn page_fault(fault: &PageFault) -> FaultOutcome {
    crate_interface::call_interface!(KernelIf::page_fault(fault))
}

/// Prints the report for a fault that was denied and is not a probe, and ends the
/// machine with a failing status.
pub fn fatal_page_fault(fault: &PageFault) -> ! {
    crate_interface::call_interface!(KernelIf::fatal_page_fault(fault))
}

/// Enters the kernel on secondary CPU `cpu` (its kernel index), once the
/// board started it as `hal::smp` describes (page table, trap vector,
/// per-CPU register, kernel stack, interrupts enabled for IPIs).
pub fn secondary_main(cpu: usize) -> ! {
    crate_interface::call_interface!(KernelIf::secondary_main(cpu))
}

/// An IPI arrived on the calling CPU: answers flush requests and wake-ups.
/// Called from the board's IPI handler (interrupts disabled) or from
/// `Board::wait_for_ipi`.
pub fn ipi() {
    crate_interface::call_interface!(KernelIf::ipi())
}

/// The guard page (unmapped, below a kernel stack) that holds `addr`, if any: a
/// fault there is a stack overflow. For trap entries that must tell an overflow
/// from another fault before the usual path can run (x86_64's double fault).
pub fn stack_guard(addr: usize) -> Option<core::ops::Range<usize>> {
    crate_interface::call_interface!(KernelIf::stack_guard(addr))
}
