//! The page-table metadata this board gives the kernel: AArch64's geometry
//! (page_table_multiarch's `A64PagingMetaData`) with a *local* TLB flush.
//!
//! The page-table layer calls `PagingMetaData::flush_tlb` only for batches
//! that added translations, and for a stale entry the fault path found on
//! this CPU; every batch that removed or weakened one goes to the kernel's
//! shootdown, which flushes with `Board::flush_tlb` (broadcast `TLBI ...IS`).
//! page_table_multiarch's own `flush_tlb` broadcasts (`TLBI VAAE1IS`): on
//! every lazy fault that would make every CPU drop the address (under QEMU
//! TCG, stop every vCPU to do it) for a translation no CPU can hold, since
//! AArch64 TLBs do not cache invalid entries. The local form keeps the one
//! thing a new entry needs here: the table write ordered before this CPU's
//! next access (`DSB ISHST`, `ISB`), with the local invalidation for the
//! stale-entry case.

use core::arch::asm;

use memory_addr::VirtAddr;
use page_table_multiarch::PagingMetaData;
use page_table_multiarch::aarch64::A64PagingMetaData;

/// AArch64 geometry, local TLB flush (see the module docs).
pub struct LocalFlushMeta;

impl PagingMetaData for LocalFlushMeta {
    const LEVELS: usize = A64PagingMetaData::LEVELS;
    const PA_MAX_BITS: usize = A64PagingMetaData::PA_MAX_BITS;
    const VA_MAX_BITS: usize = A64PagingMetaData::VA_MAX_BITS;
    const PA_MAX_ADDR: usize = A64PagingMetaData::PA_MAX_ADDR;
    type VirtAddr = VirtAddr;

    fn paddr_is_valid(paddr: usize) -> bool {
        A64PagingMetaData::paddr_is_valid(paddr)
    }

    fn vaddr_is_valid(vaddr: usize) -> bool {
        A64PagingMetaData::vaddr_is_valid(vaddr)
    }

    fn flush_tlb(vaddr: Option<VirtAddr>) {
        // SAFETY: TLB maintenance on this CPU only drops cached translations;
        // the barriers order it after earlier table writes (`dsb ishst`, which
        // also makes them visible to the other CPUs' walkers) and before later
        // accesses (`dsb nsh`, `isb`).
        unsafe {
            match vaddr {
                Some(va) => asm!(
                    "dsb ishst",
                    "tlbi vaae1, {}",
                    "dsb nsh",
                    "isb",
                    in(reg) (va.as_usize() >> 12) & ((1 << 44) - 1),
                    options(nostack)
                ),
                None => asm!(
                    "dsb ishst",
                    "tlbi vmalle1",
                    "dsb nsh",
                    "isb",
                    options(nostack)
                ),
            }
        }
    }
}
