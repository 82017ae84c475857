//! Differential test: one seeded random operation sequence run against our
//! table, against `PageTable64` (only through operations it can do without
//! panicking: whole-leaf ops, with partial-leaf changes emulated the way its
//! users must: unmap the leaf, re-map the rest), and against a page-granular
//! reference model. Any divergence fails the test.
//!
//! Operation count per format: `PAGING_DIFF_OPS` (default 20000). Every PTE
//! format of page_table_entry is tested: x86_64, RISC-V Sv39 and Sv48, AArch64
//! and LoongArch64 (the non-host formats through the workspace's rustc wrapper:
//! see `common`).

mod common;

use common::*;
use memory_addr::{PhysAddr, VirtAddr};
use page_table_multiarch::{
    GenericPTE, MappingFlags, PageSize as TheirSize, PageTable64, PagingMetaData,
};
use paging::{
    Cursor, Leaf, LeafSize, MapError, PageSize, PageTable, Size1G, Size2M, Size4K, UnmapError,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use testing::TrackingHandler;

const WIN: usize = 8 << 30;
const G1: usize = 1 << 30;
const M2: usize = 2 << 20;

struct Ctx<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE> {
    ours: PageTable<M, PTE, TrackingHandler>,
    theirs: PageTable64<M, PTE, TrackingHandler>,
    model: Model,
    rng: SmallRng,
    windows: [usize; 2],
    step: usize,
    seed: u64,
}

fn flag_choices() -> [MappingFlags; 6] {
    use MappingFlags as F;
    [
        F::READ,
        F::READ | F::WRITE,
        F::READ | F::EXECUTE,
        F::READ | F::WRITE | F::EXECUTE,
        F::READ | F::USER,
        F::READ | F::WRITE | F::USER,
    ]
}

impl<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE> Ctx<M, PTE> {
    fn cur(&mut self) -> Cursor<'_, M, PTE, TrackingHandler> {
        self.ours.cursor()
    }

    fn ctx(&self) -> String {
        format!("seed {} step {}", self.seed, self.step)
    }

    fn flags(&mut self) -> MappingFlags {
        let c = flag_choices();
        c[self.rng.random_range(0..c.len())]
    }

    /// A random `align`-aligned address in one of the windows.
    fn va(&mut self, align: usize) -> usize {
        let w = self.windows[self.rng.random_range(0..2)];
        w + self.rng.random_range(0..WIN / align) * align
    }

    fn pa(&mut self, align: usize) -> usize {
        self.rng.random_range(1..(1usize << 38) / align) * align
    }

    /// A range length: mostly small, sometimes up to several GiB.
    fn len(&mut self) -> usize {
        match self.rng.random_range(0..10) {
            0..=5 => self.rng.random_range(1..=600) * PAGE,
            6..=7 => self.rng.random_range(1..=4) * M2 + self.rng.random_range(0..3) * PAGE,
            _ => self.rng.random_range(1..=(3 * G1 / PAGE)) * PAGE,
        }
    }

    /// Clamps `[va, va + len)` to the window holding `va`.
    fn clamp(&self, va: usize, len: usize) -> usize {
        let w = if va >= self.windows[1] {
            self.windows[1]
        } else {
            self.windows[0]
        };
        len.min(w + WIN - va)
    }

    // ---- PageTable64 side --------------------------------------------------

    fn their_map_sized(&mut self, va: usize, pa: usize, sz: usize, f: MappingFlags) {
        let size = match sz {
            G1 => TheirSize::Size1G,
            M2 => TheirSize::Size2M,
            _ => TheirSize::Size4K,
        };
        let r = self.theirs.cursor().map(va.into(), pa.into(), size, f);
        if r.is_err() {
            // Its empty tables are never reclaimed, so a huge map can hit a stale
            // table; fall back to the next size down (translation-equivalent).
            assert!(
                sz > PAGE,
                "{}: PageTable64 refused a 4K map at {va:#x}: {r:?}",
                self.ctx()
            );
            let sub = if sz == G1 { M2 } else { PAGE };
            for i in 0..512 {
                self.their_map_sized(va + i * sub, pa + i * sub, sub, f);
            }
        }
    }

    fn their_map(&mut self, va: usize, pa: usize, size: usize, f: MappingFlags) {
        let mut off = 0;
        while off < size {
            let (v, p, rem) = (va + off, pa + off, size - off);
            let sz = [G1, M2, PAGE]
                .into_iter()
                .find(|&s| v % s == 0 && p % s == 0 && rem >= s)
                .unwrap();
            self.their_map_sized(v, p, sz, f);
            off += sz;
        }
    }

    /// Applies unmap (new = None) or protect (new = Some(flags)) to PageTable64
    /// over `[va, va + size)`, leaf by leaf, using the model (still in the old
    /// state) to find the mapped parts.
    fn their_apply(&mut self, va: usize, size: usize, new: Option<MappingFlags>) {
        let end = va + size;
        for (rv, _, rn, _) in self.model.runs_in(va, size) {
            let hi = (rv + rn).min(end);
            let mut x = rv.max(va);
            while x < hi {
                let (pa_x, f, sz) = self
                    .theirs
                    .query(x.into())
                    .unwrap_or_else(|e| panic!("{}: PageTable64 lost {x:#x}: {e:?}", self.ctx()));
                let sz = sz as usize;
                let base = x & !(sz - 1);
                let bpa = pa_x.as_usize() - (x - base);
                let lend = base + sz;
                if base >= va && lend <= end {
                    match new {
                        None => drop(self.theirs.cursor().unmap(base.into()).unwrap()),
                        Some(nf) => drop(self.theirs.cursor().protect(base.into(), nf).unwrap()),
                    }
                } else {
                    self.theirs.cursor().unmap(base.into()).unwrap();
                    let (a, b) = (va.max(base), end.min(lend));
                    if base < a {
                        self.their_map(base, bpa, a - base, f);
                    }
                    if let Some(nf) = new {
                        self.their_map(a, bpa + (a - base), b - a, nf);
                    }
                    if b < lend {
                        self.their_map(b, bpa + (b - base), lend - b, f);
                    }
                }
                x = lend.min(hi);
            }
        }
    }

    // ---- checks -----------------------------------------------------------------

    fn check_point(&mut self, va: usize) {
        let want = self.model.query(va);
        let ours = self
            .ours
            .query(va.into())
            .ok()
            .map(|(p, f, _)| (p.as_usize(), f));
        let theirs = self
            .theirs
            .query(va.into())
            .ok()
            .map(|(p, f, _)| (p.as_usize(), f));
        assert_eq!(ours, want, "{}: ours vs model at {va:#x}", self.ctx());
        assert_eq!(
            theirs,
            want,
            "{}: PageTable64 vs model at {va:#x}",
            self.ctx()
        );
    }

    fn check_all(&self) {
        let mut leaves = Vec::new();
        self.ours.for_each_leaf(|l| {
            leaves.push((
                l.vaddr.as_usize(),
                l.paddr.as_usize(),
                l.size.bytes(),
                l.flags,
            ))
        });
        assert_eq!(
            canonical(leaves.into_iter()),
            self.model.canonical(),
            "{}: full compare",
            self.ctx()
        );
    }

    // ---- one operation -------------------------------------------------------

    fn op(&mut self) {
        let kind = self.rng.random_range(0..100);
        let (va, len) = match kind {
            0..=29 => self.op_map_one(),
            30..=39 => self.op_map_region(),
            40..=59 => self.op_unmap_region(),
            60..=79 => self.op_protect_region(),
            80..=94 => self.op_single(),
            _ => self.op_invalid(),
        };
        self.check_point(va);
        self.check_point(va + len.max(PAGE) - PAGE);
        self.check_point(va.wrapping_sub(PAGE));
        self.check_point(va + len);
        let r = self.va(PAGE);
        self.check_point(r);
    }

    fn op_map_one(&mut self) -> (usize, usize) {
        let sz = match self.rng.random_range(0..10) {
            0..=5 => PAGE,
            6..=8 => M2,
            _ => G1,
        };
        let (va, pa, f) = (self.va(sz), self.pa(sz), self.flags());
        let expect = if self.model.any_mapped(va, sz) {
            Err(MapError::AlreadyMapped)
        } else {
            Ok(())
        };
        let got = {
            let mut c = self.cur();
            match sz {
                PAGE => c.map::<Size4K>(va.into(), pa.into(), f),
                M2 => c.map::<Size2M>(va.into(), pa.into(), f),
                _ => c.map::<Size1G>(va.into(), pa.into(), f),
            }
        };
        assert_eq!(got, expect, "{}: map {sz:#x} at {va:#x}", self.ctx());
        if got.is_ok() {
            let nf = norm::<PTE>(f);
            self.their_map_sized(va, pa, sz, f);
            self.model.map(va, pa, sz, nf);
        }
        (va, sz)
    }

    fn op_map_region(&mut self) -> (usize, usize) {
        let align = if self.rng.random_bool(0.5) { M2 } else { PAGE };
        let va = self.va(align);
        let pa = self.pa(align) + if self.rng.random_bool(0.8) { 0 } else { PAGE };
        let len = self.rng.random_range(1..=1500) * PAGE;
        let len = self.clamp(va, len);
        let f = self.flags();
        let huge = self.rng.random_bool(0.7);
        let expect = if self.model.any_mapped(va, len) {
            Err(MapError::AlreadyMapped)
        } else {
            Ok(())
        };
        let got = self.cur().map_region(va.into(), pa.into(), len, f, huge);
        assert_eq!(got, expect, "{}: map_region {va:#x}+{len:#x}", self.ctx());
        if got.is_ok() {
            self.their_map(va, pa, len, f);
            self.model.map(va, pa, len, norm::<PTE>(f));
        }
        (va, len)
    }

    fn op_unmap_region(&mut self) -> (usize, usize) {
        let va = self.va(PAGE);
        let len = self.len();
        let len = self.clamp(va, len);
        let mut removed = Vec::new();
        let ctx = self.ctx();
        self.cur()
            .unmap_region(va.into(), len, |l| {
                removed.push((
                    l.vaddr.as_usize(),
                    l.paddr.as_usize(),
                    l.size.bytes(),
                    l.flags,
                ))
            })
            .unwrap_or_else(|e| panic!("{ctx}: unmap_region {va:#x}+{len:#x}: {e:?}"));
        removed.sort_by_key(|r| r.0);
        self.their_apply(va, len, None);
        let gone = self.model.unmap(va, len);
        let gone = canonical(
            gone.into_iter()
                .map(|(v, p, n)| (v, p, n, MappingFlags::empty())),
        );
        let removed = canonical(
            removed
                .into_iter()
                .map(|(v, p, n, _)| (v, p, n, MappingFlags::empty())),
        );
        assert_eq!(
            removed,
            gone,
            "{}: leaves reported by unmap {va:#x}+{len:#x}",
            self.ctx()
        );
        (va, len)
    }

    fn op_protect_region(&mut self) -> (usize, usize) {
        let va = self.va(PAGE);
        let len = self.len();
        let len = self.clamp(va, len);
        let f = self.flags();
        let ctx = self.ctx();
        self.cur()
            .protect_region(va.into(), len, f)
            .unwrap_or_else(|e| panic!("{ctx}: protect_region {va:#x}+{len:#x}: {e:?}"));
        self.their_apply(va, len, Some(f));
        self.model.protect(va, len, norm::<PTE>(f));
        (va, len)
    }

    /// Unmaps (returning the leaf) or protects (returning `None`) the page of size
    /// `S` at `va`; an error as its `Debug` text.
    fn single<S: PageSize>(
        &mut self,
        unmap: bool,
        va: usize,
        f: MappingFlags,
    ) -> Result<Option<Leaf<VirtAddr>>, String> {
        let mut c = self.cur();
        if unmap {
            c.unmap::<S>(va.into())
                .map(Some)
                .map_err(|e| format!("{e:?}"))
        } else {
            c.protect::<S>(va.into(), f)
                .map(|()| None)
                .map_err(|e| format!("{e:?}"))
        }
    }

    /// Single-page unmap or protect at a mapped point (when there is one).
    fn op_single(&mut self) -> (usize, usize) {
        let runs = self
            .model
            .runs_in(self.windows[self.rng.random_range(0..2)], WIN);
        if runs.is_empty() {
            let va = self.va(PAGE);
            let got = self.cur().unmap::<Size4K>(va.into());
            assert_eq!(got.err(), Some(UnmapError::NotMapped), "{}", self.ctx());
            return (va, PAGE);
        }
        let (rv, _, rn, _) = runs[self.rng.random_range(0..runs.len())];
        let sz = [PAGE, M2, G1][self.rng.random_range(0..3)];
        let x = rv + self.rng.random_range(0..rn / PAGE) * PAGE;
        let va = x & !(sz - 1);
        let unmap = self.rng.random_bool(0.5);
        let f = self.flags();
        let size_of = |s: LeafSize| s.bytes();
        let leaf = self.ours.query(va.into()).ok().map(|(_, _, s)| size_of(s));
        let res = match sz {
            PAGE => self.single::<Size4K>(unmap, va, f),
            M2 => self.single::<Size2M>(unmap, va, f),
            _ => self.single::<Size1G>(unmap, va, f),
        };
        match (leaf, &res) {
            (None, Err(e)) => assert_eq!(e, "NotMapped", "{}", self.ctx()),
            (Some(l), Err(e)) if l < sz => assert_eq!(e, "SizeMismatch", "{}", self.ctx()),
            (Some(_), Ok(removed)) => {
                if let Some(l) = removed {
                    let want = self.model.query(va).unwrap();
                    assert_eq!(
                        (l.vaddr.as_usize(), l.paddr.as_usize(), l.size.bytes()),
                        (va, want.0, sz),
                        "{}",
                        self.ctx()
                    );
                    self.their_apply(va, sz, None);
                    self.model.unmap(va, sz);
                } else {
                    self.their_apply(va, sz, Some(f));
                    self.model.protect(va, sz, norm::<PTE>(f));
                }
            }
            other => panic!(
                "{}: single op at {va:#x} size {sz:#x}: {other:?}",
                self.ctx()
            ),
        }
        (va, sz)
    }

    /// Bad input: must be an error and change nothing.
    fn op_invalid(&mut self) -> (usize, usize) {
        let va = self.va(PAGE);
        let f = self.flags();
        let bad_va = 1usize << (9 * M::LEVELS + 12 - 1); // first non-canonical / out-of-range address on sign-extended formats
        let mut c = self.ours.cursor();
        assert_eq!(
            c.map::<Size4K>((va + 8).into(), PhysAddr::from(0x1000), f),
            Err(MapError::NotAligned)
        );
        assert_eq!(
            c.map::<Size2M>((va & !(M2 - 1)).into(), PhysAddr::from(0x1000), f),
            Err(MapError::NotAligned)
        );
        assert_eq!(
            c.map_region(va.into(), PhysAddr::from(0x1000), 0x800, f, true),
            Err(MapError::NotAligned)
        );
        assert_eq!(
            c.map::<Size4K>(va.into(), PhysAddr::from(0x1000), MappingFlags::WRITE),
            Err(MapError::InvalidFlags)
        );
        assert_eq!(
            c.map::<Size4K>(va.into(), PhysAddr::from(usize::MAX & !0xfff), f),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            c.unmap_region((va + 4).into(), PAGE, |_| ()),
            Err(UnmapError::NotAligned)
        );
        assert_eq!(
            c.unmap_region(va.into(), usize::MAX & !0xfff, |_| ()),
            Err(UnmapError::OutOfRange)
        );
        if !M::vaddr_is_valid(bad_va) {
            assert_eq!(
                c.map::<Size4K>(bad_va.into(), PhysAddr::from(0x1000), f),
                Err(MapError::OutOfRange)
            );
            assert_eq!(
                c.unmap_region(bad_va.into(), PAGE, |_| ()),
                Err(UnmapError::OutOfRange)
            );
            assert!(c.protect_region(bad_va.into(), PAGE, f).is_err());
            assert!(c.query(bad_va.into()).is_err());
            // A range running from the top of the lower half into the hole.
            assert_eq!(
                c.unmap_region((bad_va - PAGE).into(), 2 * PAGE, |_| ()),
                Err(UnmapError::OutOfRange)
            );
        }
        drop(c);
        (va, PAGE)
    }
}

