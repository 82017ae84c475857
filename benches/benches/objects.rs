//! Memory objects and `mremap`, over [`PoolHandler`] (frames from a free list:
//! the cost shown is `mm`'s, frame zeroing and page copies included).
//!
//! `objects/fault/<case>`: time per page fault (`handle_page_fault`, as the
//! CPU would raise it), criterion's iteration being one fault:
//! - `anon_lazy_write`: a write fault in a lazy anonymous area (a zeroed
//!   frame): the fault of `faults.rs` and `faultcount`, the reference;
//! - `shared_read_resident`: a read fault in a `MAP_SHARED` mapping of a
//!   `MemObject::anonymous` whose pages are resident already (another
//!   mapping of the object, in the same address space, faulted them in): no
//!   frame, no zeroing, the object's frame mapped read-only (dirty tracking);
//! - `shared_write_resident`: the same with a write fault (the page mapped
//!   writable and marked dirty);
//! - `cow_write_after_read`: a `MAP_PRIVATE` mapping of that object whose
//!   pages were read first (not timed: each maps the object's frame
//!   read-only), then a write fault per page: a copy-on-write (new frame, 4
//!   KiB copied, PTE replaced). The bench holds the object too, so the copy
//!   is never skipped by taking the frame;
//! - `private_first_write`: a write fault on a page of a `MAP_PRIVATE`
//!   mapping of the object never touched before (the copy at once, no
//!   read-only mapping first).
//!
//! Each batch of at most [`SLOT_PAGES`] faults is timed on a fresh area
//! (mapped, and for the copy-on-write case read, before the clock runs;
//! unmapped after it stops), in a 2 MiB slot whose last page is a populated
//! page of its own, so the leaf page table stays allocated and no fault
//! pays for one.
//!
//! `objects/mremap_1g/<case>`: time per call, one call moving a populated
//! 1 GiB read-write region with `mremap(.., MAYMOVE | FIXED, Some(other))`
//! between two addresses, back and forth (every iteration moves it):
//! - `mremap_4k`: 4K pages, the two addresses congruent modulo 2 MiB (not
//!   1 GiB), as `mremap` picks them itself when not told: each table of
//!   512 4K leaves moves as one entry (512 of them);
//! - `mremap_4k_unaligned`: the same region moved by 2 MiB + 4 KiB: no
//!   table can move whole, every one of its 262,144 PTEs is moved;
//! - `mremap_huge_2m`: `HUGE_2M | POPULATE`, 512 2M leaves, congruent
//!   addresses;
//! - `copy`: `copy_nonoverlapping` of 1 GiB between two host buffers
//!   written before (what moving the data instead of the mapping costs).
//!
//! The translations of the region's first and last page are checked after
//! each mremap case (same frames as before the moves). Nothing is asserted
//! about timings.
//!
//! `CARGO_TARGET_DIR=... cargo bench -p hostbench --bench objects`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use hal::Access;
use hostbench::{PAGE, PoolHandler, PoolSpace, RW, WIN, WSIZE, va};
use mm::{MemObject, MmapFlags, RemapFlags};

/// 2 MiB: a slot, one leaf page table.
const M2: usize = 0x20_0000;
/// Pages of a fault benchmark's area: a slot less its anchor page.
const SLOT_PAGES: usize = M2 / PAGE - 1;
/// The slot of the object's resident mapping and the slot of the measured
/// area.
const SOURCE_SLOT: usize = WIN;
const BENCH_SLOT: usize = WIN + M2;
/// The moved region.
const GIB: usize = 1 << 30;
/// Where the region is mapped, and where it is moved to (congruent modulo
/// 2 MiB, not modulo 1 GiB; and not modulo 2 MiB).
const HOME: usize = WIN + 4 * GIB;
const AWAY: usize = WIN + 8 * GIB + M2;
const AWAY_UNALIGNED: usize = AWAY + PAGE;

type Object = Arc<MemObject<PoolHandler>>;

/// The fault benchmarks' address space: an object of [`SLOT_PAGES`] pages,
/// all resident through a populated shared mapping in the source slot, and
/// the anchor pages of both slots.
struct FaultSpace {
    s: PoolSpace,
    obj: Object,
}

