//! Boot: from QEMU's jump to the ELF entry to the kernel entry.
//!
//! QEMU enters `_start` at its physical address (the ELF's entry is `_start_phys`)
//! with the MMU off, at EL1 (EL2 when the machine has virtualization on). For an
//! ELF image `x0` carries no device tree; QEMU puts the device tree at the start of
//! RAM instead, and `find_fdt` checks for it there (and in `x0`, if it is ever
//! set) by its magic.
//!
//! `_start`:
//! 1. (`el1_setup_asm`, shared with the secondary CPUs' entry in [`crate::smp`])
//!    drops from EL2 to EL1h if needed (EL1 in AArch64, counters readable at EL1),
//!    and tells `rust_entry` which EL it was entered at (the PSCI conduit
//!    depends on it: see `ArmVirt::exit`);
//! 2. masks all exceptions, lets FP/SIMD run untrapped (the softfloat target does not
//!    use it, but a stray FP instruction then is not an undefined-instruction trap);
//! 3. sets MAIR_EL1 to the attributes `page_table_entry`'s `A64PTE` indexes
//!    (index 0 Device-nGnRE, 1 Normal write-back, 2 Normal non-cacheable),
//!    TCR_EL1 for two 48-bit halves with 4 KiB granules (IPS from the CPU's PARange);
//! 4. points level-0 entry 0 of `BOOT_L0_LOW` (the identity half, TTBR0) and the
//!    level-0 entry of `PHYS_VIRT_OFFSET` of `BOOT_L0_HIGH` (the kernel half,
//!    TTBR1) at `BOOT_L1`, one root per TTBR as in the kernel's own table (see the
//!    crate docs): the first GiB of physical memory (QEMU virt's devices) as
//!    device memory and every GiB that holds RAM (from the board's config, `MEM=`
//!    included) as normal memory are then mapped both at 0 and at the high-half
//!    offset, with 1 GiB blocks, so that the frames the runtime takes for the
//!    kernel's page tables are reachable before it switches to them;
//! 5. turns on the MMU and caches, moves to the boot stack `_estack` at its
//!    high-half address and jumps to `rust_entry` there, which clears .bss,
//!    points TPIDR_EL1 at CPU 0's block ([`crate::percpu`]) and only then sets
//!    the trap vector.
//!
//! The identity half exists only for the few instructions between the MMU switch and
//! the jump; the kernel address space the runtime builds (a root per TTBR, see
//! `ArmVirt::activate_page_table`) replaces both halves.

use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use hal::BootInfo;
use memory_addr::PhysAddr;
use page_table_entry::aarch64::{DescriptorAttr, MemAttr};
use paging::geometry::{ENTRIES, index, span};

/// One translation table: 512 descriptors, page aligned.
#[repr(C, align(4096))]
pub struct Table([u64; ENTRIES]);

/// Device memory block: never executable.
const BOOT_DEVICE: u64 = DescriptorAttr::from_mem_attr(MemAttr::Device)
    .union(DescriptorAttr::VALID)
    .union(DescriptorAttr::AF)
    .union(DescriptorAttr::PXN)
    .union(DescriptorAttr::UXN)
    .bits();
/// Normal memory block (inner shareable, write-back): read, write, execute at EL1.
const BOOT_NORMAL: u64 = DescriptorAttr::from_mem_attr(MemAttr::Normal)
    .union(DescriptorAttr::VALID)
    .union(DescriptorAttr::AF)
    .union(DescriptorAttr::UXN)
    .bits();
/// A valid table descriptor (bits 0 and 1).
const TABLE_DESC: u64 = 0b11;

/// Height of level 0 (the root of the 4-level table), whose entries map 512 GiB.
const L0: usize = 3;
/// Level-0 index of the kernel half.
const HIGH_L0_INDEX: usize = index(config::PHYS_VIRT_OFFSET, L0);
// The high half must be a TTBR1 address of a 48-bit space whose level-0 entry holds
// the whole boot mapping (offset aligned to 512 GiB).
const _: () = assert!(config::PHYS_VIRT_OFFSET >> 48 == 0xffff);
const _: () = assert!(config::PHYS_VIRT_OFFSET.is_multiple_of(span(L0)));

/// MAIR_EL1: the memory attributes `A64PTE` indexes.
pub const MAIR: u64 = MemAttr::MAIR_VALUE;

/// TCR_EL1 without IPS (filled in from ID_AA64MMFR0_EL1.PARange at boot):
/// T0SZ = T1SZ = 16 (48-bit halves), 4 KiB granules (TG0 = 0b00, TG1 = 0b10),
/// table walks inner shareable, inner and outer write-back write-allocate.
pub const TCR: u64 = 16 // T0SZ
    | (0b01 << 8) // IRGN0
    | (0b01 << 10) // ORGN0
    | (0b11 << 12) // SH0
    | (16 << 16) // T1SZ
    | (0b01 << 24) // IRGN1
    | (0b01 << 26) // ORGN1
    | (0b11 << 28) // SH1
    | (0b10 << 30); // TG1 = 4 KiB

