//! Several harts: the per-CPU register, the harts from the device tree,
//! starting a hart through SBI HSM, and IPIs through the SBI IPI extension.
//!
//! # The per-CPU register: `tp`
//! `tp` holds the (virtual) address of the hart's `PerCpu` block, an entry
//! of `PERCPU` indexed by the kernel's CPU index. LLVM reserves `tp` on
//! `riscv64gc-unknown-none-elf` (no thread-locals here), so compiled code never
//! writes it; the trap entry saves and restores it unchanged. Invariants:
//! - `tp` points at the calling hart's block from before its trap vector is
//!   installed until the machine ends: the boot hart sets it in
//!   `init_boot`, a secondary in `tessera_secondary_start`;
//! - a block's `index`, `hart_id` and stack fields are written before the
//!   hart uses them (the boot hart's by itself, a secondary's by the boot hart
//!   before `hart_start`) and never change afterwards: the trap entry reads
//!   its stack bounds from there ([`crate::trap`]).
//!
//! # Starting a hart
//! `start` fills the hart's block (stacks, the kernel's `satp`) and calls
//! SBI HSM `hart_start(hart id, physical address of tessera_secondary_start,
//! physical address of the block)`. The hart enters S-mode there with the
//! MMU off, `a0` = hart id, `a1` = the block. `tessera_secondary_start` turns
//! on the boot page table (as `_start` does), moves to the high half, sets
//! `tp`, loads the kernel's page table and its kernel stack, and calls
//! `secondary_entry`: trap vector, IPI enabled (`sie.SSIE`, `sstatus.SIE`),
//! then `hal::kernel::secondary_main`.
//!
//! # IPIs
//! `send_ipi` translates CPU indices into hart ids (`PerCpu::hart_id`) and
//! calls SBI `send_ipi`; OpenSBI raises the supervisor software interrupt
//! (`sip.SSIP`) on each target. The only interrupt enabled is `sie.SSIE`: the
//! trap handler answers it (`answer_ipi`), and so does `wait_for_ipi`
//! after a `wfi`, which returns on a pending enabled interrupt even with
//! `sstatus.SIE` off. The IPI may interrupt any kernel code with `sstatus.SIE`
//! on; the trap entry saves the general registers only, so the kernel's IPI
//! answer must not use floating point (see [`crate::trap`]).
//!
//! The boot hart need not be hart 0 (OpenSBI picks it by lottery): CPU 0 is
//! whichever hart entered `_start`, and the others keep their tree order.

use core::arch::{asm, global_asm};
use core::mem::offset_of;
use core::sync::atomic::{AtomicUsize, Ordering};

use hal::{BootInfo, CpuList, CpuStart, StartError};
use riscv::register::{sie, sip, sstatus};

/// One hart's block: what its trap entry and `cpu_index` read through `tp`,
/// and what `tessera_secondary_start` starts it with.
#[repr(C)]
pub(crate) struct PerCpu {
    /// The kernel's index of the hart.
    pub index: AtomicUsize,
    /// Its hart id.
    pub hart_id: AtomicUsize,
    /// Top of its trap stack.
    pub trap_top: AtomicUsize,
    /// Start of its kernel stack's guard page.
    pub stack_guard: AtomicUsize,
    /// Start of its trap stack's guard page.
    pub trap_guard: AtomicUsize,
    /// The kernel page table's `satp` (secondaries only, for the start).
    satp: AtomicUsize,
    /// Top of its kernel stack (secondaries only, for the start).
    stack_top: AtomicUsize,
    /// Set by the hart when it reached `secondary_entry`.
    arrived: AtomicUsize,
}

impl PerCpu {
    const fn new() -> Self {
        Self {
            index: AtomicUsize::new(0),
            hart_id: AtomicUsize::new(0),
            trap_top: AtomicUsize::new(0),
            stack_guard: AtomicUsize::new(0),
            trap_guard: AtomicUsize::new(0),
            satp: AtomicUsize::new(0),
            stack_top: AtomicUsize::new(0),
            arrived: AtomicUsize::new(0),
        }
    }
}

