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

/// An [`AreaKind`] as two words, which a function returns in registers.
///
/// Area lookups ask an area's backend for its description through the
/// area box's per-type table (`backend/erased.rs`). An `AreaKind` returned
/// from there comes back through memory, written a field at a time, and
/// reading it back whole stalls store forwarding (about 6 ns per lookup on
/// the bench machine, a fifth of an in-cache lookup); two words come back
/// in two registers. Only [`PackedKind::pack`] makes one.
#[derive(Clone, Copy)]
pub(crate) struct PackedKind {
    /// The variant in the low byte; small fields above it.
    tag: usize,
    /// The variant's word (or the `Other` name's address).
    word: *const (),
}

const LINEAR: usize = 0;
const ALLOC: usize = 1;
const HUGE_ALLOC: usize = 2;
const CONTIGUOUS: usize = 3;
const OBJECT: usize = 4;
const OTHER: usize = 5;
/// The bit above the tag byte that says `Populate::Eager` or `shared`.
const FLAG: usize = 1 << 8;

impl PackedKind {
    /// `kind`, packed.
    #[inline(always)]
    pub(crate) fn pack(kind: AreaKind) -> Self {
        let flag = |b: bool| if b { FLAG } else { 0 };
        let (tag, word) = match kind {
            AreaKind::Linear { va_minus_pa } => (LINEAR, va_minus_pa),
            AreaKind::Alloc { populate } => (ALLOC | flag(populate == Populate::Eager), 0),
            AreaKind::HugeAlloc {
                populate,
                page_size,
            } => (
                HUGE_ALLOC | flag(populate == Populate::Eager),
                page_size.bytes(),
            ),
            AreaKind::Contiguous { start_frame } => (CONTIGUOUS, start_frame.as_usize()),
            AreaKind::Object { shared, offset } => (OBJECT | flag(shared), offset),
            AreaKind::Other { name } => {
                return Self {
                    tag: OTHER,
                    word: core::ptr::from_ref(name).cast(),
                };
            }
        };
        Self {
            tag,
            word: core::ptr::without_provenance(word),
        }
    }

    /// The kind that was packed.
    #[inline(always)]
    pub(crate) fn unpack(self) -> AreaKind {
        let word = self.word.addr();
        let populate = if self.tag & FLAG != 0 {
            Populate::Eager
        } else {
            Populate::Lazy
        };
        match self.tag & 0xff {
            LINEAR => AreaKind::Linear { va_minus_pa: word },
            ALLOC => AreaKind::Alloc { populate },
            HUGE_ALLOC => AreaKind::HugeAlloc {
                populate,
                page_size: if word == LeafSize::Size1G.bytes() {
                    LeafSize::Size1G
                } else if word == LeafSize::Size2M.bytes() {
                    LeafSize::Size2M
                } else {
                    LeafSize::Size4K
                },
            },
            CONTIGUOUS => AreaKind::Contiguous {
                start_frame: PhysAddr::from(word),
            },
            OBJECT => AreaKind::Object {
                shared: self.tag & FLAG != 0,
                offset: word,
            },
            _ => AreaKind::Other {
                // SAFETY: only `pack` makes a `PackedKind`, and it makes
                // this tag only with the address of an `Other` variant's
                // `&'static &'static str`, with its provenance.
                name: unsafe { &*self.word.cast::<&'static str>() },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_packs_and_unpacks_to_itself() {
        let kinds = [
            AreaKind::Linear {
                va_minus_pa: 0xffff_ffc0_0000_0000,
            },
            AreaKind::Alloc {
                populate: Populate::Lazy,
            },
            AreaKind::Alloc {
                populate: Populate::Eager,
            },
            AreaKind::HugeAlloc {
                populate: Populate::Eager,
                page_size: LeafSize::Size2M,
            },
            AreaKind::HugeAlloc {
                populate: Populate::Lazy,
                page_size: LeafSize::Size1G,
            },
            AreaKind::HugeAlloc {
                populate: Populate::Lazy,
                page_size: LeafSize::Size4K,
            },
            AreaKind::Contiguous {
                start_frame: PhysAddr::from(0x8040_0000),
            },
            AreaKind::Object {
                shared: true,
                offset: 0x3000,
            },
            AreaKind::Object {
                shared: false,
                offset: usize::MAX & !0xfff,
            },
            AreaKind::Other { name: &"pattern" },
        ];
        for k in kinds {
            assert_eq!(PackedKind::pack(k).unpack(), k);
        }
    }
}
