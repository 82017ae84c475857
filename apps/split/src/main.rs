//! Splitting a huge *linear* mapping: a 2M-aligned physical range (the frames
//! of a populated `HUGE_2M` anonymous area) is mapped again with `map_phys`,
//! which uses one 2M leaf for it. An `mprotect` of one 4K page in its middle
//! splits the leaf: that page gets its new flags and a 4K page size, while
//! the first page, its neighbours and the last page keep their physical
//! addresses and flags (now as 4K pages). An `munmap` of that page then
//! removes just it. Once both areas are gone, every frame and page-table frame
//! is back.
#![no_std]
#![no_main]

use tessera::mm::{self, LeafSize, MmapFlags, PAGE_SIZE, Prot, Translation};
use tessera::{AppResult, Context, check, check_eq, println};

tessera::main!(main);

const RW: Prot = Prot::READ.union(Prot::WRITE);
const M2: usize = 0x20_0000;

fn size_name(t: &Translation) -> &'static str {
    match t.page_size {
        LeafSize::Size4K => "4K",
        LeafSize::Size2M => "2M",
        LeafSize::Size1G => "1G",
    }
}

/// The pages whose translation must not change: first, the neighbours of the
/// middle page, last.
fn witnesses(base: usize) -> [usize; 4] {
    let mid = base + M2 / 2;
    [
        base,
        mid - PAGE_SIZE,
        mid + PAGE_SIZE,
        base + M2 - PAGE_SIZE,
    ]
}

/// Checks the witnesses: same physical address and flags as at first, 4K pages.
fn check_rest(base: usize, first: &[Translation; 4], when: &str) -> AppResult {
    for (va, was) in witnesses(base).into_iter().zip(first) {
        let t = mm::translate(va).context("translate")?;
        check_eq!(t.paddr, was.paddr, "{when}: physical address of {va:#x}");
        check_eq!(t.flags, was.flags, "{when}: flags of {va:#x}");
        check_eq!(size_name(&t), "4K", "{when}: page size of {va:#x}");
        // SAFETY: a witness page of the linear mapping, readable and never
        // unmapped or protected; it aliases the app's own huge anonymous page.
        let data = unsafe { mm::peek(va) };
        check_eq!(data, va as u64 - base as u64, "{when}: data at {va:#x}");
    }
    println!(
        "{when}: first, neighbours and last page keep their physical addresses and flags (4K pages now)"
    );
    Ok(())
}

fn main() -> AppResult {
    let before = mm::stats();
    // A 2M-aligned physical range of RAM we own: one huge anonymous page.
    let anon =
        mm::mmap(None, M2, RW, MmapFlags::HUGE_2M | MmapFlags::POPULATE).context("mmap HUGE_2M")?;
    let t = mm::translate(anon).context("translate anon")?;
    check_eq!(size_name(&t), "2M", "anonymous page size");
    let pa = t.paddr.as_usize();
    check!(pa % M2 == 0, "huge frame at {pa:#x} is not 2M aligned");
    for off in (0..M2).step_by(PAGE_SIZE) {
        // SAFETY: inside the read-write huge page just mapped for this app.
        unsafe { mm::poke(anon + off, off as u64) };
    }
    // The same frames, mapped linearly.
    let base = mm::map_phys(pa, M2, RW, false).context("map_phys")?;
    let t = mm::translate(base).context("translate linear")?;
    println!(
        "linear: {base:#x} -> {pa:#x}, one {} leaf, flags {:?}",
        size_name(&t),
        t.flags
    );
    check_eq!(size_name(&t), "2M", "linear page size");
    check_eq!(t.paddr.as_usize(), pa, "linear physical address");
    let first = witnesses(base).map(|va| mm::translate(va).expect("mapped"));
    for t in &first {
        check_eq!(size_name(t), "2M", "page size before the split");
    }

    let mid = base + M2 / 2;
    mm::mprotect(mid, PAGE_SIZE, Prot::READ).context("mprotect")?;
    let t = mm::translate(mid).context("translate middle")?;
    println!(
        "mprotect {mid:#x} R: writable: {}, write faults: {}; that page is now {} at {:#x}",
        t.flags.contains(mm::MappingFlags::WRITE),
        mm::write_faults(mid),
        size_name(&t),
        t.paddr.as_usize(),
    );
    check_eq!(size_name(&t), "4K", "middle page size");
    check_eq!(t.paddr.as_usize(), pa + M2 / 2, "middle physical address");
    check!(
        mm::write_faults(mid) && !mm::read_faults(mid),
        "middle page access"
    );
    check_rest(base, &first, "after mprotect")?;

    mm::munmap(mid, PAGE_SIZE).context("munmap")?;
    check!(
        mm::translate(mid).is_err(),
        "the middle page is still mapped"
    );
    println!(
        "munmap {mid:#x}: that page is gone, read faults: {}",
        mm::read_faults(mid)
    );
    check_rest(base, &first, "after munmap")?;
    // SAFETY: the anonymous huge page is still mapped read-write.
    let data = unsafe { mm::peek(anon + M2 / 2) };
    check_eq!(data, (M2 / 2) as u64, "the frame itself is untouched");

    mm::munmap(base, M2).context("munmap linear")?;
    mm::munmap(anon, M2).context("munmap anon")?;
    let after = mm::stats();
    let leaked = after.frames_used_since(&before);
    println!("leaked frames: {leaked}");
    check_eq!(leaked, 0, "frames in use after munmap");
    println!("page-table frames back to {}", after.page_table_frames);
    check_eq!(
        after.page_table_frames,
        before.page_table_frames,
        "page-table frames"
    );
    Ok(())
}
