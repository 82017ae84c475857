#!/usr/bin/env python3
"""Boots Tessera kernels on QEMU and tests the sample apps.

Subcommands:
  resolve   the board that ARCH / PLATFORM / PLAT_CONFIG select (used by the Makefile)
  board     print fields of a board TOML (used by the Makefile)
  boards    list board TOMLs, optionally for one arch
  arches    list the arches (configs/arches.toml)
  targets   list the boards' Rust targets          qemu-binaries  their QEMU binaries
  apps      list app names (apps/<name>/Cargo.toml)
  cmd       print the QEMU command line for a board and an ELF
  run       boot a board + ELF interactively; exit 0 iff QEMU's status is the board's pass-status
  test      build and run every (app, board) pair; check expected lines and exit status
  selftest  check this script's own output matcher

A board is a TOML under configs/platforms/: top-level `arch`, `platform`, `target`, and a
`[qemu]` table with `binary`, `args` (list) and `pass-status` (QEMU's exit status that means
pass; every other status is a failure). configs/arches.toml lists the arches, each with its
default board: with the board files, the one list of arches and boards. `selftest` checks
that the files which cannot read that list (rust-toolchain.toml, .cargo/config.toml,
modules/runtime/{Cargo.toml,src/board.rs}, the workspace members) agree with it.

An app's apps/<name>/expected.txt lists lines its output must contain, in order, each as a
substring of a later output line than the previous one:
  - `[riscv64] text` (or `[riscv64,aarch64] text`) applies only to those arches;
  - `#status: fail` makes the run pass only if QEMU's status is NOT the pass-status (and the
    run did not time out): for apps that must fault on purpose;
  - other lines starting with `#`, and blank lines, are ignored.
Output is cleaned of ANSI escape sequences and carriage returns before matching. A run also
fails if its output contains a Rust panic message ("panicked at"), even one that must fail.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOARDS_DIR = ROOT / "configs" / "platforms"
APPS_DIR = ROOT / "apps"
PRIVATE_BIN = ROOT / ".tools" / "bin"
ARCHES_FILE = ROOT / "configs" / "arches.toml"
TIMEOUT_STATUS = "timeout"
TAIL_LINES = 40


# ---------------------------------------------------------------------------------------------
# Arches and boards


@dataclass
class ArchList:
    """configs/arches.toml: the arches in file order, each with its default board."""
    default_arch: str
    default_board: dict[str, str]

    @staticmethod
    def load(path: Path = ARCHES_FILE) -> "ArchList":
        try:
            with open(path, "rb") as f:
                d = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SystemExit(f"qemu.py: {path}: {e}")
        arches = d.get("arch")
        if not isinstance(arches, dict) or not arches:
            raise SystemExit(f"qemu.py: {path}: no [arch.<name>] tables")
        default_board = {}
        for arch, t in arches.items():
            if not isinstance(t, dict) or not isinstance(t.get("default-board"), str):
                raise SystemExit(f"qemu.py: {path}: [arch.{arch}] needs default-board = \"<board>\"")
            default_board[arch] = t["default-board"]
        default_arch = d.get("default-arch")
        if default_arch not in default_board:
            raise SystemExit(f"qemu.py: {path}: default-arch {default_arch!r} is not one of "
                             f"{', '.join(default_board)}")
        return ArchList(default_arch, default_board)


ARCH_LIST = ArchList.load()
ARCHES = tuple(ARCH_LIST.default_board)


def known_boards() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))


def unknown_arch(arch: str) -> str:
    return f"unknown arch {arch!r}: known arches are {', '.join(ARCHES)} ({ARCHES_FILE.relative_to(ROOT)})"


def unknown_board(name: str) -> str:
    return (f"unknown board {name!r}: known boards are {', '.join(known_boards()) or 'none'} "
            f"({BOARDS_DIR.relative_to(ROOT)}/<board>.toml)")


def board_file(name: str) -> Path:
    """configs/platforms/<name>.toml; an unknown name is an error naming the known ones."""
    p = BOARDS_DIR / f"{name}.toml"
    if not p.is_file():
        raise SystemExit(f"qemu.py: {unknown_board(name)}")
    return p


@dataclass
class Board:
    path: Path
    arch: str
    platform: str
    target: str
    binary: str
    args: list[str]
    pass_status: int

    @staticmethod
    def load(path: str | Path) -> "Board":
        p = Path(path).resolve()
        try:
            with open(p, "rb") as f:
                d = tomllib.load(f)
        except FileNotFoundError:
            raise SystemExit(f"qemu.py: board file not found: {p} "
                             f"(known boards: {', '.join(known_boards()) or 'none'})")
        except tomllib.TOMLDecodeError as e:
            raise SystemExit(f"qemu.py: {p}: {e}")
        try:
            q = d["qemu"]
            b = Board(
                path=p,
                arch=str(d["arch"]),
                platform=str(d["platform"]),
                target=str(d["target"]),
                binary=str(q["binary"]),
                args=[str(a) for a in q["args"]],
                pass_status=int(q["pass-status"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SystemExit(f"qemu.py: {p}: missing or bad key {e}")
        if b.arch not in ARCHES:
            raise SystemExit(f"qemu.py: {p}: {unknown_arch(b.arch)}")
        return b


def resolve(arch: str = "", platform: str = "", plat_config: str = "") -> Board:
    """The board the Makefile's ARCH / PLATFORM / PLAT_CONFIG select: PLAT_CONFIG (a file),
    else PLATFORM (a name), else ARCH's default board, else the default arch's. An unknown
    arch or board, or a board of another arch than ARCH, is an error naming the known ones."""
    if arch and arch not in ARCHES:
        raise SystemExit(f"qemu.py: ARCH={arch}: {unknown_arch(arch)}")
    if plat_config:
        board, given = Board.load(plat_config), f"PLAT_CONFIG={plat_config}"
    elif platform:
        if not (BOARDS_DIR / f"{platform}.toml").is_file():
            raise SystemExit(f"qemu.py: PLATFORM={platform}: {unknown_board(platform)}")
        board, given = Board.load(board_file(platform)), f"PLATFORM={platform}"
    else:
        name = ARCH_LIST.default_board[arch or ARCH_LIST.default_arch]
        if not (BOARDS_DIR / f"{name}.toml").is_file():
            raise SystemExit(f"qemu.py: {ARCHES_FILE.relative_to(ROOT)}: the default board of "
                             f"{arch or ARCH_LIST.default_arch}: {unknown_board(name)}")
        return Board.load(board_file(name))
    if arch and board.arch != arch:
        raise SystemExit(f"qemu.py: {given} is a board for {board.arch}, not for ARCH={arch}")
    return board


def list_problems(root: Path = ROOT) -> list[str]:
    """Where the files that cannot read configs/arches.toml and the board files disagree with
    them, each problem naming its file. Empty when all agree. `root` is the source tree."""
    probs: list[str] = []
    rel = lambda p: str(Path(p).relative_to(root))
    arches_file = root / ARCHES_FILE.relative_to(ROOT)
    boards_dir = root / BOARDS_DIR.relative_to(ROOT)
    arch_list = ArchList.load(arches_file)

    def toml(path: Path) -> dict:
        try:
            with open(path, "rb") as f:
                return tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            probs.append(f"{rel(path)}: {e}")
            return {}

    boards: dict[str, Board] = {}
    for p in sorted(boards_dir.glob("*.toml")):
        try:
            b = Board.load(p)
        except SystemExit as e:
            probs.append(str(e))
            continue
        if p.stem != b.platform:
            probs.append(f"{rel(p)}: platform = {b.platform!r}, but the file is named {p.name}")
        boards[b.platform] = b
    for arch, name in arch_list.default_board.items():
        if name not in boards:
            probs.append(f"{rel(arches_file)}: [arch.{arch}] default-board: {unknown_board(name)}")
        elif boards[name].arch != arch:
            probs.append(f"{rel(arches_file)}: [arch.{arch}] default-board {name!r} is a board "
                         f"for {boards[name].arch}")
    by_arch: dict[str, list[str]] = {}
    for name, b in boards.items():
        by_arch.setdefault(b.arch, []).append(name)
    for arch, names in by_arch.items():
        if len(names) > 1:
            probs.append(f"modules/runtime/src/board.rs: selects one board crate per target_arch, "
                         f"but {arch} has boards {', '.join(names)} (docs/ADDING_A_BOARD.md)")
    targets = sorted({b.target for b in boards.values()})

    # The workspace holds one crate per board: platforms/<board>, named <board>.
    members = toml(root / "Cargo.toml").get("workspace", {}).get("members", [])
    for name in boards:
        crate = root / "platforms" / name / "Cargo.toml"
        if not crate.is_file():
            probs.append(f"{rel(crate)}: missing (board {name} has no crate)")
        elif toml(crate).get("package", {}).get("name") != name:
            probs.append(f"{rel(crate)}: the package must be named {name!r}, as its board")
        if f"platforms/{name}" not in members:
            probs.append(f"Cargo.toml: [workspace] members lacks \"platforms/{name}\"")
    for m in members:
        if m.startswith("platforms/") and m.split("/", 1)[1] not in boards:
            probs.append(f"Cargo.toml: member {m!r} has no board file {rel(boards_dir)}/"
                         f"{m.split('/', 1)[1]}.toml")

    # rust-toolchain.toml: exactly the boards' targets.
    have = toml(root / "rust-toolchain.toml").get("toolchain", {}).get("targets", [])
    if sorted(have) != targets:
        probs.append(f"rust-toolchain.toml: targets = {sorted(have)}, the boards' targets are {targets}")

    # .cargo/config.toml: one [target.<triple>] (the kernel's rustflags) per board target.
    have = [t for t in toml(root / ".cargo" / "config.toml").get("target", {}) if not t.startswith("cfg(")]
    if sorted(have) != targets:
        probs.append(f".cargo/config.toml: [target.<triple>] sections for {sorted(have)}, "
                     f"the boards' targets are {targets}")

    # modules/runtime: one board crate per arch, by target_arch, in Cargo.toml and board.rs.
    want = {arch: names[0] for arch, names in by_arch.items() if len(names) == 1}
    runtime = root / "modules" / "runtime"
    deps: dict[str, list[str]] = {}
    for key, t in toml(runtime / "Cargo.toml").get("target", {}).items():
        m = re.fullmatch(r'cfg\(\s*target_arch\s*=\s*"(\w+)"\s*\)', key)
        if m:
            deps[m.group(1)] = sorted(d for d, v in t.get("dependencies", {}).items()
                                      if isinstance(v, dict) and "platforms/" in str(v.get("path", "")))
    if deps != {arch: [name] for arch, name in want.items()}:
        probs.append(f"modules/runtime/Cargo.toml: board crates by target_arch are {deps}, "
                     f"the board files say {({a: [n] for a, n in want.items()})}")
    text = (runtime / "src" / "board.rs").read_text()
    uses = dict(re.findall(r'#\[cfg\(target_arch\s*=\s*"(\w+)"\)\]\s*pub use (\w+)::\w+ as Current;', text))
    if uses != {arch: name.replace("-", "_") for arch, name in want.items()}:
        probs.append(f"modules/runtime/src/board.rs: `pub use <crate>::.. as Current` by target_arch "
                     f"is {uses}, the board files say "
                     f"{({a: n.replace('-', '_') for a, n in want.items()})}")
    return probs


def all_boards(arch: str | None = None) -> list[Board]:
    boards = [Board.load(p) for p in sorted(BOARDS_DIR.glob("*.toml"))]
    return [b for b in boards if arch is None or b.arch == arch]


def all_apps() -> list[str]:
    return sorted(p.parent.name for p in APPS_DIR.glob("*/Cargo.toml"))


def qemu_binary(name: str) -> str:
    """A system QEMU on PATH, else the private copy from scripts/deps.sh."""
    found = shutil.which(name)
    if found:
        return found
    private = PRIVATE_BIN / name
    if private.is_file() and os.access(private, os.X_OK):
        return str(private)
    raise SystemExit(f"qemu.py: {name} not found on PATH nor in {PRIVATE_BIN}: run `make deps`")


def qemu_command(board: Board, elf: str | Path, mem: str, smp: str, debug: bool = False,
                 extra: list[str] | None = None) -> list[str]:
    cmd = [qemu_binary(board.binary), *board.args, "-m", str(mem), "-smp", str(smp),
           "-kernel", str(elf)]
    if debug:
        cmd += ["-s", "-S"]
    return cmd + list(extra or [])


# ---------------------------------------------------------------------------------------------
# Expected output


_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"          # CSI: ESC [ params final
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: ESC ] ... BEL | ST
    r"|\x1b[ -/]*[0-~]"                 # other escapes: ESC c, ESC ( B, ...
)


def clean_output(text: str) -> list[str]:
    """Output lines without ANSI escapes and carriage returns."""
    text = _ANSI.sub("", text).replace("\r", "")
    return text.split("\n")


@dataclass
class Expected:
    lines: list[str] = field(default_factory=list)
    must_fail: bool = False


_ARCH_PREFIX = re.compile(r"^\[([A-Za-z0-9_,\s]+)\] (.*)$")
_ARCH_LIKE = re.compile(r"^(x86|riscv|rv|aarch|arm|amd64|loongarch)", re.IGNORECASE)


def parse_expected(text: str, arch: str) -> Expected:
    exp = Expected()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip():
            continue
        if line.startswith("#"):
            key, _, val = line[1:].partition(":")
            if key.strip() == "status":
                val = val.strip()
                if val == "fail":
                    exp.must_fail = True
                elif val != "pass":
                    raise ValueError(f"line {n}: unknown status {val!r} (pass or fail)")
            continue
        m = _ARCH_PREFIX.match(line)
        if m:
            arches = [a.strip() for a in m.group(1).split(",")]
            if all(a in ARCHES for a in arches):
                if arch not in arches:
                    continue
                line = m.group(2)
            else:
                # "[ok] done" is an ordinary line; "[riscv] x" is a misspelt arch.
                typo = [a for a in arches if a not in ARCHES and _ARCH_LIKE.match(a)]
                if typo:
                    raise ValueError(f"line {n}: unknown arch {typo[0]!r} (one of {', '.join(ARCHES)})")
        exp.lines.append(line)
    return exp


def find_missing(expected: list[str], output: list[str]) -> str | None:
    """The first expected line not found (in order) in the output, or None if all are."""
    i = 0
    for want in expected:
        while i < len(output) and want not in output[i]:
            i += 1
        if i == len(output):
            return want
        i += 1
    return None


def judge(exp: Expected, output: list[str], status: int | str, pass_status: int) -> str | None:
    """None if the run passes, else why it failed."""
    if status == TIMEOUT_STATUS:
        return "timed out"
    if exp.must_fail:
        if status == pass_status:
            return f"exit status {status} is the pass status, but this app must fail"
    elif status != pass_status:
        return f"exit status {status}, expected {pass_status}"
    # An app that must fail has to fail by the kernel's report, not by a panic.
    for line in output:
        if "panicked at" in line:
            return f"panic: {line.strip()}"
    missing = find_missing(exp.lines, output)
    if missing is not None:
        return f"expected line not found: {missing!r}"
    return None


# ---------------------------------------------------------------------------------------------
# Running


def build_env(board: Board, mem: str, smp: str, log: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TESSERA_PLAT_CONFIG=str(board.path), TESSERA_MEM=str(mem),
               TESSERA_SMP=str(smp), TESSERA_LOG=str(log))
    return env


def elf_path(board: Board, app: str, mode: str) -> Path:
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target_dir.is_absolute():
        target_dir = ROOT / target_dir
    return target_dir / board.target / mode / app


def cargo_build(board: Board, apps: list[str], mode: str, env: dict[str, str]) -> tuple[bool, str]:
    cmd = ["cargo", "build", "--target", board.target]
    if mode == "release":
        cmd.append("--release")
    for a in apps:
        cmd += ["-p", a]
    print(f"build {board.platform}: {' '.join(cmd)}", flush=True)
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode == 0, p.stdout.decode(errors="replace")


def run_captured(cmd: list[str], timeout: float) -> tuple[int | str, str, float]:
    """Runs QEMU with no stdin; returns (status or "timeout", output, seconds)."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        status: int | str = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = p.communicate()
        status = TIMEOUT_STATUS
    return status, out.decode(errors="replace"), time.monotonic() - start


