//! The page table, its cursor, and the walks behind them.

use core::marker::PhantomData;
use core::ops::Deref;

use memory_addr::PhysAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingHandler, PagingMetaData};

use crate::error::{MapError, ProtectError, QueryError, UnmapError};
use crate::size::{LeafSize, PageSize};

const ENTRIES: usize = 512;
const PAGE: usize = 0x1000;
/// Leaves live at heights 0 (4K), 1 (2M) and 2 (1G) only.
const MAX_LEAF_HEIGHT: usize = 2;
/// Leaf addresses remembered for a targeted flush before falling back to a full one.
const FLUSH_BATCH: usize = 16;

#[inline(always)]
const fn shift(h: usize) -> usize {
    12 + 9 * h
}

#[inline(always)]
const fn span(h: usize) -> usize {
    1 << shift(h)
}

#[inline(always)]
const fn index(la: usize, h: usize) -> usize {
    (la >> shift(h)) & (ENTRIES - 1)
}

/// End (exclusive) of the entry at height `h` that contains linear address `la`.
#[inline(always)]
const fn entry_end(la: usize, h: usize) -> usize {
    (la | (span(h) - 1)) + 1
}

#[inline(always)]
fn is_leaf<PTE: GenericPTE>(pte: &PTE, h: usize) -> bool {
    h == 0 || pte.is_huge()
}

const fn leaf_size(h: usize) -> LeafSize {
    match LeafSize::from_height(h) {
        Some(s) => s,
        None => LeafSize::Size1G,
    }
}

/// A leaf removed by an unmap: the caller frees `paddr` (if it owns it) after
/// the cursor has flushed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leaf<V> {
    /// First virtual address of the leaf.
    pub vaddr: V,
    /// First physical address of the leaf.
    pub paddr: PhysAddr,
    /// Size of the leaf.
    pub size: LeafSize,
    /// Flags the leaf had.
    pub flags: MappingFlags,
}

/// Metadata adapter: the geometry of `M` with a `flush_tlb` that does nothing.
///
/// For hosted builds (tests, benchmarks), where the architecture's flush
/// instruction would be privileged. Never use it for a live table.
pub struct NoFlush<M>(PhantomData<fn() -> M>);

impl<M: PagingMetaData> PagingMetaData for NoFlush<M> {
    const LEVELS: usize = M::LEVELS;
    const PA_MAX_BITS: usize = M::PA_MAX_BITS;
    const VA_MAX_BITS: usize = M::VA_MAX_BITS;
    const PA_MAX_ADDR: usize = M::PA_MAX_ADDR;
    type VirtAddr = M::VirtAddr;

    fn paddr_is_valid(paddr: usize) -> bool {
        M::paddr_is_valid(paddr)
    }

    fn vaddr_is_valid(vaddr: usize) -> bool {
        M::vaddr_is_valid(vaddr)
    }

    fn flush_tlb(_vaddr: Option<Self::VirtAddr>) {}
}

type Marker<M, PTE, H> = PhantomData<fn() -> (M, PTE, H)>;

enum RangeFault {
    NotAligned,
    OutOfRange,
}

