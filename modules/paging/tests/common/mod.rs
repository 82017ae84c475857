//! Test support: host metadata for each PTE format, a flush recorder, and a
//! page-granular reference model.
//!
//! The tests use every PTE format of page_table_entry (x86_64, RISC-V, AArch64,
//! LoongArch64), which it compiles for an x86_64 host only under
//! `--cfg docsrs`. The workspace's rustc wrapper (`build.rustc-wrapper` in
//! .cargo/config.toml: modules/paging/scripts/rustc-all-formats.sh) passes it
//! to page_table_entry and to paging's units on host builds; a build without
//! it stops here rather than test fewer formats.
#![allow(dead_code)]

#[cfg(not(docsrs))]
compile_error!(
    "paging's tests need every PTE format of page_table_entry: build them through \
     modules/paging/scripts/rustc-all-formats.sh (the workspace's build.rustc-wrapper \
     in .cargo/config.toml; a RUSTC_WRAPPER or CARGO_BUILD_RUSTC_WRAPPER in the \
     environment overrides it)"
);

use std::cell::Cell;
use std::collections::BTreeMap;

use memory_addr::VirtAddr;
use page_table_multiarch::{GenericPTE, MappingFlags, PagingMetaData};

thread_local! {
    static FLUSHES: Cell<usize> = const { Cell::new(0) };
    static FRAMES_AT_LAST_FLUSH: Cell<usize> = const { Cell::new(0) };
}

/// Flushes recorded on this thread.
pub fn flushes() -> usize {
    FLUSHES.with(Cell::get)
}

/// `testing::frames_in_use()` when the last flush happened.
pub fn frames_at_last_flush() -> usize {
    FRAMES_AT_LAST_FLUSH.with(Cell::get)
}

fn record_flush() {
    FLUSHES.with(|c| c.set(c.get() + 1));
    FRAMES_AT_LAST_FLUSH.with(|c| c.set(testing::frames_in_use()));
}

