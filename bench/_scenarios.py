"""streamsave scenarios, written against the public API only:

    async with streamsave.open_saver(path, mode="w", compression=..., flush_interval=...,
                                     queue_size=..., overflow="block", swmr=...) as saver:
        ch = saver.add_detector(name).add_channel(name, shape=..., dtype=...)
        await ch.push(frame) / await ch.push_many(block)

Each run is timed from before ``open_saver`` to after the block is left (everything
written, file closed and fsynced), with a 1 ms heartbeat task in the same event loop
and every ``await push`` timed. A scenario that cannot run (streamsave missing, or it
raises) is recorded as skipped with the reason.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import anyio
import anyio.abc
import anyio.lowlevel

from ._common import Ctx, Entry, Skip
from ._frames import KINDS, Array, load_pool, make_blocks
from ._probe import Heartbeat, Latency, peak_rss_mib, rss_mib

GROUP: Final = "streamsave"


@dataclass(frozen=True)
class Chan:
    """One channel to push: ``full``/``quick`` frames, one at a time or in blocks."""

    detector: str
    name: str
    kind: str
    full: int
    quick: int
    block: int = 0  # > 0: push_many blocks of this many frames
    yield_every: int = 0  # > 0: the producer yields to the loop every N pushes
    metadata: int = 0  # > 0: this many float64 metadata values per frame (push(frame, metadata={...}))


@dataclass(frozen=True)
class Scenario:
    name: str
    channels: tuple[Chan, ...]
    compression: str = "none"  # none | lz4 | zstd | zstd1bit
    swmr: bool | None = True  # None: not passed (the backend's default)
    flush_interval: float = 1.0
    queue_size: int = 256
    subscribers: int = 0
    series: str | None = None  # label in the throughput plot (single-channel runs)
    fsync: str | None = None  # open_saver(fsync=...); None: not passed (the default)
    backend: str = "h5py"  # open_saver(backend=...), a name or a key of BACKEND_CLASSES


def _cam(n: int = 4000, q: int = 400) -> Chan:
    return Chan("Camera", "image", "2d512", n, q, yield_every=1)


def _spectra(n: int = 50_000, q: int = 5_000) -> Chan:
    return Chan("Spectrometer", "spectrum", "1d", n, q, yield_every=16)


_SIXTEEN: Final = tuple(
    Chan(f"Spectrometer{i:02d}", "spectrum", "1d", 5_000, 500, yield_every=16) for i in range(16))

#: the backends measured beside the default (h5py, ss_2d_lz4) in the same run, as
#: ss_2d_lz4_<name>: each with its own default SWMR setting (none of these has SWMR)
BACKENDS: Final = ("tables", "h5py-rows", "h5pyd")
#: benchmark-only backend names -> "module:Class"
BACKEND_CLASSES: Final = {"h5py-rows": "streamsave.backends.h5py_rows:H5pyRowsBackend"}

SCENARIOS: Final = {s.name: s for s in (
    Scenario("ss_2d_none", (_cam(),), "none", series="streamsave uncompressed"),
    Scenario("ss_2d_lz4", (_cam(),), "lz4", series="streamsave blosc2-lz4"),
    Scenario("ss_2d_zstd1bit", (_cam(),), "zstd1bit", series="streamsave zstd-1 bitshuffle"),
    # ss_2d_none with 4 named float64 values per frame (areaDetector's NDAttributes)
    Scenario("ss_2d_none_meta4", (Chan("Camera", "image", "2d512", 4000, 400, yield_every=1, metadata=4),), "none"),
    # 64 frames of 8 MiB: a 512 MiB queue (256 would ask for 2 GiB, over the engine's
    # default memory budget)
    Scenario("ss_2d2048_lz4", (Chan("Camera", "image", "2d2048", 500, 40, yield_every=1),), "lz4",
             queue_size=64, series="streamsave blosc2-lz4"),
    Scenario("ss_1d", (_spectra(),), "none", series="streamsave uncompressed"),
    Scenario("ss_0d_push", (Chan("Thermometer", "T", "0d", 1_000_000, 50_000),), "none",
             series="streamsave uncompressed"),
    Scenario("ss_0d_push_many",
             (Chan("Thermometer", "T", "0d", 10_000_000, 1_000_000, block=1000),), "none",
             queue_size=16_384, series="streamsave push_many"),
    Scenario("ss_16x1d", _SIXTEEN, "none"),
    Scenario("ss_mixed", (_cam(1000, 100), _spectra(10_000, 1_000),
                          Chan("Thermometer", "T", "0d", 10_000, 1_000, yield_every=16)), "lz4"),
    Scenario("ss_2d_lz4_swmr_off", (_cam(),), "lz4", swmr=False),
    Scenario("ss_2d_lz4_flush01", (_cam(),), "lz4", flush_interval=0.1),
    # 0 subscribers is ss_2d_lz4 itself
    Scenario("ss_2d_lz4_sub3", (_cam(),), "lz4", subscribers=3),
    # fsync="flush" (fdatasync at every flush) against the default (fsync only at close),
    # in pairs: ss_fsync_<case>_close / ss_fsync_<case>_flush. Longer than ss_2d_lz4 and
    # ss_1d so that a 1 s flush interval still gives a few flushes.
    *(Scenario(f"ss_fsync_{case}_{mode}", (chan,), comp, flush_interval=interval,
               fsync=None if mode == "close" else "flush")
      for case, chan, comp, interval in (
          ("2d_lz4_f1", _cam(12_000, 800), "lz4", 1.0),
          ("2d_lz4_f01", _cam(12_000, 800), "lz4", 0.1),
          ("1d_f1", _spectra(250_000, 20_000), "none", 1.0),
          ("1d_f01", _spectra(250_000, 20_000), "none", 0.1))
      for mode in ("close", "flush")),
    *(Scenario(f"ss_2d_lz4_{backend.replace('-', '_')}", (_cam(),), "lz4", swmr=None, backend=backend)
      for backend in BACKENDS),
)}


def backend_arg(sc: Scenario, workdir: Path) -> dict[str, Any]:
    """``open_saver`` keywords for the scenario's backend (none for the default)."""
    if sc.backend == "h5py":
        return {}
    if sc.backend == "h5pyd":  # a local HSDS, started by this process (bench/_hsds.py)
        from . import _hsds

        return {"backend": "h5pyd", "backend_options": _hsds.connection(workdir)}
    spec = BACKEND_CLASSES.get(sc.backend)
    if spec is None:
        return {"backend": sc.backend}
    module, _, name = spec.partition(":")
    try:
        return {"backend": getattr(importlib.import_module(module), name)}
    except (ImportError, AttributeError) as exc:
        raise Skip(f"backend {sc.backend!r} is not available: {exc!r}") from exc


