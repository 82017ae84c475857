#!/usr/bin/env python3
"""Runs every Tessera benchmark, prints one report and writes it to docs/BENCHMARKS.md.

What it runs (see docs/BENCHMARKS.md, "How it is measured"):
  1. host, criterion: `cargo bench -p hostbench` (area-set scaling vs memory_set 0.4.1,
     mmap/touch/munmap life cycle, concurrent lazy faults when benches/benches/faults.rs
     exists, and faults on memory objects and mremap of 1 GiB against a copy when
     benches/benches/objects.rs exists) and `cargo bench -p paging --bench paging` (our page table vs
     page_table_multiarch's PageTable64), built in target/bench-host without the all-formats
     rustc wrapper (see `host_dir`); A/B: each side of a side-by-side bench is its own
     invocation (a criterion filter), the sides alternate over --ab-rounds rounds (A B, B A,
     A B, ...) and the figure is the median over the rounds of criterion's median
     (target/bench-host/criterion/**/new/estimates.json, read after each invocation);
  2. host, callgrind: instructions per lazy fault (benches/src/bin/faultcount.rs), and
     instructions and simulated L1 data misses per area-set operation at 1k-100k areas
     (benches/src/bin/areacount.rs: the figures that do not move from run to run);
  3. host: page-table frames (benches/src/bin/ptmem.rs);
  4. QEMU: apps/bench built with its `full` feature (and SMP=4) on every board of
     configs/platforms/, booted with 1, 2 and 4 CPUs, several boots each (the CPU counts
     alternate), medians of its `bench:` lines;
  5. plots of the rows that scale with something, docs/bench-*.svg next to the report.

Usage: scripts/bench.py [--out FILE] [--skip-host] [--skip-qemu] [--qemu-runs N]
                        [--ab-rounds N] [--smp 1,2,4] [--only BENCH,...]

--only runs just the named host criterion benches (areas, lifecycle, faults, objects,
paging), A/B as in a full run, and nothing else (no callgrind, ptmem or QEMU); it writes
its partial report to target/bench-host/BENCHMARKS-partial.md unless --out is given, so
docs/BENCHMARKS.md keeps the last full run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
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
# Instructions per lazy fault (the backend-trait issue's bound; it was 1500 before).
FAULT_TARGET = 500
SCALING_TARGET = 2.0
FAULTS = 2000
# benches/src/bin/areacount.rs: operations of each kind counted per layout size, and the
# operations (the suffix of their wrapper's name, label).
AREA_COUNT_OPS = 500
AREA_COUNTED = (
    ("lookup", "area lookup, scrambled order"),
    ("mprotect", "mprotect 1 page mid-area (split)"),
    ("munmap", "munmap 1 page mid-area (split)"),
    ("mmap", "mmap into a hole"),
    ("fault", "lazy write fault, another area than the last (frame zeroing excluded)"),
)
# CPU counts the QEMU boards boot with (the kernel is built for the largest).
SMP_COUNTS = (1, 2, 4)
# Concurrent lazy faults on the host (benches/benches/faults.rs): 2 threads / 1 thread.
HOST_FAULTS_TARGET = 1.6
# Criterion settings of the per-side runs of areas.rs and lifecycle.rs (their own: 0.3 s
# warm-up, 1 s measured): shorter, since every side runs once per A/B round.
AB_AREAS_ARGS = ("--warm-up-time", "0.2", "--measurement-time", "0.5")
# benches/benches/objects.rs: mremap of 1 GiB at least this many times faster than copying it.
MREMAP_TARGET = 100.0
# Its two A/B sides (criterion filters, regexes on "group/function"): the references (a lazy
# anonymous fault, the copy of 1 GiB), and what is compared with them.
OBJECTS_SIDES = ("^objects/(fault/anon_|mremap_1g/copy$)",
                 "^objects/(fault/(shared|cow|private)_|mremap_1g/mremap_)")
OBJECT_FAULTS = (
    ("anon_lazy_write", "lazy anonymous write fault (zeroed frame; the reference)"),
    ("shared_read_resident", "MAP_SHARED object, page resident: read fault"),
    ("shared_write_resident", "MAP_SHARED object, page resident: write fault"),
    ("cow_write_after_read", "MAP_PRIVATE object, page read before: write fault (copy-on-write)"),
    ("private_first_write", "MAP_PRIVATE object, first touch a write (copy at once)"),
)
MREMAP_CASES = (
    ("mremap_4k", "4K pages, destination congruent mod 2 MiB"),
    ("mremap_4k_unaligned", "4K pages, destination off by 2 MiB + 4 KiB (worst case)"),
    ("mremap_huge_2m", "HUGE_2M pages, destination congruent mod 2 MiB"),
)
HOST_BENCHES = ("areas", "lifecycle", "faults", "objects", "paging")


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
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "tree": tree(),
    }


def tree() -> str:
    """The commit measured, and whether source files differed from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                              text=True).stdout.rstrip("\n")
    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = [l[3:] for l in git("status", "--porcelain", "--untracked-files=no").splitlines()
             if not l[3:].startswith("docs/")]
    return head + (f" with uncommitted changes to {len(dirty)} file(s)" if dirty else "")


# ---------------------------------------------------------------------------------------------
# Criterion


def criterion_files() -> dict[Path, int]:
    """Every criterion estimate file and its modification time (ns)."""
    base = host_dir() / "criterion"
    return {e: e.stat().st_mtime_ns for e in base.glob("**/new/estimates.json")}


def criterion_results(before: dict[Path, int]) -> dict[tuple[str, str, str], float]:
    """(group, function, value) -> median ns, of the estimates written since `before`
    (a `criterion_files()` snapshot)."""
    out: dict[tuple[str, str, str], float] = {}
    for est, mtime in criterion_files().items():
        if before.get(est) == mtime:
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


def bench_once(cmd: list[str], samples: dict, check: bool = True) -> subprocess.CompletedProcess:
    """One criterion invocation; appends each estimate it wrote to `samples[key]`."""
    before = criterion_files()
    p = run(cmd, env=host_env(), check=check, quiet=True)
    for k, v in criterion_results(before).items():
        samples.setdefault(k, []).append(v)
    return p


