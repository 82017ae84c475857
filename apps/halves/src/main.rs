//! The two halves of the address space do not alias each other.
//!
//! After boot nothing of the kernel is reachable at its physical address (no
//! identity map is left), and on boards with a page-table root per half
//! (AArch64's TTBR0/TTBR1) an address of one half whose root index would land
//! on the other half's entries finds nothing: the kernel's text and RAM through
//! a lower-half pointer, and an app page through an upper-half pointer. Every
//! alias probe must fault while the real addresses keep working; the audit of
//! the live table (each half walked from its own root) finds every leaf of the
//! lower half inside the app window and every leaf of the upper half at or
//! above the kernel's physical-memory offset.
#![no_std]
#![no_main]

use tessera::boot::{self, MemKind, RootLayout};
use tessera::mm::{self, MmapFlags, PAGE_SIZE, Prot};
use tessera::{AppResult, Context, check, println};

tessera::main!(main);

/// The bits a 48-bit root index is taken from: VA bits 47..0.
const LA_MASK: usize = (1 << 48) - 1;
/// What AArch64 sign-extends an upper-half address with.
const UPPER_BITS: usize = !LA_MASK;

/// First physical address of the first region of `kind`.
fn region(kind: MemKind) -> Option<usize> {
    boot::memory_map()
        .iter()
        .find(|r| r.kind == kind && r.size > 0)
        .map(|r| r.paddr.as_usize())
}

/// Checks that `va` is readable (and writable if asked) at its real address.
fn reachable(what: &str, va: usize, write: bool) -> AppResult {
    check!(!mm::read_faults(va), "{what} at {va:#x}: read faults");
    if write {
        check!(!mm::write_faults(va), "{what} at {va:#x}: write faults");
    }
    Ok(())
}

/// Checks that reading and writing `alias` both fault.
fn faults(what: &str, alias: usize) -> AppResult {
    let (r, w) = (mm::read_faults(alias), mm::write_faults(alias));
    println!(
        "halves: {what} at {alias:#x}: read {}, write {}",
        word(r),
        word(w)
    );
    check!(
        r && w,
        "{what} at {alias:#x} is reachable (read faults {r}, write faults {w})"
    );
    Ok(())
}

fn word(faulted: bool) -> &'static str {
    if faulted { "faults" } else { "SUCCEEDS" }
}

fn main() -> AppResult {
    let text = region(MemKind::Text).ok_or("no kernel text region")?;
    let data = region(MemKind::Data).ok_or("no kernel data region")?;
    let ram = region(MemKind::Free).ok_or("no free RAM region")?;
    let (text_va, data_va) = (boot::phys_to_virt(text), boot::phys_to_virt(data));
    reachable("kernel text", text_va, false)?;
    reachable("kernel data", data_va, false)?;

    // No identity map survives boot.
    faults("kernel text's physical address", text)?;
    faults("kernel data's physical address", data)?;
    faults("free RAM's physical address", ram)?;

    let (base, _) = mm::window();
    let page = mm::mmap(
        Some(base),
        PAGE_SIZE,
        Prot::READ | Prot::WRITE,
        MmapFlags::FIXED | MmapFlags::POPULATE,
    )
    .context("mmap")?;
    reachable("app page", page, true)?;

    let layout = match boot::root_layout() {
        RootLayout::PerHalf => "a page-table root per half",
        RootLayout::Single => "one page-table root for both halves",
    };
    println!("halves: {layout}");
    // The addresses that index the other half's root slots: VA bits 47..39 of a
    // kernel address with the upper bits cleared (the lower half), and of an app
    // address with them set (the upper half). AArch64 walks them (TTBR0 and TTBR1
    // index with the same bits); RISC-V Sv39 finds them non-canonical and raises
    // a page fault. Probed whatever layout the board declares, so a board that
    // shares one root between the halves fails here. On x86_64 they are
    // non-canonical: a general-protection fault, not a page fault a probe
    // survives, and CR3 is one root anyway.
    if boot::arch() != "x86_64" {
        faults("lower-half alias of kernel text", text_va & LA_MASK)?;
        faults("lower-half alias of kernel data", data_va & LA_MASK)?;
        faults(
            "lower-half alias of free RAM",
            boot::phys_to_virt(ram) & LA_MASK,
        )?;
        faults("upper-half alias of the app page", page | UPPER_BITS)?;
        reachable("app page", page, true)?;
    }

    let (kernel_lowest, mut leaves, mut misplaced) = (boot::phys_to_virt(0), 0usize, 0usize);
    let (wstart, wend) = mm::window();
    mm::for_each_leaf(|va, size| {
        leaves += 1;
        let in_window = va >= wstart && va + size <= wend;
        if !(in_window || va >= kernel_lowest) {
            misplaced += 1;
            if misplaced == 1 {
                println!("halves: leaf at {va:#x} ({size:#x} bytes) is in neither half's range");
            }
        }
    });
    println!("halves: {misplaced} of {leaves} leaves outside the app window and the kernel half");
    check!(
        misplaced == 0,
        "leaves outside the app window and the kernel half"
    );
    mm::munmap(page, PAGE_SIZE).context("munmap")?;
    println!("halves: no alias reaches the other half");
    Ok(())
}