/// SCTLR_EL1 with the MMU off: the bits that are RES1 on ARMv8.0
/// (11, 20, 22, 23, 28, 29), little-endian, no alignment checks.
pub const SCTLR_MMU_OFF: u64 = 0x30d0_0800;
/// SCTLR_EL1 running: MMU (M), data cache (C) and instruction cache (I) on.
pub const SCTLR_MMU_ON: u64 = SCTLR_MMU_OFF | (1 << 0) | (1 << 2) | (1 << 12);

const GIB: usize = span(L0 - 1);
/// The GiBs of physical memory that hold RAM: `[RAM_FIRST_GIB, RAM_END_GIB)`.
const RAM_FIRST_GIB: usize = config::PHYS_MEMORY_BASE / GIB;
const RAM_END_GIB: usize = config::PHYS_MEMORY_END.div_ceil(GIB);
// One level-1 table covers 512 GiB; the devices' GiB is the first.
const _: () = assert!(RAM_FIRST_GIB >= 1 && RAM_END_GIB <= ENTRIES);

const fn boot_l1() -> Table {
    let mut t = [0u64; ENTRIES];
    t[0] = BOOT_DEVICE;
    let mut gib = RAM_FIRST_GIB;
    while gib < RAM_END_GIB {
        t[gib] = ((gib * GIB) as u64) | BOOT_NORMAL;
        gib += 1;
    }
    Table(t)
}

/// The boot level-1 table: the devices' GiB and RAM in 1 GiB blocks.
#[unsafe(link_section = ".data.boot_page_table")]
static BOOT_L1: Table = boot_l1();

/// The boot root of the lower half (TTBR0). Its entry 0 is written by `_start`
/// with the MMU off (a table's physical address is not a constant) and never again.
/// Secondary CPUs turn their MMU on with it as TTBR0 (`crate::smp`), for the
/// identity mapping of the few instructions before they jump to the high half.
#[unsafe(link_section = ".data.boot_page_table")]
pub(crate) static mut BOOT_L0_LOW: Table = Table([0; ENTRIES]);

/// The boot root of the upper half (TTBR1). Its entry `HIGH_L0_INDEX` is written
/// by `_start` with the MMU off and never again.
#[unsafe(link_section = ".data.boot_page_table")]
static mut BOOT_L0_HIGH: Table = Table([0; ENTRIES]);

/// The CPU setup `_start` and the secondary entry (`crate::smp`) share, as
/// assembly text: EL2 -> EL1h if needed (`x21` = the EL it was entered at),
/// all exceptions masked, SP_EL1 selected, FP/SIMD untrapped, MAIR_EL1 and
/// TCR_EL1 (IPS from ID_AA64MMFR0_EL1.PARange). Clobbers x9 and x10. Needs the
/// asm operands `sctlr_off`, `mair` and `tcr` (see their use in `_start`).
macro_rules! el1_setup_asm {
    () => {
        concat!(
            // EL2 -> EL1h.
            "   mrs     x9, CurrentEL\n",
            "   ubfx    x21, x9, #2, #2\n",
            "   cmp     x21, #2\n",
            "   b.ne    1f\n",
            "   mov     x9, #(1 << 31)\n", // HCR_EL2.RW: EL1 runs AArch64
            "   msr     hcr_el2, x9\n",
            "   mrs     x9, cnthctl_el2\n",
            "   orr     x9, x9, #3\n", // EL1PCTEN | EL1PCEN
            "   msr     cnthctl_el2, x9\n",
            "   msr     cntvoff_el2, xzr\n",
            "   ldr     x9, ={sctlr_off}\n",
            "   msr     sctlr_el1, x9\n",
            "   mov     x9, #0x3c5\n", // EL1h, D A I F masked
            "   msr     spsr_el2, x9\n",
            "   adr     x9, 1f\n",
            "   msr     elr_el2, x9\n",
            "   eret\n",
            "1:\n",
            "   msr     daifset, #0xf\n",
            "   msr     spsel, #1\n",
            "   mov     x9, #(3 << 20)\n", // CPACR_EL1.FPEN: no FP/SIMD traps
            "   msr     cpacr_el1, x9\n",
            "   isb\n",
            "   ldr     x9, ={mair}\n",
            "   msr     mair_el1, x9\n",
            "   ldr     x9, ={tcr}\n",
            "   mrs     x10, id_aa64mmfr0_el1\n",
            "   bfi     x9, x10, #32, #3\n", // TCR.IPS = PARange
            "   msr     tcr_el1, x9\n",
        )
    };
}
pub(crate) use el1_setup_asm;

