//! What the board reported at boot.

use hal::Board;
pub use hal::{BootInfo, FirmwareRam, KnownWord, MemKind, MemRegion, RootLayout};
pub use runtime::memmap::{GUARD_SIZE, GuardedStack};

use runtime::board::Current;

/// The board's name.
pub fn board_name() -> &'static str {
    Current::NAME
}

/// The architecture.
pub fn arch() -> &'static str {
    config::ARCH
}

/// How the board's page table covers the two halves of the address space: one
/// root, or a root per half (AArch64's TTBR0/TTBR1), each holding only its half.
pub fn root_layout() -> RootLayout {
    Current::ROOT_LAYOUT
}

/// The physical memory map.
pub fn memory_map() -> &'static [MemRegion] {
    runtime::entry::memory_map()
}

/// RAM as (start, size) physical ranges, lowest first (from the board file and
/// `MEM=`; a board may split large RAM around a device window).
pub fn ram() -> &'static [(usize, usize)] {
    config::RAM
}

/// The usable RAM the firmware reported at boot (the multiboot memory map, the
/// device tree's `/memory` nodes); empty if it said nothing. Free RAM is the
/// configured RAM cut down to it.
pub fn firmware_ram() -> &'static FirmwareRam {
    runtime::entry::firmware_ram()
}

/// Where the kernel's physical-memory window shows physical address `pa`.
pub fn phys_to_virt(pa: usize) -> usize {
    pa.wrapping_add(config::PHYS_VIRT_OFFSET)
}

/// Boot information (CPU id, device tree).
pub fn boot_info() -> &'static BootInfo {
    runtime::boot_info()
}

/// A word at a known physical address on this board.
pub fn known_word() -> KnownWord {
    Current::known_word(runtime::boot_info())
}

/// The kernel stacks of every CPU (CPU 0's boot stack, which apps run on, each
/// CPU's kernel and trap stack), each with the unmapped guard page below it. A
/// fault in a guard page is reported as a stack overflow.
pub fn stacks() -> alloc::vec::Vec<GuardedStack> {
    runtime::memmap::stacks().collect()
}
