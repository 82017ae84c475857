//! Address spaces: areas over a page table whose behaviour is given by
//! backends anyone can write ([`Backend`]), built-in linear, allocated,
//! contiguous and object (shared, private copy-on-write) backends, memory
//! objects with pagers, page-fault handling, and the
//! `mmap`/`munmap`/`mprotect`/`mremap`/`msync` semantics apps see.
//!
//! An [`AddrSpace`] is an area set (`areas.rs`: a `BTreeMap` of areas keyed by
//! start address, each with a [`Backend`]) over a mapper (`backend/mapper.rs`: the
//! hardware page table, a [`paging::PageTable`], plus the state a page table
//! cannot express), a *window* of virtual addresses that the app calls may
//! touch, and counters. `paging` is the only code that reads or writes page-table
//! entries; this crate calls its API (map, unmap, protect, lookups, splits and
//! their undo, table counts, collapses, leaf walks, the audit).
//!
//! # Where things are
//! | file | what it holds |
//! |---|---|
//! | `space/mod.rs` | [`AddrSpace`]: construction, [`AddrSpace::translate`], [`AddrSpace::stats`], [`AddrSpace::audit`], areas, teardown |
//! | `space/fault.rs` | [`AddrSpace::handle_page_fault`]: where a page fault goes in (`&self`, several CPUs at once) |
//! | `lock.rs` | the table lock around the mapper (see *Locking protocol for several CPUs*) |
//! | `space/mmap.rs` | the app calls: `mmap`, `mmap_object`, `mmap_backend`, `munmap`, `mprotect`, `map_phys`; atomic `FIXED` replacement |
//! | `space/mremap.rs`, `space/msync.rs` | [`AddrSpace::mremap`] (moves page-table entries, never data), [`AddrSpace::msync`] |
//! | `space/kernel.rs` | the kernel calls: `map_linear`, `map_kernel` |
//! | `areas.rs`, `area.rs` | the area set (lookups, splits, merges; why not `memory_set`) and the public area description |
//! | `gaps.rs` | the free-gap index behind placement without a fixed address (first fit in O(log n)) |
//! | `backend/mod.rs` | the public [`Backend`] trait and its contract, [`Fault`], [`FaultAction`]; what a page-table error means here |
//! | `backend/erased.rs` | how areas hold backends: the object-safe mirror of [`Backend`] in a two-word box (the backend inline up to one word) |
//! | `backend/pages.rs` | [`Pages`]: the page-table operations a backend may use (map, unmap with release, protect, park, replace, frames) |
//! | `backend/mapper.rs` | `Mapper`: the page table, lookups, frame pools, contiguous runs, the `FIXED` reserve, moves, removed backends |
//! | `backend/split.rs` | when huge leaves are split at range edges, put back, and collapsed (`paging` does it) |
//! | `backends/` | the built-in backends, each an implementation of [`Backend`]: [`Linear`], [`Alloc`], [`Contiguous`], [`ObjectMapping`] |
//! | `object/` | [`MemObject`] (pages several mappings share, with per-page counts) and its [`Pager`]s: [`AnonPager`], [`BytesPager`] |
//! | `flags.rs`, `error.rs` | [`Prot`], [`MmapFlags`]; [`FaultError`] and the internal error types, converted to [`AxError`](axerrno::AxError) at the boundary |
//! | `invariant.rs` | what a broken invariant does (below) |
//!
//! The area set is our own (`areas.rs` says why not `memory_set`): it
//! answers lookups, overlap and coverage checks, unmap and protect in
//! O(log n + k) for k touched areas; its backend's `map` says why it failed
//! (it can only run out of frames), and `unmap`, `protect` and `split` cannot
//! fail (huge leaves were split first); the set's own errors say what was
//! wrong with the range (it overlaps an area, or is not covered by areas).
//! All are converted to [`AxError`](axerrno::AxError) only at this crate's
//! public boundary. The `split` hook gives the right part its own state (a
//! shrink from the front is a split whose left part is unmapped); and
//! adjacent areas merge (below).
//!
//! # Backends
//! Every area has a [`Backend`] (`backend/mod.rs` gives the contract), kept
//! inline in the area when it is one word or less (`backend/erased.rs`):
//! the address space calls it to map a new area, unmap, protect, re-open a
//! `PROT_NONE` range, handle a fault it cannot answer itself, split, merge,
//! grow and move, sync and describe; the parking of `PROT_NONE` pages and
//! whether split 2M blocks may collapse are its decisions. An OS author
//! implements it in their own crate and maps it with
//! [`AddrSpace::mmap_backend`]; the built-in backends below are
//! implementations like any other. The fault path's last-hit cache keeps a
//! pointer to the area's backend (valid while the set's generation is
//! unchanged), so backends holding shared objects work with it; a backend
//! can declare its absent-page faults plain zero-fill
//! ([`Backend::zero_fill_4k`]) so the fault path need not call it.
//!
//! - **Linear** (`va = pa + va_minus_pa`, see [`AreaKind::Linear`]): kernel image, physical memory, MMIO,
//!   and [`AddrSpace::map_phys`]. 2M/1G pages wherever both addresses are
//!   aligned: kernel areas ([`AddrSpace::map_linear`] with `huge`,
//!   [`AddrSpace::map_kernel`]) and app areas ([`AddrSpace::map_phys`], which
//!   places a range of 2 MiB or more at a virtual address congruent to its
//!   physical one modulo 2 MiB). A partial unmap or protect splits them
//!   (see *Huge pages*).
//! - **Alloc** with [`Populate::Eager`] (a zeroed frame per page at map time) or
//!   [`Populate::Lazy`] (nothing at map time; a zeroed frame on first touch).
//!   The lazy state is the absence of a PTE, never a "paddr 0, no flags" entry.
//! - **Contiguous** (`MmapFlags::CONTIGUOUS`): one physically contiguous run of
//!   zeroed frames owned by the area, mapped at map time (what a driver needs
//!   for DMA). Its state is the frame of its first page: a split gives the
//!   right part `start_frame + offset`, and unmapping part of the area frees
//!   exactly the frames of that part (after the TLB flush).
//!
//! - **Huge alloc** ([`MmapFlags::HUGE_2M`], [`MmapFlags::HUGE_1G`]; shown as
//!   `alloc(lazy, 2M)`): allocated memory in huge pages. Each aligned block
//!   gets one zeroed, aligned run of frames mapped by one leaf (at the first
//!   touch, or at map time with `POPULATE`); when the frame allocator has no
//!   aligned run free, the faulting page (or, for `POPULATE`, the block) gets
//!   4K frames instead and [`MmStats::huge_fallbacks`] counts it. A fault in a
//!   block that is partly mapped already (after a split) maps a 4K frame.
//!
//! - **Object** ([`AddrSpace::mmap_object`], and `mmap` with
//!   [`MmapFlags::SHARED`], which maps a new anonymous object; shown as
//!   `object(shared, +offset)`): the pages of a [`MemObject`] from a byte
//!   offset. Shared: every mapping (in any address space) maps the object's
//!   frame, so every write is seen everywhere, after any split, merge, partial
//!   unmap or move; pages are mapped read-only until written (dirty tracking,
//!   per page), and [`AddrSpace::msync`] writes dirty pages back through the
//!   object's pager. Private: reads map the object's frame read-only; the first
//!   write to a page copies it (copy-on-write), or takes the frame without a
//!   copy when the area holds the only reference to the object and the page
//!   has no other mapping. A fault past the object's end is
//!   [`FaultError::PastEnd`] (Linux's `SIGBUS`), never a zero page.
//!
//! # Huge pages
//! An operation whose range starts or ends inside a huge leaf (partial
//! `munmap`, `mprotect`, or a `FIXED` mapping over part of one) first splits
//! that leaf at the range edge into a table of next-size leaves with the same
//! flags and consecutive physical addresses (1G -> 2M -> 4K as needed), before
//! the area set changes anything: every translation, and so every byte of data,
//! of the rest stays where it was. This needs one page-table frame per level
//! split; if none is free the call fails with `NoMemory` and the splits already
//! made are undone (the huge leaf is put back). Frame ownership stays exact: an
//! unmapped huge data page returns its whole run; after a split, unmapping part
//! of it returns exactly the 4K frames of that part (the frame allocator
//! accepts piecewise frees of a run), and the rest is returned with the pages
//! that map it. A `PROT_NONE` on part of a huge data page parks its 4K pieces;
//! they come back as 4K pages.
//!
//! A split is undone when it no longer matters: after an `mprotect` to an
//! accessible protection, every 2M block it touched that lies whole in one
//! 2M allocated area and is a table of 512 4K leaves with equal flags over one
//! aligned run of frames (what a split or a park of a 2M page leaves) becomes
//! one 2M leaf again, and its table frame is freed after the flush
//! ([`MmStats::huge_collapses`]). So an `mprotect` round trip on one page of a
//! huge page costs no lasting TLB reach (Linux leaves the split to a background
//! thread, khugepaged, to collapse later). Blocks whose frames are not that run
//! (a page was unmapped and mapped again, a 4K fallback) stay 4K.
//!
//! # Merging
//! Two areas merge into one when one ends where the other starts, their flags
//! are equal, and their backends are of the same kind with the same
//! parameters:
//! - linear: the same `va_minus_pa` *and* the same huge setting (a range
//!   mapped with huge pages allowed never merges with one mapped without);
//! - allocated: the same populate mode *and* the same page size, so a huge
//!   area (`alloc(lazy, 2M)`) never merges with a 4K area (`alloc(lazy)`) of
//!   the same populate mode and flags, nor a 2M area with a 1G one, and an
//!   eager area never merges with a lazy one;
//! - contiguous: runs physically adjacent
//!   (`left.start_frame + left.size == right.start_frame`);
//! - object: the same object, the same sharing, consecutive offsets.
//!
//! Areas of different kinds never merge (each backend's
//! [`Backend::try_merge`] decides, and the built-in ones agree only with
//! their own kind). The check runs where a call can make
//! two mergeable areas adjacent: at both ends of an inserted area (`mmap`,
//! `map_phys`, `map_linear`), and at both ends and every area boundary inside
//! the range of an `mprotect`; `munmap` only removes areas. So two adjacent
//! lazy 4K mmaps form one area, and an `mprotect` back to the neighbours'
//! flags merges the pieces it split.
//!
//! # Invariants
//! 1. Every present PTE lies inside exactly one area, and its flags are that
//!    area's flags, or the same less `WRITE` where the backend write-protects
//!    a page (an object's page: copy-on-write, dirty tracking), so that a
//!    write faults and reaches it ([`Backend::fault_mapped`]). No PTE is ever
//!    written with flags lacking READ, WRITE and EXECUTE.
//! 2. Every frame a PTE maps is either *owned* by its area or *shared*. An
//!    owned frame (allocated areas, private copies of object pages) is mapped
//!    by exactly one PTE, or *parked* (the area's flags allow no access: its
//!    PTE is removed and the frame is kept in the mapper so the data survives
//!    `PROT_NONE -> RW`), never both; the frames of a contiguous area are
//!    owned by it whether mapped or not. [`MmStats::data_frames`] counts the
//!    owned frames. A shared frame belongs to a [`MemObject`] and may be
//!    mapped by any number of PTEs, in any address spaces: the object counts
//!    them per page (`maps`, and `wmaps` for writable ones; `usize` counts
//!    bounded by the number of PTEs, so they cannot wrap), and
//!    [`MmStats::shared_frames`] counts those of this address space. A
//!    shared page is writable in a PTE only while the object has it dirty,
//!    and never writable in a private mapping.
//! 3. Areas in the window were created by the app calls; kernel areas lie outside
//!    it, so app calls (checked against the window) cannot touch them. (The
//!    kernel calls `map_linear`/`map_kernel` do not check the window: the caller
//!    keeps its areas out of it.)
//! 4. Page tables below the root that become empty after an unmap are freed
//!    (by the page table, in the same operation).
//! 5. Areas are non-overlapping, page aligned, and merged where they can be.
//! 6. No leaf crosses an area boundary: huge leaves are split at the edges of
//!    every operation before areas are split there.
//! 7. **Frames are freed only after the TLB flush** of the operation that
//!    removed their last translation: owned frames through the operation
//!    batch (`paging::PageTable::free_after_flush`); shared frames when their
//!    object is dropped, which happens only after every area holding it was
//!    removed, because the address space drops a removed backend (and the
//!    object reference it holds) only after its operation's flush.
//!
//! # Flush and free protocol
//! Page-table changes go through `paging`'s cursor, which records the pages it
//! changed. Every call that changes the table (`mmap`, `munmap`, `mprotect`,
//! `map_phys`, `map_linear`, `map_kernel`, drop) runs as one *operation
//! batch* (`paging::PageTable::begin_batch`, opened and closed by
//! `AddrSpace::batched`, so no call can forget it): its cursors hand their
//! flushes and the table frames they unlinked to the batch, and the data
//! frames it removes (up to 32 leaves per cursor, a huge leaf's whole run,
//! a contiguous area's run) are given to `paging::PageTable::free_after_flush`.
//! When the call ends, the batch flushes once (the pages it recorded, or the
//! whole TLB past 16 of them, after a split or an unlinked table), and only
//! then are the table and data frames freed. A batch that only added
//! translations is flushed on the calling CPU only; one that removed or
//! weakened any goes to `paging`'s shootdown hook when the kernel installed
//! one (see `paging`): one shootdown per call, whatever its length. Page
//! faults are not batched: they only add translations. Spurious faults flush
//! the faulting page, and so does a fault that lost a race for its page (both
//! locally). On the host (tests, benchmarks) the table is instantiated with
//! `paging::NoFlush<M>` ([`Meta`]), so the platforms' metadata types can be
//! used there and no privileged flush instruction runs.
//!
//! # Locking protocol for several CPUs
//! The kernel keeps its address space behind a reader-writer lock (the
//! *space lock*, in the runtime). Every call that changes areas takes
//! `&mut self` and runs under its write side: `mmap`, `munmap`, `mprotect`,
//! `map_phys`, `map_linear`, `map_kernel`, drop. Page faults take `&self`
//! ([`AddrSpace::handle_page_fault`]) and run under its read side, on several
//! CPUs at once; so do the reads ([`AddrSpace::translate`],
//! [`AddrSpace::stats`], [`AddrSpace::audit`], [`AddrSpace::for_each_leaf`],
//! [`AddrSpace::page_table`], the roots). [`AddrSpace`] is `Send` and `Sync`
//! for every `M`, `PTE`, `H`.
//!
//! Inside, there is one lock, the **table lock** (`lock.rs`: a spin lock
//! around the mapper). What is where:
//! - **The area set** is only read while `&self` callers exist (faults look
//!   areas up and check their flags); it changes only under `&mut self`, so
//!   it needs no lock. The fault path's last-hit area (O(1) lookups for runs of
//!   faults in one area) lives in the mapper under the table lock, tagged with
//!   the set's generation, which every change of the set bumps: a hit from
//!   before a change is never used.
//! - **Under the table lock**: the page table (every walk: lookups, the
//!   `query` of the first look, the `map` that installs), the parked frames,
//!   the populate pools and `FIXED` reserve (only `&mut self` paths use
//!   those), the last-hit area, and every counter that a fault changes
//!   (`data_frames`, `faults_handled`, `spurious_faults`, `fault_races`,
//!   `huge_faults`, `huge_fallbacks`). `huge_collapses` is changed by
//!   `mprotect` only and lives outside. The `&self` reads take the lock for
//!   their walk ([`AddrSpace::page_table`] returns a guard that holds it).
//! - **Outside any lock**: taking a data frame (4K, or the aligned run of a
//!   huge page) from the handler and zeroing it, and giving back a frame that
//!   lost a race. Page-table frames are taken under the lock (by `paging`'s
//!   map, once per 512 pages or fewer).
//! - `&mut self` paths reach the mapper with `TableLock::get_mut`: no atomic
//!   operation, nothing changes for them.
//!
//! A fault, in order (`space/fault.rs`):
//! 1. under the table lock: area lookup and flag check (else `NoArea` /
//!    `Denied`); if the page is mapped, a stale TLB entry (local flush,
//!    `spurious_faults`) or `Denied`; a parked frame is mapped back there
//!    and then (as are the pages of linear and contiguous areas); otherwise
//!    the fault decides between a 4K frame and a huge page (the aligned block
//!    lies inside the area and nothing of it is mapped or parked), and
//!    *claims* that block (`backend/claims.rs`); if another fault claims
//!    (part of) it already, this one releases the lock, waits until the claim
//!    is gone and starts again (it then finds the page mapped: counted in
//!    `fault_races`, no frame allocated);
//! 2. without the lock: allocate and zero the frame or run (no aligned run
//!    free: a 4K frame, counted as a fallback if it is installed), then a
//!    release fence, so the zeroes are visible before the PTE;
//! 3. under the table lock: map it, and drop the claim. `paging`'s map
//!    refuses, changing nothing, if anything is mapped there now; with the
//!    claim that happens only when more faults were filling at once than
//!    there are claim slots (64), and only another CPU's fault can have
//!    mapped it since step 1 (everything else needs `&mut self`). Then the
//!    frame is freed (it was never mapped: no flush needed), the page is
//!    flushed locally, and the fault succeeds (`fault_races`); both CPUs see
//!    the same frame and exactly one stays allocated. A huge run that meets a
//!    block partly mapped meanwhile (another CPU's 4K fallback) is freed and
//!    the page gets a 4K frame (step 2 again).
//!
//! Every successful fault is counted once: in `faults_handled`,
//! `spurious_faults` or `fault_races`.
//!
//! Backends' fault hooks run under the table lock (step 1): an object
//! mapping's fault takes the object's lock inside it (the innermost lock:
//! the object calls nothing under it but the heap allocator), and may read a
//! page through the object's pager without it. A copy-on-write fault
//! replaces the page's PTE under the table lock and shoots the old
//! translation down before it returns; every CPU that spins meanwhile (on
//! the table lock, on a claim, on the space lock) answers flush requests
//! (`paging::relax`), so this cannot deadlock.
//!
//! **Lock order**: space lock (read side) -> table lock -> object lock ->
//! the frame allocator's own lock (table frames under the table lock; data frames are
//! allocated and freed with no mm lock held). Nothing takes the table lock
//! while holding the frame allocator's. The table lock is never held across a
//! TLB shootdown: a fault only adds translations, so its cursor flushes the
//! local TLB only, and the `&mut self` paths (which may shoot down) do not
//! take it. It does not disable interrupts: it is taken only by the fault
//! path and the `&self` reads, which the runtime calls under its space lock
//! and never from an interrupt handler; a fault raised while this CPU holds
//! the table lock is a fault inside the space lock, which the runtime
//! reports instead of calling in again (it would spin forever: the lock is
//! not reentrant, so `f` of [`AddrSpace::for_each_leaf`] must not fault on
//! the same address space either).
//!
//! # Atomic replacement
//! `mmap(FIXED)` over existing areas either fully succeeds or changes nothing,
//! and `mprotect` to accessible flags maps the pages that come back before it
//! changes any area; `space/mmap.rs` describes how (frames and page-table
//! frames are held before the old mapping is removed).
//!
//! # Errors
//! | call | error | when |
//! |---|---|---|
//! | [`AddrSpace::new`] | `InvalidInput` | window unaligned, empty, overflowing, not a valid virtual range, or across the hole between the halves |
//! | | `NoMemory` | no frame for the root table |
//! | [`AddrSpace::map_linear`] | `InvalidInput` | `va`/`pa`/`size` unaligned, size 0, overflow, a virtual range the page table does not translate (or across the hole between the halves), invalid physical address, flags without `READ` |
//! | | `AlreadyExists` | overlaps an area |
//! | | `NoMemory` | no page-table frame (nothing left mapped) |
//! | [`AddrSpace::map_kernel`] | as `map_linear`, per region | the regions mapped by the call are removed again |
//! | [`AddrSpace::mmap`] | `InvalidInput` | len 0 or overflowing when rounded up; bad `prot` (unknown bits, WRITE/EXEC without READ); unknown `flags` bits; FIXED* without `addr` or with an unaligned `addr`; FIXED* range not inside the window; CONTIGUOUS longer than [`CONTIGUOUS_MAX`]; HUGE_2M with HUGE_1G, or a huge flag with CONTIGUOUS; a huge flag and a (page-rounded) length that is not a multiple of the huge size, or FIXED* with an `addr` not aligned to it |
//! | | `AlreadyExists` | FIXED_NOREPLACE and the range overlaps an area |
//! | | `NoMemory` | no free range in the window (non-FIXED; huge: no free range aligned to the huge size); POPULATE or CONTIGUOUS and out of frames, data or page-table (rolled back; with FIXED the old mapping is intact); FIXED and no page-table frame to split a huge page of the old mapping at an end (nothing changed) |
//! | [`AddrSpace::munmap`] | `InvalidInput` | unaligned addr, len 0 or overflowing, range not inside the window |
//! | | `NoMemory` | an end of the range lies inside a huge page and no page-table frame is free to split it (nothing changed) |
//! | [`AddrSpace::mprotect`] | `InvalidInput` | unaligned addr, len 0 or overflowing, bad `prot`, range not inside the window |
//! | | `NoMemory` | a page of the range is not covered by an area; or no page-table frame to re-map pages of a `PROT_NONE` area or to split a huge page at an end of the range (nothing changed in any case) |
//! | [`AddrSpace::mmap_object`] | `InvalidInput` | as `mmap`; and neither or both of `SHARED` and `PRIVATE`, an offset not 4K aligned or whose sum with the length overflows (Linux: `EOVERFLOW`), `CONTIGUOUS` or a huge flag |
//! | | `AlreadyExists`, `NoMemory` | as `mmap` (object pages come in on faults; `POPULATE` faults them in best effort, as Linux) |
//! | [`AddrSpace::mmap_backend`] | `InvalidInput` | as `mmap`; and any flag but `FIXED`/`FIXED_NOREPLACE` |
//! | | `NoMemory` | as `mmap`, or the backend's `map` failed (nothing left mapped; with `FIXED` over existing areas the old mapping is gone if the failure was the backend's own, not a page-table frame) |
//! | [`AddrSpace::mremap`] | `InvalidInput` | `old_addr` unaligned; old or new length 0 or overflowing; unknown flags; `FIXED` without `MAYMOVE`; `FIXED` without a `new_addr`, with an unaligned one, or a new range not inside the window; old and new ranges overlapping (`FIXED`); old range not inside the window |
//! | | `BadAddress` | the old range is not inside one area (a hole, or two areas); growing an area whose backend cannot grow (linear, contiguous: Linux's `EFAULT`) |
//! | | `NoMemory` | growing with no room after the area and no `MAYMOVE`; no free range for the move; out of frames (page tables for the move, an eager tail): nothing changed, except that a `FIXED` destination was already unmapped if an eager tail then runs out of data frames |
//! | [`AddrSpace::msync`] | `InvalidInput` | unknown flags, `ASYNC` with `SYNC`; unaligned addr, len 0 or overflowing, range not inside the window |
//! | | `NoMemory` | a page of the range is not covered by an area (Linux's `ENOMEM`; nothing written) |
//! | | `Io` | an object's pager failed to write a page (the pages written before it are clean) |
//! | [`AddrSpace::map_phys`] | `InvalidInput` | unaligned `paddr`, len 0, overflow or invalid physical range, bad `prot` |
//! | | `NoMemory` | no free range in the window, or no page-table frame |
//! | [`AddrSpace::translate`] | `BadAddress` | nothing mapped at `va` |
//! | [`AddrSpace::handle_page_fault`] | [`FaultError::NoArea`] (`BadAddress`) | no area covers `va` |
//! | | [`FaultError::Denied`] (`PermissionDenied`) | the area's current flags forbid the access (or the PTE disagrees with them) |
//! | | [`FaultError::NoMemory`] (`NoMemory`) | no frame for the page or its tables (nothing leaked); in a huge area only if no 4K frame is free either |
//! | | [`FaultError::PastEnd`] (`OutOfRange`) | the page lies past the end of the object the area maps (Linux's `SIGBUS`) |
//! | | [`FaultError::Io`] (`Io`) | the object's pager failed to read the page |
//!
//! Every error leaves the areas, the page table and the frame count exactly as
//! they were (the host tests compare the full area list, every page-table
//! leaf with its frame, size and flags, the page-table frames and the frame
//! counts). Kernel areas (outside the window) can only be reached through the
//! kernel calls.
//!
//! `NoMemory` means frames ran out, except where the table says otherwise (a
//! page of an `mprotect` not covered by an area, as POSIX has it; no free
//! range for a placement). A page-table call that fails for another reason
//! (a map over a present leaf, an unaligned or untranslated address, flags
//! without access, a shared root slot; an unmap or protect whose edges were
//! split first) cannot happen: every argument is checked before, and the
//! crate's invariants rule the rest out (`backend/mod.rs` says why, case by
//! case). Such a failure is a broken invariant (below), never folded into
//! another error.
//!
//! # Broken invariants
//! A broken invariant stops the kernel, in every build: the check panics with
//! a message that names the invariant (`invariant.rs`). No input reaches such
//! a check: bad arguments are refused with an error first, so a panic here is
//! a bug in this crate (or in a `PagingHandler` that breaks its contract,
//! e.g. hands out unaligned or out-of-range frames). We stop rather than log
//! and go on because the state is then unknown: the page table and the area
//! set may disagree, and going on could leave a stale writable mapping, hand
//! one frame to two owners, or free a frame still mapped: memory corruption
//! and a security hole, not a degraded service. One policy for every crate:
//! `frames` panics on a bad free in every build, `paging` refuses bad
//! arguments with errors and leaves the judgement of a failed call to its
//! caller (here, this section). A check whose only purpose is to catch a bug
//! and that costs real work may run in debug builds only (`debug_assert!`),
//! but a broken invariant that any build *detects* is never logged and
//! ignored.
//!
//! # Differences from Linux
//! - `Prot::WRITE` or `Prot::EXEC` without `READ` is `InvalidInput` (Linux
//!   maps them readable anyway); see [`Prot`].
//! - `mmap` is anonymous (`MAP_ANONYMOUS` implied), private by default;
//!   objects are mapped with `mmap_object` (no file descriptors). Unknown
//!   `flags` bits are `InvalidInput` (Linux ignores unknown bits unless
//!   `MAP_SHARED_VALIDATE`).
//! - A private mapping's first write to a page that the area alone holds
//!   takes the object's frame instead of copying it.
//! - `mremap` with an old length of 0 is `InvalidInput` (Linux duplicates a
//!   shared mapping). `msync` with `MS_ASYNC` writes before it returns, as
//!   `MS_SYNC` (there is no writeback thread); with a length of 0 it is
//!   `InvalidInput`, as every call here (Linux returns 0).
//! - Placement: a free, aligned hint inside the window is used as is; otherwise
//!   the *lowest* free range of the window (Linux searches top-down below
//!   `mmap_base`). App mappings never leave the window.
//! - A length that overflows when rounded up is `InvalidInput` (Linux: `ENOMEM`).
//! - `MAP_POPULATE` fails with `NoMemory` and rolls back when frames run out
//!   (Linux populates best-effort and still succeeds). With `PROT_NONE` it
//!   populates nothing and the area stays lazy (as in Linux).
//! - `mprotect` with length 0 is `InvalidInput` (Linux returns success); its
//!   `NoMemory` for unmapped pages changes nothing (Linux may have changed the
//!   areas before the hole).
//! - `munmap`/`mprotect` ranges outside the window are `InvalidInput`.
//! - `CONTIGUOUS` is Tessera's own flag (no Linux equivalent).
//! - `HUGE_2M`/`HUGE_1G` stand for Linux's `MAP_HUGETLB | MAP_HUGE_2MB/1GB`, but
//!   take frames from the ordinary frame allocator (no reserved pool), fall back
//!   to 4K frames when no aligned run is free (Linux fails the fault with
//!   `SIGBUS`), and allow a partial `munmap`/`mprotect` (Linux requires
//!   hugetlb-aligned ranges): the huge page is split.
#![no_std]

extern crate alloc;

mod area;
mod areas;
mod backend;
mod backends;
mod error;
mod flags;
mod gaps;
mod invariant;
mod lock;
pub mod object;
mod space;

pub use area::{AreaInfo, AreaKind, Populate};
pub use backend::{
    Backend, Fault, FaultAction, FaultRefusal, Mapped, Meta, PageTable, Pages, Release, Removed,
};
pub use backends::{Alloc, Contiguous, Linear, ObjectMapping};
pub use error::{FaultError, NoMemory};
pub use flags::{MmapFlags, Prot};
pub use object::{AnonPager, BytesPager, MemObject, ObjectError, Pager, PagerError};
pub use page_table_entry::{GenericPTE, MappingFlags};
pub use page_table_multiarch::{PagingHandler, PagingMetaData};
pub use paging::{Audit, LeafSize};
pub use space::{AddrSpace, CONTIGUOUS_MAX, MmStats, MsyncFlags, RemapFlags, Translation};
