//! Shared pieces of the host benchmarks (`make bench`).
//!
//! - [`PoolHandler`]: a cheap mock `PagingHandler` (a free list of host frames, no
//!   fill, no accounting beyond a counter) for the measurements that should show
//!   the cost of `mm` itself rather than of a test allocator: the instruction count
//!   per lazy fault (`faultcount`) and the mmap/touch/munmap life cycle.
//! - The area layout of the scaling benchmarks ([`area_start`]): `n` areas of
//!   [`AREA_PAGES`] pages, [`STRIDE_PAGES`] pages apart, so a hole lies between
//!   neighbours and no two areas can merge.
//! - [`Trivial`]: a `memory_set` backend that does nothing, so `memory_set` 0.4.1
//!   used directly shows the cost of its area bookkeeping alone (the anchor).
//!
//! Nothing here asserts timings: the benchmarks only measure.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::cell::RefCell;
use std::collections::HashMap;

use memory_addr::{PhysAddr, VirtAddr};
use memory_set::{MappingBackend, MemoryArea, MemorySet};
use mm::{AddrSpace, MappingFlags, MmapFlags, Prot};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::PagingHandler;
use page_table_multiarch::x86_64::X64PagingMetaData;

/// Page size.
pub const PAGE: usize = 4096;
/// Start of the app window of every benchmark address space.
pub const WIN: usize = 0x10_0000_0000;
/// Size of that window (64 GiB).
pub const WSIZE: usize = 0x10_0000_0000;
/// Pages per area in the scaling benchmarks.
pub const AREA_PAGES: usize = 4;
/// Distance between two areas' starts, in pages (the hole is `STRIDE - AREA`).
pub const STRIDE_PAGES: usize = 8;
/// Every `ANCHOR_EVERY`-th area has its first page faulted in, so every leaf page
/// table of the populated range stays allocated while other areas come and go
/// (one area in 64 is one per 2 MiB leaf table).
pub const ANCHOR_EVERY: usize = 64;
/// Read and write.
pub const RW: Prot = Prot::READ.union(Prot::WRITE);

/// An address space over the tracking test handler (leak-checked host frames).
pub type TrackedSpace = AddrSpace<X64PagingMetaData, X64PTE, testing::TrackingHandler>;
/// An address space over [`PoolHandler`].
pub type PoolSpace = AddrSpace<X64PagingMetaData, X64PTE, PoolHandler>;
/// `memory_set` 0.4.1 used directly, with a backend that does nothing.
pub type AnchorSet = MemorySet<Trivial>;

/// Start of area `i` of the scaling layout.
pub fn area_start(i: usize) -> usize {
    WIN + i * STRIDE_PAGES * PAGE
}

/// The area indices of `0..n` in a scrambled order (a stride by a prime that
/// divides none of the sizes used), without the anchored areas: the benchmarks
/// walk it round and round, so consecutive operations hit distant areas.
pub fn walk(n: usize) -> Vec<usize> {
    (0..n)
        .map(|k| k.wrapping_mul(7919) % n)
        .filter(|i| !i.is_multiple_of(ANCHOR_EVERY))
        .collect()
}

/// `VirtAddr` from a `usize`.
pub fn va(a: usize) -> VirtAddr {
    VirtAddr::from(a)
}

/// Maps area `i` of the scaling layout (lazy, read-write).
pub fn map_area<H: PagingHandler>(
    s: &mut AddrSpace<X64PagingMetaData, X64PTE, H>,
    i: usize,
) -> VirtAddr {
    s.mmap(
        Some(va(area_start(i))),
        AREA_PAGES * PAGE,
        RW,
        MmapFlags::FIXED_NOREPLACE,
    )
    .expect("mmap of a free slot of the layout")
}

/// An address space holding `n` areas of the scaling layout, every
/// [`ANCHOR_EVERY`]-th one with its first page faulted in.
pub fn space_with_areas<H: PagingHandler>(n: usize) -> AddrSpace<X64PagingMetaData, X64PTE, H> {
    let mut s = AddrSpace::new(va(WIN), WSIZE).expect("address space");
    for i in 0..n {
        map_area(&mut s, i);
        if i.is_multiple_of(ANCHOR_EVERY) {
            s.handle_page_fault(va(area_start(i)), hal::Access::Write)
                .expect("anchor fault");
        }
    }
    s
}

/// A `memory_set` backend that maps nothing: the anchor measures bookkeeping only.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trivial;

impl MappingBackend for Trivial {
    type Addr = VirtAddr;
    type Flags = MappingFlags;
    type PageTable = ();

    fn map(&self, _: VirtAddr, _: usize, _: MappingFlags, _: &mut ()) -> bool {
        true
    }

