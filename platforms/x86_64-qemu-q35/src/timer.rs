//! The cycle counter's rate: the time-stamp counter measured against the HPET.
//!
//! q35 has an HPET at 0xfed0_0000 (an MMIO region of this board's config) whose
//! capabilities register states its period in femtoseconds. The first call of
//! [`tsc_hz`] starts the HPET's main counter if it is stopped, counts TSC ticks
//! over 10 ms of HPET time and caches the result; later calls return the cached
//! rate. Without a usable HPET (no sane period, or a counter that stops moving for
//! [`STALL_READS`] reads) the rate is unknown (`None`), found within about a
//! million register reads rather than after billions.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::cpu::rdtsc;

/// Physical address of the HPET's registers.
const HPET: usize = 0xfed0_0000;
/// General capabilities: bits 63:32 are the counter period in femtoseconds.
const CAPABILITIES: usize = 0x000;
/// General configuration: bit 0 enables the main counter.
const CONFIG: usize = 0x010;
const ENABLE: u64 = 1;
/// The main counter.
const COUNTER: usize = 0x0f0;
/// How long to measure, in femtoseconds (10 ms).
const WINDOW_FS: u64 = 10_000_000_000_000;
/// The HPET specification's upper bound for the period (100 ns).
const MAX_PERIOD_FS: u64 = 100_000_000;
/// Reads of an unchanged counter after which it counts as stopped. A running
/// counter ticks at least every 100 ns, far less than this many register reads.
const STALL_READS: u64 = 1 << 20;

/// The measured TSC rate; 0 until measured, `u64::MAX` if it cannot be.
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

fn reg(offset: usize) -> *mut u64 {
    (HPET + offset + config::PHYS_VIRT_OFFSET) as *mut u64
}

/// TSC ticks per second, measured once.
pub fn tsc_hz() -> Option<u64> {
    let hz = match TSC_HZ.load(Ordering::Relaxed) {
        0 => {
            let hz = measure().unwrap_or(u64::MAX);
            TSC_HZ.store(hz, Ordering::Relaxed);
            hz
        }
        hz => hz,
    };
    (hz != u64::MAX).then_some(hz)
}

fn measure() -> Option<u64> {
    // SAFETY: the HPET page is mapped at the high-half offset, by the boot table
    // and by the kernel address space (an MMIO region of this board's config).
    // Reading the capabilities and the counter has no side effect; setting the
    // enable bit only starts the main counter (no timer interrupts are armed, and
    // interrupts are disabled anyway).
    unsafe {
        let period_fs = reg(CAPABILITIES).read_volatile() >> 32;
        if period_fs == 0 || period_fs > MAX_PERIOD_FS {
            return None;
        }
        let config = reg(CONFIG).read_volatile();
        if config & ENABLE == 0 {
            reg(CONFIG).write_volatile(config | ENABLE);
        }
        let ticks = WINDOW_FS / period_fs;
        let hpet0 = reg(COUNTER).read_volatile();
        let tsc0 = rdtsc();
        let mut hpet1 = hpet0;
        let mut unchanged = 0u64;
        while hpet1.wrapping_sub(hpet0) < ticks {
            let now = reg(COUNTER).read_volatile();
            if now != hpet1 {
                hpet1 = now;
                unchanged = 0;
            } else {
                unchanged += 1;
                if unchanged > STALL_READS {
                    return None; // the counter does not run
                }
            }
        }
        let tsc1 = rdtsc();
        let elapsed_fs = hpet1.wrapping_sub(hpet0) as u128 * period_fs as u128;
        let hz = (tsc1.wrapping_sub(tsc0) as u128 * 1_000_000_000_000_000 / elapsed_fs) as u64;
        (hz != 0).then_some(hz)
    }
}
