//! How areas hold their backends: [`DynBackend`], the object-safe mirror of
//! [`Backend`] (implemented for every backend), in a [`BoxedBackend`], a
//! small box that keeps backends of up to one word inline (the built-in
//! linear, allocated and contiguous ones: no heap allocation per area or
//! split, no pointer to chase) and larger ones on the heap. The
//! `smallbox` crate does the boxing (a hand-written one would need the
//! unstable pointer-metadata API to be any smaller).
//!
//! [`Backend`] itself is not object-safe on purpose (its `split`, `extend`
//! return `Self`, and `try_merge` takes `&Self`), so that a backend author
//! never boxes or downcasts: the blanket implementation here does both.
//! Two areas merge only if their backends have the same type.
//!
//! Invariant: [`BackendPtr`] points into an area's box, which moves with
//! the area set's nodes; it is used only while the set is unchanged since it
//! was taken (the fault path's last-hit cache checks the set's generation),
//! and nothing moves a node without changing the set.

use core::any::Any;
use core::ptr::NonNull;

use memory_addr::VirtAddr;
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use smallbox::SmallBox;
use smallbox::space::S1;

use super::{Backend, Fault, FaultAction, FaultRefusal, Mapped, Mapper, Pages};
use crate::area::AreaKind;
use crate::areas::AreaBackend;
use crate::error::NoMemory;
use crate::object::ObjectError;

/// An area's backend, as the area set holds it: inline up to one word.
pub(crate) type BoxedBackend<M, PTE, H> = SmallBox<dyn DynBackend<M, PTE, H>, S1>;

/// Puts a backend in its area's box.
pub(crate) fn boxed<M, PTE, H, B>(b: B) -> BoxedBackend<M, PTE, H>
where
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
    B: Backend<M, PTE, H>,
{
    let ptr: *const dyn DynBackend<M, PTE, H> = &b;
    // SAFETY: `ptr` points to `b` (the value boxed), as a pointer to the
    // trait object it is boxed as; `new_unchecked` uses only its metadata
    // (the vtable) and moves `b` into the box.
    unsafe { SmallBox::new_unchecked(b, ptr) }
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
    fn describe(&self, start: usize) -> AreaKind;
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
    fn describe(&self, start: usize) -> AreaKind {
        Backend::describe(self, start)
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
    type Desc = AreaKind;

    fn describe(&self, start: usize) -> AreaKind {
        (**self).describe(start)
    }

    /// Asked on a cache miss of the fault path's lookup: the backend is in
    /// the area's node (or one pointer away for a large one).
    #[inline(always)]
    fn view(&self) -> BackendPtr<M, PTE, H> {
        BackendPtr {
            ptr: NonNull::from(&**self),
            zero_fill_4k: (**self).zero_fill_4k(),
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
