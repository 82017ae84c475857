//! Access probes: one byte load (and store back) whose fault is fixed up.
//!
//! The instructions that may fault are at the labels listed in [`fixup`]. When the
//! kernel denies a page fault at one of them, the trap handler sets `rax` (the
//! return value) to 1 and resumes at the probe's `ret`, so the probe returns
//! "faulted" instead of the fault ending the kernel. A fault the kernel resolves
//! (a lazy page) is retried and the probe returns 0.

use core::arch::global_asm;

global_asm!(
    ".section .text",
    ".global tessera_probe_read",
    "tessera_probe_read:",
    "   xorl    %eax, %eax",
    "tessera_probe_read_insn:",
    "   movb    (%rdi), %cl",
    "tessera_probe_read_ret:",
    "   retq",
    ".global tessera_probe_write",
    "tessera_probe_write:",
    "   xorl    %eax, %eax",
    "tessera_probe_write_load:",
    "   movb    (%rdi), %cl",
    "tessera_probe_write_store:",
    "   movb    %cl, (%rdi)",
    "tessera_probe_write_ret:",
    "   retq",
    ".global tessera_probe_read_insn, tessera_probe_read_ret",
    ".global tessera_probe_write_load, tessera_probe_write_store, tessera_probe_write_ret",
    options(att_syntax)
);

unsafe extern "C" {
    fn tessera_probe_read(addr: usize) -> usize;
    fn tessera_probe_write(addr: usize) -> usize;
    static tessera_probe_read_insn: u8;
    static tessera_probe_read_ret: u8;
    static tessera_probe_write_load: u8;
    static tessera_probe_write_store: u8;
    static tessera_probe_write_ret: u8;
}

/// Loads the byte at `addr`; true if the load faulted and was not resolved.
pub fn read(addr: usize) -> bool {
    // SAFETY: the probe only loads one byte into a scratch register; a fault there
    // is fixed up by the trap handler, so it returns in every case and touches no
    // Rust-visible memory.
    unsafe { tessera_probe_read(addr) != 0 }
}

/// Loads the byte at `addr` and stores it back; true if either access faulted.
pub fn write(addr: usize) -> bool {
    // SAFETY: as for `read`; the store writes back the value just loaded, so a
    // successful probe changes no memory (one CPU, no concurrent writer).
    unsafe { tessera_probe_write(addr) != 0 }
}

/// Where to resume after a denied fault at `pc`, if `pc` is a probe instruction.
pub fn fixup(pc: usize) -> Option<usize> {
    let (read_insn, read_ret, write_load, write_store, write_ret) = (
        &raw const tessera_probe_read_insn as usize,
        &raw const tessera_probe_read_ret as usize,
        &raw const tessera_probe_write_load as usize,
        &raw const tessera_probe_write_store as usize,
        &raw const tessera_probe_write_ret as usize,
    );
    if pc == read_insn {
        Some(read_ret)
    } else if pc == write_load || pc == write_store {
        Some(write_ret)
    } else {
        None
    }
}
