//! The contract between a board and the rest of the kernel.
//!
//! A board crate (under `platforms/`) implements [`Board`]: console, power-off with
//! a status, cycle counter, page-table activation, the access probe, and the
//! page-table format of its architecture. It owns the boot path and the trap entry.
//! The kernel (the `runtime` module) picks exactly one board per target in one
//! place (`runtime::board`) and calls it only through this trait.
//!
//! The board calls into the kernel through the functions of [`kernel`]: the
//! kernel entry after early boot, the page-fault hook, the fatal-fault report, and
//! the question whether an address lies in a stack's guard page. The kernel
//! implements them as one trait, [`kernel::KernelIf`] (with `crate_interface`), so
//! the compiler checks their signatures on both sides, and an image without the
//! kernel's side does not link.
//!
//! Everything here is plain data or a trait, so it builds and is tested on the host.
#![no_std]

pub mod fault;
pub mod kernel;
pub mod mem;
pub mod probe;
pub mod smp;

pub use fault::{Access, FaultOutcome, PageFault, RawCause};
pub use mem::{FirmwareRam, MemKind, MemRegion};
pub use paging::{RootLayout, Roots};
pub use smp::{CpuList, CpuStart, StartError};

use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::GenericPTE;
use page_table_multiarch::{PagingHandler, PagingMetaData};

/// How the kernel ends: QEMU's exit status must tell these apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything the app checked held.
    Pass,
    /// A check failed, a fault was not allowed, or the kernel panicked.
    Fail,
}

/// What the board learned while booting, handed to the kernel entry.
#[derive(Debug, Clone, Copy)]
pub struct BootInfo {
    /// The id of the CPU that booted (hart id, APIC id, MPIDR affinity).
    pub cpu_id: usize,
    /// Physical address of the flattened device tree, if the firmware passed one.
    pub fdt: Option<PhysAddr>,
    /// Usable RAM as the board's boot protocol reported it (multiboot); empty if
    /// the board has none of its own (the kernel then reads the device tree).
    pub firmware_ram: FirmwareRam,
}

/// [`core::fmt::Write`] over a board's console: for the boards' trap reports and
/// the kernel's `print!`. Writing never fails (the console blocks until the bytes
/// are sent), so the `fmt::Result` of a write is always `Ok`.
pub struct ConsoleWriter<B: Board>(core::marker::PhantomData<B>);

impl<B: Board> ConsoleWriter<B> {
    /// A writer to `B`'s console.
    pub const fn new() -> Self {
        Self(core::marker::PhantomData)
    }
}

impl<B: Board> Default for ConsoleWriter<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Board> core::fmt::Write for ConsoleWriter<B> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        B::console_write(s.as_bytes());
        Ok(())
    }
}

/// A 32-bit value at a physical address that the board knows in advance: what the
/// `linear` app maps and reads to prove a linear mapping of a physical range.
#[derive(Debug, Clone, Copy)]
pub struct KnownWord {
    /// Physical address of the word (4-byte aligned).
    pub paddr: PhysAddr,
    /// The value expected there, as read with the given byte order.
    pub value: u32,
    /// Whether the word is stored big-endian (device-tree headers are).
    pub big_endian: bool,
    /// Whether the range is device memory (MMIO) rather than RAM.
    pub device: bool,
    /// What the word is, for the app's output ("device tree magic", ...).
    pub what: &'static str,
}

impl KnownWord {
    /// The magic number at the start of a flattened device tree.
    pub const FDT_MAGIC: u32 = 0xd00d_feed;

    /// The device tree header's magic, for boards whose firmware passes one.
    pub fn fdt_magic(boot: &BootInfo) -> Self {
        KnownWord {
            paddr: boot.fdt.unwrap_or(PhysAddr::from(0)),
            value: Self::FDT_MAGIC,
            big_endian: true,
            device: false,
            what: "device tree magic",
        }
    }
}

