//! The GICv2 of QEMU `virt`, used for one thing: the wake-up IPI (SGI 0).
//!
//! QEMU `virt` builds a GICv2 unless `-machine gic-version=...` says otherwise
//! (the device tree's `/intc` node, `compatible = "arm,cortex-a15-gic"`, `reg`
//! = the distributor at physical 0x0800_0000 and the CPU interface at
//! 0x0801_0000, 64 KiB each). Both are mmio regions of the board's TOML, so the
//! kernel address space maps them as device memory at `phys +
//! PHYS_VIRT_OFFSET`; the boot tables map QEMU virt's first GiB (all its
//! devices) there as well, so the boot CPU can set the distributor up in
//! `rust_entry`, before it switches tables and before any secondary starts.
//!
//! The few registers are written by hand rather than through the `arm-gic`
//! crate: the board needs seven registers of one interrupt (no routing, no
//! priorities beyond the mask, no SPIs), and a crate would bring its own MMIO
//! abstraction and address handling for what is a handful of volatile accesses.
//!
//! QEMU builds the GIC without the security extensions (the machine has no
//! EL3 unless `secure=on`), so every interrupt is in group 0, GICD_CTLR and
//! GICC_CTLR bit 0 enable it, and with GICC_CTLR.FIQEn clear it is signalled as
//! IRQ. SGI 0 keeps its reset priority (0, the highest); GICC_PMR = 0xff lets
//! every priority through.
//!
//! Per CPU ([`init_cpu`], on every CPU before it unmasks IRQs): the CPU
//! interface on, the priority mask open, SGI 0 enabled (GICD_ISENABLER0 is
//! banked per CPU), and the CPU's interface mask (GICD_ITARGETSR0's byte 0,
//! banked: it reads as the calling CPU's own bit) recorded in its block
//! ([`crate::percpu::CpuLocal::gic_mask`]) for [`send_sgi`]'s target list.
//! A GICv2 has at most 8 CPU interfaces (QEMU `virt` with a GICv2 accepts at
//! most 8 CPUs).
//!
//! [`check_device_tree`] (called by `crate::smp::cpus`) warns when the device
//! tree does not list a GICv2 at these addresses.

use core::sync::atomic::Ordering;

use crate::percpu::{self, BLOCKS};

/// Physical address of the distributor (GICD).
pub const GICD_PADDR: usize = 0x0800_0000;
/// Physical address of the CPU interface (GICC).
pub const GICC_PADDR: usize = 0x0801_0000;

const GICD: usize = GICD_PADDR + config::PHYS_VIRT_OFFSET;
const GICC: usize = GICC_PADDR + config::PHYS_VIRT_OFFSET;

/// GICD_CTLR: distributor enable.
const GICD_CTLR: usize = 0x000;
/// GICD_ISENABLER0: set-enable of interrupts 0..31 (banked per CPU).
const GICD_ISENABLER0: usize = 0x100;
/// GICD_ITARGETSR0: targets of interrupts 0..3 (banked, read-only: each byte
/// is the reading CPU's own interface bit).
const GICD_ITARGETSR0: usize = 0x800;
/// GICD_SGIR: software-generated interrupt (write only).
const GICD_SGIR: usize = 0xf00;

/// GICC_CTLR: CPU interface enable.
const GICC_CTLR: usize = 0x000;
/// GICC_PMR: priority mask.
const GICC_PMR: usize = 0x004;
/// GICC_IAR: interrupt acknowledge (reading acknowledges).
const GICC_IAR: usize = 0x00c;
/// GICC_EOIR: end of interrupt.
const GICC_EOIR: usize = 0x010;

/// The SGI the board sends to wake a CPU.
pub const SGI_WAKE: u32 = 0;
/// GICC_IAR's interrupt id when nothing is pending.
pub const SPURIOUS: u32 = 1023;

/// Warns unless the device tree lists a GICv2 at [`GICD_PADDR`] and
/// [`GICC_PADDR`] (QEMU `-machine virt,gic-version=3` would build a GICv3,
/// which this board does not drive: secondary CPUs would then never wake).
pub fn check_device_tree(fdt: &fdt::Fdt<'_>) {
    let gic = fdt.find_compatible(&["arm,cortex-a15-gic", "arm,gic-400"]);
    let regs = gic.and_then(|n| n.reg()).map(|mut r| {
        let d = r.next().map(|r| r.starting_address as usize);
        let c = r.next().map(|r| r.starting_address as usize);
        (d, c)
    });
    if regs != Some((Some(GICD_PADDR), Some(GICC_PADDR))) {
        log::warn!(
            "the device tree has no GICv2 at {GICD_PADDR:#x}/{GICC_PADDR:#x} ({regs:x?}): \
             idle CPUs may never be woken"
        );
    }
}

