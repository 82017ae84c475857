//! The physical memory map, from the board's config, the kernel's linker symbols
//! and what the firmware handed over (the device tree), and the kernel stacks'
//! guard pages.
//!
//! Every board's linker script defines, at page-aligned addresses, `_stext`,
//! `_etext`, `_srodata`, `_erodata`, `_sdata` and `_ekernel`, and links the kernel
//! at `physical + config::PHYS_VIRT_OFFSET`. After `.bss` it places two stacks,
//! each above one 4 KiB guard page:
//!
//! ```text
//! _sdata .. .data .bss ..  | _strap_guard (4K) | _strap_stack .. _etrap_stack
//!                          | _sguard (4K)      | _sstack .. _estack = _ekernel
//! ```
//!
//! - the **trap stack** `[_strap_stack, _etrap_stack)`: the board's emergency
//!   stack (riscv64 and aarch64: where the trap entry saves its frame when the
//!   interrupted stack is at its guard page; x86_64: the double-fault IST stack);
//! - the **boot stack** `[_sstack, _estack)`: the stack the kernel and the app
//!   run on.
//! - above them, `[_ssecondary, _esecondary)`: one slot of
//!   `config::CPU_STACK_STRIDE` bytes per secondary CPU (`1..SMP`), each the
//!   same shape (guard, trap stack, guard, kernel stack): [`stacks_of`].
//!
//! The memory map holds the kernel data `[_sdata, _strap_guard)` and the two
//! stacks as separate regions; the guard pages are in no region, so the kernel
//! address space leaves them unmapped, and they are not free RAM either. A stack
//! that grows past its bottom then faults on its guard page instead of
//! overwriting what lies below; [`guard_of`] tells the fault report which stack
//! overflowed (see `space`).
//!
//! Free RAM is RAM minus the kernel image (guard pages included), the configured
//! reserved ranges and the device tree; it is what the frame allocator hands out.
//! RAM here is the board config's RAM (built for `MEM=`) cut down to what the
//! firmware reports as usable ([`firmware_ram`]: the multiboot memory map, the
//! device tree's `/memory` nodes minus its reservations; [`usable_ram`]), when
//! it reports anything: firmware-reserved
//! RAM stays out, and so does configured RAM the machine does not have.

use alloc::vec::Vec;

use hal::{BootInfo, FirmwareRam, MemKind, MemRegion};
use memory_addr::{PhysAddr, align_down_4k, align_up_4k};

unsafe extern "C" {
    static _stext: u8;
    static _etext: u8;
    static _srodata: u8;
    static _erodata: u8;
    static _sdata: u8;
    static _strap_guard: u8;
    static _strap_stack: u8;
    static _etrap_stack: u8;
    static _sguard: u8;
    static _sstack: u8;
    static _estack: u8;
    static _ssecondary: u8;
    static _esecondary: u8;
    static _ekernel: u8;
}

/// Size of the unmapped guard page below each kernel stack.
pub const GUARD_SIZE: usize = 4096;

/// A kernel stack and the unmapped guard page below it (virtual addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardedStack {
    /// The CPU whose stack it is (0 = the boot CPU).
    pub cpu: usize,
    /// What the stack is for: "boot stack" (CPU 0's kernel stack), "kernel
    /// stack" (another CPU's), "trap stack".
    pub name: &'static str,
    /// Start of the guard page; the page ends at `bottom`.
    pub guard: usize,
    /// Lowest address of the stack.
    pub bottom: usize,
    /// One past the highest address of the stack (the initial stack pointer).
    pub top: usize,
}

impl GuardedStack {
    /// Whether `addr` lies in this stack's guard page.
    pub fn guard_contains(&self, addr: usize) -> bool {
        (self.guard..self.bottom).contains(&addr)
    }
}

impl core::fmt::Display for GuardedStack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // CPU 0's stacks keep their plain names: "the boot stack".
        match self.cpu {
            0 => f.write_str(self.name),
            cpu => write!(f, "CPU {cpu} {}", self.name),
        }
    }
}

