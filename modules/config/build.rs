//! Turns the selected board configuration into `OUT_DIR/config.rs`.

#[path = "src/model.rs"]
mod model;

use std::fmt::Write;

fn main() {
    for v in model::ENV_VARS {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo:rerun-if-changed=src/model.rs");
    println!("cargo:rerun-if-changed={}", model::arches_file().display());
    let out_file = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("config.rs");
    if std::env::var_os("CARGO_FEATURE_BUILD").is_some() {
        // Built for a board's build script: it only needs the parser.
        std::fs::write(out_file, "").unwrap();
        return;
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let cfg = match model::load(&arch) {
        Ok(c) => c,
        Err(e) => panic!("board configuration: {e}"),
    };
    println!("cargo:rerun-if-changed={}", cfg.path.display());
    let mut out = String::new();
    let ranges = |rs: &[model::Range]| {
        let items: Vec<String> = rs
            .iter()
            .map(|r| format!("({:#x}, {:#x}, {:?})", r.start, r.size, r.name))
            .collect();
        format!("&[{}]", items.join(", "))
    };
    writeln!(
        out,
        "/// Architecture.\npub const ARCH: &str = {:?};",
        cfg.arch
    )
    .unwrap();
    writeln!(
        out,
        "/// Board name.\npub const PLATFORM: &str = {:?};",
        cfg.platform
    )
    .unwrap();
    writeln!(
        out,
        "/// Configuration file.\npub const CONFIG_FILE: &str = {:?};",
        cfg.path.display().to_string()
    )
    .unwrap();
    writeln!(
        out,
        "/// Start of RAM.\npub const PHYS_MEMORY_BASE: usize = {:#x};",
        cfg.phys_base
    )
    .unwrap();
    writeln!(
        out,
        "/// Size of RAM, all ranges together.\npub const PHYS_MEMORY_SIZE: usize = {:#x};",
        cfg.phys_size
    )
    .unwrap();
    let ram: Vec<String> = cfg
        .ram()
        .iter()
        .map(|(start, size)| format!("({start:#x}, {size:#x})"))
        .collect();
    writeln!(
        out,
        "/// RAM as (start, size), lowest first, disjoint; the first starts at\n/// [`PHYS_MEMORY_BASE`].\npub const RAM: &[(usize, usize)] = &[{}];",
        ram.join(", ")
    )
    .unwrap();
    writeln!(
        out,
        "/// One past the highest RAM address.\npub const PHYS_MEMORY_END: usize = {:#x};",
        cfg.ram_end()
    )
    .unwrap();
    writeln!(
        out,
        "/// Kernel load address.\npub const KERNEL_BASE_PADDR: usize = {:#x};",
        cfg.kernel_paddr
    )
    .unwrap();
    writeln!(out, "/// virtual = physical + this, for the kernel and the physical window.\npub const PHYS_VIRT_OFFSET: usize = {:#x};", cfg.phys_virt_offset).unwrap();
    writeln!(
        out,
        "/// Kernel link address.\npub const KERNEL_BASE_VADDR: usize = {:#x};",
        cfg.kernel_paddr.wrapping_add(cfg.phys_virt_offset)
    )
    .unwrap();
    writeln!(out, "/// Firmware-owned RAM: (start, size, name).\npub const RESERVED: &[(usize, usize, &str)] = {};", ranges(&cfg.reserved)).unwrap();
    writeln!(
        out,
        "/// Device windows: (start, size, name).\npub const MMIO: &[(usize, usize, &str)] = {};",
        ranges(&cfg.mmio)
    )
    .unwrap();
    writeln!(
        out,
        "/// Start of the app mapping window.\npub const MMAP_BASE: usize = {:#x};",
        cfg.mmap_base
    )
    .unwrap();
    writeln!(
        out,
        "/// Size of the app mapping window.\npub const MMAP_SIZE: usize = {:#x};",
        cfg.mmap_size
    )
    .unwrap();
    writeln!(
        out,
        "/// Boot stack size.\npub const STACK_SIZE: usize = {:#x};",
        cfg.stack_size
    )
    .unwrap();
    writeln!(
        out,
        "/// CPUs given to the machine.\npub const SMP: usize = {};",
        cfg.smp
    )
    .unwrap();
    writeln!(
        out,
        "/// Size of each CPU's trap stack.\npub const TRAP_STACK_SIZE: usize = {:#x};",
        model::TRAP_STACK_SIZE
    )
    .unwrap();
    writeln!(
        out,
        "/// Bytes of one secondary CPU's stack slot (guard, trap stack, guard, kernel stack).\npub const CPU_STACK_STRIDE: usize = {:#x};",
        cfg.cpu_stride()
    )
    .unwrap();
    writeln!(
        out,
        "/// Log level.\npub const LOG_LEVEL: &str = {:?};",
        cfg.log
    )
    .unwrap();
    std::fs::write(out_file, out).unwrap();
}
