//! [`AddrSpace::mremap`]: shrinking, growing in place, and moving a mapping
//! by moving its page-table entries (never its data).
//!
//! # Order of work
//! Every argument is checked first (the crate docs' error table). Then:
//! - **shrink**: the tail is unmapped (as `munmap`);
//! - **grow in place** (the range after the area is free and inside the
//!   window): the area's backend gives a backend for the new tail
//!   ([`Backend::extend`](crate::Backend::extend)), which is mapped as a new
//!   area and merged with the old one (so an eager area populates its tail,
//!   and a failure to do so changes nothing);
//! - **move** (`MAYMOVE`, and growing in place is not possible, or `FIXED`):
//!   the huge leaves at the old range's ends are split, the destination is
//!   chosen (congruent to the old address modulo 2 MiB when free, so huge
//!   leaves and whole tables of 4K leaves move as one entry each) or, with
//!   `FIXED`, cleared as by `mmap(FIXED)` (its page-table frames held
//!   first, so the move cannot run out of them after the old mapping there
//!   went), the translations and parked frames are moved
//!   (`paging::Cursor::move_region`: every destination table is allocated
//!   before the first entry moves), and the area is taken out of the set and
//!   put back at the new address ([`Backend::relocate`]
//!   (crate::Backend::relocate) updates what depends on the address); then
//!   the new length is reached by shrinking or growing at the new place.
//!
//! A call that fails changes nothing, except a `FIXED` destination cleared
//! before a grow that then runs out of frames (as Linux, which also unmaps
//! the destination first).

use axerrno::{AxError, AxResult};
use memory_addr::{PAGE_SIZE_4K, VirtAddr};
use page_table_entry::GenericPTE;
use page_table_multiarch::{PagingHandler, PagingMetaData};
use paging::LeafSize;

use super::{AddrSpace, page_len};