/// Offsets into `PerCpu` for the assembly.
pub(crate) const OFF_TRAP_TOP: usize = offset_of!(PerCpu, trap_top);
pub(crate) const OFF_STACK_GUARD: usize = offset_of!(PerCpu, stack_guard);
pub(crate) const OFF_TRAP_GUARD: usize = offset_of!(PerCpu, trap_guard);
const OFF_SATP: usize = offset_of!(PerCpu, satp);
const OFF_STACK_TOP: usize = offset_of!(PerCpu, stack_top);

/// The blocks, by kernel CPU index.
static PERCPU: [PerCpu; config::SMP] = [const { PerCpu::new() }; config::SMP];

/// Size of the guard page below each stack.
const GUARD: usize = 4096;

/// The calling hart's block.
pub(crate) fn current() -> &'static PerCpu {
    let tp: usize;
    // SAFETY: reads `tp` only; by the module's invariant it holds the address
    // of the calling hart's entry of `PERCPU`, a static.
    unsafe {
        asm!("mv {}, tp", out(reg) tp, options(nomem, nostack, preserves_flags));
        &*(tp as *const PerCpu)
    }
}

unsafe extern "C" {
    static _strap_guard: u8;
    static _etrap_stack: u8;
    static _sguard: u8;
    fn tessera_secondary_start();
}

/// Sets up the boot hart as CPU 0: its block (the linker script's stacks)
/// and `tp`. Called once, by the boot hart, after `.bss` was cleared and
/// before the trap vector is installed.
pub(crate) fn init_boot(hart_id: usize) {
    let b = &PERCPU[0];
    b.index.store(0, Ordering::Relaxed);
    b.hart_id.store(hart_id, Ordering::Relaxed);
    b.trap_top
        .store(&raw const _etrap_stack as usize, Ordering::Relaxed);
    b.stack_guard
        .store(&raw const _sguard as usize, Ordering::Relaxed);
    b.trap_guard
        .store(&raw const _strap_guard as usize, Ordering::Relaxed);
    let addr = b as *const PerCpu as usize;
    // SAFETY: `addr` is CPU 0's block, a static, and this is the boot hart:
    // `tp` now satisfies the module's invariant (nothing read it before).
    unsafe { asm!("mv tp, {}", in(reg) addr, options(nomem, nostack, preserves_flags)) };
}

/// Enables the IPI (and only the IPI): clears a stale `sip.SSIP`, sets
/// `sie.SSIE` and `sstatus.SIE`. Called once the trap vector is installed.
pub(crate) fn enable_ipi() {
    // SAFETY: S-mode may clear SSIP; the trap vector answers the supervisor
    // software interrupt (and reports every other one), so enabling it and
    // `sstatus.SIE` is sound once `stvec` is set, which the caller did.
    unsafe {
        sip::clear_ssoft();
        sie::set_ssoft();
        sstatus::set_sie();
    }
}

/// Answers a pending IPI: clears `sip.SSIP`, then calls `hal::kernel::ipi`
/// (an IPI that arrives meanwhile stays pending). Interrupts are off.
pub(crate) fn answer_ipi() {
    // SAFETY: clearing SSIP only acknowledges the IPI being answered here.
    unsafe { sip::clear_ssoft() };
    hal::kernel::ipi();
}

/// See `Board::wait_for_ipi`: `wfi` with `sstatus.SIE` = 0 and `sie.SSIE` = 1
/// returns once SSIP is pending, without a trap.
pub(crate) fn wait_for_ipi() {
    riscv::asm::wfi();
    if sip::read().ssoft() {
        answer_ipi();
    }
}

