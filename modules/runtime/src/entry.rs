//! The kernel entry, the app's entry and the panic handler.

use alloc::string::String;
use alloc::vec::Vec;

use hal::{Board, BootInfo, ExitStatus, FirmwareRam, MemKind, MemRegion};
use spin::Once;

use crate::board::Current;
use crate::{println, println_unlocked};

/// What an app's `main` returns: `Err` carries the reason a check failed.
pub type AppResult = Result<(), String>;

static BOOT: Once<BootInfo> = Once::new();
static MEMORY_MAP: Once<Vec<MemRegion>> = Once::new();
static FIRMWARE_RAM: Once<FirmwareRam> = Once::new();

/// The app's half of the contract with the kernel: its entry. An app
/// implements it through `tessera::main!` (with `crate_interface`), so the
/// compiler checks the signature on both sides and an image without an app
/// does not link.
#[crate_interface::def_interface]
pub trait AppIf {
    /// Runs the app and says how the machine should end.
    fn app_main() -> ExitStatus;
}

/// What the board reported at boot.
pub fn boot_info() -> &'static BootInfo {
    BOOT.get().expect("boot info is set before the app runs")
}

/// The usable RAM the firmware reported at boot (empty if it said nothing).
pub fn firmware_ram() -> &'static FirmwareRam {
    static NONE: FirmwareRam = FirmwareRam::new();
    FIRMWARE_RAM.get().unwrap_or(&NONE)
}

/// The physical memory map built at boot.
pub fn memory_map() -> &'static [MemRegion] {
    MEMORY_MAP.get().map(Vec::as_slice).unwrap_or(&[])
}

// Every CPU the kernel can run on has a frame cache.
const _: () = assert!(frames::cached::MAX_CPUS >= hal::smp::MAX_CPUS);

/// The kernel's side of `hal::kernel::kernel_main` (through
/// [`hal::kernel::KernelIf`], implemented in [`crate::board`]).
pub(crate) fn kernel_main(boot: &BootInfo) -> ! {
    crate::heap::init();
    crate::console::init_logger();
    BOOT.call_once(|| *boot);
    frames::global::set_phys_virt_offset(config::PHYS_VIRT_OFFSET);

    let firmware = FIRMWARE_RAM.call_once(|| crate::memmap::firmware_ram(boot));
    report_firmware_ram(firmware);
    let map = MEMORY_MAP.call_once(|| crate::memmap::build(boot, firmware));
    // One bitmap over all RAM ranges; the holes between them are never added.
    let mut allocator = frames::FrameAllocator::new(
        config::PHYS_MEMORY_BASE,
        config::PHYS_MEMORY_END - config::PHYS_MEMORY_BASE,
    );
    for r in map.iter().filter(|r| r.kind == MemKind::Free) {
        allocator.add_free(r.paddr.as_usize(), r.size);
    }
    frames::global::init(allocator);
    // Per-CPU caches of single frames (the boards set the per-CPU register
    // before kernel_main, and on every CPU before secondary_main).
    frames::global::set_cpu_index(<Current as Board>::cpu_index);

    if let Err(e) = crate::space::init(map) {
        println!("kernel address space: {e:?}");
        Current::exit(ExitStatus::Fail);
    }
    crate::shootdown::init();
    crate::smp::start_secondaries(boot, crate::space::roots());
    log::info!(
        "{} ({}), {} MiB RAM in {} range(s), {} frames free",
        Current::NAME,
        config::ARCH,
        config::PHYS_MEMORY_SIZE >> 20,
        config::RAM.len(),
        frames::global::stats().free()
    );
    let status = crate_interface::call_interface!(AppIf::app_main());
    Current::exit(status)
}

/// Logs what the firmware said about RAM, and warns when it reports clearly less
/// than the kernel was built for (`MEM=`): that RAM is then left out.
fn report_firmware_ram(firmware: &FirmwareRam) {
    if firmware.is_empty() {
        log::warn!("the firmware reported no RAM ranges: using RAM as configured");
        return;
    }
    if firmware.dropped() > 0 {
        log::warn!(
            "the firmware reported more than {} RAM ranges: {} left out",
            FirmwareRam::CAPACITY,
            firmware.dropped()
        );
    }
    let configured: usize = config::RAM.iter().map(|&(_, size)| size).sum();
    let present: usize = crate::memmap::usable_ram(firmware)
        .iter()
        .map(|(s, e)| e - s)
        .sum();
    log::info!(
        "firmware: {} MiB usable RAM in {} range(s); {} KiB of the configured RAM is not usable",
        firmware.total() >> 20,
        firmware.ranges().len(),
        (configured - present) >> 10
    );
    // Firmware keeps a few hundred KiB (BIOS area, ACPI tables); more is missing RAM.
    if configured - present >= 1 << 20 {
        log::warn!(
            "the machine has {} MiB less usable RAM than the kernel was built for (MEM={} MiB): \
             the missing part is left out",
            (configured - present) >> 20,
            config::PHYS_MEMORY_SIZE >> 20
        );
    }
}

/// Runs an app's main and prints its verdict: `<app>: ok` or `<app>: FAILED: <why>`.
pub fn run_app(name: &str, main: fn() -> AppResult) -> ExitStatus {
    match main() {
        Ok(()) => {
            println!("{name}: ok");
            ExitStatus::Pass
        }
        Err(why) => {
            println!("{name}: FAILED: {why}");
            ExitStatus::Fail
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println_unlocked!("\nkernel panic: {info}");
    Current::exit(ExitStatus::Fail)
}
