//! `mremap` of a populated region: a move (same frames, same data, the old
//! range gone), a grow in place, a shrink, and a move because the region
//! cannot grow in place.

use alloc::string::String;
use alloc::vec::Vec;

use tessera::mm::{self, MmapFlags, PAGE_SIZE, Prot, RemapFlags};
use tessera::{AppResult, Context, check, check_eq, println, time};

use crate::{MIB, RW, get, mapped, pa, set};

const M2: usize = 0x20_0000;

/// The value written at the start of page `i`.
fn value(i: usize) -> u64 {
    0x6d72_656d_0000_0000 | i as u64
}

/// Microseconds since `t0` (cycles), if the board knows its counter's rate.
fn micros(t0: u64) -> String {
    let dt = time::cycles().wrapping_sub(t0);
    match time::cycles_per_sec() {
        Some(hz) if hz > 0 => tessera::format!("{} us", dt as u128 * 1_000_000 / hz as u128),
        _ => tessera::format!("{dt} cycles"),
    }
}

/// Checks that pages `0..n` at `base` map `frames[i]` and hold `value(i)`.
fn same_pages(base: usize, frames: &[usize], n: usize, what: &str) -> AppResult {
    for (i, &frame) in frames.iter().enumerate().take(n) {
        let va = base + i * PAGE_SIZE;
        check_eq!(pa(va)?, frame, "{what}: frame of page {i}");
        check_eq!(get(va), value(i), "{what}: data of page {i}");
    }
    Ok(())
}

/// Checks that no page of `[start, end)` translates.
fn gone(start: usize, end: usize, what: &str) -> AppResult {
    for va in (start..end).step_by(PAGE_SIZE) {
        check!(!mapped(va), "{what}: {va:#x} still translates");
    }
    Ok(())
}

pub fn mremap() -> AppResult {
    let before = mm::stats();
    let free = (before.frames_total - before.frames_used) * PAGE_SIZE;
    // 64 MiB populated, its page tables, a 2 MiB eager growth and the
    // frame list need about 67 MiB: 64 MiB when 72 MiB are free (as
    // `apps/huge`), else 32 MiB.
    let len = if free >= 72 * MIB { 64 * MIB } else { 32 * MIB };
    let pages = len / PAGE_SIZE;
    if len < 64 * MIB {
        println!(
            "mremap: only {} MiB free: moving {} MiB instead of 64 MiB (run with MEM=256M for 64)",
            free / MIB,
            len / MIB
        );
    }
    let a = mm::mmap(None, len, RW, MmapFlags::POPULATE).context("mmap POPULATE")?;
    let mut frames: Vec<usize> = Vec::new();
    frames
        .try_reserve_exact(pages)
        .map_err(|_| String::from("no heap for the frame list"))?;
    for i in 0..pages {
        let va = a + i * PAGE_SIZE;
        set(va, value(i));
        frames.push(pa(va)?);
    }
    check_eq!(
        mm::stats().data_frames,
        before.data_frames + pages,
        "data frames of the populated region"
    );

    // The destination: inside a lazy reservation, congruent to `a` modulo
    // 2 MiB (whole tables of 4K leaves can move), with room to grow after it.
    let room = len + 4 * M2;
    let r = mm::mmap(None, room, RW, MmapFlags::empty()).context("mmap reservation")?;
    let dst = r + (a.wrapping_sub(r) % M2);
    let t0 = time::cycles();
    let got = mm::mremap(
        a,
        len,
        len,
        RemapFlags::MAYMOVE | RemapFlags::FIXED,
        Some(dst),
    )
    .context("mremap FIXED")?;
    let took = micros(t0);
    check_eq!(got, dst, "mremap FIXED's address");
    if dst > r {
        mm::munmap(r, dst - r).context("munmap reservation head")?;
    }
    mm::munmap(dst + len, r + room - (dst + len)).context("munmap reservation tail")?;
    same_pages(dst, &frames, pages, "after the move")?;
    gone(a, a + len, "the old range after the move")?;
    check_eq!(
        mm::stats().data_frames,
        before.data_frames + pages,
        "data frames after the move"
    );
    println!(
        "mremap: moved a populated {} MiB region ({pages} pages) from {a:#x} to {dst:#x} in {took}: every page keeps its frame and data, the old range no longer translates",
        len / MIB
    );

    // Grow in place by 2 MiB: the area is eager, so the tail is populated.
    let got = mm::mremap(dst, len, len + M2, RemapFlags::empty(), None).context("mremap grow")?;
    check_eq!(got, dst, "grow in place: address");
    check_eq!(
        mm::stats().data_frames,
        before.data_frames + pages + M2 / PAGE_SIZE,
        "data frames after growing (eager tail)"
    );
    for off in (len..len + M2).step_by(PAGE_SIZE) {
        check!(mapped(dst + off), "grown tail at +{off:#x} not populated");
        check_eq!(get(dst + off), 0, "grown tail at +{off:#x}");
    }
    same_pages(dst, &frames, pages, "after growing")?;

    // Shrink to half.
    let half = len / 2;
    let got =
        mm::mremap(dst, len + M2, half, RemapFlags::empty(), None).context("mremap shrink")?;
    check_eq!(got, dst, "shrink: address");
    gone(dst + half, dst + len + M2, "the cut tail")?;
    check_eq!(
        mm::stats().data_frames,
        before.data_frames + pages / 2,
        "data frames after shrinking"
    );
    same_pages(dst, &frames, pages / 2, "after shrinking")?;
    println!(
        "mremap: grew in place by 2 MiB (tail populated, zero), shrank to {} MiB (tail unmapped, {} frames freed), the rest keeps its frames",
        half / MIB,
        (len + M2 - half) / PAGE_SIZE
    );

    // Blocked after its end: growing moves it.
    let block = mm::mmap(
        Some(dst + half),
        PAGE_SIZE,
        Prot::READ,
        MmapFlags::FIXED_NOREPLACE,
    )
    .context("mmap blocker")?;
    check!(
        mm::mremap(dst, half, half + PAGE_SIZE, RemapFlags::empty(), None).is_err(),
        "grew in place over the blocker"
    );
    let m = mm::mremap(dst, half, half + PAGE_SIZE, RemapFlags::MAYMOVE, None)
        .context("mremap MAYMOVE")?;
    check!(m != dst, "MAYMOVE growth over a blocker stayed at {dst:#x}");
    same_pages(m, &frames, pages / 2, "after the MAYMOVE growth")?;
    gone(dst, dst + half, "the old range after the MAYMOVE growth")?;
    check_eq!(get(m + half), 0, "the new page after the MAYMOVE growth");
    println!(
        "mremap MAYMOVE: blocked after its end, the {} MiB region grew by moving to {m:#x} (congruent mod 2 MiB: {}), same frames and data",
        half / MIB,
        m % M2 == dst % M2
    );
    mm::munmap(m, half + PAGE_SIZE).context("munmap")?;
    mm::munmap(block, PAGE_SIZE).context("munmap blocker")?;
    drop(frames);
    let now = mm::stats();
    now.back_to(&before)
        .map_err(|e| tessera::format!("mremap: {e}"))
}
