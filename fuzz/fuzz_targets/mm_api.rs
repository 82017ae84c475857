//! libFuzzer target over the mm API: the input bytes are decoded into a
//! sequence of mmap / munmap / mprotect / page-fault / frame-limit calls, and
//! `mmap_object` (shared or private, of two anonymous objects and one over
//! bytes, offsets reaching past their ends) / `mmap(SHARED)` / `msync` /
//! `mremap` calls and writes of tags into pages, on an
//! `AddrSpace` over `testing::TrackingHandler`. Addresses are pages of a window
//! of 64 pages, three whole 2M blocks and 64 pages (block starts are favoured),
//! or raw 64-bit values; lengths are a few pages, whole 2M blocks, odd byte
//! counts or raw values; flags include HUGE_2M and HUGE_1G; so bad input is
//! exercised as often as good input.
//!
//! After every call the result, the exact area list, every mapped page's
//! translation (flags, contiguous frame, object frame, 4K or 2M leaf), the
//! number of leaves, the frame counts (objects' resident pages included), the
//! shared frames, and after object calls the objects' pages (frames, `maps`,
//! `wmaps`, dirty) and the bytes pager's contents are checked against the page-granular
//! model of `modules/mm/tests/common/model.rs`, shared with the seeded random
//! test (under a frame limit, calls that need frames may instead fail with
//! `NoMemory` and must change nothing, and a huge fault may fall back to a 4K
//! page; an object fault may leave the page resident). At the end every page's
//! data is checked, the address space and the objects are dropped and no frame
//! may leak. Any panic is a finding.
//!
//! Run: `cargo +nightly fuzz run mm_api` in `fuzz/` (or `make fuzz-libfuzzer`).
#![no_main]

#[path = "../../modules/mm/tests/common/model.rs"]
mod model;

use axerrno::AxError;
use hal::Access;
use libfuzzer_sys::fuzz_target;
use memory_addr::VirtAddr;
use mm::{AddrSpace, AreaKind, MmapFlags, MsyncFlags, Prot, RemapFlags};
use model::{BLOCK, END, FIRST_BLOCK, HUGE, Model, Objects, P, PAGES, PROTS, START, window_pages};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::x86_64::X64PagingMetaData;
use testing::TrackingHandler;

type Space = AddrSpace<X64PagingMetaData, X64PTE, TrackingHandler>;

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

    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | (u64::from(self.u8()) << (8 * i)))
    }

    /// A page index a little beyond the window at most.
    fn page(&mut self) -> usize {
        usize::from(self.u16()) % (PAGES + 8)
    }

    /// An address: mostly a page of (or near) the window or a block start,
    /// sometimes raw or unaligned.
    fn addr(&mut self) -> usize {
        match self.u8() % 8 {
            0 => self.u64() as usize,
            1 => START + self.page() * P + self.u8() as usize,
            2 | 3 => START + (FIRST_BLOCK + BLOCK * (self.u8() as usize % 4)) * P,
            _ => (START + self.page() * P).wrapping_sub(4 * P),
        }
    }

    /// A length: mostly a few pages or whole blocks, sometimes odd or raw.
    fn len(&mut self) -> usize {
        match self.u8() % 8 {
            0 => self.u64() as usize,
            1 => self.u8() as usize * 97,
            2 | 3 => (self.u8() as usize % 3 + 1) * HUGE,
            4 => self.page() * P,
            _ => (self.u8() as usize % 10) * P,
        }
    }

    fn prot(&mut self) -> Prot {
        let b = self.u8();
        match b % 16 {
            0 => Prot::from_bits_retain(u32::from(self.u8())),
            _ => PROTS[b as usize % 5],
        }
    }

    fn flags(&mut self) -> MmapFlags {
        let b = self.u8();
        if b == 0xff {
            return MmapFlags::from_bits_retain(self.u64() as u32);
        }
        let mut f = MmapFlags::empty();
        for (bit, flag) in [
            (1, MmapFlags::FIXED),
            (2, MmapFlags::FIXED_NOREPLACE),
            (4, MmapFlags::POPULATE),
            (8, MmapFlags::CONTIGUOUS),
            (16, MmapFlags::HUGE_2M),
            (32, MmapFlags::HUGE_2M),
            (64, MmapFlags::HUGE_1G),
        ] {
            if b & bit != 0 {
                f |= flag;
            }
        }
        f
    }
}

