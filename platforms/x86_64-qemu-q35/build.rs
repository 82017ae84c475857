//! Writes `kernel.ld` for this board from its TOML and puts it on the link path.
//!
//! The script keeps the whole image in one `PT_LOAD` segment with file layout equal
//! to memory layout, because QEMU loads it through the multiboot "a.out kludge"
//! (header, load, load-end, bss-end and entry addresses in the multiboot header),
//! not as an ELF. Those addresses are physical: the `*_phys` symbols below give
//! them to the 32-bit boot code, which runs before paging.

use std::fmt::Write;

/// Size of the trap stack (see the linker script below).
const TRAP_STACK_SIZE: u64 = 16 * 1024;

fn main() {
    for v in config::model::ENV_VARS {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap();
    if arch != "x86_64" || os != "none" {
        return; // host builds need no linker script (the crate is empty there)
    }
    let cfg = config::model::load(&arch).unwrap_or_else(|e| panic!("board configuration: {e}"));
    println!("cargo:rerun-if-changed={}", cfg.path.display());
    assert!(
        cfg.kernel_paddr + (64 << 20) < 1 << 32,
        "kernel-paddr {:#x}: the multiboot loader needs the image below 4 GiB",
        cfg.kernel_paddr
    );
    // q35 keeps RAM below 4 GiB only up to 0xb000_0000 (the PCIe ECAM starts there);
    // with more, QEMU moves everything past 2 GiB above 4 GiB, which the config's
    // single RAM range cannot describe.
    assert!(
        cfg.phys_base + cfg.phys_size < 0xb000_0000,
        "{}: RAM [{:#x}, {:#x}) reaches past 0xb000_0000, where q35 splits it: use MEM below 2816M",
        cfg.path.display(),
        cfg.phys_base,
        cfg.phys_base + cfg.phys_size
    );
    let mut ld = String::new();
    writeln!(
        ld,
        r#"/* Generated from {path} by platforms/x86_64-qemu-q35/build.rs. */
OUTPUT_ARCH(i386:x86-64)
ENTRY(_start_phys)
KERNEL_VADDR = {vaddr:#x};
KERNEL_PADDR = {paddr:#x};
PHYS_VIRT_OFFSET = {off:#x};

PHDRS
{{
    all PT_LOAD FLAGS(7);
}}

SECTIONS
{{
    . = KERNEL_VADDR;
    _skernel = .;
    .text : AT(KERNEL_PADDR) {{
        _stext = .;
        /* The multiboot header comes first: it must lie in the first 8 KiB of the file. */
        KEEP(*(.text.boot))
        *(.text .text.*)
        . = ALIGN(4K);
        _etext = .;
    }} :all
    .rodata : ALIGN(4K) {{
        _srodata = .;
        *(.rodata .rodata.*)
        *(.lrodata .lrodata.*)
        . = ALIGN(4K);
        _erodata = .;
    }} :all
    .data : ALIGN(4K) {{
        _sdata = .;
        *(.data.boot_page_table)
        *(.data .data.*)
        *(.ldata .ldata.*)
        /* The prebuilt core is position independent: its GOT must be loaded. */
        *(.got .got.*)
        *(.got.plt)
        . = ALIGN(16);
        _edata = .;
    }} :all
    .bss (NOLOAD) : ALIGN(4K) {{
        _sbss = .;
        *(.bss .bss.*)
        *(.lbss .lbss.*)
        *(COMMON)
        . = ALIGN(4K);
        _ebss = .;
        /* The kernel stacks, outside [_sbss, _ebss) so clearing bss does not clear
           them, each above a 4 KiB guard page that the kernel leaves unmapped: the
           trap stack, then the boot stack. The runtime's memory map reads these
           symbols (modules/runtime/src/memmap.rs). */
        . = ALIGN(4K);
        _strap_guard = .;
        . += 4K;
        _strap_stack = .;
        . += {trap_stack:#x};
        _etrap_stack = .;
        _sguard = .;
        . += 4K;
        _sstack = .;
        . += {stack:#x};
        _estack = .;
    }} :all
    . = ALIGN(4K);
    _ekernel = .;

    /* Physical addresses for the multiboot header and the 32-bit boot code. */
    _skernel_phys = _skernel - PHYS_VIRT_OFFSET;
    _edata_phys = _edata - PHYS_VIRT_OFFSET;
    _ekernel_phys = _ekernel - PHYS_VIRT_OFFSET;
    _start_phys = _start - PHYS_VIRT_OFFSET;
    tessera_multiboot_header_phys = tessera_multiboot_header - PHYS_VIRT_OFFSET;
    tessera_start64_phys = tessera_start64 - PHYS_VIRT_OFFSET;
    tessera_boot_gdt_phys = tessera_boot_gdt - PHYS_VIRT_OFFSET;
    tessera_boot_gdt_ptr_phys = tessera_boot_gdt_ptr - PHYS_VIRT_OFFSET;
    tessera_boot_pml4_phys = tessera_boot_pml4 - PHYS_VIRT_OFFSET;
    tessera_boot_pdpt_phys = tessera_boot_pdpt - PHYS_VIRT_OFFSET;
    tessera_boot_pd_phys = tessera_boot_pd - PHYS_VIRT_OFFSET;

    /DISCARD/ : {{
        *(.comment) *(.gnu*) *(.note*) *(.eh_frame*)
    }}
}}"#,
        path = cfg.path.display(),
        vaddr = cfg.kernel_paddr.wrapping_add(cfg.phys_virt_offset),
        paddr = cfg.kernel_paddr,
        off = cfg.phys_virt_offset,
        stack = cfg.stack_size,
        trap_stack = TRAP_STACK_SIZE,
    )
    .unwrap();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out.join("kernel.ld"), ld).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
}
