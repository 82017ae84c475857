//! Where a cursor's TLB maintenance goes when several CPUs share page tables.
//!
//! A [`Cursor`](crate::Cursor) ends every batch of changes with one flush (see
//! the crate docs). A change that only adds translations (a map into empty
//! slots) is flushed locally with `M::flush_tlb`: no CPU can cache what was
//! not there, and a CPU that faults on it before seeing the new entry finds
//! it mapped (a spurious fault its handler flushes locally). A change that
//! removes or weakens translations (unmap, a protect that takes access away, a split, an unlinked
//! table) goes to the [`Shootdown`] the kernel installed with
//! [`set_shootdown`], once per cursor flush: it must return only after every
//! CPU that may cache the table's translations has dropped them. Only then
//! does the cursor free retired table frames, and only then may the caller
//! free the data frames the unmap returned. Without an installed shootdown
//! (one CPU, host tests) the cursor flushes locally.

use memory_addr::PhysAddr;

/// A kernel's cross-CPU TLB flush for one batch of removed or weakened
/// translations.
///
/// # Safety
///
/// [`Shootdown::shootdown`] must return only after every CPU that may hold
/// translations of the table rooted at `root` has dropped those at `pages`
/// (each address names the whole leaf containing it), or all of them if
/// `all`; the calling CPU included. Frames are freed on the strength of it.
pub unsafe trait Shootdown: Sync {
    /// Drops the translations everywhere, then returns (see the trait docs).
    fn shootdown(&self, root: PhysAddr, pages: &[usize], all: bool);

    /// One step of a loop that waits for another CPU with interrupts off
    /// (a spin lock, a claim): answers this CPU's pending flush requests, so
    /// that a CPU shooting down while the awaited CPU waits on it cannot
    /// deadlock. The default only hints the CPU that it spins.
    fn relax(&self) {
        core::hint::spin_loop();
    }
}

/// One step of a wait loop (see [`Shootdown::relax`]): the installed
/// shootdown's, or a spin hint without one. Every loop that waits for
/// another CPU while holding, or standing in the way of, page-table work
/// calls it.
#[inline]
pub fn relax() {
    match installed() {
        Some(s) => s.relax(),
        None => core::hint::spin_loop(),
    }
}

static SHOOTDOWN: spin::Once<&'static dyn Shootdown> = spin::Once::new();

/// Installs the kernel's shootdown for every page table from now on; the
/// first call wins (returns whether it was this one). Install it before a
/// second CPU runs.
pub fn set_shootdown(s: &'static dyn Shootdown) -> bool {
    let mut first = false;
    SHOOTDOWN.call_once(|| {
        first = true;
        s
    });
    first
}

/// The installed shootdown, if any.
#[inline]
pub(crate) fn installed() -> Option<&'static dyn Shootdown> {
    SHOOTDOWN.get().copied()
}
