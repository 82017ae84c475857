//! How areas hold their backends: [`DynBackend`], the object-safe mirror of
//! [`Backend`] (implemented for every backend), in a [`BoxedBackend`] of
//! two words: the backend itself when it fits in one word (the built-in
//! linear, allocated and contiguous ones: no heap allocation per area or
//! split, no pointer to chase) or a pointer to it on the heap, and a
//! pointer to a static table made for its type ([`Meta`]).
//!
//! Why by hand: a box of `dyn DynBackend` (`Box`, or the `smallbox` crate
//! that keeps small values inline) stores a fat pointer, three words with
//! `smallbox`'s one-word space; the area set then holds 56-byte areas
//! instead of 32, and looking up areas among 100k got 1.3x slower for it.
//! Getting the vtable out of a fat pointer to store it alone needs the
//! unstable pointer-metadata API; here the table's `as_dyn` rebuilds the
//! fat pointer from the word, for the one type it was made for. The table
//! also makes an area's [`AreaInfo`] (with [`Backend::describe`]) in one
//! call, written straight where the lookup's caller wants it: an
//! `AreaKind` returned across the call would come back through memory a
//! field at a time and be copied whole, a store-forwarding stall (about
//! 6 ns of a 30 ns lookup).
//!
//! [`Backend`] itself is not object-safe on purpose (its `split`, `extend`
//! return `Self`, and `try_merge` takes `&Self`), so that a backend author
//! never boxes or downcasts: the blanket implementation here does both.
//! Two areas merge only if their backends have the same type.
//!
//! Invariants:
//! - A [`BoxedBackend`] made by [`boxed`] for a backend type `B` holds a `B`
//!   in its word when `B` fits (size and alignment at most a word's), else a
//!   pointer from `Box::<B>::into_raw`; its `meta` is `B`'s table, whose
//!   functions assume exactly that. Nothing else makes one.
//! - [`BackendPtr`] points into an area's box, which moves with the area
//!   set's nodes; it is used only while the set is unchanged since it was
//!   taken (the fault path's last-hit cache checks the set's generation),
//!   and nothing moves a node without changing the set.

use alloc::boxed::Box;
use core::any::Any;
use core::mem::{MaybeUninit, align_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use memory_addr::VirtAddr;
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};

use super::{Backend, Fault, FaultAction, FaultRefusal, Mapped, Mapper, Pages};
use crate::area::AreaInfo;
use crate::areas::AreaBackend;
use crate::error::NoMemory;
use crate::object::ObjectError;

/// An area's backend, as the area set holds it: two words (see the module
/// docs).
pub(crate) struct BoxedBackend<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    /// The backend (if it fits) or a pointer to it.
    word: MaybeUninit<usize>,
    /// The table for the backend's type.
    meta: &'static Meta<M, PTE, H>,
}

/// What a [`BoxedBackend`] knows of its backend's type; one static table
/// per type. Each function takes the box's word and assumes the box was
/// made by [`boxed`] for that type (the `# Safety` of each).
struct Meta<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    /// The backend as a trait object. Dereferenced mutably only if the
    /// word pointer came from a unique borrow of the box.
    as_dyn: unsafe fn(*mut usize) -> *mut dyn DynBackend<M, PTE, H>,
    /// The area's [`AreaInfo`], with [`Backend::describe`]: one call
    /// away, and made where the caller wants it (area lookups ask it).
    info: unsafe fn(*const usize, usize, usize, MappingFlags) -> AreaInfo,
    /// Drops the backend (and frees its heap cell, if it has one).
    drop: unsafe fn(*mut usize),
}

/// Whether a `B` is kept in the box's word.
const fn fits<B>() -> bool {
    size_of::<B>() <= size_of::<usize>() && align_of::<B>() <= align_of::<usize>()
}

/// Where the `B` of a box made for `B` is, given its word.
///
/// # Safety
///
/// `word` points to the word of a [`BoxedBackend`] made by [`boxed`] for
/// `B`, alive; the result is valid as long as that box is, and as mutable
/// as `word` is.
unsafe fn backend_of<B>(word: *mut usize) -> *mut B {
    if fits::<B>() {
        word.cast::<B>()
    } else {
        // SAFETY: the box was made for `B`, which does not fit: its word
        // holds the pointer `Box::into_raw` gave, stored as a pointer (so
        // with its provenance; the caller's contract).
        unsafe { word.cast::<*mut B>().read() }
    }
}

