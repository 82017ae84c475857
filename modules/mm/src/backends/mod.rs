//! The built-in backends: each is an implementation of the public
//! [`Backend`](crate::Backend) trait, with nothing the core treats
//! specially.
//!
//! | file | backend | what an area of it maps |
//! |---|---|---|
//! | `linear.rs` | [`Linear`] | a fixed physical range, `va = pa + va_minus_pa` (kernel image, physical memory, MMIO, `map_phys`) |
//! | `alloc.rs` | [`Alloc`] | zeroed frames the area owns, eager or lazy, 4K or huge pages |
//! | `contiguous.rs` | [`Contiguous`] | one physically contiguous run of zeroed frames the area owns |
//! | `object.rs` | [`ObjectMapping`] | the pages of a [`MemObject`](crate::MemObject), shared or private (copy-on-write) |

mod alloc;
mod contiguous;
mod linear;
mod object;

pub use alloc::Alloc;
pub use contiguous::Contiguous;
pub use linear::Linear;
pub use object::ObjectMapping;
