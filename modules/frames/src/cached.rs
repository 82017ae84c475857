//! Per-CPU caches of single frames in front of one [`FrameAllocator`].
//!
//! A lazy fault takes one frame and an `munmap` gives many back one by one;
//! with several CPUs faulting, one lock around the bitmap would be taken by
//! all of them for every page. [`CachedFrames`] keeps a small stack of free
//! single frames per CPU (a *magazine*, [`MAGAZINE`] frames): a CPU takes and
//! returns single frames there, under its own lock, which only it takes in the
//! common case; the bitmap's lock is taken once per [`REFILL`] frames. Runs
//! (huge pages, contiguous areas, page-table batches) go to the bitmap.
//!
//! # Invariants
//! - A frame is in exactly one of three states: free in the bitmap; cached
//!   (set in the bitmap, in exactly one magazine); handed out (set in the
//!   bitmap, its bit set in `out`). `out` is changed with atomic
//!   read-modify-writes, so a free finds out without a lock whether the frame
//!   was handed out: a double or stray free of a single frame is refused
//!   (`FreeError::NotAllocated`) and changes nothing, as with the bitmap alone.
//! - `cached` is the number of frames in magazines; [`CachedFrames::stats`]
//!   counts them as free.
//! - Lock order: a CPU's magazine, then the bitmap. Code that needs several
//!   magazines (taking frames back when the bitmap runs dry) holds one at a
//!   time and never with the bitmap's lock, so no cycle can form. No lock here
//!   is held while waiting for anything else.
//! - Without a CPU index function ([`CachedFrames::set_cpu_index`]) nothing is
//!   cached: every call goes to the bitmap (early boot, host tools).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use spin::{Mutex, Once};

use crate::{AllocError, FRAME_SIZE, FrameAllocator, FrameStats, FreeError};

/// CPUs with a magazine (the kernel's CPU masks are 64 bits wide).
pub const MAX_CPUS: usize = 64;
/// Frames a magazine holds at most.
pub const MAGAZINE: usize = 64;
/// Frames moved between a magazine and the bitmap at once.
pub const REFILL: usize = 32;

struct Magazine {
    frames: [usize; MAGAZINE],
    len: usize,
}

impl Magazine {
    const fn new() -> Self {
        Self {
            frames: [0; MAGAZINE],
            len: 0,
        }
    }
}

/// Which frames are handed out: one bit per frame of the bitmap's span.
struct Out {
    base: usize,
    frames: usize,
    words: Vec<AtomicU64>,
}

impl Out {
    /// The bit of the frame at `pa`, if it lies in the span.
    fn index(&self, pa: usize) -> Option<usize> {
        let i = pa.checked_sub(self.base)? / FRAME_SIZE;
        (pa.is_multiple_of(FRAME_SIZE) && i < self.frames).then_some(i)
    }

    /// Marks the frame handed out; returns whether it already was.
    fn take(&self, i: usize) -> bool {
        self.words[i / 64].fetch_or(1 << (i % 64), Ordering::AcqRel) & (1 << (i % 64)) != 0
    }

    /// Marks the frame back; returns whether it was handed out.
    fn give(&self, i: usize) -> bool {
        self.words[i / 64].fetch_and(!(1 << (i % 64)), Ordering::AcqRel) & (1 << (i % 64)) != 0
    }
}

/// A frame allocator with a cache of single frames per CPU (module docs).
pub struct CachedFrames {
    bitmap: Mutex<FrameAllocator>,
    magazines: [Mutex<Magazine>; MAX_CPUS],
    out: Once<Out>,
    cached: AtomicUsize,
    cpu_index: Once<fn() -> usize>,
}

impl Default for CachedFrames {
    fn default() -> Self {
        Self::new()
    }
}

impl CachedFrames {
    /// An allocator with no memory (give it a bitmap with [`Self::init`]).
    pub const fn new() -> Self {
        Self {
            bitmap: Mutex::new(FrameAllocator::empty()),
            magazines: [const { Mutex::new(Magazine::new()) }; MAX_CPUS],
            out: Once::new(),
            cached: AtomicUsize::new(0),
            cpu_index: Once::new(),
        }
    }

    /// Installs the bitmap built at boot. Called once, before any allocation.
    ///
    /// # Panics
    ///
    /// On a second call (frames handed out from the first bitmap would be
    /// forgotten).
    pub fn init(&self, allocator: FrameAllocator) {
        let (base, frames) = allocator.span();
        let mut done = false;
        self.out.call_once(|| {
            done = true;
            Out {
                base,
                frames,
                words: (0..frames.div_ceil(64))
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            }
        });
        assert!(done, "frames: init called twice");
        *self.bitmap.lock() = allocator;
    }

    /// Turns the per-CPU caches on: `f` returns the calling CPU's index
    /// (below [`MAX_CPUS`]). Set once, before a second CPU allocates.
    pub fn set_cpu_index(&self, f: fn() -> usize) {
        self.cpu_index.call_once(|| f);
    }

    fn cpu(&self) -> Option<usize> {
        let cpu = (self.cpu_index.get()?)();
        (cpu < MAX_CPUS).then_some(cpu)
    }

