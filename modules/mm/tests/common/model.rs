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
//!
//! Memory objects ([`Obj`]): a page of an object mapping knows its object,
//! object page, sharing, whether it has its own (private) copy, and whether a
//! PTE maps the object's frame, read-only or writable ([`Omap`]); an object
//! page knows whether it is resident, its frame (once seen), its data and its
//! dirty flag, and the pager's data. Rules modelled (crate docs, *Object*):
//! pages come on faults; a read maps the object's frame read-only; a write to
//! a shared page maps it writable and dirties it; a private page's first write
//! copies the current content into a frame of its own (or takes the object's
//! frame when the area holds the only reference, the page no other mapping,
//! and the page was never mapped writable since it became resident); a page
//! past the end is `PastEnd` (before anything is allocated: never `NoMemory`,
//! even for a private write under a frame limit); `mprotect` maps object frames
//! read-only again or (no access) unmaps them; `msync` makes the range's
//! writable PTEs read-only and writes back every dirty resident page of the
//! object pages it covers (clean unless still mapped writable elsewhere);
//! `mremap` moves pages with all their state and grows an area with the next
//! object pages; an object the test does not hold drops with its last area.
//! `MmStats::shared_frames` counts the PTEs that map object frames, and the
//! frames in use are the data frames, the page tables and the live objects'
//! resident pages. Under a frame limit a fault may leave its object page
//! resident when the page table ran out after the object had made the page
//! resident: observed from the frames in use. It stays clean (and not
//! `written`) even for a shared write: the object makes the page writable
//! only once its PTE is there.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use axerrno::AxError;
use hal::Access;
use memory_addr::VirtAddr;
use mm::{
    AddrSpace, AreaKind, FaultError, GenericPTE, LeafSize, MappingFlags, MemObject, MmapFlags,
    PagingHandler, PagingMetaData, Populate, Prot, RemapFlags,
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
    /// Page `index` of the model's object `obj` (see [`Obj`]), shared or
    /// private.
    Object {
        obj: usize,
        index: usize,
        shared: bool,
    },
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
    /// For an object page: of its private copy (`populated`).
    pub tag: u64,
    /// For an object page that is not a private copy: whether a PTE maps the
    /// object's frame, and whether that PTE is writable.
    pub omap: Omap,
}

/// How an object page's PTE maps the object's own frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Omap {
    /// Not mapped (or a private copy, see `Page::populated`).
    #[default]
    None,
    /// Mapped read-only (dirty tracking, copy-on-write).
    Ro,
    /// Mapped writable (a shared page made dirty by a write fault).
    Rw,
}

/// One page of a memory object, as the model knows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjPage {
    /// The object holds a frame for it (permanent until the object drops).
    pub resident: bool,
    /// Its frame, once seen through a translation or `MemObject::page_state`.
    pub frame: Option<usize>,
    /// The u64 at offset 0 of the resident frame.
    pub data: u64,
    /// `PageState::dirty`: set when a writable mapping appears, cleared by a
    /// sync that writes it while no writable mapping is left.
    pub dirty: bool,
    /// A writable mapping of the page appeared since it became resident
    /// (set with `dirty`, never cleared, not even by a sync): its frame may
    /// differ from what the pager read, so a private write copies it instead
    /// of taking it (`MemObject::take_sole`).
    pub written: bool,
}

/// A memory object: the test's own (`held`: it keeps an `Arc`, so the object
/// lives as long as the test) or the anonymous object of an `mmap(SHARED)`
/// (alive while a page of the window maps it).
#[derive(Debug, Clone)]
pub struct Obj {
    pub pages: Vec<ObjPage>,
    /// The u64 at offset 0 of each page in the pager (what a page that is not
    /// resident reads, and what `msync` wrote back).
    pub pager: Vec<u64>,
    /// The pager keeps what is written back (`BytesPager`; `AnonPager` does not).
    pub keeps: bool,
    pub held: bool,
}

impl Page {
    /// Whether a PTE maps the page (an owned frame of an accessible page, or
    /// an object's frame).
    pub fn mapped(&self) -> bool {
        (self.populated && !self.prot.is_empty()) || self.omap != Omap::None
    }
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
    /// An object page: the object's frame was mapped, a read-only shared page
    /// became writable, or a private page got its copy (counted as handled,
    /// not zero-filled).
    Mapped,
    /// An object page past the object's end.
    PastEnd,
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
    /// Memory objects by id (the test's first, then those of `mmap(SHARED)`).
    pub objects: BTreeMap<usize, Obj>,
    /// The next object id.
    pub next_obj: usize,
    /// Faults made by `POPULATE` of object mappings (counted as handled).
    pub prefaults: u64,
    /// Private pages copied on write, pages made resident, and msync pages
    /// written (for the run's summary).
    pub copies: u64,
    pub residents: u64,
    pub synced: u64,
    /// Private pages that took the object's frame (the area held the only
    /// reference to the object).
    pub taken: u64,
    /// Private pages copied where the frame would have been taken but the
    /// object page was mapped writable before (`ObjPage::written`).
    pub written_copies: u64,
}

