"""Kill a streamsave writer with SIGKILL at random moments, recover what it left, and
check every frame.

Each run starts ``tests/_crash_writer.py`` (SWMR or not, uncompressed or blosc2) in one
of three scenarios:

* ``mixed``: 2D, 1D and 0D channels at different rates, one never fed, one added late;
  killed while it streams, while it flushes almost continuously, or around its close;
* ``large``: one large compressible channel flushed by ``await saver.flush()`` after
  every 1-5 pushes, killed during those flushes (its last, partly filled chunk is
  stored again at almost every flush, at the end of the file);
* ``producers``: one channel fed by three threads and three tasks at once (frames
  interleave, timestamps are not in order), flushed every few milliseconds.

It kills the writer at a random moment, then :func:`streamsave.recover` s the file and
checks:

* every frame the writer had reported durable is in the recovered file, bit-exact
  (``producers``: every frame each producer had pushed before the last completed
  ``flush()``, and as many frames in all as that flush reported durable);
* no frame in it is garbage: every checksum holds and the indices run 0, 1, 2, ...
  (``producers``: each producer's frames appear once each, in the order it pushed
  them, interleaved in any way);
* one timestamp per frame, the one written (streamsave's own: from the run, and never
  going backwards within the channel);
* the channel that never got a frame is gone; the source file is unchanged;
* for SWMR files, an SWMR reader of the killed file also sees every durable frame.

One outcome is a known limit of plain files, counted and reported apart (never
silently): without SWMR, HDF5 writes the metadata of a flush in no dependency order
(a B-tree node pointing to a new node not written yet), so a plain file killed while
HDF5 flushes or closes it can be torn. A run counts as such only if the file is plain,
the writer's note says HDF5 was inside ``H5Fflush``/``H5Fclose`` when it was killed,
and every failure is one such tearing gives: recovery refusing the file with one of
the HDF5 errors in :data:`TORN_ERRORS`, or channels cut short where a chunk index or
an attribute does not read (:data:`TORN_LIMITS`). Any other failure of such a run, and
every failure of SWMR files or of kills outside a flush, is a failure.

``python tests/crash_run.py --kills 200 [--seed N]`` prints a summary;
``tests/test_crash_harness.py`` runs a short version in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

import h5py  # noqa: E402
import hdf5plugin  # noqa: E402, F401  (the Blosc2 filter)
import numpy as np  # noqa: E402

from streamsave import RecoveryError, recover  # noqa: E402
from tests._crash_writer import (  # noqa: E402
    KINDS,
    MAKERS,
    NEVER,
    PRODUCERS,
    STAMPS,
    flushing_marker,
    frame_index,
    tagged,
    tagged_id,
    tagged_timestamp,
    timestamp,
)

WRITER: Final = Path(__file__).with_name("_crash_writer.py")
CODECS: Final = ("none", "blosc2-lz4", "blosc2-zstd")
SCENARIOS: Final = ("mixed", "large", "producers")
#: moment -> (flush interval, longest random delay before the kill, s); the ``large``
#: scenario flushes after every few pushes whatever its flush interval
MOMENTS: Final = {"stream": (0.05, 0.3), "flush": (0.002, 0.15), "close": (0.05, 0.012),
                  "flushes": (0.05, 0.8), "producers": (0.02, 0.6)}
TIMEOUT: Final = 60.0
#: HDF5's errors for metadata a kill inside a plain file's flush tore (see the module docstring)
TORN_ERRORS: Final = ("wrong B-tree signature", "addr overflow", "len not positive after adjustment for EOA",
                      "free block size is zero", "bad heap", "bad local heap", "wrong local heap signature",
                      "bad symbol table", "incorrect metadata checksum", "bad object header",
                      "corrupt object header", "address of object past end of allocation")
#: recovery's reasons for a channel cut short that a torn chunk index or attribute gives
TORN_LIMITS: Final = ("missing chunk", "no record of durable frames")


@dataclass(frozen=True, slots=True)
class Case:
    swmr: bool
    codec: str
    moment: str
    scenario: str = "mixed"

    def __str__(self) -> str:
        head = "" if self.scenario == "mixed" else f"{self.scenario}:"
        return f"{head}{'swmr' if self.swmr else 'plain'}/{self.codec}/{self.moment}"


@dataclass(slots=True)
class Outcome:
    case: Case
    delay: float
    killed: bool = False  # False: the writer had already finished when the kill came
    closed: bool = False  # the writer had reported its file closed
    durable: dict[str, int] = field(default_factory=dict)
    #: per producer, the frames pushed before the last completed flush() (large, producers)
    pushed: list[int] = field(default_factory=list)
    started: float = 0.0  # the writer's clock when it started
    kept: dict[str, int] = field(default_factory=dict)
    limited_by: dict[str, str] = field(default_factory=dict)  # recovery's reason per channel
    verified: int = 0
    lost: int = 0
    failures: list[str] = field(default_factory=list)
    in_flush: bool = False  # killed while HDF5 flushed or closed the file (the writer's note)
    torn: bool = False  # the known limit of plain files: every failure is torn metadata
    #: recovery's refusal of a file killed before its first flush (HDF5 had not yet written
    #: the whole file; no frame was durable, so none is lost)
    unpromised: str = ""

    def classify(self) -> None:
        """Decide :attr:`torn` (see the module docstring)."""
        self.torn = (not self.case.swmr and self.killed and self.in_flush and bool(self.failures)
                     and all(self._torn(f) for f in self.failures))

    def _torn(self, failure: str) -> bool:
        if failure.startswith("recover raised RecoveryError"):
            return any(error in failure for error in TORN_ERRORS)
        name = failure.split(":")[0].split(" (")[0]
        lost = "reported durable" in failure or "had pushed" in failure
        return lost and self.limited_by.get(name) in TORN_LIMITS


@dataclass(slots=True)
class Summary:
    seed: int
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return sum(o.killed for o in self.outcomes)

    @property
    def failures(self) -> list[str]:
        """Every failure, except those of runs that met the known limit (:attr:`torn`)."""
        return [self._line(i, o, f) for i, o in enumerate(self.outcomes) if not o.torn for f in o.failures]

    @property
    def torn(self) -> list[str]:
        """The failures of runs that met the known limit of plain files."""
        return [self._line(i, o, f) for i, o in enumerate(self.outcomes) if o.torn for f in o.failures]

    @staticmethod
    def _line(i: int, o: Outcome, failure: str) -> str:
        return (f"[run {i} {o.case} delay {o.delay:.3f}s{' in flush' if o.in_flush else ''} durable {o.durable} "
                f"kept {o.kept} {o.limited_by}] {failure}")

    def text(self, seconds: float) -> str:
        closing = [o for o in self.outcomes if o.killed and o.case.moment == "close"]
        lines = [f"seed {self.seed}: {len(self.outcomes)} runs, {self.kills} kills ({len(closing)} around close: "
                 f"{sum(not o.closed for o in closing)} before the file was closed), "
                 f"{sum(o.verified for o in self.outcomes):,} frames verified, "
                 f"{sum(o.durable.get(n, 0) for o in self.outcomes for n in o.durable):,} reported durable, "
                 f"{sum(o.lost for o in self.outcomes if not o.torn)} frames lost, {len(self.failures)} failures, "
                 f"{seconds:.1f} s"]
        plain = [o for o in self.outcomes if o.killed and not o.case.swmr]
        torn = [o for o in plain if o.torn]
        lines.append(f"  known limit: {len(torn)} of {sum(o.in_flush for o in plain)} kills of plain files inside "
                     f"H5Fflush/H5Fclose ({len(plain)} kills of plain files) tore metadata, "
                     f"{sum(o.lost for o in torn)} durable frames lost with it")
        if unpromised := [o for o in self.outcomes if o.unpromised]:
            lines.append(f"  {len(unpromised)} writers killed before their first flush left a file recovery "
                         f"refuses (nothing was durable, nothing lost): {unpromised[0].unpromised}")
        for scenario in SCENARIOS:
            mine = [o for o in self.outcomes if o.case.scenario == scenario]
            for key in sorted({str(o.case) for o in mine if o.failures and not o.torn}):
                runs = [o for o in mine if str(o.case) == key]
                lines.append(f"  {key}: {sum(bool(o.failures) and not o.torn for o in runs)} of {len(runs)} runs "
                             f"failed, {sum(o.lost for o in runs if not o.torn)} frames lost")
            if mine:
                lines.append(f"  {scenario}: {sum(o.killed for o in mine)} kills, "
                             f"{sum(o.verified for o in mine):,} frames verified, "
                             f"{sum(bool(o.failures) and not o.torn for o in mine)} runs failed, "
                             f"{sum(o.lost for o in mine if not o.torn)} lost")
        return "\n".join(lines + self.failures + [f"known limit {t}" for t in self.torn])


def cases(scenarios: tuple[str, ...] = SCENARIOS) -> list[Case]:
    """Every combination: ``mixed`` x 3 moments, ``large``, ``producers``; SWMR and plain; 3 codecs."""
    moments = {"mixed": ("stream", "flush", "close"), "large": ("flushes",), "producers": ("producers",)}
    return [Case(swmr, codec, moment, scenario) for scenario in scenarios for moment in moments[scenario]
            for swmr in (True, False) for codec in CODECS]


def run(kills: int, seed: int, workdir: Path, *, keep_failed: bool = False,
        matrix: list[Case] | None = None) -> Summary:
    """Run ``matrix`` (default: every case) round-robin, in a seeded random order, until
    ``kills`` writers were killed."""
    rng = random.Random(seed)
    matrix = list(cases() if matrix is None else matrix)
    rng.shuffle(matrix)
    summary = Summary(seed)
    while summary.kills < kills and len(summary.outcomes) < 3 * kills + len(matrix):
        case = matrix[len(summary.outcomes) % len(matrix)]
        src = workdir / f"run{len(summary.outcomes):04d}.h5"
        outcome = run_case(case, src, rng)
        summary.outcomes.append(outcome)
        if not (outcome.failures and keep_failed):
            src.unlink(missing_ok=True)
            src.with_suffix(".rec.h5").unlink(missing_ok=True)
    return summary


def run_case(case: Case, src: Path, rng: random.Random) -> Outcome:
    interval, longest = MOMENTS[case.moment]
    outcome = Outcome(case, delay=rng.uniform(0, longest))
    close_after = rng.randint(300, 1500) if case.moment == "close" else 0
    lines = _run_and_kill(case, src, interval, close_after, outcome, rng.randrange(2**32))
    for line in lines:
        if "durable" in line:
            outcome.durable = line["durable"]
            outcome.pushed = line.get("pushed", [])
        outcome.started = line.get("time", outcome.started) if line.get("event") == "started" else outcome.started
        outcome.closed |= line.get("event") == "closed"
    outcome.in_flush = outcome.killed and _flushing(src)
    if not outcome.failures:
        check(src, src.with_suffix(".rec.h5"), outcome)
    outcome.classify()
    return outcome


def _flushing(src: Path) -> bool:
    """Whether the writer's note says HDF5 was flushing or closing ``src`` (and remove the note)."""
    marker = Path(flushing_marker(str(src)))
    try:
        return marker.read_bytes()[:1] == b"1"
    except OSError:
        return False
    finally:
        marker.unlink(missing_ok=True)


