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
use crate::backend::{BackendKind, Mapper, fault_frame, flush_one};
use crate::error::{FaultError, NoMemory};
use crate::flags::allows;

/// What a fault on an allocated page still needs after its first look under
/// the table lock: a new 4K frame (`fallback`: in a huge area whose aligned
/// run could not be had), or a huge page over the block at `base`.
#[derive(Clone, Copy)]
enum Need {
    Frame { fallback: bool },
    Huge { base: usize, size: LeafSize },
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE, H: PagingHandler>
    AddrSpace<M, PTE, H>
{
    /// Resolves a page fault at `va` for `access`, or says why it cannot.
    ///
    /// Takes `&self`: faults on several CPUs run at once (the kernel holds its
    /// address-space lock for reading); the crate docs ("Locking protocol for
    /// several CPUs") say what is done under the table lock and what is not.
    ///
    /// Order: area lookup (O(1) for the area of the previous fault, else
    /// O(log n); none: [`FaultError::NoArea`]); the area's
    /// current flags must allow the access (else [`FaultError::Denied`]); a page
    /// already mapped with flags allowing the access is a stale TLB entry: it is
    /// flushed and counted in
    /// [`MmStats::spurious_faults`](crate::MmStats::spurious_faults). Otherwise
    /// an Alloc page gets its parked frame back or a new zeroed frame, which is
    /// allocated and zeroed without the table lock; if another CPU mapped the
    /// page meanwhile, the frame is freed, the fault succeeds and is counted in
    /// [`MmStats::fault_races`](crate::MmStats::fault_races). Linear and
    /// contiguous pages are all mapped while their area allows access, so such
    /// a fault is normally denied by the flag check; a missing page of theirs
    /// (defensive: `mprotect` creates their tables up front) is re-created
    /// here. Allocates nothing but the frame (and page tables), logs at trace
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
            let (start, end, flags, kind) = (area.start, area.end, area.flags, area.backend);
            if !allows(flags, access) {
                drop(m);
                return Err(self.denied(start));
            }
            if let Some((_, pte_flags, _)) = m.query(page) {
                let ok = Self::mapped_already(&mut m, va, pte_flags, access, waited);
                drop(m);
                return if ok { Ok(()) } else { Err(self.denied(start)) };
            }
            let need = match kind {
                BackendKind::Linear { va_minus_pa, .. } => {
                    let pa = PhysAddr::from(page.as_usize().wrapping_sub(va_minus_pa));
                    let r = m.map_one(page, pa, flags);
                    return self.mapped(m, r, va, start);
                }
                BackendKind::Contiguous { start_frame } => {
                    let pa = start_frame + (page.as_usize() - start);
                    let r = m.map_one(page, pa, flags);
                    return self.mapped(m, r, va, start);
                }
                BackendKind::Alloc { page: size, .. } => {
                    if let Some(r) = m.unpark(page, flags) {
                        return self.mapped(m, r, va, start);
                    }
                    match size {
                        LeafSize::Size4K => Need::Frame { fallback: false },
                        _ => match m.huge_block(page, start, end, size) {
                            Some(base) => Need::Huge { base, size },
                            None => Need::Frame { fallback: false },
                        },
                    }
                }
            };
            // The block this fault fills: claimed, unless another fault is
            // filling (part of) it: then wait for that one and look again.
            let (from, to) = match need {
                Need::Frame { .. } => (page.as_usize(), page.as_usize() + PAGE_SIZE_4K),
                Need::Huge { base, size } => (base, base + size.bytes()),
            };
            if m.claims.overlaps(from, to) {
                drop(m);
                self.wait_for_claim(from, to);
                waited = true;
                continue;
            }
            let claim = m.claims.add(from, to).then_some(from);
            drop(m);
            return self.fill(va, flags, start, need, claim);
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
                core::hint::spin_loop();
            }
            crate::lock::host_yield();
            if !self.mapper.lock().claims.overlaps(from, to) {
                return;
            }
        }
    }

    /// The rest of a fault on an allocated page that needs a new frame: the
    /// frame (or aligned run) is allocated and zeroed without the table lock,
    /// then installed under it. If the page was mapped meanwhile (another
    /// CPU's fault), the frame is freed and the fault succeeds; if only part
    /// of a huge block was mapped meanwhile, the page gets a 4K frame instead.
    #[inline]
    fn fill(
        &self,
        va: VirtAddr,
        flags: MappingFlags,
        start: usize,
        mut need: Need,
        claim: Option<usize>,
    ) -> Result<(), FaultError> {
        let page = va.align_down_4k();
        loop {
            let (at, size, fallback) = match need {
                Need::Frame { fallback } => (page.as_usize(), LeafSize::Size4K, fallback),
                Need::Huge { base, size } => (base, size, false),
            };
            let Some(pa) = fault_frame::<H>(size) else {
                if let Need::Huge { .. } = need {
                    // No aligned run free: this page gets a 4K frame.
                    need = Need::Frame { fallback: true };
                    continue;
                }
                if let Some(c) = claim {
                    self.mapper.lock().claims.remove(c);
                }
                return Err(self.no_memory(start));
            };
            let frames = size.bytes() / PAGE_SIZE_4K;
            let mut m = self.mapper.lock();
            let r = m.install(at, pa, size, flags);
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
                    // Something was mapped at `at` since the first look; only
                    // another CPU's fault can have done it (every other change
                    // needs `&mut self`).
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
                    need = Need::Frame { fallback: false };
                }
                Err(NoMemory) => {
                    drop(m);
                    H::dealloc_frames(pa, frames);
                    return Err(self.no_memory(start));
                }
            }
        }
    }

    /// Ends a fault that mapped a page under the table lock `m` (a parked
    /// frame, a linear or contiguous page).
    #[inline]
    fn mapped(
        &self,
        mut m: crate::lock::TableGuard<'_, Mapper<M, PTE, H>>,
        r: Result<(), NoMemory>,
        va: VirtAddr,
        start: usize,
    ) -> Result<(), FaultError> {
        match r {
            Ok(()) => {
                m.faults_handled += 1;
                drop(m);
                log::trace!("fault at {va:?} mapped");
                Ok(())
            }
            Err(NoMemory) => {
                drop(m);
                Err(self.no_memory(start))
            }
        }
    }

    /// A fault at `va` on a page that is mapped already: a stale TLB entry if
    /// the PTE allows `access` (flushed, counted: `true`), else `false`
    /// (denied). Kept out of line: the lazy path does not need its registers.
    #[cold]
    #[inline(never)]
    fn mapped_already(
        m: &mut Mapper<M, PTE, H>,
        va: VirtAddr,
        pte_flags: MappingFlags,
        access: Access,
        waited: bool,
    ) -> bool {
        if allows(pte_flags, access) {
            // Stale TLB entry (e.g. after a protect on another path), or the
            // page another CPU's fault mapped while this one waited: drop
            // whatever this CPU's TLB holds for it.
            flush_one::<M>(va.align_down_4k());
            if waited {
                m.fault_races += 1;
                log::trace!("fault at {va:?} mapped by another CPU");
            } else {
                m.spurious_faults += 1;
                log::trace!("spurious fault at {va:?}");
            }
            return true;
        }
        false
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
