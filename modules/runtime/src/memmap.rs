//! The physical memory map, from the board's config, the kernel's linker symbols
//! and what the firmware handed over (the device tree).
//!
//! Every board's linker script defines `_stext`, `_etext`, `_srodata`, `_erodata`,
//! `_sdata` and `_ekernel` at page-aligned addresses, and links the kernel at
//! `physical + config::PHYS_VIRT_OFFSET`.
//!
//! Free RAM is RAM minus the kernel image, the configured reserved ranges and the
//! device tree; it is what the frame allocator hands out.

use alloc::vec::Vec;

use hal::{BootInfo, MemKind, MemRegion};
use memory_addr::{PhysAddr, align_down_4k, align_up_4k};

unsafe extern "C" {
    static _stext: u8;
    static _etext: u8;
    static _srodata: u8;
    static _erodata: u8;
    static _sdata: u8;
    static _ekernel: u8;
}

fn pa_of(sym: *const u8) -> usize {
    (sym as usize).wrapping_sub(config::PHYS_VIRT_OFFSET)
}

/// The kernel image's sections as (start, end) physical addresses.
fn kernel_sections() -> [(usize, usize, MemKind, &'static str); 3] {
    let (stext, etext, srodata, erodata, sdata, ekernel) = (
        pa_of(&raw const _stext),
        pa_of(&raw const _etext),
        pa_of(&raw const _srodata),
        pa_of(&raw const _erodata),
        pa_of(&raw const _sdata),
        pa_of(&raw const _ekernel),
    );
    [
        (stext, etext, MemKind::Text, ".text"),
        (srodata, erodata, MemKind::Rodata, ".rodata"),
        (sdata, ekernel, MemKind::Data, ".data .bss stack"),
    ]
}

/// The device tree's physical range, page aligned, if the board passed one.
fn fdt_range(boot: &BootInfo) -> Option<(usize, usize)> {
    let fdt = boot.fdt?.as_usize();
    let ram = config::PHYS_MEMORY_BASE..config::PHYS_MEMORY_BASE + config::PHYS_MEMORY_SIZE;
    if !ram.contains(&fdt) {
        return None;
    }
    let header = (fdt + config::PHYS_VIRT_OFFSET) as *const u32;
    // SAFETY: `fdt` lies in RAM, which the boot page table maps at the high-half
    // offset; the header's first two words are magic and total size.
    let (magic, size) = unsafe {
        (
            u32::from_be(header.read_volatile()),
            u32::from_be(header.add(1).read_volatile()),
        )
    };
    (magic == 0xd00d_feed).then(|| (align_down_4k(fdt), align_up_4k(fdt + size as usize)))
}

/// Builds the memory map, sorted by address.
pub fn build(boot: &BootInfo) -> Vec<MemRegion> {
    let mut map = Vec::new();
    let mut taken: Vec<(usize, usize)> = Vec::new();
    for (start, end, kind, name) in kernel_sections() {
        map.push(region(start, end, kind, name));
        taken.push((start, end));
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
    // Free RAM: the gaps between taken ranges inside RAM.
    taken.sort_unstable();
    let mut cursor = config::PHYS_MEMORY_BASE;
    let ram_end = config::PHYS_MEMORY_BASE + config::PHYS_MEMORY_SIZE;
    for (start, end) in taken.iter().copied().chain([(ram_end, ram_end)]) {
        let start = start.clamp(cursor, ram_end);
        if start > cursor {
            map.push(region(cursor, start, MemKind::Free, "free"));
        }
        cursor = cursor.max(end.min(ram_end));
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