macro_rules! host_meta {
    ($(#[$m:meta])* $name:ident, $levels:expr, $pa:expr, $va:expr) => {
        $(#[$m])*
        pub struct $name;
        impl PagingMetaData for $name {
            const LEVELS: usize = $levels;
            const PA_MAX_BITS: usize = $pa;
            const VA_MAX_BITS: usize = $va;
            type VirtAddr = VirtAddr;
            fn flush_tlb(_vaddr: Option<VirtAddr>) {
                record_flush();
            }
        }
    };
}

host_meta!(
    /// x86_64 4-level geometry (as `X64PagingMetaData`).
    X64Meta, 4, 52, 48
);
host_meta!(
    /// RISC-V Sv39 geometry (as `Sv39MetaData`).
    Sv39Meta, 3, 56, 39
);
host_meta!(
    /// RISC-V Sv48 geometry (as `Sv48MetaData`).
    Sv48Meta, 4, 56, 48
);

host_meta!(
    /// LoongArch64 4-level geometry (as `LA64MetaData`).
    La64Meta, 4, 48, 48
);

/// AArch64 4-level geometry (as `A64PagingMetaData`: top 16 bits all 0 or all 1).
pub struct A64Meta;
impl PagingMetaData for A64Meta {
    const LEVELS: usize = 4;
    const PA_MAX_BITS: usize = 48;
    const VA_MAX_BITS: usize = 48;
    type VirtAddr = VirtAddr;
    fn vaddr_is_valid(vaddr: usize) -> bool {
        let top = vaddr >> 48;
        top == 0 || top == 0xffff
    }
    fn flush_tlb(_vaddr: Option<VirtAddr>) {
        record_flush();
    }
}

/// Flags as the PTE format stores them (formats normalise some combinations).
pub fn norm<PTE: GenericPTE>(f: MappingFlags) -> MappingFlags {
    PTE::new_page(0x1000.into(), f, false).flags()
}

pub const PAGE: usize = 0x1000;

/// A page-granular reference model, stored as runs of consecutive pages with
/// consecutive frames and equal flags (key: first virtual page number).
#[derive(Default, Clone)]
pub struct Model {
    /// vpn -> (pages, first pfn, flags)
    runs: BTreeMap<usize, (usize, usize, MappingFlags)>,
}

impl Model {
    /// Splits the run containing page `vpn` so that `vpn` starts a run.
    fn cut(&mut self, vpn: usize) {
        if let Some((&s, &(n, p, f))) = self.runs.range(..vpn).next_back()
            && s + n > vpn
        {
            let k = vpn - s;
            self.runs.insert(s, (k, p, f));
            self.runs.insert(vpn, (n - k, p + k, f));
        }
    }

    /// Whether any page in `[va, va + size)` is mapped.
    pub fn any_mapped(&self, va: usize, size: usize) -> bool {
        let (a, b) = (va / PAGE, va / PAGE + size / PAGE);
        if let Some((&s, &(n, _, _))) = self.runs.range(..a).next_back()
            && s + n > a
        {
            return true;
        }
        self.runs.range(a..b).next().is_some()
    }

    pub fn map(&mut self, va: usize, pa: usize, size: usize, f: MappingFlags) {
        if size > 0 {
            self.runs.insert(va / PAGE, (size / PAGE, pa / PAGE, f));
        }
    }

    /// Removes `[va, va + size)`; returns the removed runs as (va, pa, bytes).
    pub fn unmap(&mut self, va: usize, size: usize) -> Vec<(usize, usize, usize)> {
        let (a, b) = (va / PAGE, va / PAGE + size / PAGE);
        self.cut(a);
        self.cut(b);
        let keys: Vec<usize> = self.runs.range(a..b).map(|(k, _)| *k).collect();
        keys.into_iter()
            .map(|k| {
                let (n, p, _) = self.runs.remove(&k).unwrap();
                (k * PAGE, p * PAGE, n * PAGE)
            })
            .collect()
    }

    pub fn protect(&mut self, va: usize, size: usize, f: MappingFlags) {
        let (a, b) = (va / PAGE, va / PAGE + size / PAGE);
        self.cut(a);
        self.cut(b);
        for (_, run) in self.runs.range_mut(a..b) {
            run.2 = f;
        }
    }

    pub fn query(&self, va: usize) -> Option<(usize, MappingFlags)> {
        let vpn = va / PAGE;
        let (&s, &(n, p, f)) = self.runs.range(..=vpn).next_back()?;
        (s + n > vpn).then(|| ((p + vpn - s) * PAGE + va % PAGE, f))
    }

    /// Runs intersecting `[va, va + size)` as (va, pa, bytes, flags).
    pub fn runs_in(&self, va: usize, size: usize) -> Vec<(usize, usize, usize, MappingFlags)> {
        let (a, b) = (va / PAGE, va / PAGE + size / PAGE);
        let mut out = Vec::new();
        if let Some((&s, &(n, p, f))) = self.runs.range(..a).next_back()
            && s + n > a
        {
            out.push((s * PAGE, p * PAGE, n * PAGE, f));
        }
        for (&s, &(n, p, f)) in self.runs.range(a..b) {
            out.push((s * PAGE, p * PAGE, n * PAGE, f));
        }
        out
    }

    /// Canonical form: maximal runs (adjacent runs merged when contiguous).
    pub fn canonical(&self) -> Vec<(usize, usize, usize, MappingFlags)> {
        canonical(
            self.runs
                .iter()
                .map(|(&s, &(n, p, f))| (s * PAGE, p * PAGE, n * PAGE, f)),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// Merges sorted (va, pa, bytes, flags) pieces into maximal runs.
pub fn canonical(
    it: impl Iterator<Item = (usize, usize, usize, MappingFlags)>,
) -> Vec<(usize, usize, usize, MappingFlags)> {
    let mut out: Vec<(usize, usize, usize, MappingFlags)> = Vec::new();
    for (v, p, n, f) in it {
        if let Some(last) = out.last_mut()
            && last.0.wrapping_add(last.2) == v
            && last.1 + last.2 == p
            && last.3 == f
        {
            last.2 += n;
            continue;
        }
        out.push((v, p, n, f));
    }
    out
}
