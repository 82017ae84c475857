//! The local APIC (xAPIC, MMIO) and the legacy 8259 PIC.
//!
//! Invariants:
//! - The local APIC's page (physical [`crate::cpu::LOCAL_APIC`]) is mapped at
//!   the high-half offset by the boot table and by the kernel address space
//!   (an MMIO region of this board's config); every CPU sees its own APIC at
//!   that address.
//! - The only interrupts a CPU takes are [`IPI_VECTOR`] (fixed IPIs of
//!   `Board::send_ipi`) and the APIC's spurious vector [`SPURIOUS_VECTOR`]
//!   (ignored, as the architecture asks: no EOI). The 8259 PIC is remapped
//!   away from the exception vectors (to 0x20..0x30) and fully masked before
//!   the boot CPU enables interrupts; the local APIC timer and LINT pins stay
//!   as reset left them (masked on secondary CPUs; LINT0 on the boot CPU is
//!   the PIC's virtual wire, silent with the PIC masked). Any other vector
//!   is reported as an unexpected interrupt (see `crate::trap`).
//! - The ICR is written with interrupts disabled, so an interrupt handler
//!   never interleaves its own ICR writes with an IPI half sent.

use x86_64::instructions::interrupts;
use x86_64::instructions::port::Port;

use crate::cpu::LOCAL_APIC;

/// The vector of `Board::send_ipi`'s IPIs.
pub const IPI_VECTOR: u8 = 0xf0;
/// The local APIC's spurious-interrupt vector (low 4 bits all set, as the
/// oldest xAPICs require).
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Task priority register.
const TPR: usize = 0x80;
/// End of interrupt.
const EOI: usize = 0xb0;
/// Spurious-interrupt vector register: bit 8 enables the APIC.
const SVR: usize = 0xf0;
const SVR_ENABLE: u32 = 1 << 8;
/// Interrupt command register, low and high words.
const ICR_LOW: usize = 0x300;
const ICR_HIGH: usize = 0x310;
/// ICR low: delivery status (send pending).
const ICR_PENDING: u32 = 1 << 12;
/// ICR low: level assert (required for INIT, harmless elsewhere).
const ICR_ASSERT: u32 = 1 << 14;
/// ICR low delivery modes.
const ICR_FIXED: u32 = 0b000 << 8;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;

fn reg(offset: usize) -> *mut u32 {
    (LOCAL_APIC + offset + config::PHYS_VIRT_OFFSET) as *mut u32
}

fn read(offset: usize) -> u32 {
    // SAFETY: the APIC page is mapped (module invariant); the registers read
    // here (ICR, SVR) have no read side effects.
    unsafe { reg(offset).read_volatile() }
}

/// Writes a local APIC register.
///
/// # Safety
///
/// The write's effect on this CPU's APIC (an interrupt sent, a vector
/// enabled) must be one the caller intends.
unsafe fn write(offset: usize, value: u32) {
    // SAFETY: the APIC page is mapped (module invariant); the caller vouches
    // for the effect.
    unsafe { reg(offset).write_volatile(value) }
}

/// Enables this CPU's local APIC with [`SPURIOUS_VECTOR`] and accepts every
/// priority. Called once per CPU with interrupts disabled.
pub fn enable() {
    // SAFETY: enabling the APIC lets it deliver IPIs, which the IDT handles
    // (IPI_VECTOR, SPURIOUS_VECTOR); interrupts are still disabled here.
    unsafe {
        write(TPR, 0);
        write(SVR, SVR_ENABLE | SPURIOUS_VECTOR as u32);
    }
}

/// Signals the end of the interrupt being handled.
pub fn eoi() {
    // SAFETY: called from the IPI handler: the write retires that interrupt.
    unsafe { write(EOI, 0) }
}

/// Sends one interrupt command to the CPU with APIC id `apic_id` and waits
/// until the APIC accepted it.
///
/// # Safety
///
/// The command must be one the target handles: a fixed IPI on a vector its
/// IDT has, or INIT/STARTUP to a CPU being started.
unsafe fn send(apic_id: usize, command: u32) {
    interrupts::without_interrupts(|| {
        while read(ICR_LOW) & ICR_PENDING != 0 {
            core::hint::spin_loop();
        }
        // SAFETY: the caller vouches for the command; the high word only names
        // the destination, and writing the low word sends.
        unsafe {
            write(ICR_HIGH, (apic_id as u32) << 24);
            write(ICR_LOW, command);
        }
        while read(ICR_LOW) & ICR_PENDING != 0 {
            core::hint::spin_loop();
        }
    });
}

/// Sends [`IPI_VECTOR`] to the CPU with APIC id `apic_id`.
pub fn send_ipi(apic_id: usize) {
    // SAFETY: every CPU the kernel runs on has IPI_VECTOR in its IDT (the IDT
    // is shared) before its APIC is enabled.
    unsafe { send(apic_id, ICR_ASSERT | ICR_FIXED | IPI_VECTOR as u32) }
}

/// Sends INIT to `apic_id`: the CPU resets and waits for a STARTUP IPI.
///
/// # Safety
///
/// `apic_id` is a CPU that runs nothing of the kernel's (not yet started).
pub unsafe fn send_init(apic_id: usize) {
    // SAFETY: the caller guarantees the target runs nothing the reset loses.
    unsafe { send(apic_id, ICR_ASSERT | ICR_INIT) }
}

/// Sends STARTUP to `apic_id`: a CPU waiting after INIT starts in real mode at
/// `page << 12`.
///
/// # Safety
///
/// The page must hold a real-mode start routine (`crate::smp`'s trampoline).
pub unsafe fn send_startup(apic_id: usize, page: u8) {
    // SAFETY: the caller guarantees the page holds start code.
    unsafe { send(apic_id, ICR_ASSERT | ICR_STARTUP | page as u32) }
}

/// Remaps the 8259 PIC pair to vectors 0x20..0x30 (away from the exceptions,
/// where the BIOS leaves the master at 0x08) and masks every line.
///
/// # Safety
///
/// Called once, on the boot CPU, with interrupts disabled.
pub unsafe fn disable_pic() {
    let mut master_cmd = Port::<u8>::new(0x20);
    let mut master_data = Port::<u8>::new(0x21);
    let mut slave_cmd = Port::<u8>::new(0xa0);
    let mut slave_data = Port::<u8>::new(0xa1);
    // SAFETY: these ports are the two 8259s of the q35 chipset; the ICW1..4
    // sequence reinitialises them (edge, cascaded on line 2, 8086 mode) and
    // the final writes mask all lines. Interrupts are disabled meanwhile.
    unsafe {
        master_cmd.write(0x11);
        slave_cmd.write(0x11);
        master_data.write(0x20);
        slave_data.write(0x28);
        master_data.write(1 << 2);
        slave_data.write(2);
        master_data.write(0x01);
        slave_data.write(0x01);
        master_data.write(0xff);
        slave_data.write(0xff);
    }
}
