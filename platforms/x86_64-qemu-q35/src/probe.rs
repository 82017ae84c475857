//! Access probes: one byte load (and store back) whose fault is fixed up.
//!
//! The instructions that may fault are at the labels that `hal::probe` names
//! (the contract and the Rust side live there). When the
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
