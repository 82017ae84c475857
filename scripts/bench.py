#!/usr/bin/env python3
"""Runs every Tessera benchmark, prints one report and writes it to docs/BENCHMARKS.md.

What it runs (see docs/BENCHMARKS.md, "How it is measured"):
  1. host, criterion: `cargo bench -p hostbench` (area-set scaling vs memory_set 0.4.1,
     mmap/touch/munmap life cycle) and `cargo bench -p paging --bench paging` (our page table
     vs page_table_multiarch's PageTable64), built in target/bench-host without the
     all-formats rustc wrapper (see `host_dir`); results from
     target/bench-host/criterion/**/new/estimates.json (median), only files written by this run;
  2. host, callgrind: instructions per lazy fault (benches/src/bin/faultcount.rs);
  3. host: page-table frames (benches/src/bin/ptmem.rs);
  4. QEMU: apps/bench built with its `full` feature on every board of configs/platforms/,
     several boots, medians of its `bench:` lines.

Usage: scripts/bench.py [--out FILE] [--skip-host] [--skip-qemu] [--qemu-runs N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qemu  # noqa: E402  (the board/QEMU helpers of scripts/qemu.py)

ROOT = qemu.ROOT
SIZES = (1_000, 10_000, 100_000)
AREA_OPS = (
    ("area_mmap", "mmap (1 page into a hole)"),
    ("area_mmap_anywhere", "mmap without address, 8 pages (first fit past every area)"),
    ("area_munmap_split", "munmap 1 page mid-area (split)"),
    ("area_mprotect_split", "mprotect 1 page mid-area (split)"),
    ("area_lookup", "area lookup, scrambled order"),
    ("area_lookup_seq", "area lookup, address order"),
    ("area_lazy_fault", "lazy fault (lookup + frame + PTE)"),
)
FAULT_TARGET = 1500
SCALING_TARGET = 2.0
FAULTS = 2000


def target_dir() -> Path:
    d = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return d if d.is_absolute() else ROOT / d


def host_dir() -> Path:
    """Target dir of the host benchmarks: built without the workspace's all-formats rustc
    wrapper (.cargo/config.toml), which adds `--cfg docsrs` to paging and page_table_entry
    for paging's tests; that changes their code generation (unmap of a sparse 64 GiB:
    9.5 us with it, 7.5 us without, the same instructions), and kernels are built without it."""
    return target_dir() / "bench-host"


def host_env() -> dict[str, str]:
    return {**os.environ, "RUSTC_WRAPPER": "", "CARGO_TARGET_DIR": str(host_dir())}


def run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True,
        quiet: bool = False) -> subprocess.CompletedProcess:
    print("+ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not quiet or p.returncode != 0:
        sys.stdout.write(p.stdout)
    if check and p.returncode != 0:
        raise SystemExit(f"bench.py: failed ({p.returncode}): {' '.join(cmd)}")
    return p


# ---------------------------------------------------------------------------------------------
# Machine


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "-V"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    try:
        q = subprocess.run([qemu.qemu_binary(qemu.all_boards()[0].binary), "--version"],
                           capture_output=True, text=True).stdout.splitlines()[0]
    except (SystemExit, IndexError, OSError):
        q = "not found"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "rustc": rustc,
        "qemu": q,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ---------------------------------------------------------------------------------------------
# Criterion


def criterion_results(since: float) -> dict[tuple[str, str, str], float]:
    """(group, function, value) -> median ns, for estimates written after `since`."""
    out: dict[tuple[str, str, str], float] = {}
    base = host_dir() / "criterion"
    for est in base.glob("**/new/estimates.json"):
        if est.stat().st_mtime < since:
            continue
        meta = est.parent / "benchmark.json"
        try:
            b = json.loads(meta.read_text())
            e = json.loads(est.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        key = (b.get("group_id") or "", b.get("function_id") or "", b.get("value_str") or "")
        out[key] = float(e["median"]["point_estimate"])
    return out


def host_criterion(res: dict) -> None:
    start = time.time() - 1
    run(["cargo", "bench", "-p", "hostbench", "--bench", "areas", "--bench", "lifecycle"],
        env=host_env())
    paging_out = ""
    if (ROOT / "modules" / "paging" / "benches").is_dir():
        p = run(["cargo", "bench", "-p", "paging", "--bench", "paging"], env=host_env(),
                check=False)
        paging_out = p.stdout
        if p.returncode != 0:
            res["notes"].append(f"`cargo bench -p paging --bench paging` failed (status {p.returncode}).")
    res["criterion"] = criterion_results(start)
    res["paging_ratio_lines"] = [l.strip() for l in paging_out.splitlines() if "RATIO" in l]


# ---------------------------------------------------------------------------------------------
# callgrind


def annotate(path: Path) -> tuple[int, int]:
    """(total Ir, Ir inside memset functions) of a callgrind output file."""
    p = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(path)],
                       capture_output=True, text=True, check=True)
    total = memset = 0
    for line in p.stdout.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)$", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        what = m.group(2)
        if "PROGRAM TOTALS" in what:
            total = n
        elif "memset" in what:
            memset += n
    return total, memset


def callgrind(res: dict) -> None:
    run(["cargo", "build", "--release", "-p", "hostbench", "--bin", "faultcount"],
        env=host_env(), quiet=True)
    exe = host_dir() / "release" / "faultcount"
    with tempfile.TemporaryDirectory() as tmp:
        def count(n: int, toggle: bool) -> tuple[int, int]:
            out = Path(tmp) / f"cg.{n}.{int(toggle)}"
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            if toggle:
                cmd.append("--toggle-collect=tessera_bench_fault_one")
            run(cmd + [str(exe), str(n)], quiet=True)
            return annotate(out)

        total, zero = count(FAULTS, True)
        res["fault_instr"] = (total - zero) / FAULTS
        res["fault_zero_instr"] = zero / FAULTS
        (t1, z1), (t0, z0) = count(FAULTS, False), count(0, False)
        res["fault_instr_diff"] = ((t1 - t0) - (z1 - z0)) / FAULTS


# ---------------------------------------------------------------------------------------------
# Page-table memory


def ptmem(res: dict) -> None:
    run(["cargo", "build", "--release", "-p", "hostbench", "--bin", "ptmem"], env=host_env(),
        quiet=True)
    p = run([str(host_dir() / "release" / "ptmem")])
    res["ptmem"] = dict(re.findall(r"ptmem: (\w+)=([\d.]+)", p.stdout))


# ---------------------------------------------------------------------------------------------
# QEMU


def qemu_boards(res: dict, runs: int, mem: str) -> None:
    res["qemu"] = {}
    for board in qemu.all_boards():
        env = qemu.build_env(board, mem, "1", "warn")
        cmd = ["cargo", "build", "-p", "bench", "--target", board.target, "--release",
               "--features", "full"]
        b = run(cmd, env=env, check=False, quiet=True)
        if b.returncode != 0:
            res["qemu"][board.platform] = {"error": "build failed"}
            continue
        elf = qemu.elf_path(board, "bench", "release")
        samples: dict[str, list[str]] = {}
        error = None
        for _ in range(runs):
            status, out, secs = qemu.run_captured(qemu.qemu_command(board, elf, mem, "1"), 300)
            lines = qemu.clean_output(out)
            print(f"  {board.platform}: status {status} in {secs:.1f}s", flush=True)
            if status != board.pass_status or not any(l.startswith("bench: ok") for l in lines):
                error = f"run failed (status {status}): " + " | ".join(lines[-3:])
                break
            for line in lines:
                m = re.match(r"bench: (\w+)=(\S+)", line)
                if m:
                    samples.setdefault(m.group(1), []).append(m.group(2))
        if error:
            res["qemu"][board.platform] = {"error": error}
            continue
        r: dict[str, str] = {}
        for k, vs in samples.items():
            try:
                r[k] = f"{statistics.median(float(v) for v in vs):g}"
            except ValueError:
                r[k] = vs[0]
        r["runs"] = str(runs)
        res["qemu"][board.platform] = r


# ---------------------------------------------------------------------------------------------
# Report


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def fmt_x(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.3f}x" if r < 0.1 else f"{r:.2f}x"


def report(res: dict) -> str:
    m = res["machine"]
    crit = res.get("criterion", {})
    o: list[str] = []
    o.append("# Benchmarks")
    o.append("")
    o.append("Written by `make bench` (`scripts/bench.py`); do not edit by hand. Figures are medians;")
    o.append("every ratio compares two things measured side by side in the same run.")
    o.append("")
    o.append(f"- Machine: {m['cpu']}, {m['cores']} cores, {m['os']}")
    o.append(f"- Toolchain: {m['rustc']}; QEMU: {m['qemu']}")
    o.append(f"- Date: {m['date']}")
    o.append("")

    if crit:
        o.append("## Area-set scaling (host, time per operation)")
        o.append("")
        o.append("`tessera` is `mm::AddrSpace` (x86_64 page-table format, tracking test handler);")
        o.append("`memory_set` is memory_set 0.4.1 used directly with a backend that does nothing.")
        o.append(f"Target: tessera's cost at 100k areas within {SCALING_TARGET:g}x of its cost at 1k.")
        o.append("")
        o.append("| operation | impl | 1k areas | 10k | 100k | 100k / 1k | tessera / memory_set at 100k |")
        o.append("|---|---|---:|---:|---:|---:|---:|")
        for group, label in AREA_OPS:
            for impl in ("tessera", "memory_set"):
                v = [crit.get((group, impl, str(n))) for n in SIZES]
                if all(x is None for x in v):
                    continue
                scale = v[2] / v[0] if v[0] and v[2] else None
                verdict = ""
                if impl == "tessera" and scale is not None:
                    verdict = " (met)" if scale <= SCALING_TARGET else " (**missed**)"
                anchor = crit.get((group, "memory_set", str(SIZES[2])))
                vs = fmt_x(v[2] / anchor) if impl == "tessera" and anchor and v[2] else ""
                o.append(f"| {label} | {impl} | {fmt_ns(v[0])} | {fmt_ns(v[1])} | {fmt_ns(v[2])} "
                         f"| {fmt_x(scale)}{verdict} | {vs} |")
        o.append("")

    if "fault_instr" in res:
        ok = "met" if res["fault_instr"] < FAULT_TARGET else "**missed**"
        o.append("## Fault path (host, callgrind, instructions per lazy fault)")
        o.append("")
        o.append(f"Target: under {FAULT_TARGET} instructions per fault, frame zeroing excluded "
                 f"({FAULTS} faults, mock frame handler).")
        o.append("")
        o.append("| method | instructions / fault | zeroing (excluded) / fault | target |")
        o.append("|---|---:|---:|---|")
        o.append(f"| collected inside `handle_page_fault` only, minus `memset` | "
                 f"{res['fault_instr']:.0f} | {res['fault_zero_instr']:.0f} | {ok} |")
        o.append(f"| whole program, {FAULTS} faults minus 0 faults, minus `memset` | "
                 f"{res['fault_instr_diff']:.0f} | | |")
        o.append("")

    if any(k[0] == "lifecycle" for k in crit):
        o.append("## mmap + touch every page + munmap (host)")
        o.append("")
        o.append("| pages | lazy (total) | populate (total) | lazy / page | populate / page | lazy / populate |")
        o.append("|---:|---:|---:|---:|---:|---:|")
        for pages in (1, 16, 256):
            lz = crit.get(("lifecycle", "lazy", str(pages)))
            po = crit.get(("lifecycle", "populate", str(pages)))
            ratio = lz / po if lz and po else None
            o.append(f"| {pages} | {fmt_ns(lz)} | {fmt_ns(po)} | {fmt_ns(lz and lz / pages)} "
                     f"| {fmt_ns(po and po / pages)} | {fmt_x(ratio)} |")
        o.append("")

    paging = sorted({k[0] for k in crit if k[1] in ("ours", "PageTable64")})
    if paging:
        o.append("## Page-table layer (host, `cargo bench -p paging`)")
        o.append("")
        o.append("| case | ours (`paging`) | PageTable64 | ours / PageTable64 |")
        o.append("|---|---:|---:|---:|")
        for g in paging:
            ours = crit.get((g, "ours", ""))
            theirs = crit.get((g, "PageTable64", ""))
            ratio = ours / theirs if ours and theirs else None
            o.append(f"| {g} | {fmt_ns(ours)} | {fmt_ns(theirs)} | {fmt_x(ratio)} |")
        o.append("")
    if res.get("paging_ratio_lines"):
        o.append("The bench's own ratio lines (medians of every timed iteration):")
        o.append("")
        o.append("```")
        o.extend(res["paging_ratio_lines"])
        o.append("```")
        o.append("")

    pt = res.get("ptmem")
    if pt:
        o.append("## Page-table memory (host, frames)")
        o.append("")
        o.append("| measure | tessera `mm` | PageTable64 |")
        o.append("|---|---:|---:|")
        for key, label in (
            ("linear_4k_tables_per_gib", "tables per GiB of linear map, 4K pages"),
            ("linear_huge2m_tables_per_gib", "tables per GiB of linear map, huge (2M-aligned)"),
            ("linear_huge1g_tables_per_gib", "tables per GiB of linear map, huge (1G-aligned)"),
            ("random_mapped_tables", "tables with 10,000 random regions mapped"),
            ("random_left_tables", "tables left after unmapping them all"),
        ):
            o.append(f"| {label} | {pt.get('mm_' + key, '-')} | {pt.get('pt64_' + key, '-')} |")
        o.append("")
        o.append("Root table excluded. The linear maps are 4 GiB; random regions are 1-16 pages at")
        o.append("random addresses of a 64 GiB window (fixed seed).")
        o.append("")

    q = res.get("qemu")
    if q:
        boards = sorted(q)
        rows = (
            ("counter", "cycle counter (Hz)"),
            ("lazy_fault_cycles", "lazy fault (ticks)"),
            ("lazy_fault_us", "lazy fault (µs of TCG time)"),
            ("populate_page_cycles", "mmap(POPULATE) per page (ticks)"),
            ("lazy_cycle_page_cycles", "mmap + touch all + munmap, lazy, per page (ticks)"),
            ("populate_cycle_page_cycles", "mmap + touch all + munmap, populate, per page (ticks)"),
            ("lazy_vs_populate_ratio", "lazy / populate, same work"),
            ("fault_vs_populate_page", "lazy fault / populated page"),
            ("mmap_munmap_cycles", "mmap + munmap pair, 1 page (ticks)"),
            ("mprotect_split_cycles", "mprotect 1 page in a 1000-page area (ticks)"),
            ("runs", "QEMU boots (median over them)"),
        )
        o.append("## QEMU (TCG), `apps/bench` on every board")
        o.append("")
        o.append("Ticks of each board's counter under QEMU's TCG emulation: the absolute figures are")
        o.append("emulation figures, not hardware ones; compare ratios and boards' own rows.")
        o.append("")
        o.append("| measure | " + " | ".join(boards) + " |")
        o.append("|---|" + "---:|" * len(boards))
        for b in boards:
            r = q[b]
            try:
                hz = float(r["counter"].rstrip("Hz"))
                r["lazy_fault_us"] = f"{float(r['lazy_fault_cycles']) / hz * 1e6:.2f}"
            except (KeyError, ValueError, ZeroDivisionError):
                pass
            try:
                r["fault_vs_populate_page"] = (
                    f"{float(r['lazy_fault_cycles']) / float(r['populate_page_cycles']):.2f}")
            except (KeyError, ValueError, ZeroDivisionError):
                pass
        for key, label in rows:
            cells = []
            for b in boards:
                r = q[b]
                cells.append(r.get(key, "-") if "error" not in r else "failed")
            o.append(f"| {label} | " + " | ".join(cells) + " |")
        for b in boards:
            if "error" in q[b]:
                o.append("")
                o.append(f"{b}: {q[b]['error']}")
        o.append("")

    if res["notes"]:
        o.append("## Notes")
        o.append("")
        o.extend(f"- {n}" for n in res["notes"])
        o.append("")

    o.append(HOW)
    return "\n".join(o)


HOW = """## How it is measured