def import_streamsave() -> ModuleType:
    try:
        import streamsave
    except Exception as exc:
        raise Skip(f"streamsave is not importable: {exc!r}") from exc
    if not hasattr(streamsave, "open_saver"):
        raise Skip("streamsave has no open_saver() yet")
    return streamsave


def compression_arg(ss: ModuleType, key: str) -> Any:
    if key == "zstd1bit":
        return ss.Compression(codec="zstd", level=1, shuffle="bit")
    return {"none": None, "lz4": "blosc2-lz4", "zstd": "blosc2-zstd"}[key]


def first_leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


# --- HOOK: event subscribers ------------------------------------------------------------
# ``async with saver.subscribe() as sub: async for event in sub`` (the iteration ends
# after FileClosed). A streamsave without subscribe() skips scenarios with subscribers.
async def _attach_subscribers(saver: Any, n: int, tg: anyio.abc.TaskGroup,
                              counts: list[int]) -> None:
    if n == 0:
        return
    subscribe = getattr(saver, "subscribe", None)
    if subscribe is None:
        raise Skip("saver has no subscribe() (event subscribers)")
    for i in range(n):
        counts.append(0)
        tg.start_soon(_consume, subscribe(), counts, i)


async def _consume(subscription: Any, counts: list[int], i: int) -> None:
    if hasattr(subscription, "__aenter__"):
        async with subscription as events:
            async for _ in events:
                counts[i] += 1
    else:
        async for _ in subscription:
            counts[i] += 1
