//! Page-table memory, counted in frames (deterministic; no timing).
//!
//! 1. Page-table frames per GiB of a linear map, 4K pages vs huge pages (2M- and
//!    1G-aligned), for `mm::AddrSpace::map_linear` and for
//!    `page_table_multiarch::PageTable64::map_region` side by side.
//! 2. Page-table frames left after mapping 10,000 random regions and unmapping
//!    them all again, for `mm` (mmap POPULATE + munmap) and for `PageTable64`
//!    (map_region + unmap_region of the same ranges).
//!
//! Prints `ptmem: key=value` lines for `scripts/bench.py`.

use hostbench::{PAGE, TrackedSpace, WIN, WSIZE, va};
use memory_addr::PhysAddr;
use mm::{MappingFlags, MmapFlags, Prot};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::PageTable64;
use page_table_multiarch::x86_64::X64PagingMetaData;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use testing::TrackingHandler;

type Table = PageTable64<X64PagingMetaData, X64PTE, TrackingHandler>;

const GIB: usize = 1 << 30;
/// Size of the linear maps.
const LINEAR: usize = 4 * GIB;
/// Kernel-half base of the linear maps (1 GiB aligned).
const KBASE: usize = 0xffff_8000_0000_0000;
const REGIONS: usize = 10_000;

/// Page-table frames per GiB for a linear map starting `offset` bytes past a
/// 1 GiB boundary (root excluded): (mm, PageTable64).
fn linear(offset: usize, huge: bool) -> (f64, f64) {
    let flags = MappingFlags::READ | MappingFlags::WRITE;
    testing::reset();
    let mut s = TrackedSpace::new(va(WIN), WSIZE).unwrap();
    let before = s.stats().page_table_frames;
    s.map_linear(
        va(KBASE + offset),
        PhysAddr::from(GIB + offset),
        LINEAR,
        flags,
        huge,
    )
    .unwrap();
    let mm = (s.stats().page_table_frames - before) as f64 / (LINEAR / GIB) as f64;
    drop(s);
    testing::assert_no_leaks();

    let mut t = Table::try_new().unwrap();
    let before = testing::frames_in_use();
    t.cursor()
        .map_region(
            va(KBASE + offset),
            |v| PhysAddr::from(v.as_usize() - KBASE + GIB),
            LINEAR,
            flags,
            huge,
        )
        .unwrap();
    let anchor = (testing::frames_in_use() - before) as f64 / (LINEAR / GIB) as f64;
    drop(t);
    testing::assert_no_leaks();
    (mm, anchor)
}

fn random_regions() {
    let mut rng = SmallRng::seed_from_u64(0x7e55e7a);
    testing::reset();
    let mut s = TrackedSpace::new(va(WIN), WSIZE).unwrap();
    let root = s.stats().page_table_frames;
    let mut regions = Vec::with_capacity(REGIONS);
    while regions.len() < REGIONS {
        let pages = rng.random_range(1..=16usize);
        let start = WIN + rng.random_range(0..WSIZE / PAGE - pages) * PAGE;
        let r = s.mmap(
            Some(va(start)),
            pages * PAGE,
            Prot::READ | Prot::WRITE,
            MmapFlags::FIXED_NOREPLACE | MmapFlags::POPULATE,
        );
        if r.is_ok() {
            regions.push((start, pages * PAGE));
        }
    }
    let mapped = s.stats().page_table_frames - root;
    regions.shuffle(&mut rng);
    for &(start, len) in &regions {
        s.munmap(va(start), len).unwrap();
    }
    let left = s.stats().page_table_frames - root;
    println!("ptmem: mm_random_mapped_tables={mapped}");
    println!("ptmem: mm_random_left_tables={left}");
    drop(s);
    testing::assert_no_leaks();

    // The same ranges through PageTable64 (linear, 4K pages): its tables are all
    // the frames the tracking handler holds.
    testing::reset();
    let mut t = Table::try_new().unwrap();
    let root = testing::frames_in_use();
    let flags = MappingFlags::READ | MappingFlags::WRITE;
    for &(start, len) in &regions {
        t.cursor()
            .map_region(
                va(start),
                |v| PhysAddr::from(v.as_usize()),
                len,
                flags,
                false,
            )
            .unwrap();
    }
    let mapped = testing::frames_in_use() - root;
    for &(start, len) in &regions {
        t.cursor().unmap_region(va(start), len).unwrap();
    }
    let left = testing::frames_in_use() - root;
    println!("ptmem: pt64_random_mapped_tables={mapped}");
    println!("ptmem: pt64_random_left_tables={left}");
    drop(t);
    testing::assert_no_leaks();
}

fn main() {
    for (name, offset, huge) in [
        ("4k", 0, false),
        ("huge2m", 2 << 20, true),
        ("huge1g", 0, true),
    ] {
        let (mm, anchor) = linear(offset, huge);
        println!("ptmem: mm_linear_{name}_tables_per_gib={mm:.2}");
        println!("ptmem: pt64_linear_{name}_tables_per_gib={anchor:.2}");
    }
    random_regions();
}