/// One board: everything the kernel needs from the hardware it runs on.
///
/// Implemented by a zero-sized type in each board crate. All functions are
/// associated functions: there is one board per image.
pub trait Board {
    /// The board's name, as in `configs/platforms/<name>.toml`.
    const NAME: &'static str;
    /// Page-table geometry and TLB maintenance of this architecture.
    type PagingMeta: PagingMetaData<VirtAddr = VirtAddr>;
    /// Page-table entry format of this architecture.
    type Pte: GenericPTE;
    /// How the architecture's translation base registers cover the two halves
    /// of the address space: one root for both ([`RootLayout::Single`]: x86_64's
    /// CR3, RISC-V's `satp`), or a root per half ([`RootLayout::PerHalf`]:
    /// AArch64's TTBR0_EL1 and TTBR1_EL1, which index their roots with the same
    /// address bits, so one shared root would map everything twice). The kernel
    /// builds its page table with this layout.
    const ROOT_LAYOUT: RootLayout;
    /// Frame allocation and the physical-to-virtual window for page tables.
    type Paging: PagingHandler;

    /// Writes bytes to the console, blocking until they are sent.
    fn console_write(bytes: &[u8]);

    /// Ends the machine with the given status. QEMU exits with a status that the
    /// test harness maps back to pass or fail (see `configs/platforms/*.toml`).
    fn exit(status: ExitStatus) -> !;

    /// A free-running cycle (or constant-rate tick) counter.
    fn cycles() -> u64;

    /// Ticks of [`Board::cycles`] per second, when the board knows it.
    fn cycles_per_sec() -> Option<u64>;

    /// Makes the page table with these roots the active one for the kernel and
    /// flushes the whole local TLB. With [`RootLayout::Single`] both roots are
    /// the same frame.
    ///
    /// # Safety
    ///
    /// `roots` must be the roots of a complete page table of this architecture,
    /// built with [`Board::ROOT_LAYOUT`], that maps the running kernel (text,
    /// data, stack and the physical-memory window) at the addresses it runs at,
    /// and must stay valid for as long as it is active.
    unsafe fn activate_page_table(roots: Roots);

    /// Flushes the local TLB entry for one page, or the whole TLB.
    fn flush_tlb(vaddr: Option<VirtAddr>);

    /// Performs one real byte load at `addr` and reports whether it faulted,
    /// without ending the kernel (an exception-table fixup in the trap handler,
    /// see [`probe`]). A fault the memory module resolves (a lazy page) counts as
    /// no fault.
    fn probe_read(addr: VirtAddr) -> bool {
        probe::read(addr.as_usize())
    }

    /// Like [`Board::probe_read`], for a store: loads the byte at `addr` and stores
    /// it back, so a successful probe leaves memory unchanged. A page that cannot
    /// be read reports a fault too.
    fn probe_write(addr: VirtAddr) -> bool {
        probe::write(addr.as_usize())
    }

    /// A word at a known physical address (device tree header, device register).
    fn known_word(boot: &BootInfo) -> KnownWord;

    /// Whether [`Board::flush_tlb`] drops the translation from every CPU's TLB
    /// (AArch64's `TLBI ...IS` completed by `DSB ISH`), so that a shootdown
    /// needs no IPI.
    const TLB_BROADCAST: bool = false;

    /// The CPUs present, boot CPU first, as the firmware lists them (ACPI
    /// MADT, the device tree's `/cpus`). See [`smp`].
    fn cpus(boot: &BootInfo) -> CpuList;

    /// Starts a secondary CPU as [`smp`] describes; returns once the firmware
    /// accepted the request, without waiting for the CPU to arrive in
    /// [`kernel::secondary_main`].
    ///
    /// # Safety
    ///
    /// Called once per CPU, from the boot CPU; the stacks of `start` belong to
    /// that CPU alone from now on, and `start.roots` is the kernel's page table
    /// (complete and valid for as long as the kernel runs, as for
    /// [`Board::activate_page_table`]).
    unsafe fn start_cpu(start: &CpuStart) -> Result<(), StartError>;

    /// The kernel's index of the calling CPU (0 for the boot CPU), from the
    /// per-CPU register the board set when the CPU started.
    fn cpu_index() -> usize;

    /// Interrupts the CPUs of `targets` (bit `i` = CPU index `i`): each calls
    /// [`kernel::ipi`] soon, from its interrupt handler if it runs with
    /// interrupts enabled, or when its [`Board::wait_for_ipi`] returns. A board
    /// with [`Board::TLB_BROADCAST`] may implement this as a wake-up of CPUs in
    /// `wait_for_ipi` only (the kernel sends nothing else there).
    fn send_ipi(targets: u64);

    /// Called with interrupts disabled: sleeps until an IPI is pending (at once
    /// if one is), has [`kernel::ipi`] called for it, and returns with
    /// interrupts disabled. May return without an IPI.
    fn wait_for_ipi();
}
