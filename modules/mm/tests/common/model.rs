//! The page-granular reference model of the mm API, shared by the seeded random
//! test (`tests/random.rs`) and the libFuzzer target (`fuzz/fuzz_targets/mm_api.rs`,
//! which includes this file with `#[path]`).
//!
//! The model knows nothing of the implementation: it keeps, per page of the
//! window, the protection, the kind of mapping (lazy, eager, huge lazy, huge
//! eager, contiguous with its frame), whether a frame backs it (mapped or
//! parked) and the u64 expected at its offset 0; and the set of 2M blocks that
//! must be one huge leaf. From the documented rules it predicts every call's
//! result, the exact area list (maximal runs of mergeable pages), every page's
//! translation (flags, frame of a contiguous page, leaf size), the number of
//! leaves in the page table, the frame counts and the huge-page counters.
//!
//! Where the rules leave a choice to the frame allocator, the model observes
//! what happened and checks that it is one of the allowed outcomes: under a
//! frame limit, a huge block may get 4K frames instead of a huge page (a
//! fallback), and a call that needs frames may fail with `NoMemory` changing
//! nothing. Without a limit, a huge block that fits must get a huge page.
//!
//! Huge rules modelled: a `HUGE_2M` area is 2M aligned and sized; `POPULATE`
//! maps each block with one 2M leaf; a lazy fault maps the whole block with one
//! leaf if the block lies inside the faulting page's area and no page of it has
//! a frame, else one 4K page; a `munmap`/`mprotect`/`FIXED` range with an end
//! strictly inside a huge leaf splits it (the block stops being one leaf; under
//! a frame limit the call may fail with `NoMemory` instead); an `mprotect` of a
//! whole block keeps the leaf unless it removes all access (the block is
//! parked in 4K pieces and comes back as 4K pages).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use axerrno::AxError;
use hal::Access;
use memory_addr::VirtAddr;
use mm::{
    AddrSpace, AreaKind, FaultError, GenericPTE, LeafSize, MappingFlags, MmapFlags, PagingHandler,
    PagingMetaData, Populate, Prot,
};

/// Page size.
pub const P: usize = 4096;
/// Huge (2M) page size.
pub const HUGE: usize = 0x20_0000;
/// Pages per 2M block.
pub const BLOCK: usize = HUGE / P;
/// Start of the window: 64 pages below a 2M boundary, so that 4K work
/// straddles a leaf-table boundary.
pub const START: usize = 0x10_0000_0000 + HUGE - 64 * P;
/// Pages in the window: 64, three whole 2M blocks, 64.
pub const PAGES: usize = 64 + 3 * BLOCK + 64;
/// End of the window.
pub const END: usize = START + PAGES * P;
/// First page of the first whole 2M block of the window.
pub const FIRST_BLOCK: usize = 64;

/// Protections apps use (the ones `to_mapping_flags` accepts).
pub const PROTS: [Prot; 5] = [
    Prot::empty(),
    Prot::READ,
    Prot::READ.union(Prot::WRITE),
    Prot::READ.union(Prot::EXEC),
    Prot::all(),
];

/// What backs a page (the kind of its area).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Lazy,
    Eager,
    HugeLazy,
    HugeEager,
    /// Contiguous, with the physical frame of this page.
    Contig(usize),
}

impl Kind {
    fn huge(self) -> bool {
        matches!(self, Kind::HugeLazy | Kind::HugeEager)
    }
}

/// One page of the window that belongs to an area.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub prot: Prot,
    pub kind: Kind,
    /// A frame backs it (mapped, or parked while the page is `PROT_NONE`).
    pub populated: bool,
    /// The u64 expected at offset 0 of its frame (0 for a fresh zeroed frame).
    pub tag: u64,
}

/// What a page fault did, per the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    NoArea,
    Denied,
    /// A frame was mapped (a 4K page, or the whole block with `huge`).
    Fresh {
        huge: bool,
    },
    /// The page was mapped already (stale TLB entry).
    Spurious,
    /// Out of frames under a limit; nothing changed.
    NoMemory,
}

