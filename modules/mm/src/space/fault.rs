//! Where a page fault goes in: [`AddrSpace::handle_page_fault`].
//!
//! The board's trap handler decodes (address, access) and the runtime calls
//! this for the kernel's address space, with `&self`, on any number of CPUs at
//! once. The fault is checked against the area's *current* flags (so
//! `mprotect` takes effect at once); a lazy page gets a zeroed frame (a whole
//! huge page in a huge area), allocated and zeroed without the table lock and
//! installed under it (the crate docs, "Locking protocol for several CPUs",
//! give the order); anything else is an error the caller reports. A failed
//! fault changes nothing (no frame or table leaks); a fault that finds its page
//! mapped by another CPU when it comes to install frees its frame and
//! succeeds.

use hal::Access;
use memory_addr::{MemoryAddr, PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::LeafSize;

use super::{AddrSpace, info};
use crate::area::AreaInfo;
use crate::backend::{
    BackendPtr, Fault, FaultAction, FaultRefusal, Mapped, Mapper, Pages, fault_frame, flush_one,
};
use crate::error::{FaultError, NoMemory};
use crate::flags::allows;
use crate::invariant::invariant;

/// The table lock held over the mapper.
type Guard<'a, M, PTE, H> = crate::lock::TableGuard<'a, Mapper<M, PTE, H>>;

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> AddrSpace<M, PTE, H>
{
    /// Resolves a page fault at `va` for `access`, or says why it cannot.
    ///
    /// Takes `&self`: faults on several CPUs run at once (the kernel holds its
    /// address-space lock for reading); the crate docs ("Locking protocol for
    /// several CPUs") say what is done under the table lock and what is not.
    ///
    /// Order: area lookup (O(1) for the area of the previous fault, else
    /// O(log n); none: [`FaultError::NoArea`]); the area's current flags must
    /// allow the access (else [`FaultError::Denied`]); a page already mapped
    /// with flags allowing the access is a stale TLB entry: it is flushed and
    /// counted in [`MmStats::spurious_faults`](crate::MmStats::spurious_faults).
    /// Everything else is the area's backend's decision
    /// ([`Backend::fault`](crate::Backend::fault), under the table lock): it
    /// maps the page itself (a parked frame, a linear page, an object's page,
    /// a copy-on-write copy), or asks for a zeroed frame, which is allocated
    /// and zeroed here without the table lock; if another CPU mapped the page
    /// meanwhile, the frame is freed, the fault succeeds and is counted in
    /// [`MmStats::fault_races`](crate::MmStats::fault_races). Logs at trace
    /// level only.
    pub fn handle_page_fault(&self, va: VirtAddr, access: Access) -> Result<(), FaultError> {
        let page = va.align_down_4k();
        // Set once this fault waited for another fault's claim on its block:
        // finding the page mapped then is that fault's work, not a stale TLB.
        let mut waited = false;
        loop {
            let mut m = self.mapper.lock();
            let Some(area) = self.set.lookup(va.as_usize(), &mut m.last) else {
                return Err(FaultError::NoArea);
            };
            let (start, flags) = (area.start, area.flags);
            if !allows(flags, access) {
                drop(m);
                return Err(self.denied(start));
            }
            let (base, size) = match m.query(page) {
                // The fast path: the backend said what it would answer.
                None if area.backend.zero_fill_4k && !m.has_parked() => {
                    (page.as_usize(), LeafSize::Size4K)
                }
                Some((_, pte_flags, _)) if allows(pte_flags, access) => {
                    Self::mapped_already(&mut m, va, waited);
                    return Ok(());
                }
                present => match Self::ask_backend(
                    area.backend,
                    area.start,
                    area.end,
                    area.flags,
                    va,
                    access,
                    present,
                    &mut m,
                ) {
                    Ok(Some(block)) => block,
                    Ok(None) => {
                        m.faults_handled += 1;
                        drop(m);
                        log::trace!("fault at {va:?} mapped");
                        return Ok(());
                    }
                    Err(r) => {
                        drop(m);
                        return Err(self.refused(r, start));
                    }
                },
            };
            // The block this fault fills: claimed, unless another fault is
            // filling (part of) it: then wait for that one and look again.
            let (from, to) = (base, base + size.bytes());
            if m.claims.overlaps(from, to) {
                drop(m);
                self.wait_for_claim(from, to);
                waited = true;
                continue;
            }
            let claim = m.claims.add(from, to).then_some(from);
            drop(m);
            if size == LeafSize::Size4K {
                return self.fill_4k(va, flags, start, claim);
            }
            return self.fill(va, flags, start, base, size, claim);
        }
    }

    /// Waits until no fault claims (part of) `[from, to)` any more.
    #[cold]
    #[inline(never)]
    fn wait_for_claim(&self, from: usize, to: usize) {
        loop {
            // Look under the lock only now and then: the claimant needs it to
            // install its frame.
            for _ in 0..64 {
                paging::relax();
            }
            crate::lock::host_yield();
            if !self.mapper.lock().claims.overlaps(from, to) {
                return;
            }
        }
    }

    /// [`Self::fill`] for one 4K frame at the page (the lazy path):
    /// straight-line code, the rare outcomes (no frame, another CPU mapped
    /// the page first) out of line.
    #[inline(always)]
    fn fill_4k(
        &self,
        va: VirtAddr,
        flags: MappingFlags,
        start: usize,
        claim: Option<usize>,
    ) -> Result<(), FaultError> {
        let page = va.align_down_4k();
        let Some(pa) = fault_frame::<H>(LeafSize::Size4K) else {
            return Err(self.fill_4k_failed(None, claim, start));
        };
        let mut m = self.mapper.lock();
        let r = m.install(page.as_usize(), pa, LeafSize::Size4K, flags);
        if r != Ok(true) {
            return self.fill_4k_lost(m, r.is_ok(), pa, va, claim, start);
        }
        if let Some(c) = claim {
            m.claims.remove(c);
        }
        m.faults_handled += 1;
        drop(m);
        log::trace!("fault at {va:?} mapped");
        Ok(())
    }

    /// [`Self::fill_4k`] found the page mapped when it came to install its
    /// frame `pa` (`raced`: another CPU's fault mapped it; the fault
    /// succeeds), or ran out of page-table frames: drops the claim and
    /// frees `pa` (never mapped: no flush needed).
    #[cold]
    #[inline(never)]
    fn fill_4k_lost(
        &self,
        mut m: Guard<'_, M, PTE, H>,
        raced: bool,
        pa: PhysAddr,
        va: VirtAddr,
        claim: Option<usize>,
        start: usize,
    ) -> Result<(), FaultError> {
        if !raced {
            return Err(self.fill_4k_failed(Some((m, pa)), claim, start));
        }
        m.fault_races += 1;
        if let Some(c) = claim {
            m.claims.remove(c);
        }
        drop(m);
        H::dealloc_frame(pa);
        // The winner flushed only its own TLB.
        flush_one::<M>(va.align_down_4k());
        log::trace!("fault at {va:?} mapped by another CPU");
        Ok(())
    }

    /// [`Self::fill_4k`] ran out of frames (`held`: the table lock and the
    /// frame it could not map): drops the claim, frees the frame.
    #[cold]
    #[inline(never)]
    fn fill_4k_failed(
        &self,
        held: Option<(Guard<'_, M, PTE, H>, PhysAddr)>,
        claim: Option<usize>,
        start: usize,
    ) -> FaultError {
        let pa = match held {
            Some((mut m, pa)) => {
                if let Some(c) = claim {
                    m.claims.remove(c);
                }
                Some(pa)
            }
            None => {
                if let Some(c) = claim {
                    self.mapper.lock().claims.remove(c);
                }
                None
            }
        };
        if let Some(pa) = pa {
            H::dealloc_frame(pa);
        }
        self.no_memory(start)
    }

    /// The rest of a fault whose backend asked for a zeroed frame (or
    /// aligned run) at `base`: it is allocated and zeroed without the table
    /// lock, then installed under it. If the page was mapped meanwhile
    /// (another CPU's fault), the frame is freed and the fault succeeds; if
    /// only part of a huge block was mapped meanwhile, or no aligned run is
    /// free, the page gets a 4K frame instead.
    #[inline(never)]
    fn fill(
        &self,
        va: VirtAddr,
        flags: MappingFlags,
        start: usize,
        mut base: usize,
        mut size: LeafSize,
        claim: Option<usize>,
    ) -> Result<(), FaultError> {
        let page = va.align_down_4k();
        let mut fallback = false;
        loop {
            let Some(pa) = fault_frame::<H>(size) else {
                if size != LeafSize::Size4K {
                    // No aligned run free: this page gets a 4K frame.
                    (base, size, fallback) = (page.as_usize(), LeafSize::Size4K, true);
                    continue;
                }
                if let Some(c) = claim {
                    self.mapper.lock().claims.remove(c);
                }
                return Err(self.no_memory(start));
            };
            let frames = size.bytes() / PAGE_SIZE_4K;
            let mut m = self.mapper.lock();
            let r = m.install(base, pa, size, flags);
            // Done with the block, whatever happens next (a retry with a 4K
            // frame below is still inside it: no other fault can claim the
            // page before this one looks again under the lock).
            if let Some(c) = claim.filter(|_| !matches!(r, Ok(false))) {
                m.claims.remove(c);
            }
            match r {
                Ok(true) => {
                    m.faults_handled += 1;
                    if size != LeafSize::Size4K {
                        m.huge_faults += 1;
                    }
                    if fallback {
                        m.huge_fallbacks += 1;
                    }
                    drop(m);
                    log::trace!("fault at {va:?} mapped");
                    return Ok(());
                }
                Ok(false) => {
                    // Something was mapped at `base` since the first look;
                    // only another CPU's fault can have done it (every other
                    // change needs `&mut self`).
                    let raced = size == LeafSize::Size4K || m.query(page).is_some();
                    if raced {
                        m.fault_races += 1;
                        if let Some(c) = claim {
                            m.claims.remove(c);
                        }
                    }
                    drop(m);
                    // Never mapped: no flush needed before the free.
                    H::dealloc_frames(pa, frames);
                    if raced {
                        // The winner flushed only its own TLB.
                        flush_one::<M>(page);
                        log::trace!("fault at {va:?} mapped by another CPU");
                        return Ok(());
                    }
                    // Part of the huge block was mapped: a 4K frame for the page.
                    (base, size) = (page.as_usize(), LeafSize::Size4K);
                }
                Err(NoMemory) => {
                    drop(m);
                    H::dealloc_frames(pa, frames);
                    return Err(self.no_memory(start));
                }
            }
        }
    }

    /// A fault at `va` on a page that is mapped already with flags allowing
    /// the access: a stale TLB entry (e.g. after a protect on another path),
    /// or the page another CPU's fault mapped while this one waited. Drops
    /// whatever this CPU's TLB holds for it and counts it. Kept out of line:
    /// the lazy path does not need its registers.
    #[cold]
    #[inline(never)]
    fn mapped_already(m: &mut Mapper<M, PTE, H>, va: VirtAddr, waited: bool) {
        flush_one::<M>(va.align_down_4k());
        if waited {
            m.fault_races += 1;
            log::trace!("fault at {va:?} mapped by another CPU");
        } else {
            m.spurious_faults += 1;
            log::trace!("spurious fault at {va:?}");
        }
    }

    /// The backend's decision on a fault its fast path does not cover
    /// ([`Backend::fault`] for an absent page, [`Backend::fault_mapped`] for
    /// a page mapped with flags that do not allow the access), under the
    /// table lock `m`: `None` if it mapped the page, else the block it
    /// needs a fresh frame for (checked to be the page's own block inside
    /// the area). Out of line: the lazy path of a zero-fill area does not
    /// need it.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn ask_backend(
        backend: BackendPtr<M, PTE, H>,
        start: usize,
        end: usize,
        flags: MappingFlags,
        va: VirtAddr,
        access: Access,
        present: Option<(PhysAddr, MappingFlags, LeafSize)>,
        m: &mut Mapper<M, PTE, H>,
    ) -> Result<Option<(usize, LeafSize)>, FaultRefusal> {
        let fault = Fault {
            va,
            access,
            start,
            end,
            flags,
        };
        // SAFETY: `lookup` took the pointer from the set now or since its
        // last change (the generation check), and the caller's `&self` keeps
        // the set borrowed and unchanged for the whole fault.
        let backend = unsafe { backend.get() };
        let page = fault.page();
        let r = match present {
            None => backend.fault(&fault, &mut Pages::new(m))?,
            Some((frame, flags, size)) => {
                let mapped = Mapped { frame, flags, size };
                let r = backend.fault_mapped(&fault, mapped, &mut Pages::new(m))?;
                invariant!(
                    r == FaultAction::Mapped,
                    "a backend asked for a fresh frame at {va:?}, which is mapped"
                );
                r
            }
        };
        let FaultAction::Fresh { base, size } = r else {
            return Ok(None);
        };
        // A backend's request must name a block of its own area around the
        // page (4K: the page itself).
        invariant!(
            base.is_multiple_of(size.bytes())
                && base <= page
                && page - base < size.bytes()
                && base >= start
                && end - base >= size.bytes(),
            "a backend asked for a {size:?} frame at {base:#x} for a fault at {va:?} in [{start:#x}, {end:#x})"
        );
        Ok(Some((base, size)))
    }

    /// The [`FaultError`] for a backend's refusal in the area starting at
    /// `start`.
    #[cold]
    #[inline(never)]
    fn refused(&self, r: FaultRefusal, start: usize) -> FaultError {
        match r {
            FaultRefusal::Denied => self.denied(start),
            FaultRefusal::NoMemory => self.no_memory(start),
            FaultRefusal::PastEnd => self.area_error(start, |area| FaultError::PastEnd { area }),
            FaultRefusal::Io => self.area_error(start, |area| FaultError::Io { area }),
        }
    }

    /// [`FaultError::Denied`] for the area starting at `start` (the fault path
    /// changes no area, so it is still there).
    #[cold]
    #[inline(never)]
    fn denied(&self, start: usize) -> FaultError {
        self.area_error(start, |area| FaultError::Denied { area })
    }

    /// [`FaultError::NoMemory`] for the area starting at `start`.
    #[cold]
    #[inline(never)]
    fn no_memory(&self, start: usize) -> FaultError {
        self.area_error(start, |area| FaultError::NoMemory { area })
    }

    /// `make(area)` for the area starting at `start`.
    fn area_error(&self, start: usize, make: fn(AreaInfo) -> FaultError) -> FaultError {
        match self.set.find(start) {
            Some((s, area)) => make(info(s, area)),
            None => FaultError::NoArea,
        }
    }
}
