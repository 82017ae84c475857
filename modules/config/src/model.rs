//! The board configuration file and how it is found.
//!
//! Shared, word for word, by this crate's build script (which turns it into
//! constants for the kernel) and by the boards' build scripts (which turn it into
//! linker scripts), so that both read one file the same way.
//!
//! Which file: `TESSERA_PLAT_CONFIG` (a path), else `TESSERA_PLATFORM` (a name under
//! `configs/platforms/`), else the default board of the target architecture as
//! `configs/arches.toml` names it. An architecture that file does not list, or a
//! board name without a file, is an error that names the known ones.
//! `TESSERA_MEM` (`128M`, `1G`, or bytes) overrides the RAM size, `TESSERA_SMP` the
//! CPU count and `TESSERA_LOG` the log level; the Makefile sets them from `MEM=`,
//! `SMP=` and `LOG=`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// One named physical range.
#[derive(Debug, Clone)]
pub struct Range {
    /// Start address.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// Name for the memory-map dump.
    pub name: String,
}

/// How the machine lays out RAM of a given size when it does not fit at
/// `phys-base` (the `[memory.split]` table): from `min-size` bytes of RAM on,
/// `low-size` bytes stay at `phys-base` and the rest starts at `high-base`.
/// (QEMU's q35 keeps 2 GiB below 4 GiB and moves the rest above 4 GiB once RAM
/// reaches 0xb000_0000 bytes, where its PCIe window begins.)
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// RAM sizes from this one up are split.
    pub min_size: u64,
    /// Bytes kept at `phys-base`.
    pub low_size: u64,
    /// Where the rest of RAM starts.
    pub high_base: u64,
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The architecture: a key of `configs/arches.toml` (a Rust `target_arch`).
    pub arch: String,
    /// Board name.
    pub platform: String,
    /// Start of RAM.
    pub phys_base: u64,
    /// Size of RAM (all ranges together).
    pub phys_size: u64,
    /// How RAM is split when it is large (see [`Split`]).
    pub split: Option<Split>,
    /// Where the kernel image is loaded.
    pub kernel_paddr: u64,
    /// virtual = physical + offset, for the kernel and the physical-memory window.
    pub phys_virt_offset: u64,
    /// RAM ranges that belong to firmware.
    pub reserved: Vec<Range>,
    /// Device register windows.
    pub mmio: Vec<Range>,
    /// Start of the window for app mappings.
    pub mmap_base: u64,
    /// Size of the window for app mappings.
    pub mmap_size: u64,
    /// Size of the boot stack.
    pub stack_size: u64,
    /// CPUs.
    pub smp: u64,
    /// `off`, `error`, `warn`, `info`, `debug` or `trace`.
    pub log: String,
}

/// Most CPUs a kernel runs on: the CPU sets of the TLB shootdown are 64-bit
/// masks (`tlb::MAX_CPUS`, `hal::smp::MAX_CPUS`).
pub const MAX_CPUS: u64 = 64;

/// Size of each CPU's trap stack, used when the trap entry finds the current
/// stack overflowed.
pub const TRAP_STACK_SIZE: u64 = 16 * 1024;

impl Config {
    /// Bytes of one secondary CPU's stack slot in the linker script: a guard
    /// page, the trap stack, a guard page, the kernel stack.
    pub fn cpu_stride(&self) -> u64 {
        4096 + TRAP_STACK_SIZE + 4096 + self.stack_size
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The list of architectures, each with its default board: `configs/arches.toml`.
pub fn arches_file() -> PathBuf {
    workspace_root().join("configs/arches.toml")
}

/// The folder of the board files, `configs/platforms/`.
pub fn boards_dir() -> PathBuf {
    workspace_root().join("configs/platforms")
}

/// The architectures of `configs/arches.toml`, each with its default board, sorted
/// by architecture.
pub fn arches() -> Result<Vec<(String, String)>, String> {
    let path = arches_file();
    let err = |e: String| format!("{}: {e}", path.display());
    let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
    let t: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.to_string()))?;
    let list = table(&t, "arch").map_err(err)?;
    list.iter()
        .map(|(arch, v)| {
            let board = v
                .as_table()
                .and_then(|b| b.get("default-board"))
                .and_then(|b| b.as_str())
                .ok_or_else(|| err(format!("[arch.{arch}] needs default-board = \"<board>\"")))?;
            Ok((arch.clone(), board.to_string()))
        })
        .collect()
}

/// The board names: the files `configs/platforms/<board>.toml`, sorted.
pub fn known_boards() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(boards_dir())
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names
}