/// See `Board::send_ipi`: bit `i` of `targets` is CPU index `i`. Hart ids
/// within 64 of each other go in one SBI call.
pub(crate) fn send_ipi(targets: u64) {
    // The kernel's mailbox writes must be visible before the target looks.
    core::sync::atomic::fence(Ordering::SeqCst);
    let n = config::SMP.min(64);
    let mut left = targets & if n == 64 { u64::MAX } else { (1 << n) - 1 };
    while left != 0 {
        let hart = |i: usize| PERCPU[i].hart_id.load(Ordering::Relaxed);
        let base = (0..n)
            .filter(|&i| left & (1 << i) != 0)
            .map(hart)
            .min()
            .unwrap_or(0);
        let mut mask = 0usize;
        let pending = left;
        for i in (0..n).filter(|&i| pending & (1 << i) != 0) {
            let off = hart(i) - base;
            if off < usize::BITS as usize {
                mask |= 1 << off;
                left &= !(1 << i);
            }
        }
        let ret = sbi_rt::send_ipi(sbi_rt::HartMask::from_mask_base(mask, base));
        if ret.is_err() {
            log::warn!("SBI send_ipi to harts {mask:#x} << {base} failed: {ret:?}");
        }
    }
}

/// See `Board::start_cpu`.
///
/// # Safety
///
/// As for `Board::start_cpu`: once per CPU, from the boot hart, with stacks
/// that belong to that CPU alone and the kernel's complete page table.
pub(crate) unsafe fn start(start: &CpuStart) -> Result<(), StartError> {
    let Some(b) = PERCPU.get(start.index).filter(|_| start.index != 0) else {
        return Err(StartError::Unsupported);
    };
    let satp = (8 << 60) | (start.roots.lower.as_usize() >> 12);
    b.index.store(start.index, Ordering::Relaxed);
    b.hart_id.store(start.hw_id, Ordering::Relaxed);
    b.trap_top.store(start.trap_stack_top, Ordering::Relaxed);
    b.trap_guard.store(
        start.trap_stack_top - config::TRAP_STACK_SIZE - GUARD,
        Ordering::Relaxed,
    );
    b.stack_guard.store(
        start.stack_top - config::STACK_SIZE - GUARD,
        Ordering::Relaxed,
    );
    b.satp.store(satp, Ordering::Relaxed);
    b.stack_top.store(start.stack_top, Ordering::Relaxed);
    // The hart reads its block with the MMU off, through physical addresses.
    core::sync::atomic::fence(Ordering::SeqCst);
    let entry = tessera_secondary_start as *const () as usize - config::PHYS_VIRT_OFFSET;
    let opaque = b as *const PerCpu as usize - config::PHYS_VIRT_OFFSET;
    // OpenSBI 1.1 under QEMU 7.2 now and then sends a hart that `hart_start`
    // asked for to the kernel's first entry (`_start`) instead of `entry`
    // (seen in about 1 of 130 boots with -smp 4). There it loses the boot
    // lottery and stops itself (`boot::BOOT_LOTTERY`): start it again.
    for _ in 0..START_TRIES {
        let lottery = crate::boot::BOOT_LOTTERY.load(Ordering::Acquire);
        hart_start(start.hw_id, entry, opaque)?;
        let t0 = riscv::register::time::read64();
        loop {
            if b.arrived.load(Ordering::Acquire) != 0 {
                return Ok(());
            }
            if crate::boot::BOOT_LOTTERY.load(Ordering::Acquire) != lottery {
                log::warn!(
                    "hart {:#x} was sent to _start instead of its entry: starting it again",
                    start.hw_id
                );
                break;
            }
            if riscv::register::time::read64() - t0 > ARRIVAL_TICKS {
                // Late, not lost: the kernel goes on waiting for it.
                return Ok(());
            }
            core::hint::spin_loop();
        }
    }
    Err(StartError::Firmware(-1))
}

/// `hart_start` attempts for one CPU.
const START_TRIES: usize = 5;
/// How long `start` watches a started hart (100 ms of the 10 MHz timer).
const ARRIVAL_TICKS: u64 = 1_000_000;

/// SBI HSM `hart_start`, tried again while the hart is still stopping (a
/// hart that stopped itself is briefly in STOP_PENDING).
fn hart_start(hart: usize, entry: usize, opaque: usize) -> Result<(), StartError> {
    let mut ret = sbi_rt::hart_start(hart, entry, opaque);
    for _ in 0..1000 {
        if !ret.is_err() {
            return Ok(());
        }
        for _ in 0..10_000 {
            core::hint::spin_loop();
        }
        ret = sbi_rt::hart_start(hart, entry, opaque);
    }
    Err(StartError::Firmware(ret.error as isize))
}

