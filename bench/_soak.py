"""``--soak SECONDS``: a sustained 2D blosc2-lz4 run, reporting throughput and RSS every
10 s. To stay within the disk, the run rolls over to a new file (and deletes the old
one) whenever the current file has stored about a quarter of the free space, at most
16 GiB; the rollovers are counted in the result."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import anyio
import anyio.lowlevel

from ._common import MB, MIB, Ctx, Entry
from ._frames import KINDS, Array, load_pool
from ._probe import Heartbeat, peak_rss_mib, rss_mib
from ._scenarios import import_streamsave

REPORT_EVERY: Final = 10.0


@dataclass
class _State:
    done_frames: int = 0  # frames written to files already closed
    current: Any = None  # the open channel
    samples: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0

    def frames_written(self) -> int:
        cur = self.current
        return self.done_frames + (int(cur.statistics().frames_written) if cur else 0)


async def _reporter(state: _State, t0: float, frame_bytes: int) -> None:
    last_t, last_n = t0, 0
    while True:
        await anyio.sleep(REPORT_EVERY)
        now, n = time.perf_counter(), state.frames_written()
        sample = {"t_s": now - t0, "frames_written": n,
                  "mb_per_s": (n - last_n) * frame_bytes / MB / (now - last_t),
                  "rss_mib": rss_mib(), "peak_rss_mib": peak_rss_mib(), "files": state.files}
        state.samples.append(sample)
        print(f"soak t={sample['t_s']:7.1f}s  {sample['mb_per_s']:8.1f} MB/s  "
              f"rss {sample['rss_mib']:7.1f} MiB  frames {n}", file=sys.stderr, flush=True)
        last_t, last_n = now, n


async def _soak(ctx: Ctx, pool: Array, state: _State, hb: Heartbeat) -> float:
    ss = import_streamsave()
    kind = KINDS["2d512"]
    budget = min(16 * 1024 * MIB, shutil.disk_usage(ctx.workdir).free // 4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(hb.run)
        t0 = time.perf_counter()
        tg.start_soon(_reporter, state, t0, kind.nbytes)
        deadline, i = t0 + ctx.soak_seconds, 0
        while time.perf_counter() < deadline:
            path = ctx.workdir / f"soak-{state.files}.h5"
            try:
                async with ss.open_saver(path, mode="w", compression="blosc2-lz4",
                                         flush_interval=1.0, queue_size=256,
                                         overflow="block", swmr=True) as saver:
                    ch = saver.add_detector("Camera").add_channel(
                        "image", shape=kind.shape, dtype=kind.dtype)
                    state.current = ch
                    while time.perf_counter() < deadline:
                        for _ in range(64):
                            await ch.push(pool[i % pool.shape[0]])
                            await anyio.lowlevel.checkpoint()
                            i += 1
                        if ch.statistics().bytes_stored > budget:
                            break
                state.done_frames += int(ch.statistics().frames_written)
                state.current = None
                state.files += 1
            finally:  # unlinking a file of several GB takes seconds: not on the loop being measured
                await anyio.to_thread.run_sync(partial(path.unlink, missing_ok=True))
        seconds = time.perf_counter() - t0
        tg.cancel_scope.cancel()
    return seconds


def run_soak(ctx: Ctx) -> Entry:
    kind = KINDS["2d512"]
    entry = Entry("soak_2d_lz4", "soak", params={
        "kind": kind.key, "frame_bytes": kind.nbytes, "compression": "lz4",
        "soak_seconds": ctx.soak_seconds, "report_every_s": REPORT_EVERY})
    import_streamsave()
    pool = load_pool(kind.key, ctx.workdir)
    state, hb, rss0 = _State(), Heartbeat(), rss_mib()
    seconds = anyio.run(_soak, ctx, pool, state, hb)
    entry.finish(state.done_frames, state.done_frames * kind.nbytes, seconds)
    entry.loop_lag_ms = hb.summary()
    entry.peak_rss_mib = peak_rss_mib()
    entry.extra = {"samples": state.samples, "files": state.files, "rss_before_mib": rss0}
    return entry
