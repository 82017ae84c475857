//! Boot: from OpenSBI's jump to the kernel entry.
//!
//! OpenSBI enters `_start` at the load address with the MMU off, `a0` = hart id and
//! `a1` = device tree. `_start` sets the boot stack (physical), turns on Sv39 with
//! [`BOOT_PAGE_TABLE`], moves `sp` to the high half and jumps to [`rust_entry`] at
//! its high-half address. `rust_entry` clears `.bss`, makes the boot hart CPU 0
//! (`tp`, see [`crate::smp`]), installs the trap vector and enables the IPI
//! (`sie.SSIE`, `sstatus.SIE`) before `hal::kernel::kernel_main`.
//!
//! The boot table maps, with 1 GiB leaves, the first GiB of physical memory (QEMU
//! virt's devices: `sifive_test`, the PLIC, the UART) and every GiB that holds RAM
//! (from the board's config, `MEM=` included), both at 0 and at the high-half
//! offset: the runtime takes the frames for the kernel's page tables from all of
//! RAM and writes them through the high half before it switches to that table.
//! The identity half exists only for the few instructions between `satp` and the
//! jump; the kernel address space built by the runtime replaces the whole table,
//! and leaves the stacks' guard pages unmapped (the boot table maps them: nothing
//! runs deep enough to reach them before the switch).

use core::arch::global_asm;
use core::sync::atomic::AtomicU32;

use hal::BootInfo;
use paging::geometry::{ENTRIES, index, span};

/// Leaf flags of the boot table: V R W X G A D.
const BOOT_LEAF: u64 = 0b1110_1111;
/// One Sv39 root with 1 GiB leaves.
#[repr(C, align(4096))]
pub(crate) struct Table([u64; ENTRIES]);

/// Height of the Sv39 root, whose entries map 1 GiB each.
const ROOT: usize = 2;
const GIB: usize = span(ROOT);
/// The root slot of the high half (each slot maps 1 GiB).
const HIGH_SLOT: usize = index(config::PHYS_VIRT_OFFSET, ROOT);
/// The GiBs of physical memory that hold RAM: `[RAM_FIRST_GIB, RAM_END_GIB)`.
const RAM_FIRST_GIB: usize = config::PHYS_MEMORY_BASE / GIB;
const RAM_END_GIB: usize = config::PHYS_MEMORY_END.div_ceil(GIB);
// The high half must be a whole number of root slots and hold the image.
const _: () = assert!(config::PHYS_VIRT_OFFSET.is_multiple_of(GIB));
// Sv39 addresses are 39-bit sign-extended: the high half lives in slots 256..512,
// the identity mapping in slots 0..256, and each must fit in its half.
const _: () = assert!(
    HIGH_SLOT >= ENTRIES / 2 && RAM_END_GIB <= ENTRIES / 2 && HIGH_SLOT + RAM_END_GIB <= ENTRIES
);

const fn boot_table() -> Table {
    let mut t = [0u64; ENTRIES];
    let mut gib = 0;
    while gib < RAM_END_GIB {
        // GiB 0 holds the devices; the others RAM (the gap between is left out).
        if gib == 0 || gib >= RAM_FIRST_GIB {
            let pte = (((gib * GIB) as u64) >> 12 << 10) | BOOT_LEAF;
            t[gib] = pte;
            t[HIGH_SLOT + gib] = pte;
        }
        gib += 1;
    }
    Table(t)
}

/// The boot page table: the devices' GiB and RAM at 0 and at the high-half
/// offset. Secondary harts start on it too ([`crate::smp`]); nothing writes it.
#[unsafe(link_section = ".data.boot_page_table")]
pub(crate) static BOOT_PAGE_TABLE: Table = boot_table();

/// The boot lottery: harts that enter `_start` add one; only the first goes
/// on. In `.data`, not `.bss`: the winner clears `.bss` while a loser may
/// still be reading this.
#[unsafe(link_section = ".data.boot_lottery")]
pub(crate) static BOOT_LOTTERY: AtomicU32 = AtomicU32::new(0);

