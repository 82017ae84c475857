//! Boot glue between a board and an app.
//!
//! Order at boot (`kernel_main` in [`entry`], called by the board through
//! `hal::kernel::kernel_main`): heap (its static arena) -> console logger -> boot
//! info -> physical memory map -> frame allocator -> kernel address space (built
//! from the map, then activated with a full TLB flush) -> the app's `main` -> exit
//! status.
//!
//! Where things go:
//! - [`board`]: the one place the board is chosen for the target, and the
//!   kernel's implementation of `hal::kernel::KernelIf` (the board -> kernel calls);
//! - [`space`]: the kernel address space and the page-fault hooks the board calls;
//! - [`memmap`]: the physical memory map from the config and the linker symbols;
//! - [`heap`], [`console`]: the kernel heap and `print!`/`log`;
//! - [`smp`]: starting the other CPUs, their idle loop and jobs;
//! - [`shootdown`]: the TLB shootdown protocol (`tlb`) over this board, as
//!   `paging`'s flush hook.
//!
//! # Locks on several CPUs
//! Every lock of the kernel, outermost first (a CPU takes them only in this
//! order; none is held while waiting for another CPU, except as said):
//!
//! | lock | where | held for | while waiting for it |
//! |---|---|---|---|
//! | address-space lock (read: faults and reads; write: calls that change areas) | `spacelock.rs` | one call; the write side across that call's one shootdown | answers flush requests (`shootdown::relax`) |
//! | table lock | `mm` (`lock.rs`) | one walk or one install; across one shootdown only in a copy-on-write fault (the page's old translation) | spins, answering flush requests (`paging::relax`, this crate's `shootdown::relax`) |
//! | a memory object's page lock | `mm` (`object/`) | one lookup or count update (no pager call, no copy) | spins |
//! | heap | `heap.rs` (`buddy_system_allocator`) | one allocation (a growth takes the frame allocator's) | spins |
//! | frame allocator: the CPU's magazine, then the bitmap | `frames::cached` | one allocation or free; a refill of 32 frames | spins (taking other CPUs' magazines back holds one at a time, never with the bitmap's) |
//! | job queue of a CPU | `smp.rs` | one push or pop, interrupts off | spins |
//! | flush mailbox of a CPU | `tlb` | one merge or take | spins |
//! | console | `console.rs` | one line | spins |
//!
//! The only waits for other CPUs are for flush acknowledgements (a
//! shootdown, which answers its own mailbox while it waits; a copy-on-write
//! fault shoots down holding the table lock, which is safe because every
//! waiter for that lock, or for a fault's claim, answers flush requests:
//! `tlb`'s loom model `a_shootdown_under_a_lock_finishes_while_the_waiter_relaxes`), for a job's
//! result and at barriers (both answer flush requests), and for a CPU to come
//! online at boot. An IPI handler takes only its own mailbox's lock. Frames
//! are freed only after the shootdown of the call that unmapped them
//! (`paging`'s operation batches, `mm`'s flush and free protocol).
#![no_std]

extern crate alloc;

pub mod board;
pub mod console;
pub mod entry;
pub mod heap;
pub mod memmap;
pub mod shootdown;
pub mod smp;
pub mod space;
mod spacelock;

pub use entry::{AppResult, boot_info};