def _run_and_kill(case: Case, src: Path, interval: float, close_after: int, outcome: Outcome,
                  seed: int) -> list[Any]:
    """Start the writer, wait for its first report of durable frames (or "closing"),
    kill it after the outcome's delay; returns every JSON line it printed."""
    args = [sys.executable, str(WRITER), str(src), "swmr" if case.swmr else "plain", case.codec, str(interval),
            str(close_after), case.scenario, str(seed)]
    src.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as err:
        with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True, env=_env()) as proc:
            watchdog = threading.Timer(TIMEOUT, proc.kill)
            watchdog.start()
            try:
                lines = _read_until_ready(proc, close_after > 0)
                time.sleep(outcome.delay)  # the random kill moment (not a wait for state)
                outcome.killed = proc.poll() is None
                proc.send_signal(signal.SIGKILL)
                assert proc.stdout is not None
                lines += _parse(proc.stdout.read().splitlines())
                proc.wait()
            finally:
                watchdog.cancel()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    expected = -signal.SIGKILL if outcome.killed else 0
    if proc.returncode != expected:
        outcome.failures.append(f"writer exited with {proc.returncode}: {stderr[-2000:]}")
    return lines


def _read_until_ready(proc: subprocess.Popen[str], closing: bool) -> list[Any]:
    lines: list[Any] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        lines += _parse([raw])
        if lines and (lines[-1].get("event") == "closing" if closing else
                      any(n > 0 for n in lines[-1].get("durable", {}).values())):
            break
    return lines