impl FaultSpace {
    fn new() -> Self {
        PoolHandler::reserve(4 * SLOT_PAGES + 64);
        let mut s = PoolSpace::new(va(WIN), WSIZE).unwrap();
        let obj = MemObject::anonymous(SLOT_PAGES * PAGE).unwrap();
        s.mmap_object(
            Some(va(SOURCE_SLOT)),
            SLOT_PAGES * PAGE,
            RW,
            MmapFlags::SHARED | MmapFlags::FIXED | MmapFlags::POPULATE,
            &obj,
            0,
        )
        .unwrap();
        // POPULATE of an object is best effort: fault in what it left.
        for p in 0..SLOT_PAGES {
            let at = va(SOURCE_SLOT + p * PAGE);
            if s.translate(at).is_err() {
                s.handle_page_fault(at, Access::Read).unwrap();
            }
        }
        assert_eq!(obj.pages(), SLOT_PAGES, "object pages resident");
        for slot in [SOURCE_SLOT, BENCH_SLOT] {
            s.mmap(
                Some(va(slot + SLOT_PAGES * PAGE)),
                PAGE,
                RW,
                MmapFlags::FIXED | MmapFlags::POPULATE,
            )
            .unwrap();
        }
        Self { s, obj }
    }

    /// Maps the measured area in the bench slot.
    fn map(&mut self, kind: Kind) {
        let len = SLOT_PAGES * PAGE;
        let at = Some(va(BENCH_SLOT));
        let fixed = MmapFlags::FIXED_NOREPLACE;
        match kind {
            Kind::Anon => self.s.mmap(at, len, RW, fixed),
            Kind::Shared => {
                self.s
                    .mmap_object(at, len, RW, fixed | MmapFlags::SHARED, &self.obj, 0)
            }
            Kind::Private => {
                self.s
                    .mmap_object(at, len, RW, fixed | MmapFlags::PRIVATE, &self.obj, 0)
            }
        }
        .unwrap();
    }

    /// `iters` faults with `access`, in batches of at most [`SLOT_PAGES`] on
    /// a fresh area of `kind` each; with `read_first`, every page of the
    /// batch is read-faulted before the clock runs.
    fn faults(&mut self, iters: u64, kind: Kind, access: Access, read_first: bool) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let batch = left.min(SLOT_PAGES as u64) as usize;
            self.map(kind);
            if read_first {
                for p in 0..batch {
                    self.s
                        .handle_page_fault(va(BENCH_SLOT + p * PAGE), Access::Read)
                        .unwrap();
                }
            }
            let s = &self.s;
            let t = Instant::now();
            for p in 0..batch {
                black_box(s.handle_page_fault(va(BENCH_SLOT + p * PAGE), access)).unwrap();
            }
            total += t.elapsed();
            self.s.munmap(va(BENCH_SLOT), SLOT_PAGES * PAGE).unwrap();
            left -= batch as u64;
        }
        total
    }

    /// Checks (once, not timed) that each case does what its name says:
    /// shared faults map the object's frame, copy-on-write ones a new one.
    fn check(&mut self) {
        let first = va(BENCH_SLOT);
        let object_frame = self.s.translate(va(SOURCE_SLOT)).unwrap().paddr;
        self.map(Kind::Shared);
        self.s.handle_page_fault(first, Access::Read).unwrap();
        assert_eq!(self.s.translate(first).unwrap().paddr, object_frame);
        self.s.munmap(first, SLOT_PAGES * PAGE).unwrap();
        self.map(Kind::Private);
        self.s.handle_page_fault(first, Access::Read).unwrap();
        assert_eq!(self.s.translate(first).unwrap().paddr, object_frame);
        let before = self.s.stats().data_frames;
        self.s.handle_page_fault(first, Access::Write).unwrap();
        assert_ne!(self.s.translate(first).unwrap().paddr, object_frame);
        assert_eq!(self.s.stats().data_frames, before + 1);
        self.s.munmap(first, SLOT_PAGES * PAGE).unwrap();
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Anon,
    Shared,
    Private,
}