# --- end of HOOK -------------------------------------------------------------------------


async def _push_frames(ch: Any, pool: Array, n: int, yield_every: int, lat: Latency) -> None:
    push, out, clock = ch.push, lat.ns, time.perf_counter_ns
    size = pool.shape[0]
    for i in range(n):
        t = clock()
        await push(pool[i % size])
        out[i] = clock() - t
        if yield_every and (i + 1) % yield_every == 0:
            await anyio.lowlevel.checkpoint()


#: the metadata of the scenarios that push some: name -> dtype
META_NAMES: Final = ("exposure", "temperature", "x", "y", "gain", "counter", "humidity", "pressure")


async def _push_frames_meta(ch: Any, pool: Array, n: int, yield_every: int, lat: Latency, k: int) -> None:
    """``_push_frames`` with ``k`` metadata values per frame, a new dict each frame as a
    driver would build it."""
    push, out, clock = ch.push, lat.ns, time.perf_counter_ns
    size = pool.shape[0]
    names = META_NAMES[:k]
    for i in range(n):
        t = clock()
        value = float(i)
        await push(pool[i % size], metadata={name: value for name in names})
        out[i] = clock() - t
        if yield_every and (i + 1) % yield_every == 0:
            await anyio.lowlevel.checkpoint()


async def _push_blocks(ch: Any, blocks: list[Array], n: int, lat: Latency) -> None:
    push_many, out, clock = ch.push_many, lat.ns, time.perf_counter_ns
    done, k, size = 0, 0, blocks[0].shape[0]
    while done < n:
        block = blocks[k % len(blocks)]
        if n - done < size:
            block = block[: n - done]
        t = clock()
        await push_many(block)
        out[k] = clock() - t
        done += block.shape[0]
        k += 1


@dataclass
class _Outcome:
    seconds: float
    stats: list[Any]
    lat: list[Latency]
    heartbeat: Heartbeat
    events: list[int]
    saver_stats: Any = None


async def _main(ss: ModuleType, sc: Scenario, ctx: Ctx, pools: dict[str, Array],
                path: Path, lats: list[Latency]) -> _Outcome:
    hb = Heartbeat()
    events: list[int] = []
    blocks = {c.kind: make_blocks(pools[c.kind], c.block, 4) for c in sc.channels if c.block}
    async with anyio.create_task_group() as tg:
        tg.start_soon(hb.run)
        await anyio.sleep(0.005)
        options: dict[str, Any] = {} if sc.fsync is None else {"fsync": sc.fsync}
        options |= backend_arg(sc, path.parent) | ({} if sc.swmr is None else {"swmr": sc.swmr})
        target: Any = path
        if sc.backend == "h5pyd":
            from . import _hsds

            target = _hsds.domain(path.stem)
        t0 = time.perf_counter()
        async with ss.open_saver(target, mode="w", compression=compression_arg(ss, sc.compression),
                                 flush_interval=sc.flush_interval, queue_size=sc.queue_size,
                                 overflow="block", **options) as saver:
            dets: dict[str, Any] = {}
            chans = []
            for c in sc.channels:
                if c.detector not in dets:
                    dets[c.detector] = saver.add_detector(c.detector)
                kind = KINDS[c.kind]
                extra = {"metadata": dict.fromkeys(META_NAMES[:c.metadata], "float64")} if c.metadata else {}
                chans.append(dets[c.detector].add_channel(c.name, shape=kind.shape,
                                                          dtype=kind.dtype, **extra))
            await _attach_subscribers(saver, sc.subscribers, tg, events)
            async with anyio.create_task_group() as pushers:
                for c, ch, lat in zip(sc.channels, chans, lats, strict=True):
                    n = ctx.count(c.full, c.quick)
                    if c.block:
                        pushers.start_soon(_push_blocks, ch, blocks[c.kind], n, lat)
                    elif c.metadata:
                        pushers.start_soon(_push_frames_meta, ch, pools[c.kind], n, c.yield_every, lat,
                                           c.metadata)
                    else:
                        pushers.start_soon(_push_frames, ch, pools[c.kind], n, c.yield_every,
                                           lat)
            before_close = [ch.statistics() for ch in chans]
        seconds = time.perf_counter() - t0
        tg.cancel_scope.cancel()
    try:
        stats = [ch.statistics() for ch in chans]
    except Exception:
        stats = before_close
    try:
        saver_stats = saver.statistics()
    except Exception:
        saver_stats = None
    return _Outcome(seconds, stats, lats, hb, events, saver_stats)