global_asm!(
    ".section .text.boot, \"ax\"",
    ".global _start",
    "_start:",
    "   mov     x19, x0",
    "   mrs     x20, mpidr_el1",
    el1_setup_asm!(),
    // Running at physical addresses: `adrp` is pc-relative, so these are physical.
    "   adrp    x9, {l1}",
    "   orr     x9, x9, #{table_desc}",
    "   adrp    x10, {l0_low}",
    "   str     x9, [x10]",
    "   adrp    x11, {l0_high}",
    "   str     x9, [x11, #{high_off}]",
    "   dsb     ish",
    "   msr     ttbr0_el1, x10",
    "   msr     ttbr1_el1, x11",
    "   isb",
    "   tlbi    vmalle1",
    "   dsb     ish",
    "   isb",
    "   ldr     x9, ={sctlr_on}",
    "   msr     sctlr_el1, x9",
    "   isb",
    // Now in the high half as well: literal-pool addresses are link (virtual) addresses.
    "   ldr     x9, =_estack",
    "   mov     sp, x9",
    "   mov     x29, xzr",
    "   mov     x30, xzr",
    "   mov     x0, x19",
    "   mov     x1, x20",
    "   mov     x2, x21",
    "   ldr     x9, ={entry}",
    "   br      x9",
    "   .ltorg",
    sctlr_off = const SCTLR_MMU_OFF,
    sctlr_on = const SCTLR_MMU_ON,
    mair = const MAIR,
    tcr = const TCR,
    table_desc = const TABLE_DESC,
    high_off = const HIGH_L0_INDEX * 8,
    l0_low = sym BOOT_L0_LOW,
    l0_high = sym BOOT_L0_HIGH,
    l1 = sym BOOT_L1,
    entry = sym rust_entry,
);

unsafe extern "C" {
    static mut _sbss: u8;
    static mut _ebss: u8;
}

/// Device-tree header magic (big-endian in memory).
pub const FDT_MAGIC: u32 = hal::KnownWord::FDT_MAGIC;

/// Whether a device-tree header is at physical `pa` (in RAM, 8-byte aligned).
fn fdt_at(pa: usize) -> bool {
    if !pa.is_multiple_of(8) || !config::is_ram(pa) {
        return false;
    }
    let header = (pa + config::PHYS_VIRT_OFFSET) as *const u32;
    // SAFETY: `pa` is an aligned address in RAM, which the boot table (and later the
    // kernel address space) maps at the high-half offset; reading a word has no
    // side effect.
    let magic = unsafe { header.read_volatile() };
    u32::from_be(magic) == FDT_MAGIC
}

/// The device tree: `x0` at entry if it points at one, else the start of RAM,
/// where QEMU places it for ELF (non-Linux) kernels.
fn find_fdt(x0: usize) -> Option<PhysAddr> {
    [x0, config::PHYS_MEMORY_BASE]
        .into_iter()
        .find(|&pa| pa != 0 && fdt_at(pa))
        .map(PhysAddr::from)
}

/// The exception level `_start` was entered at (1 or 2).
static ENTRY_EL: AtomicUsize = AtomicUsize::new(1);

/// The exception level QEMU entered the kernel at: 2 when the machine has
/// virtualization on (the kernel itself then runs at EL1 all the same).
pub fn entry_el() -> usize {
    ENTRY_EL.load(Ordering::Relaxed)
}

/// First Rust code, in the high half, on the boot stack.
extern "C" fn rust_entry(x0: usize, mpidr: usize, entry_el: usize) -> ! {
    // SAFETY: nothing has used .bss yet (statics there are only touched from here
    // on); the linker script bounds it by `_sbss`/`_ebss` and keeps the boot stack
    // and the boot page tables outside that range.
    unsafe {
        let start = &raw mut _sbss;
        let end = &raw mut _ebss;
        core::ptr::write_bytes(start, 0, end as usize - start as usize);
    }
    ENTRY_EL.store(entry_el, Ordering::Relaxed);
    // TPIDR_EL1 before VBAR_EL1: the trap vector reads the CPU's block.
    crate::percpu::init_boot();
    crate::trap::init();
    crate::console::init();
    // The GIC (the boot tables map it): the distributor before any secondary
    // starts, then this CPU's interface. IRQs stay masked.
    crate::gic::init_distributor();
    crate::gic::init_cpu();
    let boot = BootInfo {
        cpu_id: mpidr & 0xff_00ff_ffff, // Aff3..Aff0
        fdt: find_fdt(x0),
        firmware_ram: hal::FirmwareRam::new(),
    };
    hal::kernel::kernel_main(&boot)
}
