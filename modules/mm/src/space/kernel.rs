//! The kernel's calls: [`AddrSpace::map_linear`] and [`AddrSpace::map_kernel`]
//! map fixed physical ranges (the kernel image, physical memory, MMIO) with
//! linear areas, huge pages where aligned. They do not check the app window:
//! the caller keeps kernel areas out of it (so app calls cannot reach them).
//! On error nothing the call mapped is left mapped.

use axerrno::{AxError, AxResult};
use hal::{MemKind, MemRegion};
use memory_addr::{MemoryAddr, PAGE_SIZE_4K, PhysAddr, VirtAddr};
use page_table_entry::{GenericPTE, MappingFlags};
use page_table_multiarch::{PagingHandler, PagingMetaData};

use super::AddrSpace;
use crate::backends::Linear;

impl<
    M: PagingMetaData<VirtAddr = VirtAddr> + 'static,
    PTE: GenericPTE + 'static,
    H: PagingHandler + 'static,
> AddrSpace<M, PTE, H>
{
    /// Maps `[va, va + size)` linearly to `[pa, pa + size)` (kernel use; not
    /// restricted to the window). `huge` allows 2M/1G pages where aligned.
    /// `flags` must contain `READ` (as an app's `Prot` must for any access).
    pub fn map_linear(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: usize,
        flags: MappingFlags,
        huge: bool,
    ) -> AxResult {
        self.batched(|s| s.map_linear_op(va, pa, size, flags, huge))
    }

    /// [`Self::map_linear`] inside its operation batch.
    fn map_linear_op(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: usize,
        flags: MappingFlags,
        huge: bool,
    ) -> AxResult {
        let range = Self::valid_range(va, size).ok_or(AxError::InvalidInput)?;
        if !pa.is_aligned_4k()
            || pa.as_usize().checked_add(size).is_none()
            || !M::paddr_is_valid(pa.as_usize() + size - 1)
            || !flags.contains(MappingFlags::READ)
        {
            return Err(AxError::InvalidInput);
        }
        let (s, e) = (range.start.as_usize(), range.end.as_usize());
        let va_minus_pa = s.wrapping_sub(pa.as_usize());
        log::debug!("map_linear [{s:#x}, {e:#x}) -> {pa:?} {flags:?}");
        self.set
            .insert(
                s,
                e,
                flags,
                crate::backend::boxed(Linear::new(va_minus_pa, huge)),
                self.mapper.get_mut(),
            )
            .map_err(AxError::from)
    }

    /// Maps the physical memory map at `va = pa + phys_virt_offset` (the
    /// kernel's physical-memory window, `va - pa`, wrapping): Text `r-x`,
    /// Rodata `r--`, Data and Free `rw-` (huge pages where aligned), Reserved
    /// `r--`, Mmio `rw-` device. Physical page 0 is never mapped at virtual 0.
    /// Adjacent regions with equal flags form one area. On error, the regions
    /// mapped by this call are removed again.
    pub fn map_kernel(&mut self, regions: &[MemRegion], phys_virt_offset: usize) -> AxResult {
        self.batched(|s| s.map_kernel_op(regions, phys_virt_offset))
    }

    /// [`Self::map_kernel`] inside its operation batch.
    fn map_kernel_op(&mut self, regions: &[MemRegion], phys_virt_offset: usize) -> AxResult {
        let mut done: alloc::vec::Vec<(usize, usize)> = alloc::vec::Vec::new();
        done.try_reserve_exact(regions.len())
            .map_err(|_| AxError::NoMemory)?;
        for r in regions {
            let flags = match r.kind {
                MemKind::Text => MappingFlags::READ | MappingFlags::EXECUTE,
                MemKind::Rodata | MemKind::Reserved => MappingFlags::READ,
                MemKind::Data | MemKind::Free => MappingFlags::READ | MappingFlags::WRITE,
                MemKind::Mmio => MappingFlags::READ | MappingFlags::WRITE | MappingFlags::DEVICE,
            };
            let (mut pa, mut size) = (r.paddr, r.size);
            let mut va = VirtAddr::from(pa.as_usize().wrapping_add(phys_virt_offset));
            if va.as_usize() == 0 && size >= PAGE_SIZE_4K {
                // Keep the NULL page unmapped.
                pa += PAGE_SIZE_4K;
                va += PAGE_SIZE_4K;
                size -= PAGE_SIZE_4K;
                if size == 0 {
                    continue;
                }
            }
            let res = if va.as_usize().checked_add(size).is_none() {
                Err(AxError::InvalidInput)
            } else {
                self.map_linear(va, pa, size, flags, true)
            };
            if let Err(e) = res {
                log::warn!(
                    "map_kernel: region {} {:?} at {pa:?}: {e:?}",
                    r.name,
                    r.kind
                );
                for &(s, e) in &done {
                    // The regions were mapped whole by this call: their ends are
                    // leaf boundaries, so nothing needs splitting.
                    self.set.unmap(s, e, self.mapper.get_mut());
                }
                return Err(e);
            }
            done.push((va.as_usize(), va.as_usize() + size));
        }
        Ok(())
    }
}
