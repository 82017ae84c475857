//! A metadata adapter for hosted builds.

use core::marker::PhantomData;

use page_table_multiarch::PagingMetaData;

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
