//! Access probes: one byte load (and store back) whose fault is fixed up.
//!
//! The instructions that may fault are at the labels that `hal::probe` names
//! (the contract and the Rust side live there). When the
//! kernel denies a page fault at one of them, the trap handler sets `x0` to 1 and
//! resumes at the probe's `ret`, so the probe returns "faulted" instead of the
//! fault ending the kernel. A fault the kernel resolves (a lazy page) is retried
//! and the probe returns 0.

use core::arch::global_asm;

global_asm!(
    ".section .text",
    ".balign 4",
    ".global tessera_probe_read",
    "tessera_probe_read:",
    "   mov     x9, x0",
    "   mov     x0, #0",
    ".global tessera_probe_read_insn",
    "tessera_probe_read_insn:",
    "   ldrb    w10, [x9]",
    ".global tessera_probe_read_ret",
    "tessera_probe_read_ret:",
    "   ret",
    ".global tessera_probe_write",
    "tessera_probe_write:",
    "   mov     x9, x0",
    "   mov     x0, #0",
    ".global tessera_probe_write_load",
    "tessera_probe_write_load:",
    "   ldrb    w10, [x9]",
    ".global tessera_probe_write_store",
    "tessera_probe_write_store:",
    "   strb    w10, [x9]",
    ".global tessera_probe_write_ret",
    "tessera_probe_write_ret:",
    "   ret",
);
