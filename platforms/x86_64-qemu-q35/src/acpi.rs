//! The CPUs present, from the ACPI MADT.
//!
//! [`scan`] runs once, on the boot CPU, under the boot page table (which maps
//! the first 4 GiB of physical memory at `config::PHYS_VIRT_OFFSET`): the ACPI
//! tables lie in RAM the firmware's memory map reserves, which the kernel
//! address space does not map, so they are read before the kernel runs and
//! only the result is kept (for [`cpus`]).
//!
//! The walk: the RSDP ("RSD PTR ", 16-byte aligned, in the first KiB of the
//! EBDA or in 0xE0000..0x100000), then the XSDT (revision 2 and later) or the
//! RSDT, then the table with signature "APIC" (the MADT), whose records of type
//! 0 (processor local APIC) with the enabled flag give the CPUs' APIC ids, in
//! firmware order. Records of type 9 (x2APIC) name CPUs beyond APIC id 254,
//! which the board's xAPIC cannot address; they are skipped.
//!
//! Parsed by hand rather than with the `acpi` crate: the walk runs before the
//! kernel has a heap or its address space, and it reads a handful of
//! fixed-layout records; the crate's mapping-handler model brings nothing here.
//! Every address read is checked to lie below 4 GiB (the boot table's reach).

use core::sync::atomic::{AtomicUsize, Ordering};

use hal::smp::MAX_CPUS;

/// The boot table's reach: physical addresses below it can be read.
const LIMIT: u64 = 1 << 32;
/// Most CPUs a MADT may list that [`scan`] records.
const MAX: usize = MAX_CPUS;

/// APIC ids of the enabled local APICs, MADT order; `LEN` are valid.
static IDS: [AtomicUsize; MAX] = [const { AtomicUsize::new(0) }; MAX];
static LEN: AtomicUsize = AtomicUsize::new(0);
/// Enabled local APICs past [`MAX`].
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Reads a `T` at physical `pa` through the boot table's high-half mapping.
///
/// # Safety
///
/// The boot page table must be active, and `pa..pa + size_of::<T>()` must lie
/// below 4 GiB and hold firmware memory (no device register).
unsafe fn read<T: Copy>(pa: u64) -> T {
    let va = (pa as usize + config::PHYS_VIRT_OFFSET) as *const T;
    // SAFETY: the caller guarantees the range is mapped plain memory; ACPI
    // structures are byte-packed, hence unaligned.
    unsafe { va.read_unaligned() }
}

/// Whether `[pa, pa + len)` lies below 4 GiB.
fn readable(pa: u64, len: u64) -> bool {
    pa.checked_add(len).is_some_and(|end| end <= LIMIT)
}

/// Finds the RSDP: its physical address.
///
/// # Safety
///
/// The boot page table must be active.
unsafe fn find_rsdp() -> Option<u64> {
    // SAFETY: the BIOS data area word at 0x40e (the EBDA's segment) is RAM.
    let ebda = (unsafe { read::<u16>(0x40e) } as u64) << 4;
    let areas = [(ebda, ebda + 1024), (0xe0000, 0x100000)];
    for (start, end) in areas {
        if start == 0 || end > 0x100000 {
            continue;
        }
        let mut pa = start;
        while pa + 20 <= end {
            // SAFETY: `pa..pa + 20` lies below 1 MiB, BIOS memory.
            let bytes = unsafe { read::<[u8; 20]>(pa) };
            let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
            if bytes.starts_with(b"RSD PTR ") && sum == 0 {
                return Some(pa);
            }
            pa += 16;
        }
    }
    None
}

/// Records the enabled CPUs of the MADT. Called once, on the boot CPU, before
/// the kernel runs.
///
/// # Safety
///
/// The boot page table must be active (see the module documentation).
pub unsafe fn scan() {
    // SAFETY: the boot table is active (the caller's promise).
    let Some(rsdp) = (unsafe { find_rsdp() }) else {
        return;
    };
    // SAFETY: the RSDP's 36 bytes (revision 2) lie below 1 MiB: the search
    // stops 20 bytes before 1 MiB, and the extended fields are read only for
    // revision 2, whose structure the firmware placed whole.
    let (revision, rsdt, xsdt) = unsafe {
        let revision = read::<u8>(rsdp + 15);
        let xsdt = if revision >= 2 {
            read::<u64>(rsdp + 24)
        } else {
            0
        };
        (revision, read::<u32>(rsdp + 16) as u64, xsdt)
    };
    let (root, entry_size) = if revision >= 2 && xsdt != 0 {
        (xsdt, 8)
    } else {
        (rsdt, 4)
    };
    if !readable(root, 36) {
        return;
    }
    // SAFETY: the root table's header lies below 4 GiB (checked).
    let root_len = unsafe { read::<u32>(root + 4) } as u64;
    if !readable(root, root_len) {
        return;
    }
    let mut at = root + 36;
    while at + entry_size <= root + root_len {
        // SAFETY: the entry lies inside the root table (checked above).
        let table = unsafe {
            if entry_size == 8 {
                read::<u64>(at)
            } else {
                read::<u32>(at) as u64
            }
        };
        at += entry_size;
        // SAFETY: the header of `table` is read only if it lies below 4 GiB.
        if readable(table, 44) && unsafe { read::<[u8; 4]>(table) } == *b"APIC" {
            // SAFETY: the boot table is active; `table` is the MADT's address.
            unsafe { madt(table) };
            return;
        }
    }
}

/// Walks the MADT at `table` (its 44-byte header is readable).
///
/// # Safety
///
/// The boot page table must be active; `table` is a MADT below 4 GiB.
unsafe fn madt(table: u64) {
    // SAFETY: the header lies below 4 GiB (the caller checked).
    let len = unsafe { read::<u32>(table + 4) } as u64;
    if !readable(table, len) {
        return;
    }
    // Records start after the header (36 bytes), the local APIC address and flags.
    let mut at = table + 44;
    while at + 2 <= table + len {
        // SAFETY: the record's type and length lie inside the table (checked).
        let (kind, rec_len) = unsafe { (read::<u8>(at), read::<u8>(at + 1) as u64) };
        if rec_len < 2 || at + rec_len > table + len {
            return; // a malformed table: keep what was found
        }
        if kind == 0 && rec_len >= 8 {
            // SAFETY: the 8-byte record lies inside the table (checked).
            let (apic_id, flags) = unsafe { (read::<u8>(at + 3), read::<u32>(at + 4)) };
            if flags & 1 != 0 {
                push(apic_id as usize);
            }
        }
        at += rec_len;
    }
}

fn push(id: usize) {
    let n = LEN.load(Ordering::Relaxed);
    if n == MAX {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    IDS[n].store(id, Ordering::Relaxed);
    LEN.store(n + 1, Ordering::Release);
}

/// The CPUs [`scan`] found: the boot CPU (APIC id `boot`) first, then the
/// other enabled local APICs in MADT order. Only the boot CPU if there is no
/// MADT.
pub fn cpus(boot: usize) -> hal::CpuList {
    let mut list = hal::CpuList::boot_only(boot);
    for id in IDS.iter().take(LEN.load(Ordering::Acquire)) {
        list.push(id.load(Ordering::Relaxed));
    }
    // `IDS` held `MAX` entries when CPUs were dropped, so the list is full
    // and each of these pushes counts one more dropped CPU.
    for _ in 0..DROPPED.load(Ordering::Relaxed) {
        list.push(usize::MAX);
    }
    list
}
