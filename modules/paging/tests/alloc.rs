//! The scenario of page_table_multiarch's own `tests/alloc_tests.rs`, on our
//! table and on every PTE format: seeded random 4K maps at random (canonical)
//! addresses mixed with unmaps of mapped pages, then the table is dropped
//! with pages still mapped and no table frame may be left allocated. On top
//! of the original, every step is checked through `query` (a map is visible at
//! once, a second map of the page is refused, an unmapped page is gone) and
//! the leaves are compared with the set of mapped pages along the way.
//!
//! Also the LoongArch64 case that found the bug this file pins: LA64 table
//! links carry no present bit, so a table that decided "is this a link?" by
//! `is_present` lost track of its own tables.

mod common;

use std::collections::BTreeMap;

use common::*;
use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::{aarch64::A64PTE, loongarch64::LA64PTE, riscv::Rv64PTE, x86_64::X64PTE};
use page_table_multiarch::{GenericPTE, MappingFlags, PagingMetaData};
use paging::{Leaf, LeafSize, MapError, PageTable, QueryError, RootLayout, Size4K, UnmapError};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use testing::TrackingHandler;

type Table<M, PTE> = PageTable<M, PTE, TrackingHandler>;

/// Operations per run, as in the original.
const STEPS: usize = 2048;

fn rw() -> MappingFlags {
    MappingFlags::READ | MappingFlags::WRITE
}

/// A random page-aligned address of `M::VA_MAX_BITS` bits (as the original
/// draws them), made canonical: sign-extended from its top bit, so the upper
/// half of every format is exercised too.
fn canonical_va<M: PagingMetaData>(rng: &mut SmallRng) -> usize {
    let shift = usize::BITS as usize - M::VA_MAX_BITS;
    let va = rng.random::<u64>() as usize & (usize::MAX >> shift) & !(PAGE - 1);
    let va = ((va << shift) as isize >> shift) as usize;
    assert!(M::vaddr_is_valid(va), "{va:#x} is not canonical");
    va
}

/// A random page-aligned physical address the format can hold.
fn random_pa<M: PagingMetaData>(rng: &mut SmallRng) -> usize {
    rng.random::<u64>() as usize & ((1usize << M::PA_MAX_BITS) - 1) & !(PAGE - 1)
}

/// Every leaf of `pt` as vaddr -> (paddr, flags); every one must be 4K.
fn leaves<M, PTE>(pt: &Table<M, PTE>) -> BTreeMap<usize, (usize, MappingFlags)>
where
    M: PagingMetaData<VirtAddr = VirtAddr>,
    PTE: GenericPTE,
{
    let mut out = BTreeMap::new();
    pt.for_each_leaf(|l: Leaf<VirtAddr>| {
        assert_eq!(
            l.size,
            LeafSize::Size4K,
            "leaf at {:#x}",
            l.vaddr.as_usize()
        );
        out.insert(l.vaddr.as_usize(), (l.paddr.as_usize(), l.flags));
    });
    out
}

/// Root frames of a table with `layout`.
fn roots(layout: RootLayout) -> usize {
    match layout {
        RootLayout::Single => 1,
        RootLayout::PerHalf => 2,
    }
}

/// The original scenario with checks at every step, on a table with
/// `layout`. With `unmap_all`, the pages left at the end are unmapped first
/// and only the roots may remain; otherwise the table is dropped with them
/// mapped (as the original does).
fn random_maps<M, PTE>(seed: u64, unmap_all: bool, layout: RootLayout)
where
    M: PagingMetaData<VirtAddr = VirtAddr>,
    PTE: GenericPTE,
{
    testing::reset();
    let flags = norm::<PTE>(rw());
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut pt = Table::<M, PTE>::try_new_with(layout).unwrap();
    // Mapped pages, vaddr -> paddr, and the same keys in a Vec to pick from.
    let mut pages: BTreeMap<usize, usize> = BTreeMap::new();
    let mut order: Vec<usize> = Vec::new();
    for step in 0..STEPS {
        if rng.random_ratio(3, 4) || order.is_empty() {
            let va = loop {
                let va = canonical_va::<M>(&mut rng);
                if !pages.contains_key(&va) {
                    break va;
                }
            };
            let pa = random_pa::<M>(&mut rng);
            let mut c = pt.cursor();
            assert_eq!(
                c.map::<Size4K>(va.into(), pa.into(), rw()),
                Ok(()),
                "step {step}: map {va:#x}"
            );
            assert_eq!(
                c.map::<Size4K>(va.into(), PhysAddr::from(PAGE), rw()),
                Err(MapError::AlreadyMapped),
                "step {step}: second map of {va:#x}"
            );
            drop(c);
            assert_eq!(
                pt.query(va.into()).map(|(p, f, s)| (p.as_usize(), f, s)),
                Ok((pa, flags, LeafSize::Size4K)),
                "step {step}: query {va:#x}"
            );
            pages.insert(va, pa);
            order.push(va);
        } else {
            let va = order.swap_remove(rng.random_range(0..order.len()));
            let pa = pages.remove(&va).unwrap();
            let leaf = pt.cursor().unmap::<Size4K>(va.into());
            assert_eq!(
                leaf.map(|l| (l.vaddr.as_usize(), l.paddr.as_usize(), l.size, l.flags)),
                Ok((va, pa, LeafSize::Size4K, flags)),
                "step {step}: unmap {va:#x}"
            );
            assert_eq!(
                pt.query(va.into()).err(),
                Some(QueryError::NotMapped),
                "step {step}: {va:#x} still mapped"
            );
            assert_eq!(
                pt.cursor().unmap::<Size4K>(va.into()).err(),
                Some(UnmapError::NotMapped),
                "step {step}: second unmap of {va:#x}"
            );
        }
        if step % 256 == 255 {
            let want: BTreeMap<_, _> = pages.iter().map(|(&v, &p)| (v, (p, flags))).collect();
            assert_eq!(leaves(&pt), want, "step {step}: leaves");
        }
    }
    assert!(pt.table_frames() > roots(layout));
    if unmap_all {
        let mut c = pt.cursor();
        for &va in &order {
            c.unmap::<Size4K>(va.into()).unwrap();
        }
        drop(c);
        assert!(leaves(&pt).is_empty());
        assert_eq!(
            pt.table_frames(),
            roots(layout),
            "empty tables were not reclaimed"
        );
        assert_eq!(testing::frames_in_use(), roots(layout));
    } else {
        assert_eq!(testing::frames_in_use(), pt.table_frames());
    }
    drop(pt);
    testing::assert_no_leaks();
}