def tail(lines: list[str], n: int = TAIL_LINES) -> str:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return "\n".join("    | " + l for l in lines[-n:])


# ---------------------------------------------------------------------------------------------
# Subcommands


def cmd_resolve(a: argparse.Namespace) -> int:
    b = resolve(a.arch, a.platform, a.plat_config)
    print("ok", b.arch, b.platform, b.target, b.path)
    return 0


def cmd_arches(a: argparse.Namespace) -> int:
    print(" ".join(ARCHES))
    return 0


def cmd_targets(a: argparse.Namespace) -> int:
    print(" ".join(dict.fromkeys(b.target for b in all_boards())))
    return 0


def cmd_qemu_binaries(a: argparse.Namespace) -> int:
    print(" ".join(dict.fromkeys(b.binary for b in all_boards())))
    return 0


def cmd_board(a: argparse.Namespace) -> int:
    b = Board.load(a.board)
    values = {"arch": b.arch, "platform": b.platform, "target": b.target, "binary": b.binary,
              "pass-status": str(b.pass_status), "path": str(b.path)}
    print(" ".join(values[f] for f in a.fields))
    return 0


def cmd_boards(a: argparse.Namespace) -> int:
    for b in all_boards(a.arch or None):
        print(b.path)
    return 0


def cmd_apps(a: argparse.Namespace) -> int:
    print(" ".join(all_apps()))
    return 0


