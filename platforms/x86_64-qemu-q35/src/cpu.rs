//! The privileged instructions the board uses, each behind a small function.

use core::arch::asm;

/// Writes a byte to an I/O port.
///
/// # Safety
///
/// Writing a device register has whatever effect the device gives it: the caller
/// must know which device answers at `port` and what the write does.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the device's reaction; `out` touches no memory.
    unsafe {
        asm!("outb %al, %dx", in("dx") port, in("al") value, options(att_syntax, nomem, nostack, preserves_flags))
    };
}

/// Reads a byte from an I/O port.
///
/// # Safety
///
/// As for [`outb`]: reads of some device registers have side effects.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the device's reaction; `in` touches no memory.
    unsafe {
        asm!("inb %dx, %al", in("dx") port, out("al") value, options(att_syntax, nomem, nostack, preserves_flags))
    };
    value
}

/// The faulting address of the last page fault (CR2).
pub fn cr2() -> usize {
    let value: usize;
    // SAFETY: reading CR2 has no side effect (the kernel runs in ring 0).
    unsafe {
        asm!("movq %cr2, {}", out(reg) value, options(att_syntax, nomem, nostack, preserves_flags))
    };
    value
}

/// The current page-table root (CR3).
pub fn cr3() -> usize {
    let value: usize;
    // SAFETY: reading CR3 has no side effect (the kernel runs in ring 0).
    unsafe {
        asm!("movq %cr3, {}", out(reg) value, options(att_syntax, nomem, nostack, preserves_flags))
    };
    value
}

/// Loads CR3, which also flushes every non-global TLB entry.
///
/// # Safety
///
/// `root` must be the physical address of a PML4 that maps the running code, its
/// stack and everything it touches afterwards at their current addresses.
pub unsafe fn write_cr3(root: usize) {
    // SAFETY: the caller guarantees the new table maps what runs next. Not `nomem`:
    // every memory access after this goes through the new table.
    unsafe { asm!("movq {}, %cr3", in(reg) root, options(att_syntax, nostack, preserves_flags)) };
}

/// Drops the TLB entry of the page that holds `vaddr`.
pub fn invlpg(vaddr: usize) {
    // SAFETY: invalidating a TLB entry only makes the next access walk the table.
    unsafe { asm!("invlpg ({})", in(reg) vaddr, options(att_syntax, nostack, preserves_flags)) };
}

/// Flushes every non-global TLB entry by reloading CR3 with its own value.
pub fn flush_all() {
    // SAFETY: the active table stays the same; only cached translations go.
    unsafe { write_cr3(cr3()) };
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc reads a counter; CR4.TSD is clear and the kernel runs in ring 0.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    ((hi as u64) << 32) | lo as u64
}

/// Halts until the next interrupt (forever, with interrupts off).
pub fn halt() {
    // SAFETY: hlt only waits; interrupts stay as they are.
    unsafe { asm!("hlt", options(nomem, nostack, preserves_flags)) };
}

/// Physical address of the local APIC's registers (the reset value of IA32_APIC_BASE).
pub const LOCAL_APIC: usize = 0xfee0_0000;
/// Offset of the local APIC ID register.
const APIC_ID: usize = 0x20;
/// Offset of the local APIC version register.
pub const APIC_VERSION: usize = 0x30;

/// The APIC id of this CPU, from the local APIC's ID register (bits 31:24).
pub fn apic_id() -> usize {
    let reg = (LOCAL_APIC + APIC_ID + config::PHYS_VIRT_OFFSET) as *const u32;
    // SAFETY: the local APIC page is mapped at the high-half offset by the boot
    // table (first 4 GiB) and by the kernel address space (an MMIO region of this
    // board's config); reading the ID register has no side effect.
    (unsafe { reg.read_volatile() } >> 24) as usize
}
