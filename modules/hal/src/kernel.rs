//! The calls a board makes into the kernel.
//!
//! The kernel side (`runtime`) defines the `__tessera_*` symbols below with
//! `#[unsafe(no_mangle)]`; the board calls these safe wrappers. Both sides are
//! checked by the linker: an image without a kernel or without a board does not link.

use crate::{BootInfo, FaultOutcome, PageFault};

unsafe extern "Rust" {
    fn __tessera_kernel_main(boot: &BootInfo) -> !;
    fn __tessera_page_fault(fault: &PageFault) -> FaultOutcome;
    fn __tessera_fatal_page_fault(fault: &PageFault) -> !;
    fn __tessera_stack_guard(addr: usize) -> Option<core::ops::Range<usize>>;
}

/// Enters the kernel once the board has a stack, the high-half mapping, a trap
/// vector and a console.
pub fn kernel_main(boot: &BootInfo) -> ! {
    // SAFETY: defined by `runtime` with exactly this signature; it takes no
    // preconditions beyond those the board documents for calling this function.
    unsafe { __tessera_kernel_main(boot) }
}

/// Hands a page fault to the memory module. Called from the trap handler with
/// interrupts disabled.
pub fn page_fault(fault: &PageFault) -> FaultOutcome {
    // SAFETY: defined by `runtime` with exactly this signature.
    unsafe { __tessera_page_fault(fault) }
}

/// Prints the report for a fault that was denied and is not a probe, and ends the
/// machine with a failing status.
pub fn fatal_page_fault(fault: &PageFault) -> ! {
    // SAFETY: defined by `runtime` with exactly this signature.
    unsafe { __tessera_fatal_page_fault(fault) }
}

/// The guard page (unmapped, below a kernel stack) that holds `addr`, if any: a
/// fault there is a stack overflow. For trap entries that must tell an overflow
/// from another fault before the usual path can run (x86_64's double fault).
pub fn stack_guard(addr: usize) -> Option<core::ops::Range<usize>> {
    // SAFETY: defined by `runtime` with exactly this signature; it only compares
    // `addr` with the linker's stack symbols.
    unsafe { __tessera_stack_guard(addr) }
}
