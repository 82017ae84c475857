//! A read-only audit of a live page table: every leaf, checked for W^X and for a
//! mapping of the NULL page.
//!
//! It reads the hardware table directly (by value, through
//! `PagingHandler::phys_to_virt`), independent of the areas, so it checks what
//! the MMU will actually do rather than what the area list claims.

use core::marker::PhantomData;

use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};

const ENTRIES: usize = 512;

/// What the audit found.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Audit {
    /// Present leaf entries (pages and huge blocks).
    pub leaves: usize,
    /// Leaves that are both writable and executable.
    pub writable_and_executable: usize,
    /// The first such leaf: (virtual address, flags).
    pub first_violation: Option<(usize, MappingFlags)>,
    /// Whether some leaf maps virtual address 0.
    pub null_mapped: bool,
}

/// Walks the table rooted at `root` and audits every present leaf.
pub fn audit<M, PTE, H>(root: PhysAddr) -> Audit
where
    M: PagingMetaData,
    PTE: GenericPTE,
    H: PagingHandler,
{
    let mut out = Audit::default();
    Walker::<M, PTE, H>(PhantomData).table(root, 0, 0, &mut out);
    out
}

struct Walker<M, PTE, H>(PhantomData<(M, PTE, H)>);

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Walker<M, PTE, H> {
    fn table(&self, table: PhysAddr, level: usize, base: usize, out: &mut Audit) {
        let shift = 12 + 9 * (M::LEVELS - 1 - level);
        let ptr = H::phys_to_virt(table).as_ptr() as *const PTE;
        for idx in 0..ENTRIES {
            // SAFETY: `table` is a page-table frame of this table (the root, or the
            // target of a present non-leaf entry), reached through the handler's
            // physical window; entries are read by value.
            let pte = unsafe { ptr.add(idx).read_volatile() };
            if !pte.is_present() {
                continue;
            }
            let va = sign_extend::<M>(base | (idx << shift));
            if level + 1 < M::LEVELS && !pte.is_huge() {
                self.table(pte.paddr(), level + 1, va, out);
                continue;
            }
            out.leaves += 1;
            let flags = pte.flags();
            if flags.contains(MappingFlags::WRITE | MappingFlags::EXECUTE) {
                out.writable_and_executable += 1;
                out.first_violation.get_or_insert((va, flags));
            }
            if va == 0 {
                out.null_mapped = true;
            }
        }
    }
}

fn sign_extend<M: PagingMetaData>(va: usize) -> usize {
    let bits = M::VA_MAX_BITS;
    if va & (1 << (bits - 1)) != 0 {
        va | !((1usize << bits) - 1)
    } else {
        va
    }
}

/// `VirtAddr` form of the first violation, for reports.
pub fn first_violation_addr(a: &Audit) -> Option<VirtAddr> {
    a.first_violation.map(|(va, _)| VirtAddr::from(va))
}

#[cfg(test)]
mod tests {
    use super::*;
    use page_table_entry::x86_64::X64PTE;
    use page_table_multiarch::x86_64::X64PagingMetaData;
    use paging::{NoFlush, PageTable, Size2M, Size4K};
    use testing::TrackingHandler;

    type Pt = PageTable<NoFlush<X64PagingMetaData>, X64PTE, TrackingHandler>;

    #[test]
    fn finds_wx_leaves_and_null_in_both_halves() {
        testing::reset();
        {
            let mut pt = Pt::try_new().unwrap();
            let frame = TrackingHandler::alloc_frame().unwrap();
            let rw = MappingFlags::READ | MappingFlags::WRITE;
            let rx = MappingFlags::READ | MappingFlags::EXECUTE;
            let mut c = pt.cursor();
            c.map::<Size4K>(0x1000.into(), frame, rw).unwrap();
            c.map::<Size4K>(0xffff_8000_0000_0000.into(), frame, rx)
                .unwrap();
            drop(c);
            let a = audit::<X64PagingMetaData, X64PTE, TrackingHandler>(pt.root_paddr());
            assert_eq!(
                (a.leaves, a.writable_and_executable, a.null_mapped),
                (2, 0, false)
            );

            let mut c = pt.cursor();
            c.map::<Size4K>(0x0.into(), frame, MappingFlags::READ)
                .unwrap();
            c.map::<Size2M>(
                0xffff_ffff_ffe0_0000usize.into(),
                0x20_0000.into(),
                rw | MappingFlags::EXECUTE,
            )
            .unwrap();
            drop(c);
            let a = audit::<X64PagingMetaData, X64PTE, TrackingHandler>(pt.root_paddr());
            assert_eq!(
                (a.leaves, a.writable_and_executable, a.null_mapped),
                (4, 1, true)
            );
            assert_eq!(
                first_violation_addr(&a),
                Some(VirtAddr::from(0xffff_ffff_ffe0_0000usize))
            );
            TrackingHandler::dealloc_frame(frame);
        }
        testing::assert_no_leaks();
    }
}