- **Area-set scaling** (`benches/benches/areas.rs`): `n` areas of 4 pages, 8 pages apart (a hole
  between neighbours, so nothing merges); every 64th area has one page faulted in so the leaf
  page tables stay allocated. Operations hit areas in a scrambled order (a prime stride), run
  in batches of 64 that are timed, then undone outside the timed part, so the set keeps `n`
  areas. The same layout and operations are run on memory_set 0.4.1 with a do-nothing
  backend. Criterion, flat sampling, 10 samples, 1 s per benchmark; the figure is the median
  sample. At 100k areas the set no longer fits in the CPU caches: a lookup in scrambled order
  is bound by cache misses more than by the number of comparisons, which is why the address-order
  lookup is shown next to it. "mmap without address" asks for 8 pages, more than any hole of the
  layout, so first fit must get past all `n` areas: tessera through its free-gap index
  (`modules/mm/src/gaps.rs`), memory_set through `find_free_area` followed by `map`; each batch
  of 64 placements is undone by one munmap above the layout.
- **Fault path** (`benches/src/bin/faultcount.rs`): one lazy area of 2000 pages, a write fault
  on each through an unmangled never-inlined wrapper of `handle_page_fault`, frames from a
  free-list mock handler filled up front. `valgrind --tool=callgrind
  --toggle-collect=tessera_bench_fault_one` counts only inside the wrapper; the exclusive cost
  of `memset` (zeroing the data frame, and the new leaf table every 512 faults) is
  subtracted; divided by the number of faults. The second row counts the whole program
  with 2000 and with 0 faults and subtracts.
