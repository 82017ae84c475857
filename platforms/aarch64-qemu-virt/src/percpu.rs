//! Per-CPU blocks: what the trap vector, `cpu_index` and a starting CPU read.
//!
//! Each CPU owns one [`CpuLocal`] of [`BLOCKS`] (CPU `i` the `i`-th), and its
//! TPIDR_EL1 holds the block's (virtual) address from its first instruction
//! with a trap vector on: the boot CPU sets it in `rust_entry` ([`init_boot`])
//! before VBAR_EL1, a secondary in its entry before VBAR_EL1
//! (`crate::smp`). Nothing else in the kernel uses TPIDR_EL1.
//!
//! Invariants:
//! - TPIDR_EL1 points at `BLOCKS[cpu_index]` whenever VBAR_EL1 is set, so the
//!   vector can load the CPU's guard pages and trap stack top with x0 alone
//!   (see [`crate::trap`]) and [`index`] is a subtraction, not a load;
//! - a block is written only by the boot CPU: block 0 in [`init_boot`], block
//!   `i` by `start_cpu` before the PSCI call that starts CPU `i` (which then
//!   only reads it), so the fields are plain relaxed atomics; except
//!   [`CpuLocal::gic_mask`], which each CPU writes itself (`crate::gic::init_cpu`,
//!   before it comes online) with release and other CPUs read with acquire;
//! - a stack's guard page is the 4 KiB below its lowest byte: `top - size - 4K`
//!   (the linker script's layout, `modules/config/src/linker.rs`).

use core::mem::offset_of;
use core::sync::atomic::{AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, TPIDR_EL1, Writeable};
use hal::smp::MAX_CPUS;

/// Size of a guard page.
const GUARD: usize = 4096;

/// One CPU's block (64 bytes, 64-byte aligned: a cache line on Cortex-A72,
/// so CPUs do not share lines; cleaned to memory before a CPU that reads it
/// with its MMU off is started).
#[repr(C, align(64))]
pub struct CpuLocal {
    /// The kernel's index of the CPU.
    pub index: AtomicUsize,
    /// Top of its trap stack.
    pub trap_top: AtomicUsize,
    /// The guard page below its kernel stack.
    pub stack_guard: AtomicUsize,
    /// The guard page below its trap stack.
    pub trap_guard: AtomicUsize,
    /// Start only: TTBR0_EL1 (the kernel's lower root).
    pub ttbr0: AtomicUsize,
    /// Start only: TTBR1_EL1 (the kernel's upper root).
    pub ttbr1: AtomicUsize,
    /// Start only: the initial stack pointer (top of its kernel stack).
    pub stack_top: AtomicUsize,
    /// Its GIC CPU interface as a target-list bit (GICD_ITARGETSR0's byte as
    /// the CPU reads it), 0 until the CPU set its interface up.
    pub gic_mask: AtomicUsize,
}

/// Byte offsets of the fields, for assembly.
pub const INDEX: usize = offset_of!(CpuLocal, index);
/// See [`INDEX`].
pub const TRAP_TOP: usize = offset_of!(CpuLocal, trap_top);
/// See [`INDEX`].
pub const STACK_GUARD: usize = offset_of!(CpuLocal, stack_guard);
/// See [`INDEX`].
pub const TRAP_GUARD: usize = offset_of!(CpuLocal, trap_guard);
/// See [`INDEX`].
pub const TTBR0: usize = offset_of!(CpuLocal, ttbr0);
/// See [`INDEX`].
pub const TTBR1: usize = offset_of!(CpuLocal, ttbr1);
/// See [`INDEX`].
pub const STACK_TOP: usize = offset_of!(CpuLocal, stack_top);
// 64 bytes: one Cortex-A72 cache line.
const _: () = assert!(core::mem::size_of::<CpuLocal>() == 64);

impl CpuLocal {
    const fn new() -> Self {
        Self {
            index: AtomicUsize::new(0),
            trap_top: AtomicUsize::new(0),
            stack_guard: AtomicUsize::new(0),
            trap_guard: AtomicUsize::new(0),
            ttbr0: AtomicUsize::new(0),
            ttbr1: AtomicUsize::new(0),
            stack_top: AtomicUsize::new(0),
            gic_mask: AtomicUsize::new(0),
        }
    }

    /// Fills in the fields the trap vector reads, for CPU `index` with these
    /// stack tops.
    pub fn set_stacks(&self, index: usize, stack_top: usize, trap_top: usize) {
        self.index.store(index, Ordering::Relaxed);
        self.trap_top.store(trap_top, Ordering::Relaxed);
        self.stack_guard
            .store(stack_top - config::STACK_SIZE - GUARD, Ordering::Relaxed);
        self.trap_guard.store(
            trap_top - config::TRAP_STACK_SIZE - GUARD,
            Ordering::Relaxed,
        );
        self.stack_top.store(stack_top, Ordering::Relaxed);
    }
}

/// The blocks, CPU `i` at index `i`.
pub static BLOCKS: [CpuLocal; MAX_CPUS] = [const { CpuLocal::new() }; MAX_CPUS];

unsafe extern "C" {
    static _etrap_stack: u8;
    static _estack: u8;
}

/// Fills in block 0 for the boot CPU (its boot and trap stacks from the
/// linker script) and points its TPIDR_EL1 at it. Called once, in
/// `rust_entry`, after .bss is cleared and before the trap vector is set.
pub fn init_boot() {
    let block = &BLOCKS[0];
    block.set_stacks(
        0,
        &raw const _estack as usize,
        &raw const _etrap_stack as usize,
    );
    TPIDR_EL1.set(block as *const CpuLocal as u64);
}

/// The calling CPU's block.
pub fn current() -> &'static CpuLocal {
    &BLOCKS[index()]
}

/// The calling CPU's index, from TPIDR_EL1's distance to [`BLOCKS`].
pub fn index() -> usize {
    let block = TPIDR_EL1.get() as usize;
    block.wrapping_sub(BLOCKS.as_ptr() as usize) / core::mem::size_of::<CpuLocal>()
}
