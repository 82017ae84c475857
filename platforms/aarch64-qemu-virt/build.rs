//! Writes `kernel.ld` for this board (the common layout of
//! `modules/config/src/linker.rs`) and puts it on the link path.

use config::linker::{Board, emit};

fn main() {
    emit(
        "aarch64",
        &Board {
            crate_name: "aarch64-qemu-virt",
            output_arch: "aarch64",
            data: &["*(.got .got.*)"],
            ..Board::default()
        },
    );
}
