//! Board: QEMU `virt`, aarch64 (Cortex-A72), 4-level 48-bit translation with a
//! 4 KiB granule, the ELF kernel entered at EL1 with the MMU off.
//!
//! - [`boot`]: `_start` at the load address (MMU off), EL2 -> EL1 if needed, MAIR,
//!   TCR, the boot tables (the devices' GiB and RAM both identity-mapped through
//!   TTBR0 and at the high-half offset through TTBR1, 1 GiB blocks), the jump to the
//!   high half,
//!   then `hal::kernel::kernel_main` with the device tree QEMU put at the start of
//!   RAM.
//! - [`trap`]: the exception vector (VBAR_EL1); translation, access-flag and
//!   permission faults (data and instruction aborts) are decoded into
//!   `hal::PageFault` and handed to the kernel; an IRQ (the wake-up SGI) is
//!   acknowledged and handed to `hal::kernel::ipi`; anything else is reported and ends
//!   the machine with a failing status. When `sp` is at the guard page of the
//!   CPU's kernel stack (a stack overflow), the vector saves its frame on that
//!   CPU's trap stack instead, so the overflow is reported (`stack overflow:
//!   ...`) rather than aborting again on every store.
//! - [`percpu`]: one block per CPU, TPIDR_EL1 pointing at it (set before
//!   VBAR_EL1 on every CPU): `cpu_index`, the guard pages and trap stack
//!   top the vector reads, and the CPU's GIC interface bit.
//! - [`smp`]: the other CPUs. `cpus` reads the device tree's `/cpus` (boot CPU
//!   first, then `reg` = MPIDR affinity in tree order) and `/psci`'s `method`;
//!   `start_cpu` is PSCI `CPU_ON` through that conduit (`hvc` or `smc`; anything
//!   else is refused) with the physical address of the secondary entry and of
//!   the CPU's block as context id. The entry sets up the CPU like `_start`,
//!   turns the MMU on with the boot identity half (TTBR0) and the kernel's upper
//!   root (TTBR1), jumps to the high half, loads the kernel's lower root, its
//!   stack, TPIDR_EL1 and VBAR_EL1, and calls `hal::kernel::secondary_main`.
//!   `send_ipi` is `DSB ISHST` then a GICv2 SGI 0 to the targets' CPU
//!   interfaces, and `wait_for_ipi` is `WFI`, then the SGI acknowledged and
//!   `hal::kernel::ipi`. The kernel only wakes idle CPUs with it (no IPI for
//!   shootdowns, see below), but a real interrupt is what lets an idle CPU
//!   sleep: `WFI` waits for one. The board used `DSB; SEV` / `WFE` before,
//!   with the GIC off; under QEMU TCG `WFE` does not sleep, so each idle vCPU
//!   spun and took a host core while CPU 0 worked (see [`smp`] for the
//!   numbers). An SGI that comes while the CPU runs a job (IRQs unmasked) is
//!   taken by the IRQ vector ([`trap`]).
//! - [`gic`]: the GICv2 (distributor 0x0800_0000, CPU interface 0x0801_0000,
//!   mmio regions of the board's TOML): the distributor enabled by the boot
//!   CPU in `rust_entry`, each CPU's interface and SGI 0 by that CPU before it
//!   unmasks IRQs, its interface bit kept in its per-CPU block.
//! - TLB maintenance is broadcast (`TLB_BROADCAST`): `flush_tlb` is `DSB ISHST;
//!   TLBI VAAE1IS (one page) or VMALLE1IS (all); DSB ISH; ISB`. The `IS` forms
//!   reach every CPU of the inner-shareable domain and `DSB ISH` waits for all of
//!   them, so a shootdown needs no IPI. `VAAE1IS` rather than `VAE1IS`: the
//!   kernel uses no ASIDs (every TTBR's ASID field is 0, TCR.A1 = 0), and the
//!   all-ASID form also drops non-global entries whatever ASID they were tagged
//!   with; not the leaf-only `VAALE1IS`, since a flush also follows the unlinking
//!   of a table, whose cached walk entries must go too. The operand is `VA[55:12]`,
//!   so bit 55 selects the half: one instruction serves TTBR0's and TTBR1's
//!   mappings, and `VMALLE1IS` covers both halves and all ASIDs.
//!   `activate_page_table` flushes only the local TLB (`TLBI VMALLE1`): only this
//!   CPU loaded new roots.
//! - stacks (linker script, `build.rs`): per CPU a kernel stack (the boot stack
//!   on CPU 0) and a trap stack, each above a 4 KiB guard page that the kernel
//!   address space leaves unmapped.
//! - [`probe`]: byte loads/stores whose faults are fixed up instead of fatal.
//! - [`console`]: the PL011 UART.
//! - exit: pass is PSCI `SYSTEM_OFF` through `hvc #0` (QEMU exits with status 0;
//!   `smc #0` when QEMU entered at EL2, where the device tree's conduit is SMC);
//!   fail is the semihosting `SYS_EXIT` call with status 1 (`hlt #0xf000`, needs
//!   QEMU's `-semihosting`, which the board's TOML passes).
//!
//! Address spaces: TTBR0_EL1 and TTBR1_EL1 each get their own root table
//! (`RootLayout::PerHalf`): TTBR0 the lower half's (where the app window lives),
//! TTBR1 the upper half's (the kernel: RAM and devices at
//! `physical + PHYS_VIRT_OFFSET`). With T0SZ = T1SZ = 16 both registers index
//! their level-0 table with VA bits 47..39, so a shared root would make every
//! mapping reachable from both halves (`0x0000_8000_0000_0000 + pa` would reach
//! the kernel through TTBR0, `0xffff_0000_0000_0000 + va` the app window through
//! TTBR1). With a root per half, the lower root has only entries 0..255 and the
//! upper root only entries 256..511 (the offset `0xffff_8000_0000_0000` puts the
//! kernel there), so such an alias finds an empty entry and faults. The boot
//! tables follow the same rule. `apps/halves` probes the aliases on every run.
//!
//! The crate is empty on other architectures (a host `cargo check --workspace` then
//! passes over it); the runtime names it only when building for aarch64.
#![no_std]
#![cfg(target_arch = "aarch64")]