def _parse(raw: list[str]) -> list[Any]:
    out = []
    for text in raw:
        with contextlib.suppress(ValueError):  # a line cut by the kill
            out.append(json.loads(text))
    return out


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


# ---------------------------------------------------------------------------- checks
def check(src: Path, dst: Path, outcome: Outcome) -> None:
    """Recover ``src`` into ``dst`` and check both against what the writer reported."""
    digest = _sha256(src)
    try:
        report = recover(src, dst)
    except RecoveryError as exc:
        if not any(outcome.durable.values()):  # killed before its first flush: nothing was promised
            outcome.unpromised = str(exc)
            return
        outcome.failures.append(f"recover raised {exc!r}")
        return
    except Exception as exc:
        outcome.failures.append(f"recover raised {exc!r}")
        return
    if _sha256(src) != digest:
        outcome.failures.append("recover modified its input")
    outcome.kept = {c.name: c.frames_kept for c in report.channels}
    outcome.limited_by = {c.name: c.limited_by for c in report.channels}
    with h5py.File(dst, "r") as f:  # a plain reader: the output is an ordinary closed file
        found = _channels(f)
        if NEVER in found:
            outcome.failures.append(f"the empty channel {NEVER} is still in the recovered file")
        for name, n in outcome.durable.items():
            if n > 0 and name not in found:
                outcome.failures.append(f"{name}: {n} frames reported durable, channel missing")
                outcome.lost += n
        for name, group in found.items():
            _check(name, group, outcome, exact=True)
    if outcome.case.swmr and outcome.killed:
        _check_raw(src, outcome)