/// The default board of `arch` (`configs/arches.toml`); an architecture the file
/// does not list is an error naming the ones it does.
pub fn default_platform(arch: &str) -> Result<String, String> {
    let list = arches()?;
    match list.iter().find(|(a, _)| a == arch) {
        Some((_, board)) => Ok(board.clone()),
        None => Err(format!(
            "unknown arch {arch:?}: known arches are {} ({})",
            list.iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            arches_file().display()
        )),
    }
}

/// A variable of the process environment, `None` if unset or empty.
fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The file chosen by the environment (see the module docs) for `arch`.
pub fn config_path(arch: &str) -> Result<PathBuf, String> {
    config_path_with(arch, &process_env)
}

fn config_path_with(arch: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    if let Some(p) = env("TESSERA_PLAT_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let (name, given) = match env("TESSERA_PLATFORM") {
        Some(name) => (name, "TESSERA_PLATFORM"),
        None => (default_platform(arch)?, "configs/arches.toml"),
    };
    let path = boards_dir().join(format!("{name}.toml"));
    if !path.is_file() {
        return Err(format!(
            "unknown board {name:?} ({given}): known boards are {} ({}/<board>.toml)",
            known_boards().join(", "),
            boards_dir().display()
        ));
    }
    Ok(path)
}

fn num(v: &toml::Value, what: &str) -> Result<u64, String> {
    match v {
        toml::Value::Integer(i) => u64::try_from(*i).map_err(|_| format!("{what}: negative")),
        toml::Value::String(s) => parse_num(s).ok_or_else(|| format!("{what}: bad number {s:?}")),
        _ => Err(format!("{what}: expected a number")),
    }
}

/// Parses `0x..` / decimal numbers with `_` separators and an optional K/M/G suffix.
pub fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    let (digits, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (&s[..], 1),
    };
    let n = match digits.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok()?,
        None => digits.parse().ok()?,
    };
    n.checked_mul(mult)
}

fn table<'a>(t: &'a toml::Table, key: &str) -> Result<&'a toml::Table, String> {
    t.get(key)
        .and_then(|v| v.as_table())
        .ok_or_else(|| format!("missing table [{key}]"))
}

fn field(t: &toml::Table, key: &str) -> Result<u64, String> {
    num(t.get(key).ok_or_else(|| format!("missing {key}"))?, key)
}

fn ranges(t: &toml::Table, key: &str) -> Result<Vec<Range>, String> {
    let Some(list) = t.get(key) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| format!("{key}: expected a list"))?;
    list.iter()
        .map(|item| {
            let a = item
                .as_array()
                .filter(|a| a.len() == 3)
                .ok_or_else(|| format!("{key}: each entry is [start, size, \"name\"]"))?;
            Ok(Range {
                start: num(&a[0], key)?,
                size: num(&a[1], key)?,
                name: a[2]
                    .as_str()
                    .ok_or_else(|| format!("{key}: name"))?
                    .to_string(),
            })
        })
        .collect()
}

/// Loads the configuration for `arch` as the environment selects it.
pub fn load(arch: &str) -> Result<Config, String> {
    load_with(arch, &process_env)
}

/// [`load`] with the environment variables read through `env` (`None` for
/// unset or empty).
fn load_with(arch: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
    let path = config_path_with(arch, env)?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let t: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let err = |e: String| format!("{}: {e}", path.display());
    let s = |k: &str| {
        t.get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| err(format!("missing {k}")))
    };
    let mem = table(&t, "memory").map_err(err)?;
    let mmap = table(&t, "mmap").map_err(err)?;
    let mut cfg = Config {
        path: path.clone(),
        arch: s("arch")?,
        platform: s("platform")?,
        phys_base: field(mem, "phys-base").map_err(err)?,
        phys_size: field(mem, "phys-size").map_err(err)?,
        split: split(mem).map_err(err)?,
        kernel_paddr: field(mem, "kernel-paddr").map_err(err)?,
        phys_virt_offset: field(mem, "phys-virt-offset").map_err(err)?,
        reserved: ranges(mem, "reserved").map_err(err)?,
        mmio: ranges(mem, "mmio").map_err(err)?,
        mmap_base: field(mmap, "base").map_err(err)?,
        mmap_size: field(mmap, "size").map_err(err)?,
        stack_size: mem
            .get("stack-size")
            .map(|v| num(v, "stack-size"))
            .transpose()
            .map_err(err)?
            .unwrap_or(256 << 10),
        smp: 1,
        log: "warn".into(),
    };
    if cfg.arch != arch {
        return Err(err(format!(
            "board is for {}, building for {arch}",
            cfg.arch
        )));
    }
    if let Some(m) = env("TESSERA_MEM") {
        cfg.phys_size = parse_num(&m).ok_or_else(|| format!("TESSERA_MEM: bad size {m:?}"))?;
    }
    if let Some(n) = env("TESSERA_SMP") {
        cfg.smp = n
            .parse()
            .map_err(|_| format!("TESSERA_SMP: bad count {n:?}"))?;
    }
    if let Some(l) = env("TESSERA_LOG") {
        cfg.log = l.to_lowercase();
    }
    if !["off", "error", "warn", "info", "debug", "trace"].contains(&cfg.log.as_str()) {
        return Err(format!("TESSERA_LOG: unknown level {:?}", cfg.log));
    }
    for (what, v) in [
        ("phys-base", cfg.phys_base),
        ("phys-size", cfg.phys_size),
        ("kernel-paddr", cfg.kernel_paddr),
        ("mmap base", cfg.mmap_base),
        ("mmap size", cfg.mmap_size),
        // The linker script puts the boot stack's top at its bottom + this size:
        // page aligned keeps the initial stack pointer aligned as every ABI wants.
        ("stack-size", cfg.stack_size),
    ] {
        if v % 4096 != 0 {
            return Err(err(format!("{what} {v:#x} is not page aligned")));
        }
    }
    if cfg.smp == 0 || cfg.smp > MAX_CPUS {
        return Err(format!(
            "SMP={}: a kernel runs on 1 to {MAX_CPUS} CPUs",
            cfg.smp
        ));
    }
    if cfg.stack_size == 0 {
        return Err(err("stack-size is 0".into()));
    }
    if cfg.phys_size == 0 {
        return Err(err("RAM size is 0".into()));
    }
    cfg.check_ram().map_err(err)?;
    Ok(cfg)
}

