//! Memory objects: pages that several mappings, in one or several address
//! spaces, map at once (shared memory, and files mapped shared or private).
//!
//! A [`MemObject`] is an object of `size` bytes, cut into 4 KiB pages
//! numbered from 0 (page `i` holds bytes `[i * 4096, (i + 1) * 4096)`; the
//! last page may be partial, its bytes past the size read as zero). Behind
//! it is a [`Pager`] (`pager.rs`) that gives the size and the pages'
//! contents: [`AnonPager`] (anonymous shared memory, reads zeros) and
//! [`BytesPager`] (bytes built into the image, a file with known content).
//!
//! A page is *resident* when the object holds a frame with its content.
//! The first [`MemObject::map_page`] of a page makes it resident: a frame
//! from the frame allocator `H`, filled by [`Pager::read`]. Every mapping of
//! the page maps that one frame, so all of them see each other's writes.
//! [`MemObject::sync`] writes dirty pages back through [`Pager::write`].
//!
//! The address spaces' backends drive an object (the calls marked *for
//! backends*); the object does not know the mappings, only how many there
//! are.
//!
//! # Per-page state and its invariants
//! Each resident page has a frame and three pieces of state:
//! - `maps`: how many page-table entries (in any address space) map the
//!   frame. [`MemObject::map_page`] adds one, [`MemObject::unmap_page`]
//!   takes one away.
//! - `wmaps`: how many of those entries are writable. `map_page(.., true)`
//!   and [`MemObject::make_writable`] add one; `unmap_page(.., true)` and
//!   [`MemObject::make_readonly`] take one away. Always `wmaps <= maps`.
//! - `dirty`: the frame may hold bytes the pager does not have. Set whenever
//!   a writable mapping appears; cleared by `sync` only when it wrote the
//!   page back while `wmaps == 0`. So `wmaps > 0` implies `dirty`: a page
//!   that can be written without a fault is never clean.
//!
//! 1. **Residency is permanent.** A page, once resident, keeps its frame
//!    until the object is dropped (there is no eviction yet). So a frame
//!    that `map_page` returned stays valid for as long as the object lives,
//!    and a page that is not resident has never been written back: the
//!    pager's bytes for it cannot change while it stays non-resident.
//! 2. **The counts never wrap.** They are `usize` and grow with
//!    `checked_add`. Each count is at most the number of page-table entries
//!    that map the frame; each entry takes 8 bytes of memory, so there can
//!    never be `usize::MAX` of them. A failed `checked_add` is therefore a
//!    broken invariant, as is a count that would go below zero, an
//!    `unmap_page` whose frame is not the page's, or a call for a page that
//!    is not resident where a mapping of it must exist (below).
//! 3. `wmaps <= maps` and `wmaps > 0 => dirty`, after every call.
//!
//! A broken invariant stops the kernel: the check panics with a message that
//! names the invariant (the crate's policy, see "Broken invariants" in the
//! crate docs). Bad arguments that can come from an app (a page past the end
//! of the object) are errors ([`ObjectError`]), never panics.
//!
//! # Locking
//! The object has one lock, around its page map. Backends call the object
//! while they hold an address space's table lock, so **the object's lock is
//! the innermost lock of the memory module**: while holding it the object
//! calls nothing that takes another lock except the heap allocator (a
//! `BTreeMap` insert allocates a node), which, like the frame allocator,
//! takes only its own leaf lock and never calls back into the memory module.
//! Critical sections are short: a map lookup or insert and a few counter
//! updates (`sync` also scans clean pages up to the next dirty one).
//!
//! Pager calls, frame allocation and all page copies run **without** the
//! object's lock, so a slow pager never holds up other address spaces
//! using the object. This is correct because of invariant 1:
//! - [`MemObject::map_page`] of a page that is not resident allocates and
//!   fills a frame without the lock, then takes the lock and looks again.
//!   If another caller made the page resident meanwhile, it counts its
//!   mapping on that frame and frees its own (after unlocking): every
//!   mapping sees one frame, and exactly one stays allocated. If not, no
//!   `sync` can have written that page back while it was read (only resident
//!   pages are written back), so the bytes read are the page's content.
//! - [`MemObject::copy_page`] of a page that is not resident reads it
//!   through the pager and then looks again under the lock: if the page
//!   became resident meanwhile (and a `sync` may have changed the pager's
//!   bytes during the read), it copies from the resident frame instead.
//! - [`MemObject::sync`] clears a page's dirty flag under the lock *before*
//!   it writes the page (if `wmaps == 0`), and sets it again if the write
//!   fails. A mapping that becomes writable during the write sets the flag
//!   again itself, so no write is ever lost to a clean flag.
//!
//! Pagers still run under the caller's locks (a page fault holds the table
//! lock); `pager.rs` states what that asks of a pager.
//!
//! # When frames are freed
//! Only when the object is dropped ([`Drop`]): every resident frame goes
//! back to `H` with `H::dealloc_frame`. The contract that makes this safe:
//! - the object is dropped only when nothing holds its [`Arc`], and every
//!   mapping's backend holds one;
//! - the address spaces drop the backends only after the TLB flush of the
//!   operation that removed their mappings (the crate's flush and free
//!   protocol), and every mapping was given back with `unmap_page` before.
//!
//! So no CPU can still reach a frame when it is freed. A page with
//! `maps > 0` at drop means a mapping was never given back: a broken
//! invariant. Dirty pages are *not* written back at drop (drop cannot
//! report an error): whoever wants the data in the pager calls
//! [`MemObject::sync`] first.
//!
//! A frame that lost a race in `map_page`, or that a failed pager read
//! filled, was never handed out: it is freed at once.

mod pager;

pub use pager::{AnonPager, BytesPager, PAGE_SIZE, Pager, PagerError};

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::collections::btree_map::Entry;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{Ordering, fence};

use axerrno::AxError;
use memory_addr::PhysAddr;
use page_table_multiarch::PagingHandler;
use spin::Mutex;