def cmd_cmd(a: argparse.Namespace) -> int:
    b = Board.load(a.board)
    print(shlex.join(qemu_command(b, a.elf, a.mem, a.smp, a.debug, a.extra)))
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    b = Board.load(a.board)
    if not Path(a.elf).is_file():
        raise SystemExit(f"qemu.py: no kernel image at {a.elf}: build it first")
    cmd = qemu_command(b, a.elf, a.mem, a.smp, a.debug, a.extra)
    print(shlex.join(cmd), flush=True)
    if a.debug:
        gdb = "gdb-multiarch" if shutil.which("gdb-multiarch") or b.arch != "x86_64" else "gdb"
        print(f"QEMU waits for a debugger; attach with:\n"
              f"  {gdb} {shlex.quote(str(a.elf))} -ex 'target remote :1234'", flush=True)
    try:
        status = subprocess.call(cmd)
    except KeyboardInterrupt:
        status = -int(signal.SIGINT)
    ok = status == b.pass_status
    print(f"qemu exit status {status}: {'pass' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 1


def cmd_test(a: argparse.Namespace) -> int:
    if a.plat_config:
        boards = [Board.load(a.plat_config)]
    else:
        boards = all_boards(a.arch or None)
    known = all_apps()
    if a.apps:
        apps = [x for x in re.split(r"[,\s]+", a.apps) if x]
        for x in apps:
            if x not in known:
                raise SystemExit(f"qemu.py: no app {x!r} (have: {' '.join(known) or 'none'})")
    else:
        apps = known
    if not boards or not apps:
        print(f"qemu.py: nothing to test: {len(boards)} board(s), {len(apps)} app(s)"
              + (f" for arch {a.arch}" if a.arch else ""), file=sys.stderr)
        return 2

    passed = failed = 0
    results: list[str] = []

    def report(ok: bool, app: str, board: Board, detail: str, body: str = "") -> None:
        nonlocal passed, failed
        line = f"{'PASS' if ok else 'FAIL'}  {app:<16} {board.platform:<22} {detail}"
        print(line, flush=True)
        if body:
            print(body, flush=True)
        results.append(line)
        if ok:
            passed += 1
        else:
            failed += 1

    for board in boards:
        env = build_env(board, a.mem, a.smp, a.log)
        built = set(apps)
        build_log = {}
        if not a.no_build:
            ok, out = cargo_build(board, apps, a.mode, env)
            if not ok:
                # Find out which apps fail to build, so the others still run.
                built = set()
                for app in apps:
                    ok1, out1 = cargo_build(board, [app], a.mode, env) if len(apps) > 1 else (ok, out)
                    if ok1:
                        built.add(app)
                    else:
                        build_log[app] = out1
        seen_errors: dict[tuple[str, ...], str] = {}
        for app in apps:
            if app not in built:
                lines = build_log[app].splitlines()
                key = tuple(l.strip() for l in lines if l.startswith("error"))
                if key and key in seen_errors:
                    report(False, app, board, f"build failed (same errors as {seen_errors[key]})")
                else:
                    seen_errors[key] = app
                    report(False, app, board, "build failed", tail(lines))
                continue
            exp_file = APPS_DIR / app / "expected.txt"
            try:
                exp = parse_expected(exp_file.read_text(), board.arch)
            except FileNotFoundError:
                report(False, app, board, f"missing {exp_file.relative_to(ROOT)}")
                continue
            except ValueError as e:
                report(False, app, board, f"{exp_file.relative_to(ROOT)}: {e}")
                continue
            elf = elf_path(board, app, a.mode)
            if not elf.is_file():
                report(False, app, board, f"no kernel image at {elf}")
                continue
            if a.expect:
                exp.lines[:0] = a.expect
            cmd = qemu_command(board, elf, a.qemu_mem or a.mem, a.qemu_smp or a.smp)
            status, raw, secs = run_captured(cmd, a.timeout)
            out = clean_output(raw)
            why = judge(exp, out, status, board.pass_status)
            if why is None:
                report(True, app, board, f"status {status} ({secs:.2f}s)")
            else:
                body = f"    command: {shlex.join(cmd)}\n    output tail:\n{tail(out)}"
                report(False, app, board, f"{why} ({secs:.2f}s)", body)

    if failed and len(results) > 1:
        print("\nsummary:")
        for line in results:
            print("  " + line)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def cmd_selftest(a: argparse.Namespace) -> int:
    import unittest

    class T(unittest.TestCase):
        def test_ansi_and_cr(self):
            raw = "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\r\nBooting...\r\nhello \x1b[32mworld\x1b[0m\r\n"
            self.assertEqual(clean_output(raw), ["SeaBIOS (version 1.16)", "Booting...", "hello world", ""])

        def test_osc_and_charset(self):
            self.assertEqual(clean_output("\x1b]0;title\x07a\x1b(Bb"), ["ab"])

        def test_in_order_substrings(self):
            out = ["noise", "mmap ok at 0x1000", "x", "munmap ok"]
            self.assertIsNone(find_missing(["mmap ok", "munmap ok"], out))
            self.assertEqual(find_missing(["munmap ok", "mmap ok"], out), "mmap ok")
            self.assertEqual(find_missing(["absent"], out), "absent")
            self.assertIsNone(find_missing([], out))

        def test_each_line_consumes_one_output_line(self):
            self.assertEqual(find_missing(["ok", "ok"], ["ok"]), "ok")
            self.assertIsNone(find_missing(["ok", "ok"], ["ok", "ok"]))

        def test_parse(self):
            text = "# comment\n\nfirst\n[riscv64] rv only\n[x86_64,aarch64] not rv\nlast  \n"
            self.assertEqual(parse_expected(text, "riscv64").lines, ["first", "rv only", "last"])
            self.assertEqual(parse_expected(text, "x86_64").lines, ["first", "not rv", "last"])
            self.assertFalse(parse_expected(text, "riscv64").must_fail)
            self.assertTrue(parse_expected("#status: fail\nfault at", "x86_64").must_fail)
            self.assertTrue(parse_expected("# status: fail", "x86_64").must_fail)
            self.assertFalse(parse_expected("#status: pass", "x86_64").must_fail)
            # "[text]" that is not an arch list is an ordinary line.
            self.assertEqual(parse_expected("[ok] done", "x86_64").lines, ["[ok] done"])
            with self.assertRaises(ValueError):
                parse_expected("#status: maybe", "x86_64")
            with self.assertRaises(ValueError):
                parse_expected("[riscv] typo", "x86_64")

        def test_judge_pass_app(self):
            e = Expected(lines=["done"])
            self.assertIsNone(judge(e, ["done"], 33, 33))
            self.assertIn("exit status 0", judge(e, ["done"], 0, 33))
            self.assertIn("timed out", judge(e, ["done"], TIMEOUT_STATUS, 33))
            self.assertIn("not found", judge(e, ["other"], 33, 33))
            self.assertIn("panic", judge(e, ["done", "panicked at src/main.rs:3:5:"], 33, 33))

        def test_judge_fail_app(self):
            e = Expected(lines=["page fault"], must_fail=True)
            self.assertIsNone(judge(e, ["page fault at 0x0"], 3, 33))
            self.assertIsNone(judge(e, ["page fault at 0x0"], 1, 0))
            self.assertIn("must fail", judge(e, ["page fault at 0x0"], 0, 0))
            self.assertIn("timed out", judge(e, ["page fault at 0x0"], TIMEOUT_STATUS, 0))
            self.assertIn("not found", judge(e, ["nothing"], 1, 0))
            self.assertIn("panic", judge(e, ["page fault at 0x0", "panicked at src/lib.rs:1:1:"], 1, 0))

        def test_board_file(self):
            for p in sorted(BOARDS_DIR.glob("*.toml")):
                b = Board.load(p)
                self.assertEqual(p.stem, b.platform, "file name must be the board name")
                self.assertIn(b.arch, ARCHES)

        def test_one_list_of_arches_and_boards(self):
            probs = list_problems()
            self.assertEqual(probs, [], "\n" + "\n".join(probs))

        def test_each_file_that_cannot_read_the_list_is_checked(self):
            import tempfile
            board = all_boards()[0]
            files = ["Cargo.toml", "rust-toolchain.toml", ".cargo/config.toml",
                     "modules/runtime/Cargo.toml", "modules/runtime/src/board.rs",
                     str(ARCHES_FILE.relative_to(ROOT)),
                     *(str(p.relative_to(ROOT)) for p in BOARDS_DIR.glob("*.toml")),
                     *(str(p.relative_to(ROOT)) for p in (ROOT / "platforms").glob("*/Cargo.toml"))]
            arch_key = f'target_arch = "{board.arch}"'
            cases = [
                ("rust-toolchain.toml", f'"{board.target}"', '"elsewhere-unknown-none"'),
                (".cargo/config.toml", f"[target.{board.target}]", "[target.elsewhere-unknown-none]"),
                ("modules/runtime/Cargo.toml", arch_key, 'target_arch = "elsewhere"'),
                ("modules/runtime/src/board.rs", arch_key, 'target_arch = "elsewhere"'),
                ("Cargo.toml", f'"platforms/{board.platform}",', ""),
                (str(ARCHES_FILE.relative_to(ROOT)), f'default-board = "{board.platform}"',
                 'default-board = "elsewhere-board"'),
            ]
            for path, old, new in cases:
                with self.subTest(path=path), tempfile.TemporaryDirectory() as d:
                    for f in files:
                        (Path(d) / f).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(ROOT / f, Path(d) / f)
                    text = (Path(d) / path).read_text()
                    self.assertIn(old, text, f"the test's edit of {path} no longer applies")
                    (Path(d) / path).write_text(text.replace(old, new, 1))
                    probs = list_problems(Path(d))
                    self.assertTrue(any(p.startswith(path + ":") for p in probs),
                                    f"{path} changed, but no problem names it: {probs}")

        def test_unknown_arch_or_board_names_the_known_ones(self):
            with self.assertRaises(SystemExit) as c:
                resolve(arch="nope")
            for arch in ARCHES:
                self.assertIn(arch, str(c.exception))
            for call in (lambda: resolve(platform="nope"), lambda: board_file("nope")):
                with self.assertRaises(SystemExit) as c:
                    call()
                for name in known_boards():
                    self.assertIn(name, str(c.exception))
            boards = all_boards()
            other = next((b for b in boards if b.arch != boards[0].arch), None)
            if other is not None:
                with self.assertRaises(SystemExit) as c:
                    resolve(arch=boards[0].arch, platform=other.platform)
                self.assertIn(f"not for ARCH={boards[0].arch}", str(c.exception))
            for arch in ARCHES:
                self.assertEqual(resolve(arch=arch).platform, ARCH_LIST.default_board[arch])

        @unittest.skipUnless(shutil.which("make"), "no make")
        def test_make_refuses_an_unknown_arch_or_board(self):
            drop = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARCH", "PLATFORM", "PLAT_CONFIG")
            env = {k: v for k, v in os.environ.items() if k not in drop}

            def make_help(*args: str) -> subprocess.CompletedProcess:
                return subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "help", *args],
                                      env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)

            for arg, known in (("ARCH=nope", ARCHES), ("PLATFORM=nope", known_boards())):
                p = make_help(arg)
                self.assertNotEqual(p.returncode, 0, f"make help {arg} passed")
                for k in known:
                    self.assertIn(k, p.stderr, f"make help {arg}")
            for arch in ARCHES:
                p = make_help(f"ARCH={arch}")
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn(f"{ARCH_LIST.default_board[arch]}.toml", p.stdout)

        def test_timeout_kills(self):
            status, out, secs = run_captured([sys.executable, "-c", "print('hi', flush=True); import time; time.sleep(30)"], 0.5)
            self.assertEqual(status, TIMEOUT_STATUS)
            self.assertIn("hi", out)
            self.assertLess(secs, 5)
            status, out, _ = run_captured([sys.executable, "-c", "import sys; sys.exit(7)"], 10)
            self.assertEqual(status, 7)

    suite = unittest.TestLoader().loadTestsFromTestCase(T)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() else 1