pub mod boot;
pub mod console;
pub mod gic;
pub mod meta;
pub mod percpu;
pub mod probe;
pub mod smp;
pub mod trap;

use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTVCT_EL0, Readable, TTBR0_EL1, TTBR1_EL1, Writeable};
use hal::{Board, BootInfo, ExitStatus, KnownWord, RootLayout, Roots};
use memory_addr::VirtAddr;
use page_table_entry::aarch64::A64PTE;

/// The board.
pub struct ArmVirt;

/// PSCI 0.2 `SYSTEM_OFF` function id.
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
/// Semihosting `SYS_EXIT` operation.
const SEMIHOSTING_SYS_EXIT: u64 = 0x18;
/// `ADP_Stopped_ApplicationExit`: the reason that carries an exit status.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;

/// The CPU (index + 1) that started `exit`, 0 before: a second entry on the
/// same CPU means the exit call itself trapped; on another CPU, that the
/// machine is already being ended.
static EXITING: AtomicUsize = AtomicUsize::new(0);

/// PSCI `SYSTEM_OFF`: QEMU ends with status 0. Returns only if PSCI is absent.
///
/// QEMU's built-in PSCI answers `hvc` when the machine has no EL2 (the kernel was
/// entered at EL1) and `smc` when it has one (entered at EL2, which the kernel left
/// without a vector of its own).
fn psci_system_off() {
    // SAFETY: a call to QEMU's built-in PSCI firmware through the conduit the device
    // tree names for this configuration; SYSTEM_OFF does not return, and if the call
    // is not implemented it returns an error in x0, which is discarded.
    unsafe {
        if boot::entry_el() == 2 {
            asm!("smc #0", inout("x0") PSCI_SYSTEM_OFF => _, options(nostack));
        } else {
            asm!("hvc #0", inout("x0") PSCI_SYSTEM_OFF => _, options(nostack));
        }
    }
}

