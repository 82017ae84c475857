//! The kernel address space and the page-fault hooks the board calls.
//!
//! A page fault goes: board trap entry -> `hal::kernel::page_fault` ->
//! `page_fault` here -> `mm::AddrSpace::handle_page_fault`. A denied
//! fault that is not a probe comes back to `fatal_page_fault`, which
//! prints the report (address, access, the area or "no area", the reason) and ends
//! the machine with a failing status.
//!
//! Stack overflows: a fault address in the guard page below a kernel stack
//! ([`crate::memmap::guard_of`]) is reported as
//! `stack overflow: the boot stack's guard page at .. was hit (write at .., pc ..)`.
//! The boards make sure the report runs at all: their trap entries move to the
//! trap stack when the interrupted stack is at its guard page (riscv64, aarch64),
//! or take the double fault that follows on its own stack and ask
//! `stack_guard` (through `hal::kernel::stack_guard`) whether CR2 is a guard
//! page (x86_64).
//!
//! Locking: `spacelock::SpaceLock` around the address
//! space (its docs have the protocol). A fault on a CPU while another CPU
//! holds the lock waits for it, answering TLB flush requests meanwhile; a
//! fault taken while the same CPU holds it (a bug in kernel code) is reported
//! as such instead of deadlocking.

use alloc::vec::Vec;

use hal::{Board, ExitStatus, FaultOutcome, MemRegion, PageFault};
use spin::Mutex;

use crate::board::{AddrSpace, Current};
use crate::println_unlocked;
use crate::spacelock::SpaceLock;

static SPACE: SpaceLock<Option<AddrSpace>> = SpaceLock::new(None);
/// Why the last fault was denied, for the report.
static LAST_DENIAL: Mutex<Option<Denial>> = Mutex::new(None);

#[derive(Clone, Copy)]
enum Denial {
    NoSpace,
    Busy,
    Fault(mm::FaultError),
}

/// Builds the kernel address space from the memory map and activates it.
pub fn init(regions: &[MemRegion]) -> Result<(), axerrno::AxError> {
    let mut space = AddrSpace::new_with(
        config::MMAP_BASE.into(),
        config::MMAP_SIZE,
        Current::ROOT_LAYOUT,
    )?;
    space.map_kernel(regions, config::PHYS_VIRT_OFFSET)?;
    let roots = space.page_table_roots();
    // SAFETY: `map_kernel` mapped the kernel image (text, rodata, data, bss and the
    // stacks; not their guard pages, which nothing touches), all RAM and the
    // devices at `physical + PHYS_VIRT_OFFSET`, which is where the kernel runs; the
    // table lives as long as `SPACE` holds it (a later `init` activates its own
    // table before this one is dropped).
    // It was built with the board's root layout.
    unsafe { Current::activate_page_table(roots) };
    SPACE.write(|s| *s = Some(space));
    Ok(())
}

/// Runs `f` on the kernel address space.
///
/// # Panics
///
/// If called before [`init`] (the runtime calls `init` before the app runs).
pub fn with<R>(f: impl FnOnce(&mut AddrSpace) -> R) -> R {
    SPACE.write(|s| {
        f(s.as_mut()
            .expect("the kernel address space is not built yet"))
    })
}

/// Runs `f` on the kernel address space, shared: other CPUs' reads and page
/// faults run at the same time; calls that change it wait.
///
/// # Panics
///
/// If called before [`init`].
pub fn read<R>(f: impl FnOnce(&AddrSpace) -> R) -> R {
    SPACE.read(|s| {
        f(s.as_ref()
            .expect("the kernel address space is not built yet"))
    })
}

/// The roots of the kernel page table (what every CPU loads).
pub fn roots() -> hal::Roots {
    read(|s| s.page_table_roots())
}

/// The kernel's side of `hal::kernel::page_fault` (through
/// [`hal::kernel::KernelIf`], implemented in [`crate::board`]).
pub(crate) fn page_fault(fault: &PageFault) -> FaultOutcome {
    let denial = if SPACE.held_here() {
        Denial::Busy
    } else {
        // The read side: faults on several CPUs run at once (mm's locking
        // protocol); calls that change the area set hold the write side.
        match SPACE.read(|s| {
            s.as_ref()
                .map(|space| space.handle_page_fault(fault.addr.into(), fault.access))
        }) {
            None => Denial::NoSpace,
            Some(Ok(())) => return FaultOutcome::Resolved,
            Some(Err(e)) => Denial::Fault(e),
        }
    };
    *LAST_DENIAL.lock() = Some(denial);
    FaultOutcome::Denied
}

/// The kernel's side of `hal::kernel::stack_guard`.
pub(crate) fn stack_guard(addr: usize) -> Option<core::ops::Range<usize>> {
    crate::memmap::guard_of(addr).map(|s| s.guard..s.bottom)
}

/// The kernel's side of `hal::kernel::fatal_page_fault`.
pub(crate) fn fatal_page_fault(fault: &PageFault) -> ! {
    if let Some(stack) = crate::memmap::guard_of(fault.addr) {
        println_unlocked!(
            "\nstack overflow: the {}'s guard page at {:#x} was hit ({} at {:#x}, pc {:#x})",
            stack,
            stack.guard,
            fault.access,
            fault.addr,
            fault.pc
        );
        println_unlocked!(
            "  {} [{:#x}, {:#x}); {} {:#x}: {}",
            stack,
            stack.bottom,
            stack.top,
            fault.cause.register,
            fault.cause.value,
            fault.cause.detail
        );
        Current::exit(ExitStatus::Fail)
    }
    println_unlocked!(
        "\npage fault: {} at {:#x} (pc {:#x}, {} {:#x}: {})",
        fault.access,
        fault.addr,
        fault.pc,
        fault.cause.register,
        fault.cause.value,
        fault.cause.detail
    );
    match LAST_DENIAL.try_lock().and_then(|d| *d) {
        Some(Denial::Fault(e)) => println_unlocked!("  {e}"),
        Some(Denial::Busy) => {
            println_unlocked!("  the fault was taken while this CPU held the address-space lock")
        }
        Some(Denial::NoSpace) | None => {
            println_unlocked!("  no address space yet (early boot): no area")
        }
    }
    Current::exit(ExitStatus::Fail)
}

/// The memory map, for the `hello` app and the boot log.
pub fn describe_areas() -> Vec<mm::AreaInfo> {
    read(|s| s.areas().collect())
}

/// Audits the live kernel page table: W^X and the NULL page, each half
/// walked from its own root (`mm::AddrSpace::audit`).
pub fn audit() -> mm::Audit {
    read(|s| s.audit())
}
