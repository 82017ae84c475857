//! Page tables (being written).
#![no_std]
