//! The PL011 UART at physical 0x0900_0000, reached at its high-half address.
//!
//! The boot table maps QEMU virt's first GiB (its devices) as device memory at the
//! high-half offset, and the kernel address space maps the `pl011` MMIO region of
//! the board's TOML there too, so the same address works before and after the
//! runtime switches tables. Only transmit is used: a byte is written to the data
//! register once the transmit FIFO is not full.

/// Physical address of the PL011.
pub const PL011_PADDR: usize = 0x0900_0000;

const BASE: usize = PL011_PADDR + config::PHYS_VIRT_OFFSET;
/// Data register.
const DR: usize = 0x00;
/// Flag register.
const FR: usize = 0x18;
/// Control register.
const CR: usize = 0x30;
/// FR: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;
/// CR: UART enable, transmit enable, receive enable.
const CR_ENABLE: u32 = (1 << 0) | (1 << 8) | (1 << 9);

fn reg(offset: usize) -> *mut u32 {
    (BASE + offset) as *mut u32
}

/// Enables the UART (QEMU's is usable from reset; real PL011s need the enables).
pub fn init() {
    // SAFETY: CR is a register of the PL011, mapped as device memory at `BASE` (see
    // the module docs); enabling transmit and receive has no other effect.
    unsafe { reg(CR).write_volatile(CR_ENABLE) };
}

/// Writes bytes, blocking while the transmit FIFO is full.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: FR and DR are registers of the PL011, mapped as device memory at
        // `BASE`; reading FR has no side effect, writing DR sends one byte.
        unsafe {
            while reg(FR).read_volatile() & FR_TXFF != 0 {
                core::hint::spin_loop();
            }
            reg(DR).write_volatile(b as u32);
        }
    }
}