fuzz_target!(|data: &[u8]| {
    testing::reset();
    let mut s = Space::new(VirtAddr::from(START), PAGES * P).unwrap();
    let mut m = Model::new();
    let objects = Objects::<TrackingHandler>::new(&mut m);
    let mut b = Bytes(data);
    let mut limited = false;
    let mut next_tag = 1u64;
    for step in 0..256 {
        if b.0.is_empty() {
            break;
        }
        let op = b.u8();
        let what = format!("step {step} op {op}");
        let what = what.as_str();
        match op % 12 {
            0 | 1 => {
                let addr = (op & 0x10 != 0).then(|| b.addr());
                let (len, prot, flags) = (b.len(), b.prot(), b.flags());
                let want = m.mmap_result(addr, len, prot, flags);
                let r = s.mmap(addr.map(VirtAddr::from), len, prot, flags);
                let n = len.div_ceil(P);
                // (An mmap(SHARED) maps a new object: its POPULATE is best effort.)
                let allocates = !flags.contains(MmapFlags::SHARED)
                    && (flags.contains(MmapFlags::CONTIGUOUS)
                        || (flags.contains(MmapFlags::POPULATE) && !prot.is_empty()));
                let fixed = flags.intersects(MmapFlags::FIXED | MmapFlags::FIXED_NOREPLACE);
                let splits = fixed && matches!(want, Ok(p) if m.splits(p, n));
                if limited && (allocates || splits) && want.is_ok() && r == Err(AxError::NoMemory) {
                    m.check(&s, false, what);
                    continue;
                }
                assert_eq!(
                    r.map(|v| v.as_usize()),
                    want.map(model::addr),
                    "{what}: mmap({addr:x?}, {len:#x}, {prot:?}, {flags:?})"
                );
                if let Ok(p) = want {
                    let frame = match s.area_at(VirtAddr::from(model::addr(p))) {
                        Some(a) => match a.kind {
                            AreaKind::Contiguous { start_frame } => {
                                Some(start_frame.as_usize() + model::addr(p) - a.start.as_usize())
                            }
                            _ => None,
                        },
                        None => None,
                    };
                    m.mmap(&s, p, n, prot, flags, frame, limited, what);
                }
            }
            2 => {
                let (addr, len) = (b.addr(), b.len());
                let r = s.munmap(VirtAddr::from(addr), len);
                match window_pages(addr, len) {
                    None => assert_eq!(r, Err(AxError::InvalidInput), "{what}: munmap"),
                    Some((p, n)) if limited && m.splits(p, n) && r == Err(AxError::NoMemory) => {}
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
                    _ if !model::prot_ok(prot) => Err(AxError::InvalidInput),
                    None => Err(AxError::InvalidInput),
                    Some((p, n)) if (p..p + n).any(|q| !m.pages.contains_key(&q)) => {
                        Err(AxError::NoMemory)
                    }
                    Some(pn) => Ok(pn),
                };
                if let Ok((p, n)) = want
                    && limited
                    && m.mprotect_needs_frames(p, n, prot)
                    && r == Err(AxError::NoMemory)
                {
                    m.check(&s, false, what);
                    continue;
                }
                assert_eq!(
                    r,
                    want.map(|_| ()),
                    "{what}: mprotect({addr:#x}, {len:#x}, {prot:?})"
                );
                if let Ok((p, n)) = want {
                    m.mprotect(p, n, prot);
                }
            }
            4 | 5 => {
                let addr = b.addr();
                let access = [Access::Read, Access::Write, Access::Execute][b.u8() as usize % 3];
                let r = s.handle_page_fault(VirtAddr::from(addr), access);
                let page = (START..END).contains(&addr).then(|| (addr - START) / P);
                m.fault(&s, page, access, r, limited, what);
            }
            6 => {
                limited = b.u8() % 2 == 0;
                let spare = match b.u8() {
                    x if x >= 0xf0 => 512 + usize::from(x & 0xf) * 64,
                    x => usize::from(x % 8),
                };
                testing::set_limit(limited.then(|| testing::frames_in_use() + spare));
            }
            7 => {
                let addr = b.addr();
                let t = s.translate(VirtAddr::from(addr));
                let page = (START..END).contains(&addr).then(|| (addr - START) / P);
                let mapped = page
                    .and_then(|n| m.pages.get(&n))
                    .is_some_and(|p| p.mapped());
                assert_eq!(t.is_ok(), mapped, "{what}: translate {addr:#x}");
            }
            8 => {
                let (o, obj) = &objects.objs[b.u8() as usize % 3];
                let addr = (op & 0x10 != 0).then(|| b.addr());
                let (len, prot, mut flags) = (b.len(), b.prot(), b.flags());
                flags |= [MmapFlags::SHARED, MmapFlags::PRIVATE, MmapFlags::empty()]
                    [usize::from(op >> 5) % 3];
                let offset = match b.u8() % 8 {
                    0 => b.u64() as usize,
                    1 => b.u16() as usize,
                    _ => (b.u8() as usize % 32) * P,
                };
                let want = m.mmap_object_result(addr, len, prot, flags, offset);
                let r = s.mmap_object(addr.map(VirtAddr::from), len, prot, flags, obj, offset);
                let n = len.div_ceil(P);
                let fixed = flags.intersects(MmapFlags::FIXED | MmapFlags::FIXED_NOREPLACE);
                let splits = fixed && matches!(want, Ok(p) if m.splits(p, n));
                if limited && splits && want.is_ok() && r == Err(AxError::NoMemory) {
                    m.check(&s, false, what);
                    continue;
                }
                assert_eq!(
                    r.map(|v| v.as_usize()),
                    want.map(model::addr),
                    "{what}: mmap_object({addr:x?}, {len:#x}, {prot:?}, {flags:?}, {offset:#x})"
                );
                if let Ok(p) = want {
                    m.mmap_object(&s, p, n, prot, flags, *o, offset / P, limited, what);
                }
                objects.check(&mut m, what);
            }
            9 => {
                let (addr, len) = (b.addr(), b.len());
                // Mostly MS_SYNC; the low bits of a byte also give the other
                // sets, ASYNC with SYNC, and an unknown bit.
                let flags = match b.u8() % 10 {
                    0 => 0,
                    1 => 1,
                    2 => 2,
                    3 => 5,
                    4 => 8,
                    _ => 4,
                };
                let want = m.msync(addr, len, flags);
                let r = s.msync(VirtAddr::from(addr), len, MsyncFlags::from_bits_retain(flags));
                assert_eq!(r, want, "{what}: msync({addr:#x}, {len:#x}, {flags:#x})");
                objects.check(&mut m, what);
            }
            10 => {
                let (old_addr, old_len, new_len) = (b.addr(), b.len(), b.len());
                let flags = match b.u8() {
                    0xff => RemapFlags::from_bits_retain(u32::from(b.u8())),
                    x => [
                        RemapFlags::empty(),
                        RemapFlags::MAYMOVE,
                        RemapFlags::MAYMOVE | RemapFlags::FIXED,
                        RemapFlags::FIXED,
                    ][usize::from(x) % 4],
                };
                let new_addr = (op & 0x10 != 0).then(|| b.addr());
                let Some(plan) = m.mremap_result(old_addr, old_len, new_len, flags, new_addr)
                else {
                    // An old range in a huge area: not modelled.
                    continue;
                };
                let before: Vec<_> = match plan {
                    Ok(plan) => {
                        let (p, n, new_n, _) = plan.parts();
                        (p..p + n.min(new_n))
                            .map(|q| s.translate(VirtAddr::from(model::addr(q))).ok())
                            .collect()
                    }
                    Err(_) => Vec::new(),
                };
                let r = s.mremap(
                    VirtAddr::from(old_addr),
                    old_len,
                    new_len,
                    flags,
                    new_addr.map(VirtAddr::from),
                );
                let what = format!(
                    "{what}: mremap({old_addr:#x}, {old_len:#x}, {new_len:#x}, {flags:?}, {new_addr:x?}): {plan:?}"
                );
                match plan {
                    Err(e) => assert_eq!(r, Err(e), "{what}"),
                    Ok(plan)
                        if limited && m.remap_needs_frames(plan) && r == Err(AxError::NoMemory) =>
                    {
                        m.mremap_no_memory(&s, plan, &what);
                    }
                    Ok(plan) => {
                        let (_, _, _, to) = plan.parts();
                        assert_eq!(r.map(|v| v.as_usize()), Ok(model::addr(to)), "{what}");
                        m.mremap(plan);
                        for (k, t) in before.iter().enumerate() {
                            let now = s.translate(VirtAddr::from(model::addr(to + k))).ok();
                            assert_eq!(now, *t, "{what}: page {k} of the moved range");
                        }
                    }
                }
                objects.check(&mut m, &what);
            }
            _ => {
                // A write of a new tag, as the app would (an object page only
                // through a writable PTE).
                let page = b.page();
                if m.pages.get(&page).is_some_and(|q| q.mapped()) && m.write(&s, page, next_tag) {
                    next_tag += 1;
                }
            }
        }
        m.check(&s, false, what);
    }
    testing::set_limit(None);
    m.check(&s, true, "end");
    objects.check(&mut m, "end");
    drop(s);
    objects.check_unmapped(&m);
    drop(objects);
    testing::assert_no_leaks();
});
