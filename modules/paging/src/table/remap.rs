//! Remapping one present 4K leaf in place: the entry is rewritten with a new
//! frame and flags by one write (what a copy-on-write fault needs: the page
//! gets its private copy without ever being absent, and without a table
//! allocation that could fail).
//!
//! Invariants kept here: only a present 4K leaf is rewritten; nothing is
//! allocated or unlinked; the old translation is noted as removed (every CPU
//! must flush it before the old frame may be reused); shared root slots are
//! never touched.

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use super::entry::{Kind, index, kind, leaf_flags_ok};
use super::{Cursor, Pt};
use crate::error::{PageError, ProtectError, RangeError};
use crate::size::{PageSize, Size4K};

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Cursor<'_, M, PTE, H> {
    /// Rewrites the 4K leaf at `vaddr` to map `paddr` with `flags`; returns
    /// the frame it mapped before. Fails, changing nothing, if `vaddr` is not
    /// a 4K-aligned address mapped by a 4K leaf (`NotMapped`,
    /// `SizeMismatch` for a huge leaf), `paddr` is not 4K aligned or the
    /// flags cannot be a leaf's (`NotAligned`, `InvalidFlags`), or the page lies in a shared
    /// root slot (`Shared`).
    pub fn remap_4k(
        &mut self,
        vaddr: M::VirtAddr,
        paddr: PhysAddr,
        flags: MappingFlags,
    ) -> Result<PhysAddr, ProtectError> {
        let va: usize = vaddr.into();
        let la = Pt::<M, PTE, H>::page_la::<Size4K>(va)?;
        if !paddr.as_usize().is_multiple_of(Size4K::SIZE) {
            return Err(RangeError::NotAligned.into());
        }
        if !leaf_flags_ok::<PTE>(flags) {
            return Err(ProtectError::InvalidFlags);
        }
        if self.pt.touches_shared(la, la + Size4K::SIZE) {
            return Err(ProtectError::Shared);
        }
        let mut table = self.pt.root_for(la);
        let mut h = Pt::<M, PTE, H>::TOP;
        loop {
            let pte = Pt::<M, PTE, H>::read(table, index(la, h));
            match kind(&pte, h) {
                Kind::Table if h > 0 => {
                    table = pte.paddr();
                    h -= 1;
                }
                Kind::Leaf if h == 0 => {
                    let old = pte.paddr();
                    Pt::<M, PTE, H>::write(table, index(la, 0), PTE::new_page(paddr, flags, false));
                    self.note_weakened(va);
                    return Ok(old);
                }
                Kind::Leaf => return Err(PageError::SizeMismatch.into()),
                _ => return Err(PageError::NotMapped.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use page_table_entry::x86_64::X64PTE;
    use page_table_multiarch::x86_64::X64PagingMetaData;
    use testing::TrackingHandler;

    use super::*;
    use crate::error::ProtectError;
    use crate::size::Size2M;

    type Pt = crate::PageTable<crate::NoFlush<X64PagingMetaData>, X64PTE, TrackingHandler>;

    #[test]
    fn rewrites_a_4k_leaf_in_place_and_refuses_the_rest() {
        testing::reset();
        {
            let mut pt = Pt::try_new().unwrap();
            let (r, rw) = (MappingFlags::READ, MappingFlags::READ | MappingFlags::WRITE);
            let mut c = pt.cursor();
            c.map::<Size4K>(0x1000.into(), 0x5000.into(), r).unwrap();
            c.map::<Size2M>(0x20_0000.into(), 0x40_0000.into(), r)
                .unwrap();
            drop(c);
            let tables = pt.table_frames();
            let mut c = pt.cursor();
            assert_eq!(
                c.remap_4k(0x1000.into(), 0x9000.into(), rw),
                Ok(PhysAddr::from(0x5000))
            );
            // A huge leaf, nothing mapped, bad arguments: nothing changes.
            assert_eq!(
                c.remap_4k(0x20_0000.into(), 0x9000.into(), rw),
                Err(ProtectError::SizeMismatch)
            );
            assert_eq!(
                c.remap_4k(0x2000.into(), 0x9000.into(), rw),
                Err(ProtectError::NotMapped)
            );
            assert_eq!(
                c.remap_4k(0x1000.into(), 0x9001.into(), rw),
                Err(ProtectError::NotAligned)
            );
            assert_eq!(
                c.remap_4k(0x1000.into(), 0x9000.into(), MappingFlags::empty()),
                Err(ProtectError::InvalidFlags)
            );
            drop(c);
            assert_eq!(
                pt.query(0x1000.into()),
                Ok((PhysAddr::from(0x9000), rw, crate::LeafSize::Size4K))
            );
            assert_eq!(
                pt.query(0x20_0000.into()),
                Ok((PhysAddr::from(0x40_0000), r, crate::LeafSize::Size2M))
            );
            assert_eq!(pt.table_frames(), tables, "nothing allocated or freed");
        }
        testing::assert_no_leaks();
    }
}