/// CPU `cpu`'s trap stack and kernel stack (`cpu < config::SMP`), each above
/// its guard page.
pub fn stacks_of(cpu: usize) -> [GuardedStack; 2] {
    assert!(
        cpu < config::SMP,
        "CPU {cpu}: the image has stacks for {} CPUs",
        config::SMP
    );
    if cpu == 0 {
        return [
            GuardedStack {
                cpu,
                name: "trap stack",
                guard: &raw const _strap_guard as usize,
                bottom: &raw const _strap_stack as usize,
                top: &raw const _etrap_stack as usize,
            },
            GuardedStack {
                cpu,
                name: "boot stack",
                guard: &raw const _sguard as usize,
                bottom: &raw const _sstack as usize,
                top: &raw const _estack as usize,
            },
        ];
    }
    let slot = &raw const _ssecondary as usize + (cpu - 1) * config::CPU_STACK_STRIDE;
    let trap_bottom = slot + GUARD_SIZE;
    let trap_top = trap_bottom + config::TRAP_STACK_SIZE;
    let bottom = trap_top + GUARD_SIZE;
    [
        GuardedStack {
            cpu,
            name: "trap stack",
            guard: slot,
            bottom: trap_bottom,
            top: trap_top,
        },
        GuardedStack {
            cpu,
            name: "kernel stack",
            guard: trap_top,
            bottom,
            top: bottom + config::STACK_SIZE,
        },
    ]
}

/// Every kernel stack with a guard page, CPU by CPU, lowest first.
pub fn stacks() -> impl Iterator<Item = GuardedStack> {
    (0..config::SMP).flat_map(stacks_of)
}

/// The stack whose guard page holds `addr`, if any: a fault there is a stack
/// overflow. Allocates nothing (it runs in fault reports).
pub fn guard_of(addr: usize) -> Option<GuardedStack> {
    stacks().find(|s| s.guard_contains(addr))
}

fn pa_of(va: usize) -> usize {
    va.wrapping_sub(config::PHYS_VIRT_OFFSET)
}

/// The kernel image's sections as (start, end) physical addresses: the guard
/// pages lie between the data and the trap stack, between each CPU's two
/// stacks and between one CPU's slot and the next.
fn kernel_sections() -> Vec<(usize, usize, MemKind, &'static str)> {
    let [trap, boot] = stacks_of(0);
    let mut sections = alloc::vec![
        (
            pa_of(&raw const _stext as usize),
            pa_of(&raw const _etext as usize),
            MemKind::Text,
            ".text",
        ),
        (
            pa_of(&raw const _srodata as usize),
            pa_of(&raw const _erodata as usize),
            MemKind::Rodata,
            ".rodata",
        ),
        (
            pa_of(&raw const _sdata as usize),
            pa_of(trap.guard),
            MemKind::Data,
            ".data .bss",
        ),
        (
            pa_of(trap.bottom),
            pa_of(trap.top),
            MemKind::Data,
            trap.name
        ),
        (
            pa_of(boot.bottom),
            pa_of(boot.top),
            MemKind::Data,
            boot.name
        ),
    ];
    for s in stacks().skip(2) {
        sections.push((pa_of(s.bottom), pa_of(s.top), MemKind::Data, s.name));
    }
    let last = stacks().last().map_or(boot.top, |s| s.top);
    // `black_box`: the compiler may assume distinct statics never share an
    // address and fold the comparison (with SMP=1 `last` is `_estack`).
    let (end, ekernel) = core::hint::black_box((
        &raw const _esecondary as usize,
        &raw const _ekernel as usize,
    ));
    assert!(
        last == end && ekernel == last,
        "linker script: the CPU stack slots must end the image (config::CPU_STACK_STRIDE)"
    );
    sections
}

/// The device tree's physical range, page aligned and cut at the end of its RAM range, if
/// the board passed one whose header carries the magic.
fn fdt_range(boot: &BootInfo) -> Option<(usize, usize)> {
    let fdt = boot.fdt?.as_usize();
    // The address comes from the firmware: check it before reading through it.
    // A device tree is 8-byte aligned; its first two words are magic and size.
    let (_, ram_end) = config::ram_range(fdt)?;
    if fdt.saturating_add(8) > ram_end || !fdt.is_multiple_of(8) {
        return None;
    }
    let header = (fdt + config::PHYS_VIRT_OFFSET) as *const u32;
    // SAFETY: the two aligned words at `fdt` lie in RAM, which the boot page table
    // maps at the high-half offset; reading RAM has no side effect.
    let (magic, size) = unsafe {
        (
            u32::from_be(header.read_volatile()),
            u32::from_be(header.add(1).read_volatile()),
        )
    };
    (magic == hal::KnownWord::FDT_MAGIC).then(|| {
        let end = fdt.saturating_add(size as usize).min(ram_end);
        (align_down_4k(fdt), align_up_4k(end))
    })
}