    fn out(&self) -> &Out {
        self.out.get().expect("frames: used before init")
    }

    /// Allocates `count` contiguous frames aligned to `align` bytes (see
    /// [`FrameAllocator::alloc`]). A single frame comes from the calling
    /// CPU's magazine when it can.
    pub fn alloc(&self, count: usize, align: usize) -> Result<usize, AllocError> {
        if count == 1
            && align <= FRAME_SIZE
            && let Some(cpu) = self.cpu()
            && let Some(pa) = self.alloc_cached(cpu)
        {
            return Ok(self.hand_out(pa, 1));
        }
        let r = self.bitmap.lock().alloc(count, align);
        let pa = match r {
            Err(AllocError::NoMemory) if self.cached.load(Ordering::Acquire) > 0 => {
                // The frames may be sitting in magazines: take them back.
                self.drain_all();
                self.bitmap.lock().alloc(count, align)?
            }
            r => r?,
        };
        Ok(self.hand_out(pa, count))
    }

    /// A frame from `cpu`'s magazine, refilled from the bitmap when empty.
    fn alloc_cached(&self, cpu: usize) -> Option<usize> {
        let mut m = self.magazines[cpu].lock();
        if m.len == 0 {
            let mut bitmap = self.bitmap.lock();
            while m.len < REFILL {
                let Ok(pa) = bitmap.alloc(1, FRAME_SIZE) else {
                    break;
                };
                let n = m.len;
                m.frames[n] = pa;
                m.len += 1;
                self.cached.fetch_add(1, Ordering::AcqRel);
            }
        }
        if m.len == 0 {
            return None;
        }
        m.len -= 1;
        self.cached.fetch_sub(1, Ordering::AcqRel);
        Some(m.frames[m.len])
    }

    /// Marks `count` frames from `pa` handed out; returns `pa`.
    fn hand_out(&self, pa: usize, count: usize) -> usize {
        let out = self.out();
        let i = out
            .index(pa)
            .expect("the bitmap hands out frames of its span");
        for k in i..i + count {
            let was = out.take(k);
            debug_assert!(
                !was,
                "frame {:#x} handed out twice",
                pa + (k - i) * FRAME_SIZE
            );
        }
        pa
    }

    /// Frees `count` frames from `paddr`: either all were handed out and are
    /// free now (a single frame into the calling CPU's magazine), or nothing
    /// changes and the reason is returned.
    pub fn free(&self, paddr: usize, count: usize) -> Result<(), FreeError> {
        let out = self.out();
        let i = out.index(paddr).ok_or(FreeError::OutOfRange)?;
        if count == 0 || i.checked_add(count).is_none_or(|end| end > out.frames) {
            return Err(FreeError::OutOfRange);
        }
        for k in i..i + count {
            if !out.give(k) {
                // Not handed out: put back what this call took, change nothing.
                for j in i..k {
                    out.take(j);
                }
                return Err(FreeError::NotAllocated);
            }
        }
        if count == 1
            && let Some(cpu) = self.cpu()
        {
            self.free_cached(cpu, paddr);
            return Ok(());
        }
        let r = self.bitmap.lock().free(paddr, count);
        debug_assert!(r.is_ok(), "a run handed out is set in the bitmap: {r:?}");
        r
    }

    /// Puts a frame into `cpu`'s magazine, first moving [`REFILL`] of them
    /// back to the bitmap if it is full.
    fn free_cached(&self, cpu: usize, pa: usize) {
        let mut m = self.magazines[cpu].lock();
        if m.len == MAGAZINE {
            let mut bitmap = self.bitmap.lock();
            for _ in 0..REFILL {
                m.len -= 1;
                let f = m.frames[m.len];
                let r = bitmap.free(f, 1);
                debug_assert!(r.is_ok(), "a cached frame is set in the bitmap: {r:?}");
                self.cached.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let n = m.len;
        m.frames[n] = pa;
        m.len += 1;
        self.cached.fetch_add(1, Ordering::AcqRel);
    }

    /// Moves every cached frame back to the bitmap, one magazine at a time.
    pub fn drain_all(&self) {
        for mag in &self.magazines {
            let mut taken = [0usize; MAGAZINE];
            let n = {
                let mut m = mag.lock();
                let n = m.len;
                taken[..n].copy_from_slice(&m.frames[..n]);
                m.len = 0;
                n
            };
            if n == 0 {
                continue;
            }
            let mut bitmap = self.bitmap.lock();
            for &f in &taken[..n] {
                let r = bitmap.free(f, 1);
                debug_assert!(r.is_ok(), "a cached frame is set in the bitmap: {r:?}");
            }
            self.cached.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Frame counts; cached frames count as free.
    pub fn stats(&self) -> FrameStats {
        let s = self.bitmap.lock().stats();
        FrameStats {
            total: s.total,
            used: s.used - self.cached.load(Ordering::Acquire).min(s.used),
        }
    }

    /// Frames in the magazines now.
    pub fn cached(&self) -> usize {
        self.cached.load(Ordering::Acquire)
    }
}