bitflags::bitflags! {
    /// Flags of [`AddrSpace::mremap`] (`MREMAP_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct RemapFlags: u32 {
        /// The mapping may move to another address if it cannot grow in
        /// place.
        const MAYMOVE = 1;
        /// Move the mapping to exactly `new_addr` (requires `MAYMOVE`),
        /// replacing whatever is mapped there.
        const FIXED = 2;
    }
}

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> AddrSpace<M, PTE, H>
{
    /// Changes the length of the mapping `[old_addr, old_addr + old_len)`
    /// (lengths rounded up to pages) to `new_len`, moving it if `flags`
    /// allow (see the module docs): returns its address afterwards. The old
    /// range must lie inside one area. Frames, data, flags and the area's
    /// kind go with it; no byte is copied. Errors in the crate docs' table.
    pub fn mremap(
        &mut self,
        old_addr: VirtAddr,
        old_len: usize,
        new_len: usize,
        flags: RemapFlags,
        new_addr: Option<VirtAddr>,
    ) -> AxResult<VirtAddr> {
        self.batched(|s| s.mremap_op(old_addr, old_len, new_len, flags, new_addr))
    }

    /// [`Self::mremap`] inside its operation batch.
    fn mremap_op(
        &mut self,
        old_addr: VirtAddr,
        old_len: usize,
        new_len: usize,
        flags: RemapFlags,
        new_addr: Option<VirtAddr>,
    ) -> AxResult<VirtAddr> {
        if flags.bits() & !RemapFlags::all().bits() != 0 {
            return Err(AxError::InvalidInput);
        }
        let fixed = flags.contains(RemapFlags::FIXED);
        let may_move = flags.contains(RemapFlags::MAYMOVE);
        if fixed && !may_move {
            return Err(AxError::InvalidInput);
        }
        let new_size = page_len(new_len).ok_or(AxError::InvalidInput)?;
        let (os, oe) = self.window_range(old_addr, old_len)?;
        let old_size = oe - os;
        let Some((_, area)) = self.set.find(os) else {
            return Err(AxError::BadAddress);
        };
        if area.end < oe {
            return Err(AxError::BadAddress);
        }
        let area_end = area.end;
        if fixed {
            let to = new_addr.ok_or(AxError::InvalidInput)?;
            let (ns, ne) = self.window_range(to, new_size)?;
            if ns < oe && os < ne {
                return Err(AxError::InvalidInput);
            }
            return self.move_fixed(os, old_size, ns, new_size);
        }
        if new_size <= old_size {
            if new_size < old_size {
                self.munmap_op(VirtAddr::from(os + new_size), old_size - new_size)?;
            }
            return Ok(VirtAddr::from(os));
        }
        // Grow: in place if the old range ends the area and room follows.
        let ne = os.checked_add(new_size).ok_or(AxError::NoMemory)?;
        let room = oe == area_end && ne <= self.window.end.as_usize() && !self.set.overlaps(oe, ne);
        if room {
            self.grow_at(os, oe, os, new_size)?;
            return Ok(VirtAddr::from(os));
        }
        if !may_move {
            return Err(AxError::NoMemory);
        }
        if !self.extendable(os) {
            return Err(AxError::BadAddress);
        }
        const M2: usize = LeafSize::Size2M.bytes();
        let align = if new_size >= M2 { M2 } else { PAGE_SIZE_4K };
        let ns = self.find_free_aligned(new_size, align, os % align)?;
        // The new tail first (it may fail: nothing else changed yet), then
        // the move, which merges the two.
        self.grow_at(os, oe, ns, new_size)?;
        if let Err(e) = self.move_to(os, old_size, ns) {
            self.set
                .unmap(ns + old_size, ns + new_size, self.mapper.get_mut());
            return Err(e);
        }
        Ok(VirtAddr::from(ns))
    }

    /// `FIXED`: the mapping goes to `[ns, ns + new_size)`, replacing what is
    /// there.
    fn move_fixed(
        &mut self,
        os: usize,
        old_size: usize,
        ns: usize,
        new_size: usize,
    ) -> AxResult<VirtAddr> {
        let (oe, ne) = (os + old_size, ns + new_size);
        let moved = old_size.min(new_size);
        if new_size > old_size && !self.extendable(os) {
            return Err(AxError::BadAddress);
        }
        // Every split the call needs, before anything else changes.
        let m = self.mapper.get_mut();
        let outer = m.split_edges(os, oe)?;
        let inner = match m.split_edges(os + moved, os + moved) {
            Ok(s) => s,
            Err(e) => {
                m.unsplit(outer);
                return Err(e.into());
            }
        };
        if self.set.overlaps(ns, ne) {
            // Clear the destination as mmap(FIXED) does, holding the table
            // frames the move can need (4K leaves) before anything goes.
            let m = self.mapper.get_mut();
            let r = m.split_edges(ns, ne).and_then(|dest| {
                m.reserve_tables(ns, ne, LeafSize::Size4K)
                    .inspect_err(|_| m.unsplit(dest))
            });
            if let Err(e) = r {
                m.unsplit(inner);
                m.unsplit(outer);
                return Err(e.into());
            }
            self.set.unmap(ns, ne, self.mapper.get_mut());
            self.mapper.get_mut().flush_batch();
            self.mapper.get_mut().release_reserve();
        }
        self.grow_at(os, oe, ns, new_size)?;
        if let Err(e) = self.move_to(os, moved, ns) {
            self.set.unmap(ns + moved, ne, self.mapper.get_mut());
            return Err(e);
        }
        if new_size < old_size {
            // Its ends were split above.
            self.set.unmap(os + new_size, oe, self.mapper.get_mut());
        }
        Ok(VirtAddr::from(ns))
    }

    /// Whether the area at `va` can grow (its backend has an extension).
    fn extendable(&self, va: usize) -> bool {
        self.set
            .find(va)
            .is_some_and(|(s, a)| a.backend.extend(s, a.end, a.end + PAGE_SIZE_4K).is_some())
    }

    /// For a move of `[os, oe)` (inside one area) to `ns` with the new size
    /// `new_size`: if it grows, maps the tail `[ns + (oe - os), ns +
    /// new_size)` (free) as the continuation of the old range, so the move
    /// merges with it. The area is looked up now (clearing a `FIXED`
    /// destination may have split it). Nothing changed on error.
    fn grow_at(&mut self, os: usize, oe: usize, ns: usize, new_size: usize) -> AxResult {
        let (te, ts) = (ns + new_size, ns + (oe - os));
        if te <= ts {
            return Ok(());
        }
        let Some((area_start, area)) = self.set.find(os) else {
            return Err(AxError::BadAddress);
        };
        let flags = area.flags;
        let Some(mut tail) = area.backend.extend(area_start, oe, oe + (te - ts)) else {
            return Err(AxError::BadAddress);
        };
        tail.relocate(oe, ts);
        self.set
            .insert(ts, te, flags, tail, self.mapper.get_mut())
            .map_err(AxError::from)
    }

    /// Moves `[os, os + size)` (inside one area) to the free range at `ns`:
    /// translations, parked frames and the area. Nothing changed on error.
    fn move_to(&mut self, os: usize, size: usize, ns: usize) -> AxResult {
        let oe = os + size;
        let m = self.mapper.get_mut();
        let splits = m.split_edges(os, oe)?;
        if let Err(e) = m.move_range(os, ns, size) {
            m.unsplit(splits);
            return Err(e.into());
        }
        let mut area = self.set.take(os, oe);
        area.backend.relocate(os, ns);
        area.end = ns + size;
        self.set.put(ns, area);
        Ok(())
    }
}
