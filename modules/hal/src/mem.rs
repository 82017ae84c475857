//! The physical memory map.

use memory_addr::PhysAddr;

/// What a physical range holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemKind {
    /// Kernel code: mapped read + execute.
    Text,
    /// Kernel read-only data: mapped read-only.
    Rodata,
    /// Kernel data, bss and the kernel stacks (not their guard pages, which are in
    /// no region): mapped read + write, never execute.
    Data,
    /// RAM handed to the frame allocator: linearly mapped read + write.
    Free,
    /// RAM that must not be allocated (firmware, device tree): mapped read-only.
    Reserved,
    /// Device registers: mapped as device memory.
    Mmio,
}

/// One range of the physical memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    /// Start (page aligned).
    pub paddr: PhysAddr,
    /// Size in bytes (page aligned).
    pub size: usize,
    /// What it holds.
    pub kind: MemKind,
    /// A short name for the memory-map dump.
    pub name: &'static str,
}
