//! Page-fault vocabulary shared by the boards' trap entries and the memory module.

use core::fmt;

/// The kind of access that faulted (or that a probe performs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// A data load.
    Read,
    /// A data store (or atomic read-modify-write).
    Write,
    /// An instruction fetch.
    Execute,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Execute => "execute",
        })
    }
}

/// The architecture's own words for a fault, kept for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCause {
    /// Name of the cause register (`scause`, `ESR_EL1`, `#PF error code`).
    pub register: &'static str,
    /// Its value.
    pub value: usize,
    /// What the architecture calls this cause ("store page fault", ...).
    pub detail: &'static str,
}

/// A decoded page fault, as the board's trap entry hands it to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFault {
    /// The faulting virtual address (stval, CR2, FAR_EL1).
    pub addr: usize,
    /// What the access was.
    pub access: Access,
    /// Program counter of the faulting instruction.
    pub pc: usize,
    /// Raw cause for the report.
    pub cause: RawCause,
}

/// What the kernel did with a page fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The fault was resolved (a lazy page was mapped, a stale TLB entry dropped):
    /// return and retry the instruction.
    Resolved,
    /// The access is not allowed. The board applies a probe fixup if the faulting
    /// instruction is a probe, and otherwise calls [`crate::kernel::fatal_page_fault`].
    Denied,
}