/// `Meta::as_dyn` for `B`.
///
/// # Safety
///
/// As for [`backend_of`].
unsafe fn as_dyn<M, PTE, H, B>(word: *mut usize) -> *mut dyn DynBackend<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
    B: Backend<M, PTE, H>,
{
    // SAFETY: the caller's contract.
    unsafe { backend_of::<B>(word) }
}

/// `Meta::info` for `B`: `[start, end)` with `flags`, and what `B` says
/// it is.
///
/// # Safety
///
/// As for [`backend_of`].
unsafe fn info<M, PTE, H, B>(
    word: *const usize,
    start: usize,
    end: usize,
    flags: MappingFlags,
) -> AreaInfo
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
    B: Backend<M, PTE, H>,
{
    // SAFETY: the caller's contract; the `B` is only read.
    let b = unsafe { &*backend_of::<B>(word.cast_mut()) };
    AreaInfo {
        start: VirtAddr::from(start),
        end: VirtAddr::from(end),
        flags,
        kind: Backend::describe(b, start),
    }
}

/// `Meta::drop` for `B`.
///
/// # Safety
///
/// As for [`backend_of`], with `word` from a unique borrow; the box is not
/// used again.
unsafe fn drop_backend<B>(word: *mut usize) {
    // SAFETY: the caller's contract: the `B` is alive, ours to drop, and
    // (if it does not fit) in the heap cell `Box::into_raw` gave.
    unsafe {
        if fits::<B>() {
            word.cast::<B>().drop_in_place();
        } else {
            drop(Box::from_raw(backend_of::<B>(word)));
        }
    }
}

/// Puts a backend in its area's box.
pub(crate) fn boxed<M, PTE, H, B>(b: B) -> BoxedBackend<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
    B: Backend<M, PTE, H>,
{
    let meta: &'static Meta<M, PTE, H> = const {
        &Meta {
            as_dyn: as_dyn::<M, PTE, H, B>,
            info: info::<M, PTE, H, B>,
            drop: drop_backend::<B>,
        }
    };
    let mut word = MaybeUninit::<usize>::uninit();
    if fits::<B>() {
        // SAFETY: `B` fits in the word (size and alignment), which is ours.
        unsafe { word.as_mut_ptr().cast::<B>().write(b) };
    } else {
        // SAFETY: a pointer is a word; stored as a pointer, it keeps its
        // provenance.
        unsafe {
            word.as_mut_ptr()
                .cast::<*mut B>()
                .write(Box::into_raw(Box::new(b)))
        };
    }
    BoxedBackend { word, meta }
}

// SAFETY: a box owns its backend (inline or on the heap), which is `Send`
// (`Backend: Send`); the table is static and immutable.
unsafe impl<M, PTE, H> Send for BoxedBackend<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
}
// SAFETY: as for `Send`, with `Backend: Sync`; `&BoxedBackend` gives only
// `&dyn DynBackend`.
unsafe impl<M, PTE, H> Sync for BoxedBackend<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
}

impl<M, PTE, H> BoxedBackend<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    /// The [`AreaInfo`] of the area `[start, end)` with `flags` that holds
    /// this backend.
    #[inline]
    pub(crate) fn info(&self, start: usize, end: usize, flags: MappingFlags) -> AreaInfo {
        // SAFETY: `self` was made by `boxed` with this table, and is alive
        // for the call.
        unsafe { (self.meta.info)(self.word.as_ptr(), start, end, flags) }
    }
}

impl<M, PTE, H> Deref for BoxedBackend<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    type Target = dyn DynBackend<M, PTE, H>;

    #[inline]
    fn deref(&self) -> &Self::Target {
        // SAFETY: `self` was made by `boxed` with this table; the pointer
        // comes from a shared borrow and is only read through, for as long
        // as that borrow.
        unsafe { &*(self.meta.as_dyn)(self.word.as_ptr().cast_mut()) }
    }
}