/// The usable RAM the firmware reported: the board's own list (multiboot), else
/// the device tree's `/memory` nodes minus its reservations, else nothing.
pub fn firmware_ram(boot: &BootInfo) -> FirmwareRam {
    if !boot.firmware_ram.is_empty() {
        return boot.firmware_ram;
    }
    let mut ram = FirmwareRam::new();
    let Some((fdt_start, _)) = fdt_range(boot) else {
        return ram;
    };
    let ptr = (fdt_start + config::PHYS_VIRT_OFFSET) as *const u8;
    // SAFETY: `fdt_range` checked that a device-tree header with the magic sits
    // there, in RAM that the boot page table maps at the high-half offset, and cut
    // its size to that RAM; the parser reads `totalsize` bytes from it and nothing
    // writes the device tree.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(ptr) }) else {
        log::warn!("device tree at {fdt_start:#x} does not parse: RAM as configured");
        return ram;
    };
    for node in fdt.all_nodes() {
        if node.name != "memory" && !node.name.starts_with("memory@") {
            continue;
        }
        for r in node.reg().into_iter().flatten() {
            ram.add(r.starting_address as usize, r.size.unwrap_or(0));
        }
    }
    // What the firmware keeps for itself (the header's reservation block and the
    // `/reserved-memory` children, e.g. OpenSBI's) is not usable RAM.
    for r in fdt.memory_reservations() {
        ram.remove(r.address() as usize, r.size());
    }
    if let Some(reserved) = fdt.find_node("/reserved-memory") {
        for child in reserved.children() {
            for r in child.reg().into_iter().flatten() {
                ram.remove(r.starting_address as usize, r.size.unwrap_or(0));
            }
        }
    }
    ram
}

/// The configured RAM ranges cut down to what `firmware` reports usable (all of
/// it if the firmware said nothing), as page-aligned (start, end), lowest first.
pub fn usable_ram(firmware: &FirmwareRam) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for &(start, size) in config::RAM {
        let end = start + size;
        if firmware.is_empty() {
            out.push((start, end));
            continue;
        }
        out.extend(
            firmware
                .clip(start, end)
                .map(|(s, e)| (align_up_4k(s), align_down_4k(e)))
                .filter(|&(s, e)| s < e),
        );
    }
    out
}

/// Builds the memory map, sorted by address, from the config, the linker
/// symbols, the device tree's place and `firmware` (see the module docs).
pub fn build(boot: &BootInfo, firmware: &FirmwareRam) -> Vec<MemRegion> {
    let mut map = Vec::new();
    let mut taken: Vec<(usize, usize)> = Vec::new();
    for (start, end, kind, name) in kernel_sections() {
        map.push(region(start, end, kind, name));
        taken.push((start, end));
    }
    // The guard pages: in no region (so never mapped), and not free RAM.
    for s in stacks() {
        assert!(
            s.guard.is_multiple_of(GUARD_SIZE) && s.guard + GUARD_SIZE == s.bottom,
            "linker script: the {s} must start one page above its guard page"
        );
        let guard = pa_of(s.guard);
        taken.push((guard, guard + GUARD_SIZE));
    }
    for &(start, size, name) in config::RESERVED {
        map.push(region(start, start + size, MemKind::Reserved, name));
        taken.push((start, start + size));
    }
    if let Some((start, end)) = fdt_range(boot) {
        map.push(region(start, end, MemKind::Reserved, "device tree"));
        taken.push((start, end));
    }
    for &(start, size, name) in config::MMIO {
        map.push(region(start, start + size, MemKind::Mmio, name));
    }
    // Free RAM: the gaps between taken ranges inside each RAM range, where the
    // firmware (if it said anything) agrees that it is usable RAM.
    taken.sort_unstable();
    for (ram_start, ram_end) in usable_ram(firmware) {
        let mut cursor = ram_start;
        for (start, end) in taken.iter().copied().chain([(ram_end, ram_end)]) {
            let start = start.clamp(cursor, ram_end);
            if start > cursor {
                map.push(region(cursor, start, MemKind::Free, "free"));
            }
            cursor = cursor.max(end.min(ram_end));
        }
    }
    map.sort_unstable_by_key(|r| r.paddr);
    map
}

fn region(start: usize, end: usize, kind: MemKind, name: &'static str) -> MemRegion {
    let start = align_down_4k(start);
    MemRegion {
        paddr: PhysAddr::from(start),
        size: align_up_4k(end) - start,
        kind,
        name,
    }
}