/// Stops: an invariant of memory objects does not hold (`what` says which).
///
/// The same message format as the crate's `invariant::broken`.
#[cold]
#[inline(never)]
#[track_caller]
fn broken(what: fmt::Arguments<'_>) -> ! {
    panic!("mm: broken invariant: {what}")
}

/// Why a call on a [`MemObject`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectError {
    /// The page lies past the end of the object (`index * 4096 >= size`).
    /// A fault there is reported the way Linux does: `SIGBUS`.
    PastEnd,
    /// No frame for the page (nothing was left behind).
    NoMemory,
    /// The pager failed ([`PagerError`]).
    Io,
}

impl From<PagerError> for ObjectError {
    fn from(_: PagerError) -> Self {
        Self::Io
    }
}

impl From<ObjectError> for AxError {
    /// `PastEnd` becomes `BadAddress` (a system call that touches such a
    /// page fails with `EFAULT`; a page fault there is turned into `SIGBUS`
    /// by the fault path before any conversion), `NoMemory` and `Io` keep
    /// their names.
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::PastEnd => AxError::BadAddress,
            ObjectError::NoMemory => AxError::NoMemory,
            ObjectError::Io => AxError::Io,
        }
    }
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PastEnd => "page past the end of the object",
            Self::NoMemory => "no frame for the page",
            Self::Io => "pager I/O error",
        })
    }
}

/// A resident page (the module docs give the invariants).
struct Page {
    /// The frame that holds the page; owned by the object until it drops.
    frame: PhysAddr,
    /// Page-table entries that map `frame`.
    maps: usize,
    /// Writable ones among them (`wmaps <= maps`).
    wmaps: usize,
    /// The frame may hold bytes the pager does not have.
    dirty: bool,
    /// A mapping of the page was ever writable: the frame may differ from
    /// what the pager read (even when `dirty` was cleared by a `sync`, a
    /// pager that keeps nothing, like [`AnonPager`], cannot give it back).
    written: bool,
}

/// The state of one resident page, as [`MemObject::page_state`] reports it
/// (for audits and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageState {
    /// The page's frame.
    pub frame: PhysAddr,
    /// Page-table entries that map it.
    pub maps: usize,
    /// Writable ones among them.
    pub wmaps: usize,
    /// Whether the frame may hold bytes the pager does not have.
    pub dirty: bool,
}

/// A memory object: pages that several mappings can map, backed by a
/// [`Pager`], with frames from `H`. The module docs describe it.
pub struct MemObject<H: PagingHandler + 'static> {
    pager: Box<dyn Pager>,
    /// `pager.size()`, read once (it is fixed for the pager's life).
    size: usize,
    /// Resident pages by index. The innermost lock of the memory module.
    pages: Mutex<BTreeMap<usize, Page>>,
    _handler: PhantomData<fn() -> H>,
}

/// The bytes of the 4 KiB frame `pa`, for writing.
///
/// # Safety
/// `pa` is a 4 KiB frame reachable at `H::phys_to_virt(pa)`, and nothing
/// else reads or writes it while the returned slice lives.
unsafe fn frame_mut<'a, H: PagingHandler + 'static>(pa: PhysAddr) -> &'a mut [u8] {
    let ptr = H::phys_to_virt(pa).as_mut_ptr();
    // SAFETY: the caller guarantees the frame is reachable there and ours
    // alone for the slice's life; 4096 bytes is its size.
    unsafe { core::slice::from_raw_parts_mut(ptr, PAGE_SIZE) }
}

/// The bytes of the 4 KiB frame `pa`, for reading.
///
/// # Safety
/// `pa` is a 4 KiB frame reachable at `H::phys_to_virt(pa)` that is not
/// freed while the returned slice lives, and no code of this program writes
/// it meanwhile. (Apps may write it through their mappings; see the
/// callers' comments.)
unsafe fn frame_ref<'a, H: PagingHandler + 'static>(pa: PhysAddr) -> &'a [u8] {
    let ptr = H::phys_to_virt(pa).as_ptr();
    // SAFETY: the caller guarantees the frame is reachable there and stays
    // allocated for the slice's life; 4096 bytes is its size.
    unsafe { core::slice::from_raw_parts(ptr, PAGE_SIZE) }
}

/// `count + 1`, or a broken invariant (the module docs say why it cannot
/// overflow).
#[track_caller]
fn inc(count: usize, what: &str, index: usize) -> usize {
    count.checked_add(1).unwrap_or_else(|| {
        broken(format_args!(
            "object page {index}: {what} overflows (it is bounded by the page-table entries)"
        ))
    })
}

impl Page {
    /// Counts one more mapping of this page; returns its frame.
    #[track_caller]
    fn count_map(&mut self, index: usize, writable: bool) -> PhysAddr {
        self.maps = inc(self.maps, "maps", index);
        if writable {
            self.wmaps = inc(self.wmaps, "wmaps", index);
            self.dirty = true;
            self.written = true;
        }
        self.frame
    }
}

