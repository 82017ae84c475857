//! A linear mapping of a physical range: reads a known word through it and checks
//! that `translate` agrees.
#![no_std]
#![no_main]

use tessera::mm::{self, PAGE_SIZE, Prot};
use tessera::{AppResult, Context, boot, check, check_eq, println};

tessera::main!(main);

fn main() -> AppResult {
    let word = boot::known_word();
    let pa = word.paddr.as_usize();
    check!(
        pa != 0 && pa.is_multiple_of(4),
        "no known word on this board ({pa:#x})"
    );
    let page = pa & !(PAGE_SIZE - 1);
    let offset = pa - page;
    let va = mm::map_phys(page, PAGE_SIZE, Prot::READ, word.device).context("map_phys")?;
    // SAFETY: `va + offset` lies in the page just mapped readable over `pa`, and is
    // 4-byte aligned.
    let raw = unsafe { ((va + offset) as *const u32).read_volatile() };
    let value = if word.big_endian {
        u32::from_be(raw)
    } else {
        raw
    };
    println!(
        "{} at {pa:#x} via {:#x}: {value:#x}",
        word.what,
        va + offset
    );
    check_eq!(value, word.value, "{}", word.what);
    let t = mm::translate(va + offset).context("translate")?;
    println!(
        "translate({:#x}) = {:#x}, {:?}",
        va + offset,
        t.paddr.as_usize(),
        t.page_size
    );
    check_eq!(t.paddr.as_usize(), pa, "translate");
    mm::munmap(va, PAGE_SIZE).context("munmap")?;
    check!(
        mm::translate(va).is_err(),
        "translate after munmap succeeds"
    );
    println!("linear: the known word matches and translate agrees");
    Ok(())
}
