//! Read-only descriptions of areas, for fault reports and the area dump.

use core::fmt;

use memory_addr::{PhysAddr, VirtAddr};
use page_table_entry::MappingFlags;
use paging::LeafSize;

/// How an allocated area gets its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Populate {
    /// Every page got a zeroed frame when the area was mapped.
    Eager,
    /// Pages get a zeroed frame on first touch (page fault).
    Lazy,
}

/// What backs an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaKind {
    /// A fixed physical range: `va = pa + va_minus_pa` (wrapping).
    Linear {
        /// `va - pa` (wrapping): added to a physical address of the area,
        /// gives its virtual address.
        va_minus_pa: usize,
    },
    /// Frames allocated by the address space and owned by it.
    Alloc {
        /// When the frames are allocated.
        populate: Populate,
    },
    /// Frames allocated by the address space in huge pages where possible
    /// ([`crate::MmapFlags::HUGE_2M`], [`crate::MmapFlags::HUGE_1G`]): each
    /// aligned `page_size` block of the area is one zeroed aligned run mapped by
    /// one leaf, unless no such run was free (then 4K frames) or the block was
    /// split by a partial `munmap`/`mprotect` (then 4K pages).
    HugeAlloc {
        /// When the frames are allocated.
        populate: Populate,
        /// The huge page size asked for (`Size2M` or `Size1G`).
        page_size: LeafSize,
    },
    /// A physically contiguous run of frames owned by the area
    /// ([`crate::MmapFlags::CONTIGUOUS`]): page `start + i` maps `start_frame + i`.
    Contiguous {
        /// The frame of the area's first page.
        start_frame: PhysAddr,
    },
    /// The pages of a memory object ([`crate::MemObject`]): shared (every
    /// mapping sees every write) or private (copy-on-write).
    Object {
        /// `MAP_SHARED` (else `MAP_PRIVATE`).
        shared: bool,
        /// The object offset of the area's first page.
        offset: usize,
    },
    /// A backend defined outside this crate, by its name (a reference to a
    /// `&'static str`, e.g. `&"pattern"`, so that the description stays two
    /// words: area lookups copy it).
    Other {
        /// What the backend calls itself.
        name: &'static &'static str,
    },
}

/// A copy of one area's description.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AreaInfo {
    /// First address (page aligned).
    pub start: VirtAddr,
    /// One past the last address (page aligned).
    pub end: VirtAddr,
    /// The area's current flags (what faults are checked against).
    pub flags: MappingFlags,
    /// What backs it.
    pub kind: AreaKind,
}

impl AreaInfo {
    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.end.as_usize() - self.start.as_usize()
    }
}

impl fmt::Display for AreaInfo {
    /// `[0x1000000000, 0x1000040000) rw- alloc(lazy)`,
    /// `[..) r-x linear(+0xffffffc000000000)`, `[..) rw- device linear(+0x..)`,
    /// `[..) rw- contiguous(@0x80400000)`, `[..) rw- alloc(lazy, 2M)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |flag, c| if self.flags.contains(flag) { c } else { '-' };
        write!(
            f,
            "[{:#x}, {:#x}) {}{}{}",
            self.start.as_usize(),
            self.end.as_usize(),
            bit(MappingFlags::READ, 'r'),
            bit(MappingFlags::WRITE, 'w'),
            bit(MappingFlags::EXECUTE, 'x'),
        )?;
        if self.flags.contains(MappingFlags::DEVICE) {
            f.write_str(" device")?;
        }
        match self.kind {
            AreaKind::Linear { va_minus_pa } => write!(f, " linear(+{va_minus_pa:#x})"),
            AreaKind::Alloc {
                populate: Populate::Lazy,
            } => f.write_str(" alloc(lazy)"),
            AreaKind::Alloc {
                populate: Populate::Eager,
            } => f.write_str(" alloc(eager)"),
            AreaKind::HugeAlloc {
                populate,
                page_size,
            } => {
                let mode = match populate {
                    Populate::Lazy => "lazy",
                    Populate::Eager => "eager",
                };
                let size = match page_size {
                    LeafSize::Size1G => "1G",
                    LeafSize::Size2M => "2M",
                    LeafSize::Size4K => "4K",
                };
                write!(f, " alloc({mode}, {size})")
            }
            AreaKind::Contiguous { start_frame } => {
                write!(f, " contiguous(@{:#x})", start_frame.as_usize())
            }
            AreaKind::Object { shared, offset } => {
                let how = if shared { "shared" } else { "private" };
                write!(f, " object({how}, +{offset:#x})")
            }
            AreaKind::Other { name } => write!(f, " {name}"),
        }
    }
}