impl<H: PagingHandler + 'static> MemObject<H> {
    /// An object backed by `pager` (its size is `pager.size()`). A pager of
    /// size 0 makes an object without pages: every page is past its end.
    pub fn new(pager: impl Pager + 'static) -> Arc<Self> {
        let size = pager.size();
        Arc::new(Self {
            pager: Box::new(pager),
            size,
            pages: Mutex::new(BTreeMap::new()),
            _handler: PhantomData,
        })
    }

    /// Anonymous shared memory of `size` bytes (every page reads zeros until
    /// written). `InvalidInput` if `size` is 0.
    pub fn anonymous(size: usize) -> Result<Arc<Self>, AxError> {
        if size == 0 {
            return Err(AxError::InvalidInput);
        }
        Ok(Self::new(AnonPager::new(size)))
    }

    /// An object over `bytes` (see [`BytesPager`]).
    pub fn from_bytes(bytes: &'static [u8]) -> Arc<Self> {
        Self::new(BytesPager::new(bytes))
    }

    /// Size of the object in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Resident pages (each holds one frame).
    pub fn pages(&self) -> usize {
        self.pages.lock().len()
    }

    /// Every resident page with its frame, by index (for audits: every frame
    /// a mapping of the object maps is one of these).
    pub fn resident_frames(&self) -> Vec<(usize, PhysAddr)> {
        let pages = self.pages.lock();
        pages.iter().map(|(&i, p)| (i, p.frame)).collect()
    }

    /// Resident pages mapped at least once (`maps > 0`).
    pub fn mapped_pages(&self) -> usize {
        self.pages.lock().values().filter(|p| p.maps > 0).count()
    }

    /// Resident pages that are dirty (may hold bytes the pager does not have).
    pub fn dirty_pages(&self) -> usize {
        self.pages.lock().values().filter(|p| p.dirty).count()
    }

    /// The state of page `index`, or `None` if it is not resident.
    pub fn page_state(&self, index: usize) -> Option<PageState> {
        let pages = self.pages.lock();
        pages.get(&index).map(|p| PageState {
            frame: p.frame,
            maps: p.maps,
            wmaps: p.wmaps,
            dirty: p.dirty,
        })
    }

    /// The byte offset of page `index`, or `PastEnd` if the page starts at
    /// or past the end of the object.
    fn offset(&self, index: usize) -> Result<usize, ObjectError> {
        index
            .checked_mul(PAGE_SIZE)
            .filter(|&offset| offset < self.size)
            .ok_or(ObjectError::PastEnd)
    }

    /// For backends: a new mapping of page `index` (writable or not). Returns
    /// the page's frame, which the caller maps.
    ///
    /// A page that is not resident is made resident first (a frame from `H`,
    /// filled by the pager, without the object's lock: see the module docs).
    /// Counts the mapping (`maps`; `wmaps` and dirty if `writable`). Issues
    /// a release fence before it returns, so the frame's content is ordered
    /// before a page-table entry the caller writes next.
    ///
    /// Errors (nothing changed, nothing left allocated): `PastEnd` if the
    /// page starts at or past the end of the object, `NoMemory` if `H` has no
    /// frame, `Io` if the pager failed.
    pub fn map_page(&self, index: usize, writable: bool) -> Result<PhysAddr, ObjectError> {
        let offset = self.offset(index)?;
        if let Some(page) = self.pages.lock().get_mut(&index) {
            let pa = page.count_map(index, writable);
            fence(Ordering::Release);
            return Ok(pa);
        }
        let frame = H::alloc_frame().ok_or(ObjectError::NoMemory)?;
        let read = {
            // SAFETY: `frame` comes fresh from `H`, which hands out 4 KiB
            // frames reachable at `phys_to_virt`; it is ours alone until it is
            // inserted below, after the slice's last use.
            let bytes = unsafe { frame_mut::<H>(frame) };
            self.pager.read(offset, bytes)
        };
        if let Err(e) = read {
            H::dealloc_frame(frame);
            return Err(e.into());
        }
        let mut pages = self.pages.lock();
        let (pa, lost) = match pages.entry(index) {
            // Another caller made the page resident meanwhile: use its frame.
            Entry::Occupied(mut e) => (e.get_mut().count_map(index, writable), true),
            Entry::Vacant(e) => {
                let page = e.insert(Page {
                    frame,
                    maps: 0,
                    wmaps: 0,
                    dirty: false,
                    written: false,
                });
                (page.count_map(index, writable), false)
            }
        };
        drop(pages);
        if lost {
            // Never handed out, so no CPU can reach it.
            H::dealloc_frame(frame);
        }
        fence(Ordering::Release);
        Ok(pa)
    }

    /// The resident page `index`, or a broken invariant naming `op` (a
    /// mapping of the page exists, so it must be resident).
    #[track_caller]
    fn resident<'a>(pages: &'a mut BTreeMap<usize, Page>, index: usize, op: &str) -> &'a mut Page {
        match pages.get_mut(&index) {
            Some(page) => page,
            None => broken(format_args!(
                "object {op} of page {index}, which is not resident (no mapping of it exists)"
            )),
        }
    }

    /// For backends: one mapping of page `index`, of frame `pa`, is gone
    /// (`writable`: it was a writable one). The frame stays resident.
    ///
    /// The caller must not let the object drop before the TLB flush that
    /// removes this mapping from every CPU (see "When frames are freed").
    ///
    /// Panics (broken invariant) if the page is not resident, `pa` is not
    /// its frame, or a count would go below zero or below the other.
    #[track_caller]
    pub fn unmap_page(&self, index: usize, pa: PhysAddr, writable: bool) {
        let mut pages = self.pages.lock();
        let page = Self::resident(&mut pages, index, "unmap");
        if page.frame != pa {
            let frame = page.frame;
            drop(pages);
            broken(format_args!(
                "object unmap of page {index} gives back {pa:#x}, but its frame is {frame:#x}"
            ));
        }
        let maps = page.maps.checked_sub(1);
        let wmaps = if writable {
            page.wmaps.checked_sub(1)
        } else {
            Some(page.wmaps)
        };
        match (maps, wmaps) {
            (Some(maps), Some(wmaps)) if wmaps <= maps => {
                page.maps = maps;
                page.wmaps = wmaps;
            }
            _ => {
                let (maps, wmaps) = (page.maps, page.wmaps);
                drop(pages);
                broken(format_args!(
                    "object unmap (writable: {writable}) of page {index} with maps {maps}, \
                     wmaps {wmaps}: a count would go below zero or wmaps above maps"
                ));
            }
        }
    }

    /// For backends: a read-only mapping of page `index` became writable
    /// (`wmaps += 1`; the page is dirty).
    ///
    /// Panics (broken invariant) if the page is not resident or has no
    /// read-only mapping (`wmaps == maps`).
    #[track_caller]
    pub fn make_writable(&self, index: usize) {
        let mut pages = self.pages.lock();
        let page = Self::resident(&mut pages, index, "make_writable");
        if page.wmaps >= page.maps {
            let (maps, wmaps) = (page.maps, page.wmaps);
            drop(pages);
            broken(format_args!(
                "object make_writable of page {index} with maps {maps}, wmaps {wmaps}: \
                 no read-only mapping to make writable"
            ));
        }
        page.wmaps = inc(page.wmaps, "wmaps", index);
        page.dirty = true;
        page.written = true;
    }

    /// For backends: a writable mapping of page `index` became read-only
    /// (`wmaps -= 1`; the page stays dirty until a `sync` writes it back).
    ///
    /// Panics (broken invariant) if the page is not resident or has no
    /// writable mapping.
    #[track_caller]
    pub fn make_readonly(&self, index: usize) {
        let mut pages = self.pages.lock();
        let page = Self::resident(&mut pages, index, "make_readonly");
        match page.wmaps.checked_sub(1) {
            Some(wmaps) => page.wmaps = wmaps,
            None => {
                drop(pages);
                broken(format_args!(
                    "object make_readonly of page {index} with wmaps 0: no writable mapping"
                ));
            }
        }
    }

    /// *For backends.* Hands the resident page `index`, whose frame is `pa`,
    /// over to the caller's one mapping of it, if that mapping is its only
    /// one (`maps == 1`), not writable (`wmaps == 0`), and the page was never
    /// mapped writable (its frame holds exactly what the pager gives): the
    /// page stops being resident (the object forgets it; a later `map_page`
    /// reads the same bytes through the pager again) and the frame becomes
    /// the caller's. Returns whether it did. Meant for a private mapping's
    /// write to a page nobody else holds: the caller must hold the only
    /// reference to the object, so nobody can map the page meanwhile.
    pub fn take_sole(&self, index: usize, pa: PhysAddr) -> bool {
        let mut pages = self.pages.lock();
        let sole = pages
            .get(&index)
            .is_some_and(|p| p.frame == pa && p.maps == 1 && p.wmaps == 0 && !p.written);
        if sole {
            pages.remove(&index);
        }
        sole
    }

    /// For backends: whether `pa` is the object's resident frame of page
    /// `index` (a private mapping tells the object's pages from its own
    /// copies this way). `false` for a page that is not resident or past the
    /// end.
    pub fn is_frame(&self, index: usize, pa: PhysAddr) -> bool {
        self.pages.lock().get(&index).is_some_and(|p| p.frame == pa)
    }

    /// For backends: fills the frame `dst` with the current content of page
    /// `index` (a private mapping's copy on write, or its first read of a
    /// page it will write). From the resident frame if there is one, else
    /// straight from the pager: no page is made resident and no frame is
    /// allocated.
    ///
    /// Errors: `PastEnd` past the end of the object, `Io` if the pager
    /// failed (`dst` holds unspecified bytes then).
    ///
    /// Panics (broken invariant) if `dst` is the page's own frame.
    ///
    /// # Safety
    /// `dst` is a 4 KiB frame reachable at `H::phys_to_virt(dst)` that the
    /// caller owns: nothing else reads or writes it during the call (it is
    /// not mapped anywhere yet, and it is not a frame of this object).
    pub unsafe fn copy_page(&self, index: usize, dst: PhysAddr) -> Result<(), ObjectError> {
        let offset = self.offset(index)?;
        let resident = self.pages.lock().get(&index).map(|p| p.frame);
        let src = match resident {
            Some(src) => src,
            None => {
                // SAFETY: the caller gives us `dst` alone, and it is reachable
                // at `phys_to_virt`; the slice ends with this statement.
                self.pager.read(offset, unsafe { frame_mut::<H>(dst) })?;
                // A page that became resident during the read may have been
                // written back meanwhile (the read may be torn): copy from its
                // frame. One still not resident was never written back.
                match self.pages.lock().get(&index).map(|p| p.frame) {
                    Some(src) => src,
                    None => return Ok(()),
                }
            }
        };
        if src == dst {
            broken(format_args!(
                "object copy_page of page {index} into its own frame {dst:#x}"
            ));
        }
        let from = H::phys_to_virt(src).as_ptr();
        let to = H::phys_to_virt(dst).as_mut_ptr();
        // SAFETY: `src` is resident, so it stays allocated while `&self`
        // lives (residency is permanent); `dst` is the caller's alone; both
        // are 4 KiB frames reachable at `phys_to_virt`, and distinct
        // (checked above), so they do not overlap. Apps may write `src`
        // through writable mappings during the copy (outside this program's
        // memory model, as in every kernel copy of user memory): the copy
        // then holds bytes from before or after those writes, all valid `u8`.
        unsafe { core::ptr::copy_nonoverlapping(from, to, PAGE_SIZE) };
        Ok(())
    }

    /// For backends (`msync`, and before an object is given up): writes
    /// every dirty resident page with index in `[first, end)` back through
    /// the pager. Returns how many pages were written. An empty range
    /// (`first >= end`) writes nothing.
    ///
    /// A page written while it has no writable mapping (`wmaps == 0`)
    /// becomes clean; one still mapped writable somewhere stays dirty (it
    /// can be written again without a fault), so the next `sync` writes it
    /// again.
    ///
    /// On a pager error: stops and returns `Io`. The pages written before
    /// stay clean; the failed page and those after it stay dirty.
    pub fn sync(&self, first: usize, end: usize) -> Result<usize, ObjectError> {
        let mut next = first;
        let mut written = 0;
        while next < end {
            let found = {
                let mut pages = self.pages.lock();
                pages
                    .range_mut(next..end)
                    .find(|(_, p)| p.dirty)
                    .map(|(&index, p)| {
                        // Cleared before the write, so that a mapping made
                        // writable during it marks the page dirty again.
                        let cleaned = p.wmaps == 0;
                        if cleaned {
                            p.dirty = false;
                        }
                        (index, p.frame, cleaned)
                    })
            };
            let Some((index, frame, cleaned)) = found else {
                break;
            };
            // Resident pages lie below the end of the object: no overflow.
            let offset = index * PAGE_SIZE;
            // SAFETY: `frame` is resident, so it stays allocated while `&self`
            // lives (residency is permanent), and it is reachable at
            // `phys_to_virt`; this program does not write the object's frames
            // after they are filled (only `map_page` writes, before the page
            // is resident). Apps may write it through writable mappings during
            // the call (outside this program's memory model, as in every
            // kernel copy of user memory): the pager then gets bytes from
            // before or after those writes, all valid `u8`, and such a page
            // stays dirty (`wmaps > 0`) for the next `sync`.
            let bytes = unsafe { frame_ref::<H>(frame) };
            if let Err(e) = self.pager.write(offset, bytes) {
                if cleaned && let Some(page) = self.pages.lock().get_mut(&index) {
                    page.dirty = true;
                }
                return Err(e.into());
            }
            written += 1;
            // `index < end`, so this cannot overflow.
            next = index + 1;
        }
        Ok(written)
    }
}

