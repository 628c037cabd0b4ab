"""Replay (``streamsave.replay``): pacing error, event-loop lag, and the as-fast-as-possible
rate against the reader's raw read rate on the same file, in the same run.

* ``replay_pace_1k``, ``replay_pace_10k``: a 1D channel (256 float64, 2 kB frames) recorded
  at 1 kHz (10 s; 1 s quick) and 10 kHz (3 s; 0.5 s quick), replayed at speed 1 by a
  consumer that only takes the frames; lateness (release time - due time) of every frame:
  p50, p99, max. Written once per benchmark, not timed.
* ``replay_lag_2d``: 2D 512x512 uint16 blosc2-lz4 frames recorded at 500 frames/s (2 s;
  0.4 s quick), replayed at speed 1 beside a 1 ms heartbeat task (``bench._probe.Heartbeat``)
  in the same loop: loop lag p50/p99/max, and the frames' lateness.
* ``replay_fast_2d``: ``speed=None`` through the read benchmarks' file (2,000 frames of 2D
  512x512 blosc2-lz4, chunks of 4 frames; 400 quick), MB/s of raw frames.
* ``replay_raw_read``: the baseline, the reader alone reading the same file sequentially
  in the calling thread, in ranges of the replay's read block (8 frames), in the same run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio
import numpy as np

from ._common import Ctx, Entry, Skip
from ._frames import KINDS, load_pool
from ._probe import Heartbeat, peak_rss_mib, percentiles
from ._read import ensure_file
from ._scenarios import import_streamsave

GROUP: Final = "replay"
T0: Final = 1_700_000_000.0
PACE: Final = {"replay_pace_1k": (1000.0, 10.0, 1.0), "replay_pace_10k": (10_000.0, 3.0, 0.5)}
LAG_RATE, LAG_SECONDS = 500.0, (2.0, 0.4)


def _record(path: Path, shape: tuple[int, ...], dtype: str, frames: Any, rate: float,
            compression: str | None) -> None:
    import_streamsave()
    import streamsave.sync

    with streamsave.sync.open_saver(path, mode="w", compression=compression) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=shape, dtype=dtype)
        n = len(frames)
        step = max(1, (4 << 20) // max(1, frames[0].nbytes))
        for a in range(0, n, step):
            ch.push_many(frames[a:a + step], timestamps=T0 + np.arange(a, min(n, a + step)) / rate)


async def _consume(path: Path, speed: float | None, heartbeat: Heartbeat | None) -> tuple[Any, list[float], float]:
    ss = import_streamsave()
    async with anyio.create_task_group() as tg:
        if heartbeat is not None:
            tg.start_soon(heartbeat.run)
        t = time.perf_counter()
        async with ss.replay(path, speed=speed) as items:
            lateness = [item.lateness async for item in items]
        seconds = time.perf_counter() - t
        tg.cancel_scope.cancel()
    return items.statistics(), lateness, seconds


def _lateness_ms(values: list[float]) -> dict[str, float]:
    return percentiles(values, 1e3, with_max=True)


def run_pace(name: str, ctx: Ctx) -> Entry:
    rate, full, quick = PACE[name]
    seconds = quick if ctx.quick else full
    n = int(rate * seconds)
    entry = Entry(name, GROUP, params={"rate_hz": rate, "recorded_s": seconds, "frame": "256 float64",
                                       "speed": 1.0, "cpu_count": os.cpu_count()})
    path = ctx.workdir / f"{name}-{n}.h5"
    rng = np.random.default_rng(7)
    _record(path, (256,), "float64", rng.normal(0, 1, (n, 256)), rate, None)
    stats, lateness, took = anyio.run(_consume, path, 1.0, None)
    entry.finish(len(lateness), len(lateness) * 256 * 8, took)
    entry.extra |= {"lateness_ms": _lateness_ms(lateness), "frames_dropped": stats.frames_dropped,
                    "drift_s": took - (n - 1) / rate}
    path.unlink(missing_ok=True)
    return entry


def run_lag(ctx: Ctx) -> Entry:
    n = int(LAG_RATE * (LAG_SECONDS[1] if ctx.quick else LAG_SECONDS[0]))
    kind = KINDS["2d512"]
    entry = Entry("replay_lag_2d", GROUP, params={"rate_hz": LAG_RATE, "frames": n, "frame": "512x512 uint16",
                                                  "compression": "blosc2-lz4", "speed": 1.0,
                                                  "heartbeat_ms": 1.0})
    path = ctx.workdir / f"replay-lag-{n}.h5"
    pool = load_pool("2d512", ctx.workdir)
    frames = np.take(pool, np.arange(n) % len(pool), axis=0)
    _record(path, kind.shape, kind.dtype, frames, LAG_RATE, "blosc2-lz4")
    del frames
    heartbeat = Heartbeat(0.001)
    stats, lateness, took = anyio.run(_consume, path, 1.0, heartbeat)
    entry.finish(len(lateness), len(lateness) * kind.nbytes, took)
    entry.loop_lag_ms = heartbeat.summary()
    entry.extra |= {"lateness_ms": _lateness_ms(lateness), "frames_dropped": stats.frames_dropped}
    entry.peak_rss_mib = peak_rss_mib()
    path.unlink(missing_ok=True)
    return entry


def run_fast(ctx: Ctx) -> Entry:
    kind = KINDS["2d512"]
    path, _ = ensure_file(ctx)
    entry = Entry("replay_fast_2d", GROUP, params={"file": "read benchmarks' file (2D 512x512 lz4, chunks of 4)",
                                                   "speed": None})
    heartbeat = Heartbeat(0.001)
    stats, lateness, took = anyio.run(_consume, path, None, heartbeat)
    if not lateness:
        raise Skip("the replay released no frame")
    entry.finish(len(lateness), len(lateness) * kind.nbytes, took)
    entry.loop_lag_ms = heartbeat.summary()
    entry.extra |= {"prefetch_high_water_mib": stats.prefetch_high_water_bytes / 2**20}
    entry.peak_rss_mib = peak_rss_mib()
    return entry


def run_raw(ctx: Ctx) -> Entry:
    """The reader alone on the same file: sequential ranges of the replay's block size
    (``streamsave._readahead.BLOCK_BYTES``, 8 frames of 0.5 MB), in the calling thread."""
    ss = import_streamsave()
    from streamsave._readahead import BLOCK_BYTES

    kind = KINDS["2d512"]
    path, _ = ensure_file(ctx)
    step = max(1, BLOCK_BYTES // kind.nbytes)
    entry = Entry("replay_raw_read", GROUP, params={"file": "read benchmarks' file (2D 512x512 lz4, chunks of 4)",
                                                    "frames_per_read": step})
    with ss.open_reader(path) as run:
        ch = run.channels["Camera/image"]
        n = len(ch)
        t = time.perf_counter()
        for a in range(0, n, step):
            ch[a:a + step]
            ch.timestamps[a:a + step]
        seconds = time.perf_counter() - t
    entry.finish(n, n * kind.nbytes, seconds)
    entry.peak_rss_mib = peak_rss_mib()
    return entry


REPLAY_BENCHMARKS: Final[dict[str, Callable[[Ctx], Entry]]] = {
    "replay_raw_read": run_raw,
    "replay_fast_2d": run_fast,
    "replay_pace_1k": lambda ctx: run_pace("replay_pace_1k", ctx),
    "replay_pace_10k": lambda ctx: run_pace("replay_pace_10k", ctx),
    "replay_lag_2d": run_lag,
}


def _get(entry: Entry | None, *path: str) -> float | None:
    if entry is None or entry.skipped:
        return None
    value: Any = entry
    for key in path:
        value = getattr(value, key) if not isinstance(value, dict) else value.get(key)
        if value is None:
            return None
    return float(value)


def replay_targets(by_name: dict[str, Entry]) -> dict[str, dict[str, Any]]:
    """The replay targets: lateness p99 at 1 kHz <= 1 ms, loop lag p99 replaying 2D <= 2 ms,
    speed=None >= 0.8 x the reader's raw read rate (10 kHz lateness: reported, no limit)."""
    def item(value: float | None, what: str, num: str, den: str | None, limit: tuple[str, float] | None,
             ) -> dict[str, Any]:
        passed = None if value is None or limit is None else (value >= limit[1] if limit[0] == ">=" else
                                                              value <= limit[1])
        out = {"value": value, "what": what, "numerator": num, "denominator": den,
               "limit": f"{limit[0]} {limit[1]:g}" if limit else None, "pass": passed}
        if value is None:
            out["reason"] = f"{num} or {den} not run" if den else f"{num} not run"
        return out

    fast, raw = _get(by_name.get("replay_fast_2d"), "mb_per_s"), _get(by_name.get("replay_raw_read"), "mb_per_s")
    return {
        "replay_1k_lateness_p99_ms": item(_get(by_name.get("replay_pace_1k"), "extra", "lateness_ms", "p99"),
                                          "replay at 1 kHz, speed 1: lateness p99 (ms)", "replay_pace_1k", None,
                                          ("<=", 1.0)),
        "replay_10k_lateness_p99_ms": item(_get(by_name.get("replay_pace_10k"), "extra", "lateness_ms", "p99"),
                                           "replay at 10 kHz, speed 1: lateness p99 (ms)", "replay_pace_10k",
                                           None, None),
        "replay_2d_loop_lag_p99_ms": item(_get(by_name.get("replay_lag_2d"), "loop_lag_ms", "p99"),
                                          "replaying 2D 512x512 lz4 at 500 Hz: loop lag p99 (ms)", "replay_lag_2d",
                                          None, ("<=", 2.0)),
        "replay_fast_vs_raw_read": item(fast / raw if fast is not None and raw else None,
                                        "replay speed=None MB/s / the reader's sequential range reads MB/s",
                                        "replay_fast_2d", "replay_raw_read", (">=", 0.8)),
    }