def host_criterion(res: dict, rounds: int, only: tuple[str, ...] = HOST_BENCHES) -> None:
    """The side-by-side benches, A/B alternated: each side is one invocation (a criterion
    filter on the function id), the order of the sides flips every round. `only`: the
    benches to run (all of them in a full run)."""
    samples: dict[tuple[str, str, str], list[float]] = {}
    faults_bench = (ROOT / "benches" / "benches" / "faults.rs").is_file()
    objects_bench = (ROOT / "benches" / "benches" / "objects.rs").is_file()
    pairs = []
    if "areas" in only:
        pairs.append((["--bench", "areas"], ("/tessera/", "/memory_set/"), AB_AREAS_ARGS))
    if "lifecycle" in only:
        pairs.append((["--bench", "lifecycle"], ("^lifecycle/lazy/", "^lifecycle/populate/"),
                      AB_AREAS_ARGS))
    if faults_bench and "faults" in only:
        # faults/<pages>/threads/<1|2>; its own settings (linear sampling needs its time).
        pairs.append((["--bench", "faults"], ("/threads/1$", "/threads/2$"), ()))
    if objects_bench and "objects" in only:
        # objects/fault/<case> and objects/mremap_1g/<case>; its own settings.
        pairs.append((["--bench", "objects"], OBJECTS_SIDES, ()))
    # Build everything first, so no round pays for compiling (a part that does not build
    # fails in its rounds, below, as a note).
    if pairs:
        build = [a for bench, _, _ in pairs for a in bench] if set(only) != set(HOST_BENCHES) else []
        run(["cargo", "bench", "-p", "hostbench", *build, "--no-run"], env=host_env(), quiet=True,
            check=not objects_bench or "objects" not in only)
    for r in range(rounds):
        for bench, sides, extra in pairs:
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                p = bench_once(["cargo", "bench", "-p", "hostbench", *bench, "--", side, *extra],
                               samples, check=bench[1] not in ("faults", "objects"))
                if p.returncode != 0:
                    res["notes"].append(f"`cargo bench -p hostbench {' '.join(bench)} -- {side}` "
                                        f"failed (status {p.returncode}).")
    res["host_faults"] = faults_bench
    res["host_objects"] = objects_bench
    paging_lines: list[str] = []
    paging_ab: dict[str, list[tuple[float, float, int]]] = {}
    if (ROOT / "modules" / "paging" / "benches").is_dir() and "paging" in only:
        # The paging bench runs whole per round: criterion's samples (ours then
        # PageTable64, per case), then its own alternated pairs (the `AB` lines).
        for r in range(rounds):
            cmd = ["cargo", "bench", "-p", "paging", "--bench", "paging"]
            p = bench_once(cmd, samples, check=False)
            if p.returncode != 0:
                # Once more (a run was once ended by a SIGTERM from outside); a failed run
                # may have written estimates for some cases: they count as that round's.
                p = bench_once(cmd, samples, check=False)
            if p.returncode != 0:
                res["notes"].append(
                    f"`cargo bench -p paging --bench paging` failed (status {p.returncode}).")
                break
            paging_lines += [f"round {r + 1}: " + l.strip() for l in p.stdout.splitlines()
                             if "RATIO" in l or l.startswith("AB ")]
            for m in re.finditer(r"^AB (.+?): ours_ns (\d+) theirs_ns (\d+) pairs (\d+)",
                                 p.stdout, re.M):
                paging_ab.setdefault(m.group(1), []).append(
                    (float(m.group(2)), float(m.group(3)), int(m.group(4))))
    res["criterion_rounds"] = samples
    res["criterion"] = {k: statistics.median(v) for k, v in samples.items()}
    res["paging_ratio_lines"] = paging_lines
    res["paging_ab"] = paging_ab
    res["ab_rounds"] = rounds


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


def callgrind_totals(path: Path) -> dict[str, int]:
    """Event totals of a callgrind output file ({"Ir": .., "D1mr": .., ...})."""
    events: list[str] = []
    totals: list[int] = []
    for line in path.read_text().splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("totals:"):
            totals = [int(x) for x in line.split()[1:]]
    # Trailing zero counts are left out of the line.
    return {e: (totals[i] if i < len(totals) else 0) for i, e in enumerate(events)}


