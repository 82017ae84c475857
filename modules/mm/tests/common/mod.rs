//! Shared helpers of the host tests.
#![allow(dead_code)]

pub mod model;

use memory_addr::{PhysAddr, VirtAddr};
use mm::{AddrSpace, AreaInfo, LeafSize, MappingFlags};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::x86_64::X64PagingMetaData;
use testing::TrackingHandler;

pub type Space = AddrSpace<X64PagingMetaData, X64PTE, TrackingHandler>;

pub const PAGE: usize = 4096;
pub const WIN: usize = 0x10_0000_0000;
pub const WSIZE: usize = 0x1_0000_0000;

pub fn va(a: usize) -> VirtAddr {
    VirtAddr::from(a)
}

/// A fresh tracking state and an address space over the standard window.
pub fn space() -> Space {
    testing::reset();
    Space::new(va(WIN), WSIZE).unwrap()
}

/// Everything a failed call must leave unchanged: the areas, every
/// page-table leaf (address, frame, size, flags), the page-table frames, and
/// the frame counts.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    areas: Vec<AreaInfo>,
    leaves: Vec<(VirtAddr, PhysAddr, LeafSize, MappingFlags)>,
    table_frames: usize,
    frames: usize,
    data_frames: usize,
}

pub fn snapshot(s: &Space) -> Snapshot {
    let mut leaves = Vec::new();
    s.page_table()
        .for_each_leaf(|l| leaves.push((l.vaddr, l.paddr, l.size, l.flags)));
    Snapshot {
        areas: s.areas().collect(),
        leaves,
        table_frames: s.stats().page_table_frames,
        frames: testing::frames_in_use(),
        data_frames: s.stats().data_frames,
    }
}

/// Reads the u64 at `addr` through the page table (host: phys == pointer).
pub fn read(s: &Space, addr: usize) -> u64 {
    let t = s.translate(va(addr)).expect("mapped");
    // SAFETY: the tracking handler's physical addresses are live host pointers
    // to 4K frames; `addr` is 8-byte aligned inside the page.
    unsafe { (t.paddr.as_usize() as *const u64).read() }
}

/// Writes the u64 at `addr` through the page table.
pub fn write(s: &Space, addr: usize, v: u64) {
    let t = s.translate(va(addr)).expect("mapped");
    // SAFETY: as in `read`.
    unsafe { (t.paddr.as_usize() as *mut u64).write(v) }
}

/// Whether the whole page at `addr` is zero.
pub fn page_is_zero(s: &Space, addr: usize) -> bool {
    let t = s.translate(va(addr)).expect("mapped");
    let base = t.paddr.as_usize() & !(PAGE - 1);
    // SAFETY: a live 4K frame of the tracking handler.
    let bytes = unsafe { core::slice::from_raw_parts(base as *const u8, PAGE) };
    bytes.iter().all(|&b| b == 0)
}

/// Drops the space and checks that every frame came back.
pub fn finish(s: Space) {
    drop(s);
    testing::assert_no_leaks();
}