/// A multi-level page table (see the crate docs for invariants and protocol).
///
/// `M` gives the geometry and the TLB flush, `PTE` the entry format, `H` the
/// table frames. Dropping the table frees every table it owns (not the data
/// frames its leaves point to); the table must not be active on any CPU then.
pub struct PageTable<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> {
    root: PhysAddr,
    /// Root slots whose entries were copied from another table (not owned).
    shared: [u64; ENTRIES / 64],
    _marker: Marker<M, PTE, H>,
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> PageTable<M, PTE, H> {
    const TOP: usize = M::LEVELS - 1;
    const LA_BITS: usize = shift(M::LEVELS);
    const LA_MASK: usize = (1 << Self::LA_BITS) - 1;
    const GEOMETRY_OK: () = assert!(
        M::LEVELS >= 3 && M::LEVELS <= 5 && core::mem::size_of::<PTE>() == 8,
        "paging supports 3- to 5-level tables of 8-byte entries"
    );

    /// Creates an empty table (allocates the root frame).
    pub fn try_new() -> Result<Self, MapError> {
        let () = Self::GEOMETRY_OK;
        let root = Self::alloc_table().ok_or(MapError::NoMemory)?;
        Ok(Self {
            root,
            shared: [0; ENTRIES / 64],
            _marker: PhantomData,
        })
    }

    /// Adopts an existing root table.
    ///
    /// # Safety
    ///
    /// `root` and every table reachable from it must be frames allocated from `H`
    /// (one frame each), reachable through `H::phys_to_virt`, in the `PTE` format
    /// with `M`'s geometry, and owned by nobody else: the returned table frees them
    /// when it is dropped or when they become empty.
    pub unsafe fn from_root(root: PhysAddr) -> Self {
        let () = Self::GEOMETRY_OK;
        Self {
            root,
            shared: [0; ENTRIES / 64],
            _marker: PhantomData,
        }
    }

    /// Physical address of the root table (what the platform loads into its
    /// translation base register).
    pub fn root_paddr(&self) -> PhysAddr {
        self.root
    }

    /// Starts a batch of changes. The cursor flushes the TLB when dropped.
    pub fn cursor(&mut self) -> Cursor<'_, M, PTE, H> {
        Cursor {
            pt: self,
            addrs: [0; FLUSH_BATCH],
            n_addrs: 0,
            full: false,
            retired: None,
        }
    }

    /// Translates `vaddr`: the physical address it maps to, the leaf's flags and
    /// the leaf's size.
    pub fn query(
        &self,
        vaddr: M::VirtAddr,
    ) -> Result<(PhysAddr, MappingFlags, LeafSize), QueryError> {
        let va: usize = vaddr.into();
        if !M::vaddr_is_valid(va) {
            return Err(QueryError::OutOfRange);
        }
        let la = va & Self::LA_MASK;
        let (pte, h) = self.find(la).ok_or(QueryError::NotMapped)?;
        let off = la & (span(h) - 1);
        Ok((
            PhysAddr::from(pte.paddr().as_usize() + off),
            pte.flags(),
            leaf_size(h),
        ))
    }

    /// Calls `f` for every present leaf, in increasing order of linear address
    /// (lower half first on sign-extended formats). Absent subtrees are skipped.
    pub fn for_each_leaf(&self, mut f: impl FnMut(Leaf<M::VirtAddr>)) {
        Self::walk_leaves(self.root, Self::TOP, 0, &mut f);
    }

    /// Number of table frames reachable from the root and owned by this table
    /// (the root included; shared root slots excluded).
    pub fn table_frames(&self) -> usize {
        let mut n = 1;
        for i in 0..ENTRIES {
            let pte = Self::read(self.root, i);
            if !self.is_shared(i) && pte.is_present() && !is_leaf(&pte, Self::TOP) {
                n += Self::count_tables(pte.paddr(), Self::TOP - 1);
            }
        }
        n
    }

    fn count_tables(table: PhysAddr, h: usize) -> usize {
        let mut n = 1;
        if h > 0 {
            for i in 0..ENTRIES {
                let pte = Self::read(table, i);
                if pte.is_present() && !is_leaf(&pte, h) {
                    n += Self::count_tables(pte.paddr(), h - 1);
                }
            }
        }
        n
    }

    fn walk_leaves<F: FnMut(Leaf<M::VirtAddr>)>(table: PhysAddr, h: usize, base: usize, f: &mut F) {
        for i in 0..ENTRIES {
            let pte = Self::read(table, i);
            if !pte.is_present() {
                continue;
            }
            let la = base + (i << shift(h));
            if is_leaf(&pte, h) {
                f(Leaf {
                    vaddr: Self::vaddr_of(la).into(),
                    paddr: pte.paddr(),
                    size: leaf_size(h),
                    flags: pte.flags(),
                });
            } else {
                Self::walk_leaves(pte.paddr(), h - 1, la, f);
            }
        }
    }

    /// The virtual address of linear address `la`: itself if valid, else its
    /// sign extension (upper half of sign-extended formats).
    fn vaddr_of(la: usize) -> usize {
        if M::vaddr_is_valid(la) {
            la
        } else {
            la | !Self::LA_MASK
        }
    }