fn gicd(offset: usize) -> *mut u32 {
    (GICD + offset) as *mut u32
}

fn gicc(offset: usize) -> *mut u32 {
    (GICC + offset) as *mut u32
}

/// Enables the distributor. Once, on the boot CPU, before any secondary
/// starts.
pub fn init_distributor() {
    // SAFETY: GICD_CTLR is a register of the distributor, mapped as device
    // memory at `GICD` (see the module docs); enabling forwards interrupts to
    // CPU interfaces, none of which signals anything until `init_cpu` enables it
    // and enables an interrupt (SGI 0) on it.
    unsafe { gicd(GICD_CTLR).write_volatile(1) };
}

/// Sets up the calling CPU's side (see the module docs). Call with IRQs masked.
pub fn init_cpu() {
    // SAFETY: GIC registers at their mapped device addresses (module docs).
    // ITARGETSR0 and ISENABLER0 are banked: this CPU reads its own interface
    // bit and enables SGI 0 for itself only; the PMR and CTLR writes affect this
    // CPU's interface only. IRQs are masked, so an SGI that is signalled from
    // here on waits for `wait_for_ipi` or for the IRQ vector.
    let mask = unsafe {
        let mask = gicd(GICD_ITARGETSR0).read_volatile() & 0xff;
        gicd(GICD_ISENABLER0).write_volatile(1 << SGI_WAKE);
        gicc(GICC_PMR).write_volatile(0xff);
        gicc(GICC_CTLR).write_volatile(1);
        mask
    };
    // Release: read by other CPUs' `send_sgi` (who also learn that this CPU is
    // online through the runtime's release/acquire chain).
    percpu::current()
        .gic_mask
        .store(mask as usize, Ordering::Release);
}

/// Sends SGI 0 to the CPUs of `targets` (bit i = kernel CPU i) that have
/// recorded their interface (see [`init_cpu`]).
pub fn send_sgi(targets: u64) {
    let mut list = 0usize;
    for (cpu, block) in BLOCKS.iter().enumerate() {
        if targets & (1 << cpu) != 0 {
            list |= block.gic_mask.load(Ordering::Acquire);
        }
    }
    let list = (list & 0xff) as u32;
    if list == 0 {
        return;
    }
    // SAFETY: `dsb ishst` completes this CPU's earlier stores (the job it
    // queued) before the SGIR write that wakes the targets, so a woken CPU
    // sees them; GICD_SGIR is the distributor's write-only SGI register,
    // mapped as device memory (module docs). TargetListFilter 0: the list.
    unsafe {
        core::arch::asm!("dsb ishst", options(nostack, preserves_flags));
        gicd(GICD_SGIR).write_volatile((list << 16) | SGI_WAKE);
    }
}

/// Acknowledges the highest-priority pending interrupt: GICC_IAR (the
/// interrupt id is bits 9..0; 1023 when none is pending).
pub fn acknowledge() -> u32 {
    // SAFETY: reading GICC_IAR (mapped device memory, module docs)
    // acknowledges the interrupt it returns, which the caller ends with
    // `end_of_interrupt` (or the machine is ended).
    unsafe { gicc(GICC_IAR).read_volatile() }
}

/// Ends an interrupt that `acknowledge` returned (`iar` as read).
pub fn end_of_interrupt(iar: u32) {
    // SAFETY: GICC_EOIR (mapped device memory, module docs) with the value
    // GICC_IAR returned drops the running priority and deactivates it.
    unsafe { gicc(GICC_EOIR).write_volatile(iar) };
}

/// What [`handle`] found pending.
pub enum Irq {
    /// The wake-up SGI: acknowledged, ended, and `hal::kernel::ipi` called.
    Ipi,
    /// Nothing (GICC_IAR read 1023).
    Spurious,
    /// Another interrupt (the GICC_IAR value): acknowledged, not ended.
    Unexpected(u32),
}

/// Acknowledges what is pending; for the wake-up SGI ends it and lets the
/// kernel poll (`hal::kernel::ipi`). With IRQs masked (the vector, or
/// `wait_for_ipi`).
pub fn handle() -> Irq {
    let iar = acknowledge();
    match iar & 0x3ff {
        SGI_WAKE => {
            end_of_interrupt(iar);
            hal::kernel::ipi();
            Irq::Ipi
        }
        SPURIOUS => Irq::Spurious,
        _ => Irq::Unexpected(iar),
    }
}