fn split(mem: &toml::Table) -> Result<Option<Split>, String> {
    let Some(t) = mem.get("split") else {
        return Ok(None);
    };
    let t = t.as_table().ok_or("[memory.split]: expected a table")?;
    let f = |k: &str| field(t, k).map_err(|e| format!("[memory.split]: {e}"));
    let s = Split {
        min_size: f("min-size")?,
        low_size: f("low-size")?,
        high_base: f("high-base")?,
    };
    if s.low_size == 0
        || s.low_size > s.min_size
        || !s.low_size.is_multiple_of(4096)
        || !s.high_base.is_multiple_of(4096)
    {
        return Err(format!(
            "[memory.split]: low-size must be page aligned and in (0, min-size], high-base page aligned: {s:?}"
        ));
    }
    Ok(Some(s))
}

impl Config {
    /// RAM as (start, size) ranges, lowest first: one range at `phys-base`, or two
    /// when the size reaches the board's split.
    pub fn ram(&self) -> Vec<(u64, u64)> {
        match self.split {
            Some(s) if self.phys_size >= s.min_size => vec![
                (self.phys_base, s.low_size),
                (s.high_base, self.phys_size - s.low_size),
            ],
            _ => vec![(self.phys_base, self.phys_size)],
        }
    }

    /// One past the highest RAM address.
    pub fn ram_end(&self) -> u64 {
        self.ram()
            .iter()
            .map(|&(start, size)| start + size)
            .max()
            .unwrap_or(0)
    }

    /// RAM ranges are ordered and disjoint, miss every device window, and reach
    /// no address that the physical-memory window cannot show.
    fn check_ram(&self) -> Result<(), String> {
        let ram = self.ram();
        let mut prev_end = 0;
        for &(start, size) in &ram {
            let end = start.checked_add(size).ok_or("RAM wraps around")?;
            if start < prev_end {
                return Err(format!("RAM ranges overlap at {start:#x}"));
            }
            if end > u64::MAX - self.phys_virt_offset {
                return Err(format!(
                    "RAM up to {end:#x} does not fit above phys-virt-offset {:#x}",
                    self.phys_virt_offset
                ));
            }
            for m in &self.mmio {
                if m.start < end && start < m.start.saturating_add(m.size) {
                    let hint = if self.split.is_some() {
                        ""
                    } else {
                        " (the board has no [memory.split]: use a smaller MEM)"
                    };
                    return Err(format!(
                        "RAM [{start:#x}, {end:#x}) overlaps the device window {} at {:#x}{hint}",
                        m.name, m.start
                    ));
                }
            }
            prev_end = end;
        }
        Ok(())
    }
}

