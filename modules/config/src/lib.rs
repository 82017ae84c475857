//! The board's configuration as constants, generated at build time from
//! `configs/platforms/<board>.toml` (the docs of the `model` module, built with the
//! `build` feature, say how the file is chosen and which environment variables
//! override it).
#![cfg_attr(not(feature = "build"), no_std)]

include!(concat!(env!("OUT_DIR"), "/config.rs"));

/// The RAM range holding physical address `pa`, as (start, end).
#[cfg(not(feature = "build"))]
pub const fn ram_range(pa: usize) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < RAM.len() {
        let (start, size) = RAM[i];
        if pa >= start && pa - start < size {
            return Some((start, start + size));
        }
        i += 1;
    }
    None
}

/// Whether physical address `pa` is RAM (in one of the [`RAM`] ranges).
#[cfg(not(feature = "build"))]
pub const fn is_ram(pa: usize) -> bool {
    ram_range(pa).is_some()
}

/// The parser, for the boards' build scripts.
#[cfg(feature = "build")]
pub mod model;

/// The kernel linker script, for the boards' build scripts.
#[cfg(feature = "build")]
pub mod linker;