/// The model (see the module docs).
#[derive(Default)]
pub struct Model {
    /// Page index in the window -> page.
    pub pages: BTreeMap<usize, Page>,
    /// First page index of each 2M block mapped by one huge leaf.
    pub huge: BTreeSet<usize>,
    /// Blocks that were one huge leaf and are now 4K pieces (split or parked)
    /// of that same aligned run of frames: an mprotect that gives all their
    /// pages one accessible protection makes them one huge leaf again.
    pub split_runs: BTreeSet<usize>,
    /// Expected `MmStats::huge_collapses`.
    pub huge_collapses: u64,
    /// Expected `MmStats::huge_faults`.
    pub huge_faults: u64,
    /// Expected `MmStats::huge_fallbacks`.
    pub huge_fallbacks: u64,
}

/// Address of page `p` of the window.
pub fn addr(p: usize) -> usize {
    START + p * P
}

/// The documented range rule of munmap/mprotect/FIXED: aligned, page-rounded,
/// inside the window; as (first page, pages).
pub fn window_pages(addr: usize, len: usize) -> Option<(usize, usize)> {
    if len == 0 || !addr.is_multiple_of(P) {
        return None;
    }
    let size = len.checked_add(P - 1)? & !(P - 1);
    let end = addr.checked_add(size)?;
    (addr >= START && end <= END).then(|| ((addr - START) / P, size / P))
}

/// Whether `prot` is a valid protection.
pub fn prot_ok(prot: Prot) -> bool {
    prot.bits() & !Prot::all().bits() == 0
        && (prot.contains(Prot::READ) || !prot.intersects(Prot::WRITE | Prot::EXEC))
}

/// Whether `prot` allows `access`.
pub fn allows(prot: Prot, access: Access) -> bool {
    match access {
        Access::Read => prot.contains(Prot::READ),
        Access::Write => prot.contains(Prot::WRITE),
        Access::Execute => prot.contains(Prot::EXEC),
    }
}

/// First page of the 2M block containing page `p`, if the whole block lies in
/// the window.
pub fn block_of(p: usize) -> Option<usize> {
    let b = (addr(p) & !(HUGE - 1)).checked_sub(START)? / P;
    (b + BLOCK <= PAGES).then_some(b)
}

fn mergeable(p: &Page, q: &Page) -> bool {
    p.prot == q.prot
        && match (p.kind, q.kind) {
            (Kind::Contig(a), Kind::Contig(b)) => a + P == b,
            (a, b) => a == b,
        }
}

/// Reads the u64 at `va` through the page table. Host only: the tracking
/// handler's physical addresses are host pointers.
pub fn read_u64<M, PTE, H>(s: &AddrSpace<M, PTE, H>, va: usize) -> u64
where
    M: PagingMetaData<VirtAddr = VirtAddr>,
    PTE: GenericPTE,
    H: PagingHandler,
{
    let t = s.translate(VirtAddr::from(va)).expect("mapped");
    assert!(t.paddr.as_usize().is_multiple_of(8));
    // SAFETY: on the host the tracking handler's physical addresses are live
    // host pointers to its frames, and `t.paddr` is 8-byte aligned inside a
    // mapped (so live) frame.
    unsafe { (t.paddr.as_usize() as *const u64).read() }
}

impl Model {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn free(&self, p: usize, n: usize) -> bool {
        self.pages.range(p..p + n).next().is_none()
    }

    /// Pages with a frame (mapped or parked).
    pub fn populated(&self) -> usize {
        self.pages.values().filter(|p| p.populated).count()
    }

    /// Removes pages `[p, p + n)`; huge blocks they touch are gone or split.
    pub fn remove(&mut self, p: usize, n: usize) {
        let keys: Vec<usize> = self.pages.range(p..p + n).map(|(&k, _)| k).collect();
        for k in keys {
            self.pages.remove(&k);
        }
        self.unhuge(p, n);
    }

    /// Forgets the huge leaves (and split runs) of the blocks that intersect
    /// `[p, p + n)`, whose pages are being removed.
    fn unhuge(&mut self, p: usize, n: usize) {
        let lo = p.saturating_sub(BLOCK - 1);
        let gone: Vec<usize> = self.huge.range(lo..p + n).copied().collect();
        for b in gone {
            self.huge.remove(&b);
        }
        let gone: Vec<usize> = self.split_runs.range(lo..p + n).copied().collect();
        for b in gone {
            self.split_runs.remove(&b);
        }
    }

    /// Whether an end of `[p, p + n)` lies strictly inside a huge leaf (the
    /// call must split it, which needs a page-table frame).
    pub fn splits(&self, p: usize, n: usize) -> bool {
        [p, p + n]
            .into_iter()
            .any(|e| e < PAGES && block_of(e).is_some_and(|b| b != e && self.huge.contains(&b)))
    }

