"""Run one benchmark in this (fresh) process and print its result as one JSON line:

    python -m bench._run_one NAME --workdir DIR [--quick] [--soak-seconds S]

The line starts with ``MARKER``; anything else on stdout is not the result. When the
benchmark imported streamsave, a line starting with ``IMPORT_MARKER`` gives the file
it was imported from (``--against`` checks each side ran the tree it should).
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Final

from ._baselines import BASELINES
from ._common import Ctx, Entry, Skip
from ._filesize import GROUP as SIZE_GROUP
from ._filesize import SIZE_BENCHMARKS
from ._probe import peak_rss_mib
from ._pymodaq import PYMODAQ
from ._read import GROUP as READ_GROUP
from ._read import READ_BENCHMARKS
from ._replay import GROUP as REPLAY_GROUP
from ._replay import REPLAY_BENCHMARKS
from ._scan import SCAN_BENCHMARKS
from ._scenarios import GROUP, SCENARIOS, first_leaf, run_scenario
from ._soak import run_soak

MARKER: Final = "BENCH-RESULT "
IMPORT_MARKER: Final = "BENCH-IMPORT "


def registry() -> dict[str, tuple[str, Callable[[Ctx], Entry]]]:
    """Every benchmark: name -> (group, function), in the order a run goes through them."""
    reg: dict[str, tuple[str, Callable[[Ctx], Entry]]] = {}
    for name, fn in (BASELINES | PYMODAQ).items():
        reg[name] = ("baseline", fn)
    for name in SCENARIOS:
        reg[name] = (GROUP, lambda ctx, name=name: run_scenario(name, ctx))  # type: ignore[misc]
    for name, fn in SCAN_BENCHMARKS.items():
        reg[name] = (GROUP, fn)
    for name, fn in SIZE_BENCHMARKS.items():
        reg[name] = (SIZE_GROUP, fn)
    for name, fn in READ_BENCHMARKS.items():
        reg[name] = (READ_GROUP, fn)
    for name, fn in REPLAY_BENCHMARKS.items():
        reg[name] = (REPLAY_GROUP, fn)
    reg["soak_2d_lz4"] = ("soak", run_soak)
    return reg


def run_named(name: str, ctx: Ctx) -> Entry:
    group, fn = registry()[name]
    try:
        entry = fn(ctx)
    except Exception as exc:
        leaf = first_leaf(exc)
        if isinstance(leaf, Skip):
            entry = Entry(name, group, skipped=str(leaf))
        else:
            entry = Entry(name, group, skipped=f"raised {type(leaf).__name__}: {leaf}")
            entry.extra["traceback"] = traceback.format_exception(leaf)[-6:]
    if entry.peak_rss_mib is None:
        entry.peak_rss_mib = peak_rss_mib()
    return entry


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so a hung benchmark cannot outlive a
    killed run (e.g. a CI test timeout)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent is already gone
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench._run_one")
    p.add_argument("name", choices=sorted(registry()))
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--soak-seconds", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=0.0,
                   help="the parent kills this process after this long: dump every "
                        "thread's stack to stderr shortly before, to show where it hung")
    args = p.parse_args(argv)
    _die_with_parent()
    if args.timeout > 0:
        faulthandler.dump_traceback_later(max(1.0, args.timeout - 2.0), exit=False)
    ctx = Ctx(quick=args.quick, workdir=args.workdir, soak_seconds=args.soak_seconds)
    entry = run_named(args.name, ctx)
    module = sys.modules.get("streamsave")
    if module is not None and getattr(module, "__file__", None):
        print(IMPORT_MARKER + json.dumps(module.__file__), flush=True)
    print(MARKER + json.dumps(entry.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
