//! Root layouts: a table with a root per half (AArch64's TTBR0/TTBR1) keeps each
//! half in its own root, so an address of one half that indexes the other half's
//! root slots finds nothing; reads walk each half from its own root; frames are
//! accounted and freed for both roots. Format: x86_64 entries (the layout is
//! format-independent) with the 48-bit geometry.

mod common;

use common::*;
use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::{GenericPTE, MappingFlags as F, PagingHandler};
use paging::{LeafSize, MapError, PageTable, RootLayout, Size2M, Size4K};
use testing::TrackingHandler;

type Pt = PageTable<X64Meta, X64PTE, TrackingHandler>;

const UPPER: usize = 0xffff_8000_0000_0000;
const M2: usize = 2 << 20;

fn va(x: usize) -> VirtAddr {
    VirtAddr::from(x)
}
fn pa(x: usize) -> PhysAddr {
    PhysAddr::from(x)
}

/// The 512 root entries of the table at `root`, by value.
fn root_entries(root: PhysAddr) -> Vec<X64PTE> {
    let base = TrackingHandler::phys_to_virt(root)
        .as_ptr()
        .cast::<X64PTE>();
    // SAFETY: `root` is a live root frame of a table this test owns (4K, 512
    // eight-byte entries), reachable through the tracking handler's window; the
    // entries are copied out and the table is not changed meanwhile.
    (0..512)
        .map(|i| unsafe { base.add(i).read_volatile() })
        .collect()
}

#[test]
fn each_half_lives_in_its_own_root() {
    testing::reset();
    {
        let mut pt = Pt::try_new_with(RootLayout::PerHalf).unwrap();
        assert_eq!(pt.layout(), RootLayout::PerHalf);
        let roots = pt.roots();
        assert_ne!(roots.lower, roots.upper);
        assert_eq!(pt.root_paddr(), roots.lower);
        assert_eq!(pt.table_frames(), 2);
        let mut c = pt.cursor();
        c.map::<Size4K>(va(0x10_0000_0000), pa(0x5000), F::READ | F::WRITE)
            .unwrap();
        c.map::<Size2M>(
            va(UPPER + 0x4000_0000),
            pa(0x4000_0000),
            F::READ | F::EXECUTE,
        )
        .unwrap();
        drop(c);

        let lower = root_entries(roots.lower);
        let upper = root_entries(roots.upper);
        assert!(
            lower[256..].iter().all(|e| e.is_unused()),
            "lower root holds an upper slot"
        );
        assert!(
            upper[..256].iter().all(|e| e.is_unused()),
            "upper root holds a lower slot"
        );
        assert!(!lower[0].is_unused() && !upper[256].is_unused());

        // Lookups pick the half's root; the alias addresses find nothing.
        assert_eq!(pt.query(va(0x10_0000_0000)).unwrap().0, pa(0x5000));
        assert_eq!(
            pt.query(va(UPPER + 0x4000_0000 + 0x123)).unwrap(),
            (pa(0x4000_0123), F::READ | F::EXECUTE, LeafSize::Size2M)
        );
        assert!(pt.query(va(UPPER + 0x10_0000_0000)).is_err());

        // Leaves in address order, each from its own root.
        let mut leaves = Vec::new();
        pt.for_each_leaf(|l| leaves.push((l.vaddr.as_usize(), l.paddr.as_usize())));
        assert_eq!(
            leaves,
            [(0x10_0000_0000, 0x5000), (UPPER + 0x4000_0000, 0x4000_0000)]
        );
        // Three tables below each root, plus the two roots.
        assert_eq!(pt.table_frames(), 2 + 3 + 2);

        // Emptying both halves reclaims every table but the two roots.
        let mut c = pt.cursor();
        c.unmap_region(va(0), 1 << 47, |_| ()).unwrap();
        c.unmap_region(va(UPPER), 1 << 47, |_| ()).unwrap();
        drop(c);
        assert_eq!(pt.table_frames(), 2);
    }
    testing::assert_no_leaks();
}

#[test]
fn a_table_with_two_roots_fails_whole_when_the_second_root_is_missing() {
    testing::reset();
    testing::set_limit(Some(1));
    assert!(matches!(
        Pt::try_new_with(RootLayout::PerHalf),
        Err(MapError::NoMemory)
    ));
    testing::set_limit(None);
    testing::assert_no_leaks();
}

#[test]
fn a_shared_upper_root_is_neither_changed_nor_freed() {
    testing::reset();
    let mut kernel = Pt::try_new_with(RootLayout::PerHalf).unwrap();
    kernel
        .cursor()
        .map::<Size2M>(va(UPPER + M2), pa(M2), F::READ | F::WRITE)
        .unwrap();
    {
        let mut user = Pt::try_new_with(RootLayout::PerHalf).unwrap();
        user.cursor()
            .map::<Size4K>(va(0x1000), pa(0x9000), F::READ)
            .unwrap();
        let before = testing::frames_in_use();
        // SAFETY: `kernel` outlives `user` and its upper half is not unmapped
        // meanwhile; `user` is active nowhere.
        unsafe { user.cursor().copy_kernel_half(&kernel) }.unwrap();
        assert_eq!(user.roots().upper, kernel.roots().upper);
        // The user table's own upper root is gone, freed only after the flush.
        assert_eq!(testing::frames_in_use(), before - 1);
        assert_eq!(frames_at_last_flush(), before);
        assert_eq!(user.query(va(UPPER + M2 + 5)).unwrap().0, pa(M2 + 5));
        assert_eq!(
            user.cursor()
                .map::<Size4K>(va(UPPER + 8 * M2), pa(0), F::READ),
            Err(MapError::Shared)
        );
        // The user table owns its lower root and the three tables under it.
        assert_eq!(user.table_frames(), 4);
        let single = Pt::try_new().unwrap();
        // SAFETY: as above; the call fails before sharing anything.
        let mixed = unsafe { user.cursor().copy_kernel_half(&single) };
        assert_eq!(mixed, Err(MapError::Shared));
    }
    assert_eq!(kernel.query(va(UPPER + M2 + 5)).unwrap().0, pa(M2 + 5));
    drop(kernel);
    testing::assert_no_leaks();
}
