//! libFuzzer target over the mm API: the input bytes are decoded into a
//! sequence of mmap / munmap / mprotect / page-fault / frame-limit calls on an
//! `AddrSpace` over `testing::TrackingHandler`. Addresses and lengths are
//! either small page counts around a 64-page window (which straddles a 2 MiB
//! page-table boundary) or raw 64-bit values, so bad input is exercised as
//! often as good input.
//!
//! After every call: the result equals what an independent page-granular model
//! of the documented rules predicts (under a frame limit, calls that allocate
//! may instead fail with `NoMemory` and must change nothing); the area list is
//! exactly the model's maximal runs of mergeable pages; every page translates
//! as the model says; the frame counts add up. At the end the address space is
//! dropped and no frame may leak. Any panic is a finding.
//!
//! Run: `cargo +nightly fuzz run mm_api` in `fuzz/` (or `make fuzz-libfuzzer`).
#![no_main]

use std::collections::BTreeMap;

use axerrno::AxError;
use hal::Access;
use libfuzzer_sys::fuzz_target;
use memory_addr::VirtAddr;
use mm::{AddrSpace, AreaKind, FaultError, MappingFlags, MmapFlags, Populate, Prot};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::x86_64::X64PagingMetaData;
use testing::TrackingHandler;

type Space = AddrSpace<X64PagingMetaData, X64PTE, TrackingHandler>;

const P: usize = 4096;
const PAGES: usize = 64;
const START: usize = 0x10_0000_0000 + 0x20_0000 - 32 * P;
const END: usize = START + PAGES * P;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Lazy,
    Eager,
    Contig(usize),
}

#[derive(Clone, Copy, Debug)]
struct Page {
    prot: Prot,
    kind: Kind,
    populated: bool,
}

/// Reads the fuzz input as a stream of integers (zeros when exhausted).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | (u64::from(self.u8()) << (8 * i)))
    }

    /// An address: mostly a page of (or near) the window, sometimes raw.
    fn addr(&mut self) -> usize {
        match self.u8() % 8 {
            0 => self.u64() as usize,
            1 => START + (self.u8() as usize % (PAGES + 8)) * P + self.u8() as usize,
            _ => (START + (self.u8() as usize % (PAGES + 8)) * P).wrapping_sub(4 * P),
        }
    }

    /// A length: mostly a few pages (sometimes not a multiple), sometimes raw.
    fn len(&mut self) -> usize {
        match self.u8() % 8 {
            0 => self.u64() as usize,
            1 => self.u8() as usize * 97,
            _ => (self.u8() as usize % 10) * P,
        }
    }

    fn prot(&mut self) -> Prot {
        const P5: [Prot; 5] = [
            Prot::empty(),
            Prot::READ,
            Prot::READ.union(Prot::WRITE),
            Prot::READ.union(Prot::EXEC),
            Prot::all(),
        ];
        let b = self.u8();
        match b % 16 {
            0 => Prot::from_bits_retain(u32::from(self.u8())),
            _ => P5[b as usize % 5],
        }
    }

    fn flags(&mut self) -> MmapFlags {
        let b = self.u8();
        if b == 0xff {
            // Huge pages are not in this model (tests/huge.rs covers them).
            let huge = MmapFlags::HUGE_2M | MmapFlags::HUGE_1G;
            return MmapFlags::from_bits_retain(self.u64() as u32 & !huge.bits());
        }
        let mut f = MmapFlags::empty();
        for (bit, flag) in [
            (1, MmapFlags::FIXED),
            (2, MmapFlags::FIXED_NOREPLACE),
            (4, MmapFlags::POPULATE),
            (8, MmapFlags::CONTIGUOUS),
        ] {
            if b & bit != 0 {
                f |= flag;
            }
        }
        f
    }
}

struct Model {
    pages: BTreeMap<usize, Page>,
}

/// The documented range rule: page-rounded, aligned, inside the window.
fn window_pages(addr: usize, len: usize) -> Option<(usize, usize)> {
    if len == 0 || !addr.is_multiple_of(P) {
        return None;
    }
    let size = len.checked_add(P - 1)? & !(P - 1);
    let end = addr.checked_add(size)?;
    (addr >= START && end <= END).then(|| ((addr - START) / P, size / P))
}

fn prot_ok(prot: Prot) -> bool {
    prot.bits() & !Prot::all().bits() == 0
        && (prot.contains(Prot::READ) || !prot.intersects(Prot::WRITE | Prot::EXEC))
}

fn allows(prot: Prot, access: Access) -> bool {
    match access {
        Access::Read => prot.contains(Prot::READ),
        Access::Write => prot.contains(Prot::WRITE),
        Access::Execute => prot.contains(Prot::EXEC),
    }
}

impl Model {
    fn free(&self, p: usize, n: usize) -> bool {
        self.pages.range(p..p + n).next().is_none()
    }