def area_counts(res: dict) -> None:
    """Instructions and simulated L1 data misses per area-set operation, per layout size."""
    run(["cargo", "build", "--release", "-p", "hostbench", "--bin", "areacount"],
        env=host_env(), quiet=True)
    exe = host_dir() / "release" / "areacount"
    counts: dict[tuple[str, int], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            for op, _ in AREA_COUNTED:
                out = Path(tmp) / f"area.{op}.{n}"
                run(["valgrind", "--tool=callgrind", "--cache-sim=yes",
                     f"--callgrind-out-file={out}",
                     f"--toggle-collect=tessera_bench_area_{op}",
                     str(exe), str(n), str(AREA_COUNT_OPS)], quiet=True)
                t = callgrind_totals(out)
                d1 = t.get("D1mr", 0) + t.get("D1mw", 0)
                if op == "fault":
                    # As faultcount: without zeroing the frame (its misses too).
                    _, zero = annotate(out)
                    counts[(op, n)] = ((t["Ir"] - zero) / AREA_COUNT_OPS, None)
                else:
                    counts[(op, n)] = (t["Ir"] / AREA_COUNT_OPS, d1 / AREA_COUNT_OPS)
    res["area_counts"] = counts


# ---------------------------------------------------------------------------------------------
# Page-table memory


def ptmem(res: dict) -> None:
    run(["cargo", "build", "--release", "-p", "hostbench", "--bin", "ptmem"], env=host_env(),
        quiet=True)
    p = run([str(host_dir() / "release" / "ptmem")])
    res["ptmem"] = dict(re.findall(r"ptmem: (\w+)=([\d.]+)", p.stdout))


# ---------------------------------------------------------------------------------------------
# QEMU


def medians(samples: dict[str, list[str]]) -> dict[str, str]:
    r: dict[str, str] = {}
    for k, vs in samples.items():
        try:
            m = statistics.median(float(v) for v in vs)
        except ValueError:
            r[k] = vs[0]
            continue
        r[k] = f"{m:.0f}" if m.is_integer() else f"{m:g}"
    return r


def qemu_boards(res: dict, runs: int, mem: str, counts: tuple[int, ...]) -> None:
    """Per board: one kernel built for max(counts) CPUs, booted `runs` times with each CPU
    count (the counts alternate: 1 2 4 1 2 4 ...). res["qemu"][board] has the 1-CPU boot's
    rows (the single-CPU table), res["qemu_smp"][board][n] every boot's rows."""
    res["qemu"] = {}
    res["qemu_smp"] = {}
    for board in qemu.all_boards():
        env = qemu.build_env(board, mem, str(max(counts)), "warn")
        cmd = ["cargo", "build", "-p", "bench", "--target", board.target, "--release",
               "--features", "full"]
        b = run(cmd, env=env, check=False, quiet=True)
        if b.returncode != 0:
            res["qemu"][board.platform] = {"error": "build failed"}
            continue
        elf = qemu.elf_path(board, "bench", "release")
        samples: dict[int, dict[str, list[str]]] = {n: {} for n in counts}
        errors: dict[int, str] = {}
        for _ in range(runs):
            for n in counts:
                if n in errors:
                    continue
                status, out, secs = qemu.run_captured(
                    qemu.qemu_command(board, elf, mem, str(n)), 600)
                lines = qemu.clean_output(out)
                print(f"  {board.platform} SMP={n}: status {status} in {secs:.1f}s", flush=True)
                if status != board.pass_status or not any(l.startswith("bench: ok") for l in lines):
                    errors[n] = f"run failed (status {status}): " + " | ".join(lines[-3:])
                    continue
                for line in lines:
                    m = re.match(r"bench: (\w+)=(\S+)", line)
                    if m:
                        samples[n].setdefault(m.group(1), []).append(m.group(2))
        per_n: dict[int, dict[str, str]] = {}
        for n in counts:
            if n in errors:
                per_n[n] = {"error": errors[n]}
            else:
                per_n[n] = medians(samples[n])
                per_n[n]["runs"] = str(runs)
        res["qemu_smp"][board.platform] = per_n
        one = per_n.get(min(counts), {"error": "not booted"})
        res["qemu"][board.platform] = one


# ---------------------------------------------------------------------------------------------
# Plots (plain SVG, no plotting library)

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _num(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:g}G"
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    import math
    if log:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        return [10.0 ** e for e in range(a, b + 1)]
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    if out[-1] < hi:
        out.append(out[-1] + step)
    return out


def svg_panels(path: Path, title: str, panels: list[dict], cols: int = 3) -> None:
    """Writes a grid of line charts. A panel: title, xlabel, ylabel, xs (numbers), optional
    xlabels, logx, logy, series: [(name, ys with None for missing, dashed)]."""
    import math
    pw, ph = 330, 250          # panel size
    ml, mr, mt, mb = 58, 12, 28, 42   # plot margins inside a panel
    legend_h = 14
    rows = (len(panels) + cols - 1) // cols
    cols = min(cols, len(panels))
    nleg = max(len(p["series"]) for p in panels)
    ph_full = ph + nleg * legend_h + 12
    W, H = cols * pw + 10, rows * ph_full + 40
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14" '
         f'font-weight="bold">{_esc(title)}</text>']
    for i, p in enumerate(panels):
        ox, oy = 5 + (i % cols) * pw, 34 + (i // cols) * ph_full
        x0, x1, y0, y1 = ox + ml, ox + pw - mr, oy + mt, oy + ph - mb
        xs = [float(x) for x in p["xs"]]
        logx, logy = p.get("logx", False), p.get("logy", False)
        vals = [v for _, ys, *_ in p["series"] for v in ys if v is not None and (v > 0 or not logy)]
        o.append(f'<text x="{(x0 + x1) / 2}" y="{oy + 16}" text-anchor="middle" '
                 f'font-weight="bold">{_esc(p["title"])}</text>')
        o.append(f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" '
                 f'stroke="#444"/>')
        if not vals:
            o.append(f'<text x="{(x0 + x1) / 2}" y="{(y0 + y1) / 2}" text-anchor="middle">'
                     f'no data</text>')
            continue
        lo, hi = min(vals), max(vals)
        if not logy:
            lo = min(lo, 0.0)
        yt = _ticks(lo, hi, logy)
        ylo, yhi = yt[0], yt[-1]
        if yhi == ylo:
            yhi = ylo + 1
        xlo, xhi = min(xs), max(xs)

        def fx(x: float) -> float:
            if xhi == xlo:
                return (x0 + x1) / 2
            if logx:
                return x0 + 10 + (math.log10(x) - math.log10(xlo)) / (
                    math.log10(xhi) - math.log10(xlo)) * (x1 - x0 - 20)
            return x0 + 10 + (x - xlo) / (xhi - xlo) * (x1 - x0 - 20)

        def fy(y: float) -> float:
            if logy:
                return y1 - (math.log10(y) - math.log10(ylo)) / (
                    math.log10(yhi) - math.log10(ylo)) * (y1 - y0)
            return y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)

        for t in yt:
            y = fy(t)
            o.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#ddd"/>')
            o.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{_num(t)}</text>')
        for x, lab in zip(xs, p.get("xlabels") or [_num(x) for x in xs]):
            X = fx(x)
            o.append(f'<line x1="{X:.1f}" y1="{y1}" x2="{X:.1f}" y2="{y1 + 4}" stroke="#444"/>')
            o.append(f'<text x="{X:.1f}" y="{y1 + 16}" text-anchor="middle">{_esc(lab)}</text>')
        o.append(f'<text x="{(x0 + x1) / 2}" y="{y1 + 32}" text-anchor="middle">'
                 f'{_esc(p["xlabel"])}</text>')
        o.append(f'<text transform="translate({ox + 12},{(y0 + y1) / 2}) rotate(-90)" '
                 f'text-anchor="middle">{_esc(p["ylabel"])}</text>')
        for j, (name, ys, *rest) in enumerate(p["series"]):
            dashed = bool(rest and rest[0])
            color = (rest[1] if len(rest) > 1 and rest[1] else PALETTE[j % len(PALETTE)])
            pts = [(fx(x), fy(y)) for x, y in zip(xs, ys)
                   if y is not None and (y > 0 or not logy)]
            dash = ' stroke-dasharray="5,3"' if dashed else ""
            if len(pts) > 1:
                d = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
                o.append(f'<polyline points="{d}" fill="none" stroke="{color}" '
                         f'stroke-width="1.8"{dash}/>')
            for a, b in pts:
                o.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.8" fill="{color}"/>')
            ly = oy + ph + j * legend_h + 8
            o.append(f'<line x1="{x0}" y1="{ly - 4}" x2="{x0 + 18}" y2="{ly - 4}" '
                     f'stroke="{color}" stroke-width="2"{dash}/>')
            o.append(f'<text x="{x0 + 24}" y="{ly}">{_esc(name)}</text>')
    o.append("</svg>")
    path.write_text("\n".join(o) + "\n")


# ---------------------------------------------------------------------------------------------
# SMP rows and plots

SMP_CALLS = (
    ("munmap_1p", "munmap, 1 page"),
    ("munmap_512p", "munmap, 512 pages"),
    ("mprotect_1p", "mprotect RW→R, 1 page"),
    ("mprotect_512p", "mprotect RW→R, 512 pages"),
)