/// Semihosting `SYS_EXIT` with `code`: QEMU ends with that status.
fn semihosting_exit(code: u64) {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code];
    // SAFETY: the semihosting call reads the two-word parameter block at x1 (a live
    // stack array, mapped) and ends QEMU; it writes only x0.
    unsafe {
        asm!(
            "hlt #0xf000",
            inout("x0") SEMIHOSTING_SYS_EXIT => _,
            in("x1") block.as_ptr(),
            options(nostack, readonly),
        );
    }
}

fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfi();
    }
}

impl Board for ArmVirt {
    const NAME: &'static str = "aarch64-qemu-virt";
    type PagingMeta = meta::LocalFlushMeta;
    type Pte = A64PTE;
    const ROOT_LAYOUT: RootLayout = RootLayout::PerHalf;
    type Paging = frames::global::GlobalPaging;

    fn console_write(bytes: &[u8]) {
        console::write_bytes(bytes);
    }

    fn exit(status: ExitStatus) -> ! {
        let me = smp::cpu_index() + 1;
        match EXITING.compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {}
            // Another CPU ends the machine with its status.
            Err(other) if other != me => halt(),
            Err(_) => {
                // The exit call trapped (semihosting not enabled: `hlt` is undefined).
                // Powering off would read as a pass, so stop here; the harness times out.
                console::write_bytes(
                    b"\nexit: semihosting is not enabled (QEMU -semihosting); halting\n",
                );
                halt();
            }
        }
        match status {
            ExitStatus::Pass => {
                psci_system_off();
                semihosting_exit(0);
            }
            ExitStatus::Fail => semihosting_exit(1),
        }
        halt()
    }

    fn cycles() -> u64 {
        CNTVCT_EL0.get()
    }

    fn cycles_per_sec() -> Option<u64> {
        Some(CNTFRQ_EL0.get()).filter(|&f| f != 0)
    }

    unsafe fn activate_page_table(roots: Roots) {
        // Make the table's contents visible to the walker before it is used.
        barrier::dsb(barrier::ISHST);
        // A root per half (see the crate docs).
        TTBR0_EL1.set(roots.lower.as_usize() as u64);
        TTBR1_EL1.set(roots.upper.as_usize() as u64);
        barrier::isb(barrier::SY);
        // Only this CPU loaded new roots: a local flush is enough.
        // SAFETY: drops this CPU's cached translations only; `dsb nsh` completes
        // it and `isb` makes later instructions use the new tables.
        unsafe { asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
    }

    fn flush_tlb(vaddr: Option<VirtAddr>) {
        // Broadcast (`...IS`): the invalidation reaches every CPU of the inner
        // shareable domain, and `dsb ish` waits until all have done it. By VA:
        // `VAAE1IS` (every ASID, non-leaf too: see the crate docs), the operand
        // is VA[55:12], so bit 55 picks TTBR0's or TTBR1's half.
        // SAFETY: TLB maintenance only drops cached translations; the barriers
        // order it after earlier table writes and before later accesses.
        unsafe {
            match vaddr {
                Some(va) => asm!(
                    "dsb ishst",
                    "tlbi vaae1is, {}",
                    "dsb ish",
                    "isb",
                    in(reg) (va.as_usize() >> 12) & ((1 << 44) - 1),
                    options(nostack)
                ),
                None => asm!(
                    "dsb ishst",
                    "tlbi vmalle1is",
                    "dsb ish",
                    "isb",
                    options(nostack)
                ),
            }
        }
    }

    fn known_word(boot: &BootInfo) -> KnownWord {
        KnownWord::fdt_magic(boot)
    }

    const TLB_BROADCAST: bool = true;

    fn cpus(boot: &BootInfo) -> hal::CpuList {
        smp::cpus(boot)
    }

    unsafe fn start_cpu(start: &hal::CpuStart) -> Result<(), hal::StartError> {
        // SAFETY: the caller keeps `Board::start_cpu`'s contract, which is
        // `smp::start_cpu`'s.
        unsafe { smp::start_cpu(start) }
    }

    fn cpu_index() -> usize {
        smp::cpu_index()
    }

    fn send_ipi(targets: u64) {
        smp::send_ipi(targets);
    }

    fn wait_for_ipi() {
        smp::wait_for_ipi();
    }
}