    fn remove(&mut self, p: usize, n: usize) {
        for q in p..p + n {
            self.pages.remove(&q);
        }
    }

    fn populated(&self) -> usize {
        self.pages.values().filter(|p| p.populated).count()
    }

    /// mmap's result per the documented rules, ignoring frame exhaustion.
    fn mmap(
        &self,
        addr: Option<usize>,
        len: usize,
        prot: Prot,
        flags: MmapFlags,
    ) -> Result<usize, AxError> {
        let inv = Err(AxError::InvalidInput);
        if flags.bits() & !MmapFlags::all().bits() != 0 || !prot_ok(prot) {
            return inv;
        }
        let Some(size) = (len != 0)
            .then(|| len.checked_add(P - 1))
            .flatten()
            .map(|l| l & !(P - 1))
        else {
            return inv;
        };
        if flags.contains(MmapFlags::CONTIGUOUS) && size > mm::CONTIGUOUS_MAX {
            return inv;
        }
        let noreplace = flags.contains(MmapFlags::FIXED_NOREPLACE);
        if noreplace || flags.contains(MmapFlags::FIXED) {
            let Some((p, n)) = addr.and_then(|a| window_pages(a, size)) else {
                return inv;
            };
            if noreplace && !self.free(p, n) {
                return Err(AxError::AlreadyExists);
            }
            return Ok(p);
        }
        let n = size / P;
        if let Some((p, n)) = addr.and_then(|a| window_pages(a, size))
            && self.free(p, n)
        {
            return Ok(p);
        }
        (0..=PAGES.saturating_sub(n))
            .find(|&p| n <= PAGES && self.free(p, n))
            .ok_or(AxError::NoMemory)
    }

    fn expected_areas(&self) -> Vec<(usize, usize, MappingFlags, AreaKind)> {
        let mut out: Vec<(usize, usize, MappingFlags, AreaKind)> = Vec::new();
        let mut prev: Option<(usize, Page)> = None;
        for (&n, p) in &self.pages {
            let merges = prev.is_some_and(|(pn, pp)| {
                pn + 1 == n
                    && pp.prot == p.prot
                    && match (pp.kind, p.kind) {
                        (Kind::Contig(a), Kind::Contig(b)) => a + P == b,
                        (a, b) => a == b,
                    }
            });
            if merges {
                out.last_mut().unwrap().1 = START + (n + 1) * P;
            } else {
                out.push((
                    START + n * P,
                    START + (n + 1) * P,
                    p.prot.to_mapping_flags().unwrap(),
                    match p.kind {
                        Kind::Lazy => AreaKind::Alloc {
                            populate: Populate::Lazy,
                        },
                        Kind::Eager => AreaKind::Alloc {
                            populate: Populate::Eager,
                        },
                        Kind::Contig(f) => AreaKind::Contiguous {
                            start_frame: f.into(),
                        },
                    },
                ));
            }
            prev = Some((n, *p));
        }
        out
    }
}

fn check(s: &Space, m: &Model, what: &str) {
    let got: Vec<_> = s
        .areas()
        .map(|a| (a.start.as_usize(), a.end.as_usize(), a.flags, a.kind))
        .collect();
    assert_eq!(got, m.expected_areas(), "{what}: areas");
    for n in 0..PAGES {
        let t = s.translate(VirtAddr::from(START + n * P));
        match m.pages.get(&n) {
            Some(p) if p.populated && !p.prot.is_empty() => {
                let t = t.unwrap_or_else(|e| panic!("{what}: page {n} unmapped: {e:?}"));
                if let Kind::Contig(f) = p.kind {
                    assert_eq!(t.paddr.as_usize(), f, "{what}: frame of page {n}");
                }
                assert_eq!(
                    t.flags.contains(MappingFlags::WRITE),
                    p.prot.contains(Prot::WRITE)
                );
            }
            _ => assert_eq!(t, Err(AxError::BadAddress), "{what}: page {n} mapped"),
        }
    }
    let st = s.stats();
    assert_eq!(st.data_frames, m.populated(), "{what}: data frames");
    assert_eq!(
        testing::frames_in_use(),
        st.data_frames + st.page_table_frames,
        "{what}: frames in use"
    );
}