/// A planned `mremap` (pages of the window): the old range `[p, p + n)`,
/// the new length `new_n`, and where it goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Remap {
    /// In place: shrink (or the same size).
    Shrink { p: usize, n: usize, new_n: usize },
    /// In place: grow into the free range after the area.
    Grow { p: usize, n: usize, new_n: usize },
    /// `MAYMOVE`: to the lowest free range congruent modulo its alignment.
    Move {
        p: usize,
        n: usize,
        new_n: usize,
        to: usize,
    },
    /// `FIXED`: to `to`, replacing what is there.
    Fixed {
        p: usize,
        n: usize,
        new_n: usize,
        to: usize,
    },
}

impl Remap {
    /// (old first page, old pages, new pages, new first page)
    pub fn parts(self) -> (usize, usize, usize, usize) {
        match self {
            Remap::Shrink { p, n, new_n } | Remap::Grow { p, n, new_n } => (p, n, new_n, p),
            Remap::Move { p, n, new_n, to } | Remap::Fixed { p, n, new_n, to } => (p, n, new_n, to),
        }
    }
}

/// 10.5 pages of bytes for a `BytesPager` object: the u64 at offset 0 of page
/// `i` is [`bytes_tag`]`(i)`, the rest nonzero.
pub static BYTES: [u8; 10 * P + P / 2] = {
    let mut b = [0u8; 10 * P + P / 2];
    let mut i = 0;
    while i < b.len() {
        b[i] = (i % 251) as u8 + 1;
        i += 1;
    }
    let mut page = 0;
    while page * P < b.len() {
        let t = bytes_tag(page).to_le_bytes();
        let mut k = 0;
        while k < 8 {
            b[page * P + k] = t[k];
            k += 1;
        }
        page += 1;
    }
    b
};

/// The u64 at offset 0 of page `i` of [`BYTES`].
pub const fn bytes_tag(i: usize) -> u64 {
    0xb17e_5000_0000_0000 | i as u64
}

/// The frame of `va`'s translation (4K aligned), if mapped.
fn frame_of<M, PTE, H>(s: &AddrSpace<M, PTE, H>, va: usize) -> Option<usize>
where
    M: PagingMetaData<VirtAddr = VirtAddr>,
    PTE: GenericPTE,
    H: PagingHandler,
{
    s.translate(VirtAddr::from(va))
        .ok()
        .map(|t| t.paddr.as_usize() & !(P - 1))
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
            (
                Kind::Object { obj, index, shared },
                Kind::Object {
                    obj: o,
                    index: i,
                    shared: sh,
                },
            ) => obj == o && shared == sh && index.checked_add(1) == Some(i),
            (a, b) => a == b,
        }
}

