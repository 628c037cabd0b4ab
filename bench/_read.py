"""Reading back a file streamsave wrote: the reader, plain h5py + hdf5plugin, and a
direct chunk read decompressed with blosc2 in a thread pool, over the same reads.

The file (2D 512x512 uint16 frames, blosc2-lz4, ``CHUNK_FRAMES`` frames per chunk) is
written once per run with ``streamsave.open_saver`` into the run's directory and reused
by every read benchmark (not timed; it is in the page cache, so these measure the
decoding path, not the disk). Each benchmark times one pass of one kind of read:

* ``*_random``: single frames at ``RANDOM`` random indices (fixed seed), one call each;
* ``*_range``: sequential ranges of ``RANGE_FRAMES`` frames through the whole file.

Readers: ``reader`` is ``streamsave.open_reader(path).channels[...][i]`` / ``[lo:hi]``;
``h5py`` is ``h5py.File`` + ``hdf5plugin`` (HDF5's filter pipeline) on the same
dataset; ``direct`` reads each stored chunk with ``dset.id.read_direct_chunk`` and
decompresses the blosc2 super-chunk frame itself (a chunk with filter mask bit 0 set is
stored raw), in the calling thread for a single frame and in a ``ThreadPoolExecutor``
of ``DIRECT_WORKERS`` for a range. Before timing, ``direct`` checks that it returns
frames bit-identical to h5py's for every read it is about to time.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import anyio
import numpy as np

from ._common import Ctx, Entry, Skip
from ._frames import KINDS, Array, frame_at, load_pool
from ._probe import peak_rss_mib, rss_mib
from ._scenarios import first_leaf, import_streamsave

GROUP: Final = "read"
KIND: Final = "2d512"
FRAMES: Final = (2000, 400)  # frames in the file: full, quick
RANDOM: Final = (500, 100)  # random single-frame reads: full, quick
RANGE_FRAMES: Final = 64
CHUNK_FRAMES: Final = 4
DIRECT_WORKERS: Final = 2
SEED: Final = 2024
DETECTOR, CHANNEL = "Camera", "image"
BLOSC2_FILTER: Final = 32026

READERS: Final = ("reader", "h5py", "direct")
MODES: Final = ("random", "range")


# --- the file -----------------------------------------------------------------------------
async def _write(ss: ModuleType, path: Path, n: int) -> None:
    pool = load_pool(KIND, path.parent)
    kind = KINDS[KIND]
    async with ss.open_saver(path, mode="w", compression="blosc2-lz4", overflow="block") as saver:
        ch = saver.add_detector(DETECTOR).add_channel(CHANNEL, shape=kind.shape, dtype=kind.dtype,
                                                      chunk_frames=CHUNK_FRAMES)
        for i in range(n):
            await ch.push(frame_at(pool, i))


def ensure_file(ctx: Ctx) -> tuple[Path, float]:
    """The run's read file (written on first use, then shared) and its writing time
    (0 when it already existed)."""
    n = ctx.count(*FRAMES)
    ss = import_streamsave()
    # one file per engine (``--against`` runs two in the same directory)
    engine = hashlib.sha1(str(Path(ss.__file__ or "").parent).encode()).hexdigest()[:8]
    path = ctx.workdir / f"read-{KIND}-lz4-{n}-{engine}.h5"
    if path.exists():
        return path, 0.0
    tmp = path.with_suffix(f".{os.getpid()}.tmp.h5")
    # the saver sets BLOSC_NTHREADS for its own process; the reads that follow in this
    # process must see the environment the other read benchmarks see
    saved = os.environ.get("BLOSC_NTHREADS")
    t0 = time.perf_counter()
    try:
        anyio.run(_write, ss, tmp, n)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        leaf = first_leaf(exc)
        if isinstance(leaf, Skip) or isinstance(exc, KeyboardInterrupt):
            raise
        raise Skip(f"writing the read file failed: {type(leaf).__name__}: {leaf}") from leaf
    finally:
        if saved is None:
            os.environ.pop("BLOSC_NTHREADS", None)
        else:
            os.environ["BLOSC_NTHREADS"] = saved
    seconds = time.perf_counter() - t0
    tmp.replace(path)
    return path, seconds


# --- the reads ------------------------------------------------------------------------------
def random_indices(n: int, count: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(SEED).integers(0, n, count)]


def ranges(n: int) -> list[tuple[int, int]]:
    return [(lo, min(n, lo + RANGE_FRAMES)) for lo in range(0, n, RANGE_FRAMES)]


class DirectReader:
    """Frames of a chunked blosc2 (or uncompressed) dataset by direct chunk reads.

    Chunks must span whole frames (``chunks[1:] == shape[1:]``). Single frames are
    decompressed in the calling thread; a range's chunks are read in order in the
    calling thread (h5py serialises its calls anyway) and each is handed to the pool
    as soon as it is read, decompressing straight into the output array."""

    def __init__(self, dset: Any, pool: ThreadPoolExecutor) -> None:
        import blosc2

        self._blosc2 = blosc2
        blosc2.set_releasegil(True)
        chunks = dset.chunks
        if chunks is None or tuple(chunks[1:]) != tuple(dset.shape[1:]):
            raise Skip(f"direct read needs chunks of whole frames, got {chunks} for {dset.shape}")
        self._dset, self._id, self._pool = dset, dset.id, pool
        self._cf = int(chunks[0])
        self._n = int(dset.shape[0])
        self._frame = tuple(int(s) for s in dset.shape[1:])
        self._dtype = np.dtype(dset.dtype)
        self._zeros = (0,) * len(self._frame)

    def _raw(self, c: int) -> tuple[int, bytes]:
        mask, data = self._id.read_direct_chunk((c * self._cf, *self._zeros))
        return int(mask), data

    def _decode(self, mask: int, data: bytes, out: Array) -> None:
        """Decompress one stored chunk into ``out`` (C-contiguous, the chunk's bytes)."""
        dst = out.reshape(-1).view(np.uint8)
        if mask & 1:  # the filter was skipped: raw bytes
            dst[:] = np.frombuffer(data, np.uint8, dst.size)
            return
        schunk = self._blosc2.schunk_from_cframe(data, copy=False)
        step = int(schunk.chunksize)
        for i in range(int(schunk.nchunks)):
            schunk.decompress_chunk(i, dst[i * step:])

    def _chunk_buffer(self, frames: int = 0) -> Array:
        return np.empty((frames or self._cf, *self._frame), self._dtype)

    def frame(self, i: int) -> Array:
        c, k = divmod(i, self._cf)
        buf = self._chunk_buffer()
        self._decode(*self._raw(c), buf)
        one: Array = buf[k]
        return one

    def rows(self, lo: int, hi: int) -> Array:
        out = self._chunk_buffer(hi - lo)
        pending: list[tuple[Future[None], Array | None, int, int, int]] = []
        for c in range(lo // self._cf, (hi - 1) // self._cf + 1):
            start = c * self._cf
            a, b = max(lo, start), min(hi, start + self._cf, self._n)
            mask, data = self._raw(c)
            if a == start and b == start + self._cf:  # whole chunk: straight into out
                pending.append((self._pool.submit(self._decode, mask, data, out[a - lo:b - lo]),
                                None, 0, 0, 0))
            else:  # an edge chunk: into a buffer, then the rows wanted
                buf = self._chunk_buffer()
                pending.append((self._pool.submit(self._decode, mask, data, buf),
                                buf, a - start, b - start, a - lo))
        for fut, edge, x, y, at in pending:
            fut.result()
            if edge is not None:
                out[at:at + y - x] = edge[x:y]
        return out


def _reads(mode: str, n: int, ctx: Ctx) -> list[Any]:
    return random_indices(n, ctx.count(*RANDOM)) if mode == "random" else ranges(n)


def _read_fn(mode: str, single: Callable[[int], Array],
             span: Callable[[int, int], Array]) -> Callable[[Any], Array]:
    if mode == "random":
        return single
    return lambda r: span(*r)


def _verify(direct: Callable[[Any], Array], ref: Callable[[Any], Array], reads: list[Any]) -> None:
    for r in reads:
        got, want = direct(r), ref(r)
        if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, want):
            raise Skip(f"direct read of {r} differs from h5py's ({got.shape} {got.dtype} vs "
                       f"{want.shape} {want.dtype}): not timed")


def _timed(fn: Callable[[Any], Array], reads: list[Any]) -> tuple[float, int]:
    frames = 0
    t0 = time.perf_counter()
    for r in reads:
        frames += 1 if np.ndim(r) == 0 else r[1] - r[0]
        fn(r)
    return time.perf_counter() - t0, frames


def _dataset_layout(dset: Any) -> dict[str, Any]:
    return {"dataset_shape": list(dset.shape), "chunks": list(dset.chunks or ()),
            "filters": sorted(str(k) for k in dset._filters),
            "storage_bytes": int(dset.id.get_storage_size())}


def run_read(reader: str, mode: str, ctx: Ctx) -> Entry:
    import h5py
    import hdf5plugin  # noqa: F401  (registers the Blosc2 filter with HDF5)

    name = f"read_{reader}_{mode}"
    kind = KINDS[KIND]
    n = ctx.count(*FRAMES)
    entry = Entry(name, GROUP, params={
        "reader": reader, "mode": mode, "kind": KIND, "frame_bytes": kind.nbytes,
        "file_frames": n, "chunk_frames": CHUNK_FRAMES, "compression": "blosc2-lz4",
        "random_reads": ctx.count(*RANDOM) if mode == "random" else None,
        "range_frames": RANGE_FRAMES if mode == "range" else None, "seed": SEED,
        "direct_workers": DIRECT_WORKERS if reader == "direct" else None,
        "cpu_count": os.cpu_count(), "file_in_page_cache": True,
    })
    path, write_s = ensure_file(ctx)
    entry.params["blosc_nthreads_env"] = os.environ.get("BLOSC_NTHREADS")
    rss0 = rss_mib()
    reads = _reads(mode, n, ctx)
    with ExitStack() as stack:
        run = stack.enter_context(import_streamsave().open_reader(path))
        ch = run.channels[f"{DETECTOR}/{CHANNEL}"]
        f = stack.enter_context(h5py.File(path, "r"))
        dset = f[ch.dataset_path]
        if int(dset.shape[0]) != n or len(ch) != n:
            raise Skip(f"the read file holds {dset.shape[0]} frames (reader: {len(ch)}), expected {n}")
        h5 = _read_fn(mode, lambda i: np.asarray(dset[i]), lambda a, b: np.asarray(dset[a:b]))
        if reader == "reader":
            fn = _read_fn(mode, lambda i: ch[i], lambda a, b: ch[a:b])
        elif reader == "h5py":
            fn = h5
        else:
            others = {str(k) for k in dset._filters} - {str(BLOSC2_FILTER)}
            if others:
                raise Skip(f"direct read handles blosc2 or no filter only; the dataset has {sorted(others)}")
            pool = stack.enter_context(ThreadPoolExecutor(DIRECT_WORKERS, thread_name_prefix="bench-decode"))
            direct = DirectReader(dset, pool)
            fn = _read_fn(mode, direct.frame, direct.rows)
            _verify(fn, h5, reads)
            entry.extra["verified_against_h5py"] = len(reads)
        seconds, frames = _timed(fn, reads)
        entry.extra |= _dataset_layout(dset)
    entry.finish(frames, frames * kind.nbytes, seconds)
    stored = entry.extra.get("storage_bytes") or 0
    entry.ratio = n * kind.nbytes / stored if stored else None
    entry.peak_rss_mib = peak_rss_mib()
    entry.extra |= {"file_bytes": path.stat().st_size, "file_write_seconds": write_s or None,
                    "reads": len(reads), "rss_before_mib": rss0,
                    "rss_growth_mib": entry.peak_rss_mib - rss0}
    return entry


def _names() -> Iterator[tuple[str, str, str]]:
    for mode in MODES:
        for reader in READERS:
            yield f"read_{reader}_{mode}", reader, mode


def _runner(reader: str, mode: str) -> Callable[[Ctx], Entry]:
    def run(ctx: Ctx) -> Entry:
        return run_read(reader, mode, ctx)
    return run


READ_BENCHMARKS: Final[dict[str, Callable[[Ctx], Entry]]] = {
    name: _runner(reader, mode) for name, reader, mode in _names()}
