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
