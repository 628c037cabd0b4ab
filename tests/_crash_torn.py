"""What a killed writer leaves in a plain (non-SWMR) file: a loop of writers killed at
random, each file recovered and classified.

Two ways to choose the kill moment:

* ``--at time``: SIGKILL after a random delay, as ``tests/crash_run.py`` does;
* ``--at write``: SIGKILL as the writer enters its N-th ``pwrite`` (N random, up to
  ``--writes``), injected by ``strace``. Most of a writer's ``pwrite`` calls happen
  while HDF5 flushes its metadata, so this lands inside ``H5Fflush`` far more often
  than a random moment does, and it never tears a single write;
* ``--at chunk``: the writer kills itself as it is about to store its N-th chunk
  (N random, up to ``--writes``): never inside ``H5Fflush``, so whatever is damaged
  then was damaged by writes between flushes.

``--backend tables`` runs the writer on another backend (its plain files).

``--hdf5 KEY=VALUE`` changes how the writer creates a plain file, to try HDF5 settings
against the failure rate: ``istore_k=32`` (chunk index B-tree K) and
``local_heap_size_hint=0`` (group local heaps) replace the backend's settings (``None``:
HDF5's default), ``libver=v110,v110`` its format bounds, and other keys are file access
arguments of ``h5py.File`` (``meta_block_size=0``, ...).

``python tests/_crash_torn.py --runs 300 --scenario mixed --codec none --at write``
prints how many runs ended how: every durable frame recovered, frames lost (and what
limited them), or the file not recoverable (with HDF5's reason). ``--keep DIR`` keeps
the files of runs that did not end well.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from tests import crash_run  # noqa: E402

#: flush interval and longest random delay for ``--at time``, per scenario
PACE: Final = {"mixed": (0.002, 0.4), "large": (0.05, 0.8), "producers": (0.02, 0.6)}


def classify(outcome: crash_run.Outcome) -> str:
    """A short label for how a run ended (numbers and paths taken out, so labels count),
    and whether HDF5 was flushing when the kill came."""
    where = "in flush" if outcome.in_flush else "outside flush"
    if not outcome.failures:
        return f"ok ({where})"
    return f"{_failure(outcome)} ({where}{', known limit' if outcome.torn else ''})"


def _failure(outcome: crash_run.Outcome) -> str:
    first = outcome.failures[0]
    if first.startswith("recover raised"):
        text = re.sub(r"'[^']*\.h5'", "FILE", first)
        text = re.sub(r"\d+", "N", text)
        return f"unrecoverable: {text[len('recover raised '):][:150]}"
    limits = sorted({outcome.limited_by[name] for name, n in outcome.durable.items()
                     if outcome.kept.get(name, 0) < n and name in outcome.limited_by})
    return f"frames lost (limited by {', '.join(limits) or '?'})" if outcome.lost else f"other: {first[:150]}"


def child(config: dict[str, Any], argv: list[str]) -> None:
    """Run the crash writer with ``argv`` after applying ``config``: HDF5 settings for
    plain files (``istore_k``, ``local_heap_size_hint``: the backend's settings, ``None``
    for HDF5's default; ``libver``; other file access arguments of ``h5py.File``, such as
    ``meta_block_size``), and a kill at the N-th chunk stored."""
    import os
    import runpy

    import streamsave.backends.h5py as backend

    options = dict(config.get("hdf5", {}))
    if "libver" in options:
        backend.PLAIN_LIBVER = tuple(options.pop("libver"))
    if "istore_k" in options:
        backend.PLAIN_ISTORE_K = options.pop("istore_k")
    if "local_heap_size_hint" in options:
        backend.PLAIN_LOCAL_HEAP_SIZE_HINT = options.pop("local_heap_size_hint")
    if options:
        from h5py._hl.files import make_fapl

        def fapl() -> Any:
            return make_fapl(None, libver=tuple(backend.PLAIN_LIBVER), **options)

        backend._plain_fapl = fapl
    backend_name = config.get("backend")
    if backend_name:  # the writer opens its saver on this backend
        import streamsave

        open_saver = streamsave.open_saver

        def on_backend(path: Any, **options: Any) -> Any:
            return open_saver(path, **options, backend=backend_name)

        streamsave.open_saver = on_backend
    kill_at = int(config.get("kill_at_chunk", 0))
    if kill_at:
        stored = 0
        write_chunk = backend.H5pyBackend.write_chunk

        def counting(self: Any, *args: Any, **kwargs: Any) -> None:
            nonlocal stored
            stored += 1
            if stored == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            write_chunk(self, *args, **kwargs)

        backend.H5pyBackend.write_chunk = counting  # type: ignore[method-assign]
    sys.argv = [str(crash_run.WRITER), *argv]
    runpy.run_path(str(crash_run.WRITER), run_name="__main__")


def run_once(case: crash_run.Case, src: Path, rng: random.Random, at: str, writes: int,
             hdf5: dict[str, Any], backend: str = "") -> crash_run.Outcome:
    if at == "time" and not hdf5 and not backend:
        return crash_run.run_case(case, src, rng)
    interval, longest = PACE[case.scenario]
    outcome = crash_run.Outcome(case, delay=float(rng.randint(20, writes)))  # delay: the write the kill comes at
    config: dict[str, Any] = {"hdf5": hdf5, "backend": backend}
    if at == "chunk":
        config["kill_at_chunk"] = int(outcome.delay)
    writer = [str(src), "swmr" if case.swmr else "plain", case.codec, str(interval), "0", case.scenario,
              str(rng.randrange(2**32))]
    args = [sys.executable, __file__, "--child", json.dumps(config), "--", *writer]
    if at == "write":
        args = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=pwrite64", "-e",
                f"inject=pwrite64:signal=KILL:when={int(outcome.delay)}", *args]
    src.unlink(missing_ok=True)
    if at == "time":  # a kill after a random delay, with the settings applied
        outcome.delay = rng.uniform(0, longest)
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=crash_run._env())
        with proc:
            lines = crash_run._read_until_ready(proc, False)
            time.sleep(outcome.delay)
            proc.send_signal(signal.SIGKILL)
            assert proc.stdout is not None
            out = proc.stdout.read()
        return _finish(outcome, src, proc.returncode, "\n".join(json.dumps(x) for x in lines) + "\n" + out)
    with tempfile.TemporaryFile() as err:
        done = subprocess.run(args, stdout=subprocess.PIPE, stderr=err, text=True, env=crash_run._env(),
                              timeout=crash_run.TIMEOUT, check=False)
    return _finish(outcome, src, done.returncode, done.stdout)


def _finish(outcome: crash_run.Outcome, src: Path, returncode: int, stdout: str) -> crash_run.Outcome:
    outcome.killed = returncode in (128 + signal.SIGKILL, -signal.SIGKILL)
    outcome.in_flush = outcome.killed and crash_run._flushing(src)
    if not outcome.killed:
        outcome.failures.append(f"writer exited with {returncode} (not killed: too few writes?)")
        return outcome
    for line in crash_run._parse(stdout.splitlines()):
        if "durable" in line:
            outcome.durable, outcome.pushed = line["durable"], line.get("pushed", [])
        if line.get("event") == "started":
            outcome.started = line["time"]
    if not any(outcome.durable.values()):
        outcome.failures.append("killed before the first flush reported durable frames")
        return outcome
    crash_run.check(src, src.with_suffix(".rec.h5"), outcome)
    outcome.classify()
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--scenario", choices=crash_run.SCENARIOS, default="mixed")
    parser.add_argument("--codec", choices=crash_run.CODECS, default="none")
    parser.add_argument("--swmr", action="store_true", help="SWMR files (default: plain)")
    parser.add_argument("--at", choices=("time", "write", "chunk"), default="write")
    parser.add_argument("--hdf5", action="append", default=[], metavar="KEY=VALUE",
                        help="an HDF5 setting for plain files, see above (VALUE: a Python literal, or a,b for a tuple)")
    parser.add_argument("--backend", default="", help="the writer's backend (default: h5py), e.g. tables")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("writer", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--writes", type=int, default=600, help="--at write: the latest write to kill at")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the files of runs that did not end well")
    args = parser.parse_args(argv)
    if args.child is not None:
        child(json.loads(args.child), args.writer)
        return 0
    hdf5 = dict(_setting(text) for text in args.hdf5)
    if args.at == "write" and shutil.which("strace") is None:
        parser.error("--at write needs strace")
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    rng = random.Random(seed)
    moment = {"mixed": "flush", "large": "flushes", "producers": "producers"}[args.scenario]
    case = crash_run.Case(args.swmr, args.codec, moment, args.scenario)
    counts: Counter[str] = Counter()
    skipped = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            src = Path(tmp) / f"run{i:04d}.h5"
            outcome = run_once(case, src, rng, args.at, args.writes, hdf5, args.backend)
            if outcome.failures and outcome.failures[0].startswith(("killed before", "writer exited")):
                skipped += 1
            else:
                label = classify(outcome)
                counts[label] += 1
                if not label.startswith("ok"):
                    print(json.dumps({"run": i, "at": outcome.delay, "label": label, "durable": outcome.durable,
                                      "kept": outcome.kept, "failures": outcome.failures[:2]}), flush=True)
                    if args.keep is not None:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        shutil.copy(src, args.keep / f"{case.scenario}-{case.codec}-{seed}-{i:04d}.h5")
            for path in (src, src.with_suffix(".rec.h5")):
                with contextlib.suppress(OSError):
                    path.unlink()
    total = sum(counts.values())
    settings = " ".join(f"--hdf5 {t}" for t in args.hdf5)
    print(f"{case} --at {args.at} {settings} seed {seed}: {total} kills after a durable flush "
          f"({skipped} runs skipped), {time.perf_counter() - started:.0f} s")
    for label, n in counts.most_common():
        print(f"  {n:5d}  {100 * n / max(1, total):5.1f}%  {label}")
    return 0


def _setting(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    if "," in value:
        return key, [v.strip() for v in value.split(",")]
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


if __name__ == "__main__":
    sys.exit(main())