/// One 4K page at 0x1000 (the LA64 case, on any format): it is mapped
/// at once, a second map is refused, exactly the tables on its path exist and
/// are freed by the drop; unmapping it frees them too.
fn one_page<M, PTE>()
where
    M: PagingMetaData<VirtAddr = VirtAddr>,
    PTE: GenericPTE,
{
    testing::reset();
    let (va, pa) = (0x1000usize, 0x8000_0000usize);
    let flags = norm::<PTE>(rw());
    let mut pt = Table::<M, PTE>::try_new().unwrap();
    assert_eq!(
        pt.cursor().map::<Size4K>(va.into(), pa.into(), rw()),
        Ok(())
    );
    assert_eq!(
        pt.query(va.into()).map(|(p, f, s)| (p.as_usize(), f, s)),
        Ok((pa, flags, LeafSize::Size4K))
    );
    assert_eq!(
        pt.query((va + 0x234).into()).map(|(p, _, _)| p.as_usize()),
        Ok(pa + 0x234)
    );
    assert_eq!(
        pt.query((va + PAGE).into()).err(),
        Some(QueryError::NotMapped)
    );
    assert_eq!(
        pt.cursor().map::<Size4K>(va.into(), pa.into(), rw()),
        Err(MapError::AlreadyMapped)
    );
    assert_eq!(
        pt.cursor()
            .map_region(va.into(), pa.into(), PAGE, rw(), false),
        Err(MapError::AlreadyMapped)
    );
    // The root and one table per lower level.
    assert_eq!(pt.table_frames(), M::LEVELS);
    assert_eq!(testing::frames_in_use(), M::LEVELS);
    assert_eq!(
        leaves(&pt).into_iter().collect::<Vec<_>>(),
        [(va, (pa, flags))]
    );
    drop(pt);
    testing::assert_no_leaks();

    // The same page unmapped: its tables are reclaimed before the drop.
    let mut pt = Table::<M, PTE>::try_new().unwrap();
    pt.cursor()
        .map::<Size4K>(va.into(), pa.into(), rw())
        .unwrap();
    let leaf = pt.cursor().unmap::<Size4K>(va.into()).unwrap();
    assert_eq!((leaf.vaddr.as_usize(), leaf.paddr.as_usize()), (va, pa));
    assert_eq!(pt.query(va.into()).err(), Some(QueryError::NotMapped));
    assert_eq!(pt.table_frames(), 1);
    assert_eq!(testing::frames_in_use(), 1);
    // And it can be mapped again.
    assert_eq!(
        pt.cursor().map::<Size4K>(va.into(), pa.into(), rw()),
        Ok(())
    );
    drop(pt);
    testing::assert_no_leaks();
}

#[test]
fn loongarch64_map_query_remap_drop() {
    one_page::<La64Meta, LA64PTE>();
}

#[test]
fn one_page_every_other_format() {
    one_page::<X64Meta, X64PTE>();
    one_page::<Sv39Meta, Rv64PTE>();
    one_page::<Sv48Meta, Rv64PTE>();
    one_page::<A64Meta, A64PTE>();
}

#[test]
fn random_maps_x86_64() {
    random_maps::<X64Meta, X64PTE>(1234, false, RootLayout::Single);
    random_maps::<X64Meta, X64PTE>(4321, true, RootLayout::Single);
}

#[test]
fn random_maps_riscv_sv39() {
    random_maps::<Sv39Meta, Rv64PTE>(1234, false, RootLayout::Single);
    random_maps::<Sv39Meta, Rv64PTE>(4321, true, RootLayout::Single);
}

#[test]
fn random_maps_riscv_sv48() {
    random_maps::<Sv48Meta, Rv64PTE>(1234, false, RootLayout::Single);
    random_maps::<Sv48Meta, Rv64PTE>(4321, true, RootLayout::Single);
}

#[test]
fn random_maps_aarch64() {
    random_maps::<A64Meta, A64PTE>(1234, false, RootLayout::Single);
    random_maps::<A64Meta, A64PTE>(4321, true, RootLayout::Single);
    // As the hardware uses it: a root per half (TTBR0_EL1 / TTBR1_EL1).
    random_maps::<A64Meta, A64PTE>(1234, false, RootLayout::PerHalf);
    random_maps::<A64Meta, A64PTE>(4321, true, RootLayout::PerHalf);
}

#[test]
fn random_maps_loongarch64() {
    random_maps::<La64Meta, LA64PTE>(1234, false, RootLayout::Single);
    random_maps::<La64Meta, LA64PTE>(4321, true, RootLayout::Single);
    // A root per half (PGDL / PGDH).
    random_maps::<La64Meta, LA64PTE>(1234, false, RootLayout::PerHalf);
    random_maps::<La64Meta, LA64PTE>(4321, true, RootLayout::PerHalf);
}
