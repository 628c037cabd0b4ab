"""``python -m bench [run]``: every benchmark in a fresh subprocess, repeated in rounds
(baselines and scenarios interleaved), medians kept, one JSON result file written."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from ._common import Ctx, Entry
from ._machine import REPO, filesystem_of, git_commit, machine_info
from ._report import compute_targets, summary, write
from ._run_one import MARKER, registry

QUICK_TIMEOUT: Final = 30.0  # s, per benchmark in a quick run (each normally takes 1-3 s)
QUICK_BUDGET: Final = 80.0  # s, for a whole quick run
FULL_TIMEOUT: Final = 900.0  # s, per benchmark in a full run


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def select(only: list[str] | None, soak: float) -> list[str]:
    """The benchmarks to run, in registry order. ``only`` holds exact names, globs
    (``ss_2d_*``) or prefixes (``pymodaq``)."""
    names = [n for n in registry() if n != "soak_2d_lz4"]
    if only:
        chosen: set[str] = set()
        for pattern in only:
            hits = _matches(names, pattern)
            if not hits:
                raise SystemExit(f"--only {pattern!r} matches nothing; names: {', '.join(names)}")
            chosen |= hits
        names = [n for n in names if n in chosen]
    if soak > 0:
        names.append("soak_2d_lz4")
    return names


def _matches(names: list[str], pattern: str) -> set[str]:
    if pattern in names:
        return {pattern}
    if any(c in pattern for c in "*?["):
        return set(fnmatch.filter(names, pattern))
    return {n for n in names if n.startswith(pattern)}


def make_workdir(base: Path | None) -> Path:
    """A fresh temporary directory on the repository's filesystem (not a tmpfs /tmp):
    /var/tmp if it is on the same device, else next to the repository."""
    if base is None:
        repo_dev = os.stat(REPO).st_dev
        candidates = [Path("/var/tmp"), REPO.parent, REPO]
        base = next((c for c in candidates if c.is_dir() and os.access(c, os.W_OK)
                     and os.stat(c).st_dev == repo_dev), REPO.parent)
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="streamsave-bench-", dir=base))
    if filesystem_of(path) == "tmpfs":
        log(f"warning: {path} is on tmpfs; O_DIRECT will be skipped and figures are not disk")
    return path


def run_child(name: str, group: str, ctx: Ctx, timeout: float) -> Entry:
    cmd = [sys.executable, "-m", "bench._run_one", name, "--workdir", str(ctx.workdir),
           "--soak-seconds", str(ctx.soak_seconds), "--timeout", f"{timeout:.1f}",
           *(["--quick"] if ctx.quick else [])]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Entry(name, group, skipped=f"timed out after {timeout:.0f} s (hung? the "
                                          "thread stacks were dumped to stderr)")
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            result = Entry.from_json(json.loads(line[len(MARKER):]))
        elif line.strip():
            log(f"  [{name}] {line}")
    if result is None:
        return Entry(name, group, skipped=f"benchmark process exited {proc.returncode} "
                                          "without a result")
    return result


def pick_median(runs: list[Entry]) -> Entry:
    """The repeat with the median rate (the lower one of the middle two for even counts),
    carrying every repeat's figures in ``extra["repeats"]``."""
    ok = [e for e in runs if not e.skipped and e.frames_per_s is not None]
    if not ok:
        return runs[-1]
    ok.sort(key=lambda e: e.frames_per_s or 0.0)
    chosen = ok[(len(ok) - 1) // 2]
    chosen.extra["repeats"] = {
        "n": len(runs), "ok": len(ok),
        "mb_per_s": [e.mb_per_s for e in runs], "frames_per_s": [e.frames_per_s for e in runs],
        "seconds": [e.seconds for e in runs], "skipped": [e.skipped for e in runs],
    }
    return chosen


def _line(e: Entry, took: float) -> str:
    if e.skipped:
        return f"skipped: {e.skipped}"
    bits = [f"{e.mb_per_s or 0:9.1f} MB/s", f"{e.frames_per_s or 0:11.1f} frames/s"]
    if e.ratio:
        bits.append(f"ratio {e.ratio:.2f}")
    if e.loop_lag_ms:
        bits.append(f"lag p99 {e.loop_lag_ms.get('p99', 0):.2f} ms")
    return "  ".join(bits) + f"  ({took:.1f} s)"


def run(quick: bool, repeats: int, only: list[str] | None, soak: float, out: Path | None,
        base_dir: Path | None, argv: list[str]) -> Path:
    names = select(only, soak)
    reg = registry()
    workdir = make_workdir(base_dir)
    ctx = Ctx(quick=quick, workdir=workdir, soak_seconds=soak)
    # per-benchmark limit; a quick run also has an overall budget (CI smoke-tests it)
    timeout = QUICK_TIMEOUT if quick else FULL_TIMEOUT
    runs: dict[str, list[Entry]] = {n: [] for n in names}
    t_start = time.perf_counter()
    log(f"bench: {'quick' if quick else 'full'} run, {repeats} round(s), files in {workdir}")
    try:
        machine = machine_info(workdir)
        for r in range(repeats):
            for i, name in enumerate(names):
                if name == "soak_2d_lz4" and r > 0:
                    continue
                t0 = time.perf_counter()
                limit = timeout + soak if name == "soak_2d_lz4" else timeout
                if quick and name != "soak_2d_lz4":
                    limit = min(limit, QUICK_BUDGET - (t0 - t_start))
                if limit < 1.0:
                    entry = Entry(name, reg[name][0], skipped="not run: the quick run's "
                                  f"{QUICK_BUDGET:.0f} s budget is spent")
                else:
                    entry = run_child(name, reg[name][0], ctx, limit)
                runs[name].append(entry)
                log(f"[{r + 1}/{repeats} {i + 1:2d}/{len(names)}] {name:22s} "
                    f"{_line(entry, time.perf_counter() - t0)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    entries = [pick_median(runs[n]) for n in names]
    doc: dict[str, Any] = {
        "schema": 1,
        "units": {"MB": 10**6, "MiB": 2**20, "loop_lag": "ms", "push_latency": "us"},
        "machine": machine,
        "config": {"quick": quick, "repeats": repeats, "only": only, "soak_seconds": soak,
                   "argv": argv, "wall_seconds": time.perf_counter() - t_start},
        "results": [e.to_json() for e in entries],
        "targets": compute_targets(entries),
    }
    if out is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        commit = machine.get("git_commit_short") or git_commit() or "nocommit"
        out = REPO / "bench" / "results" / f"{stamp}-{commit}.json"
    write(doc, out)
    summary(doc)
    print(f"\nwrote {out}")
    return out
