//! Several CPUs: the CPU list from the device tree, PSCI `CPU_ON`, the
//! secondary entry, and the IPI as a GICv2 SGI (`SGIR` / `WFI`).
//!
//! # Finding CPUs ([`cpus`])
//! The boot CPU first (`BootInfo::cpu_id`: its MPIDR_EL1 affinity, Aff3..Aff0),
//! then every `/cpus/cpu@*` node's `reg` (the same affinity bits, with the
//! node's `#address-cells` of 1 or 2) in tree order, skipping nodes whose
//! `status` is neither `okay` nor `ok`. The `/psci` node's `method` (`hvc` or
//! `smc`) is recorded for [`start_cpu`]; QEMU's `-kernel` says `hvc`.
//!
//! # Starting one ([`start_cpu`])
//! The boot CPU fills in the CPU's block ([`crate::percpu`]: index, stacks,
//! roots), cleans its cache line to the point of coherency (the CPU reads it
//! with its MMU and caches off) and calls PSCI `CPU_ON` (SMC64 id
//! `0xC400_0003`) with the target's MPIDR, the physical address of
//! `tessera_a64_secondary_start` and, as context id (x0 at entry), the
//! block's physical address. The new CPU, at EL1 (EL2 is left as `_start`
//! does) with its MMU off:
//! 1. sets up MAIR, TCR, CPACR like the boot CPU (`boot::el1_setup_asm`);
//! 2. turns the MMU on with TTBR0 = the boot tables' lower root (identity
//!    mapping of RAM, for the instructions until the jump) and TTBR1 = the
//!    kernel's upper root (`start.roots.upper`) straight away, then jumps to
//!    the high half;
//! 3. loads TTBR0 = the kernel's lower root (`start.roots.lower`): from here
//!    on only the kernel page table is in use. TTBR1 is never switched while
//!    it translates the running code;
//! 4. switches to its kernel stack, points TPIDR_EL1 at its block (before
//!    VBAR_EL1: the vector reads the block), sets VBAR_EL1 and calls
//!    `secondary_entry`, which sets up its GIC CPU interface and SGI 0
//!    (`crate::gic::init_cpu`), unmasks IRQs (the contract's "interrupts on";
//!    SGI 0 is the only interrupt enabled) and enters
//!    `hal::kernel::secondary_main`.
//!
//! # IPIs
//! With `TLBI ...IS` the flush reaches every CPU (`Board::TLB_BROADCAST`), so
//! the kernel sends an IPI only to wake a CPU that sleeps in
//! [`wait_for_ipi`]. It is still a real interrupt, GICv2 SGI 0
//! ([`crate::gic`]), so that an idle CPU can sleep in `WFI`, which waits for
//! one:
//! - [`send_ipi`]: `DSB ISHST` (the queued job is visible before the wake-up),
//!   then GICD_SGIR with the targets' interface bits (recorded by each CPU in
//!   its block) and SGI 0; only the targets are woken.
//! - [`wait_for_ipi`], with IRQs masked: `WFI`. A pending IRQ wakes `WFI`
//!   whatever PSTATE.I says, so an SGI that came after the idle loop masked
//!   IRQs and looked at its queue makes it return at once: no wake-up is lost.
//!   Then GICC_IAR: SGI 0 is ended (GICC_EOIR) and `hal::kernel::ipi` called;
//!   1023 (spurious, nothing pending) returns; anything else is reported and
//!   ends the machine with a failing status.
//! - While a CPU runs a job its IRQs are unmasked (the runtime's idle loop,
//!   `kernel_guard::IrqSave`), so an SGI sent then is taken by the IRQ vector,
//!   which does the same as `wait_for_ipi` after its `WFI` ([`crate::trap`]);
//!   the idle loop looks at its queue again with IRQs masked before it
//!   sleeps, so that wake-up is not needed any more.
//!
//! Before, the board sent `DSB ISH; SEV` and waited with `WFE`, the GIC off.
//! That lost no wake-up either, but under QEMU TCG `WFE` does not sleep (it
//! yields), so every idle vCPU spun on a host core while CPU 0 worked:
//! `docs/BENCHMARKS.md` recorded 2,405 lazy faults/s on CPU 0 alone with 4
//! CPUs booted against 253,894/s with 1 booted, and `apps/huge` with SMP=4
//! took 3.5-4.1 s and 2.0-2.3 s of host CPU (user) in QEMU, against 0.6-1.3 s
//! and 0.3-0.4 s with `WFI` (a 2-core host shared with other work).

