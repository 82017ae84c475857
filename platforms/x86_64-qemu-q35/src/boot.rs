//! Boot: from QEMU's multiboot loader to the kernel entry.
//!
//! QEMU's `-kernel` loads the image through the multiboot "a.out kludge": the
//! [header](#multiboot-header) at the start of `.text.boot` gives the physical
//! load range (the whole file from `_skernel`), the end of the zeroed range
//! (`_ekernel`, so bss and the boot stack start zeroed) and the entry `_start`.
//! The loader enters `_start` in 32-bit protected mode, paging off, flat
//! segments, `eax` = the multiboot magic and `ebx` = the multiboot information.
//!
//! `_start` (32-bit, at physical addresses) loads the boot page table
//! (`tessera_boot_pml4`: the first 4 GiB of physical memory with 2 MiB leaves,
//! both at 0 and at `config::PHYS_VIRT_OFFSET`), enables PAE, long mode and
//! no-execute (EFER.LME, EFER.NXE), paging and supervisor write protection
//! (CR0.PG, CR0.WP: read-only pages refuse kernel writes too, which the memory
//! module relies on), loads a 64-bit GDT and far-jumps to 64-bit code. That code
//! jumps to the high half, sets `rsp` to the boot stack (`_estack`), clears bss and
//! calls [`rust_entry`], which installs the final GDT (with a TSS for the
//! double-fault stack) and the IDT at their high-half addresses, sets up the
//! serial console, sets the per-CPU register (index 0), reads the multiboot
//! memory map and the ACPI MADT, copies the secondary CPUs' trampoline to low
//! memory, masks the 8259 PIC, enables the local APIC and interrupts (IPIs
//! only) and enters the kernel.
//!
//! The identity half of the boot table only serves the instructions between
//! enabling paging and the jump to the high half; the kernel address space built
//! by the runtime replaces the whole table. Descriptor tables are therefore
//! reloaded at high-half addresses before the kernel runs.

use core::arch::global_asm;

use hal::{BootInfo, FirmwareRam};

/// Multiboot 1 header magic.
const MULTIBOOT_MAGIC: u32 = 0x1bad_b002;
/// Header flags: bit 16, the address fields are valid (the "a.out kludge").
const MULTIBOOT_FLAGS: u32 = 1 << 16;
/// What the loader passes in `eax`.
const MULTIBOOT_BOOTLOADER_MAGIC: u32 = 0x2bad_b002;

/// CR4.PAE.
const CR4_PAE: u32 = 1 << 5;
/// EFER: LME (long mode enable) and NXE (no-execute enable).
const EFER_LME_NXE: u32 = (1 << 8) | (1 << 11);
/// CR0: PE, WP and PG.
const CR0_PE_WP_PG: u32 = (1 << 0) | (1 << 16) | (1 << 31);
/// Flags of the boot table's 2 MiB leaves: present, writable, page size.
const BOOT_LEAF: u64 = 0x83;
/// Flags of the boot table's non-leaf entries: present, writable.
const BOOT_TABLE: u64 = 0x3;

/// Selector of the 64-bit kernel code segment (GDT slot 1).
pub const KERNEL_CS: u16 = 0x08;
/// Selector of the kernel data segment (GDT slot 2).
pub const KERNEL_DS: u16 = 0x10;

