"""Scan scenarios: the continuous 2D figure's frames (512x512 uint16), pushed into a
grid scan by point, timed like the continuous scenarios (from before ``open_saver`` to
after the file is closed and fsynced), with the same queue size and heartbeat:

    scan = saver.add_scan("Scan", axes=[Axis("x", values=...), Axis("y", values=...)])
    image = scan.add_detector("Camera").add_channel("image", shape=(512, 512), dtype="uint16")
    await image.push(frame, index=(ix, iy))

``ss_scan_2d_lz4`` and ``ss_scan_2d_none`` go through the grid in raster order
(64 x 63 = 4,032 points; 20 x 20 quick); ``ss_scan_2d_lz4_random`` in a shuffled order
(fixed seed), which leaves chunks partly filled across flushes. The report compares
each with the continuous scenario of the same codec from the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.lowlevel
import numpy as np

from ._common import Ctx, Entry, Skip
from ._frames import KINDS, Array, load_pool
from ._probe import Heartbeat, Latency, peak_rss_mib, rss_mib
from ._scenarios import GROUP, compression_arg, first_leaf, import_streamsave, timings_dict

FULL_GRID: Final = (64, 63)
QUICK_GRID: Final = (20, 20)


async def _main(ss: Any, compression: str, shuffled: bool, grid: tuple[int, int], pool: Array, path: Path,
                lat: Latency) -> tuple[float, Any, Heartbeat, Any]:
    hb = Heartbeat()
    points = [(ix, iy) for ix in range(grid[0]) for iy in range(grid[1])]
    if shuffled:
        points = [points[i] for i in np.random.default_rng(1234).permutation(len(points))]
    axes = [ss.Axis("x", units="mm", values=np.arange(grid[0]) * 0.1),
            ss.Axis("y", units="mm", values=np.arange(grid[1]) * 0.1)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(hb.run)
        await anyio.sleep(0.005)
        t0 = time.perf_counter()
        async with ss.open_saver(path, mode="w", compression=compression_arg(ss, compression),
                                 queue_size=256, overflow="block") as saver:
            image = saver.add_scan("Scan", axes=axes).add_detector("Camera").add_channel(
                "image", shape=(512, 512), dtype="uint16")
            push, out, clock, size = image.push, lat.ns, time.perf_counter_ns, pool.shape[0]
            for i, point in enumerate(points):
                t = clock()
                await push(pool[i % size], index=point)
                out[i] = clock() - t
                await anyio.lowlevel.checkpoint()
        seconds = time.perf_counter() - t0
        tg.cancel_scope.cancel()
    return seconds, image.statistics(), hb, saver.statistics()


def _run(name: str, compression: str, shuffled: bool, ctx: Ctx) -> Entry:
    grid = QUICK_GRID if ctx.quick else FULL_GRID
    n = grid[0] * grid[1]
    entry = Entry(name, GROUP, params={"compression": compression, "grid": list(grid), "order":
                                       "shuffled" if shuffled else "raster", "kind": "2d512",
                                       "frame_bytes": KINDS["2d512"].nbytes, "queue_size": 256,
                                       "frames": n})
    ss = import_streamsave()
    if not hasattr(ss, "Scan"):
        raise Skip("this streamsave has no scans (saver.add_scan)")
    pool = load_pool("2d512", ctx.workdir)
    path = ctx.workdir / f"{name}.h5"
    lat = Latency(n)
    rss0 = rss_mib()
    try:
        try:
            seconds, stats, hb, saver_stats = anyio.run(_main, ss, compression, shuffled, grid, pool, path, lat)
        except BaseException as exc:
            leaf = first_leaf(exc)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise Skip(f"streamsave raised {type(leaf).__name__}: {leaf}") from leaf
        file_bytes = path.stat().st_size if path.exists() else 0
    finally:
        path.unlink(missing_ok=True)
    entry.finish(n, n * KINDS["2d512"].nbytes, seconds)
    entry.ratio = stats.bytes_written / stats.bytes_stored if stats.bytes_stored else None
    entry.loop_lag_ms = hb.summary()
    entry.push_latency_us = lat.summary()
    entry.peak_rss_mib = peak_rss_mib()
    entry.extra = {"rss_before_mib": rss0, "file_bytes": file_bytes, "timings": timings_dict(saver_stats),
                   "frames_written": stats.frames_written, "frames_pushed": stats.frames_pushed}
    if stats.frames_written != n:
        entry.extra["warning"] = f"{stats.frames_written} of {n} frames written"
    return entry


SCAN_BENCHMARKS: Final[dict[str, Callable[[Ctx], Entry]]] = {
    "ss_scan_2d_none": lambda ctx: _run("ss_scan_2d_none", "none", False, ctx),
    "ss_scan_2d_lz4": lambda ctx: _run("ss_scan_2d_lz4", "lz4", False, ctx),
    "ss_scan_2d_lz4_random": lambda ctx: _run("ss_scan_2d_lz4_random", "lz4", True, ctx),
}