use core::arch::{asm, global_asm};
use core::fmt::Write;
use core::sync::atomic::{AtomicU8, Ordering};

use aarch64_cpu::asm::barrier;
use hal::BootInfo;
use hal::smp::{CpuList, CpuStart, MAX_CPUS, StartError};

use crate::boot::{self, el1_setup_asm};
use crate::gic;
use crate::percpu::{self, BLOCKS, CpuLocal};

/// PSCI 0.2 `CPU_ON`, SMC64 calling convention.
const PSCI_CPU_ON: u64 = 0xC400_0003;
/// MPIDR_EL1's affinity fields (Aff3, Aff2..Aff0), as in `BootInfo::cpu_id`
/// and a `/cpus` node's `reg`.
const MPIDR_AFFINITY: usize = 0xff_00ff_ffff;

/// How PSCI is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Conduit {
    /// Not read yet, or the device tree has no (usable) `/psci` node.
    Unknown = 0,
    /// `hvc #0`.
    Hvc = 1,
    /// `smc #0`.
    Smc = 2,
}

/// The conduit the device tree's `/psci` `method` names ([`cpus`] sets it).
static CONDUIT: AtomicU8 = AtomicU8::new(Conduit::Unknown as u8);

fn conduit() -> Conduit {
    match CONDUIT.load(Ordering::Relaxed) {
        1 => Conduit::Hvc,
        2 => Conduit::Smc,
        _ => Conduit::Unknown,
    }
}

/// The device tree, if `boot.fdt` holds one that lies in RAM as a whole.
fn device_tree(boot: &BootInfo) -> Option<fdt::Fdt<'static>> {
    let pa = boot.fdt?.as_usize();
    let (_, ram_end) = config::ram_range(pa)?;
    if !pa.is_multiple_of(8) || ram_end - pa < 8 {
        return None;
    }
    let header = (pa + config::PHYS_VIRT_OFFSET) as *const u32;
    // SAFETY: the two aligned words at `pa` lie in RAM, which the kernel maps at
    // `PHYS_VIRT_OFFSET` (and the runtime reserves the device tree's frames, so
    // nothing writes there).
    let (magic, size) = unsafe { (header.read(), header.add(1).read()) };
    let size = u32::from_be(size) as usize;
    if u32::from_be(magic) != hal::KnownWord::FDT_MAGIC || size > ram_end - pa {
        return None;
    }
    // SAFETY: a header with the magic is at `pa` and its `totalsize` bytes lie in
    // mapped RAM that nothing writes; the parser reads only those.
    unsafe { fdt::Fdt::from_ptr(header.cast()) }.ok()
}

/// The CPUs of the device tree, boot CPU first; records the PSCI conduit.
pub fn cpus(boot: &BootInfo) -> CpuList {
    let mut list = CpuList::boot_only(boot.cpu_id);
    let Some(fdt) = device_tree(boot) else {
        log::warn!("no device tree: only the boot CPU");
        return list;
    };
    let method = fdt
        .find_node("/psci")
        .and_then(|n| n.property("method"))
        .and_then(|p| p.as_str());
    let conduit = match method {
        Some("hvc") => Conduit::Hvc,
        Some("smc") => Conduit::Smc,
        other => {
            log::warn!("PSCI method {other:?}: secondary CPUs cannot be started");
            Conduit::Unknown
        }
    };
    CONDUIT.store(conduit as u8, Ordering::Relaxed);
    gic::check_device_tree(&fdt);
    let Some(node) = fdt.find_node("/cpus") else {
        log::warn!("the device tree has no /cpus: only the boot CPU");
        return list;
    };
    let cells = node.cell_sizes().address_cells;
    for cpu in node.children() {
        if cpu.name != "cpu" && !cpu.name.starts_with("cpu@") {
            continue; // cpu-map and the like
        }
        let status = cpu.property("status").and_then(|p| p.as_str());
        if !matches!(status, None | Some("okay") | Some("ok")) {
            continue;
        }
        let Some(reg) = cpu.property("reg").map(|p| p.value) else {
            continue;
        };
        let hw = match (cells, reg) {
            (1, [a, b, c, d, ..]) => u32::from_be_bytes([*a, *b, *c, *d]) as usize,
            (2, [a, b, c, d, e, f, g, h, ..]) => {
                u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]) as usize
            }
            _ => {
                log::warn!("{}: unreadable reg ({cells} address cells)", cpu.name);
                continue;
            }
        };
        list.push(hw & MPIDR_AFFINITY);
    }
    list
}