def _check_raw(src: Path, outcome: Outcome) -> None:
    """An SWMR reader of the killed file sees every durable frame (frames after them may be missing)."""
    try:
        with h5py.File(src, "r", swmr=True) as f:
            for name, group in _channels(f).items():
                if name != NEVER:
                    _check(name, group, outcome, exact=False, limit=outcome.durable.get(name, 0))
    except OSError as exc:
        outcome.failures.append(f"an SWMR reader cannot read the killed file: {exc}")


def _check(name: str, group: h5py.Group, outcome: Outcome, *, exact: bool, limit: int | None = None) -> None:
    """Check one channel of the recovered file (``exact``) or of the killed file (an SWMR
    reader: its first ``limit`` frames)."""
    if name not in KINDS:
        outcome.failures.append(f"{name}: a channel the writer never made")
        return
    data = group["EnlData00"]
    time_axis = next(group[k] for k in group if _text(group[k].attrs.get("label")) == "time")
    n = data.shape[0] if limit is None else min(limit, data.shape[0])
    frames, times = _read(data, n), time_axis[:n]
    where = f"{name} ({'recovered' if exact else 'SWMR reader'})"
    durable = outcome.durable.get(name, 0)
    if n < durable:
        outcome.failures.append(f"{where}: {durable} frames reported durable, {n} present")
        outcome.lost += durable - n
    if exact:
        outcome.verified += n
        if time_axis.shape != (n,) or _text(data.attrs.get("shape")) != json.dumps(
                {"module": "builtins", "type": "tuple", "data": repr(data.shape)}):
            outcome.failures.append(f"{where}: {time_axis.shape} timestamps or shape attribute "
                                    f"{data.attrs.get('shape')!r} for {n} frames")
    if KINDS[name] == "tagged":
        _check_tagged(where, frames, times, outcome)
    else:
        _check_indexed(where, KINDS[name], frames, times, outcome)