/// The environment variables whose change must rebuild what reads the config.
pub const ENV_VARS: &[&str] = &[
    "TESSERA_PLAT_CONFIG",
    "TESSERA_PLATFORM",
    "TESSERA_MEM",
    "TESSERA_SMP",
    "TESSERA_LOG",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads the board file `name` with `MEM=mem`.
    fn board(name: &str, mem: &str) -> Result<Config, String> {
        let file = boards_dir().join(format!("{name}.toml"));
        let t: toml::Table = std::fs::read_to_string(file).unwrap().parse().unwrap();
        let arch = t["arch"].as_str().unwrap().to_string();
        let (name, mem) = (name.to_string(), mem.to_string());
        load_with(&arch, &move |k| match k {
            "TESSERA_PLATFORM" => Some(name.clone()),
            "TESSERA_MEM" => Some(mem.clone()),
            _ => None,
        })
    }

    const G: u64 = 1 << 30;

    #[test]
    fn every_board_file_loads_with_one_ram_range_by_default() {
        let boards = known_boards();
        assert!(!boards.is_empty());
        for name in &boards {
            let cfg = board(name, "128M").unwrap();
            assert_eq!(&cfg.platform, name, "the file name is the board name");
            assert_eq!(cfg.ram(), vec![(cfg.phys_base, 128 << 20)], "{name}");
            assert_eq!(cfg.ram_end(), cfg.phys_base + (128 << 20), "{name}");
        }
    }

    #[test]
    fn every_arch_has_a_default_board_of_that_arch() {
        let list = arches().unwrap();
        assert!(!list.is_empty());
        for (arch, name) in list {
            assert_eq!(default_platform(&arch).unwrap(), name);
            let cfg = load_with(&arch, &|_| None).unwrap();
            assert_eq!(
                (cfg.arch.as_str(), cfg.platform.as_str()),
                (arch.as_str(), name.as_str())
            );
        }
    }

    #[test]
    fn an_unknown_arch_or_board_is_an_error_naming_the_known_ones() {
        let e = load_with("loongarch64", &|_| None).unwrap_err();
        assert!(e.contains("unknown arch \"loongarch64\""), "{e}");
        for (arch, _) in arches().unwrap() {
            assert!(e.contains(&arch), "{e} does not name {arch}");
        }
        let e = load_with("x86_64", &|k| {
            (k == "TESSERA_PLATFORM").then(|| "nope".into())
        })
        .unwrap_err();
        assert!(e.contains("unknown board \"nope\""), "{e}");
        for name in known_boards() {
            assert!(e.contains(&name), "{e} does not name {name}");
        }
    }

    #[test]
    fn q35_splits_ram_from_2816m_on_as_qemu_does() {
        let below = board("x86_64-qemu-q35", "2815M").unwrap();
        assert_eq!(below.ram(), vec![(0, 2815 << 20)]);
        let at = board("x86_64-qemu-q35", "2816M").unwrap();
        assert_eq!(at.ram(), vec![(0, 2 * G), (4 * G, (2816 << 20) - 2 * G)]);
        let big = board("x86_64-qemu-q35", "8G").unwrap();
        assert_eq!(big.ram(), vec![(0, 2 * G), (4 * G, 6 * G)]);
        assert_eq!(big.ram_end(), 10 * G);
        assert_eq!(big.phys_size, 8 * G);
    }

    #[test]
    fn boards_without_a_split_keep_large_ram_in_one_range() {
        let cfg = board("riscv64-qemu-virt", "8G").unwrap();
        assert_eq!(cfg.ram(), vec![(0x8000_0000, 8 * G)]);
    }

    #[test]
    fn ram_over_a_device_window_or_empty_is_refused() {
        let mut cfg = board("riscv64-qemu-virt", "128M").unwrap();
        cfg.phys_base = 0;
        let e = cfg.check_ram().unwrap_err();
        assert!(e.contains("overlaps the device window"), "{e}");
        assert!(
            board("riscv64-qemu-virt", "0")
                .unwrap_err()
                .contains("RAM size is 0")
        );
        assert!(
            board("riscv64-qemu-virt", "12X")
                .unwrap_err()
                .contains("bad size")
        );
    }

    #[test]
    fn ram_past_the_physical_window_is_refused() {
        let mut cfg = board("x86_64-qemu-q35", "128M").unwrap();
        cfg.phys_size = 1 << 40; // 1 TiB above 0xffff_ff80_0000_0000 wraps around
        cfg.split = None;
        cfg.mmio.clear();
        let e = cfg.check_ram().unwrap_err();
        assert!(e.contains("does not fit above phys-virt-offset"), "{e}");
    }

    #[test]
    fn bad_split_tables_are_refused() {
        let t: toml::Table =
            "split = { min-size = \"1G\", low-size = \"2G\", high-base = 0x1_0000_0000 }"
                .parse()
                .unwrap();
        assert!(split(&t).unwrap_err().contains("low-size"));
        let t: toml::Table = "split = { min-size = \"1G\" }".parse().unwrap();
        assert!(split(&t).unwrap_err().contains("missing low-size"));
    }
}
