//! A read-only audit of a table's leaves: W^X and the NULL page
//! ([`PageTable::audit`]).
//!
//! Built on [`PageTable::for_each_leaf`], so it sees every leaf the hardware
//! can reach and nothing else: each half from its own root (crate invariant
//! 6), upper-half addresses sign-extended. It checks what the MMU will do,
//! independent of any bookkeeping the caller keeps beside the table.

use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use super::PageTable;

/// What [`PageTable::audit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Audit {
    /// Present leaves (pages and huge blocks).
    pub leaves: usize,
    /// Leaves that are both writable and executable.
    pub writable_and_executable: usize,
    /// The first such leaf, in the order of [`PageTable::for_each_leaf`]:
    /// (virtual address, flags).
    pub first_violation: Option<(usize, MappingFlags)>,
    /// Whether some leaf maps virtual address 0.
    pub null_mapped: bool,
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> PageTable<M, PTE, H> {
    /// Audits every present leaf: counts them, counts the writable and
    /// executable ones (and remembers the first), and says whether the NULL
    /// page is mapped. Reads only; costs one walk of the present tables.
    pub fn audit(&self) -> Audit {
        let mut out = Audit::default();
        self.for_each_leaf(|leaf| {
            let va: usize = leaf.vaddr.into();
            out.leaves += 1;
            if leaf
                .flags
                .contains(MappingFlags::WRITE | MappingFlags::EXECUTE)
            {
                out.writable_and_executable += 1;
                out.first_violation.get_or_insert((va, leaf.flags));
            }
            // A leaf containing address 0 starts there.
            out.null_mapped |= va == 0;
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use page_table_entry::x86_64::X64PTE;
    use page_table_multiarch::x86_64::X64PagingMetaData;
    use testing::TrackingHandler;

    use crate::{MappingFlags, NoFlush, PageTable, PagingHandler, RootLayout, Size2M, Size4K};

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
            let a = pt.audit();
            assert_eq!(
                (a.leaves, a.writable_and_executable, a.null_mapped),
                (2, 0, false)
            );
            assert_eq!(a.first_violation, None);

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
            let a = pt.audit();
            assert_eq!(
                (a.leaves, a.writable_and_executable, a.null_mapped),
                (4, 1, true)
            );
            assert_eq!(
                a.first_violation,
                Some((0xffff_ffff_ffe0_0000, rw | MappingFlags::EXECUTE))
            );
            drop(pt);
            TrackingHandler::dealloc_frame(frame);
        }
        testing::assert_no_leaks();
    }

    #[test]
    fn walks_each_half_from_its_own_root() {
        testing::reset();
        {
            let mut pt = Pt::try_new_with(RootLayout::PerHalf).unwrap();
            let rwx = MappingFlags::READ | MappingFlags::WRITE | MappingFlags::EXECUTE;
            let mut c = pt.cursor();
            c.map::<Size4K>(0x1000.into(), 0x5000.into(), MappingFlags::READ)
                .unwrap();
            c.map::<Size4K>(0xffff_8000_0000_0000.into(), 0x6000.into(), rwx)
                .unwrap();
            drop(c);
            let a = pt.audit();
            assert_eq!((a.leaves, a.writable_and_executable), (2, 1));
            assert_eq!(a.first_violation, Some((0xffff_8000_0000_0000, rwx)));
            assert!(!a.null_mapped);
        }
        testing::assert_no_leaks();
    }
}
