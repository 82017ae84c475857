//! Access probes: one byte load (and a load + store back) whose fault is fixed
//! up instead of ending the kernel.
//!
//! Each board defines, in its own assembly, two functions and five labels with
//! these exact symbol names (the contract; checked by the linker):
//!
//! | symbol | what |
//! |---|---|
//! | `tessera_probe_read(addr) -> usize` | sets the return register to 0, loads the byte at `addr`, returns |
//! | `tessera_probe_read_insn` | the load instruction |
//! | `tessera_probe_read_ret` | the return instruction after it |
//! | `tessera_probe_write(addr) -> usize` | sets the return register to 0, loads the byte, stores it back, returns |
//! | `tessera_probe_write_load`, `tessera_probe_write_store` | the load and the store |
//! | `tessera_probe_write_ret` | the return instruction |
//!
//! The routines clobber only caller-saved scratch registers. When the kernel
//! denies a page fault whose pc is one of the instruction labels, the board's trap
//! handler asks [`fixup`] where to resume, sets the return register to 1 and
//! resumes there, so the probe returns "faulted". A fault the kernel resolves (a
//! lazy page) is retried and the probe returns 0.

unsafe extern "C" {
    fn tessera_probe_read(addr: usize) -> usize;
    fn tessera_probe_write(addr: usize) -> usize;
    static tessera_probe_read_insn: u8;
    static tessera_probe_read_ret: u8;
    static tessera_probe_write_load: u8;
    static tessera_probe_write_store: u8;
    static tessera_probe_write_ret: u8;
}

/// Loads the byte at `addr`; true if the load faulted and was not resolved.
pub fn read(addr: usize) -> bool {
    // SAFETY: per the contract above, the board's routine clobbers only
    // caller-saved registers (which the C ABI of the declaration already assumes),
    // loads one byte into one of them and returns in every case (a denied fault is
    // fixed up by the trap handler); it writes no memory. A load from a device
    // register may act on the device: that is the caller's choice of `addr`, not a
    // memory-safety matter.
    unsafe { tessera_probe_read(addr) != 0 }
}

/// Loads the byte at `addr` and stores it back; true if either access faulted.
pub fn write(addr: usize) -> bool {
    // SAFETY: as for `read`; the store writes back the value just loaded, so a
    // successful probe changes no memory: one CPU with interrupts disabled, and a
    // fault the kernel resolves between the load and the store changes mappings,
    // not the byte's value.
    unsafe { tessera_probe_write(addr) != 0 }
}

/// Where to resume after a denied fault at `pc`, if `pc` is a probe instruction.
pub fn fixup(pc: usize) -> Option<usize> {
    let read_ret = &raw const tessera_probe_read_ret as usize;
    let write_ret = &raw const tessera_probe_write_ret as usize;
    if pc == &raw const tessera_probe_read_insn as usize {
        Some(read_ret)
    } else if pc == &raw const tessera_probe_write_load as usize
        || pc == &raw const tessera_probe_write_store as usize
    {
        Some(write_ret)
    } else {
        None
    }
}
