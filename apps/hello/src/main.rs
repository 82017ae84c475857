//! Boots, prints the physical memory map and the kernel's areas, and checks the
//! kernel page table: W^X, the NULL page and the stacks' guard pages unmapped,
//! and every free RAM frame reachable through the physical-memory window (all RAM
//! ranges, those above 4 GiB included when `MEM=` is large).
#![no_std]
#![no_main]

use tessera::boot::{self, MemKind};
use tessera::{check, check_eq, mm, println};

tessera::main!(main);

fn main() -> tessera::AppResult {
    println!("hello from {} ({})", boot::board_name(), boot::arch());
    println!("physical memory map:");
    let map = boot::memory_map();
    for r in map {
        println!(
            "  [{:#012x}, {:#012x}) {:>8} KiB  {:?} {}",
            r.paddr.as_usize(),
            r.paddr.as_usize() + r.size,
            r.size >> 10,
            r.kind,
            r.name
        );
    }
    for kind in [MemKind::Text, MemKind::Rodata, MemKind::Data, MemKind::Free] {
        check!(
            map.iter().any(|r| r.kind == kind),
            "no {kind:?} region in the memory map"
        );
    }
    let ram = boot::ram();
    for &(start, size) in ram {
        println!("RAM [{:#x}, {:#x}) {} MiB", start, start + size, size >> 20);
    }
    let firmware = boot::firmware_ram();
    for &(start, end) in firmware.ranges() {
        println!("firmware RAM [{start:#x}, {end:#x})");
    }
    check!(
        !firmware.is_empty(),
        "the firmware's RAM ranges were not found (multiboot memory map or device tree)"
    );
    for r in map.iter().filter(|r| r.kind == MemKind::Free) {
        let (start, end) = (r.paddr.as_usize(), r.paddr.as_usize() + r.size);
        check!(
            ram.iter().any(|&(b, s)| b <= start && end <= b + s),
            "free region [{start:#x}, {end:#x}) is not inside one RAM range"
        );
        check!(
            firmware.contains(start, end),
            "free region [{start:#x}, {end:#x}) is not usable RAM per the firmware"
        );
        // First and last byte of every free region: mapped in the window at the
        // right frame, readable and writable (the write probe stores the byte back).
        for pa in [start, end - 1] {
            let va = boot::phys_to_virt(pa);
            check_eq!(
                mm::translate(va).map(|t| t.paddr.as_usize()),
                Ok(pa),
                "free RAM {pa:#x} in the window at {va:#x}"
            );
            check!(
                !mm::read_faults(va) && !mm::write_faults(va),
                "free RAM {pa:#x} at {va:#x} is not read-writable"
            );
        }
    }
    let free_bytes: usize = map
        .iter()
        .filter(|r| r.kind == MemKind::Free)
        .map(|r| r.size)
        .sum();
    println!(
        "free RAM reachable: {} MiB in {} RAM range(s)",
        free_bytes >> 20,
        ram.len()
    );
    println!("kernel areas:");
    let areas = mm::areas();
    for a in &areas {
        println!("  {a}");
    }
    check!(!areas.is_empty(), "the kernel address space has no areas");
    check!(
        areas.iter().all(|a| a.start.as_usize() != 0),
        "an area starts at the NULL page"
    );
    let audit = mm::audit();
    println!(
        "page-table audit: {} leaf mappings, {} writable+executable, NULL page {}",
        audit.leaves,
        audit.writable_and_executable,
        if audit.null_mapped {
            "mapped"
        } else {
            "unmapped"
        }
    );
    check!(audit.leaves > 0, "the page table has no leaves");
    check!(
        audit.writable_and_executable == 0,
        "W^X violated, first at {:x?}",
        audit.first_violation
    );
    check!(!audit.null_mapped, "the NULL page is mapped");
    for stack in boot::stacks() {
        let (guard, bottom) = (stack.guard, stack.bottom);
        println!(
            "guard page below the {} [{:#x}, {:#x}): {:#x}",
            stack, bottom, stack.top, guard
        );
        check!(
            mm::translate(guard).is_err() && mm::translate(guard + boot::GUARD_SIZE - 1).is_err(),
            "the {}'s guard page {guard:#x} is mapped",
            stack
        );
        check!(
            mm::read_faults(guard) && mm::read_faults(bottom - 1),
            "reading the {}'s guard page {guard:#x} does not fault",
            stack
        );
        check!(
            !mm::read_faults(bottom) && !mm::read_faults(stack.top - 1),
            "the {} [{bottom:#x}, {:#x}) is not readable",
            stack,
            stack.top
        );
    }
    let s = mm::stats();
    println!(
        "frames: {} total, {} in use, {} page-table frames",
        s.frames_total, s.frames_used, s.page_table_frames
    );
    Ok(())
}