fuzz_target!(|data: &[u8]| {
    testing::reset();
    let mut s = Space::new(VirtAddr::from(START), PAGES * P).unwrap();
    let mut m = Model {
        pages: BTreeMap::new(),
    };
    let mut b = Bytes(data);
    let mut limited = false;
    for step in 0..256 {
        if b.0.is_empty() {
            break;
        }
        let op = b.u8();
        let what = format!("step {step} op {op}");
        match op % 8 {
            0 | 1 => {
                let addr = (op & 0x10 != 0).then(|| b.addr());
                let (len, prot, flags) = (b.len(), b.prot(), b.flags());
                let want = m.mmap(addr, len, prot, flags);
                let r = s.mmap(addr.map(VirtAddr::from), len, prot, flags);
                let contiguous = flags.contains(MmapFlags::CONTIGUOUS);
                let allocates =
                    contiguous || (flags.contains(MmapFlags::POPULATE) && !prot.is_empty());
                if limited && allocates && want.is_ok() && r == Err(AxError::NoMemory) {
                    check(&s, &m, &what);
                    continue;
                }
                assert_eq!(
                    r.map(|v| v.as_usize()),
                    want.map(|p| START + p * P),
                    "{what}: mmap({addr:x?}, {len:#x}, {prot:?}, {flags:?})"
                );
                if let Ok(p) = want {
                    let n = len.div_ceil(P);
                    m.remove(p, n);
                    let frame = match s.area_at(VirtAddr::from(START + p * P)) {
                        Some(a) => match a.kind {
                            AreaKind::Contiguous { start_frame } => {
                                Some(start_frame.as_usize() + START + p * P - a.start.as_usize())
                            }
                            _ => None,
                        },
                        None => None,
                    };
                    assert_eq!(frame.is_some(), contiguous, "{what}: contiguous kind");
                    let eager = flags.contains(MmapFlags::POPULATE) && !prot.is_empty();
                    for q in 0..n {
                        let kind = match frame {
                            Some(f) => Kind::Contig(f + q * P),
                            None if eager => Kind::Eager,
                            None => Kind::Lazy,
                        };
                        let populated = contiguous || eager;
                        m.pages.insert(
                            p + q,
                            Page {
                                prot,
                                kind,
                                populated,
                            },
                        );
                    }
                }
            }
            2 => {
                let (addr, len) = (b.addr(), b.len());
                let r = s.munmap(VirtAddr::from(addr), len);
                match window_pages(addr, len) {
                    None => assert_eq!(r, Err(AxError::InvalidInput), "{what}: munmap"),
                    Some((p, n)) => {
                        assert_eq!(r, Ok(()), "{what}: munmap");
                        m.remove(p, n);
                    }
                }
            }
            3 => {
                let (addr, len, prot) = (b.addr(), b.len(), b.prot());
                let r = s.mprotect(VirtAddr::from(addr), len, prot);
                let want = match window_pages(addr, len) {
                    _ if !prot_ok(prot) => Err(AxError::InvalidInput),
                    None => Err(AxError::InvalidInput),
                    Some((p, n)) if (p..p + n).any(|q| !m.pages.contains_key(&q)) => {
                        Err(AxError::NoMemory)
                    }
                    Some(pn) => Ok(pn),
                };
                // Re-opening PROT_NONE pages needs page tables: may run out.
                if limited && want.is_ok() && r == Err(AxError::NoMemory) {
                    check(&s, &m, &what);
                    continue;
                }
                assert_eq!(
                    r,
                    want.map(|_| ()),
                    "{what}: mprotect({addr:#x}, {len:#x}, {prot:?})"
                );
                if let Ok((p, n)) = want {
                    for q in p..p + n {
                        m.pages.get_mut(&q).unwrap().prot = prot;
                    }
                }
            }
            4 | 5 => {
                let addr = b.addr();
                let access = [Access::Read, Access::Write, Access::Execute][b.u8() as usize % 3];
                let r = s.handle_page_fault(VirtAddr::from(addr), access);
                let page = (START..END).contains(&addr).then(|| (addr - START) / P);
                match page.and_then(|n| m.pages.get_mut(&n)) {
                    None => assert_eq!(r, Err(FaultError::NoArea), "{what}"),
                    Some(p) if !allows(p.prot, access) => {
                        assert!(matches!(r, Err(FaultError::Denied { .. })), "{what}: {r:?}")
                    }
                    Some(p) => match r {
                        Ok(()) => p.populated = true,
                        Err(FaultError::NoMemory { .. }) if limited && !p.populated => {
                            assert!(!format!("{}", r.unwrap_err()).is_empty());
                        }
                        r => panic!("{what}: fault {addr:#x} {access:?}: {r:?}"),
                    },
                }
            }
            6 => {
                limited = b.u8() % 2 == 0;
                let spare = usize::from(b.u8() % 8);
                testing::set_limit(limited.then(|| testing::frames_in_use() + spare));
            }
            _ => {
                let addr = b.addr();
                let t = s.translate(VirtAddr::from(addr));
                let page = (START..END).contains(&addr).then(|| (addr - START) / P);
                let mapped = page
                    .and_then(|n| m.pages.get(&n))
                    .is_some_and(|p| p.populated && !p.prot.is_empty());
                assert_eq!(t.is_ok(), mapped, "{what}: translate {addr:#x}");
            }
        }
        check(&s, &m, &what);
    }
    testing::set_limit(None);
    drop(s);
    testing::assert_no_leaks();
});
