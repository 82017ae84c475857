//! Writes `kernel.ld` for this board from its TOML and puts it on the link path.

use std::fmt::Write;

/// Size of the trap stack (see the linker script below).
const TRAP_STACK_SIZE: u64 = 16 * 1024;

fn main() {
    for v in config::model::ENV_VARS {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    if arch != "riscv64" {
        return; // host builds (clippy of the workspace) need no linker script
    }
    let cfg = config::model::load(&arch).unwrap_or_else(|e| panic!("board configuration: {e}"));
    println!("cargo:rerun-if-changed={}", cfg.path.display());
    let mut ld = String::new();
    writeln!(
        ld,
        r#"/* Generated from {path} by platforms/riscv64-qemu-virt/build.rs. */
OUTPUT_ARCH(riscv)
ENTRY(_start_phys)
KERNEL_VADDR = {vaddr:#x};
KERNEL_PADDR = {paddr:#x};
PHYS_VIRT_OFFSET = {off:#x};

SECTIONS
{{
    . = KERNEL_VADDR;
    _skernel = .;
    .text : AT(KERNEL_PADDR) {{
        _stext = .;
        KEEP(*(.text.boot))
        *(.text .text.*)
        . = ALIGN(4K);
        _etext = .;
    }}
    .rodata : ALIGN(4K) {{
        _srodata = .;
        *(.rodata .rodata.*)
        *(.srodata .srodata.*)
        *(.sdata2 .sdata2.*)
        . = ALIGN(4K);
        _erodata = .;
    }}
    .data : ALIGN(4K) {{
        _sdata = .;
        *(.data.boot_page_table)
        *(.data .data.*)
        *(.sdata .sdata.*)
        *(.got .got.*)
        _edata = .;
    }}
    .bss (NOLOAD) : ALIGN(4K) {{
        _sbss = .;
        *(.bss .bss.*)
        *(.sbss .sbss.*)
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
    }}
    . = ALIGN(4K);
    _ekernel = .;
    _start_phys = _start - PHYS_VIRT_OFFSET;

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
