//! What differs between PTE formats, seen through the public API: which flags
//! a format can encode as a present leaf, and how an entry this crate never
//! writes (a foreign non-present entry in an adopted table) is treated.

mod common;

use common::*;
use memory_addr::PhysAddr;
use page_table_entry::{aarch64::A64PTE, loongarch64::LA64PTE, riscv::Rv64PTE, x86_64::X64PTE};
use page_table_multiarch::{GenericPTE, MappingFlags as F, PagingHandler, PagingMetaData};
use paging::{MapError, PageTable, ProtectError, QueryError, Size2M, Size4K};
use testing::TrackingHandler;

const M2: usize = 2 << 20;

/// Execute-only leaves: refused (and nothing written) where the format has no
/// present encoding for them, mapped and visible where it has.
fn exec_only<M: PagingMetaData<VirtAddr = memory_addr::VirtAddr>, PTE: GenericPTE>(ok: bool) {
    testing::reset();
    let mut pt = PageTable::<M, PTE, TrackingHandler>::try_new().unwrap();
    let (va, pa) = (0x4000usize, 0x9000usize);
    let want = if ok {
        Ok(())
    } else {
        Err(MapError::InvalidFlags)
    };
    let mut c = pt.cursor();
    assert_eq!(c.map::<Size4K>(va.into(), pa.into(), F::EXECUTE), want);
    assert_eq!(
        c.map_region(M2.into(), 0.into(), M2, F::EXECUTE, true),
        want
    );
    drop(c);
    if ok {
        assert_eq!(
            pt.query(va.into()).map(|(p, f, _)| (p.as_usize(), f)),
            Ok((pa, norm::<PTE>(F::EXECUTE)))
        );
        assert!(pt.query(M2.into()).is_ok());
    } else {
        assert_eq!(pt.query(va.into()).err(), Some(QueryError::NotMapped));
        assert_eq!(pt.query(M2.into()).err(), Some(QueryError::NotMapped));
        assert_eq!(pt.table_frames(), 1);
        // A page that exists cannot be made execute-only either.
        let mut c = pt.cursor();
        c.map::<Size4K>(va.into(), pa.into(), F::READ).unwrap();
        assert_eq!(
            c.protect::<Size4K>(va.into(), F::EXECUTE),
            Err(ProtectError::InvalidFlags)
        );
        assert_eq!(
            c.protect_region(va.into(), 0x1000, F::EXECUTE),
            Err(ProtectError::InvalidFlags)
        );
        drop(c);
        assert_eq!(
            pt.query(va.into()).map(|(_, f, _)| f),
            Ok(norm::<PTE>(F::READ))
        );
    }
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn execute_only_leaves() {
    exec_only::<X64Meta, X64PTE>(true);
    exec_only::<Sv39Meta, Rv64PTE>(true);
    exec_only::<Sv48Meta, Rv64PTE>(true);
    exec_only::<La64Meta, LA64PTE>(true);
    // AArch64 sets VALID only for readable leaves.
    exec_only::<A64Meta, A64PTE>(false);
}

/// A zeroed table frame from the tracking handler.
fn frame() -> PhysAddr {
    let pa = TrackingHandler::alloc_frame().unwrap();
    // SAFETY: a fresh 4K frame from the handler, reachable at `phys_to_virt(pa)`
    // (host memory) and used by nothing else yet.
    unsafe { core::ptr::write_bytes(TrackingHandler::phys_to_virt(pa).as_mut_ptr(), 0, 0x1000) };
    pa
}

/// Writes the raw word `bits` into entry `idx` of the table frame `table`.
fn poke(table: PhysAddr, idx: usize, bits: u64) {
    let p = TrackingHandler::phys_to_virt(table)
        .as_mut_ptr()
        .cast::<u64>();
    // SAFETY: `table` is a live 4K frame from `frame()`, `idx < 512`, and no
    // page table is using it while the test builds it.
    unsafe { p.add(idx).write(bits) };
}

/// An adopted x86_64 table with foreign non-present entries on the path of
/// 0x1000 (a 4K entry) and of 2M..4M (a 2M entry): neither translates,
/// neither is followed, a map over either is refused, an unmap clears them.
#[test]
fn foreign_non_present_entries() {
    testing::reset();
    let (root, t2, t1, t0) = (frame(), frame(), frame(), frame());
    poke(root, 0, X64PTE::new_table(t2).bits() as u64);
    poke(t2, 0, X64PTE::new_table(t1).bits() as u64);
    poke(t1, 0, X64PTE::new_table(t0).bits() as u64);
    poke(t0, 1, 0x5000); // an address, present bit clear
    poke(t1, 1, 0x6000); // the same, one level up
    // SAFETY: every table is a frame from `TrackingHandler` in the X64PTE format
    // with the 4-level geometry, owned by nothing else; the table frees them.
    let mut pt = unsafe { PageTable::<X64Meta, X64PTE, TrackingHandler>::from_root(root) };
    assert_eq!(pt.table_frames(), 4);
    for va in [0x1000usize, M2, M2 + 0x1000] {
        assert_eq!(
            pt.query(va.into()).err(),
            Some(QueryError::NotMapped),
            "{va:#x}"
        );
    }
    let mut n = 0;
    pt.for_each_leaf(|_| n += 1);
    assert_eq!(n, 0);
    let rw = F::READ | F::WRITE;
    let mut c = pt.cursor();
    assert_eq!(
        c.map::<Size4K>(0x1000.into(), 0x7000.into(), rw),
        Err(MapError::AlreadyMapped)
    );
    assert_eq!(
        c.map_region(0x1000.into(), 0x7000.into(), 0x1000, rw, false),
        Err(MapError::AlreadyMapped)
    );
    assert_eq!(
        c.map::<Size2M>(M2.into(), 0.into(), rw),
        Err(MapError::AlreadyMapped)
    );
    assert_eq!(
        c.map::<Size4K>((M2 + 0x1000).into(), 0x7000.into(), rw),
        Err(MapError::AlreadyMapped)
    );
    // A neighbour of the foreign 4K entry maps fine.
    c.map::<Size4K>(0x2000.into(), 0x7000.into(), rw).unwrap();
    c.protect_region(0.into(), 2 * M2, F::READ).unwrap();
    // Clearing the range removes the foreign entries and reports one leaf.
    let mut removed = Vec::new();
    c.unmap_region(0.into(), 2 * M2, |l| removed.push(l.vaddr.as_usize()))
        .unwrap();
    assert_eq!(removed, [0x2000]);
    drop(c);
    assert_eq!(pt.table_frames(), 1);
    let mut c = pt.cursor();
    c.map::<Size4K>(0x1000.into(), 0x7000.into(), rw).unwrap();
    c.map::<Size2M>(M2.into(), 0.into(), rw).unwrap();
    drop(c);
    assert_eq!(
        pt.query(0x1000.into()).map(|(p, _, _)| p.as_usize()),
        Ok(0x7000)
    );
    assert_eq!(
        pt.query((M2 + 8).into()).map(|(p, _, _)| p.as_usize()),
        Ok(8)
    );
    drop(pt);
    testing::assert_no_leaks();
}