/// SBI HSM extension id and its `hart_stop` function.
const SBI_EXT_HSM: usize = 0x48_534d;
const SBI_HSM_HART_STOP: usize = 1;

/// The first steps of every hart, boot or secondary, with the MMU off: the
/// FPU state on (the riscv64gc ABI may use FP registers), then Sv39 on the
/// boot page table (the high half and the identity half). Clobbers `t0`,
/// `t1`; the `global_asm!` that uses it binds `table` to [`BOOT_PAGE_TABLE`].
macro_rules! boot_table_on_asm {
    () => {
        concat!(
            "   li      t0, 1 << 13\n",
            "   csrs    sstatus, t0\n",
            "   la      t0, {table}\n",
            "   srli    t0, t0, 12\n",
            "   li      t1, 8 << 60\n",
            "   or      t0, t0, t1\n",
            "   csrw    satp, t0\n",
            "   sfence.vma\n",
        )
    };
}
pub(crate) use boot_table_on_asm;

global_asm!(
    ".section .text.boot, \"ax\"",
    ".global _start",
    "_start:",
    // Running at the physical load address: `la` is pc-relative, so it yields
    // physical addresses here.
    // One hart boots the kernel. OpenSBI 1.1 in QEMU 7.2 now and then sends a
    // hart that the kernel asked to start (`hart_start`, `crate::smp`) here
    // instead of to its entry (seen in about 1 of 130 boots with -smp 4): it
    // would share the boot stack and clear .bss under the running kernel. A
    // hart that loses this lottery stops itself through SBI HSM (`smp::start`
    // sees the lottery move and starts it again) and, should that fail, waits
    // here for good. It touches no memory but the lottery word.
    "   la      t0, {lottery}",
    "   li      t1, 1",
    // (The A extension is part of the target; global_asm! needs telling.)
    "   .option push",
    "   .option arch, +a",
    "   amoadd.w t1, t1, (t0)",
    "   .option pop",
    "   bnez    t1, 3f",
    "   la      sp, _estack",
    "   mv      s0, a0",
    "   mv      s1, a1",
    boot_table_on_asm!(),
    // Now in the high half as well: move sp and jump.
    "   li      t0, {offset}",
    "   add     sp, sp, t0",
    "   la      t1, {entry}",
    "   add     t1, t1, t0",
    "   mv      a0, s0",
    "   mv      a1, s1",
    "   jr      t1",
    "3:",
    "   li      a7, {hsm}",
    "   li      a6, {hart_stop}",
    "   ecall",
    "4:",
    "   wfi",
    "   j       4b",
    offset = const config::PHYS_VIRT_OFFSET,
    table = sym BOOT_PAGE_TABLE,
    entry = sym rust_entry,
    lottery = sym BOOT_LOTTERY,
    hsm = const SBI_EXT_HSM,
    hart_stop = const SBI_HSM_HART_STOP,
);

unsafe extern "C" {
    static mut _sbss: u8;
    static mut _ebss: u8;
}

/// First Rust code, in the high half, on the boot stack.
extern "C" fn rust_entry(hart_id: usize, fdt: usize) -> ! {
    // SAFETY: nothing has used .bss yet (statics there are only touched from here
    // on); the linker script bounds it by `_sbss`/`_ebss` and keeps the boot stack
    // outside that range.
    unsafe {
        let start = &raw mut _sbss;
        let end = &raw mut _ebss;
        core::ptr::write_bytes(start, 0, end as usize - start as usize);
    }
    crate::smp::init_boot(hart_id);
    crate::trap::init();
    crate::smp::enable_ipi();
    let boot = BootInfo {
        cpu_id: hart_id,
        fdt: (fdt != 0).then(|| fdt.into()),
        firmware_ram: hal::FirmwareRam::new(),
    };
    hal::kernel::kernel_main(&boot)
}