    /// mmap's result per the documented rules (placement included), ignoring
    /// frame exhaustion: the first page of the new mapping.
    pub fn mmap_result(
        &self,
        addr: Option<usize>,
        len: usize,
        prot: Prot,
        flags: MmapFlags,
    ) -> Result<usize, AxError> {
        let inv = Err(AxError::InvalidInput);
        if flags.bits() & !MmapFlags::all().bits() != 0 || !prot_ok(prot) {
            return inv;
        }
        let huge = flags.intersection(MmapFlags::HUGE_2M | MmapFlags::HUGE_1G);
        if huge.bits().count_ones() > 1
            || (!huge.is_empty() && flags.contains(MmapFlags::CONTIGUOUS))
        {
            return inv;
        }
        let align = if flags.contains(MmapFlags::HUGE_1G) {
            1 << 30
        } else if flags.contains(MmapFlags::HUGE_2M) {
            HUGE
        } else {
            P
        };
        let Some(size) = (len != 0)
            .then(|| len.checked_add(P - 1))
            .flatten()
            .map(|l| l & !(P - 1))
        else {
            return inv;
        };
        if !size.is_multiple_of(align) {
            return inv;
        }
        if flags.contains(MmapFlags::CONTIGUOUS) && size > mm::CONTIGUOUS_MAX {
            return inv;
        }
        let noreplace = flags.contains(MmapFlags::FIXED_NOREPLACE);
        if noreplace || flags.contains(MmapFlags::FIXED) {
            let Some((p, n)) = addr
                .filter(|a| a.is_multiple_of(align))
                .and_then(|a| window_pages(a, size))
            else {
                return inv;
            };
            if noreplace && !self.free(p, n) {
                return Err(AxError::AlreadyExists);
            }
            return Ok(p);
        }
        if let Some((p, n)) = addr
            .filter(|a| a.is_multiple_of(align))
            .and_then(|a| window_pages(a, size))
            && self.free(p, n)
        {
            return Ok(p);
        }
        let n = size / P;
        if n > PAGES {
            return Err(AxError::NoMemory);
        }
        (0..=PAGES - n)
            .filter(|&p| addr_aligned(p, align))
            .find(|&p| self.free(p, n))
            .ok_or(AxError::NoMemory)
    }