impl<H: PagingHandler + 'static> Drop for MemObject<H> {
    /// Frees every resident frame. See "When frames are freed" in the module
    /// docs for why no CPU can reach them any more; a page still mapped is a
    /// broken invariant. Dirty pages are not written back.
    fn drop(&mut self) {
        let pages = core::mem::take(self.pages.get_mut());
        if let Some((index, page)) = pages.iter().find(|(_, p)| p.maps > 0) {
            broken(format_args!(
                "object dropped while page {index} has maps {} (a mapping was never given back)",
                page.maps
            ));
        }
        for page in pages.into_values() {
            H::dealloc_frame(page.frame);
        }
    }
}

impl<H: PagingHandler + 'static> fmt::Debug for MemObject<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemObject")
            .field("size", &self.size)
            .field("pages", &self.pages())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::vec;
    use std::sync::Barrier;
    use testing::{SharedTrackingHandler, TrackingHandler};

    type Obj = MemObject<TrackingHandler>;

    /// 2.5 pages of known, nonzero bytes.
    static TEXT: [u8; 10240] = {
        let mut b = [0u8; 10240];
        let mut i = 0;
        while i < b.len() {
            b[i] = (i % 253) as u8 + 1;
            i += 1;
        }
        b
    };

    fn bytes(pa: PhysAddr) -> &'static mut [u8] {
        // SAFETY: the tracking handlers' frames are host allocations at
        // their physical address; the tests below do not hold two slices of
        // one frame at once while either is written.
        unsafe { frame_mut::<TrackingHandler>(pa) }
    }

    /// A pager that reads `fill` and fails reads at `bad_read`, and writes
    /// after `writes_ok` successful ones.
    struct Failing {
        size: usize,
        bad_read: usize,
        writes_ok: Mutex<usize>,
    }

    impl Pager for Failing {
        fn size(&self) -> usize {
            self.size
        }
        fn read(&self, offset: usize, page: &mut [u8]) -> Result<(), PagerError> {
            if offset == self.bad_read {
                return Err(PagerError);
            }
            page.fill(3);
            Ok(())
        }
        fn write(&self, _offset: usize, _page: &[u8]) -> Result<(), PagerError> {
            let mut ok = self.writes_ok.lock();
            *ok = ok.checked_sub(1).ok_or(PagerError)?;
            Ok(())
        }
    }

    #[test]
    fn anonymous_reads_zeros() {
        testing::reset();
        assert_eq!(Obj::anonymous(0).unwrap_err(), AxError::InvalidInput);
        let obj = Obj::anonymous(3 * PAGE_SIZE + 1).unwrap();
        assert_eq!(obj.size(), 3 * PAGE_SIZE + 1);
        for i in 0..4 {
            let pa = obj.map_page(i, false).unwrap();
            // The tracking handler fills new frames with 0xA5.
            assert!(bytes(pa).iter().all(|&b| b == 0));
        }
        assert_eq!(obj.pages(), 4);
        assert_eq!(testing::frames_in_use(), 4);
        assert_eq!(obj.map_page(4, false), Err(ObjectError::PastEnd));
        for (i, pa) in obj.resident_frames() {
            obj.unmap_page(i, pa, false);
        }
        assert_eq!(obj.dirty_pages(), 0);
        drop(obj);
        testing::assert_no_leaks();
    }

    #[test]
    fn bytes_object_content_and_partial_last_page() {
        testing::reset();
        let obj = Obj::from_bytes(&TEXT);
        assert_eq!(obj.size(), TEXT.len());
        let p0 = obj.map_page(0, false).unwrap();
        assert_eq!(bytes(p0), &TEXT[..PAGE_SIZE]);
        let p2 = obj.map_page(2, false).unwrap();
        let tail = TEXT.len() - 2 * PAGE_SIZE;
        assert_eq!(&bytes(p2)[..tail], &TEXT[2 * PAGE_SIZE..]);
        assert!(bytes(p2)[tail..].iter().all(|&b| b == 0));
        assert_eq!(obj.pages(), 2);
        obj.unmap_page(0, p0, false);
        obj.unmap_page(2, p2, false);
        drop(obj);
        testing::assert_no_leaks();
    }

    #[test]
    fn past_end_is_an_error() {
        testing::reset();
        let obj = Obj::from_bytes(&TEXT);
        for i in [
            3,
            4,
            usize::MAX / PAGE_SIZE,
            usize::MAX / PAGE_SIZE + 1,
            usize::MAX,
        ] {
            assert_eq!(obj.map_page(i, true), Err(ObjectError::PastEnd));
            // SAFETY: `PastEnd` is found before `dst` is touched.
            let r = unsafe { obj.copy_page(i, PhysAddr::from(0)) };
            assert_eq!(r, Err(ObjectError::PastEnd));
            assert!(!obj.is_frame(i, PhysAddr::from(0)));
        }
        let empty = Obj::from_bytes(&[]);
        assert_eq!(empty.map_page(0, false), Err(ObjectError::PastEnd));
        assert_eq!(empty.sync(0, usize::MAX), Ok(0));
        assert_eq!(AxError::from(ObjectError::PastEnd), AxError::BadAddress);
        assert_eq!(AxError::from(ObjectError::Io), AxError::Io);
        assert_eq!(obj.pages(), 0);
        assert_eq!(testing::frames_in_use(), 0);
    }

    #[test]
    fn map_unmap_counting() {
        testing::reset();
        let obj = Obj::anonymous(4 * PAGE_SIZE).unwrap();
        let a = obj.map_page(1, false).unwrap();
        let b = obj.map_page(1, true).unwrap();
        let c = obj.map_page(1, false).unwrap();
        assert!(a == b && b == c);
        assert!(obj.is_frame(1, a));
        assert!(!obj.is_frame(0, a));
        assert!(!obj.is_frame(1, a + PAGE_SIZE));
        let st = obj.page_state(1).unwrap();
        assert_eq!((st.frame, st.maps, st.wmaps, st.dirty), (a, 3, 1, true));
        assert_eq!(obj.mapped_pages(), 1);
        assert_eq!(testing::frames_in_use(), 1);

        obj.make_writable(1);
        assert_eq!(obj.page_state(1).unwrap().wmaps, 2);
        obj.make_readonly(1);
        obj.unmap_page(1, a, true);
        obj.unmap_page(1, a, false);
        let st = obj.page_state(1).unwrap();
        assert_eq!((st.maps, st.wmaps), (1, 0));
        obj.unmap_page(1, a, false);
        // Unmapped, but still resident (and still dirty: never synced).
        assert_eq!(obj.mapped_pages(), 0);
        assert_eq!(obj.pages(), 1);
        assert_eq!(obj.dirty_pages(), 1);
        assert_eq!(obj.page_state(0), None);
        // Mapped again: the same frame.
        assert_eq!(obj.map_page(1, false), Ok(a));
        obj.unmap_page(1, a, false);
        drop(obj);
        testing::assert_no_leaks();
    }

    #[test]
    #[should_panic(expected = "broken invariant: object unmap of page 0 gives back")]
    fn unmap_of_a_wrong_frame_panics() {
        testing::reset();
        let obj = Obj::anonymous(PAGE_SIZE).unwrap();
        let pa = obj.map_page(0, false).unwrap();
        // Kept alive: dropping it mapped while unwinding would abort.
        core::mem::forget(obj.clone());
        obj.unmap_page(0, pa + PAGE_SIZE, false);
    }

    #[test]
    #[should_panic(expected = "a count would go below zero")]
    fn unmap_underflow_panics() {
        testing::reset();
        let obj = Obj::anonymous(PAGE_SIZE).unwrap();
        let pa = obj.map_page(0, false).unwrap();
        obj.unmap_page(0, pa, false);
        obj.unmap_page(0, pa, false);
    }

    #[test]
    #[should_panic(expected = "a count would go below zero or wmaps above maps")]
    fn unmap_writable_of_a_readonly_mapping_panics() {
        testing::reset();
        let obj = Obj::anonymous(PAGE_SIZE).unwrap();
        let pa = obj.map_page(0, false).unwrap();
        core::mem::forget(obj.clone());
        obj.unmap_page(0, pa, true);
    }

    #[test]
    #[should_panic(expected = "make_readonly of page 0 with wmaps 0")]
    fn make_readonly_underflow_panics() {
        testing::reset();
        let obj = Obj::anonymous(PAGE_SIZE).unwrap();
        obj.map_page(0, false).unwrap();
        core::mem::forget(obj.clone());
        obj.make_readonly(0);
    }

    #[test]
    #[should_panic(expected = "no read-only mapping to make writable")]
    fn make_writable_without_a_readonly_mapping_panics() {
        testing::reset();
        let obj = Obj::anonymous(PAGE_SIZE).unwrap();
        obj.map_page(0, true).unwrap();
        core::mem::forget(obj.clone());
        obj.make_writable(0);
    }

    #[test]
    #[should_panic(expected = "make_writable of page 0, which is not resident")]
    fn make_writable_of_a_page_not_resident_panics() {
        testing::reset();
        let obj = Obj::anonymous(PAGE_SIZE).unwrap();
        obj.make_writable(0);
    }

    #[test]
    #[should_panic(expected = "object dropped while page 0 has maps 1")]
    fn drop_while_mapped_panics() {
        testing::reset();
        let obj = Obj::anonymous(PAGE_SIZE).unwrap();
        obj.map_page(0, false).unwrap();
        drop(obj);
    }

    #[test]
    fn dirty_tracking_and_sync() {
        testing::reset();
        let store = Arc::new(BytesPager::new(&TEXT));
        let obj = MemObject::<TrackingHandler>::new(store.clone());
        // Read-only mappings leave pages clean.
        let p0 = obj.map_page(0, false).unwrap();
        assert_eq!(obj.dirty_pages(), 0);
        assert_eq!(obj.sync(0, 3), Ok(0));
        assert_eq!(store.pages_written(), 0);

        // A writable mapping of page 2 (the partial one).
        let p2 = obj.map_page(2, true).unwrap();
        bytes(p2)[..5].copy_from_slice(b"hello");
        assert_eq!(obj.dirty_pages(), 1);
        // Outside the range: nothing written.
        assert_eq!(obj.sync(0, 2), Ok(0));
        assert_eq!(obj.sync(3, 0), Ok(0));
        assert_eq!(obj.sync(0, usize::MAX), Ok(1));
        assert_eq!(store.pages_written(), 1);
        assert_eq!(
            &store.contents()[2 * PAGE_SIZE..2 * PAGE_SIZE + 5],
            b"hello"
        );
        assert_eq!(store.contents().len(), TEXT.len());
        // Still mapped writable: stays dirty and is written again.
        assert!(obj.page_state(2).unwrap().dirty);
        bytes(p2)[5] = b'!';
        assert_eq!(obj.sync(2, 3), Ok(1));
        assert_eq!(store.contents()[2 * PAGE_SIZE + 5], b'!');
        // Read-only now: the next sync cleans it, the one after writes nothing.
        obj.make_readonly(2);
        assert_eq!(obj.sync(0, 3), Ok(1));
        assert_eq!(obj.dirty_pages(), 0);
        assert_eq!(obj.sync(0, 3), Ok(0));
        assert_eq!(store.pages_written(), 3);

        // A read-only mapping made writable dirties the page.
        obj.make_writable(0);
        bytes(p0)[0] = 0;
        obj.make_readonly(0);
        assert_eq!(obj.dirty_pages(), 1);
        assert_eq!(obj.sync(0, 1), Ok(1));
        assert_eq!(store.contents()[0], 0);
        assert_eq!(&store.contents()[1..PAGE_SIZE], &TEXT[1..PAGE_SIZE]);
        assert_eq!(obj.dirty_pages(), 0);

        obj.unmap_page(0, p0, false);
        obj.unmap_page(2, p2, false);
        drop(obj);
        // The store keeps the data after the object is gone.
        assert_eq!(
            &store.contents()[2 * PAGE_SIZE..2 * PAGE_SIZE + 6],
            b"hello!"
        );
        testing::assert_no_leaks();
    }

    #[test]
    fn copy_page_from_resident_and_not_resident_pages() {
        testing::reset();
        let obj = Obj::from_bytes(&TEXT);
        let dst = TrackingHandler::alloc_frame().unwrap();
        // Not resident: read through the pager, nothing made resident.
        // SAFETY: `dst` is this test's own frame.
        unsafe { obj.copy_page(1, dst) }.unwrap();
        assert_eq!(bytes(dst), &TEXT[PAGE_SIZE..2 * PAGE_SIZE]);
        assert_eq!(obj.pages(), 0);
        assert_eq!(testing::frames_in_use(), 1);
        // SAFETY: as above.
        unsafe { obj.copy_page(2, dst) }.unwrap();
        assert!(
            bytes(dst)[TEXT.len() - 2 * PAGE_SIZE..]
                .iter()
                .all(|&b| b == 0)
        );

        // Resident and written: the copy has the write.
        let pa = obj.map_page(1, true).unwrap();
        bytes(pa)[7] = 0;
        // SAFETY: as above.
        unsafe { obj.copy_page(1, dst) }.unwrap();
        assert_eq!(bytes(dst)[7], 0);
        assert_eq!(&bytes(dst)[8..], &TEXT[PAGE_SIZE + 8..2 * PAGE_SIZE]);
        assert!(!obj.is_frame(1, dst));
        assert_eq!(obj.pages(), 1);

        obj.unmap_page(1, pa, true);
        drop(obj);
        TrackingHandler::dealloc_frame(dst);
        testing::assert_no_leaks();
    }

    #[test]
    fn no_memory_leaves_nothing() {
        testing::reset();
        let obj = Obj::anonymous(2 * PAGE_SIZE).unwrap();
        let pa = obj.map_page(0, false).unwrap();
        testing::set_limit(Some(1));
        assert_eq!(obj.map_page(1, true), Err(ObjectError::NoMemory));
        assert_eq!(obj.pages(), 1);
        assert_eq!(obj.page_state(1), None);
        assert_eq!(testing::frames_in_use(), 1);
        // A resident page needs no frame.
        assert_eq!(obj.map_page(0, true), Ok(pa));
        testing::set_limit(None);
        obj.unmap_page(0, pa, true);
        obj.unmap_page(0, pa, false);
        drop(obj);
        testing::assert_no_leaks();
    }

    #[test]
    fn pager_errors_are_io() {
        testing::reset();
        let obj = Obj::new(Failing {
            size: 4 * PAGE_SIZE,
            bad_read: PAGE_SIZE,
            writes_ok: Mutex::new(1),
        });
        // A failed read leaves no page and no frame.
        assert_eq!(obj.map_page(1, false), Err(ObjectError::Io));
        assert_eq!(obj.pages(), 0);
        assert_eq!(testing::frames_in_use(), 0);
        let dst = TrackingHandler::alloc_frame().unwrap();
        // SAFETY: `dst` is this test's own frame.
        assert_eq!(unsafe { obj.copy_page(1, dst) }, Err(ObjectError::Io));
        TrackingHandler::dealloc_frame(dst);

        // Three dirty pages; the pager takes one write, then fails.
        let frames: Vec<_> = [0, 2, 3]
            .into_iter()
            .map(|i| (i, obj.map_page(i, true).unwrap()))
            .collect();
        assert!(bytes(frames[0].1).iter().all(|&b| b == 3));
        for &(i, _) in &frames {
            obj.make_readonly(i);
        }
        assert_eq!(obj.sync(0, 4), Err(ObjectError::Io));
        // Page 0 was written and is clean; 2 failed and 3 was not reached.
        assert!(!obj.page_state(0).unwrap().dirty);
        assert!(obj.page_state(2).unwrap().dirty);
        assert!(obj.page_state(3).unwrap().dirty);
        assert_eq!(obj.dirty_pages(), 2);

        for (i, pa) in frames {
            obj.unmap_page(i, pa, false);
        }
        drop(obj);
        testing::assert_no_leaks();
    }

    #[test]
    fn drop_frees_every_frame() {
        testing::reset();
        let obj = Obj::anonymous(64 * PAGE_SIZE).unwrap();
        for i in (0..64).step_by(3) {
            let pa = obj.map_page(i, i % 2 == 0).unwrap();
            obj.unmap_page(i, pa, i % 2 == 0);
        }
        assert_eq!(obj.pages(), 22);
        assert_eq!(testing::frames_in_use(), 22);
        assert_eq!(obj.mapped_pages(), 0);
        let other = obj.clone();
        drop(obj);
        assert_eq!(testing::frames_in_use(), 22);
        drop(other);
        testing::assert_no_leaks();
    }

    /// A bytes pager that runs `action` on the object once, right after its
    /// first read has filled the page: what another CPU could do meanwhile.
    struct Hook {
        inner: BytesPager,
        obj: Mutex<Option<alloc::sync::Weak<Obj>>>,
        action: Mutex<Option<fn(&Obj)>>,
    }

    impl Pager for Hook {
        fn size(&self) -> usize {
            self.inner.size()
        }
        fn read(&self, offset: usize, page: &mut [u8]) -> Result<(), PagerError> {
            self.inner.read(offset, page)?;
            let action = self.action.lock().take();
            if let Some(action) = action {
                let obj = self.obj.lock().as_ref().and_then(|w| w.upgrade());
                action(&obj.unwrap());
            }
            Ok(())
        }
        fn write(&self, offset: usize, page: &[u8]) -> Result<(), PagerError> {
            self.inner.write(offset, page)
        }
    }

    fn hooked(action: fn(&Obj)) -> Arc<Obj> {
        let hook = Arc::new(Hook {
            inner: BytesPager::new(&TEXT),
            obj: Mutex::new(None),
            action: Mutex::new(Some(action)),
        });
        let obj = Obj::new(hook.clone());
        *hook.obj.lock() = Some(Arc::downgrade(&obj));
        obj
    }

    #[test]
    fn map_page_that_loses_the_race_uses_the_winners_frame() {
        testing::reset();
        // While the first map_page reads page 0, another makes it resident.
        let obj = hooked(|obj| {
            obj.map_page(0, true).unwrap();
        });
        let pa = obj.map_page(0, false).unwrap();
        let st = obj.page_state(0).unwrap();
        assert_eq!((st.frame, st.maps, st.wmaps, st.dirty), (pa, 2, 1, true));
        // The loser's frame went back at once.
        assert_eq!(testing::frames_in_use(), 1);
        assert_eq!(testing::peak_frames(), 2);
        obj.unmap_page(0, pa, true);
        obj.unmap_page(0, pa, false);
        drop(obj);
        testing::assert_no_leaks();
    }

    #[test]
    fn copy_page_of_a_page_made_resident_meanwhile_copies_the_frame() {
        testing::reset();
        // While copy_page reads page 0 through the pager, another caller
        // makes it resident, writes it and syncs it.
        let obj = hooked(|obj| {
            let pa = obj.map_page(0, true).unwrap();
            bytes(pa)[0] = 0;
            obj.make_readonly(0);
            assert_eq!(obj.sync(0, 1), Ok(1));
            bytes(pa)[1] = 0;
            obj.unmap_page(0, pa, false);
        });
        let dst = TrackingHandler::alloc_frame().unwrap();
        // SAFETY: `dst` is this test's own frame.
        unsafe { obj.copy_page(0, dst) }.unwrap();
        assert_eq!(&bytes(dst)[..2], &[0, 0]);
        assert_eq!(&bytes(dst)[2..], &TEXT[2..PAGE_SIZE]);
        drop(obj);
        TrackingHandler::dealloc_frame(dst);
        testing::assert_no_leaks();
    }

    #[test]
    fn threads_map_and_unmap_one_object() {
        const THREADS: usize = 4;
        const PAGES: usize = 16;
        const ROUNDS: usize = 20;
        let _g = SharedTrackingHandler::exclusive();
        // Allocations sleep, so that threads race to make one page resident.
        SharedTrackingHandler::set_alloc_delay(std::time::Duration::from_micros(200));
        let obj = MemObject::<SharedTrackingHandler>::anonymous(PAGES * PAGE_SIZE).unwrap();
        let barrier = Barrier::new(THREADS + 1);
        let seen: Vec<Vec<PhysAddr>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (obj, barrier) = (&obj, &barrier);
                    s.spawn(move || {
                        // Every thread maps every page, each in its own order.
                        let mut frames = vec![PhysAddr::from(0); PAGES];
                        for k in 0..PAGES {
                            let i = (k * 5 + t * 3) % PAGES;
                            frames[i] = obj.map_page(i, t % 2 == 0).unwrap();
                        }
                        barrier.wait();
                        barrier.wait();
                        // Churn: map and unmap again, with protection changes.
                        for r in 0..ROUNDS {
                            for (i, &pa) in frames.iter().enumerate() {
                                let w = (r + i + t) % 3 == 0;
                                assert_eq!(obj.map_page(i, w), Ok(pa));
                                if !w {
                                    obj.make_writable(i);
                                }
                                obj.make_readonly(i);
                                obj.unmap_page(i, pa, false);
                            }
                        }
                        for (i, &pa) in frames.iter().enumerate() {
                            obj.unmap_page(i, pa, t % 2 == 0);
                        }
                        frames
                    })
                })
                .collect();
            barrier.wait();
            // Every thread holds one mapping of every page, and every page
            // has exactly one frame.
            for i in 0..PAGES {
                let st = obj.page_state(i).unwrap();
                assert_eq!((st.maps, st.wmaps, st.dirty), (THREADS, THREADS / 2, true));
            }
            assert_eq!(SharedTrackingHandler::frames_in_use(), PAGES);
            barrier.wait();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for frames in &seen {
            assert_eq!(frames, &seen[0]);
        }
        assert_eq!(obj.pages(), PAGES);
        assert_eq!(obj.mapped_pages(), 0);
        assert_eq!(obj.dirty_pages(), PAGES);
        assert!((0..PAGES).all(|i| obj.page_state(i).unwrap().wmaps == 0));
        assert_eq!(obj.sync(0, PAGES), Ok(PAGES));
        assert_eq!(obj.dirty_pages(), 0);
        assert_eq!(SharedTrackingHandler::frames_in_use(), PAGES);
        drop(obj);
        SharedTrackingHandler::assert_no_leaks();
    }
}
