//! Several CPUs: starting them, their idle loop, and running work on them.
//!
//! At boot ([`start_secondaries`]) the boot CPU asks the board which CPUs are
//! present (`Board::cpus`), takes the first `config::SMP` of them (warning if
//! the firmware has fewer), and starts each in turn on its own kernel and trap
//! stacks (`memmap::stacks_of`), waiting until it is online before starting
//! the next. A started CPU comes in at [`secondary_main`], says so, and idles.
//!
//! # Jobs
//! Each CPU has a queue of jobs ([`post`]). An idle CPU waits for an IPI with
//! interrupts off (`Board::wait_for_ipi`), outside the kernel address space
//! (`shootdown::KERNEL_SPACE`): shootdowns skip it. When a job arrives it enters
//! the space (a full flush if the space changed while it was away), runs the
//! job with interrupts on (IPIs answered), leaves the space and idles again.
//! CPU 0 runs the app's `main` and is always in the space.
//!
//! # Protocol
//! - A queue's lock is held only to push or pop a job (never while running
//!   one, waiting or taking another lock), with interrupts off.
//! - A job is posted, then its CPU is sent an IPI: a CPU that found its queue
//!   empty and went to `wait_for_ipi` has the IPI pending and returns.
//! - Waiting for a job's result, for a barrier or for a CPU to come online
//!   answers flush requests ([`crate::shootdown::relax`]): a CPU that waits
//!   never holds up another CPU's shootdown.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hal::Board;
use hal::smp::{CpuList, CpuStart, MAX_CPUS};
use kernel_guard::IrqSave;
use spin::{Mutex, Once};

use crate::board::Current;
use crate::shootdown::{KERNEL_SPACE, TLB, relax};

/// A job for a CPU.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// CPUs online (bit `i` = CPU `i`).
static ONLINE: AtomicU64 = AtomicU64::new(1);
/// CPUs started, as a count (CPU `0..count`).
static COUNT: AtomicUsize = AtomicUsize::new(1);
/// The firmware's CPU list (hardware ids).
static CPUS: Once<CpuList> = Once::new();

static QUEUES: [Mutex<VecDeque<Job>>; MAX_CPUS] = [const { Mutex::new(VecDeque::new()) }; MAX_CPUS];

/// How long the boot CPU waits for a started CPU to come online.
const ONLINE_TIMEOUT_SECS: u64 = 5;

/// Number of CPUs running (the boot CPU and every secondary that came online).
pub fn cpu_count() -> usize {
    COUNT.load(Ordering::Acquire)
}

/// The calling CPU's index.
pub fn current() -> usize {
    Current::cpu_index()
}

/// The hardware id of CPU `cpu` (APIC id, hart id, MPIDR affinity).
pub fn hw_id(cpu: usize) -> Option<usize> {
    CPUS.get().and_then(|l| l.ids().get(cpu).copied())
}

/// Starts the secondary CPUs (`config::SMP - 1` of them, fewer if the firmware
/// lists fewer). Called once by the boot CPU after the kernel address space
/// is active.
pub(crate) fn start_secondaries(boot: &hal::BootInfo, roots: hal::Roots) {
    let list = *CPUS.call_once(|| Current::cpus(boot));
    if list.dropped() > 0 {
        log::warn!(
            "the firmware lists {} CPUs more than the {MAX_CPUS} a kernel runs on",
            list.dropped()
        );
    }
    let want = config::SMP;
    if list.len() < want {
        log::warn!(
            "SMP={want}: the firmware lists {} CPU(s); running on those",
            list.len()
        );
    }
    let n = want.min(list.len());
    for cpu in 1..n {
        let [trap, kernel] = crate::memmap::stacks_of(cpu);
        let start = CpuStart {
            index: cpu,
            hw_id: list.ids()[cpu],
            stack_top: kernel.top,
            trap_stack_top: trap.top,
            roots,
        };
        // SAFETY: called once per CPU from the boot CPU; the stacks of slot `cpu`
        // are that CPU's alone (no other CPU is given them), and `roots` is the
        // kernel page table, which stays active for as long as the kernel runs.
        if let Err(e) = unsafe { Current::start_cpu(&start) } {
            log::warn!("CPU {cpu} (hw id {:#x}) did not start: {e}", start.hw_id);
            break;
        }
        if !wait_online(cpu) {
            log::warn!(
                "CPU {cpu} (hw id {:#x}) started but did not come online",
                start.hw_id
            );
            break;
        }
        COUNT.store(cpu + 1, Ordering::Release);
    }
    if want > 1 {
        log::info!("smp: {} of {want} CPU(s) online", cpu_count());
    }
}

fn wait_online(cpu: usize) -> bool {
    let start = Current::cycles();
    let limit = Current::cycles_per_sec().unwrap_or(1_000_000_000) * ONLINE_TIMEOUT_SECS;
    while ONLINE.load(Ordering::Acquire) & (1 << cpu) == 0 {
        if Current::cycles().wrapping_sub(start) > limit {
            return false;
        }
        relax();
    }
    true
}

/// The kernel's side of `hal::kernel::secondary_main`.
pub(crate) fn secondary_main(cpu: usize) -> ! {
    assert_eq!(
        cpu,
        Current::cpu_index(),
        "the board started CPU {cpu} with another per-CPU index"
    );
    log::info!(
        "CPU {cpu} (hw id {:#x}) online",
        hw_id(cpu).unwrap_or(usize::MAX)
    );
    ONLINE.fetch_or(1 << cpu, Ordering::AcqRel);
    idle(cpu)
}

/// The idle loop of a secondary CPU: runs its jobs, sleeps in between.
fn idle(cpu: usize) -> ! {
    loop {
        let irq = IrqSave::new();
        let job = QUEUES[cpu].lock().pop_front();
        match job {
            Some(job) => {
                KERNEL_SPACE.enter(&TLB, cpu);
                drop(irq);
                job();
                let _irq = IrqSave::new();
                KERNEL_SPACE.leave(&TLB, cpu);
            }
            None => {
                Current::wait_for_ipi();
                drop(irq);
            }
        }
    }
}

/// The kernel's side of `hal::kernel::ipi`: answers flush requests (job
/// wake-ups need nothing more: the idle loop looks at its queue).
pub(crate) fn ipi() {
    TLB.poll(Current::cpu_index());
}

/// Why a job could not be posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// No such CPU is online.
    NoSuchCpu(usize),
    /// The job's CPU is the calling CPU (run it directly instead).
    IsCurrent,
}

impl core::fmt::Display for PostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PostError::NoSuchCpu(c) => write!(f, "CPU {c} is not online"),
            PostError::IsCurrent => f.write_str("the job's CPU is the calling CPU"),
        }
    }
}

/// Queues `job` on CPU `cpu` (not the calling CPU, and not CPU 0, which runs
/// the app's `main` and has no idle loop) and wakes it.
pub fn post(cpu: usize, job: Job) -> Result<(), PostError> {
    if cpu == current() {
        return Err(PostError::IsCurrent);
    }
    if cpu == 0 || cpu >= cpu_count() {
        return Err(PostError::NoSuchCpu(cpu));
    }
    {
        let _irq = IrqSave::new();
        QUEUES[cpu].lock().push_back(job);
    }
    Current::send_ipi(1 << cpu);
    Ok(())
}

/// Waits until `done` holds, answering flush requests meanwhile.
pub fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        relax();
    }
}
