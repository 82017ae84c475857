//! TLB shootdown for the kernel address space: the `tlb` crate's protocol
//! over this board, installed as `paging`'s [`paging::Shootdown`].
//!
//! - [`TLB`]: the kernel's mailboxes (one per CPU) over [`BoardTlb`], which
//!   flushes with `Board::flush_tlb` and interrupts with `Board::send_ipi`
//!   (none at all on a board with `Board::TLB_BROADCAST`).
//! - [`KERNEL_SPACE`]: the CPUs that run in the kernel address space. The boot
//!   CPU is always in it (it runs the app's `main`); a secondary CPU enters it
//!   when it takes a job and leaves it when it goes idle (`crate::smp`), so
//!   idle CPUs are not interrupted and catch up with a full flush when they
//!   come back if the space changed meanwhile.
//! - Every page-table cursor whose batch removed or weakened translations ends
//!   in `KernelShootdown`'s `paging::Shootdown::shootdown`, which returns only when every CPU of
//!   the space has flushed; the cursor frees table frames, and `mm` frees
//!   data frames, only after it returns.
//!
//! Who answers flush requests: a CPU's IPI handler (`hal::kernel::ipi`), and
//! every loop that waits with interrupts off ([`relax`]: the address-space
//! lock, `smp::run_on`'s wait, barriers, and the initiator's own wait for
//! acknowledgements). [`tlb::Tlb::poll`] is never re-entered on one CPU: every
//! caller runs it with interrupts disabled.

use hal::Board;
use kernel_guard::IrqSave;
use memory_addr::{PhysAddr, VirtAddr};
use tlb::{CpuMask, Flush, SpaceTlb, Tlb};

use crate::board::Current;

/// This board's flush instruction and IPI, for the `tlb` protocol.
pub struct BoardTlb;

// SAFETY: `flush_local` runs `Board::flush_tlb` on every page the flush
// names (any address of a leaf drops the whole leaf on every architecture we
// run on) or flushes everything; with `TLB_BROADCAST` the board promises
// that reaches every CPU. `send_ipi` makes each target call `hal::kernel::ipi`
// (which polls) from its IPI handler or its idle wait.
unsafe impl tlb::Platform for BoardTlb {
    const BROADCAST: bool = <Current as Board>::TLB_BROADCAST;

    fn flush_local(&self, _cpu: usize, flush: &Flush) {
        match flush {
            Flush::None => {}
            Flush::All => Current::flush_tlb(None),
            ranges => ranges.for_each_page(|va| Current::flush_tlb(Some(VirtAddr::from(va)))),
        }
    }

    fn send_ipi(&self, targets: CpuMask) {
        Current::send_ipi(targets.0);
    }
}

/// The kernel's shootdown mailboxes.
pub static TLB: Tlb<BoardTlb> = Tlb::new(BoardTlb);

/// The CPUs running in the kernel address space.
pub static KERNEL_SPACE: SpaceTlb = SpaceTlb::new();

/// `paging`'s hook: one shootdown per cursor flush.
struct KernelShootdown;

static SHOOTDOWN: KernelShootdown = KernelShootdown;

// SAFETY: `Shootdown::finish` returns only after every CPU of `KERNEL_SPACE`
// acknowledged the flush (or, with a broadcast flush, after the broadcast
// completed), the calling CPU's local flush included; CPUs outside the set
// flush everything before they enter it again (`SpaceTlb::enter`). The kernel
// has one address space, so `root` names it.
unsafe impl paging::Shootdown for KernelShootdown {
    fn shootdown(&self, _root: PhysAddr, pages: &[usize], all: bool) {
        // The initiator polls its own mailbox while it waits: no IPI handler may
        // run `poll` on this CPU meanwhile.
        let _irq = IrqSave::new();
        let mut sd = TLB.shootdown(&KERNEL_SPACE, Current::cpu_index());
        if all {
            sd.add_all();
        } else {
            for &va in pages {
                sd.add(va, va + memory_addr::PAGE_SIZE_4K);
            }
        }
        // The proof is for the callers (the cursor frees after we return).
        let _flushed = sd.finish();
    }

    /// `mm`'s spin waits (its table lock, a fault's claim) answer flush
    /// requests: a fault may shoot down (copy-on-write) while another CPU
    /// spins on that lock with interrupts off.
    fn relax(&self) {
        relax();
    }
}

/// Installs the shootdown and puts the boot CPU in the kernel space. Called
/// once, before any other CPU starts.
pub fn init() {
    paging::set_shootdown(&SHOOTDOWN);
    let _irq = IrqSave::new();
    KERNEL_SPACE.enter(&TLB, Current::cpu_index());
}

/// One step of a wait loop: answers this CPU's flush requests (with interrupts
/// off, so that no IPI handler polls at the same time) and tells the CPU it
/// spins. Every loop that waits for another CPU calls it.
#[inline]
pub fn relax() {
    {
        let _irq = IrqSave::new();
        TLB.poll(Current::cpu_index());
    }
    core::hint::spin_loop();
}

/// Counters of the shootdowns so far (for benchmarks and tests).
pub fn stats() -> tlb::TlbStats {
    TLB.stats()
}