fn faults(c: &mut Criterion) {
    // Built on first use, so a filter that selects only the mremap cases
    // never builds it.
    let mut space: Option<FaultSpace> = None;
    let mut g = c.benchmark_group("objects/fault");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let cases: [(&str, Kind, Access, bool); 5] = [
        ("anon_lazy_write", Kind::Anon, Access::Write, false),
        ("shared_read_resident", Kind::Shared, Access::Read, false),
        ("shared_write_resident", Kind::Shared, Access::Write, false),
        ("cow_write_after_read", Kind::Private, Access::Write, true),
        ("private_first_write", Kind::Private, Access::Write, false),
    ];
    for (name, kind, access, read_first) in cases {
        g.bench_function(name, |b| {
            let f = space.get_or_insert_with(|| {
                let mut f = FaultSpace::new();
                f.check();
                f
            });
            b.iter_custom(|iters| f.faults(iters, kind, access, read_first))
        });
    }
    g.finish();
    if let Some(f) = space {
        // Nothing of the measured areas is left: the two anchors, the
        // source mapping.
        assert_eq!(f.s.stats().areas, 3);
        assert_eq!(f.obj.pages(), SLOT_PAGES);
    }
}

/// A populated 1 GiB region moved back and forth.
struct Region {
    s: PoolSpace,
    at: usize,
    other: usize,
    /// Frames of the first and last page, as mapped at `HOME`.
    frames: [usize; 2],
}

impl Region {
    fn new(flags: MmapFlags, other: usize) -> Self {
        // Every frame the region and its tables need, up front.
        PoolHandler::reserve(GIB / PAGE + 1024);
        let mut s = PoolSpace::new(va(WIN), WSIZE).unwrap();
        s.mmap(
            Some(va(HOME)),
            GIB,
            RW,
            MmapFlags::FIXED | MmapFlags::POPULATE | flags,
        )
        .unwrap();
        let frames = Self::frames_at(&s, HOME);
        Self {
            s,
            at: HOME,
            other,
            frames,
        }
    }

    fn frames_at(s: &PoolSpace, at: usize) -> [usize; 2] {
        [at, at + GIB - PAGE].map(|a| s.translate(va(a)).unwrap().paddr.as_usize())
    }

    fn flip(&mut self) {
        let to = self
            .s
            .mremap(
                va(self.at),
                GIB,
                GIB,
                RemapFlags::MAYMOVE | RemapFlags::FIXED,
                Some(va(self.other)),
            )
            .unwrap();
        debug_assert_eq!(to.as_usize(), self.other);
        std::mem::swap(&mut self.at, &mut self.other);
    }

    /// The region still maps the frames it had, wherever it is now.
    fn check(self) {
        assert_eq!(Self::frames_at(&self.s, self.at), self.frames);
        assert!(self.s.translate(va(self.other)).is_err());
        assert_eq!(self.s.stats().areas, 1);
    }
}

fn mremap(c: &mut Criterion) {
    let mut g = c.benchmark_group("objects/mremap_1g");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let cases = [
        ("mremap_4k", MmapFlags::empty(), AWAY),
        ("mremap_4k_unaligned", MmapFlags::empty(), AWAY_UNALIGNED),
        ("mremap_huge_2m", MmapFlags::HUGE_2M, AWAY),
    ];
    for (name, flags, other) in cases {
        // Built on first use (a filter may skip the case), dropped (its
        // frames back to the pool) before the next case.
        let mut region: Option<Region> = None;
        g.bench_function(name, |b| {
            let r = region.get_or_insert_with(|| Region::new(flags, other));
            b.iter(|| r.flip())
        });
        if let Some(r) = region {
            r.check();
        }
    }
    // One copy is 1 GiB of memory bandwidth: a few per sample.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    let mut bufs: Option<(Vec<u8>, Vec<u8>)> = None;
    g.bench_function("copy", |b| {
        // Both written, so the host has backed every page before the clock.
        let (src, dst) = bufs.get_or_insert_with(|| (vec![1u8; GIB], vec![2u8; GIB]));
        b.iter(|| {
            // SAFETY: two distinct live buffers of `GIB` bytes each.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr(), GIB) };
            black_box(&mut *dst);
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    faults(&mut c);
    mremap(&mut c);
    c.final_summary();
}
