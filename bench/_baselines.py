"""Reference figures measured over the same frames as the streamsave scenarios: the
device (O_DIRECT), the page cache, blosc2 compressing alone, and naive h5py."""

from __future__ import annotations

import math
import mmap
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import numpy as np

from ._common import MIB, Ctx, Entry, Skip
from ._frames import KINDS, Array, fill_from_stream, frame_at, load_pool, make_blocks

BLOCK: Final = 4 * MIB
CHUNK_TARGET: Final = 2 * MIB  # the engine's chunk size: whole frames up to 2 MiB
GROUP: Final = "baseline"


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _aligned_blocks(pool: Array, total: int) -> list[mmap.mmap]:
    """Page-aligned 4 MiB buffers holding the frame stream: as many distinct ones as the
    stream has before it repeats (at most 32), to be cycled through."""
    period = math.lcm(pool.nbytes, BLOCK) // BLOCK
    count = max(1, min(period, 32, -(-total // BLOCK)))
    blocks = []
    for k in range(count):
        buf = mmap.mmap(-1, BLOCK)
        fill_from_stream(pool, k * BLOCK, np.frombuffer(buf, dtype=np.uint8))
        blocks.append(buf)
    return blocks


def _write_blocks(ctx: Ctx, name: str, direct: bool) -> Entry:
    kind = KINDS["2d512"]
    n = ctx.count(kind.full, kind.quick)
    total = n * kind.nbytes
    nblocks = -(-total // BLOCK)
    blocks = _aligned_blocks(load_pool(kind.key, ctx.workdir), total)
    path = ctx.workdir / f"{name}.bin"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if direct:
        if not hasattr(os, "O_DIRECT"):
            raise Skip("os.O_DIRECT is not available on this platform")
        flags |= os.O_DIRECT
    entry = Entry(name, GROUP, params={
        "kind": kind.key, "frame_bytes": kind.nbytes, "block_bytes": BLOCK, "fsync": True,
        "o_direct": direct, "series": "O_DIRECT device" if direct else "os.write + fsync",
        "plot": "hline",
    })
    try:
        t0 = time.perf_counter()
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise Skip(f"open(O_DIRECT) refused by the filesystem: {exc}") from exc
        try:
            for i in range(nblocks):
                if os.write(fd, blocks[i % len(blocks)]) != BLOCK:
                    raise Skip("short write: cannot continue an aligned O_DIRECT stream")
            os.fsync(fd)
        except OSError as exc:
            if direct:
                raise Skip(f"O_DIRECT write refused: {exc}") from exc
            raise
        finally:
            os.close(fd)
        seconds = time.perf_counter() - t0
    finally:
        path.unlink(missing_ok=True)
    return entry.finish(nblocks * BLOCK // kind.nbytes, nblocks * BLOCK, seconds)


def odirect(ctx: Ctx) -> Entry:
    return _write_blocks(ctx, "odirect_write", direct=True)


def pagecache(ctx: Ctx) -> Entry:
    return _write_blocks(ctx, "pagecache_write", direct=False)


def _blosc2(ctx: Ctx, name: str, key: str, codec: str, level: int, shuffle: str) -> Entry:
    import blosc2

    kind = KINDS[key]
    pool = load_pool(key, ctx.workdir)
    per_chunk = max(1, CHUNK_TARGET // kind.nbytes)
    nchunks = -(-ctx.count(kind.full, kind.quick) // per_chunk)
    # distinct chunk buffers: about 64 MiB of them (twice this machine's L3), so the
    # input is not served from cache any more than the engine's would be
    distinct = max(1, min(nchunks, (64 * MIB) // (per_chunk * kind.nbytes)))
    chunks = make_blocks(pool, per_chunk, distinct)
    blosc2.set_releasegil(True)
    cparams: dict[str, Any] = {
        "codec": getattr(blosc2.Codec, codec.upper()), "clevel": level,
        "filters": [{"byte": blosc2.Filter.SHUFFLE, "bit": blosc2.Filter.BITSHUFFLE}[shuffle]],
        "typesize": pool.dtype.itemsize, "nthreads": 1,
    }

    def compressed_size(chunk: Array) -> int:
        return len(blosc2.compress2(chunk, **cparams))

    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as ex:
        list(ex.map(compressed_size, chunks[:workers]))  # start the threads, warm up
        t0 = time.perf_counter()
        sizes = list(ex.map(compressed_size, (chunks[i % distinct] for i in range(nchunks))))
        seconds = time.perf_counter() - t0
    frames = nchunks * per_chunk
    entry = Entry(name, GROUP, params={
        "kind": kind.key, "frame_bytes": kind.nbytes, "codec": codec, "level": level,
        "shuffle": shuffle, "frames_per_chunk": per_chunk, "workers": workers,
        "blosc2_nthreads": 1, "releasegil": True,
        "distinct_chunks": distinct, "series": f"blosc2 alone {codec}-{level}",
    })
    entry.finish(frames, frames * kind.nbytes, seconds)
    entry.ratio = frames * kind.nbytes / max(1, sum(sizes))
    return entry


def blosc2_lz4(ctx: Ctx) -> Entry:
    return _blosc2(ctx, "blosc2_lz4", "2d512", "lz4", 5, "byte")


def blosc2_zstd1bit(ctx: Ctx) -> Entry:
    return _blosc2(ctx, "blosc2_zstd1bit", "2d512", "zstd", 1, "bit")


def blosc2_lz4_2048(ctx: Ctx) -> Entry:
    return _blosc2(ctx, "blosc2_lz4_2048", "2d2048", "lz4", 5, "byte")


def naive_h5py(ctx: Ctx) -> Entry:
    """Resize by one and write each frame into a chunked, uncompressed dataset."""
    import h5py

    kind = KINDS["2d512"]
    pool = load_pool(kind.key, ctx.workdir)
    n = ctx.count(kind.full, kind.quick)
    path = ctx.workdir / "naive_h5py.h5"
    try:
        t0 = time.perf_counter()
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("frames", shape=(0, *kind.shape), maxshape=(None, *kind.shape),
                                  chunks=(1, *kind.shape), dtype=kind.dtype)
            for i in range(n):
                ds.resize(i + 1, axis=0)
                ds[i] = frame_at(pool, i)
        fsync_path(path)
        seconds = time.perf_counter() - t0
    finally:
        path.unlink(missing_ok=True)
    entry = Entry("naive_h5py", GROUP, params={
        "kind": kind.key, "frame_bytes": kind.nbytes, "chunk_frames": 1, "compression": None,
        "series": "naive h5py (resize+write per frame)",
    })
    return entry.finish(n, n * kind.nbytes, seconds)


BASELINES: Final[dict[str, Callable[[Ctx], Entry]]] = {
    "odirect_write": odirect,
    "pagecache_write": pagecache,
    "blosc2_lz4": blosc2_lz4,
    "blosc2_zstd1bit": blosc2_zstd1bit,
    "blosc2_lz4_2048": blosc2_lz4_2048,
    "naive_h5py": naive_h5py,
}