/// PSCI `CPU_ON` through `conduit`: the PSCI return code (0 = success).
fn psci_cpu_on(conduit: Conduit, mpidr: usize, entry: usize, context: usize) -> isize {
    let ret: usize;
    // SAFETY: a PSCI call to the firmware (QEMU's built-in PSCI) through the
    // conduit the device tree names; it reads x0..x3, returns its status in x0,
    // may change the other argument and scratch registers (clobber_abi("C")) and
    // touches no memory of ours. The started CPU enters `entry` on its own.
    unsafe {
        match conduit {
            Conduit::Hvc => asm!(
                "hvc #0",
                inlateout("x0") PSCI_CPU_ON as usize => ret,
                in("x1") mpidr,
                in("x2") entry,
                in("x3") context,
                clobber_abi("C"),
                options(nostack),
            ),
            Conduit::Smc => asm!(
                "smc #0",
                inlateout("x0") PSCI_CPU_ON as usize => ret,
                in("x1") mpidr,
                in("x2") entry,
                in("x3") context,
                clobber_abi("C"),
                options(nostack),
            ),
            Conduit::Unknown => return -1, // NOT_SUPPORTED
        }
    }
    ret as isize
}

/// Cleans `block` to the point of coherency, so that a CPU reading it with
/// its MMU (and so its caches) off sees what was written.
fn clean_to_poc(block: &CpuLocal) {
    let ctr: u64;
    // SAFETY: reads CTR_EL0 (cache type), which EL1 may always read.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    // CTR_EL0.DminLine: log2 of the smallest data cache line, in words.
    let line = 4usize << ((ctr >> 16) & 0xf);
    let start = block as *const CpuLocal as usize;
    for va in (start..start + core::mem::size_of::<CpuLocal>()).step_by(line) {
        // SAFETY: `dc cvac` writes a dirty line back to memory and changes no
        // data; `va` lies in the block, which is mapped, and the clean is ordered
        // after this CPU's earlier stores to the same line.
        unsafe { asm!("dc cvac, {}", in(reg) va, options(nostack, preserves_flags)) };
    }
    // `dsb sy` completes the cleans (for every observer, the MMU-off one
    // included) before the PSCI call.
    barrier::dsb(barrier::SY);
}

/// Starts `start.index` with PSCI `CPU_ON` (see the module docs).
///
/// # Safety
///
/// As `hal::Board::start_cpu`: once per CPU, from the boot CPU, with stacks
/// that belong to that CPU alone and the kernel's page table as `start.roots`.
pub unsafe fn start_cpu(start: &CpuStart) -> Result<(), StartError> {
    if start.index == 0 || start.index >= MAX_CPUS {
        return Err(StartError::Unsupported);
    }
    let conduit = conduit();
    if conduit == Conduit::Unknown {
        return Err(StartError::Unsupported);
    }
    let block = &BLOCKS[start.index];
    block.set_stacks(start.index, start.stack_top, start.trap_stack_top);
    block
        .ttbr0
        .store(start.roots.lower.as_usize(), Ordering::Relaxed);
    block
        .ttbr1
        .store(start.roots.upper.as_usize(), Ordering::Relaxed);
    clean_to_poc(block);
    let entry = &raw const tessera_a64_secondary_start as usize - config::PHYS_VIRT_OFFSET;
    let context = block as *const CpuLocal as usize - config::PHYS_VIRT_OFFSET;
    match psci_cpu_on(conduit, start.hw_id, entry, context) {
        0 => Ok(()),
        code => Err(StartError::Firmware(code)),
    }
}

unsafe extern "C" {
    static tessera_a64_secondary_start: u8;
}