def fnum(v: str | float | None, nd: int = 2) -> float | None:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def smp_rows(res: dict) -> dict[str, dict[int, dict[str, str]]]:
    """Boards' SMP boots that ran (board -> CPU count -> rows)."""
    out: dict[str, dict[int, dict[str, str]]] = {}
    for b, per_n in sorted(res.get("qemu_smp", {}).items()):
        ok = {n: r for n, r in per_n.items() if "error" not in r and "smp_cpus" in r}
        if ok:
            out[b] = ok
    return out


def hz_of(r: dict[str, str]) -> float | None:
    try:
        return float(r["counter"].rstrip("Hz"))
    except (KeyError, ValueError):
        return None


def smp_verdict(state: str, ipis: dict[int, float]) -> str:
    """At most one IPI per other busy CPU per call; none with the others idle."""
    worst = []
    for n, v in sorted(ipis.items()):
        allowed = (n - 1) if state == "busy" else 0
        if v > allowed + 1e-9:
            worst.append(f"{v:g} at {n} CPUs, allowed {allowed}")
    if not ipis:
        return "-"
    return "met" if not worst else "**missed** (" + "; ".join(worst) + ")"


def smp_report(res: dict, o: list[str], counts: tuple[int, ...]) -> None:
    rows = smp_rows(res)
    if not rows and not res.get("qemu_smp"):
        return
    cols = " | ".join(f"{n} CPU{'s' if n > 1 else ''}" for n in counts)
    align = "---:|" * len(counts)
    o.append("## SMP (QEMU TCG): TLB shootdowns per munmap / mprotect")
    o.append("")
    o.append("`apps/bench` booted with 1, 2 and 4 CPUs. CPU 0 makes the call on a populated")
    o.append("read-write mapping; the other CPUs are either **busy** (each runs a job that keeps")
    o.append("reading the pages of another mapping, so it is in the address space) or **idle**")
    o.append("(no job: out of the address space). IPIs and shootdowns are deltas of")
    o.append("`tessera::smp::tlb_stats()` around the call, averaged over the repetitions.")
    o.append("")
    o.append("Target: at most one IPI per other busy CPU per call, whatever its length (that is,")
    o.append("one shootdown per call), and no IPI to idle CPUs. aarch64-qemu-virt broadcasts TLB")
    o.append("maintenance (`TLBI ...IS`, `TLB_BROADCAST`): it sends no IPIs at all, so only its")
    o.append("shootdown count says anything.")
    o.append("")
    o.append(f"![IPIs per call by CPU count](bench-smp-ipis.svg)")
    o.append("")
    icols = " | ".join(f"IPIs, {n} CPU{'s' if n > 1 else ''}" for n in counts)
    scols = " | ".join(f"shootdowns, {n} CPU{'s' if n > 1 else ''}" for n in counts)
    o.append(f"| board | call | other CPUs | {icols} | {scols} | IPI target |")
    o.append("|---|---|---|" + align + align + "---|")
    for b, per_n in rows.items():
        for state in ("busy", "idle"):
            for key, label in SMP_CALLS:
                ipis = {n: fnum(per_n[n].get(f"smp_{state}_{key}_ipis")) for n in per_n}
                ipis = {n: v for n, v in ipis.items() if v is not None}
                sds = [per_n.get(n, {}).get(f"smp_{state}_{key}_shootdowns", "-") for n in counts]
                ic = [per_n.get(n, {}).get(f"smp_{state}_{key}_ipis", "-") for n in counts]
                o.append(f"| {b} | {label} | {state} | " + " | ".join(ic) + " | "
                         + " | ".join(sds) + f" | {smp_verdict(state, ipis)} |")
    o.append("")
    missed = []
    for b, per_n in rows.items():
        for state in ("busy", "idle"):
            for key, label in SMP_CALLS:
                ipis = {n: fnum(per_n[n].get(f"smp_{state}_{key}_ipis")) for n in per_n}
                ipis = {n: v for n, v in ipis.items() if v is not None}
                sd = [fnum(per_n[n].get(f"smp_{state}_{key}_shootdowns")) for n in per_n]
                many = max((x for x in sd if x is not None), default=0)
                verdict = smp_verdict(state, ipis)
                if "missed" in verdict or many > 1:
                    pages = int(key.split("_")[1].rstrip("p"))
                    each = pages / many if many else 0
                    text = f"{b}: {label}, others {state}: up to {many:g} shootdowns per call"
                    if many:
                        text += f" ({each:g} pages per shootdown)"
                    if "missed" in verdict:
                        text += "; IPIs " + verdict.replace("**missed** ", "")
                    missed.append((text, key.startswith("munmap") and each == 32))
    if missed:
        o.append("More than one shootdown per call (each one is an IPI per busy CPU on the boards")
        o.append("that send IPIs: above target there), or IPIs to idle CPUs:")
        o.append("")
        o.extend(f"- {m}" for m, _ in missed)
        o.append("")
    if any(batch for _, batch in missed):
        o.append("A munmap of an allocated area unmaps its leaves in page-table cursors of at most")
        o.append("`BATCH` (32) leaves each (`modules/mm/src/backend/alloc.rs`) and each cursor's")
        o.append("flush is one shootdown, which fits 32 pages per shootdown; paging's")
        o.append("operation batches (one shootdown per operation) would bring it to one.")
        o.append("")
    if not missed:
        o.append("Every call took at most one shootdown: target met on every board.")
        o.append("")
    o.append("### Ticks per call (median over the repetitions, then over the boots)")
    o.append("")
    o.append("In the board counter's ticks, TCG time in brackets. With busy CPUs a call waits")
    o.append("until every target took the IPI and answered; under TCG that includes the host")
    o.append("scheduling the target's vCPU thread (the busy vCPUs spin, and the host's cores")
    o.append("are shared), so these figures move with the host's load. A large and steady figure")
    o.append("(milliseconds per target, whatever the length) rather points at an interrupt taken")
    o.append("late: compare with the idle rows and with aarch64, which sends no IPIs.")
    o.append("")
    o.append("![Ticks per call by CPU count](bench-smp-cycles.svg)")
    o.append("")
    o.append(f"| board | call | other CPUs | {cols} |")
    o.append("|---|---|---|" + align)
    for b, per_n in rows.items():
        for state in ("busy", "idle"):
            for key, label in SMP_CALLS:
                cells = []
                for n in counts:
                    r = per_n.get(n, {})
                    t, hz = fnum(r.get(f"smp_{state}_{key}_cycles")), hz_of(r)
                    if t is None:
                        cells.append("-")
                    elif hz:
                        us = t / hz * 1e6
                        when = f"{us / 1e3:.1f} ms" if us >= 1e3 else f"{us:.1f} µs"
                        cells.append(f"{t:.0f} ({when})")
                    else:
                        cells.append(f"{t:g}")
                o.append(f"| {b} | {label} | {state} | " + " | ".join(cells) + " |")
    o.append("")
    o.append("### Lazy-fault throughput, several CPUs faulting at once")
    o.append("")
    o.append("Each of `k` CPUs faults its own pages of one lazy area (1024 pages each), all")
    o.append("starting at a barrier; the time is CPU 0's from that barrier to a second one that")
    o.append("every CPU reaches when it is done. Faults per second of TCG time, over all `k`")
    o.append("CPUs; `k / 1` is the speed-up over one CPU faulting alone in the same boot. The")
    o.append("host has " + str(os.cpu_count()) + " cores, shared with other work while this ran:")
    o.append("vCPUs beyond the free host cores cannot fault in parallel.")
    o.append("")
    o.append("![Fault throughput by CPU count](bench-smp-faults.svg)")
    o.append("")
    ks = [k for k in counts]
    o.append("| board | CPUs booted | " + " | ".join(f"{k} faulting" for k in ks) + " | "
             + " | ".join(f"{k} / 1" for k in ks if k > 1) + " |")
    o.append("|---|---:|" + "---:|" * (len(ks) + len([k for k in ks if k > 1])))
    for b, per_n in rows.items():
        for n in sorted(per_n):
            r = per_n[n]
            f = {k: fnum(r.get(f"smp_fault_{k}cpu_per_sec")) for k in ks}
            cells = [f"{f[k]:,.0f}/s" if f[k] else "-" for k in ks]
            ratios = [fmt_x(f[k] / f[1]) if f[k] and f.get(1) else "-" for k in ks if k > 1]
            o.append(f"| {b} | {n} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    o.append("")
    for b, per_n in sorted(res.get("qemu_smp", {}).items()):
        for n, r in sorted(per_n.items()):
            if "error" in r:
                o.append(f"{b} with {n} CPUs: {r['error']}")
                o.append("")


def host_faults_report(res: dict, o: list[str]) -> None:
    if "faults" not in res.get("host_parts", HOST_BENCHES):
        return
    o.append("## Concurrent lazy faults (host, `benches/benches/faults.rs`)")
    o.append("")
    o.append(f"Target: 2 threads faulting one area at least {HOST_FAULTS_TARGET:g}x the fault")
    o.append("throughput of 1 thread.")
    o.append("")
    if not res.get("host_faults"):
        o.append("**Not measured yet**: `benches/benches/faults.rs` does not exist in this tree.")
        o.append("When it does, `make bench` runs it (`cargo bench -p hostbench --bench faults`)")
        o.append("and this section lists its criterion medians and its own ratio lines.")
        o.append("")
        return
    crit = res.get("criterion", {})
    rounds = res.get("criterion_rounds", {})
    by_n: dict[str, dict[str, float]] = {}
    for (g, f, v), t in crit.items():
        if g.startswith("faults/") and f == "threads":
            by_n.setdefault(g.split("/", 1)[1], {})[v] = t
    o.append("| pages | 1 thread | 2 threads | 1 thread / 2 threads | per round | target |")
    o.append("|---:|---:|---:|---:|---|---|")
    for n in sorted(by_n, key=lambda x: int(x) if x.isdigit() else 0):
        one, two = by_n[n].get("1"), by_n[n].get("2")
        ratio = one / two if one and two else None
        per = ", ".join(fmt_x(a / b) for a, b in zip(rounds.get((f"faults/{n}", "threads", "1"), []),
                                                     rounds.get((f"faults/{n}", "threads", "2"), [])))
        ok = "-" if ratio is None else ("met" if ratio >= HOST_FAULTS_TARGET else "**missed**")
        o.append(f"| {n} | {fmt_ns(one)} | {fmt_ns(two)} | {fmt_x(ratio)} | {per} | {ok} |")
    o.append("")
    o.append("Time to fault all `pages` pages of one lazy area (one `&AddrSpace`, disjoint halves")
    o.append("with 2 threads, thread start included); the ratio is the speed-up of 2 threads.")
    o.append(f"The host has {os.cpu_count()} cores, shared with other work while this ran.")
    o.append("")


def objects_report(res: dict, o: list[str]) -> None:
    """Faults on memory objects and mremap of 1 GiB against copying it
    (benches/benches/objects.rs)."""
    if "objects" not in res.get("host_parts", HOST_BENCHES):
        return
    o.append("## Objects and mremap (host, `benches/benches/objects.rs`)")
    o.append("")
    if not res.get("host_objects"):
        o.append("**Not measured**: there was no `benches/benches/objects.rs` when this ran.")
        o.append("")
        return
    crit = res.get("criterion", {})
    rounds = res.get("criterion_rounds", {})

    def per_round(a: tuple[str, str, str], b: tuple[str, str, str]) -> str:
        return ", ".join(fmt_r(x / y) for x, y in zip(rounds.get(a, []), rounds.get(b, [])))

    o.append("Time per page fault (`handle_page_fault`), `PoolHandler` frames, 511 faults per fresh")
    o.append("area (the leaf table kept); the ratio is to the lazy anonymous write fault measured")
    o.append("in the same run (the two sides alternated, see \"How it is measured\").")
    o.append("")
    o.append("| fault | median per fault | / lazy anonymous fault | per round |")
    o.append("|---|---:|---:|---|")
    ref_key = ("objects/fault", "anon_lazy_write", "")
    ref = crit.get(ref_key)
    for fid, label in OBJECT_FAULTS:
        key = ("objects/fault", fid, "")
        v = crit.get(key)
        if fid == "anon_lazy_write":
            o.append(f"| {label} | {fmt_ns(v)} | | |")
        else:
            o.append(f"| {label} | {fmt_ns(v)} | {fmt_x(v / ref if v and ref else None)} "
                     f"| {per_round(key, ref_key)} |")
    one = crit.get(("faults/2048", "threads", "1"))
    if one:
        o.append("")
        o.append(f"For reference, `faults.rs` with 1 thread: {fmt_ns(one / 2048)} per fault (2048")
        o.append("faults, thread start included, `SharedPoolHandler`).")
    o.append("")
    o.append("Moving a populated 1 GiB region with `mremap(.., MAYMOVE + FIXED, Some(other))`")
    o.append(f"against copying 1 GiB. Target: mremap at least {MREMAP_TARGET:g}x faster than the")
    o.append("copy. It is meant for the moves `mremap` makes when it picks the address itself")
    o.append("(congruent modulo 2 MiB); the unaligned row is the worst case, a `FIXED` destination")
    o.append("that is not, shown against the same target.")
    o.append("")
    o.append("| 1 GiB region | median per move | copy of 1 GiB | copy / mremap | per round | target |")
    o.append("|---|---:|---:|---:|---|---|")
    copy_key = ("objects/mremap_1g", "copy", "")
    copy = crit.get(copy_key)
    for fid, label in MREMAP_CASES:
        key = ("objects/mremap_1g", fid, "")
        v = crit.get(key)
        ratio = copy / v if v and copy else None
        ok = "-" if ratio is None else ("met" if ratio >= MREMAP_TARGET else "**missed**")
        o.append(f"| {label} | {fmt_ns(v)} | {fmt_ns(copy)} | {fmt_r(ratio)} "
                 f"| {per_round(copy_key, key)} | {ok} |")
    o.append("")
    o.append("Every iteration moves the region (back and forth between two")
    o.append("addresses). Congruent addresses move each table of 512 4K leaves, or each 2M leaf,")
    o.append("as one entry; the unaligned destination moves all 262,144 PTEs one by one. The copy")
    o.append("is `copy_nonoverlapping` between two host buffers written before.")
    o.append("")


def fmt_r(r: float | None) -> str:
    """A large ratio, with thousands separators."""
    if r is None:
        return "-"
    return f"{r:,.0f}x" if r >= 100 else fmt_x(r)


def plots(res: dict, outdir: Path, counts: tuple[int, ...]) -> list[str]:
    """Writes the SVG plots; returns their file names."""
    written: list[str] = []
    crit = res.get("criterion", {})
    if any(k[0].startswith("area_") for k in crit):
        panels = []
        for group, label in AREA_OPS:
            series = []
            for impl, dashed, color in (("tessera", False, PALETTE[0]),
                                        ("memory_set", True, PALETTE[1])):
                ys = [crit.get((group, impl, str(n))) for n in SIZES]
                if any(y is not None for y in ys):
                    series.append((impl + (" (anchor)" if impl == "memory_set" else ""), ys,
                                   dashed, color))
            if series:
                panels.append(dict(title=label if len(label) < 48 else label[:45] + "...",
                                   xlabel="areas", ylabel="ns per operation", xs=list(SIZES),
                                   xlabels=["1k", "10k", "100k"], logx=True, logy=True,
                                   series=series))
        svg_panels(outdir / "bench-areas.svg",
                   "Area-set scaling (host): tessera vs memory_set 0.4.1, time per operation",
                   panels)
        written.append("bench-areas.svg")
    rows = smp_rows(res)
    if rows:
        ns = list(counts)
        xl = [str(n) for n in ns]
        ipis, cyc, flt = [], [], []
        for b, per_n in rows.items():
            def get(key: str, n: int) -> float | None:
                return fnum(per_n.get(n, {}).get(key))
            # The target first, so that calls on it are drawn over it.
            series = [("target, busy: 1 per other CPU", [n - 1 for n in ns], True, "#999")]
            for j, (key, label) in enumerate(SMP_CALLS):
                series.append((f"busy: {label}", [get(f"smp_busy_{key}_ipis", n) for n in ns],
                               False, PALETTE[j]))
            idle = [max((get(f"smp_idle_{k}_ipis", n) or 0.0) for k, _ in SMP_CALLS)
                    if n in per_n else None for n in ns]
            series.append(("idle: every call (max)", idle, False, PALETTE[5]))
            ipis.append(dict(title=b, xlabel="CPUs", ylabel="IPIs per call", xs=ns, xlabels=xl,
                             series=series))
            series = []
            for j, (key, label) in enumerate(SMP_CALLS):
                for state, dashed in (("busy", False), ("idle", True)):
                    ys = []
                    for n in ns:
                        t, hz = get(f"smp_{state}_{key}_cycles", n), hz_of(per_n.get(n, {}))
                        ys.append(t / hz * 1e6 if t and hz else None)
                    series.append((f"{state}: {label}", ys, dashed, PALETTE[j]))
            cyc.append(dict(title=b, xlabel="CPUs", ylabel="µs of TCG time per call", xs=ns,
                            xlabels=xl, logy=True, series=series))
            series = []
            for j, n in enumerate(sorted(per_n)):
                ys = [get(f"smp_fault_{k}cpu_per_sec", n) if k <= n else None for k in ns]
                series.append((f"booted with {n} CPU{'s' if n > 1 else ''}", ys, False,
                               PALETTE[j]))
            top = max(per_n)
            one = get("smp_fault_1cpu_per_sec", top)
            if one:
                series.append((f"linear from 1 CPU ({top} booted)", [one * k for k in ns], True,
                               "#000"))
            flt.append(dict(title=b, xlabel="CPUs faulting at once", ylabel="faults per second",
                            xs=ns, xlabels=xl, series=series))
        svg_panels(outdir / "bench-smp-ipis.svg",
                   "IPIs per munmap / mprotect by CPU count (QEMU TCG)", ipis)
        svg_panels(outdir / "bench-smp-cycles.svg",
                   "Time per munmap / mprotect by CPU count, others busy (solid) or idle (dashed)",
                   cyc)
        svg_panels(outdir / "bench-smp-faults.svg",
                   "Lazy-fault throughput, disjoint pages of one area (QEMU TCG)", flt)
        written += ["bench-smp-ipis.svg", "bench-smp-cycles.svg", "bench-smp-faults.svg"]
    return written


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
    o.append("every ratio compares two things measured in the same run, the two sides alternating.")
    o.append("")
    o.append(f"- Machine: {m['cpu']}, {m['cores']} cores, {m['os']}")
    o.append(f"- Toolchain: {m['rustc']}; QEMU: {m['qemu']}")
    o.append(f"- Date: {m['date']}")
    if "tree" in m:
        o.append(f"- Tree: {m['tree']}")
    if "load" in m:
        o.append(f"- Host load average when it started (1 / 5 / 15 min): {m['load']}")
    o.append("")

    if any(k[0].startswith("area_") for k in crit):
        o.append("## Area-set scaling (host, time per operation)")
        o.append("")
        o.append("`tessera` is `mm::AddrSpace` (x86_64 page-table format, tracking test handler);")
        o.append("`memory_set` is memory_set 0.4.1 used directly with a backend that does nothing.")
        o.append(f"Target: tessera's cost at 100k areas within {SCALING_TARGET:g}x of its cost at 1k.")
        o.append(f"Sides alternated over {res.get('ab_rounds', 1)} rounds (see \"How it is measured\").")
        o.append("")
        o.append("![Area-set scaling, tessera vs memory_set](bench-areas.svg)")
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

    if "area_counts" in res:
        ac = res["area_counts"]
        o.append("## Area-set operations (host, callgrind: per operation)")
        o.append("")
        o.append(f"Instructions, and L1 data misses of callgrind's cache model, per operation "
                 f"({AREA_COUNT_OPS} of each, scrambled order; `benches/src/bin/areacount.rs`). "
                 "These do not move from run to run as the times above do: compare versions "
                 "of the area set with them.")
        o.append("")
        o.append("| operation | " + " | ".join(f"{n // 1000}k: instr | {n // 1000}k: L1d miss"
                                                for n in SIZES) + " |")
        o.append("|---|" + "---:|---:|" * len(SIZES))
        for op, label in AREA_COUNTED:
            cells = []
            for n in SIZES:
                ir, d1 = ac.get((op, n), (None, None))
                cells += ["-" if ir is None else f"{ir:.0f}", "-" if d1 is None else f"{d1:.2f}"]
            o.append(f"| {label} | " + " | ".join(cells) + " |")
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
        o.append(f"Criterion's medians over {res.get('ab_rounds', 1)} whole runs of the bench (each")
        o.append("case: ours, then PageTable64); the last column has each run's ratio. The")
        o.append("alternated figures follow.")
        o.append("")
        o.append("| case | ours (`paging`) | PageTable64 | ours / PageTable64 | per run |")
        o.append("|---|---:|---:|---:|---|")
        rounds = res.get("criterion_rounds", {})
        for g in paging:
            ours = crit.get((g, "ours", ""))
            theirs = crit.get((g, "PageTable64", ""))
            ratio = ours / theirs if ours and theirs else None
            per = ", ".join(fmt_x(a / b) for a, b in zip(rounds.get((g, "ours", ""), []),
                                                         rounds.get((g, "PageTable64", ""), [])))
            o.append(f"| {g} | {fmt_ns(ours)} | {fmt_ns(theirs)} | {fmt_x(ratio)} | {per} |")
        o.append("")
    ab = res.get("paging_ab") or {}
    if ab:
        o.append("Alternated samples (A B, B A, ... one iteration of each side per pair, in the")
        o.append("same process, after criterion's runs): the medians of each run's pairs, then the")
        o.append("median over the runs. This is the side-by-side figure to quote.")
        o.append("")
        o.append("| case | ours (`paging`) | PageTable64 | ours / PageTable64 | per run | pairs per run |")
        o.append("|---|---:|---:|---:|---|---|")
        for case in sorted(ab):
            runs = ab[case]
            ours = statistics.median(r[0] for r in runs)
            theirs = statistics.median(r[1] for r in runs)
            per = ", ".join(fmt_x(r[0] / r[1]) for r in runs)
            pairs = ", ".join(str(r[2]) for r in runs)
            o.append(f"| {case} | {fmt_ns(ours)} | {fmt_ns(theirs)} | {fmt_x(ours / theirs)} "
                     f"| {per} | {pairs} |")
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
            ("shared_fault_cycles", "fault on a resident shared-object page, read (ticks)"),
            ("shared_vs_lazy_fault", "shared-object fault / lazy fault"),
            ("cow_fault_cycles", "copy-on-write fault, private object mapping (ticks)"),
            ("cow_vs_lazy_fault", "copy-on-write fault / lazy fault"),
            ("runs", "QEMU boots (median over them)"),
        )
        o.append("## QEMU (TCG), `apps/bench` on every board")
        o.append("")
        o.append("The boots with 1 CPU (the kernel is built for 4: see \"How it is measured\").")
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
            for key in ("shared", "cow"):
                try:
                    r[f"{key}_vs_lazy_fault"] = (
                        f"{float(r[f'{key}_fault_cycles']) / float(r['lazy_fault_cycles']):.2f}")
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

    smp_report(res, o, res.get("smp_counts", SMP_COUNTS))
    if "criterion" in res:
        host_faults_report(res, o)
        objects_report(res, o)

    if res["notes"]:
        o.append("## Notes")
        o.append("")
        o.extend(f"- {n}" for n in res["notes"])
        o.append("")

    o.append(HOW)
    return "\n".join(o)