impl<M, PTE, H> DerefMut for BoxedBackend<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        // SAFETY: as for `deref`, from a unique borrow.
        unsafe { &mut *(self.meta.as_dyn)(self.word.as_mut_ptr()) }
    }
}

impl<M, PTE, H> Drop for BoxedBackend<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    fn drop(&mut self) {
        // SAFETY: `self` was made by `boxed` with this table; it is not used
        // again.
        unsafe { (self.meta.drop)(self.word.as_mut_ptr()) }
    }
}

/// [`Backend`], object-safe: what the address space calls on an area's
/// backend whatever its type. Implemented for every [`Backend`] (only).
pub(crate) trait DynBackend<M, PTE, H>: Any + Send + Sync
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
{
    fn map(
        &mut self,
        s: usize,
        e: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory>;
    fn unmap(&mut self, s: usize, e: usize, pages: &mut Pages<'_, M, PTE, H>);
    fn protect(
        &mut self,
        s: usize,
        e: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    );
    fn reopen(
        &mut self,
        area_start: usize,
        s: usize,
        e: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory>;
    fn close(&mut self, s: usize, e: usize, pages: &mut Pages<'_, M, PTE, H>);
    fn fault(
        &self,
        f: &Fault,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal>;
    fn fault_mapped(
        &self,
        f: &Fault,
        mapped: Mapped,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal>;
    fn split(&mut self, start: usize, at: usize, end: usize) -> BoxedBackend<M, PTE, H>;
    fn try_merge(
        &mut self,
        start: usize,
        mid: usize,
        next: &dyn DynBackend<M, PTE, H>,
        end: usize,
    ) -> bool;
    fn extend(&self, start: usize, end: usize, new_end: usize) -> Option<BoxedBackend<M, PTE, H>>;
    fn relocate(&mut self, from: usize, to: usize);
    fn sync(
        &mut self,
        start: usize,
        s: usize,
        e: usize,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<usize, ObjectError>;
    fn collapse_2m(&self) -> bool;
    fn zero_fill_4k(&self) -> bool;
}

impl<M, PTE, H, B> DynBackend<M, PTE, H> for B
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
    B: Backend<M, PTE, H>,
{
    fn map(
        &mut self,
        s: usize,
        e: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        Backend::map(self, s, e, flags, pages)
    }
    fn unmap(&mut self, s: usize, e: usize, pages: &mut Pages<'_, M, PTE, H>) {
        Backend::unmap(self, s, e, pages);
    }
    fn protect(
        &mut self,
        s: usize,
        e: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) {
        Backend::protect(self, s, e, flags, pages);
    }
    fn reopen(
        &mut self,
        area_start: usize,
        s: usize,
        e: usize,
        flags: MappingFlags,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<(), NoMemory> {
        Backend::reopen(self, area_start, s, e, flags, pages)
    }
    fn close(&mut self, s: usize, e: usize, pages: &mut Pages<'_, M, PTE, H>) {
        Backend::close(self, s, e, pages);
    }
    fn fault(
        &self,
        f: &Fault,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal> {
        Backend::fault(self, f, pages)
    }
    fn fault_mapped(
        &self,
        f: &Fault,
        mapped: Mapped,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<FaultAction, FaultRefusal> {
        Backend::fault_mapped(self, f, mapped, pages)
    }
    fn split(&mut self, start: usize, at: usize, end: usize) -> BoxedBackend<M, PTE, H> {
        boxed(Backend::split(self, start, at, end))
    }
    /// Only with a backend of the same type.
    fn try_merge(
        &mut self,
        start: usize,
        mid: usize,
        next: &dyn DynBackend<M, PTE, H>,
        end: usize,
    ) -> bool {
        (next as &dyn Any)
            .downcast_ref::<B>()
            .is_some_and(|n| Backend::try_merge(self, start, mid, n, end))
    }
    fn extend(&self, start: usize, end: usize, new_end: usize) -> Option<BoxedBackend<M, PTE, H>> {
        Backend::extend(self, start, end, new_end).map(boxed)
    }
    fn relocate(&mut self, from: usize, to: usize) {
        Backend::relocate(self, from, to);
    }
    fn sync(
        &mut self,
        start: usize,
        s: usize,
        e: usize,
        pages: &mut Pages<'_, M, PTE, H>,
    ) -> Result<usize, ObjectError> {
        Backend::sync(self, start, s, e, pages)
    }
    fn collapse_2m(&self) -> bool {
        Backend::collapse_2m(self)
    }
    fn zero_fill_4k(&self) -> bool {
        Backend::zero_fill_4k(self)
    }
}

/// A pointer to an area's backend, for the fault path's last-hit cache (see
/// the module docs for when it may be used), with the backend's
/// [`Backend::zero_fill_4k`].
pub(crate) struct BackendPtr<M, PTE, H> {
    ptr: NonNull<dyn DynBackend<M, PTE, H>>,
    /// [`Backend::zero_fill_4k`], asked when the pointer was taken.
    pub(crate) zero_fill_4k: bool,
}

impl<M, PTE, H> Clone for BackendPtr<M, PTE, H> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M, PTE, H> Copy for BackendPtr<M, PTE, H> {}

// SAFETY: the pointee is `Send + Sync` (supertraits of `DynBackend`); the
// pointer itself is only dereferenced as a shared reference while the
// owning area set is borrowed and unchanged (see the module docs).
unsafe impl<M, PTE, H> Send for BackendPtr<M, PTE, H> {}
// SAFETY: as for `Send`.
unsafe impl<M, PTE, H> Sync for BackendPtr<M, PTE, H> {}

impl<M, PTE, H> BackendPtr<M, PTE, H> {
    /// The backend.
    ///
    /// # Safety
    ///
    /// The area the pointer was taken from is alive, in place and not
    /// mutably borrowed for `'a`: the area set it lives in is borrowed for
    /// `'a` and has not changed since the pointer was taken.
    #[inline(always)]
    pub(crate) unsafe fn get<'a>(self) -> &'a dyn DynBackend<M, PTE, H> {
        // SAFETY: the caller's contract.
        unsafe { self.ptr.as_ref() }
    }
}

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> AreaBackend for BoxedBackend<M, PTE, H>
{
    type Ctx = Mapper<M, PTE, H>;
    type View = BackendPtr<M, PTE, H>;
    /// Asked on a cache miss of the fault path's lookup: the backend is in
    /// the area's node (or one pointer away for a large one).
    #[inline(always)]
    fn view(&self) -> BackendPtr<M, PTE, H> {
        // One trip through the type table, not one per use.
        let b: &dyn DynBackend<M, PTE, H> = &**self;
        BackendPtr {
            ptr: NonNull::from(b),
            zero_fill_4k: b.zero_fill_4k(),
        }
    }

    fn map(
        &mut self,
        s: usize,
        e: usize,
        flags: MappingFlags,
        m: &mut Mapper<M, PTE, H>,
    ) -> Result<(), NoMemory> {
        (**self).map(s, e, flags, &mut Pages::new(m))
    }

    fn unmap(&mut self, s: usize, e: usize, m: &mut Mapper<M, PTE, H>) {
        (**self).unmap(s, e, &mut Pages::new(m));
    }

    fn protect(&mut self, s: usize, e: usize, flags: MappingFlags, m: &mut Mapper<M, PTE, H>) {
        (**self).protect(s, e, flags, &mut Pages::new(m));
    }

    fn split(&mut self, s: usize, at: usize, e: usize) -> Self {
        (**self).split(s, at, e)
    }

    fn try_merge(&mut self, s: usize, mid: usize, next: &Self, e: usize) -> bool {
        (**self).try_merge(s, mid, &**next, e)
    }

    fn retire(self, m: &mut Mapper<M, PTE, H>) {
        m.retire(self);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::area::AreaKind;
    use crate::areas::Area;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use page_table_entry::x86_64::X64PTE;
    use page_table_multiarch::x86_64::X64PagingMetaData;
    use testing::TrackingHandler;

    type Boxed = BoxedBackend<X64PagingMetaData, X64PTE, TrackingHandler>;

    /// Drops of `Probe`s, by counter (one per test: tests run at once).
    static DROPS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

    /// A backend whose state is `S` (to pick inline or heap), an offset it
    /// describes itself by, and the counter of its drops: one word with a
    /// zero-sized `S`.
    struct Probe<S> {
        offset: u32,
        counter: u32,
        _state: S,
    }

    impl<S> Drop for Probe<S> {
        fn drop(&mut self) {
            DROPS[self.counter as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    impl<M, PTE, H, S> Backend<M, PTE, H> for Probe<S>
    where
        M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
        PTE: GenericPTE + 'static,
        H: PagingHandler + 'static,
        S: Default + Send + Sync + 'static,
    {
        fn map(
            &mut self,
            _: usize,
            _: usize,
            _: MappingFlags,
            _: &mut Pages<'_, M, PTE, H>,
        ) -> Result<(), NoMemory> {
            Ok(())
        }
        fn unmap(&mut self, _: usize, _: usize, _: &mut Pages<'_, M, PTE, H>) {}
        fn protect(&mut self, _: usize, _: usize, _: MappingFlags, _: &mut Pages<'_, M, PTE, H>) {}
        fn fault(
            &self,
            _: &Fault,
            _: &mut Pages<'_, M, PTE, H>,
        ) -> Result<FaultAction, FaultRefusal> {
            Err(FaultRefusal::Denied)
        }
        fn split(&mut self, start: usize, at: usize, _: usize) -> Self {
            Probe {
                offset: self.offset + (at - start) as u32,
                counter: self.counter,
                _state: S::default(),
            }
        }
        fn try_merge(&mut self, start: usize, mid: usize, next: &Self, _: usize) -> bool {
            next.offset == self.offset + (mid - start) as u32
        }
        fn describe(&self, _: usize) -> AreaKind {
            AreaKind::Object {
                shared: true,
                offset: self.offset as usize,
            }
        }
        fn zero_fill_4k(&self) -> bool {
            self.offset == 0
        }
    }

    fn offset_of(b: &Boxed) -> usize {
        match b.info(0, 0x1000, MappingFlags::READ).kind {
            AreaKind::Object { offset, .. } => offset,
            k => panic!("described as {k:?}"),
        }
    }

    /// Splits, merges, describes, views and drops a `Probe<S>` through its
    /// box; `inline` is whether it should be in the box's word.
    fn round_trip<S: Default + Send + Sync + 'static>(inline: bool, counter: u32) {
        assert_eq!(fits::<Probe<S>>(), inline);
        let drops = &DROPS[counter as usize];
        let left: Boxed = boxed(Probe::<S> {
            offset: 0,
            counter,
            _state: S::default(),
        });
        // Moving the box moves an inline backend with it.
        let moved = [left];
        let [mut left] = moved;
        assert!(left.view().zero_fill_4k);
        let right = left.split(0x1000, 0x3000, 0x5000);
        assert_eq!((offset_of(&left), offset_of(&right)), (0, 0x2000));
        assert!(!right.view().zero_fill_4k);
        // A backend of another type never merges with it.
        let other: Boxed = boxed(Probe::<u16> {
            offset: 0x2000,
            counter,
            _state: 0,
        });
        assert!(!left.try_merge(0x1000, 0x3000, &other, 0x5000));
        drop(other);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert!(left.try_merge(0x1000, 0x3000, &right, 0x5000));
        drop(right);
        drop(left);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_backend_of_one_word_or_less_is_kept_in_the_box() {
        round_trip::<()>(true, 0);
    }

    #[test]
    fn a_larger_or_more_aligned_backend_is_kept_on_the_heap() {
        round_trip::<[u64; 3]>(false, 1);
        #[derive(Default)]
        #[repr(align(16))]
        struct Aligned;
        round_trip::<Aligned>(false, 2);
    }

    #[test]
    fn an_area_is_four_words() {
        assert_eq!(size_of::<Boxed>(), 2 * size_of::<usize>());
        assert_eq!(size_of::<Area<Boxed>>(), 4 * size_of::<usize>());
    }
}
