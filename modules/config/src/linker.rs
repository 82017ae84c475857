//! The kernel linker script, shared by every board's build script.
//!
//! One layout for all boards, so that the symbols the runtime reads
//! (`modules/runtime/src/memmap.rs`) mean the same everywhere:
//!
//! ```text
//! KERNEL_VADDR = kernel-paddr + phys-virt-offset (loaded at kernel-paddr)
//! .text    _stext .. _etext        boot section first, then code        (R X)
//! .rodata  _srodata .. _erodata                                         (R)
//! .data    _sdata .. _edata        boot page table first, then data     (R W)
//! .bss     _sbss .. _ebss          cleared by the board at boot         (R W)
//!          _strap_guard            4 KiB guard page, never mapped
//!          _strap_stack .. _etrap_stack   the trap stack                (R W)
//!          _sguard                 4 KiB guard page, never mapped
//!          _sstack .. _estack      the boot stack (CPU 0)              (R W)
//!          _ssecondary .. _esecondary   CPUs 1..SMP: a slot each, STRIDE bytes:
//!              guard (4K) | trap stack | guard (4K) | kernel stack    (R W)
//! _ekernel                         page aligned end of the image
//! _start_phys                      the entry point's load address (the ELF entry)
//! ```
//!
//! A secondary CPU `i`'s slot starts at `_ssecondary + (i - 1) * STRIDE`,
//! with `STRIDE = 4K + TRAP_STACK_SIZE + 4K + stack-size`: the same shape as
//! CPU 0's two stacks, so every stack of every CPU has its own guard page.
//!
//! The stacks sit outside `[_sbss, _ebss)` so that clearing bss does not clear
//! the stack the board is running on. A board adds what only it needs through
//! [`Board`] (an output segment, extra input sections, extra symbols).

use std::fmt::Write;
use std::path::PathBuf;

use crate::model::{self, Config};

pub use crate::model::TRAP_STACK_SIZE;

/// Bytes of one secondary CPU's stack slot: a guard page, the trap stack, a
/// guard page, the kernel stack.
pub fn cpu_stride(cfg: &Config) -> u64 {
    cfg.cpu_stride()
}

/// What a board adds to the common layout.
#[derive(Debug, Default, Clone, Copy)]
pub struct Board<'a> {
    /// The crate, for the generated file's header comment.
    pub crate_name: &'a str,
    /// `OUTPUT_ARCH(...)`.
    pub output_arch: &'a str,
    /// A program-header block (`PHDRS { ... }`) and the segment every output
    /// section goes to (e.g. `:all`), for boards whose loader needs one segment.
    pub phdrs: Option<(&'a str, &'a str)>,
    /// Extra input sections for .rodata, .data and .bss (small-data sections,
    /// large-model sections, the GOT).
    pub rodata: &'a [&'a str],
    /// See [`Board::rodata`].
    pub data: &'a [&'a str],
    /// See [`Board::rodata`].
    pub bss: &'a [&'a str],
    /// Extra symbol assignments at the end (physical addresses for boot code).
    pub symbols: &'a [&'a str],
}

fn inputs(list: &[&str]) -> String {
    list.iter().map(|s| format!("        {s}\n")).collect()
}

/// Renders the script for `cfg`.
pub fn render(cfg: &Config, board: &Board<'_>) -> String {
    let (phdrs, seg) = board.phdrs.unwrap_or(("", ""));
    let mut ld = String::new();
    let symbols: String = board.symbols.iter().map(|s| format!("    {s}\n")).collect();
    write!(
        ld,
        r#"/* Generated from {path} by {krate}'s build script (modules/config/src/linker.rs). */
OUTPUT_ARCH({arch})
ENTRY(_start_phys)
KERNEL_VADDR = {vaddr:#x};
KERNEL_PADDR = {paddr:#x};
PHYS_VIRT_OFFSET = {off:#x};
{phdrs}
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
    }} {seg}
    .rodata : ALIGN(4K) {{
        _srodata = .;
        *(.rodata .rodata.*)
{rodata}        . = ALIGN(4K);
        _erodata = .;
    }} {seg}
    .data : ALIGN(4K) {{
        _sdata = .;
        *(.data.boot_page_table)
        *(.data .data.*)
{data}        _edata = .;
    }} {seg}
    .bss (NOLOAD) : ALIGN(4K) {{
        _sbss = .;
        *(.bss .bss.*)
{bss}        *(COMMON)
        . = ALIGN(4K);
        _ebss = .;
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
        _ssecondary = .;
        . += {secondary:#x};
        _esecondary = .;
    }} {seg}
    . = ALIGN(4K);
    _ekernel = .;
    _start_phys = _start - PHYS_VIRT_OFFSET;
{symbols}
    /DISCARD/ : {{
        *(.comment) *(.gnu*) *(.note*) *(.eh_frame*)
    }}
}}
"#,
        path = cfg.path.display(),
        krate = board.crate_name,
        arch = board.output_arch,
        vaddr = cfg.kernel_paddr.wrapping_add(cfg.phys_virt_offset),
        paddr = cfg.kernel_paddr,
        off = cfg.phys_virt_offset,
        rodata = inputs(board.rodata),
        data = inputs(board.data),
        bss = inputs(board.bss),
        stack = cfg.stack_size,
        trap_stack = TRAP_STACK_SIZE,
        secondary = (cfg.smp - 1) * cpu_stride(cfg),
    )
    .unwrap();
    ld
}

/// The whole build-script step for a board: when building for `arch` on a
/// bare-metal target, loads the selected config, writes `kernel.ld` into
/// `OUT_DIR` and adds that folder to the link search path (the targets' rustflags
/// in `.cargo/config.toml` pass `-Tkernel.ld`). Returns the config, or `None` for
/// other targets (host builds need no script).
pub fn emit(arch: &str, board: &Board<'_>) -> Option<Config> {
    for v in model::ENV_VARS {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let target_arch = std::env::var("CARGO_CFG_TARGET_ARCH").ok()?;
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").ok()?;
    if target_arch != arch || target_os != "none" {
        return None;
    }
    println!("cargo:rerun-if-changed={}", model::arches_file().display());
    let cfg = model::load(arch).unwrap_or_else(|e| panic!("board configuration: {e}"));
    println!("cargo:rerun-if-changed={}", cfg.path.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    std::fs::write(out.join("kernel.ld"), render(&cfg, board)).expect("write kernel.ld");
    println!("cargo:rustc-link-search={}", out.display());
    Some(cfg)
}
