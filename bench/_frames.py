"""Deterministic frame pools: a few distinct frames generated once, then cycled through,
so that generating data is never part of a timed section.

Kinds: ``2d512`` (512x512 uint16, Poisson(100) noise plus Gaussian peaks), ``2d2048``
(2048x2048 uint16, the same), ``1d`` (2048 float64 spectra) and ``0d`` (float64 values).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class FrameKind:
    key: str
    shape: tuple[int, ...]
    dtype: str
    pool: int
    full: int
    quick: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


# frame counts: (full, quick)
KINDS: Final = {
    "2d512": FrameKind("2d512", (512, 512), "uint16", 16, 4000, 400),
    "2d2048": FrameKind("2d2048", (2048, 2048), "uint16", 4, 500, 40),
    "1d": FrameKind("1d", (2048,), "float64", 64, 50_000, 5_000),
    "0d": FrameKind("0d", (), "float64", 4096, 1_000_000, 50_000),
}


def _gaussian_peaks(rng: np.random.Generator, shape: tuple[int, ...], n: int) -> Array:
    """A sum of ``n`` Gaussian peaks (amplitude 200-3000 counts, sigma 2-12 px)."""
    axes = [np.arange(s, dtype=np.float64) for s in shape]
    out = np.zeros(shape, dtype=np.float64)
    for _ in range(n):
        amp = rng.uniform(200.0, 3000.0)
        profile: Array = np.array(amp)
        for ax, size in zip(axes, shape, strict=True):
            centre, sigma = rng.uniform(0, size), rng.uniform(2.0, 12.0)
            profile = np.multiply.outer(profile, np.exp(-0.5 * ((ax - centre) / sigma) ** 2))
        out += profile
    return out


def make_pool(key: str, seed: int = 12345) -> Array:
    """``kind.pool`` distinct frames stacked on axis 0 (C-contiguous)."""
    kind = KINDS[key]
    rng = np.random.default_rng(seed)
    if key.startswith("2d"):
        pool = np.empty((kind.pool, *kind.shape), dtype=kind.dtype)
        for i in range(kind.pool):
            lam = 100.0 + _gaussian_peaks(rng, kind.shape, 5)
            pool[i] = np.minimum(rng.poisson(lam), np.iinfo(np.uint16).max)
        return pool
    if key == "1d":
        base = 1000.0 + _gaussian_peaks(rng, kind.shape, 4)
        noise = rng.normal(0.0, 10.0, (kind.pool, *kind.shape))
        return np.ascontiguousarray(base[None, :] + noise)
    return 20.0 + rng.normal(0.0, 0.05, kind.pool)  # 0d: a thermometer


def load_pool(key: str, cache_dir: Path | None = None) -> Array:
    """:func:`make_pool`, cached as ``.npy`` in ``cache_dir`` (Poisson sampling of the
    large pools takes a second or more, and every benchmark process needs them)."""
    if cache_dir is None:
        return make_pool(key)
    path = cache_dir / f"pool-{key}.npy"
    if path.exists():
        pool: Array = np.load(path)
        return pool
    pool = make_pool(key)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        np.save(f, pool)
    tmp.replace(path)
    return pool


def frame_at(pool: Array, i: int) -> Any:
    """Frame number ``i`` of the endless cyclic stream (a view; a numpy scalar for 0D)."""
    return pool[i % pool.shape[0]]


def make_blocks(pool: Array, block: int, count: int) -> list[Array]:
    """``count`` distinct blocks of ``block`` consecutive frames of the cyclic stream."""
    n = pool.shape[0]
    return [np.ascontiguousarray(np.take(pool, np.arange(k * block, (k + 1) * block) % n, axis=0))
            for k in range(count)]


def fill_from_stream(pool: Array, offset: int, out: Array) -> None:
    """Fill the uint8 array ``out`` with the raw bytes of the cyclic frame stream,
    starting ``offset`` bytes into it."""
    raw = pool.reshape(-1).view(np.uint8)
    pos, done = offset % raw.size, 0
    while done < out.size:
        take = min(raw.size - pos, out.size - done)
        out[done:done + take] = raw[pos:pos + take]
        done, pos = done + take, 0