    /// Records a successful mmap of `[p, p + n)`; observes which blocks of a
    /// huge populate got a huge page (all of them unless `limited`).
    /// `contig_frame` is the frame of page `p` of a contiguous mapping.
    #[allow(clippy::too_many_arguments)]
    pub fn mmap<M, PTE, H>(
        &mut self,
        s: &AddrSpace<M, PTE, H>,
        p: usize,
        n: usize,
        prot: Prot,
        flags: MmapFlags,
        contig_frame: Option<usize>,
        limited: bool,
        what: &str,
    ) where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        self.remove(p, n);
        let contiguous = flags.contains(MmapFlags::CONTIGUOUS);
        assert_eq!(
            contig_frame.is_some(),
            contiguous,
            "{what}: contiguous kind"
        );
        let eager = !contiguous && flags.contains(MmapFlags::POPULATE) && !prot.is_empty();
        let huge = flags.contains(MmapFlags::HUGE_2M);
        for q in 0..n {
            let kind = match contig_frame {
                Some(f) => Kind::Contig(f + q * P),
                None => match (huge, eager) {
                    (true, true) => Kind::HugeEager,
                    (true, false) => Kind::HugeLazy,
                    (false, true) => Kind::Eager,
                    (false, false) => Kind::Lazy,
                },
            };
            let page = Page {
                prot,
                kind,
                populated: contiguous || eager,
                tag: 0,
            };
            self.pages.insert(p + q, page);
        }
        if huge && eager {
            for b in (p..p + n).step_by(BLOCK) {
                if self.leaf_size(s, b) == LeafSize::Size2M {
                    self.huge.insert(b);
                } else {
                    assert!(
                        limited,
                        "{what}: huge populate fell back to 4K without a limit"
                    );
                    self.huge_fallbacks += 1;
                }
            }
        }
    }

    fn leaf_size<M, PTE, H>(&self, s: &AddrSpace<M, PTE, H>, p: usize) -> LeafSize
    where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        s.translate(VirtAddr::from(addr(p)))
            .expect("a populated page is mapped")
            .page_size
    }

    /// Records a successful mprotect of `[p, p + n)` (every page is mapped).
    pub fn mprotect(&mut self, p: usize, n: usize, prot: Prot) {
        for q in p..p + n {
            self.pages.get_mut(&q).expect("covered").prot = prot;
        }
        // Blocks cut by an end are split; whole blocks keep their leaf unless
        // the new protection parks them (as 4K pieces).
        let lo = p.saturating_sub(BLOCK - 1);
        let touched: Vec<usize> = self.huge.range(lo..p + n).copied().collect();
        for b in touched {
            if b < p || b + BLOCK > p + n || prot.is_empty() {
                self.huge.remove(&b);
                self.split_runs.insert(b);
            }
        }
        // Split runs whose pages now agree, in one huge area, become huge again.
        if prot.is_empty() {
            return;
        }
        let touched: Vec<usize> = self.split_runs.range(lo..p + n).copied().collect();
        for b in touched {
            let first = self.pages[&b];
            let agree = (b..b + BLOCK).all(|q| {
                self.pages
                    .get(&q)
                    .is_some_and(|x| x.prot == first.prot && x.kind == first.kind)
            });
            if agree && first.kind.huge() && !first.prot.is_empty() {
                self.split_runs.remove(&b);
                self.huge.insert(b);
                self.huge_collapses += 1;
            }
        }
    }

    /// Whether an mprotect of `[p, p + n)` to `prot` needs frames: a huge leaf
    /// to split at an end, or pages of a `PROT_NONE` area that come back.
    pub fn mprotect_needs_frames(&self, p: usize, n: usize, prot: Prot) -> bool {
        self.splits(p, n)
            || (!prot.is_empty()
                && self.pages.range(p..p + n).any(|(_, q)| {
                    q.prot.is_empty() && (q.populated || matches!(q.kind, Kind::Contig(_)))
                }))
    }

    /// Checks the result of a page fault at page `p` (`None`: outside the
    /// window) against the model and records it.
    pub fn fault<M, PTE, H>(
        &mut self,
        s: &AddrSpace<M, PTE, H>,
        p: Option<usize>,
        access: Access,
        r: Result<(), FaultError>,
        limited: bool,
        what: &str,
    ) -> Fault
    where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        let Some((p, page)) = p.and_then(|p| self.pages.get(&p).map(|q| (p, *q))) else {
            assert_eq!(r, Err(FaultError::NoArea), "{what}");
            return Fault::NoArea;
        };
        if !allows(page.prot, access) {
            assert!(matches!(r, Err(FaultError::Denied { .. })), "{what}: {r:?}");
            let area = r.unwrap_err().area().copied().unwrap();
            assert!(area.start.as_usize() <= addr(p) && addr(p) < area.end.as_usize());
            return Fault::Denied;
        }
        if page.populated {
            assert_eq!(r, Ok(()), "{what}: spurious fault on page {p}");
            return Fault::Spurious;
        }
        if limited && matches!(r, Err(FaultError::NoMemory { .. })) {
            assert!(!format!("{}", r.unwrap_err()).is_empty());
            return Fault::NoMemory;
        }
        assert_eq!(r, Ok(()), "{what}: fault on page {p} {access:?}");
        let fits = page.kind.huge()
            && block_of(p).is_some_and(|b| {
                (b..b + BLOCK).all(|q| {
                    self.pages
                        .get(&q)
                        .is_some_and(|x| !x.populated && x.prot == page.prot && x.kind == page.kind)
                })
            });
        if fits {
            let b = block_of(p).unwrap();
            if self.leaf_size(s, p) == LeafSize::Size2M {
                for q in b..b + BLOCK {
                    self.pages.get_mut(&q).unwrap().populated = true;
                }
                self.huge.insert(b);
                self.huge_faults += 1;
                return Fault::Fresh { huge: true };
            }
            assert!(
                limited,
                "{what}: huge fault fell back to 4K without a limit"
            );
            self.huge_fallbacks += 1;
        }
        self.pages.get_mut(&p).unwrap().populated = true;
        Fault::Fresh { huge: false }
    }

    /// The area list the model predicts: maximal runs of mergeable pages.
    pub fn expected_areas(&self) -> Vec<(usize, usize, MappingFlags, AreaKind)> {
        let mut out: Vec<(usize, usize, MappingFlags, AreaKind)> = Vec::new();
        let mut prev: Option<(usize, Page)> = None;
        for (&n, p) in &self.pages {
            match prev {
                Some((pn, pp)) if pn + 1 == n && mergeable(&pp, p) => {
                    out.last_mut().unwrap().1 = addr(n + 1);
                }
                _ => out.push((addr(n), addr(n + 1), p.prot.to_mapping_flags().unwrap(), {
                    let populate = |eager| {
                        if eager {
                            Populate::Eager
                        } else {
                            Populate::Lazy
                        }
                    };
                    match p.kind {
                        Kind::Lazy | Kind::Eager => AreaKind::Alloc {
                            populate: populate(p.kind == Kind::Eager),
                        },
                        Kind::HugeLazy | Kind::HugeEager => AreaKind::HugeAlloc {
                            populate: populate(p.kind == Kind::HugeEager),
                            page_size: LeafSize::Size2M,
                        },
                        Kind::Contig(f) => AreaKind::Contiguous {
                            start_frame: f.into(),
                        },
                    }
                })),
            }
            prev = Some((n, *p));
        }
        out
    }

    /// Checks how page `p` translates (and, with `data`, its u64 at offset 0).
    pub fn check_page<M, PTE, H>(&self, s: &AddrSpace<M, PTE, H>, p: usize, data: bool, what: &str)
    where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        let t = s.translate(VirtAddr::from(addr(p)));
        match self.pages.get(&p) {
            Some(q) if q.populated && !q.prot.is_empty() => {
                let t = t.unwrap_or_else(|e| panic!("{what}: page {p} should be mapped: {e:?}"));
                if let Kind::Contig(frame) = q.kind {
                    assert_eq!(t.paddr.as_usize(), frame, "{what}: frame of page {p}");
                }
                let flags = q.prot.to_mapping_flags().unwrap();
                let access = MappingFlags::READ | MappingFlags::WRITE | MappingFlags::EXECUTE;
                assert_eq!(t.flags & access, flags, "{what}: flags of page {p}");
                let huge = block_of(p).is_some_and(|b| self.huge.contains(&b));
                let want = if huge {
                    LeafSize::Size2M
                } else {
                    LeafSize::Size4K
                };
                assert_eq!(t.page_size, want, "{what}: leaf size of page {p}");
                if data {
                    assert_eq!(read_u64(s, addr(p)), q.tag, "{what}: content of page {p}");
                }
            }
            _ => assert_eq!(
                t,
                Err(AxError::BadAddress),
                "{what}: page {p} should be unmapped"
            ),
        }
    }

    /// Checks the frame counts, the huge counters and the number of leaves.
    pub fn check_counts<M, PTE, H>(&self, s: &AddrSpace<M, PTE, H>, what: &str)
    where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        let st = s.stats();
        assert_eq!(st.data_frames, self.populated(), "{what}: data frames");
        assert_eq!(
            testing::frames_in_use(),
            st.data_frames + st.page_table_frames,
            "{what}: frames in use"
        );
        assert_eq!(
            (st.huge_faults, st.huge_fallbacks, st.huge_collapses),
            (self.huge_faults, self.huge_fallbacks, self.huge_collapses),
            "{what}: huge faults, fallbacks and collapses"
        );
    }

    /// Checks the area list, the frame counts and the page table: with `full`
    /// every page of the window (and its data), else every mapped page once per
    /// leaf (a huge block by its first page) plus the number of leaves, which
    /// together rule out any other mapping.
    pub fn check<M, PTE, H>(&self, s: &AddrSpace<M, PTE, H>, full: bool, what: &str)
    where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        let got: Vec<_> = s
            .areas()
            .map(|a| (a.start.as_usize(), a.end.as_usize(), a.flags, a.kind))
            .collect();
        assert_eq!(got, self.expected_areas(), "{what}: area list");
        self.check_counts(s, what);
        let mapped = |q: &Page| q.populated && !q.prot.is_empty();
        if full {
            for p in 0..PAGES {
                self.check_page(s, p, true, what);
            }
        } else {
            for (&p, q) in &self.pages {
                let in_huge = block_of(p).is_some_and(|b| b != p && self.huge.contains(&b));
                if mapped(q) && !in_huge {
                    self.check_page(s, p, false, what);
                }
            }
        }
        let leaves =
            self.pages.values().filter(|q| mapped(q)).count() - self.huge.len() * (BLOCK - 1);
        let audit = s.audit();
        assert_eq!(audit.leaves, leaves, "{what}: leaves in the page table");
    }
}

fn addr_aligned(p: usize, align: usize) -> bool {
    addr(p).is_multiple_of(align)
}
