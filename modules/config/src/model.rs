//! The board configuration file and how it is found.
//!
//! Shared, word for word, by this crate's build script (which turns it into
//! constants for the kernel) and by the boards' build scripts (which turn it into
//! linker scripts), so that both read one file the same way.
//!
//! Which file: `TESSERA_PLAT_CONFIG` (a path), else `TESSERA_PLATFORM` (a name under
//! `configs/platforms/`), else the default board of the target architecture.
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

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// `riscv64`, `x86_64` or `aarch64`.
    pub arch: String,
    /// Board name.
    pub platform: String,
    /// Start of RAM.
    pub phys_base: u64,
    /// Size of RAM.
    pub phys_size: u64,
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

/// The default board of each architecture.
pub fn default_platform(arch: &str) -> &'static str {
    match arch {
        "riscv64" => "riscv64-qemu-virt",
        "aarch64" => "aarch64-qemu-virt",
        _ => "x86_64-qemu-q35",
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The file chosen by the environment (see the module docs) for `arch`.
pub fn config_path(arch: &str) -> PathBuf {
    if let Ok(p) = std::env::var("TESSERA_PLAT_CONFIG")
        && !p.is_empty()
    {
        return PathBuf::from(p);
    }
    let name = std::env::var("TESSERA_PLATFORM")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default_platform(arch).to_string());
    workspace_root().join(format!("configs/platforms/{name}.toml"))
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
    let path = config_path(arch);
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
    if let Ok(m) = std::env::var("TESSERA_MEM")
        && !m.is_empty()
    {
        cfg.phys_size = parse_num(&m).ok_or_else(|| format!("TESSERA_MEM: bad size {m:?}"))?;
    }
    if let Ok(n) = std::env::var("TESSERA_SMP")
        && !n.is_empty()
    {
        cfg.smp = n
            .parse()
            .map_err(|_| format!("TESSERA_SMP: bad count {n:?}"))?;
    }
    if let Ok(l) = std::env::var("TESSERA_LOG")
        && !l.is_empty()
    {
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
    if cfg.stack_size == 0 {
        return Err(err("stack-size is 0".into()));
    }
    Ok(cfg)
}

/// The environment variables whose change must rebuild what reads the config.
pub const ENV_VARS: &[&str] = &[
    "TESSERA_PLAT_CONFIG",
    "TESSERA_PLATFORM",
    "TESSERA_MEM",
    "TESSERA_SMP",
    "TESSERA_LOG",
];
