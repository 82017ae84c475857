//! App-facing protection and mmap flags, and their conversion to page-table flags.

use axerrno::AxError;
use hal::Access;
use page_table_entry::MappingFlags;
use paging::LeafSize;

bitflags::bitflags! {
    /// Protection requested by an app (`PROT_*`). The empty set is `PROT_NONE`.
    ///
    /// Unlike Linux, `WRITE` or `EXEC` without `READ` is refused with
    /// [`AxError::InvalidInput`]: none of the supported page-table formats can
    /// express write-only or execute-only pages uniformly, and silently adding
    /// `READ` would grant more than was asked for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Prot: u32 {
        /// Pages may be read.
        const READ = 1 << 0;
        /// Pages may be written (requires `READ`).
        const WRITE = 1 << 1;
        /// Pages may be executed (requires `READ`).
        const EXEC = 1 << 2;
    }
}

bitflags::bitflags! {
    /// Placement and population flags of [`crate::AddrSpace::mmap`] (`MAP_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct MmapFlags: u32 {
        /// `MAP_SHARED`: every mapping of the memory sees every write (an
        /// object's pages; for [`crate::AddrSpace::mmap`], a new anonymous
        /// object). Not with `PRIVATE`, `CONTIGUOUS` or a huge flag.
        const SHARED = 0x01;
        /// `MAP_PRIVATE`: writes are private to the mapping (copy-on-write
        /// for an object's pages). The default of
        /// [`crate::AddrSpace::mmap`]; one of `SHARED` and `PRIVATE` is
        /// required for [`crate::AddrSpace::mmap_object`].
        const PRIVATE = 0x02;
        /// Map exactly at `addr`, replacing whatever is mapped there.
        const FIXED = 0x10;
        /// Map exactly at `addr`; fail with `AlreadyExists` if anything is mapped
        /// there. Takes precedence over `FIXED` when both are given.
        const FIXED_NOREPLACE = 0x10_0000;
        /// Allocate and map every page now instead of on first touch.
        const POPULATE = 0x8000;
        /// Tessera-specific (no Linux equivalent; bit 25 is unused by Linux):
        /// back the mapping with one physically contiguous run of zeroed frames
        /// owned by the area (e.g. a DMA buffer), allocated and mapped now
        /// (implies `POPULATE`). [`crate::AddrSpace::translate`] gives the
        /// physical address of each page. At most
        /// [`crate::CONTIGUOUS_MAX`] bytes.
        const CONTIGUOUS = 1 << 25;
        /// Tessera-specific (Linux spells it `MAP_HUGETLB | MAP_HUGE_2MB` and
        /// takes the pages from a reserved pool): map with 2 MiB pages. The
        /// length must be a multiple of 2 MiB and a `FIXED*` address 2 MiB
        /// aligned (else `InvalidInput`); without `FIXED*` the chosen address
        /// is 2 MiB aligned. Each 2 MiB block gets one zeroed, aligned 2 MiB
        /// run of frames (at the first touch, or now with `POPULATE`); when
        /// no such run is free the block (lazy: the faulting page) gets 4K
        /// frames instead, counted in `MmStats::huge_fallbacks`. A partial
        /// `munmap`/`mprotect` splits the huge page into 4K pages that keep
        /// their frames and data. Not with `CONTIGUOUS` or `HUGE_1G`.
        const HUGE_2M = 1 << 26;
        /// Like [`MmapFlags::HUGE_2M`] with 1 GiB pages (and alignment).
        const HUGE_1G = 1 << 27;
    }
}

