//! Memory objects mapped shared and private, `msync` and `mremap`, on one
//! CPU and on several.
//!
//! - two shared mappings of one anonymous object see each other's writes and
//!   map the same frames, also after an `mprotect` that splits one of them
//!   and a partial `munmap` of the other; `mmap(SHARED)` without an object;
//! - an object over a file built into the image (`data/file.txt`), mapped
//!   shared and private: the private mapping reads the file through the
//!   object's frames until a write gives the written page a copy of its own
//!   (and only that page); `shared_frames` and `data_frames` follow;
//! - `msync` writes back exactly the pages written since the last one;
//! - a read past the end of an object faults (probed, not touched);
//! - `mremap` moves a populated 64 MiB region (32 MiB when the board has
//!   less than 72 MiB free) with its frames and data, grows it in place,
//!   shrinks it, and moves it when it cannot grow in place;
//! - with several CPUs: a copy-on-write fault on one CPU while the others
//!   keep reading the page (none may read the old frame once the write
//!   returned: that would be a stale TLB entry), writes to a shared mapping
//!   seen by the other CPUs, and `msync` write-protecting a page another
//!   CPU has writable in its TLB;
//! - at the end every frame is back.
#![no_std]
#![no_main]

extern crate alloc;

mod cpus;
mod objects;
mod remap;

use alloc::string::String;

use tessera::mm::{self, PAGE_SIZE, Prot};
use tessera::{AppResult, Context, check, println, smp};

tessera::main!(main);

/// Read-write.
pub(crate) const RW: Prot = Prot::READ.union(Prot::WRITE);
/// One MiB.
pub(crate) const MIB: usize = 1 << 20;

/// The "file": 4 pages and 1500 bytes of text, built into the image.
pub(crate) static FILE: &[u8] = include_bytes!("../data/file.txt");

/// `FILE`'s size rounded up to pages.
pub(crate) const fn file_len() -> usize {
    FILE.len().next_multiple_of(PAGE_SIZE)
}

/// The `u64` the file holds at byte `off` (zero past its end, as a mapping
/// of its last page reads).
pub(crate) fn file_word(off: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = FILE.get(off + i).copied().unwrap_or(0);
    }
    u64::from_ne_bytes(b)
}

/// The physical address `va` translates to.
pub(crate) fn pa(va: usize) -> Result<usize, String> {
    Ok(mm::translate(va)
        .context(&tessera::format!("translate {va:#x}"))?
        .paddr
        .as_usize())
}

/// Whether `va` translates to anything.
pub(crate) fn mapped(va: usize) -> bool {
    mm::translate(va).is_ok()
}

/// Reads the `u64` at `va`.
///
/// Every caller in this app passes an 8-aligned address inside a readable
/// mapping it made (`mmap` / `mmap_object`) and has not unmapped; the app
/// never makes a Rust reference into mapped memory.
pub(crate) fn get(va: usize) -> u64 {
    // SAFETY: see above: a readable mapping of this app, no reference into it.
    unsafe { mm::peek(va) }
}

/// Writes the `u64` at `va`.
///
/// Every caller in this app passes an 8-aligned address inside a writable
/// mapping it made and still holds; nothing but this app's checks reads
/// that memory.
pub(crate) fn set(va: usize, value: u64) {
    // SAFETY: see above: a writable mapping of this app, owned by it, no
    // reference into it.
    unsafe { mm::poke(va, value) }
}

fn main() -> AppResult {
    let start = mm::stats();
    let n = smp::cpu_count();
    println!(
        "shared: {n} CPU(s), {} MiB free, file of {} bytes ({} pages)",
        (start.frames_total - start.frames_used) * PAGE_SIZE / MIB,
        FILE.len(),
        file_len() / PAGE_SIZE
    );
    objects::two_shared_mappings()?;
    objects::anonymous_shared()?;
    objects::private_and_shared()?;
    objects::msync()?;
    objects::past_end()?;
    remap::mremap()?;
    if n > 1 {
        cpus::cow(n)?;
        cpus::shared(n)?;
        cpus::msync()?;
        println!("several CPUs ({n}): copy-on-write, shared writes and msync: ok");
    } else {
        println!("several CPUs: skipped (1 CPU; run with SMP=2 or more)");
    }
    let end = mm::stats();
    let back = end.back_to(&start);
    println!(
        "leak check: data frames {} -> {}, shared frames {} -> {}, frames in use {:+}: {}",
        start.data_frames,
        end.data_frames,
        start.shared_frames,
        end.shared_frames,
        end.frames_used_since(&start),
        if back.is_ok() { "all back" } else { "LEAKED" }
    );
    check!(
        end.shared_frames == start.shared_frames,
        "shared frames at the end: {} (start {})",
        end.shared_frames,
        start.shared_frames
    );
    back.map_err(|e| tessera::format!("leak check: {e}"))
}