def main() -> int:
    ap = argparse.ArgumentParser(prog="qemu.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="sub", required=True)

    s = sub.add_parser("resolve", help="the selected board: 'ok <arch> <platform> <target> <file>'")
    s.add_argument("--arch", default="")
    s.add_argument("--platform", default="")
    s.add_argument("--plat-config", default="")
    s.set_defaults(fn=cmd_resolve)

    for name, fn, hlp in (("arches", cmd_arches, "list the arches"),
                          ("targets", cmd_targets, "list the boards' Rust targets"),
                          ("qemu-binaries", cmd_qemu_binaries, "list the boards' QEMU binaries")):
        s = sub.add_parser(name, help=hlp)
        s.set_defaults(fn=fn)

    s = sub.add_parser("board", help="print fields of a board TOML")
    s.add_argument("board")
    s.add_argument("fields", nargs="+",
                   choices=["arch", "platform", "target", "binary", "pass-status", "path"])
    s.set_defaults(fn=cmd_board)

    s = sub.add_parser("boards", help="list board TOMLs")
    s.add_argument("--arch", default="")
    s.set_defaults(fn=cmd_boards)

    s = sub.add_parser("apps", help="list apps")
    s.set_defaults(fn=cmd_apps)

    for name, fn, hlp in (("cmd", cmd_cmd, "print the QEMU command line"),
                          ("run", cmd_run, "boot interactively")):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("--board", required=True, help="board TOML")
        s.add_argument("--elf", required=True, help="kernel image")
        s.add_argument("--mem", default="128M")
        s.add_argument("--smp", default="1")
        s.add_argument("--debug", action="store_true", help="add -s -S (gdb stub on :1234, halted)")
        s.add_argument("extra", nargs="*", help="more QEMU arguments (after --)")
        s.set_defaults(fn=fn)

    s = sub.add_parser("test", help="build and run apps on boards")
    s.add_argument("--arch", default="", help="only this arch's boards")
    s.add_argument("--plat-config", default="", help="only this board TOML")
    s.add_argument("--apps", default="", help="only these apps (comma or space separated)")
    s.add_argument("--mode", choices=["debug", "release"], default="release")
    s.add_argument("--mem", default="128M")
    s.add_argument("--qemu-mem", default="",
                   help="RAM given to QEMU if not --mem (the kernels are built for --mem)")
    s.add_argument("--smp", default="1")
    s.add_argument("--qemu-smp", default="",
                   help="CPUs of the machine, if not --smp (the kernel is built for --smp)")
    s.add_argument("--expect", action="append", default=[],
                   help="a line the output must contain before the app's own (repeatable)")
    s.add_argument("--log", default="warn")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    s.add_argument("--no-build", action="store_true", help="use the ELFs already built")
    s.set_defaults(fn=cmd_test)

    s = sub.add_parser("selftest", help="check the output matcher")
    s.set_defaults(fn=cmd_selftest)

    a = ap.parse_args()
    if getattr(a, "arch", "") and a.arch not in ARCHES:
        raise SystemExit(f"qemu.py: {unknown_arch(a.arch)}")
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
