//! The per-CPU frame caches with real threads as CPUs: no frame is ever
//! handed out twice, double and stray frees are refused and change nothing,
//! frames cached on one CPU are found by another when the bitmap runs dry
//! (single frames and aligned runs), and the counts come back exactly.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{Barrier, Mutex};
use std::thread;

use frames::cached::{CachedFrames, MAGAZINE};
use frames::{AllocError, FRAME_SIZE, FrameAllocator, FreeError};

thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}

fn cpu() -> usize {
    CPU.with(Cell::get)
}

const BASE: usize = 0x8000_0000;

fn allocator(frames: usize) -> CachedFrames {
    let mut bitmap = FrameAllocator::new(BASE, frames * FRAME_SIZE);
    bitmap.add_free(BASE, frames * FRAME_SIZE);
    let a = CachedFrames::new();
    a.init(bitmap);
    a.set_cpu_index(cpu);
    a
}

#[test]
fn frees_are_checked_and_cached_frames_count_as_free() {
    let a = allocator(256);
    let f = a.alloc(1, FRAME_SIZE).unwrap();
    assert_eq!(a.stats().used, 1);
    assert!(a.cached() > 0, "the magazine was refilled");
    a.free(f, 1).unwrap();
    assert_eq!(a.stats().used, 0, "a cached frame counts as free");
    assert_eq!(a.free(f, 1), Err(FreeError::NotAllocated), "double free");
    let cached = a.cached();
    assert_eq!(
        a.free(f + FRAME_SIZE, 1),
        Err(FreeError::NotAllocated),
        "stray free"
    );
    assert_eq!(a.free(BASE + 1, 1), Err(FreeError::OutOfRange));
    assert_eq!(
        a.free(BASE + 256 * FRAME_SIZE, 1),
        Err(FreeError::OutOfRange)
    );
    assert_eq!(a.free(BASE, 300), Err(FreeError::OutOfRange));
    assert_eq!(a.cached(), cached, "refused frees changed nothing");
    // A run whose middle frame is not handed out: refused, nothing changes.
    let run = a.alloc(4, FRAME_SIZE).unwrap();
    a.free(run + FRAME_SIZE, 1).unwrap();
    assert_eq!(a.free(run, 4), Err(FreeError::NotAllocated));
    a.free(run, 1).unwrap();
    a.free(run + 2 * FRAME_SIZE, 2).unwrap();
    assert_eq!(a.stats().used, 0);
    a.drain_all();
    assert_eq!(a.cached(), 0);
}

#[test]
fn a_cpu_gets_the_frames_another_cpu_cached() {
    let a = allocator(128);
    // CPU 1 takes every frame and gives them back: they end up in its
    // magazine (up to MAGAZINE of them) and the bitmap.
    thread::scope(|s| {
        s.spawn(|| {
            CPU.with(|c| c.set(1));
            let all: Vec<usize> = (0..128).map(|_| a.alloc(1, FRAME_SIZE).unwrap()).collect();
            assert_eq!(a.alloc(1, FRAME_SIZE), Err(AllocError::NoMemory));
            for f in all {
                a.free(f, 1).unwrap();
            }
        });
    });
    assert!(a.cached() > 0 && a.cached() <= MAGAZINE);
    // CPU 2 needs all 128: it must take CPU 1's cached frames back.
    thread::scope(|s| {
        s.spawn(|| {
            CPU.with(|c| c.set(2));
            let all: Vec<usize> = (0..128).map(|_| a.alloc(1, FRAME_SIZE).unwrap()).collect();
            assert_eq!(all.iter().collect::<HashSet<_>>().len(), 128);
            for f in all {
                a.free(f, 1).unwrap();
            }
        });
    });
    // An aligned run of every frame: cached frames go back to the bitmap.
    let run = a.alloc(128, 128 * FRAME_SIZE).unwrap();
    assert_eq!(run, BASE);
    assert_eq!(a.stats().used, 128);
    a.free(run, 128).unwrap();
    assert_eq!(a.stats().used, 0);
}

#[test]
fn four_cpus_at_once_never_share_a_frame() {
    const FRAMES: usize = 512;
    const OPS: usize = 20_000;
    let a = allocator(FRAMES);
    let owned: Mutex<HashSet<usize>> = Mutex::new(HashSet::new());
    let start = Barrier::new(4);
    thread::scope(|s| {
        for c in 0..4 {
            let (a, owned, start) = (&a, &owned, &start);
            s.spawn(move || {
                CPU.with(|x| x.set(c));
                let mut mine: Vec<(usize, usize)> = Vec::new();
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ c as u64;
                start.wait();
                for _ in 0..OPS {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let alloc = mine.is_empty() || (mine.len() < 100 && !seed.is_multiple_of(3));
                    if alloc {
                        let (n, align) = if seed.is_multiple_of(17) {
                            (8, 8 * FRAME_SIZE)
                        } else {
                            (1, FRAME_SIZE)
                        };
                        let Ok(pa) = a.alloc(n, align) else {
                            continue; // out of frames for now: the others hold them
                        };
                        let mut o = owned.lock().unwrap();
                        for k in 0..n {
                            assert!(o.insert(pa + k * FRAME_SIZE), "frame handed out twice");
                        }
                        mine.push((pa, n));
                    } else {
                        let (pa, n) = mine.swap_remove(seed as usize % mine.len());
                        {
                            let mut o = owned.lock().unwrap();
                            for k in 0..n {
                                o.remove(&(pa + k * FRAME_SIZE));
                            }
                        }
                        a.free(pa, n).unwrap();
                    }
                }
                for (pa, n) in mine {
                    owned
                        .lock()
                        .unwrap()
                        .retain(|&f| f < pa || f >= pa + n * FRAME_SIZE);
                    a.free(pa, n).unwrap();
                }
            });
        }
    });
    assert_eq!(a.stats().used, 0, "every frame came back");
    assert!(owned.lock().unwrap().is_empty());
    a.drain_all();
    assert_eq!((a.cached(), a.stats().used), (0, 0));
    // Every frame is free in the bitmap again: one run of all of them.
    assert_eq!(a.alloc(FRAMES, FRAMES * FRAME_SIZE), Ok(BASE));
}
