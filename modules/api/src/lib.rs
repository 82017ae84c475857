//! What apps link.
//!
//! An app is a `#![no_std] #![no_main]` binary crate that depends on this crate and
//! names its entry with [`main!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use tessera::{mm, println};
//!
//! tessera::main!(main);
//!
//! fn main() -> tessera::AppResult {
//!     let va = mm::mmap(None, 4096, mm::Prot::READ | mm::Prot::WRITE, mm::MmapFlags::empty())
//!         .map_err(|e| tessera::format!("mmap: {e:?}"))?;
//!     println!("mapped at {va:#x}");
//!     Ok(())
//! }
//! ```
//!
//! The runtime prints `<app>: ok` when `main` returns `Ok`, or
//! `<app>: FAILED: <why>` for `Err(why)`, and ends QEMU with a pass or fail status.
#![no_std]

extern crate alloc;

pub mod boot;
pub mod mm;
pub mod rng;
pub mod smp;
pub mod time;

pub use alloc::{format, string::String, vec, vec::Vec};
pub use axerrno::{AxError, AxResult};
pub use runtime::{AppResult, print, println};

#[doc(hidden)]
pub mod __private {
    pub use crate_interface::impl_interface;
    pub use hal::ExitStatus;
    pub use runtime::entry::{AppIf, run_app};
}

/// Names the app's entry function: `fn main() -> tessera::AppResult`.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        /// The app, as the kernel sees it.
        struct TesseraApp;

        #[$crate::__private::impl_interface]
        impl $crate::__private::AppIf for TesseraApp {
            fn app_main() -> $crate::__private::ExitStatus {
                $crate::__private::run_app(env!("CARGO_PKG_NAME"), $main)
            }
        }
    };
}

/// Returns `Err(message)` from the enclosing function unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::format!($($arg)+));
        }
    };
}

/// Returns `Err` naming both values unless `left == right`.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr, $($arg:tt)+) => {
        match (&$left, &$right) {
            (l, r) => {
                if l != r {
                    return Err($crate::format!("{}: {:?} != {:?}", $crate::format!($($arg)+), l, r));
                }
            }
        }
    };
}

/// Turns an `AxResult` into an `AppResult` error naming the call.
pub trait Context<T> {
    /// `Err(e)` becomes `Err("<what>: <e>")`.
    fn context(self, what: &str) -> Result<T, String>;
}

impl<T> Context<T> for AxResult<T> {
    fn context(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e:?}"))
    }
}