global_asm!(
    // ---- the multiboot header and the 32-bit entry ----
    ".section .text.boot, \"ax\"",
    ".code32",
    ".balign 4",
    ".global tessera_multiboot_header",
    "tessera_multiboot_header:",
    "   .long {mb_magic}",
    "   .long {mb_flags}",
    "   .long -({mb_magic} + {mb_flags})",
    "   .long tessera_multiboot_header_phys", // header_addr
    "   .long _skernel_phys",                 // load_addr
    "   .long _edata_phys",                   // load_end_addr
    "   .long _ekernel_phys",                 // bss_end_addr
    "   .long _start_phys",                   // entry_addr
    "",
    ".global _start",
    "_start:",
    "   cli",
    "   cld",
    // Keep the multiboot magic and information pointer for the kernel entry.
    "   movl    %eax, %edi",
    "   movl    %ebx, %esi",
    "   movl    $tessera_boot_pml4_phys, %eax",
    "   movl    %eax, %cr3",
    "   movl    %cr4, %eax",
    "   orl     ${cr4_pae}, %eax",
    "   movl    %eax, %cr4",
    "   movl    $0xc0000080, %ecx",
    "   rdmsr",
    "   orl     ${efer}, %eax",
    "   wrmsr",
    "   movl    %cr0, %eax",
    "   orl     ${cr0}, %eax",
    "   movl    %eax, %cr0",
    // Long mode is active (compatibility mode): load the 64-bit GDT and jump.
    "   lgdt    tessera_boot_gdt_ptr_phys",
    "   ljmpl   ${cs}, $tessera_start64_phys",
    "",
    ".code64",
    ".global tessera_start64",
    "tessera_start64:",
    // 64-bit, still at the identity-mapped physical address: go to the high half.
    "   movabsq $2f, %rax",
    "   jmpq    *%rax",
    "2:",
    "   movw    ${ds}, %ax",
    "   movw    %ax, %ds",
    "   movw    %ax, %es",
    "   movw    %ax, %ss",
    "   xorl    %eax, %eax",
    "   movw    %ax, %fs",
    "   movw    %ax, %gs",
    "   movabsq $_estack, %rsp",
    "   xorl    %ebp, %ebp",
    // Clear bss (the boot stack lies above it). rdi/rsi hold the multiboot values.
    "   movq    %rdi, %r12",
    "   movq    %rsi, %r13",
    "   movabsq $_sbss, %rdi",
    "   movabsq $_ebss, %rcx",
    "   subq    %rdi, %rcx",
    "   xorl    %eax, %eax",
    "   rep stosb",
    "   movl    %r12d, %edi",
    "   movl    %r13d, %esi",
    // rsp is 16-byte aligned here, so the callee sees the ABI's rsp % 16 == 8.
    "   movabsq ${entry}, %rax",
    "   callq   *%rax",
    "3: hlt",
    "   jmp     3b",
    "",
    // ---- the boot GDT: null, 64-bit code, data ----
    ".section .rodata",
    ".balign 16",
    ".global tessera_boot_gdt",
    "tessera_boot_gdt:",
    "   .quad 0",
    "   .quad 0x00af9a000000ffff",
    "   .quad 0x00cf92000000ffff",
    ".global tessera_boot_gdt_ptr",
    "tessera_boot_gdt_ptr:",
    "   .word 3 * 8 - 1",
    "   .long tessera_boot_gdt_phys",
    "",
    // ---- the boot page table ----
    ".section .data.boot_page_table, \"aw\"",
    ".balign 4096",
    ".global tessera_boot_pml4",
    "tessera_boot_pml4:",
    "   .quad tessera_boot_pdpt_phys + {table}",
    "   .fill {high} - 1, 8, 0",
    "   .quad tessera_boot_pdpt_phys + {table}",
    "   .fill {entries} - 1 - {high}, 8, 0",
    ".global tessera_boot_pdpt",
    "tessera_boot_pdpt:",
    "   .quad tessera_boot_pd_phys + 0 * 4096 + {table}",
    "   .quad tessera_boot_pd_phys + 1 * 4096 + {table}",
    "   .quad tessera_boot_pd_phys + 2 * 4096 + {table}",
    "   .quad tessera_boot_pd_phys + 3 * 4096 + {table}",
    "   .fill {entries} - 4, 8, 0",
    ".global tessera_boot_pd",
    "tessera_boot_pd:",
    "   .set tessera_boot_i, 0",
    "   .rept 4 * {entries}",
    "   .quad tessera_boot_i * {span_2m} + {leaf}",
    "   .set tessera_boot_i, tessera_boot_i + 1",
    "   .endr",
    "",
    ".section .text",
    mb_magic = const MULTIBOOT_MAGIC,
    mb_flags = const MULTIBOOT_FLAGS,
    cr4_pae = const CR4_PAE,
    efer = const EFER_LME_NXE,
    cr0 = const CR0_PE_WP_PG,
    cs = const KERNEL_CS,
    ds = const KERNEL_DS,
    table = const BOOT_TABLE,
    leaf = const BOOT_LEAF,
    entries = const paging::geometry::ENTRIES,
    span_2m = const paging::geometry::span(1),
    high = const HIGH_SLOT,
    entry = sym rust_entry,
    options(att_syntax)
);

/// Height of the PML4 (the root of the 4-level table).
const PML4: usize = 3;
/// The PML4 slot of the high half; the boot table's identity slot is 0.
const HIGH_SLOT: usize = paging::geometry::index(config::PHYS_VIRT_OFFSET, PML4);
const _: () = assert!(HIGH_SLOT != 0, "the high half must not share PML4 slot 0");
const _: () = assert!(
    config::PHYS_VIRT_OFFSET.is_multiple_of(paging::geometry::span(PML4)),
    "the boot table maps the high half with a whole PML4 slot"
);