def run_scenario(name: str, ctx: Ctx) -> Entry:
    sc = SCENARIOS[name]
    entry = Entry(name, GROUP, params=_params(sc, ctx))
    ss = import_streamsave()
    pools = {c.kind: load_pool(c.kind, ctx.workdir) for c in sc.channels}
    path = ctx.workdir / f"{name}.h5"
    lats = [Latency(-(-ctx.count(c.full, c.quick) // max(1, c.block))) for c in sc.channels]
    rss0 = rss_mib()
    try:
        try:
            with SyncCounter() as syncs:
                out = anyio.run(_main, ss, sc, ctx, pools, path, lats)
        except BaseException as exc:  # unwrap task-group errors
            leaf = first_leaf(exc)
            if isinstance(leaf, Skip):
                raise leaf from None
            if isinstance(exc, KeyboardInterrupt):
                raise
            config_error = getattr(ss, "ConfigError", None)
            if sc.fsync is not None and isinstance(config_error, type) and isinstance(leaf, config_error):
                raise Skip(f"fsync={sc.fsync!r} is not supported by this streamsave "
                           f"(ConfigError: {leaf})") from leaf
            raise Skip(f"streamsave raised {type(leaf).__name__}: {leaf}") from leaf
        file_bytes = path.stat().st_size if path.exists() else 0
    finally:
        path.unlink(missing_ok=True)
    entry = _fill(entry, sc, ctx, out, file_bytes, rss0)
    _fill_sync(entry, sc, out, syncs.calls)
    return entry


def _fill(entry: Entry, sc: Scenario, ctx: Ctx, out: _Outcome, file_bytes: int,
          rss0: float) -> Entry:
    frames = sum(ctx.count(c.full, c.quick) for c in sc.channels)
    raw = sum(ctx.count(c.full, c.quick) * KINDS[c.kind].nbytes for c in sc.channels)
    entry.finish(frames, raw, out.seconds)
    written = sum(int(getattr(s, "bytes_written", 0)) for s in out.stats)
    stored = sum(int(getattr(s, "bytes_stored", 0)) for s in out.stats)
    entry.ratio = written / stored if stored else (raw / file_bytes if file_bytes else None)
    entry.loop_lag_ms = out.heartbeat.summary()
    entry.push_latency_us = Latency.merged_summary(out.lat)
    peak = peak_rss_mib()
    entry.peak_rss_mib = peak
    entry.extra = {
        "rss_before_mib": rss0, "rss_growth_mib": peak - rss0, "file_bytes": file_bytes,
        "channels": [_stats_dict(s, lat) for s, lat in zip(out.stats, out.lat, strict=True)],
        "events_received": out.events,
    }
    pushed_bad = [s for s in out.stats
                  if getattr(s, "frames_written", None) != getattr(s, "frames_pushed", None)
                  or getattr(s, "frames_dropped", 0)]
    if pushed_bad:
        entry.extra["warning"] = "frames_written != frames_pushed or frames dropped"
    return entry


def timings_dict(saver_stats: Any) -> dict[str, dict[str, float]]:
    """``SaverStatistics.timings`` as JSON: calls, mean/max/last in milliseconds."""
    timings = getattr(saver_stats, "timings", None) or {}
    out: dict[str, dict[str, float]] = {}
    for op, t in timings.items():
        out[str(op)] = {"calls": float(getattr(t, "calls", 0)),
                        "mean_ms": float(getattr(t, "mean", 0.0)) * 1e3,
                        "max_ms": float(getattr(t, "max", 0.0)) * 1e3,
                        "last_ms": float(getattr(t, "last", 0.0)) * 1e3}
    return out


def _fill_sync(entry: Entry, sc: Scenario, out: _Outcome, sync_calls: int) -> None:
    """Flush count, writer timings and fsync calls; a warning when ``fsync="flush"`` was
    accepted but the process did not sync at (about) every flush."""
    flushes = getattr(out.saver_stats, "flushes", None)
    entry.extra["timings"] = timings_dict(out.saver_stats)
    entry.extra["flushes"] = flushes
    entry.extra["fsync_calls"] = sync_calls
    if sc.fsync == "flush" and isinstance(flushes, int) and sync_calls < max(2, flushes // 2):
        entry.extra["fsync_warning"] = (
            f"fsync='flush' was accepted but only {sync_calls} fsync/fdatasync call(s) were seen "
            f"for {flushes} flushes: the per-flush sync looks unimplemented")


class SyncCounter:
    """Counts ``os.fsync``/``os.fdatasync``/``os.sync`` calls in this process (any thread)
    while active, by wrapping them: a black-box check that a durability option does
    what it says. The engine calls them through ``os``, looked up at call time."""

    NAMES: Final = ("fsync", "fdatasync", "sync")

    def __init__(self) -> None:
        self.calls = 0
        self._saved: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _wrap(self, real: Any) -> Any:
        def counted(*args: Any) -> Any:
            with self._lock:
                self.calls += 1
            return real(*args)
        return counted

    def __enter__(self) -> SyncCounter:
        for name in self.NAMES:
            real = getattr(os, name, None)
            if real is not None:
                self._saved[name] = real
                setattr(os, name, self._wrap(real))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, real in self._saved.items():
            setattr(os, name, real)
        self._saved.clear()


def _stats_dict(stats: Any, lat: Latency) -> dict[str, Any]:
    asdict = getattr(stats, "_asdict", None)
    out: dict[str, Any] = {}
    if asdict is not None:
        out = {k: v for k, v in asdict().items() if isinstance(v, int | float | str | None)}
    out["push_latency_us"] = lat.summary()
    return out


def _params(sc: Scenario, ctx: Ctx) -> dict[str, Any]:
    first = KINDS[sc.channels[0].kind]
    params: dict[str, Any] = {
        "compression": sc.compression, "swmr": sc.swmr, "flush_interval": sc.flush_interval,
        "queue_size": sc.queue_size, "overflow": "block", "subscribers": sc.subscribers,
        "fsync": sc.fsync or "default (close)", "backend": sc.backend,
        "n_channels": len(sc.channels), "kind": first.key, "frame_bytes": first.nbytes,
        "channels": [{"detector": c.detector, "channel": c.name, "kind": c.kind,
                      "frames": ctx.count(c.full, c.quick), "push_many_block": c.block,
                      "yield_every": c.yield_every, "metadata_values": c.metadata} for c in sc.channels],
        "cpu_count": os.cpu_count(),
    }
    if sc.series is not None:
        params["series"] = sc.series
    return params
