//! Writes to an unmapped address on purpose: the kernel must report the fault
//! (address and access) and end QEMU with a failing status.
#![no_std]
#![no_main]

use tessera::mm::{self, PAGE_SIZE};
use tessera::{AppResult, boot, println};

tessera::main!(main);

fn main() -> AppResult {
    // A page of the app window that nothing maps.
    let (start, end) = mm::window();
    let target = unmapped_target();
    println!(
        "fault: writing to unmapped {target:#x} on {} (mapping window [{start:#x}, {end:#x}))",
        boot::board_name()
    );
    // SAFETY: deliberately invalid: this write must fault, and the kernel must end
    // the machine with a report instead of returning here.
    unsafe { (target as *mut u64).write_volatile(0xdead) };
    Err(tessera::format!("the write to {target:#x} did not fault"))
}

fn unmapped_target() -> usize {
    // Map and unmap a page: its address is in the window and now unmapped.
    let va = mm::mmap(
        None,
        PAGE_SIZE,
        mm::Prot::READ | mm::Prot::WRITE,
        mm::MmapFlags::empty(),
    )
    .expect("mmap of one page");
    mm::munmap(va, PAGE_SIZE).expect("munmap of that page");
    va + 0x18
}
