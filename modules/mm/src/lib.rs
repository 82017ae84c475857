//! Address spaces (being written).
#![no_std]
