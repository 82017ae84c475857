//! Writes `kernel.ld` for this board (the common layout of
//! `modules/config/src/linker.rs`) and puts it on the link path.

use config::linker::{Board, emit};

fn main() {
    emit(
        "riscv64",
        &Board {
            crate_name: "riscv64-qemu-virt",
            output_arch: "riscv",
            rodata: &["*(.srodata .srodata.*)", "*(.sdata2 .sdata2.*)"],
            data: &["*(.sdata .sdata.*)", "*(.got .got.*)"],
            bss: &["*(.sbss .sbss.*)"],
            ..Board::default()
        },
    );
}