/// First Rust code: in the high half, on the boot stack, bss cleared.
extern "C" fn rust_entry(magic: u32, multiboot_info: u32) -> ! {
    crate::console::init();
    // The firmware's banner does not end its last line.
    crate::console::write(b"\n");
    crate::trap::init();
    crate::smp::set_cpu_index(0);
    if magic != MULTIBOOT_BOOTLOADER_MAGIC {
        // Not fatal: nothing here depends on the multiboot information.
        crate::console::write(b"warning: not entered by a multiboot loader\n");
    }
    let firmware_ram = if magic == MULTIBOOT_BOOTLOADER_MAGIC {
        multiboot_ram(multiboot_info as usize)
    } else {
        FirmwareRam::new()
    };
    // SAFETY: the boot table is still active and the multiboot information
    // was read (it lies above the trampoline page anyway).
    unsafe {
        crate::acpi::scan();
        crate::smp::install_trampoline();
    }
    let boot = BootInfo {
        cpu_id: crate::cpu::apic_id(),
        fdt: None,
        firmware_ram,
    };
    crate::smp::set_apic_id(0, boot.cpu_id);
    // SAFETY: once, on the boot CPU, interrupts still disabled.
    unsafe { crate::apic::disable_pic() };
    crate::apic::enable();
    // The boot CPU takes IPIs from now on (the only interrupts left unmasked).
    x86_64::instructions::interrupts::enable();
    hal::kernel::kernel_main(&boot)
}

/// `flags` bit of the multiboot information: `mmap_addr`/`mmap_length` are valid.
const MULTIBOOT_INFO_MMAP: u32 = 1 << 6;
/// Memory-map entry type of usable RAM.
const MULTIBOOT_MEMORY_AVAILABLE: u32 = 1;

/// Reads a little-endian `u32`/`u64` at physical `pa` (below 4 GiB) through the
/// boot table's high-half mapping.
///
/// # Safety
///
/// `pa..pa + size_of::<T>()` must lie below 4 GiB (mapped by the boot table) and
/// hold RAM or ROM the loader wrote (no device register).
unsafe fn read_phys<T: Copy>(pa: usize) -> T {
    let va = (pa + config::PHYS_VIRT_OFFSET) as *const T;
    // SAFETY: the caller guarantees the range is mapped memory without side
    // effects; the multiboot structures are only 4-byte aligned, hence unaligned.
    unsafe { va.read_unaligned() }
}

/// The usable RAM of the multiboot memory map at `info` (the `ebx` of the
/// loader), or nothing if the loader gave none. Written by hand: the map is a
/// list of 24-byte records behind two words of the information block, and the
/// multiboot crates want an allocator-backed memory adapter for that.
fn multiboot_ram(info: usize) -> FirmwareRam {
    let mut ram = FirmwareRam::new();
    // The information block and the map are below 4 GiB, where the boot table
    // maps everything; check before reading through it.
    const LIMIT: usize = 1 << 32;
    if info == 0 || info + 52 > LIMIT {
        return ram;
    }
    // SAFETY: `info..info + 52` is below 4 GiB (checked) and is the block the
    // multiboot loader wrote (the magic was checked by the caller).
    let (flags, len, addr) = unsafe {
        (
            read_phys::<u32>(info),
            read_phys::<u32>(info + 44) as usize,
            read_phys::<u32>(info + 48) as usize,
        )
    };
    if flags & MULTIBOOT_INFO_MMAP == 0 || addr.saturating_add(len) > LIMIT {
        return ram;
    }
    let mut at = addr;
    while at + 24 <= addr + len {
        // SAFETY: the record `at..at + 24` lies inside the map the loader wrote,
        // below 4 GiB (checked above).
        let (size, base, length, kind) = unsafe {
            (
                read_phys::<u32>(at) as usize,
                read_phys::<u64>(at + 4) as usize,
                read_phys::<u64>(at + 12) as usize,
                read_phys::<u32>(at + 20),
            )
        };
        if kind == MULTIBOOT_MEMORY_AVAILABLE {
            ram.add(base, length);
        }
        // `size` counts the record without its own field; a bogus 0 would loop.
        at += size.max(20) + 4;
    }
    ram
}
