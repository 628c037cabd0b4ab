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
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final

from ._against import Side, checkout_side, revision_side
from ._common import Ctx, Entry
from ._machine import REPO, filesystem_of, git_commit, machine_info
from ._report import TARGETS, compute_targets, side_ratios, summary, target_ratios, write
from ._run_one import IMPORT_MARKER, MARKER, registry

QUICK_TIMEOUT: Final = 30.0  # s, per benchmark in a quick run (each normally takes 1-3 s)
QUICK_BUDGET: Final = 80.0  # s, for a whole quick run (of the default selection, per side)
FULL_TIMEOUT: Final = 900.0  # s, per benchmark in a full run
# run in the first round only: long, or measurements of sizes that do not vary
ONCE: Final = ("soak_2d_lz4", "size_*")
# left out of a quick run unless named with --only (the CI smoke run stays under budget)
QUICK_OPTIONAL: Final = ("ss_fsync_*", "size_*", "read_*", "replay_*", "ss_scan_2d_none", "ss_scan_2d_lz4_random")
# what --against compares by default (with the baselines of their targets)
HOT_PATH: Final = ("ss_2d_none", "ss_2d_lz4", "ss_1d", "ss_0d_push", "ss_0d_push_many")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def select(only: list[str] | None, soak: float, quick: bool = False,
           against: bool = False) -> list[str]:
    """The benchmarks to run, in registry order. ``only`` holds exact names, globs
    (``ss_2d_*``) or prefixes (``pymodaq``). Without it: the hot path with ``against``,
    everything but ``QUICK_OPTIONAL`` in a quick run, everything otherwise."""
    names = [n for n in registry() if n != "soak_2d_lz4"]
    if only:
        chosen: set[str] = set()
        for pattern in only:
            hits = _matches(names, pattern)
            if not hits:
                raise SystemExit(f"--only {pattern!r} matches nothing; names: {', '.join(names)}")
            chosen |= hits
        names = [n for n in names if n in chosen]
    elif against:
        names = hot_path_names()
    elif quick:
        names = [n for n in names if not _matches_any(n, QUICK_OPTIONAL)]
    if soak > 0:
        names.append("soak_2d_lz4")
    return names


def hot_path_names() -> list[str]:
    """``HOT_PATH`` and the baselines the tracked targets compare them with."""
    reg = registry()
    baselines = {t.den for t in TARGETS.values()
                 if t.num in HOT_PATH and t.den and reg.get(t.den, ("",))[0] == "baseline"}
    return [n for n in reg if n in HOT_PATH or n in baselines]


def _matches_any(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


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


def run_child(name: str, group: str, ctx: Ctx, timeout: float, side: Side | None = None) -> Entry:
    """Run one benchmark in a fresh process importing streamsave from ``side``'s tree
    (default: this checkout)."""
    side = side or checkout_side()
    cmd = [sys.executable, "-m", "bench._run_one", name, "--workdir", str(ctx.workdir),
           "--soak-seconds", str(ctx.soak_seconds), "--timeout", f"{timeout:.1f}",
           *(["--quick"] if ctx.quick else [])]
    env, cwd = side.env_and_cwd()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Entry(name, group, skipped=f"timed out after {timeout:.0f} s (hung? the "
                                          "thread stacks were dumped to stderr)")
    result, imported = None, None
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            result = Entry.from_json(json.loads(line[len(MARKER):]))
        elif line.startswith(IMPORT_MARKER):
            imported = str(json.loads(line[len(IMPORT_MARKER):]))
        elif line.strip():
            log(f"  [{name}] {line}")
    if result is None:
        return Entry(name, group, skipped=f"benchmark process exited {proc.returncode} "
                                          "without a result")
    if imported is not None:
        if not side.owns(imported):
            return Entry(name, group, skipped=f"{side.key} side imported streamsave from the "
                                              "wrong tree: discarded")
        result.extra["streamsave_from"] = side.label
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
        base_dir: Path | None, argv: list[str], against: str | None = None,
        engine: str | None = None) -> Path:
    """Run the selection; with ``against``, also over the engine of that commit (the
    "before" side). ``engine`` replaces this checkout's engine with a commit's (the
    "after" side)."""
    names = select(only, soak, quick=quick, against=against is not None)
    with ExitStack() as stack:
        sides = [checkout_side() if engine is None
                 else stack.enter_context(revision_side(engine, "after"))]
        if against is not None:
            sides.append(stack.enter_context(revision_side(against)))
        return _run(names, quick, repeats, only, soak, out, base_dir, argv, against, sides)