    fn unmap(&self, _: VirtAddr, _: usize, _: &mut ()) -> bool {
        true
    }

    fn protect(&self, _: VirtAddr, _: usize, _: MappingFlags, _: &mut ()) -> bool {
        true
    }
}

/// Maps area `i` of the scaling layout into the anchor set.
pub fn anchor_map_area(set: &mut AnchorSet, i: usize) {
    let area = MemoryArea::new(
        va(area_start(i)),
        AREA_PAGES * PAGE,
        MappingFlags::READ | MappingFlags::WRITE,
        Trivial,
    );
    set.map(area, &mut (), false)
        .expect("map of a free slot of the layout");
}

/// A `memory_set` holding `n` areas of the scaling layout.
pub fn anchor_with_areas(n: usize) -> AnchorSet {
    let mut set = MemorySet::new();
    for i in 0..n {
        anchor_map_area(&mut set, i);
    }
    set
}

/// Frames handed out at once when the pool is empty.
const CHUNK: usize = 256;

#[derive(Default)]
struct Pool {
    /// Free single frames.
    free: Vec<usize>,
    /// Multi-frame or over-aligned runs: start -> layout.
    runs: HashMap<usize, Layout>,
    in_use: usize,
}

impl Pool {
    fn refill(&mut self, frames: usize) -> bool {
        let Ok(layout) = Layout::from_size_align(frames * PAGE, PAGE) else {
            return false;
        };
        // SAFETY: the layout has a non-zero size. The chunk is never freed: its
        // frames circulate through the free list until the process ends.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return false;
        }
        self.free.reserve(frames);
        self.free
            .extend((0..frames).rev().map(|k| ptr as usize + k * PAGE));
        true
    }
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// A `PagingHandler` whose frames come from a per-thread free list of host memory
/// (physical address = host pointer). Allocating and freeing one frame is a
/// vector pop/push; frames are not filled. For measurements, not for tests.
pub struct PoolHandler;

impl PoolHandler {
    /// Makes sure at least `frames` single frames are free, so later allocations
    /// do not call the host allocator.
    pub fn reserve(frames: usize) {
        POOL.with_borrow_mut(|p| {
            if p.free.len() < frames {
                let missing = frames - p.free.len();
                assert!(p.refill(missing), "PoolHandler: host out of memory");
            }
        })
    }

    /// Frames handed out and not yet freed.
    pub fn in_use() -> usize {
        POOL.with_borrow(|p| p.in_use)
    }
}

impl PagingHandler for PoolHandler {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        POOL.with_borrow_mut(|p| {
            if num == 1 && align <= PAGE {
                if p.free.is_empty() && !p.refill(CHUNK) {
                    return None;
                }
                p.in_use += 1;
                return p.free.pop().map(PhysAddr::from);
            }
            let layout = Layout::from_size_align(num.checked_mul(PAGE)?, align.max(PAGE)).ok()?;
            if layout.size() == 0 {
                return None;
            }
            // SAFETY: the layout has a non-zero size.
            let ptr = unsafe { alloc(layout) };
            if ptr.is_null() {
                return None;
            }
            p.runs.insert(ptr as usize, layout);
            p.in_use += num;
            Some(PhysAddr::from(ptr as usize))
        })
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        POOL.with_borrow_mut(|p| {
            let pa = paddr.as_usize();
            p.in_use -= num;
            match p.runs.remove(&pa) {
                // SAFETY: `pa` was returned by `alloc` with exactly this layout and
                // is removed from the run map, so it is freed once.
                Some(layout) => unsafe { dealloc(pa as *mut u8, layout) },
                None => p.free.push(pa),
            }
        })
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_areas_do_not_touch() {
        let mut s: PoolSpace = space_with_areas(200);
        assert_eq!(s.stats().areas, 200);
        // A page in the middle of an area splits it in two.
        s.munmap(va(area_start(3) + 2 * PAGE), PAGE).unwrap();
        assert_eq!(s.stats().areas, 201);
        let mut set = anchor_with_areas(200);
        assert_eq!(set.len(), 200);
        set.unmap(va(area_start(3) + 2 * PAGE), PAGE, &mut ())
            .unwrap();
        assert_eq!(set.len(), 201);
        drop(s);
        assert_eq!(PoolHandler::in_use(), 0);
    }

    #[test]
    fn walk_is_a_permutation_without_anchors() {
        for n in [1000, 10_000, 100_000] {
            let mut w = walk(n);
            assert_eq!(w.len(), n - n.div_ceil(ANCHOR_EVERY));
            assert!(w.iter().all(|i| !i.is_multiple_of(ANCHOR_EVERY)));
            w.sort_unstable();
            w.dedup();
            assert_eq!(w.len(), n - n.div_ceil(ANCHOR_EVERY));
        }
    }
}