global_asm!(
    ".section .text",
    ".balign 4",
    ".global tessera_a64_secondary_start",
    "tessera_a64_secondary_start:",
    // x0: the physical address of this CPU's block (the PSCI context id).
    "   mov     x19, x0",
    el1_setup_asm!(),
    // MMU on: TTBR0 the boot identity half (for the next few instructions),
    // TTBR1 the kernel's own upper root.
    "   adrp    x10, {l0_low}",
    "   ldr     x11, [x19, #{ttbr1}]",
    "   msr     ttbr0_el1, x10",
    "   msr     ttbr1_el1, x11",
    "   isb",
    "   tlbi    vmalle1",
    "   dsb     nsh",
    "   isb",
    "   ldr     x9, ={sctlr_on}",
    "   msr     sctlr_el1, x9",
    "   isb",
    "   ldr     x9, =tessera_a64_secondary_high",
    "   br      x9",
    "tessera_a64_secondary_high:",
    // The high half: the block at its kernel address, the kernel's lower root.
    "   ldr     x9, ={offset}",
    "   add     x19, x19, x9",
    "   ldr     x10, [x19, #{ttbr0}]",
    "   msr     ttbr0_el1, x10",
    "   isb",
    "   tlbi    vmalle1",
    "   dsb     nsh",
    "   isb",
    "   ldr     x9, [x19, #{stack_top}]",
    "   mov     sp, x9",
    "   msr     tpidr_el1, x19",
    "   ldr     x9, =tessera_a64_vectors",
    "   msr     vbar_el1, x9",
    "   isb",
    "   mov     x29, xzr",
    "   mov     x30, xzr",
    "   ldr     x0, [x19, #{index}]",
    "   ldr     x9, ={entry}",
    "   br      x9",
    "   .ltorg",
    sctlr_off = const boot::SCTLR_MMU_OFF,
    sctlr_on = const boot::SCTLR_MMU_ON,
    mair = const boot::MAIR,
    tcr = const boot::TCR,
    offset = const config::PHYS_VIRT_OFFSET,
    ttbr0 = const percpu::TTBR0,
    ttbr1 = const percpu::TTBR1,
    stack_top = const percpu::STACK_TOP,
    index = const percpu::INDEX,
    l0_low = sym boot::BOOT_L0_LOW,
    entry = sym secondary_entry,
);

/// First Rust code on a secondary CPU: its kernel stack, the kernel page
/// table, its trap vector and TPIDR_EL1 are in place; IRQs are masked.
extern "C" fn secondary_entry(index: usize) -> ! {
    // Its GIC CPU interface and SGI 0 (the distributor is on: the boot CPU
    // enabled it before starting any CPU).
    gic::init_cpu();
    // SAFETY: unmasks IRQs only, as the contract asks (`hal::smp`): the only
    // interrupt enabled is the wake-up SGI, which the IRQ vector handles
    // (`crate::trap`).
    unsafe { asm!("msr daifclr, #2", options(nomem, nostack)) };
    hal::kernel::secondary_main(index)
}

/// The calling CPU's index (TPIDR_EL1, see [`crate::percpu`]).
pub fn cpu_index() -> usize {
    percpu::index()
}

/// Sends the wake-up SGI to `targets` (bit i = kernel CPU i): `DSB ISHST`,
/// then GICD_SGIR with their interfaces (see the module docs).
pub fn send_ipi(targets: u64) {
    gic::send_sgi(targets);
}

/// Sleeps in `WFI` until an interrupt is pending at this CPU's GIC interface
/// (at once if one is), acknowledges it and, for the wake-up SGI, lets the
/// kernel poll. Called with IRQs masked; nothing here unmasks them. Any other
/// interrupt is reported and ends the machine with a failing status.
pub fn wait_for_ipi() {
    // PSTATE.I masks the exception, not the wake-up: `WFI` returns once the
    // GIC signals IRQ to this CPU.
    aarch64_cpu::asm::wfi();
    match gic::handle() {
        gic::Irq::Ipi | gic::Irq::Spurious => {}
        gic::Irq::Unexpected(iar) => {
            let mut out = hal::ConsoleWriter::<crate::ArmVirt>::new();
            // The console cannot fail (see `hal::ConsoleWriter`).
            let _ = writeln!(
                out,
                "\nunexpected interrupt {} (GICC_IAR {iar:#x}) on CPU {} waiting for an IPI",
                iar & 0x3ff,
                cpu_index()
            );
            <crate::ArmVirt as hal::Board>::exit(hal::ExitStatus::Fail);
        }
    }
}