- **Life cycle** (`benches/benches/lifecycle.rs`): `mmap(None)`, then per page a write fault
  (lazy only) and a translated one-byte store (both), then `munmap`; free-list mock handler;
  a populated page elsewhere in the same 2 MiB keeps the leaf table.
- **Page-table layer**: `cargo bench -p paging --bench paging` (owned by the paging module);
  the table reads criterion's medians, its ratio lines are printed as the bench printed them.
- Every host benchmark is built in `target/bench-host` without the workspace's all-formats
  rustc wrapper: it adds `--cfg docsrs` to `paging` and `page_table_entry` so that paging's
  tests see every PTE format, and that changes their code generation (a sparse 64 GiB unmap
  took 9.5 us with it and 7.5 us without, for the same instruction count); kernels are built
  without it.
- **Page-table memory** (`benches/src/bin/ptmem.rs`): frame counts, deterministic.
- **QEMU** (`apps/bench`, feature `full`): each measurement once to warm up, then 11 times
  (21 for mprotect); the app prints medians, and the table shows the median over the boots.
  Without `full` (as `make test` builds it) the counts are small and only the output's shape
  is checked.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--skip-host", action="store_true")
    ap.add_argument("--skip-qemu", action="store_true")
    ap.add_argument("--qemu-runs", type=int, default=3)
    ap.add_argument("--mem", default="128M")
    a = ap.parse_args()

    started = time.monotonic()
    res: dict = {"machine": machine(), "notes": []}
    if not a.skip_host:
        host_criterion(res)
        callgrind(res)
        ptmem(res)
    if not a.skip_qemu:
        qemu_boards(res, a.qemu_runs, a.mem)
    text = report(res)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print()
    print(text)
    print(f"bench: wrote {out} in {time.monotonic() - started:.0f} s")
    # The report is written either way (failures show as "failed" in it), but a
    # part that failed must not look like a finished benchmark run.
    failed = [b for b, r in res.get("qemu", {}).items() if "error" in r]
    if failed or res["notes"]:
        print(f"bench: INCOMPLETE: failed boards {failed or 'none'}; notes: {res['notes']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