def _check_indexed(where: str, kind: str, frames: Any, times: Any, outcome: Outcome) -> None:
    """Frames ``0, 1, 2...`` in order, each bit-exact, with timestamp(i)."""
    n = len(frames)
    bad = [j for j in range(n) if frame_index(kind, frames[j]) != j]
    if bad:
        outcome.failures.append(f"{where}: {len(bad)} garbage or misplaced frames, first at {bad[0]} of {n}")
    elif any(not np.array_equal(frames[j].reshape(-1), np.ravel(MAKERS[kind](j))) for j in range(n)):
        outcome.failures.append(f"{where}: a frame with a valid checksum differs from what was written")
    if not np.array_equal(times, timestamp(np.arange(n))):
        outcome.failures.append(f"{where}: timestamps are not the ones written, one per frame")


def _check_tagged(where: str, frames: Any, times: Any, outcome: Outcome) -> None:
    """Frames of several producers, interleaved in any way: each producer's frames
    ``0, 1, 2...`` once each and in order, each bit-exact; every frame a producer had
    pushed before the last completed flush() is there; timestamps as given, or
    streamsave's own from the run and never going backwards."""
    ids = [tagged_id(frame) for frame in frames]
    garbage = [j for j, i in enumerate(ids) if i is None]
    if garbage:
        outcome.failures.append(f"{where}: {len(garbage)} garbage frames, first at {garbage[0]} of {len(frames)}")
        return
    pairs = [i for i in ids if i is not None]
    seen: list[list[int]] = [[] for _ in range(PRODUCERS)]
    for p, i in pairs:
        seen[p].append(i)
    for p, got in enumerate(seen):
        if got != list(range(len(got))):
            outcome.failures.append(f"{where}: producer {p}'s frames are missing, repeated or out of order "
                                    f"({len(got)} frames, {len(set(got))} distinct, largest index {max(got)})")
        pushed = outcome.pushed[p] if p < len(outcome.pushed) else 0
        if len(got) < pushed:
            outcome.failures.append(f"{where}: producer {p} had pushed {pushed} frames before the last completed "
                                    f"flush(), {len(got)} present")
            outcome.lost += pushed - len(got)
    if any(not np.array_equal(frame, tagged(p, i)) for frame, (p, i) in zip(frames, pairs, strict=True)):
        outcome.failures.append(f"{where}: a frame with a valid checksum differs from what was written")
    mine: Any = np.array([STAMPS[p] is None for p, _ in pairs], dtype=np.bool_)
    given = np.array([0.0 if STAMPS[p] is None else tagged_timestamp(p, i) for p, i in pairs], dtype=np.float64)
    if not np.array_equal(times[~mine], given[~mine]):
        outcome.failures.append(f"{where}: given timestamps are not the ones written, one per frame")
    own = times[mine]
    if own.size and not (outcome.started - 5 <= own.min() and own.max() <= time.time() + 5):
        outcome.failures.append(f"{where}: streamsave's timestamps {own.min()!r}..{own.max()!r} are not from the "
                                f"run (started {outcome.started!r})")
    if np.any(np.diff(own) < 0):
        outcome.failures.append(f"{where}: streamsave's own timestamps go backwards "
                                f"{int(np.sum(np.diff(own) < 0))} times")


def _read(data: h5py.Dataset, n: int) -> Any:
    """The first ``n`` frames; a chunk that does not decode reads as zeros (then fails its checksum)."""
    try:
        return data[:n]
    except OSError:
        out = np.zeros((n, *data.shape[1:]), dtype=data.dtype)
        k = data.chunks[0]
        for start in range(0, n, k):
            with contextlib.suppress(OSError):
                out[start:start + k] = data[start:min(n, start + k)]
        return out


def _channels(f: h5py.File) -> dict[str, h5py.Group]:
    found: dict[str, h5py.Group] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and _text(obj.attrs.get("type")) == "ch":
            found[f"{_text(obj.attrs['origin'])}/{_text(obj.attrs['TITLE'])}"] = obj

    f.visititems(visit)
    return found


def _text(value: Any) -> Any:
    """A text attribute as ``str``, whether stored variable-length (h5py) or fixed-length
    (PyTables: read as ``bytes``)."""
    return value.decode() if isinstance(value, bytes) else value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep failed runs' files here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        summary = run(args.kills, seed, workdir, keep_failed=args.workdir is not None)
    print(summary.text(time.perf_counter() - started))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