global_asm!(
    ".section .text",
    ".balign 4",
    ".global tessera_secondary_start",
    "tessera_secondary_start:",
    // MMU off, pc physical (`la` yields physical addresses), a0 = hart id,
    // a1 = physical address of the hart's `PerCpu`.
    crate::boot::boot_table_on_asm!(),
    // Boot table on: the high half is mapped too. tp = the block's virtual
    // address; jump to the high half.
    "   li      t0, {offset}",
    "   add     tp, a1, t0",
    "   la      t1, 1f",
    "   add     t1, t1, t0",
    "   jr      t1",
    "1:",
    // The kernel page table (it maps the high half only), then the stack.
    "   ld      t0, {satp}(tp)",
    "   csrw    satp, t0",
    "   sfence.vma",
    "   ld      sp, {stack_top}(tp)",
    "   mv      a0, tp",
    "   call    {entry}",
    "   unimp",
    table = sym crate::boot::BOOT_PAGE_TABLE,
    offset = const config::PHYS_VIRT_OFFSET,
    satp = const OFF_SATP,
    stack_top = const OFF_STACK_TOP,
    entry = sym secondary_entry,
);

/// A secondary hart's first Rust code: on its kernel stack, in the kernel's
/// page table, `tp` set.
extern "C" fn secondary_entry(cpu: &'static PerCpu) -> ! {
    cpu.arrived.store(1, Ordering::Release);
    crate::trap::init();
    enable_ipi();
    hal::kernel::secondary_main(cpu.index.load(Ordering::Relaxed))
}

/// See `Board::cpus`: the boot hart, then the harts of `/cpus` (`reg` = hart
/// id) in tree order, without those whose status is "disabled".
/// Warns once per hart that entered `_start` beside the boot hart (see
/// `boot::BOOT_LOTTERY`; such a hart stopped itself and is started again as a
/// secondary).
fn report_lottery() {
    static SEEN: AtomicUsize = AtomicUsize::new(1);
    let now = crate::boot::BOOT_LOTTERY.load(Ordering::Relaxed) as usize;
    let seen = SEEN.swap(now.max(1), Ordering::Relaxed);
    if now > seen {
        log::warn!(
            "{} more hart(s) entered _start beside the boot hart: stopped through SBI HSM, \
             to be started as secondaries",
            now - seen
        );
    }
}

pub(crate) fn cpus(boot: &BootInfo) -> CpuList {
    report_lottery();
    let mut list = CpuList::boot_only(boot.cpu_id);
    let Some(fdt) = device_tree(boot) else {
        log::warn!("no device tree: running on the boot hart only");
        return list;
    };
    let Some(node) = fdt.find_node("/cpus") else {
        log::warn!("the device tree has no /cpus: running on the boot hart only");
        return list;
    };
    for cpu in node.children() {
        let prop = |name| cpu.property(name).and_then(|p| p.as_str());
        if prop("device_type") != Some("cpu") || prop("status") == Some("disabled") {
            continue;
        }
        if let Some(r) = cpu.reg().and_then(|mut r| r.next()) {
            list.push(r.starting_address as usize);
        }
    }
    list
}

/// The device tree the firmware passed, if its header is in RAM and has the
/// magic.
fn device_tree(boot: &BootInfo) -> Option<fdt::Fdt<'static>> {
    let pa = boot.fdt?.as_usize();
    let (_, ram_end) = config::ram_range(pa)?;
    if pa.saturating_add(8) > ram_end || !pa.is_multiple_of(8) {
        return None;
    }
    let ptr = (pa + config::PHYS_VIRT_OFFSET) as *const u8;
    // SAFETY: the header's first word lies in RAM, which the kernel address
    // space maps at the high-half offset; the magic is checked before the
    // parser reads `totalsize` bytes (the runtime keeps the device tree out of
    // free RAM and mapped read-only, so nothing writes it).
    unsafe {
        if u32::from_be((ptr as *const u32).read_volatile()) != hal::KnownWord::FDT_MAGIC {
            return None;
        }
        fdt::Fdt::from_ptr(ptr).ok()
    }
}
