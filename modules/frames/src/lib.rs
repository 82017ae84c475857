//! Physical frame allocator.
//!
//! A bitmap over one span of physical memory, one bit per 4 KiB frame (set =
//! in use or not RAM). It hands out single frames and contiguous runs whose start
//! is aligned to a power-of-two number of frames (2 MiB and 1 GiB frames for huge
//! pages), counts the frames in use, and checks every free: freeing a frame that is
//! not allocated (free RAM, or a hole that was never RAM), or not in the span, is an
//! error and changes nothing, so a double or stray free cannot corrupt the
//! allocator through this API.
//!
//! Written by hand rather than taken from a crate: the allocators of the field
//! either have a fixed capacity chosen at compile time or cannot allocate
//! aligned contiguous runs with per-frame checked frees, and this is ~200 lines.
//!
//! Invariants:
//! - a frame's `ram` bit is set once it is added with [`FrameAllocator::add_free`]
//!   and never cleared; `total` counts those frames;
//! - a frame's `bits` bit is clear only if its `ram` bit is set (free RAM); a set
//!   bit is a frame handed out, or a hole if its `ram` bit is clear;
//! - `used` equals the number of frames with both bits set (handed out).
#![no_std]

extern crate alloc;

pub mod cached;
pub mod global;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Size of one frame.
pub const FRAME_SIZE: usize = 4096;

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// `count` was zero or `align` was not a power of two.
    InvalidRequest,
    /// No free run of that size and alignment.
    NoMemory,
}

/// Why a free was refused (nothing was changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeError {
    /// The address is not frame aligned, or the run leaves the managed span.
    OutOfRange,
    /// At least one frame of the run is not allocated (a double free).
    NotAllocated,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::InvalidRequest => f.write_str("invalid frame request"),
            AllocError::NoMemory => f.write_str("out of physical frames"),
        }
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::OutOfRange => f.write_str("frame outside the managed range"),
            FreeError::NotAllocated => f.write_str("frame is not allocated (double free)"),
        }
    }
}

/// Frame counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameStats {
    /// Frames that were added as free RAM.
    pub total: usize,
    /// Frames handed out and not yet freed.
    pub used: usize,
}

impl FrameStats {
    /// Frames still free.
    pub fn free(&self) -> usize {
        self.total - self.used
    }
}

/// A bitmap frame allocator over `[base, base + frames * FRAME_SIZE)`.
pub struct FrameAllocator {
    base: usize,
    frames: usize,
    /// One bit per frame; set = not available (handed out, or not RAM).
    bits: Vec<u64>,
    /// One bit per frame; set = RAM added with `add_free`, so that a free can
    /// tell a frame handed out from a hole.
    ram: Vec<u64>,
    total: usize,
    used: usize,
    /// Word index where the next single-frame search starts.
    hint: usize,
}

impl FrameAllocator {
    /// An allocator spanning `[base, base + size)` with every frame unavailable.
    /// Add RAM with [`FrameAllocator::add_free`]. `base` is rounded down and the end
    /// up to whole frames.
    pub fn new(base: usize, size: usize) -> Self {
        let start = base / FRAME_SIZE * FRAME_SIZE;
        let end = (base + size).div_ceil(FRAME_SIZE) * FRAME_SIZE;
        let frames = (end - start) / FRAME_SIZE;
        Self {
            base: start,
            frames,
            bits: vec![u64::MAX; frames.div_ceil(64)],
            ram: vec![0; frames.div_ceil(64)],
            total: 0,
            used: 0,
            hint: 0,
        }
    }

    /// An allocator with no memory at all (before boot hands it RAM).
    pub const fn empty() -> Self {
        Self {
            base: 0,
            frames: 0,
            bits: Vec::new(),
            ram: Vec::new(),
            total: 0,
            used: 0,
            hint: 0,
        }
    }

    /// Marks the whole frames inside `[start, start + size)` as free RAM. Parts
    /// outside the span, and frames already added (free or handed out), are
    /// ignored. Returns how many frames were added.
    pub fn add_free(&mut self, start: usize, size: usize) -> usize {
        let lo = start.div_ceil(FRAME_SIZE) * FRAME_SIZE;
        let hi = start.saturating_add(size) / FRAME_SIZE * FRAME_SIZE;
        let lo = lo.max(self.base);
        let hi = hi.min(self.base + self.frames * FRAME_SIZE);
        let mut added = 0;
        let mut pa = lo;
        while pa < hi {
            let i = (pa - self.base) / FRAME_SIZE;
            if !bit(&self.ram, i) {
                set_bit(&mut self.ram, i);
                clear_bit(&mut self.bits, i);
                added += 1;
            }
            pa += FRAME_SIZE;
        }
        self.total += added;
        added
    }