def _run(names: list[str], quick: bool, repeats: int, only: list[str] | None, soak: float,
         out: Path | None, base_dir: Path | None, argv: list[str], against: str | None,
         sides: list[Side]) -> Path:
    reg = registry()
    workdir = make_workdir(base_dir)
    ctx = Ctx(quick=quick, workdir=workdir, soak_seconds=soak)
    # per-benchmark limit; a quick run of the default selection also has an overall
    # budget (CI smoke-tests it)
    timeout = QUICK_TIMEOUT if quick else FULL_TIMEOUT
    budget = QUICK_BUDGET * len(sides) if quick and not only else None
    runs: dict[tuple[str, str], list[Entry]] = {}
    t_start = time.perf_counter()
    log(f"bench: {'quick' if quick else 'full'} run, {repeats} round(s), files in {workdir}")
    if len(sides) > 1 or sides[0].import_root is not None:
        log("bench: " + ", ".join(f"{s.key} = {s.label}" for s in sides))
    try:
        machine = machine_info(workdir)
        for r in range(repeats):
            for i, name in enumerate(names):
                if r > 0 and _matches_any(name, ONCE):
                    continue
                group = reg[name][0]
                # baselines do not import streamsave: one run per round serves both sides;
                # the two sides alternate which goes first from round to round
                order = sides[:1] if group == "baseline" else (sides if r % 2 else sides[::-1])
                for side in order:
                    t0 = time.perf_counter()
                    limit = timeout + soak if name == "soak_2d_lz4" else timeout
                    if budget is not None and name != "soak_2d_lz4":
                        limit = min(limit, budget - (t0 - t_start))
                    if limit < 1.0:
                        entry = Entry(name, group, skipped="not run: the quick run's "
                                      f"{budget:.0f} s budget is spent")
                    else:
                        entry = run_child(name, group, ctx, limit, side)
                    runs.setdefault((name, side.key), []).append(entry)
                    tag = f" [{side.key}]" if len(sides) > 1 and group != "baseline" else ""
                    log(f"[{r + 1}/{repeats} {i + 1:2d}/{len(names)}] {name + tag:32s} "
                        f"{_line(entry, time.perf_counter() - t0)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    entries = [pick_median(runs[(n, "after")]) for n in names]
    doc: dict[str, Any] = {
        "schema": 1,
        "units": {"MB": 10**6, "MiB": 2**20, "loop_lag": "ms", "push_latency": "us"},
        "machine": machine,
        "config": {"quick": quick, "repeats": repeats, "only": only, "soak_seconds": soak,
                   "against": against, "engine": sides[0].info(), "argv": argv,
                   "wall_seconds": time.perf_counter() - t_start},
        "results": [e.to_json() for e in entries],
        "targets": compute_targets(entries),
    }
    if len(sides) > 1:
        before = [pick_median(runs[(n, "before")]) for n in names if (n, "before") in runs]
        shared = [e for e in entries if e.group == "baseline"]
        doc["against"] = {
            "rev": against, "label": sides[1].label, "commit": sides[1].commit,
            "after": sides[0].info(),
            "note": "results/targets above are the 'after' side (see after.label); baselines "
                    "run once per round and serve both sides",
            "results": [e.to_json() for e in before],
            "targets": compute_targets(before + shared),
        }
        doc["against"]["ratios"] = side_ratios(before, entries)
        doc["against"]["target_ratios"] = target_ratios(doc["against"]["targets"], doc["targets"])
    if out is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        commit = machine.get("git_commit_short") or git_commit() or "nocommit"
        suffix = f"-vs-{against}" if against else ""
        safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in suffix)
        out = REPO / "bench" / "results" / f"{stamp}-{commit}{safe}.json"
    write(doc, out)
    summary(doc)
    print(f"\nwrote {out}")
    return out
