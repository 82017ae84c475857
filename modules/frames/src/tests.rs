use super::*;
use proptest::prelude::*;

const MB: usize = 1 << 20;

fn allocator(base: usize, size: usize) -> FrameAllocator {
    let mut a = FrameAllocator::new(base, size);
    assert_eq!(a.add_free(base, size), size / FRAME_SIZE);
    a
}

#[test]
fn single_frames_are_distinct_and_counted() {
    let mut a = allocator(0x8000_0000, 64 * FRAME_SIZE);
    let mut got = Vec::new();
    for _ in 0..64 {
        got.push(a.alloc(1, FRAME_SIZE).unwrap());
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 64);
    assert_eq!(a.stats().used, 64);
    assert_eq!(a.alloc(1, FRAME_SIZE), Err(AllocError::NoMemory));
    for pa in got {
        a.free(pa, 1).unwrap();
    }
    assert_eq!(a.stats(), FrameStats { total: 64, used: 0 });
}

#[test]
fn double_free_is_refused_and_changes_nothing() {
    let mut a = allocator(0, 16 * FRAME_SIZE);
    let pa = a.alloc(2, FRAME_SIZE).unwrap();
    a.free(pa, 1).unwrap();
    assert_eq!(a.free(pa, 2), Err(FreeError::NotAllocated));
    assert_eq!(a.stats().used, 1);
    a.free(pa + FRAME_SIZE, 1).unwrap();
    assert_eq!(a.free(pa, 1), Err(FreeError::NotAllocated));
    assert_eq!(a.stats().used, 0);
}

#[test]
fn bad_frees_are_refused() {
    let mut a = allocator(0x1000_0000, 16 * FRAME_SIZE);
    assert_eq!(a.free(0x1000_0001, 1), Err(FreeError::OutOfRange));
    assert_eq!(a.free(0x0fff_f000, 1), Err(FreeError::OutOfRange));
    assert_eq!(a.free(0x1000_f000, 2), Err(FreeError::OutOfRange));
    assert_eq!(a.free(0x1000_0000, 0), Err(FreeError::OutOfRange));
    assert_eq!(a.free(0x1000_0000, usize::MAX), Err(FreeError::OutOfRange));
    assert_eq!(a.alloc(0, FRAME_SIZE), Err(AllocError::InvalidRequest));
    assert_eq!(a.alloc(1, 3 * FRAME_SIZE), Err(AllocError::InvalidRequest));
}

#[test]
fn free_of_a_hole_is_refused_and_changes_nothing() {
    // RAM at [0, 1M) and [2M, 4M): [1M, 2M) is a hole of the span.
    let mut a = FrameAllocator::new(0, 4 * MB);
    a.add_free(0, MB);
    a.add_free(2 * MB, 2 * MB);
    assert_eq!(a.free(MB, 1), Err(FreeError::NotAllocated));
    assert_eq!(a.alloc(256, MB), Ok(0));
    // A run from the last frame handed out into the hole.
    assert_eq!(a.free(MB - FRAME_SIZE, 2), Err(FreeError::NotAllocated));
    assert_eq!(
        a.stats(),
        FrameStats {
            total: 768,
            used: 256
        }
    );
    // The hole stays unavailable.
    assert_eq!(a.alloc(256, MB), Ok(2 * MB));
    assert_eq!(a.alloc(256, MB), Ok(3 * MB));
    assert_eq!(a.alloc(1, FRAME_SIZE), Err(AllocError::NoMemory));
    a.free(MB - FRAME_SIZE, 1).unwrap();
    assert_eq!(a.stats().used, 767);
}

#[test]
fn add_free_does_not_free_a_frame_handed_out() {
    let mut a = allocator(0, 4 * FRAME_SIZE);
    let pa = a.alloc(1, FRAME_SIZE).unwrap();
    assert_eq!(a.add_free(0, 4 * FRAME_SIZE), 0);
    assert_eq!(a.stats(), FrameStats { total: 4, used: 1 });
    assert_ne!(a.alloc(1, FRAME_SIZE), Ok(pa));
    a.free(pa, 1).unwrap();
}

#[test]
fn huge_runs_are_aligned_even_when_the_span_is_not() {
    // Span starts 12 KiB past a 2 MiB boundary.
    let base = 0x8000_3000;
    let mut a = allocator(base, 8 * MB);
    let pa = a.alloc(512, 2 * MB).unwrap();
    assert_eq!(pa % (2 * MB), 0);
    assert!(pa >= base);
    let pb = a.alloc(512, 2 * MB).unwrap();
    assert_eq!(pb % (2 * MB), 0);
    assert_ne!(pa, pb);
    assert_eq!(a.stats().used, 1024);
    a.free(pa, 512).unwrap();
    a.free(pb, 512).unwrap();
}

#[test]
fn runs_skip_busy_frames_and_holes() {
    let base = 0;
    let mut a = FrameAllocator::new(base, 4 * MB);
    a.add_free(0, MB);
    a.add_free(2 * MB, 2 * MB);
    assert_eq!(a.stats().total, 768);
    // A 1 MiB hole at [1M, 2M): a 2 MiB run can only be at 2M.
    assert_eq!(a.alloc(512, 2 * MB), Ok(2 * MB));
    assert_eq!(a.alloc(512, 2 * MB), Err(AllocError::NoMemory));
    // One busy frame in the middle of [0, 1M) blocks a 1 MiB run there.
    let one = a.alloc(1, FRAME_SIZE).unwrap();
    assert_eq!(one, 0);
    assert_eq!(a.alloc(256, MB), Err(AllocError::NoMemory));
    assert_eq!(a.alloc(255, FRAME_SIZE), Ok(FRAME_SIZE));
}

#[test]
fn add_free_ignores_outside_and_duplicates() {
    let mut a = FrameAllocator::new(0x1000, 4 * FRAME_SIZE);
    assert_eq!(a.add_free(0, 100 * FRAME_SIZE), 4);
    assert_eq!(a.add_free(0x1000, FRAME_SIZE), 0);
    assert_eq!(a.stats().total, 4);
}

proptest! {
    /// Random alloc/free sequences against a set model: no overlap, alignment
    /// holds, counts agree, and everything returns.
    #[test]
    fn random_sequences_match_model(ops in proptest::collection::vec((0u8..3, 1usize..40, 0u32..4), 1..200)) {
        let mut a = allocator(0x4000_0000 + 5 * FRAME_SIZE, 1024 * FRAME_SIZE);
        let mut live: Vec<(usize, usize)> = Vec::new();
        for (op, count, align_shift) in ops {
            if op < 2 {
                let align = FRAME_SIZE << (align_shift * 2);
                if let Ok(pa) = a.alloc(count, align) {
                    prop_assert_eq!(pa % align, 0);
                    for &(q, n) in &live {
                        prop_assert!(pa + count * FRAME_SIZE <= q || q + n * FRAME_SIZE <= pa);
                    }
                    live.push((pa, count));
                }
            } else if !live.is_empty() {
                let (pa, n) = live.swap_remove(count % live.len());
                prop_assert_eq!(a.free(pa, n), Ok(()));
                prop_assert_eq!(a.free(pa, n), Err(FreeError::NotAllocated));
            }
            prop_assert_eq!(a.stats().used, live.iter().map(|x| x.1).sum::<usize>());
        }
        for (pa, n) in live {
            a.free(pa, n).unwrap();
        }
        prop_assert_eq!(a.stats().used, 0);
    }
}