    /// The present leaf containing linear address `la`, with its height.
    fn find(&self, la: usize) -> Option<(PTE, usize)> {
        let mut table = self.root;
        let mut h = Self::TOP;
        loop {
            let pte = Self::read(table, index(la, h));
            if !pte.is_present() {
                return None;
            }
            if is_leaf(&pte, h) {
                return Some((pte, h));
            }
            table = pte.paddr();
            h -= 1;
        }
    }

    fn is_shared(&self, slot: usize) -> bool {
        self.shared[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// Whether any root slot of the linear range `[s, e)` is shared.
    fn touches_shared(&self, s: usize, e: usize) -> bool {
        if s >= e || self.shared.iter().all(|w| *w == 0) {
            return false;
        }
        (index(s, Self::TOP)..=index(e - 1, Self::TOP)).any(|i| self.is_shared(i))
    }

    /// Checks a virtual range and returns it in linear (table-index) space.
    fn linear_range(va: usize, size: usize) -> Result<(usize, usize), RangeFault> {
        if !va.is_multiple_of(PAGE) || !size.is_multiple_of(PAGE) {
            return Err(RangeFault::NotAligned);
        }
        if !M::vaddr_is_valid(va) {
            return Err(RangeFault::OutOfRange);
        }
        if size == 0 {
            return Ok((va & Self::LA_MASK, va & Self::LA_MASK));
        }
        let last = va.checked_add(size - 1).ok_or(RangeFault::OutOfRange)?;
        if !M::vaddr_is_valid(last) || (va >> Self::LA_BITS) != (last >> Self::LA_BITS) {
            return Err(RangeFault::OutOfRange);
        }
        let s = va & Self::LA_MASK;
        Ok((s, s + size))
    }

    fn entry_ptr(table: PhysAddr, idx: usize) -> *mut PTE {
        H::phys_to_virt(table)
            .as_mut_ptr()
            .cast::<PTE>()
            .wrapping_add(idx % ENTRIES)
    }

    #[inline(always)]
    fn read(table: PhysAddr, idx: usize) -> PTE {
        // SAFETY: invariant 1 of the crate docs: `table` is a live table frame of
        // 512 eight-byte entries (GEOMETRY_OK) reachable through `phys_to_virt`,
        // owned by this page table or kept alive by whoever shared it; the index is
        // reduced modulo 512.
        unsafe { Self::entry_ptr(table, idx).read_volatile() }
    }

    #[inline(always)]
    fn write(table: PhysAddr, idx: usize, pte: PTE) {
        // SAFETY: as in `read`; callers only write tables they own (shared root
        // slots are rejected before any walk), and hold `&mut` to the page table.
        unsafe { Self::entry_ptr(table, idx).write_volatile(pte) }
    }

    /// First index in `from..=to` whose entry is not all-zero (unused), if any.
    ///
    /// A bulk scan with plain (non-volatile) loads so it can be vectorised; it
    /// only distinguishes zero from non-zero, and hardware never turns a zero
    /// entry into a non-zero one (it only sets accessed/dirty bits in present
    /// leaves), so a concurrent hardware update cannot change the answer.
    #[inline(always)]
    fn next_used(table: PhysAddr, from: usize, to: usize) -> Option<usize> {
        let base = H::phys_to_virt(table).as_ptr().cast::<u64>();
        let to = to.min(ENTRIES - 1);
        (from..=to).find(|&i| {
            // SAFETY: as in `read`: `i < 512` lies inside the live table frame,
            // which is 8-byte aligned; a plain load of an initialised word.
            unsafe { base.add(i).read() != 0 }
        })
    }

    /// Base linear address of the table at height `h` that contains `la`.
    #[inline(always)]
    const fn table_base(la: usize, h: usize) -> usize {
        la & !((span(h) << 9) - 1)
    }

    fn alloc_table() -> Option<PhysAddr> {
        let pa = H::alloc_frame()?;
        // SAFETY: `pa` is a fresh 4K frame from `H`, reachable through
        // `phys_to_virt` and not yet linked anywhere.
        unsafe { core::ptr::write_bytes(H::phys_to_virt(pa).as_mut_ptr(), 0, PAGE) };
        Some(pa)
    }

    /// Whether no present leaf overlaps the linear range `[s, e)` under `table`.
    fn range_empty(table: PhysAddr, h: usize, s: usize, e: usize) -> bool {
        let (tb, last) = (Self::table_base(s, h), index(e - 1, h));
        let mut i = index(s, h);
        while let Some(j) = Self::next_used(table, i, last) {
            let la = s.max(tb + j * span(h));
            let ee = e.min(tb + (j + 1) * span(h));
            let pte = Self::read(table, j);
            if pte.is_present()
                && (is_leaf(&pte, h) || !Self::range_empty(pte.paddr(), h - 1, la, ee))
            {
                return false;
            }
            i = j + 1;
        }
        true
    }

    fn table_is_empty(table: PhysAddr) -> bool {
        Self::next_used(table, 0, ENTRIES - 1).is_none()
    }

    fn free_tree(table: PhysAddr, h: usize) {
        if h > 0 {
            for i in 0..ENTRIES {
                let pte = Self::read(table, i);
                if pte.is_present() && !is_leaf(&pte, h) {
                    Self::free_tree(pte.paddr(), h - 1);
                }
            }
        }
        H::dealloc_frame(table);
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Drop for PageTable<M, PTE, H> {
    fn drop(&mut self) {
        for i in 0..ENTRIES {
            let pte = Self::read(self.root, i);
            if !self.is_shared(i) && pte.is_present() && !is_leaf(&pte, Self::TOP) {
                Self::free_tree(pte.paddr(), Self::TOP - 1);
            }
        }
        H::dealloc_frame(self.root);
    }
}

/// A batch of changes to a [`PageTable`].
///
/// Records what the TLB must forget; on drop (or [`Cursor::flush`]) it calls
/// `M::flush_tlb`, then frees the table frames it retired. Dereferences to the
/// table for queries.
pub struct Cursor<'a, M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> {
    pt: &'a mut PageTable<M, PTE, H>,
    addrs: [usize; FLUSH_BATCH],
    n_addrs: usize,
    full: bool,
    /// Head of the list of retired table frames, linked through their first word.
    retired: Option<PhysAddr>,
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Deref for Cursor<'_, M, PTE, H> {
    type Target = PageTable<M, PTE, H>;

    fn deref(&self) -> &Self::Target {
        self.pt
    }
}

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Drop for Cursor<'_, M, PTE, H> {
    fn drop(&mut self) {
        self.flush();
    }
}

type Pt<M, PTE, H> = PageTable<M, PTE, H>;

impl<M: PagingMetaData, PTE: GenericPTE, H: PagingHandler> Cursor<'_, M, PTE, H> {
    /// Flushes the TLB for everything changed so far, then frees the retired
    /// table frames. Does nothing if nothing changed.
    pub fn flush(&mut self) {
        if self.full {
            M::flush_tlb(None);
        } else {
            for &va in &self.addrs[..self.n_addrs] {
                M::flush_tlb(Some(va.into()));
            }
        }
        self.full = false;
        self.n_addrs = 0;
        while let Some(frame) = self.retired {
            let link = H::phys_to_virt(frame).as_ptr().cast::<usize>();
            // SAFETY: `frame` is a retired table frame we still own (not yet freed);
            // its first word holds the next link, written by `retire`.
            let next = unsafe { link.read_volatile() };
            self.retired = (next != 0).then(|| PhysAddr::from(next));
            H::dealloc_frame(frame);
        }
    }

    #[inline(always)]
    fn note(&mut self, va: usize) {
        if !self.full {
            if self.n_addrs < FLUSH_BATCH {
                self.addrs[self.n_addrs] = va;
                self.n_addrs += 1;
            } else {
                self.full = true;
            }
        }
    }

    /// Queues an unlinked (empty) table frame to be freed after the next flush.
    fn retire(&mut self, frame: PhysAddr) {
        self.full = true;
        let next = self.retired.map_or(0, |p| p.as_usize());
        let link = H::phys_to_virt(frame).as_mut_ptr().cast::<usize>();
        // SAFETY: `frame` is an empty table just unlinked from its parent and owned
        // by us. Its first word becomes the list link; a 4K-aligned address (or 0)
        // has bit 0 clear, so a stale hardware walk still sees a non-present entry.
        unsafe { link.write_volatile(next) };
        self.retired = Some(frame);
    }

    // ---------------------------------------------------------------- map

    /// Maps one page of size `S` at `vaddr` to `paddr`, creating the tables down
    /// to `S`'s level. Fails with `AlreadyMapped` if anything is mapped there
    /// (a larger leaf covering it, or smaller leaves inside it).
    pub fn map<S: PageSize>(
        &mut self,
        vaddr: M::VirtAddr,
        paddr: PhysAddr,
        flags: MappingFlags,
    ) -> Result<(), MapError> {
        let va: usize = vaddr.into();
        if !va.is_multiple_of(S::SIZE) || !paddr.as_usize().is_multiple_of(S::SIZE) {
            return Err(MapError::NotAligned);
        }
        self.map_impl(va, paddr.as_usize(), S::SIZE, flags, S::HEIGHT)
    }

    /// Maps `[vaddr, vaddr + size)` to `[paddr, paddr + size)`.
    ///
    /// With `allow_huge`, each step uses the largest leaf (1G, 2M, else 4K) that
    /// both addresses' alignment and the remaining size permit. All or nothing:
    /// on error the table is as before.
    pub fn map_region(
        &mut self,
        vaddr: M::VirtAddr,
        paddr: PhysAddr,
        size: usize,
        flags: MappingFlags,
        allow_huge: bool,
    ) -> Result<(), MapError> {
        let max_h = if allow_huge { MAX_LEAF_HEIGHT } else { 0 };
        self.map_impl(vaddr.into(), paddr.as_usize(), size, flags, max_h)
    }

    fn map_impl(
        &mut self,
        va: usize,
        pa: usize,
        size: usize,
        flags: MappingFlags,
        max_h: usize,
    ) -> Result<(), MapError> {
        let (s, e) = Pt::<M, PTE, H>::linear_range(va, size).map_err(|f| match f {
            RangeFault::NotAligned => MapError::NotAligned,
            RangeFault::OutOfRange => MapError::OutOfRange,
        })?;
        if !pa.is_multiple_of(PAGE) {
            return Err(MapError::NotAligned);
        }
        if !flags.intersects(MappingFlags::READ | MappingFlags::EXECUTE) {
            return Err(MapError::InvalidFlags);
        }
        if size == 0 {
            return Ok(());
        }
        match pa.checked_add(size - 1) {
            Some(last) if M::paddr_is_valid(last) => {}
            _ => return Err(MapError::OutOfRange),
        }
        if self.pt.touches_shared(s, e) {
            return Err(MapError::Shared);
        }
        let root = self.pt.root;
        if !Pt::<M, PTE, H>::range_empty(root, Pt::<M, PTE, H>::TOP, s, e) {
            return Err(MapError::AlreadyMapped);
        }
        let delta = va.wrapping_sub(s);
        let r = self.map_rec(root, Pt::<M, PTE, H>::TOP, s, e, pa, flags, max_h, delta);
        if r.is_err() {
            // Roll back: the range was empty, so removing everything in it (and the
            // tables that become empty) restores the previous state.
            self.unmap_rec(root, Pt::<M, PTE, H>::TOP, s, e, delta, &mut |_| {});
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn map_rec(
        &mut self,
        table: PhysAddr,
        h: usize,
        s: usize,
        e: usize,
        pa_s: usize,
        flags: MappingFlags,
        max_h: usize,
        delta: usize,
    ) -> Result<(), MapError> {
        let sp = span(h);
        let mut la = s;
        while la < e {
            let ee = entry_end(la, h).min(e);
            let pa = pa_s + (la - s);
            let idx = index(la, h);
            let pte = Pt::<M, PTE, H>::read(table, idx);
            if h <= max_h && ee - la == sp && pa & (sp - 1) == 0 {
                if !pte.is_unused() {
                    return Err(MapError::AlreadyMapped);
                }
                Pt::<M, PTE, H>::write(table, idx, PTE::new_page(pa.into(), flags, h > 0));
                self.note(la.wrapping_add(delta));
            } else {
                let child = if pte.is_unused() {
                    let child = Pt::<M, PTE, H>::alloc_table().ok_or(MapError::NoMemory)?;
                    Pt::<M, PTE, H>::write(table, idx, PTE::new_table(child));
                    child
                } else if !pte.is_present() || is_leaf(&pte, h) {
                    return Err(MapError::AlreadyMapped);
                } else {
                    pte.paddr()
                };
                self.map_rec(child, h - 1, la, ee, pa, flags, max_h, delta)?;
            }
            la = ee;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- split

    /// Makes linear address `la` a leaf boundary, splitting huge leaves that
    /// straddle it. Keeps every translation and flag.
    fn split_at(&mut self, la: usize) -> Result<(), ()> {
        let mut table = self.pt.root;
        let mut h = Pt::<M, PTE, H>::TOP;
        while la & (span(h) - 1) != 0 {
            let idx = index(la, h);
            let pte = Pt::<M, PTE, H>::read(table, idx);
            if !pte.is_present() {
                return Ok(());
            }
            let next = if is_leaf(&pte, h) {
                let child = Self::split_leaf(&pte, h).ok_or(())?;
                Pt::<M, PTE, H>::write(table, idx, PTE::new_table(child));
                self.full = true;
                child
            } else {
                pte.paddr()
            };
            table = next;
            h -= 1;
        }
        Ok(())
    }

    /// A new table of 512 leaves one size down, covering what `pte` (a leaf at
    /// height `h > 0`) maps, with its flags.
    fn split_leaf(pte: &PTE, h: usize) -> Option<PhysAddr> {
        let child = H::alloc_frame()?;
        let flags = pte.flags();
        let base = pte.paddr().as_usize();
        let cs = span(h - 1);
        for i in 0..ENTRIES {
            let leaf = PTE::new_page(PhysAddr::from(base + i * cs), flags, h - 1 > 0);
            Pt::<M, PTE, H>::write(child, i, leaf);
        }
        Some(child)
    }

    /// Checks a range, rejects shared slots, and splits at both edges.
    fn prepare_range(&mut self, va: usize, size: usize) -> Result<(usize, usize), RangePrep> {
        let (s, e) = Pt::<M, PTE, H>::linear_range(va, size).map_err(|f| match f {
            RangeFault::NotAligned => RangePrep::NotAligned,
            RangeFault::OutOfRange => RangePrep::OutOfRange,
        })?;
        if s == e {
            return Ok((s, e));
        }
        if self.pt.touches_shared(s, e) {
            return Err(RangePrep::Shared);
        }
        self.split_at(s).map_err(|()| RangePrep::NoMemory)?;
        if e <= Pt::<M, PTE, H>::LA_MASK {
            self.split_at(e).map_err(|()| RangePrep::NoMemory)?;
        }
        Ok((s, e))
    }

    // ---------------------------------------------------------------- unmap

    /// Unmaps whatever is mapped in `[vaddr, vaddr + size)` (any 4K-aligned range;
    /// holes are fine and cost nothing). Huge leaves crossing the edges are split
    /// first; tables left empty are unlinked and freed after the flush.
    ///
    /// `on_leaf` receives each removed leaf; free its frame only after the flush.
    /// On error nothing was unmapped.
    pub fn unmap_region(
        &mut self,
        vaddr: M::VirtAddr,
        size: usize,
        mut on_leaf: impl FnMut(Leaf<M::VirtAddr>),
    ) -> Result<(), UnmapError> {
        let va: usize = vaddr.into();
        let (s, e) = self.prepare_range(va, size).map_err(|p| match p {
            RangePrep::NotAligned => UnmapError::NotAligned,
            RangePrep::OutOfRange => UnmapError::OutOfRange,
            RangePrep::Shared => UnmapError::Shared,
            RangePrep::NoMemory => UnmapError::NoMemory,
        })?;
        if s < e {
            let root = self.pt.root;
            let delta = va.wrapping_sub(s);
            self.unmap_rec(root, Pt::<M, PTE, H>::TOP, s, e, delta, &mut on_leaf);
        }
        Ok(())
    }

    /// Unmaps the page of size `S` at `vaddr` and returns it. If a larger leaf
    /// covers it, that leaf is split and the rest stays mapped.
    pub fn unmap<S: PageSize>(
        &mut self,
        vaddr: M::VirtAddr,
    ) -> Result<Leaf<M::VirtAddr>, UnmapError> {
        let va: usize = vaddr.into();
        if !va.is_multiple_of(S::SIZE) {
            return Err(UnmapError::NotAligned);
        }
        if !M::vaddr_is_valid(va) {
            return Err(UnmapError::OutOfRange);
        }
        match self.pt.find(va & Pt::<M, PTE, H>::LA_MASK) {
            None => return Err(UnmapError::NotMapped),
            Some((_, h)) if h < S::HEIGHT => return Err(UnmapError::SizeMismatch),
            Some(_) => {}
        }
        let mut out = None;
        self.unmap_region(vaddr, S::SIZE, |l| out = Some(l))?;
        out.ok_or(UnmapError::NotMapped)
    }

    /// Clears the leaves in `[s, e)` under `table` (edges are leaf boundaries).
    /// Returns whether `table` is empty afterwards.
    fn unmap_rec<F: FnMut(Leaf<M::VirtAddr>)>(
        &mut self,
        table: PhysAddr,
        h: usize,
        s: usize,
        e: usize,
        delta: usize,
        on_leaf: &mut F,
    ) -> bool {
        let (tb, last) = (Pt::<M, PTE, H>::table_base(s, h), index(e - 1, h));
        let mut i = index(s, h);
        while let Some(idx) = Pt::<M, PTE, H>::next_used(table, i, last) {
            i = idx + 1;
            let la = s.max(tb + idx * span(h));
            let ee = e.min(tb + (idx + 1) * span(h));
            let pte = Pt::<M, PTE, H>::read(table, idx);
            if !pte.is_present() {
                Pt::<M, PTE, H>::write(table, idx, PTE::empty_entry());
            } else if is_leaf(&pte, h) {
                // Edges were split, so this leaf lies wholly inside the range.
                Pt::<M, PTE, H>::write(table, idx, PTE::empty_entry());
                let va = la.wrapping_add(delta);
                self.note(va);
                on_leaf(Leaf {
                    vaddr: va.into(),
                    paddr: pte.paddr(),
                    size: leaf_size(h),
                    flags: pte.flags(),
                });
            } else {
                let child = pte.paddr();
                if self.unmap_rec(child, h - 1, la, ee, delta, on_leaf) {
                    Pt::<M, PTE, H>::write(table, idx, PTE::empty_entry());
                    self.retire(child);
                }
            }
        }
        if h == Pt::<M, PTE, H>::TOP {
            return false; // the root is never retired
        }
        let whole = s & (span(h + 1) - 1) == 0 && e - s == span(h + 1);
        whole || Pt::<M, PTE, H>::table_is_empty(table)
    }

    // ---------------------------------------------------------------- protect

    /// Sets `flags` on every leaf in `[vaddr, vaddr + size)` (any 4K-aligned range;
    /// holes are skipped whole). Huge leaves crossing the edges are split first.
    /// On error no flags were changed.
    pub fn protect_region(
        &mut self,
        vaddr: M::VirtAddr,
        size: usize,
        flags: MappingFlags,
    ) -> Result<(), ProtectError> {
        if !flags.intersects(MappingFlags::READ | MappingFlags::EXECUTE) {
            return Err(ProtectError::InvalidFlags);
        }
        let va: usize = vaddr.into();
        let (s, e) = self.prepare_range(va, size).map_err(|p| match p {
            RangePrep::NotAligned => ProtectError::NotAligned,
            RangePrep::OutOfRange => ProtectError::OutOfRange,
            RangePrep::Shared => ProtectError::Shared,
            RangePrep::NoMemory => ProtectError::NoMemory,
        })?;
        if s < e {
            let root = self.pt.root;
            self.protect_rec(root, Pt::<M, PTE, H>::TOP, s, e, va.wrapping_sub(s), flags);
        }
        Ok(())
    }

    /// Sets `flags` on the page of size `S` at `vaddr`. If a larger leaf covers
    /// it, that leaf is split and the rest keeps its flags.
    pub fn protect<S: PageSize>(
        &mut self,
        vaddr: M::VirtAddr,
        flags: MappingFlags,
    ) -> Result<(), ProtectError> {
        let va: usize = vaddr.into();
        if !va.is_multiple_of(S::SIZE) {
            return Err(ProtectError::NotAligned);
        }
        if !M::vaddr_is_valid(va) {
            return Err(ProtectError::OutOfRange);
        }
        if !flags.intersects(MappingFlags::READ | MappingFlags::EXECUTE) {
            return Err(ProtectError::InvalidFlags);
        }
        match self.pt.find(va & Pt::<M, PTE, H>::LA_MASK) {
            None => return Err(ProtectError::NotMapped),
            Some((_, h)) if h < S::HEIGHT => return Err(ProtectError::SizeMismatch),
            Some(_) => {}
        }
        self.protect_region(vaddr, S::SIZE, flags)
    }

    fn protect_rec(
        &mut self,
        table: PhysAddr,
        h: usize,
        s: usize,
        e: usize,
        delta: usize,
        flags: MappingFlags,
    ) {
        let (tb, last) = (Pt::<M, PTE, H>::table_base(s, h), index(e - 1, h));
        let mut i = index(s, h);
        while let Some(idx) = Pt::<M, PTE, H>::next_used(table, i, last) {
            i = idx + 1;
            let la = s.max(tb + idx * span(h));
            let ee = e.min(tb + (idx + 1) * span(h));
            let mut pte = Pt::<M, PTE, H>::read(table, idx);
            if pte.is_present() {
                if is_leaf(&pte, h) {
                    pte.set_flags(flags, h > 0);
                    Pt::<M, PTE, H>::write(table, idx, pte);
                    self.note(la.wrapping_add(delta));
                } else {
                    self.protect_rec(pte.paddr(), h - 1, la, ee, delta, flags);
                }
            }
        }
    }

    // ---------------------------------------------------------------- sharing

    /// Copies the root entries of the upper half of the translated space (root
    /// slots 256..512) from `other`, for address spaces that share the kernel
    /// half. The copied slots are not owned: this table never frees, changes or
    /// maps into them (operations touching them fail with `Shared`).
    ///
    /// Fails with `AlreadyMapped` if this table has anything of its own there.
    /// Only meaningful for formats where one table covers both halves (x86_64,
    /// RISC-V Sv39/Sv48); on AArch64 the halves use separate tables.
    ///
    /// # Safety
    ///
    /// The tables referenced by the copied entries must stay alive and in place
    /// as long as this table exists: `other` must outlive it, and nothing may
    /// unmap `other`'s upper half in a way that frees those tables.
    pub unsafe fn copy_kernel_half(
        &mut self,
        other: &PageTable<M, PTE, H>,
    ) -> Result<(), MapError> {
        let root = self.pt.root;
        for i in ENTRIES / 2..ENTRIES {
            if !self.pt.is_shared(i) && !Pt::<M, PTE, H>::read(root, i).is_unused() {
                return Err(MapError::AlreadyMapped);
            }
        }
        for i in ENTRIES / 2..ENTRIES {
            Pt::<M, PTE, H>::write(root, i, Pt::<M, PTE, H>::read(other.root, i));
            self.pt.shared[i / 64] |= 1 << (i % 64);
        }
        self.full = true;
        Ok(())
    }
}

enum RangePrep {
    NotAligned,
    OutOfRange,
    Shared,
    NoMemory,
}

/// An all-zero entry (every format treats it as unused).
trait EmptyEntry: GenericPTE {
    fn empty_entry() -> Self;
}

impl<P: GenericPTE> EmptyEntry for P {
    #[inline(always)]
    fn empty_entry() -> Self {
        let mut p = P::new_table(PhysAddr::from(0));
        p.clear();
        p
    }
}