/// Whether an area of this kind can grow (`Backend::extend`).
fn extendable(kind: Kind) -> bool {
    !matches!(kind, Kind::Contig(_))
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
        let mut objs = BTreeSet::new();
        for k in keys {
            if let Some(Page {
                kind: Kind::Object { obj, .. },
                ..
            }) = self.pages.remove(&k)
            {
                objs.insert(obj);
            }
        }
        self.unhuge(p, n);
        self.drop_unused(objs);
    }

    /// Forgets those of `objs` that the test does not hold and no page maps
    /// any more: the object was dropped (its frames went back).
    fn drop_unused(&mut self, objs: BTreeSet<usize>) {
        let unheld: Vec<usize> = objs
            .into_iter()
            .filter(|o| self.objects.get(o).is_some_and(|x| !x.held))
            .collect();
        if unheld.is_empty() {
            return;
        }
        let mut used = BTreeSet::new();
        for q in self.pages.values() {
            if let Kind::Object { obj, .. } = q.kind {
                used.insert(obj);
            }
        }
        for o in unheld {
            if !used.contains(&o) {
                self.objects.remove(&o);
            }
        }
    }

    /// A new object of `pages` pages whose pager holds `pager` (the u64 at
    /// offset 0 of each page); returns its id.
    pub fn add_object(&mut self, pager: Vec<u64>, keeps: bool, held: bool) -> usize {
        let id = self.next_obj;
        self.next_obj += 1;
        self.objects.insert(
            id,
            Obj {
                pages: vec![ObjPage::default(); pager.len()],
                pager,
                keeps,
                held,
            },
        );
        id
    }

    /// The u64 at offset 0 of object page `i` (resident: its frame's, else the
    /// pager's).
    pub fn obj_data(&self, o: usize, i: usize) -> u64 {
        let obj = &self.objects[&o];
        let q = obj.pages[i];
        if q.resident { q.data } else { obj.pager[i] }
    }

    /// Resident pages of every live object (their frames are in use).
    pub fn resident(&self) -> usize {
        self.objects
            .values()
            .map(|o| o.pages.iter().filter(|q| q.resident).count())
            .sum()
    }

    /// PTEs of the window that map object page `(o, i)`'s frame: (all, writable).
    pub fn maps(&self, o: usize, i: usize) -> (usize, usize) {
        let mut r = (0, 0);
        for q in self.pages.values() {
            if q.kind
                == (Kind::Object {
                    obj: o,
                    index: i,
                    shared: true,
                })
                || q.kind
                    == (Kind::Object {
                        obj: o,
                        index: i,
                        shared: false,
                    })
            {
                match q.omap {
                    Omap::None => {}
                    Omap::Ro => r.0 += 1,
                    Omap::Rw => r = (r.0 + 1, r.1 + 1),
                }
            }
        }
        r
    }

    /// Areas (runs of mergeable pages) that map object `o`.
    pub fn areas_of(&self, o: usize) -> usize {
        let mut n = 0;
        let mut prev: Option<(usize, Page)> = None;
        for (&k, q) in &self.pages {
            if matches!(q.kind, Kind::Object { obj, .. } if obj == o)
                && !prev.is_some_and(|(pk, pq)| pk + 1 == k && mergeable(&pq, q))
            {
                n += 1;
            }
            prev = Some((k, *q));
        }
        n
    }

    /// The test lets object `o` go (drops its `Arc`): it lives on while an
    /// area maps it.
    pub fn release_object(&mut self, o: usize) {
        self.objects.get_mut(&o).unwrap().held = false;
        self.drop_unused(BTreeSet::from([o]));
    }

    /// Pages of the window that map an object's frame (`MmStats::shared_frames`).
    pub fn shared_frames(&self) -> usize {
        self.pages.values().filter(|q| q.omap != Omap::None).count()
    }

    /// The u64 expected at offset 0 of page `p` (mapped or parked).
    pub fn data(&self, p: usize) -> u64 {
        let q = self.pages[&p];
        match q.kind {
            Kind::Object { obj, index, .. } if !q.populated => self.obj_data(obj, index),
            _ => q.tag,
        }
    }

    /// Writes `tag` at offset 0 of page `p` through the page table, as the app
    /// would: an object page only if its PTE is writable (else the write would
    /// fault). Returns whether it wrote.
    pub fn write<M, PTE, H>(&mut self, s: &AddrSpace<M, PTE, H>, p: usize, tag: u64) -> bool
    where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        let t = s.translate(VirtAddr::from(addr(p))).expect("mapped");
        let q = self.pages[&p];
        if let Kind::Object { obj, index, .. } = q.kind
            && !q.populated
        {
            if !t.flags.contains(MappingFlags::WRITE) {
                return false;
            }
            assert_eq!(
                q.omap,
                Omap::Rw,
                "page {p}: writable PTE of an object frame"
            );
            let op = &mut self.objects.get_mut(&obj).unwrap().pages[index];
            assert!(
                op.resident && op.dirty,
                "page {p}: writable, so resident and dirty"
            );
            op.data = tag;
        } else {
            self.pages.get_mut(&p).unwrap().tag = tag;
        }
        // SAFETY: host only: the tracking handler's physical addresses are
        // live host pointers, and `t.paddr` is a mapped page's start.
        unsafe { (t.paddr.as_usize() as *mut u64).write(tag) };
        if let Kind::Object { obj, index, .. } = q.kind
            && !q.populated
        {
            // Seen at once through every mapping of the object's frame
            // (shared, and private ones that have not copied the page), and
            // through none of the private copies.
            for (&k, x) in &self.pages {
                if let Kind::Object {
                    obj: o, index: i, ..
                } = x.kind
                    && (o, i) == (obj, index)
                    && x.mapped()
                {
                    let seen = read_u64(s, addr(k));
                    if x.populated {
                        assert_eq!(seen, x.tag, "page {k}: a private copy changed");
                    } else {
                        assert_eq!(seen, tag, "page {k}: a write through page {p} not seen");
                    }
                }
            }
        }
        true
    }

    /// The run of mergeable pages (the area, per the model) holding page `p`:
    /// (first page, end page).
    pub fn area_of(&self, p: usize) -> Option<(usize, usize)> {
        let q = self.pages.get(&p)?;
        let (mut a, mut b) = (p, p + 1);
        let mut cur = *q;
        while let Some(x) = a.checked_sub(1).and_then(|k| self.pages.get(&k))
            && mergeable(x, &cur)
        {
            cur = *x;
            a -= 1;
        }
        cur = *q;
        while let Some(x) = self.pages.get(&b)
            && mergeable(&cur, x)
        {
            cur = *x;
            b += 1;
        }
        Some((a, b))
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
        let shared = flags.contains(MmapFlags::SHARED);
        let contiguous = flags.contains(MmapFlags::CONTIGUOUS);
        if huge.bits().count_ones() > 1
            || (!huge.is_empty() && contiguous)
            || (shared && flags.contains(MmapFlags::PRIVATE))
            || (shared && (!huge.is_empty() || contiguous))
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

    /// `mmap_object`'s result per the documented rules: as `mmap`, and
    /// `InvalidInput` for an unaligned offset, neither or both of `SHARED`
    /// and `PRIVATE`, an offset whose sum with the length overflows, and
    /// (after placement, as the implementation checks it) `CONTIGUOUS` or a
    /// huge flag.
    pub fn mmap_object_result(
        &self,
        addr: Option<usize>,
        len: usize,
        prot: Prot,
        flags: MmapFlags,
        offset: usize,
    ) -> Result<usize, AxError> {
        let size = len.checked_add(P - 1).map(|l| l & !(P - 1));
        if !offset.is_multiple_of(P)
            || flags.contains(MmapFlags::SHARED) == flags.contains(MmapFlags::PRIVATE)
            || len == 0
            || size.and_then(|l| offset.checked_add(l)).is_none()
        {
            return Err(AxError::InvalidInput);
        }
        let p = self.mmap_result(addr, len, prot, flags)?;
        if flags.intersects(MmapFlags::CONTIGUOUS | MmapFlags::HUGE_2M | MmapFlags::HUGE_1G) {
            return Err(AxError::InvalidInput);
        }
        Ok(p)
    }

    /// Records a successful `mmap_object` (or `mmap(SHARED)`) of `[p, p + n)`
    /// over object `obj` from its page `first`, and its `POPULATE`: read
    /// faults page by page until one fails (past the end, or out of frames
    /// under a limit: observed).
    #[allow(clippy::too_many_arguments)]
    pub fn mmap_object<M, PTE, H>(
        &mut self,
        s: &AddrSpace<M, PTE, H>,
        p: usize,
        n: usize,
        prot: Prot,
        flags: MmapFlags,
        obj: usize,
        first: usize,
        limited: bool,
        what: &str,
    ) where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        self.remove(p, n);
        let shared = flags.contains(MmapFlags::SHARED);
        for q in 0..n {
            let page = Page {
                prot,
                kind: Kind::Object {
                    obj,
                    index: first.saturating_add(q),
                    shared,
                },
                populated: false,
                tag: 0,
                omap: Omap::None,
            };
            self.pages.insert(p + q, page);
        }
        if !flags.contains(MmapFlags::POPULATE) || prot.is_empty() {
            return;
        }
        for q in p..p + n {
            let index = first.saturating_add(q - p);
            let npages = self.objects[&obj].pages.len();
            if index >= npages {
                break;
            }
            match frame_of(s, addr(q)) {
                Some(f) => {
                    self.prefaults += 1;
                    self.map_object_frame(obj, index, f, false, what);
                    self.pages.get_mut(&q).unwrap().omap = Omap::Ro;
                }
                None => {
                    assert!(limited, "{what}: populate of object page {q} failed");
                    self.observe_resident(s, obj, index, what);
                    break;
                }
            }
        }
    }

    /// A PTE now maps object page `(o, i)`'s frame `f` (`write`: writable):
    /// the page is resident with that frame.
    fn map_object_frame(&mut self, o: usize, i: usize, f: usize, write: bool, what: &str) {
        let obj = self.objects.get_mut(&o).unwrap();
        let pager = obj.pager[i];
        let q = &mut obj.pages[i];
        if !q.resident {
            *q = ObjPage {
                resident: true,
                frame: Some(f),
                data: pager,
                dirty: false,
                written: false,
            };
            self.residents += 1;
        }
        match q.frame {
            Some(g) => assert_eq!(
                f, g,
                "{what}: object {o} page {i}: one frame for every mapping"
            ),
            None => q.frame = Some(f),
        }
        q.dirty |= write;
        q.written |= write;
    }

    /// After a call that failed for want of frames while mapping object page
    /// `(o, i)`: the object may have made the page resident before the page
    /// table ran out (it stays resident, clean, even for a write: the
    /// mapping is counted read-only until its PTE is there, and given back).
    /// Observed by the frames in use.
    fn observe_resident<M, PTE, H>(
        &mut self,
        s: &AddrSpace<M, PTE, H>,
        o: usize,
        i: usize,
        what: &str,
    ) where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        let st = s.stats();
        let expected = st.data_frames + st.page_table_frames + self.resident();
        let got = testing::frames_in_use();
        let obj = self.objects.get_mut(&o).unwrap();
        let pager = obj.pager[i];
        let q = &mut obj.pages[i];
        if q.resident {
            // map_page counted a read-only mapping, the page table refused
            // it, and it was given back: nothing changed.
            assert_eq!(got, expected, "{what}: frames in use");
            return;
        }
        match got.checked_sub(expected) {
            Some(0) => {}
            Some(1) => {
                *q = ObjPage {
                    resident: true,
                    frame: None,
                    data: pager,
                    dirty: false,
                    written: false,
                };
                self.residents += 1;
            }
            _ => panic!("{what}: frames in use {got}, expected {expected} (+1)"),
        }
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
        if flags.contains(MmapFlags::SHARED) {
            // A new anonymous object of the mapping's size, mapped shared.
            let obj = self.add_object(vec![0; n], false, false);
            self.mmap_object(s, p, n, prot, flags, obj, 0, limited, what);
            return;
        }
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
                omap: Omap::None,
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
            let page = self.pages.get_mut(&q).expect("covered");
            if page.prot == prot {
                // The area's flags do not change: its backend is not called.
                continue;
            }
            page.prot = prot;
            // Object frames stay mapped read-only, or are unmapped without
            // access (the object keeps them); private copies are parked.
            page.omap = match page.omap {
                _ if prot.is_empty() => Omap::None,
                Omap::Rw => Omap::Ro,
                o => o,
            };
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
        if let Kind::Object { obj, index, shared } = page.kind {
            return self.fault_object(s, p, obj, index, shared, access, r, limited, what);
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

    /// [`Model::fault`] on object page `(o, i)` at page `p` (allowed by its
    /// protection, not a private copy).
    #[allow(clippy::too_many_arguments)]
    fn fault_object<M, PTE, H>(
        &mut self,
        s: &AddrSpace<M, PTE, H>,
        p: usize,
        o: usize,
        i: usize,
        shared: bool,
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
        let write = access == Access::Write;
        let omap = self.pages[&p].omap;
        let no_memory = limited && matches!(r, Err(FaultError::NoMemory { .. }));
        match omap {
            Omap::Rw => {
                assert_eq!(r, Ok(()), "{what}: spurious fault on page {p}");
                return Fault::Spurious;
            }
            Omap::Ro if !write => {
                assert_eq!(r, Ok(()), "{what}: spurious fault on page {p}");
                return Fault::Spurious;
            }
            Omap::Ro if shared => {
                // Dirty tracking: the PTE becomes writable, nothing allocated.
                assert_eq!(r, Ok(()), "{what}: write fault on shared page {p}");
                let f = frame_of(s, addr(p));
                assert_eq!(f, self.objects[&o].pages[i].frame, "{what}: frame of {p}");
                let op = &mut self.objects.get_mut(&o).unwrap().pages[i];
                op.dirty = true;
                op.written = true;
                self.pages.get_mut(&p).unwrap().omap = Omap::Rw;
                return Fault::Mapped;
            }
            Omap::Ro => {
                // The area holds the only reference to the object (the test
                // let it go, and no other area maps it), this PTE is the
                // page's only mapping, and the page was never mapped writable
                // (its frame holds what the pager gives): the frame becomes
                // the area's, no copy.
                let sole =
                    !self.objects[&o].held && self.areas_of(o) == 1 && self.maps(o, i) == (1, 0);
                let written = self.objects[&o].pages[i].written;
                if sole && !written {
                    assert_eq!(r, Ok(()), "{what}: write fault on sole page {p}");
                    let f = frame_of(s, addr(p));
                    let obj = self.objects.get_mut(&o).unwrap();
                    let op = obj.pages[i];
                    assert_eq!(f, op.frame, "{what}: page {p} keeps the object's frame");
                    // The object forgets the page (a later read would come
                    // from the pager again).
                    obj.pages[i] = ObjPage::default();
                    let page = self.pages.get_mut(&p).unwrap();
                    page.populated = true;
                    page.tag = op.data;
                    page.omap = Omap::None;
                    self.taken += 1;
                    return Fault::Mapped;
                }
                // Copy-on-write.
                if no_memory {
                    return Fault::NoMemory;
                }
                assert_eq!(r, Ok(()), "{what}: copy-on-write fault on page {p}");
                self.copy_page(s, p, o, i, what);
                if sole {
                    self.written_copies += 1;
                }
                return Fault::Mapped;
            }
            Omap::None => {}
        }
        if i >= self.objects[&o].pages.len() {
            // Checked before anything is allocated: never `NoMemory`.
            assert!(
                matches!(r, Err(FaultError::PastEnd { .. })),
                "{what}: {r:?}"
            );
            let area = r.unwrap_err().area().copied().unwrap();
            assert!(area.start.as_usize() <= addr(p) && addr(p) < area.end.as_usize());
            assert!(!format!("{}", r.unwrap_err()).is_empty());
            return Fault::PastEnd;
        }
        if no_memory {
            if shared || !write {
                self.observe_resident(s, o, i, what);
            }
            return Fault::NoMemory;
        }
        assert_eq!(r, Ok(()), "{what}: fault on object page {p} {access:?}");
        if write && !shared {
            self.copy_page(s, p, o, i, what);
        } else {
            let f = frame_of(s, addr(p)).expect("mapped");
            self.map_object_frame(o, i, f, write, what);
            self.pages.get_mut(&p).unwrap().omap = if write { Omap::Rw } else { Omap::Ro };
        }
        Fault::Mapped
    }

    /// Page `p` (object page `(o, i)`, private) got its own copy of the
    /// object page's current content, in a frame of its own.
    fn copy_page<M, PTE, H>(
        &mut self,
        s: &AddrSpace<M, PTE, H>,
        p: usize,
        o: usize,
        i: usize,
        what: &str,
    ) where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        let data = self.obj_data(o, i);
        let f = frame_of(s, addr(p)).expect("mapped");
        assert_ne!(
            Some(f),
            self.objects[&o].pages[i].frame,
            "{what}: private copy of page {p} in the object's frame"
        );
        let page = self.pages.get_mut(&p).unwrap();
        page.populated = true;
        page.tag = data;
        page.omap = Omap::None;
        self.copies += 1;
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
                        Kind::Object { index, shared, .. } => AreaKind::Object {
                            shared,
                            offset: index.saturating_mul(P),
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
            Some(q) if q.mapped() => {
                let t = t.unwrap_or_else(|e| panic!("{what}: page {p} should be mapped: {e:?}"));
                if let Kind::Contig(frame) = q.kind {
                    assert_eq!(t.paddr.as_usize(), frame, "{what}: frame of page {p}");
                }
                let mut flags = q.prot.to_mapping_flags().unwrap();
                if let Kind::Object { obj, index, .. } = q.kind {
                    let op = self.objects[&obj].pages[index];
                    if q.populated {
                        assert_ne!(
                            Some(t.paddr.as_usize()),
                            op.frame,
                            "{what}: page {p}, a private copy, maps the object's frame"
                        );
                    } else {
                        assert!(op.resident, "{what}: page {p} maps a page not resident");
                        assert_eq!(
                            Some(t.paddr.as_usize()),
                            op.frame,
                            "{what}: page {p} maps the object's frame"
                        );
                        if q.omap == Omap::Ro {
                            flags -= MappingFlags::WRITE;
                        }
                    }
                }
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
                    assert_eq!(
                        read_u64(s, addr(p)),
                        self.data(p),
                        "{what}: content of page {p}"
                    );
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
            st.shared_frames,
            self.shared_frames(),
            "{what}: shared frames"
        );
        assert_eq!(
            testing::frames_in_use(),
            st.data_frames + st.page_table_frames + self.resident(),
            "{what}: frames in use (data, tables, objects' resident pages)"
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
        let mapped = |q: &Page| q.mapped();
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

impl Model {
    /// `msync(addr, len, flags)` per the documented rules: the result (pages
    /// written back) and its effects. `flags` (raw `MS_*` bits) with an
    /// unknown bit, or `MS_ASYNC` (1) with `MS_SYNC` (4), is `InvalidInput`;
    /// the others all write. Each area of the range in turn: a shared object
    /// area makes its writable PTEs in the range read-only, then writes back
    /// every dirty resident page of the object pages the range maps there
    /// (those still mapped writable elsewhere stay dirty).
    pub fn msync(&mut self, addr: usize, len: usize, flags: u32) -> Result<usize, AxError> {
        if flags & !7 != 0 || flags & 5 == 5 {
            return Err(AxError::InvalidInput);
        }
        let (p, n) = window_pages(addr, len).ok_or(AxError::InvalidInput)?;
        if (p..p + n).any(|q| !self.pages.contains_key(&q)) {
            return Err(AxError::NoMemory);
        }
        let mut wmaps: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for q in self.pages.values() {
            if let (Kind::Object { obj, index, .. }, Omap::Rw) = (q.kind, q.omap) {
                *wmaps.entry((obj, index)).or_default() += 1;
            }
        }
        let mut written = 0;
        let mut q = p;
        while q < p + n {
            let (_, end) = self.area_of(q).unwrap();
            let to = end.min(p + n);
            if let Kind::Object {
                obj, shared: true, ..
            } = self.pages[&q].kind
            {
                for k in q..to {
                    let page = self.pages.get_mut(&k).unwrap();
                    if page.omap == Omap::Rw {
                        page.omap = Omap::Ro;
                        let Kind::Object { index, .. } = page.kind else {
                            unreachable!()
                        };
                        *wmaps.get_mut(&(obj, index)).unwrap() -= 1;
                    }
                }
                for k in q..to {
                    let Kind::Object { index, .. } = self.pages[&k].kind else {
                        unreachable!()
                    };
                    let o = self.objects.get_mut(&obj).unwrap();
                    let Some(op) = o.pages.get_mut(index) else {
                        break;
                    };
                    if op.resident && op.dirty {
                        written += 1;
                        if o.keeps {
                            o.pager[index] = op.data;
                        }
                        if wmaps.get(&(obj, index)).copied().unwrap_or(0) == 0 {
                            op.dirty = false;
                        }
                    }
                }
            }
            q = to;
        }
        self.synced += written as u64;
        Ok(written)
    }

    /// `mremap`'s result per the documented rules (the order of the checks
    /// included), ignoring frame exhaustion. `None` for an old range in a
    /// huge area, which the model does not move.
    pub fn mremap_result(
        &self,
        old_addr: usize,
        old_len: usize,
        new_len: usize,
        flags: RemapFlags,
        new_addr: Option<usize>,
    ) -> Option<Result<Remap, AxError>> {
        let inv = Some(Err(AxError::InvalidInput));
        let fixed = flags.contains(RemapFlags::FIXED);
        let may_move = flags.contains(RemapFlags::MAYMOVE);
        if flags.bits() & !RemapFlags::all().bits() != 0 || (fixed && !may_move) {
            return inv;
        }
        let Some(new_size) = (new_len != 0)
            .then(|| new_len.checked_add(P - 1))
            .flatten()
            .map(|l| l & !(P - 1))
        else {
            return inv;
        };
        let new_n = new_size / P;
        let Some((p, n)) = window_pages(old_addr, old_len) else {
            return inv;
        };
        let Some((_, area_end)) = self.area_of(p) else {
            return Some(Err(AxError::BadAddress));
        };
        if area_end < p + n {
            return Some(Err(AxError::BadAddress));
        }
        let kind = self.pages[&p].kind;
        if kind.huge() {
            return None;
        }
        if fixed {
            let Some((to, _)) = new_addr.and_then(|a| window_pages(a, new_size)) else {
                return inv;
            };
            if to < p + n && p < to + new_n {
                return inv;
            }
            if new_n > n && !extendable(kind) {
                return Some(Err(AxError::BadAddress));
            }
            return Some(Ok(Remap::Fixed { p, n, new_n, to }));
        }
        if new_n <= n {
            return Some(Ok(Remap::Shrink { p, n, new_n }));
        }
        let room = p + n == area_end && p + new_n <= PAGES && self.free(p + n, new_n - n);
        if room {
            if !extendable(kind) {
                return Some(Err(AxError::BadAddress));
            }
            return Some(Ok(Remap::Grow { p, n, new_n }));
        }
        if !may_move {
            return Some(Err(AxError::NoMemory));
        }
        if !extendable(kind) {
            return Some(Err(AxError::BadAddress));
        }
        let align = if new_size >= HUGE { HUGE } else { P };
        let phase = addr(p) % align;
        if new_n > PAGES {
            return Some(Err(AxError::NoMemory));
        }
        Some(
            (0..=PAGES - new_n)
                .find(|&q| addr(q) % align == phase && self.free(q, new_n))
                .map(|to| Remap::Move { p, n, new_n, to })
                .ok_or(AxError::NoMemory),
        )
    }

    /// Whether `plan` may fail with `NoMemory` under a frame limit: a move
    /// (page tables at the destination), or a tail that is populated now (an
    /// eager area with access).
    pub fn remap_needs_frames(&self, plan: Remap) -> bool {
        match plan {
            Remap::Shrink { .. } => false,
            Remap::Grow { p, n, .. } => self.eager_tail(p + n - 1),
            Remap::Move { .. } | Remap::Fixed { .. } => true,
        }
    }

    /// Whether a tail grown after page `last` is populated at once.
    pub fn eager_tail(&self, last: usize) -> bool {
        let q = self.pages[&last];
        q.kind == Kind::Eager && !q.prot.is_empty()
    }

    /// The `k`-th page (from 0) of a tail grown after page `last`.
    fn tail_page(&self, last: usize, k: usize) -> Page {
        let q = self.pages[&last];
        let kind = match q.kind {
            Kind::Object { obj, index, shared } => Kind::Object {
                obj,
                index: index.saturating_add(k + 1),
                shared,
            },
            kind => kind,
        };
        Page {
            prot: q.prot,
            kind,
            populated: kind == Kind::Eager && !q.prot.is_empty(),
            tag: 0,
            omap: Omap::None,
        }
    }

    /// Records a successful `mremap` of `plan`: the pages move with all
    /// their state; a grown tail continues the area.
    pub fn mremap(&mut self, plan: Remap) {
        let (p, n, new_n, to) = plan.parts();
        if let Remap::Fixed { .. } = plan {
            self.remove(to, new_n);
        }
        let moved = n.min(new_n);
        let tail: Vec<Page> = (0..new_n.saturating_sub(n))
            .map(|k| self.tail_page(p + n - 1, k))
            .collect();
        if new_n < n {
            self.remove(p + new_n, n - new_n);
        }
        if to != p {
            let pages: Vec<(usize, Page)> = (p..p + moved)
                .filter_map(|q| self.pages.remove(&q).map(|x| (q, x)))
                .collect();
            for (q, x) in pages {
                self.pages.insert(q - p + to, x);
            }
        }
        for (k, x) in tail.into_iter().enumerate() {
            self.pages.insert(to + n + k, x);
        }
    }

    /// Checks the objects the test holds (`objs`: model id and object)
    /// against the model: resident pages, each page's frame, `maps`, `wmaps`
    /// and dirty flag.
    pub fn check_objects<H: PagingHandler>(&self, objs: &[(usize, &MemObject<H>)], what: &str) {
        let mut maps: BTreeMap<(usize, usize), (usize, usize)> = BTreeMap::new();
        for q in self.pages.values() {
            if let Kind::Object { obj, index, .. } = q.kind {
                let e = maps.entry((obj, index)).or_default();
                match q.omap {
                    Omap::None => {}
                    Omap::Ro => e.0 += 1,
                    Omap::Rw => *e = (e.0 + 1, e.1 + 1),
                }
            }
        }
        for &(o, mo) in objs {
            let obj = &self.objects[&o];
            let resident = obj.pages.iter().filter(|q| q.resident).count();
            assert_eq!(mo.pages(), resident, "{what}: object {o}: resident pages");
            for (i, q) in obj.pages.iter().enumerate() {
                let st = mo.page_state(i);
                assert_eq!(
                    st.is_some(),
                    q.resident,
                    "{what}: object {o} page {i} resident"
                );
                let Some(st) = st else { continue };
                if let Some(f) = q.frame {
                    assert_eq!(st.frame.as_usize(), f, "{what}: object {o} page {i} frame");
                }
                let (m, w) = maps.get(&(o, i)).copied().unwrap_or_default();
                assert_eq!(
                    (st.maps, st.wmaps, st.dirty),
                    (m, w, q.dirty),
                    "{what}: object {o} page {i}: maps, wmaps, dirty"
                );
            }
        }
    }

    /// Learns the frames of the resident pages of the objects the test holds
    /// that no translation showed yet (made resident by a fault that then ran
    /// out of page-table frames).
    pub fn learn_frames<H: PagingHandler>(&mut self, objs: &[(usize, &MemObject<H>)]) {
        for &(o, mo) in objs {
            let obj = self.objects.get_mut(&o).unwrap();
            for (i, q) in obj.pages.iter_mut().enumerate() {
                if q.resident && q.frame.is_none() {
                    q.frame = mo.page_state(i).map(|st| st.frame.as_usize());
                }
            }
        }
    }
}

impl Model {
    /// After `plan` failed with `NoMemory` under a frame limit: nothing
    /// changed, except (the documented exception) a `FIXED` destination
    /// cleared before an eager tail ran out of frames; observed from the
    /// area list and recorded.
    pub fn mremap_no_memory<M, PTE, H>(&mut self, s: &AddrSpace<M, PTE, H>, plan: Remap, what: &str)
    where
        M: PagingMetaData<VirtAddr = VirtAddr>,
        PTE: GenericPTE,
        H: PagingHandler,
    {
        let Remap::Fixed { p, n, new_n, to } = plan else {
            return;
        };
        let cleared = !self.free(to, new_n)
            && s.areas()
                .all(|a| a.end.as_usize() <= addr(to) || a.start.as_usize() >= addr(to + new_n));
        if cleared {
            assert!(
                new_n > n && self.eager_tail(p + n - 1),
                "{what}: destination cleared by a failed call"
            );
            self.remove(to, new_n);
        }
    }
}

/// The objects a test maps with `mmap_object` (it holds them for its whole
/// run): two anonymous ones (24 pages; 5 pages and 100 bytes) and one over
/// [`BYTES`] (10.5 pages) whose pager it keeps to read what `msync` wrote.
pub struct Objects<H: PagingHandler + 'static> {
    pub objs: Vec<(usize, std::sync::Arc<MemObject<H>>)>,
    pub bytes: (usize, std::sync::Arc<mm::BytesPager>),
}

impl<H: PagingHandler + 'static> Objects<H> {
    /// Makes the objects and adds them to the model.
    pub fn new(m: &mut Model) -> Self {
        let a = MemObject::<H>::anonymous(24 * P).unwrap();
        let ia = m.add_object(vec![0; 24], false, true);
        let b = MemObject::<H>::anonymous(5 * P + 100).unwrap();
        let ib = m.add_object(vec![0; 6], false, true);
        let pager = std::sync::Arc::new(mm::BytesPager::new(&BYTES));
        let c = MemObject::<H>::new(pager.clone());
        let pages = BYTES.len().div_ceil(P);
        let ic = m.add_object((0..pages).map(bytes_tag).collect(), true, true);
        Self {
            objs: vec![(ia, a), (ib, b), (ic, c)],
            bytes: (ic, pager),
        }
    }

    fn refs(&self) -> Vec<(usize, &MemObject<H>)> {
        self.objs.iter().map(|(i, o)| (*i, &**o)).collect()
    }

    /// Checks the objects (resident pages, frames, `maps`, `wmaps`, dirty)
    /// and what the bytes pager holds against the model.
    pub fn check(&self, m: &mut Model, what: &str) {
        m.learn_frames(&self.refs());
        m.check_objects(&self.refs(), what);
        let (ic, pager) = &self.bytes;
        let contents = pager.contents();
        for (i, &tag) in m.objects[ic].pager.iter().enumerate() {
            let got = u64::from_le_bytes(contents[i * P..i * P + 8].try_into().unwrap());
            assert_eq!(got, tag, "{what}: pager page {i}");
        }
    }

    /// Lets object `slot` go and puts a new one of the same kind (and size)
    /// in its place: the old one lives on while areas map it (and a private
    /// page's first write may then take its frame instead of copying it).
    pub fn replace(&mut self, m: &mut Model, slot: usize) {
        let (o, _) = self.objs[slot];
        let pages = m.objects[&o].pages.len();
        let (id, obj) = if o == self.bytes.0 {
            let pager = std::sync::Arc::new(mm::BytesPager::new(&BYTES));
            let obj = MemObject::<H>::new(pager.clone());
            let id = m.add_object((0..pages).map(bytes_tag).collect(), true, true);
            self.bytes = (id, pager);
            (id, obj)
        } else {
            let size = self.objs[slot].1.size();
            let id = m.add_object(vec![0; pages], false, true);
            (id, MemObject::<H>::anonymous(size).unwrap())
        };
        self.objs[slot] = (id, obj);
        m.release_object(o);
    }

    /// After the address space is gone: no object page is mapped any more.
    pub fn check_unmapped(&self, m: &Model) {
        for (o, obj) in &self.objs {
            for i in 0..m.objects[o].pages.len() {
                if let Some(st) = obj.page_state(i) {
                    assert_eq!(
                        (st.maps, st.wmaps),
                        (0, 0),
                        "object {o} page {i} after drop"
                    );
                }
            }
        }
    }
}
