//! The console: COM1, a 16550 UART at I/O port 0x3f8 (QEMU's `-nographic` serial).

use crate::cpu::{inb, outb};

const COM1: u16 = 0x3f8;
/// Register offsets.
const DATA: u16 = 0;
const INT_ENABLE: u16 = 1;
const FIFO_CTRL: u16 = 2;
const LINE_CTRL: u16 = 3;
const MODEM_CTRL: u16 = 4;
const LINE_STATUS: u16 = 5;
/// Line status: the transmit holding register is empty.
const THR_EMPTY: u8 = 1 << 5;

/// 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    // SAFETY: COM1 is a 16550 on every PC and q35; these writes only program it.
    unsafe {
        outb(COM1 + INT_ENABLE, 0x00);
        outb(COM1 + LINE_CTRL, 0x80); // divisor latch access
        outb(COM1 + DATA, 1); // divisor low: 115200 baud
        outb(COM1 + INT_ENABLE, 0); // divisor high
        outb(COM1 + LINE_CTRL, 0x03); // 8 bits, no parity, one stop bit
        outb(COM1 + FIFO_CTRL, 0xc7); // enable and clear FIFOs
        outb(COM1 + MODEM_CTRL, 0x03); // DTR, RTS
    }
}

fn put(b: u8) {
    // SAFETY: polling the line status and writing the data register of COM1 only
    // sends a byte.
    unsafe {
        while inb(COM1 + LINE_STATUS) & THR_EMPTY == 0 {
            core::hint::spin_loop();
        }
        outb(COM1 + DATA, b);
    }
}

/// Sends bytes, turning `\n` into `\r\n` for terminals.
pub fn write(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put(b'\r');
        }
        put(b);
    }
}
