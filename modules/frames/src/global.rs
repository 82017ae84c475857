//! The kernel's one frame allocator, shared by the boards' `PagingHandler`s and
//! the runtime. Locked with a spin lock: it is taken from the page-fault path, so
//! no code may fault while holding it (the bitmap lives in kernel heap memory,
//! which is always mapped).

use spin::Mutex;

use crate::{AllocError, FrameAllocator, FrameStats, FreeError};

static GLOBAL: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::empty());

/// Installs the allocator built at boot. Called once by the runtime.
pub fn init(allocator: FrameAllocator) {
    *GLOBAL.lock() = allocator;
}

/// Allocates `count` contiguous frames aligned to `align` bytes.
pub fn alloc(count: usize, align: usize) -> Result<usize, AllocError> {
    GLOBAL.lock().alloc(count, align)
}

/// Frees a run allocated with [`alloc`].
pub fn free(paddr: usize, count: usize) -> Result<(), FreeError> {
    GLOBAL.lock().free(paddr, count)
}

/// Frame counts of the global allocator.
pub fn stats() -> FrameStats {
    GLOBAL.lock().stats()
}