    /// The span: its first frame's address and its number of frames.
    pub fn span(&self) -> (usize, usize) {
        (self.base, self.frames)
    }

    /// Frame counts.
    pub fn stats(&self) -> FrameStats {
        FrameStats {
            total: self.total,
            used: self.used,
        }
    }

    /// Allocates `count` contiguous frames whose physical start is a multiple of
    /// `align` bytes (a power of two, at least [`FRAME_SIZE`]; smaller values
    /// mean frame alignment).
    pub fn alloc(&mut self, count: usize, align: usize) -> Result<usize, AllocError> {
        if count == 0 || !align.is_power_of_two() {
            return Err(AllocError::InvalidRequest);
        }
        let align_frames = (align / FRAME_SIZE).max(1);
        let idx = if count == 1 && align_frames == 1 {
            self.find_single()
        } else {
            self.find_run(count, align_frames)
        }
        .ok_or(AllocError::NoMemory)?;
        for i in idx..idx + count {
            self.set(i);
        }
        self.used += count;
        Ok(self.base + idx * FRAME_SIZE)
    }

    /// Frees `count` frames starting at `paddr`. Either all of them were allocated
    /// and are now free, or nothing changes and the reason is returned (a frame
    /// in a hole of the span, never added as RAM, is not allocated either).
    pub fn free(&mut self, paddr: usize, count: usize) -> Result<(), FreeError> {
        if !paddr.is_multiple_of(FRAME_SIZE) || paddr < self.base || count == 0 {
            return Err(FreeError::OutOfRange);
        }
        let idx = (paddr - self.base) / FRAME_SIZE;
        if idx.checked_add(count).is_none_or(|end| end > self.frames) {
            return Err(FreeError::OutOfRange);
        }
        if (idx..idx + count).any(|i| !self.is_set(i) || !bit(&self.ram, i)) {
            return Err(FreeError::NotAllocated);
        }
        for i in idx..idx + count {
            self.clear(i);
        }
        self.used -= count;
        self.hint = self.hint.min(idx / 64);
        Ok(())
    }

    fn is_set(&self, i: usize) -> bool {
        bit(&self.bits, i)
    }

    fn set(&mut self, i: usize) {
        set_bit(&mut self.bits, i);
    }

    fn clear(&mut self, i: usize) {
        clear_bit(&mut self.bits, i);
    }

    fn find_single(&mut self) -> Option<usize> {
        let words = self.bits.len();
        for k in 0..words {
            let w = (self.hint + k) % words;
            let word = self.bits[w];
            if word != u64::MAX {
                let i = w * 64 + word.trailing_ones() as usize;
                if i < self.frames {
                    self.hint = w;
                    return Some(i);
                }
            }
        }
        None
    }

    /// First-fit search for `count` free frames starting at a multiple of
    /// `align_frames` (relative to physical address 0, not to the span base).
    fn find_run(&self, count: usize, align_frames: usize) -> Option<usize> {
        let base_frame = self.base / FRAME_SIZE;
        // First index whose physical frame number is aligned.
        let mut i = (base_frame.div_ceil(align_frames) * align_frames) - base_frame;
        while i.checked_add(count)? <= self.frames {
            match (i..i + count).rev().find(|&j| self.is_set(j)) {
                None => return Some(i),
                // Skip past the last busy frame of this window, to the next aligned start.
                Some(busy) => {
                    let next = busy + 1 + base_frame;
                    i = next.div_ceil(align_frames) * align_frames - base_frame;
                }
            }
        }
        None
    }
}

fn bit(map: &[u64], i: usize) -> bool {
    map[i / 64] & (1 << (i % 64)) != 0
}

fn set_bit(map: &mut [u64], i: usize) {
    map[i / 64] |= 1 << (i % 64);
}

fn clear_bit(map: &mut [u64], i: usize) {
    map[i / 64] &= !(1 << (i % 64));
}

#[cfg(test)]
mod tests;
