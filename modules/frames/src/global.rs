//! The kernel's one frame allocator, shared by the boards' `PagingHandler`s and
//! the runtime: a [`CachedFrames`] (a bitmap behind a spin lock, with a cache
//! of single frames per CPU once the runtime gave it the CPU index function).
//! It is taken from the page-fault path, so no code may fault while holding
//! one of its locks (the bitmap lives in kernel heap memory, which is always
//! mapped).

use crate::cached::CachedFrames;
use crate::{AllocError, FrameAllocator, FrameStats, FreeError};

static GLOBAL: CachedFrames = CachedFrames::new();

/// Installs the allocator built at boot. Called once by the runtime.
pub fn init(allocator: FrameAllocator) {
    GLOBAL.init(allocator);
}

/// Turns on the per-CPU caches: `f` is the calling CPU's index. Called once by
/// the runtime, before a second CPU runs.
pub fn set_cpu_index(f: fn() -> usize) {
    GLOBAL.set_cpu_index(f);
}

/// Allocates `count` contiguous frames aligned to `align` bytes.
pub fn alloc(count: usize, align: usize) -> Result<usize, AllocError> {
    GLOBAL.alloc(count, align)
}

/// Frees a run allocated with [`alloc()`].
pub fn free(paddr: usize, count: usize) -> Result<(), FreeError> {
    GLOBAL.free(paddr, count)
}

/// Frame counts of the global allocator (frames cached per CPU count as free).
pub fn stats() -> FrameStats {
    GLOBAL.stats()
}

use core::sync::atomic::{AtomicUsize, Ordering};

use memory_addr::{PhysAddr, VirtAddr};
use page_table_multiarch::PagingHandler;

/// virtual = physical + this, for every frame (set once at boot).
static PHYS_VIRT_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// Sets the offset of the kernel's physical-memory window. Called once by the
/// runtime before any page table is built.
pub fn set_phys_virt_offset(offset: usize) {
    PHYS_VIRT_OFFSET.store(offset, Ordering::Relaxed);
}

/// The kernel's `PagingHandler`: frames from the global allocator, reached through
/// the physical-memory window. Boards name it as their `Board::Paging`.
pub struct GlobalPaging;

impl PagingHandler for GlobalPaging {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        alloc(num, align).ok().map(PhysAddr::from)
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        if let Err(e) = free(paddr.as_usize(), num) {
            // A bad free is a kernel bug, never the result of app input: stop
            // before the allocator's view of memory and the page tables diverge.
            panic!("frame free of {paddr:#x} x{num}: {e}");
        }
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(
            paddr
                .as_usize()
                .wrapping_add(PHYS_VIRT_OFFSET.load(Ordering::Relaxed)),
        )
    }
}
