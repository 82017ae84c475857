//! Writes `kernel.ld` for this board (the common layout of
//! `modules/config/src/linker.rs`) and puts it on the link path.
//!
//! The script keeps the whole image in one `PT_LOAD` segment with file layout equal
//! to memory layout, because QEMU loads it through the multiboot "a.out kludge"
//! (header, load, load-end, bss-end and entry addresses in the multiboot header),
//! not as an ELF. Those addresses are physical: the `*_phys` symbols below give
//! them to the 32-bit boot code, which runs before paging.

use config::linker::{Board, emit};

fn main() {
    let Some(cfg) = emit(
        "x86_64",
        &Board {
            crate_name: "x86_64-qemu-q35",
            output_arch: "i386:x86-64",
            phdrs: Some(("PHDRS\n{\n    all PT_LOAD FLAGS(7);\n}\n", ":all")),
            rodata: &["*(.lrodata .lrodata.*)"],
            data: &[
                "*(.ldata .ldata.*)",
                "/* The prebuilt core is position independent: its GOT must be loaded. */",
                "*(.got .got.*)",
                "*(.got.plt)",
                ". = ALIGN(16);",
            ],
            bss: &["*(.lbss .lbss.*)"],
            symbols: &[
                "/* Physical addresses for the multiboot header and the 32-bit boot code. */",
                "_skernel_phys = _skernel - PHYS_VIRT_OFFSET;",
                "_edata_phys = _edata - PHYS_VIRT_OFFSET;",
                "_ekernel_phys = _ekernel - PHYS_VIRT_OFFSET;",
                "tessera_multiboot_header_phys = tessera_multiboot_header - PHYS_VIRT_OFFSET;",
                "tessera_start64_phys = tessera_start64 - PHYS_VIRT_OFFSET;",
                "tessera_boot_gdt_phys = tessera_boot_gdt - PHYS_VIRT_OFFSET;",
                "tessera_boot_gdt_ptr_phys = tessera_boot_gdt_ptr - PHYS_VIRT_OFFSET;",
                "tessera_boot_pml4_phys = tessera_boot_pml4 - PHYS_VIRT_OFFSET;",
                "tessera_boot_pdpt_phys = tessera_boot_pdpt - PHYS_VIRT_OFFSET;",
                "tessera_boot_pd_phys = tessera_boot_pd - PHYS_VIRT_OFFSET;",
            ],
        },
    ) else {
        return; // host builds need no linker script (the crate is empty there)
    };
    assert!(
        cfg.kernel_paddr + (64 << 20) < 1 << 32,
        "kernel-paddr {:#x}: the multiboot loader needs the image below 4 GiB",
        cfg.kernel_paddr
    );
    // q35's PCIe ECAM window starts at 0xb000_0000: RAM below 4 GiB must end by
    // then. (With MEM >= 2816M QEMU keeps 2 GiB low and moves the rest above 4 GiB;
    // the board file's [memory.split] says so, and the config follows it.)
    for (start, size) in cfg.ram() {
        assert!(
            start >= 1 << 32 || start + size <= 0xb000_0000,
            "{}: RAM [{start:#x}, {:#x}) reaches into q35's PCIe window at 0xb000_0000 \
             (give the board a [memory.split] or use MEM below 2816M)",
            cfg.path.display(),
            start + size
        );
    }
}