fn run<M: PagingMetaData<VirtAddr = VirtAddr>, PTE: GenericPTE>(seed: u64, high: usize) {
    testing::reset();
    let ops: usize = std::env::var("PAGING_DIFF_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let mut cx = Ctx::<M, PTE> {
        ours: PageTable::try_new().unwrap(),
        theirs: PageTable64::try_new().unwrap(),
        model: Model::default(),
        rng: SmallRng::seed_from_u64(seed),
        windows: [0, high],
        step: 0,
        seed,
    };
    for step in 0..ops {
        cx.step = step;
        cx.op();
        if step % 2000 == 1999 {
            cx.check_all();
        }
    }
    cx.check_all();
    // Unmap everything: only our root may remain.
    for w in cx.windows {
        cx.their_apply(w, WIN, None);
        cx.ours
            .cursor()
            .unmap_region(w.into(), WIN, |_| ())
            .unwrap();
        cx.model.unmap(w, WIN);
    }
    assert!(cx.model.is_empty());
    assert_eq!(cx.ours.table_frames(), 1, "empty tables were not reclaimed");
    let Ctx { ours, theirs, .. } = cx;
    drop(theirs);
    assert_eq!(testing::frames_in_use(), 1);
    drop(ours);
    testing::assert_no_leaks();
}

const HIGH_SIGNED: usize = 0usize.wrapping_sub(2 * WIN);

#[test]
fn differential_x86_64() {
    run::<X64Meta, page_table_entry::x86_64::X64PTE>(0x7e55e7a, HIGH_SIGNED);
}

#[test]
fn differential_riscv_sv39() {
    run::<Sv39Meta, page_table_entry::riscv::Rv64PTE>(0x5939, HIGH_SIGNED);
}

#[test]
fn differential_riscv_sv48() {
    run::<Sv48Meta, page_table_entry::riscv::Rv64PTE>(0x5948, HIGH_SIGNED);
}

#[test]
fn differential_aarch64() {
    // The upper window at the top of the upper half (TTBR1's), as on the others.
    run::<A64Meta, page_table_entry::aarch64::A64PTE>(0xa64, HIGH_SIGNED);
}

#[test]
fn differential_loongarch64() {
    // LA64 table links carry no present bit (a bare address).
    run::<La64Meta, page_table_entry::loongarch64::LA64PTE>(0x1a64, HIGH_SIGNED);
}