HOW = """## How it is measured

- **A/B alternation** (host, every side-by-side table): the two sides of a comparison never run
  as one block each. `areas.rs` (tessera / memory_set), `lifecycle.rs` (lazy / populate) and
  `faults.rs` (1 thread / 2 threads) run once per side and round, as
  `cargo bench -p hostbench --bench <b> -- <filter>` with a criterion filter on the side's id
  (`/tessera/`, `/memory_set/`, `/threads/1$`, ...), and the order of the sides flips every
  round: A B, B A, A B (`--ab-rounds`, 3 by default; areas and lifecycle with 0.2 s warm-up
  and 0.5 s measurement per benchmark in these runs, faults with its own settings). Each
  figure is the median, over the rounds, of criterion's median of that run; every binary is
  built before the first round. The paging bench (`modules/paging/benches/paging.rs`) runs
  whole once per round: criterion times ours, then PageTable64, for each case (that table
  shows the median over the rounds and each round's ratio), and then the bench itself
  alternates the two sides, one iteration each, the order flipped every pair (A B, B A, ...,
  for 1.5 s, 11 to 401 pairs): the "Alternated samples" table, the figure to quote.
- **Area-set scaling** (`benches/benches/areas.rs`): `n` areas of 4 pages, 8 pages apart (a hole
  between neighbours, so nothing merges); every 64th area has one page faulted in so the leaf
  page tables stay allocated. Operations hit areas in a scrambled order (a prime stride), run
  in batches of 64 that are timed, then undone outside the timed part, so the set keeps `n`
  areas. The same layout and operations are run on memory_set 0.4.1 with a do-nothing
  backend. Criterion, flat sampling, 10 samples, 0.5 s per benchmark (`make bench`'s A/B
  runs; 1 s when run by hand); the figure is the median sample, then the median over the
  rounds. At 100k areas the set no longer fits in the CPU caches: a lookup in scrambled order
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
- **Area-set counts** (`benches/src/bin/areacount.rs`): the scaling layout above, then for
  500 areas of the scrambled walk each operation once through an unmangled never-inlined
  wrapper (`tessera_bench_area_<op>`), undone outside it; `valgrind --tool=callgrind
  --cache-sim=yes --toggle-collect=<wrapper>`, one run per operation and size, totals divided
  by 500. The L1 data misses are callgrind's model of this machine's caches, not hardware
  counters (the VM has none).
- **Life cycle** (`benches/benches/lifecycle.rs`): `mmap(None)`, then per page a write fault
  (lazy only) and a translated one-byte store (both), then `munmap`; free-list mock handler;
  a populated page elsewhere in the same 2 MiB keeps the leaf table.
- **Objects and mremap** (`benches/benches/objects.rs`, A/B sides: the references, i.e. the
  lazy anonymous fault and the 1 GiB copy, against the rest): faults are timed per fault, in
  batches of at most 511 on a fresh area (mapped before the clock, unmapped after it) in a
  2 MiB slot whose last page is populated so the leaf table stays; `PoolHandler` frames. The
  object is `MemObject::anonymous` of 511 pages, all resident through a populated shared
  mapping in another slot; the bench holds the object too, so a private write always
  copies. The copy-on-write case read-faults every page of the batch before the clock. The
  mremap cases populate 1 GiB once (4K pages, or `HUGE_2M`) and time each
  `mremap(.., MAYMOVE | FIXED, Some(other))`, moving the region back and forth; after the
  samples the first and last page must still map their frames. The copy is
  `copy_nonoverlapping` of 1 GiB between two written host buffers (flat sampling, 10
  samples).
- **Page-table layer**: `cargo bench -p paging --bench paging` (owned by the paging module);
  the table reads criterion's medians (median over the rounds), its ratio lines are printed
  as the bench printed them, one set per round.
- Every host benchmark is built in `target/bench-host` without the workspace's all-formats
  rustc wrapper: it adds `--cfg docsrs` to `paging` and `page_table_entry` so that paging's
  tests see every PTE format, and that changes their code generation (a sparse 64 GiB unmap
  took 9.5 us with it and 7.5 us without, for the same instruction count); kernels are built
  without it.
- **Page-table memory** (`benches/src/bin/ptmem.rs`): frame counts, deterministic.
- **QEMU** (`apps/bench`, feature `full`): each measurement once to warm up, then 11 times
  (21 for mprotect); the app prints medians, and the table shows the median over the boots.
  The object faults map a `MemObject::anonymous` of 4096 pages made resident by a shared
  mapping that read every page: a second shared mapping (read-only) is read page by page,
  or a private mapping is read (not timed) and then written page by page (copy-on-write);
  as for the lazy fault, the same loop over the mapped pages is subtracted.
  Without `full` (as `make test` builds it) the counts are small and only the output's shape
  is checked. One kernel per board, built with `SMP=4`, is booted with `-smp 1`, `2` and `4`
  (it runs on the CPUs the firmware lists, at most 4), 3 boots per count, the counts
  alternating (1 2 4 1 2 4 ...); the single-CPU table is the `-smp 1` boots.
- **SMP calls** (`apps/bench/src/smp.rs`): per call, a fresh populated read-write mapping of 1
  or 512 pages; CPU 0 times `mprotect(READ)` of all of it, then `munmap` of all of it (both
  remove or weaken translations, so both must shoot down), reading `tlb_stats()` before and
  after each. Once to warm up, then 9 times (`full`); ticks are medians, IPIs and shootdowns
  means. Idle rows first (no job has run on the other CPUs yet, so none is in the address
  space), then busy rows: `smp::run_on` gives each other CPU a job that reads the first word
  of each page of its own populated 64-page read-only mapping in a loop until an atomic flag
  says stop; CPU 0 waits until every reader has started before the first call.
- **SMP faults**: for `k` = 1, 2, 4 (up to the CPUs booted), a lazy area of `k` x 1024 pages;
  CPUs `0..k` (jobs on `1..k` through `smp::run_on`) meet at a `Barrier`, each stores one byte
  to each of its own 1024 pages, and meet again; CPU 0's ticks between the two barriers,
  median of 5 (after a warm-up), give faults per second over the `k` CPUs. The app checks
  that exactly `k` x 1024 faults were taken.
- **Plots**: `docs/bench-*.svg`, drawn by `scripts/bench.py` itself (plain SVG, no plotting
  library), from the same figures as the tables; the anchor's lines are dashed.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", help="the report (default docs/BENCHMARKS.md)")
    ap.add_argument("--skip-host", action="store_true")
    ap.add_argument("--skip-qemu", action="store_true")
    ap.add_argument("--qemu-runs", type=int, default=3)
    ap.add_argument("--mem", default="128M")
    ap.add_argument("--ab-rounds", type=int, default=3,
                    help="rounds of the A/B alternation of the host side-by-side benches")
    ap.add_argument("--rerender", action="store_true",
                    help="write the report and plots again from the last run's saved results")
    ap.add_argument("--smp", default=",".join(map(str, SMP_COUNTS)),
                    help="CPU counts the QEMU boards boot with (comma-separated)")
    ap.add_argument("--only", metavar="BENCH,...",
                    help="run only these host criterion benches (comma-separated, of: "
                         + ", ".join(HOST_BENCHES) + "), A/B alternated as in a full run;\n"
                         "no callgrind, ptmem or QEMU; the partial report goes to\n"
                         "target/bench-host/BENCHMARKS-partial.md unless --out is given")
    ap.set_defaults(out=None)
    a = ap.parse_args()
    counts = tuple(sorted({int(x) for x in a.smp.split(",") if x.strip()}))
    only = None
    if a.only is not None:
        only = tuple(x.strip() for x in a.only.split(",") if x.strip())
        unknown = [x for x in only if x not in HOST_BENCHES]
        if unknown or not only:
            ap.error(f"--only: unknown bench(es) {unknown}; known: {', '.join(HOST_BENCHES)}")
    if a.out is None:
        a.out = str(host_dir() / "BENCHMARKS-partial.md") if only else str(ROOT / "docs" / "BENCHMARKS.md")

    started = time.monotonic()
    saved = host_dir() / ("bench-results-partial.pickle" if only else "bench-results.pickle")
    if a.rerender:
        res = pickle.loads(saved.read_bytes())
        counts = res.get("smp_counts", counts)
    else:
        res = {"machine": machine(), "notes": [], "smp_counts": counts}
        if only:
            res["host_parts"] = only
            host_criterion(res, max(1, a.ab_rounds), only)
        else:
            if not a.skip_host:
                host_criterion(res, max(1, a.ab_rounds))
                callgrind(res)
                area_counts(res)
                ptmem(res)
            if not a.skip_qemu:
                qemu_boards(res, a.qemu_runs, a.mem, counts)
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(pickle.dumps(res))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    svgs = plots(res, out.parent, counts)
    text = report(res)
    out.write_text(text)
    print()
    print(text)
    print(f"bench: wrote {out} and {', '.join(svgs) or 'no plots'} "
          f"in {time.monotonic() - started:.0f} s")
    # The report is written either way (failures show as "failed" in it), but a
    # part that failed must not look like a finished benchmark run.
    failed = [b for b, r in res.get("qemu", {}).items() if "error" in r]
    failed += [f"{b} SMP={n}" for b, per_n in res.get("qemu_smp", {}).items()
               for n, r in per_n.items() if "error" in r and b not in failed]
    if failed or res["notes"]:
        print(f"bench: INCOMPLETE: failed boards {failed or 'none'}; notes: {res['notes']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
