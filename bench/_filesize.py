"""Slow sensor file size: one channel, one frame pushed then ``await saver.flush()``,
repeated, for every codec (none, blosc2-lz4, blosc2-zstd) with SWMR on and off.

A measurement of the file, not a timed test: each configuration writes its own file
(``flush_interval`` is set to an hour, so the only flushes are the explicit ones and
the one at close), and the file's size after close is compared with the bytes of the
values and their timestamps (8 bytes per frame). The file's datasets (shape, chunks,
filters, storage) are recorded too. Checked (see ``_report``):

* file size <= ``SIZE_FACTOR`` x (values + timestamps) + ``ALLOWANCE`` per channel
  (the fixed cost of the file and of one channel's metadata, groups and attributes;
  it also has to absorb the engine's per-flush journal, 16 bytes a flush here);
* a compressed file <= ``COMPRESSED_FACTOR`` x the uncompressed file of the same
  frames and SWMR setting (re-storing a growing partly filled chunk at every flush
  must not make compression cost space).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import anyio

from ._common import Ctx, Entry, Skip
from ._frames import KINDS, Array, frame_at, load_pool
from ._probe import peak_rss_mib, rss_mib
from ._scenarios import compression_arg, first_leaf, import_streamsave, timings_dict

GROUP: Final = "size"
TIMESTAMP_BYTES: Final = 8  # one float64 timestamp per frame
ALLOWANCE: Final = 256 * 1024  # bytes per channel: file, group and attribute overhead
SIZE_FACTOR: Final = 1.2
COMPRESSED_FACTOR: Final = 1.1
CODECS: Final = ("none", "lz4", "zstd")
CODEC_NAMES: Final = {"none": "none", "lz4": "blosc2-lz4", "zstd": "blosc2-zstd"}
FLUSH_INTERVAL: Final = 3600.0  # s: no timed flush during a run, only the explicit ones

# entry name -> (frame kind, flushes in a full run, in a quick run). The 1D counts are
# whole 2 MiB chunks (128 spectra): an uncompressed chunk is allocated in full, so a
# partly used last chunk would be measured as up to 2 MiB of "overhead" that is only
# the chunk size; the 0D run (6,000 values, 16,384 per chunk) is all partial chunk.
SLOW: Final = {
    "size_slow_0d": ("0d", 6000, 600),
    "size_slow_1d": ("1d", 512, 128),
}


async def _write(ss: ModuleType, path: Path, key: str, pool: Array, n: int, codec: str,
                 swmr: bool) -> dict[str, Any]:
    kind = KINDS[key]
    t0 = time.perf_counter()
    async with ss.open_saver(path, mode="w", compression=compression_arg(ss, codec),
                             flush_interval=FLUSH_INTERVAL, swmr=swmr) as saver:
        ch = saver.add_detector("Sensor").add_channel("value", shape=kind.shape, dtype=kind.dtype)
        flush_s = 0.0
        for i in range(n):
            await ch.push(frame_at(pool, i))
            t = time.perf_counter()
            await saver.flush()
            flush_s += time.perf_counter() - t
    seconds = time.perf_counter() - t0
    st, cst = saver.statistics(), ch.statistics()
    return {"seconds": seconds, "await_flush_mean_ms": flush_s / n * 1e3 if n else None,
            "flushes": st.flushes, "frames_written": cst.frames_written,
            "bytes_stored": cst.bytes_stored, "timings": timings_dict(st)}


def _layout(path: Path) -> list[dict[str, Any]]:
    """Every dataset in the file: path, shape, chunk shape, filter ids (read with h5py)."""
    import h5py

    out: list[dict[str, Any]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out.append({"path": name, "shape": list(obj.shape),
                        "chunks": list(obj.chunks) if obj.chunks else None,
                        "filters": sorted(str(k) for k in obj._filters),
                        "storage_bytes": int(obj.id.get_storage_size())})

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except Exception as exc:  # the size is still measured; say why the layout is not
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    return out


def _check(configs: list[dict[str, Any]]) -> None:
    """Per configuration: the size limit, and compressed / uncompressed of the same SWMR
    setting."""
    none = {c["swmr"]: c["file_bytes"] for c in configs if c["codec"] == "none"}
    for c in configs:
        c["allowed_bytes"] = SIZE_FACTOR * c["data_bytes"] + ALLOWANCE * c["channels"]
        c["size_vs_allowed"] = c["file_bytes"] / c["allowed_bytes"]
        c["size_ok"] = c["file_bytes"] <= c["allowed_bytes"]
        ref = none.get(c["swmr"])
        if c["codec"] != "none" and ref:
            c["vs_uncompressed"] = c["file_bytes"] / ref
            c["vs_uncompressed_ok"] = c["vs_uncompressed"] <= COMPRESSED_FACTOR


def run_slow(name: str, ctx: Ctx) -> Entry:
    key, full, quick = SLOW[name]
    kind = KINDS[key]
    n = ctx.count(full, quick)
    entry = Entry(name, GROUP, params={
        "kind": key, "frame_bytes": kind.nbytes, "frames_per_file": n, "frames_per_flush": 1,
        "codecs": [CODEC_NAMES[c] for c in CODECS], "swmr": [True, False],
        "flush_interval": FLUSH_INTERVAL, "timestamp_bytes": TIMESTAMP_BYTES,
        "allowance_bytes_per_channel": ALLOWANCE, "size_factor": SIZE_FACTOR,
        "compressed_factor": COMPRESSED_FACTOR,
    })
    ss = import_streamsave()
    pool = load_pool(key, ctx.workdir)
    rss0 = rss_mib()
    configs: list[dict[str, Any]] = []
    total_s = 0.0
    for swmr in (True, False):
        for codec in CODECS:
            path = ctx.workdir / f"{name}-{codec}-{'swmr' if swmr else 'plain'}.h5"
            try:
                try:
                    got = anyio.run(_write, ss, path, key, pool, n, codec, swmr)
                except Exception as exc:
                    leaf = first_leaf(exc)
                    if isinstance(leaf, Skip):
                        raise leaf from None
                    raise Skip(f"streamsave raised {type(leaf).__name__}: {leaf} "
                               f"({CODEC_NAMES[codec]}, swmr={swmr})") from leaf
                file_bytes = path.stat().st_size
                layout = _layout(path)
            finally:
                path.unlink(missing_ok=True)
            data = n * (kind.nbytes + TIMESTAMP_BYTES)
            total_s += got["seconds"]
            configs.append({"codec": CODEC_NAMES[codec], "swmr": swmr, "frames": n, "channels": 1,
                            "file_bytes": file_bytes, "data_bytes": data,
                            "file_over_data": file_bytes / data, **got, "datasets": layout})
    _check(configs)
    entry.finish(n * len(configs), n * len(configs) * kind.nbytes, total_s)
    entry.peak_rss_mib = peak_rss_mib()
    entry.extra = {"configs": configs, "rss_before_mib": rss0,
                   "rss_growth_mib": entry.peak_rss_mib - rss0}
    bad = [c for c in configs if c["frames_written"] != n]
    if bad:
        entry.extra["warning"] = "frames_written != frames pushed in " + ", ".join(
            f"{c['codec']}/swmr={c['swmr']}" for c in bad)
    return entry


def _runner(name: str) -> Callable[[Ctx], Entry]:
    def run(ctx: Ctx) -> Entry:
        return run_slow(name, ctx)
    return run


SIZE_BENCHMARKS: Final[dict[str, Callable[[Ctx], Entry]]] = {name: _runner(name) for name in SLOW}