impl MmapFlags {
    /// Checks for unknown bits and for incompatible combinations
    /// (`HUGE_2M` with `HUGE_1G`, a huge flag with `CONTIGUOUS`, `SHARED`
    /// with `PRIVATE`, `SHARED` with `CONTIGUOUS` or a huge flag):
    /// [`AxError::InvalidInput`].
    pub fn validate(self) -> Result<Self, AxError> {
        if self.bits() & !MmapFlags::all().bits() != 0 {
            return Err(AxError::InvalidInput);
        }
        let huge = self.intersection(MmapFlags::HUGE_2M | MmapFlags::HUGE_1G);
        let shared = self.contains(MmapFlags::SHARED);
        if huge.bits().count_ones() > 1
            || (!huge.is_empty() && self.contains(MmapFlags::CONTIGUOUS))
            || (shared && self.contains(MmapFlags::PRIVATE))
            || (shared && (!huge.is_empty() || self.contains(MmapFlags::CONTIGUOUS)))
        {
            return Err(AxError::InvalidInput);
        }
        Ok(self)
    }

    /// The page size the flags ask for (`Size4K` without a huge flag).
    pub fn page_size(self) -> LeafSize {
        if self.contains(MmapFlags::HUGE_1G) {
            LeafSize::Size1G
        } else if self.contains(MmapFlags::HUGE_2M) {
            LeafSize::Size2M
        } else {
            LeafSize::Size4K
        }
    }
}

impl Prot {
    /// Converts to page-table flags.
    ///
    /// Returns [`AxError::InvalidInput`] for unknown bits and for `WRITE` or
    /// `EXEC` without `READ`.
    pub fn to_mapping_flags(self) -> Result<MappingFlags, AxError> {
        if self.bits() & !Prot::all().bits() != 0 {
            return Err(AxError::InvalidInput);
        }
        if self.intersects(Prot::WRITE | Prot::EXEC) && !self.contains(Prot::READ) {
            return Err(AxError::InvalidInput);
        }
        let mut f = MappingFlags::empty();
        if self.contains(Prot::READ) {
            f |= MappingFlags::READ;
        }
        if self.contains(Prot::WRITE) {
            f |= MappingFlags::WRITE;
        }
        if self.contains(Prot::EXEC) {
            f |= MappingFlags::EXECUTE;
        }
        Ok(f)
    }
}

/// The access bits of a flag set.
pub(crate) const ACCESS_BITS: MappingFlags = MappingFlags::READ
    .union(MappingFlags::WRITE)
    .union(MappingFlags::EXECUTE);

/// Whether pages with these flags can be accessed at all. Flags without any
/// access bit are never written into a PTE (on riscv such a PTE would be invalid).
#[inline]
pub(crate) fn accessible(flags: MappingFlags) -> bool {
    flags.intersects(ACCESS_BITS)
}

/// Whether `flags` allow `access`.
#[inline]
pub(crate) fn allows(flags: MappingFlags, access: Access) -> bool {
    match access {
        Access::Read => flags.contains(MappingFlags::READ),
        Access::Write => flags.contains(MappingFlags::WRITE),
        Access::Execute => flags.contains(MappingFlags::EXECUTE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prot_conversion() {
        assert_eq!(Prot::empty().to_mapping_flags(), Ok(MappingFlags::empty()));
        assert_eq!(
            (Prot::READ | Prot::WRITE).to_mapping_flags(),
            Ok(MappingFlags::READ | MappingFlags::WRITE)
        );
        assert_eq!(
            (Prot::READ | Prot::EXEC).to_mapping_flags(),
            Ok(MappingFlags::READ | MappingFlags::EXECUTE)
        );
        assert_eq!(Prot::WRITE.to_mapping_flags(), Err(AxError::InvalidInput));
        assert_eq!(Prot::EXEC.to_mapping_flags(), Err(AxError::InvalidInput));
        assert_eq!(
            Prot::from_bits_retain(8).to_mapping_flags(),
            Err(AxError::InvalidInput)
        );
    }

    #[test]
    fn access_checks() {
        let rw = MappingFlags::READ | MappingFlags::WRITE;
        assert!(allows(rw, Access::Read) && allows(rw, Access::Write));
        assert!(!allows(rw, Access::Execute));
        assert!(!accessible(MappingFlags::DEVICE));
        assert!(accessible(MappingFlags::READ));
    }
}
