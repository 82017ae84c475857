//! Several CPUs: what a board reports about them and how the kernel starts
//! and signals them.
//!
//! The kernel numbers CPUs `0..n`: index 0 is the boot CPU, the others follow
//! in the order the firmware lists them ([`CpuList`]). Boards translate
//! between that index and the hardware's id (APIC id, hart id, MPIDR
//! affinity); nothing above the board sees a hardware id except in logs.
//!
//! # What a board does ([`crate::Board`])
//! - [`crate::Board::cpus`]: the CPUs present, from the firmware (ACPI MADT,
//!   the device tree's `/cpus`).
//! - [`crate::Board::start_cpu`]: starts one secondary CPU ([`CpuStart`]): it
//!   loads the kernel's page table, installs its trap vector, sets its per-CPU
//!   register so that [`crate::Board::cpu_index`] returns its index, switches
//!   to its kernel stack, enables the IPI (and only the IPI) and calls
//!   [`crate::kernel::secondary_main`] with interrupts enabled.
//! - [`crate::Board::send_ipi`] / [`crate::Board::wait_for_ipi`]: a CPU that
//!   receives an IPI calls [`crate::kernel::ipi`], from its interrupt handler
//!   or from `wait_for_ipi`.
//! - [`crate::Board::TLB_BROADCAST`]: the local flush instruction reaches
//!   every CPU (AArch64's `TLBI ...IS`), so shootdowns need no IPI.

/// Most CPUs a kernel runs on (CPU sets are 64-bit masks).
pub const MAX_CPUS: usize = 64;

/// The CPUs the firmware reports, in kernel order: the boot CPU first.
#[derive(Debug, Clone, Copy)]
pub struct CpuList {
    hw: [usize; MAX_CPUS],
    len: usize,
    dropped: usize,
}

impl CpuList {
    /// Only the boot CPU, with hardware id `boot_hw`.
    pub const fn boot_only(boot_hw: usize) -> Self {
        let mut hw = [0; MAX_CPUS];
        hw[0] = boot_hw;
        Self {
            hw,
            len: 1,
            dropped: 0,
        }
    }

    /// Adds a CPU with hardware id `hw` unless it is listed already (the boot
    /// CPU is listed first by [`CpuList::boot_only`]). Past [`MAX_CPUS`] the
    /// CPU is counted in [`CpuList::dropped`] instead.
    pub fn push(&mut self, hw: usize) {
        if self.ids().contains(&hw) {
            return;
        }
        if self.len == MAX_CPUS {
            self.dropped += 1;
            return;
        }
        self.hw[self.len] = hw;
        self.len += 1;
    }

    /// Hardware ids, index 0 the boot CPU.
    pub fn ids(&self) -> &[usize] {
        &self.hw[..self.len]
    }

    /// Number of CPUs listed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: the boot CPU is listed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// CPUs present beyond [`MAX_CPUS`], left out.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

/// What a secondary CPU starts with (virtual addresses).
#[derive(Debug, Clone, Copy)]
pub struct CpuStart {
    /// The kernel's number for the CPU (1..).
    pub index: usize,
    /// Its hardware id, from [`CpuList`].
    pub hw_id: usize,
    /// Initial stack pointer: the top of its kernel stack (16-byte aligned;
    /// a guard page lies below the stack).
    pub stack_top: usize,
    /// The top of its trap stack: where the trap entry goes when the kernel
    /// stack overflowed (riscv64, aarch64) or the double-fault stack (x86_64).
    pub trap_stack_top: usize,
    /// The kernel page table to load before touching anything above.
    pub roots: crate::Roots,
}

/// Why a CPU did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// The firmware refused (the SBI or PSCI error code).
    Firmware(isize),
    /// The board cannot start CPUs.
    Unsupported,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::Firmware(code) => write!(f, "the firmware refused (error {code})"),
            StartError::Unsupported => f.write_str("this board cannot start CPUs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_list_keeps_order_skips_duplicates_and_counts_overflow() {
        let mut l = CpuList::boot_only(3);
        for hw in [0, 1, 3, 2, 1] {
            l.push(hw);
        }
        assert_eq!(l.ids(), &[3, 0, 1, 2]);
        for hw in 100..200 {
            l.push(hw);
        }
        assert_eq!(l.len(), MAX_CPUS);
        assert_eq!(l.dropped(), 100 - (MAX_CPUS - 4));
    }
}
