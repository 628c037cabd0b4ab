"""Saver options: one frozen dataclass, validated on construction."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._errors import ConfigError
from ._spec import Compression, Overflow
from .backends import Backend

__all__ = ("SaverConfig", "make_config")

Mode = Literal["w-", "x", "w"]


@dataclass(frozen=True, kw_only=True, slots=True)
class SaverConfig:
    """Everything :func:`open_saver` accepts, validated. See :func:`open_saver`."""

    path: Path
    mode: Mode = "w-"
    compression: Compression | None = None
    flush_interval: float = 1.0
    queue_size: int | None = None
    queue_bytes: int = 256 * 2**20
    overflow: Overflow = Overflow.BLOCK
    swmr: bool = True
    chunk_bytes: int = 2 * 2**20
    max_chunk_frames: int = 16384
    max_frame_bytes: int = 1 << 30
    compress_threads: int = field(default_factory=lambda: max(1, (os.cpu_count() or 1) - 1))
    max_inflight: int = 8
    fsync: bool = True
    close_timeout: float = 10.0
    title: str = "streamsave recording"
    progress_interval: float = 0.2
    high_water: float = 0.8
    backend: str | Callable[..., Backend] = "h5py"

    def __post_init__(self) -> None:
        if self.mode not in ("w-", "x", "w"):
            raise ConfigError(f"mode={self.mode!r} is not supported; expected 'w-' (create, never overwrite; "
                              "the default), 'x' (the same) or 'w' (create or overwrite)")
        if isinstance(self.high_water, bool) or not isinstance(self.high_water, int | float) or \
                not 0 < self.high_water <= 1:
            raise ConfigError(f"high_water must be a fraction of the queue in (0, 1], got {self.high_water!r}")
        for name in ("flush_interval", "close_timeout", "progress_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in ("queue_bytes", "chunk_bytes", "max_chunk_frames", "max_frame_bytes", "compress_threads",
                     "max_inflight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.queue_size is not None and (
                isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 1):
            raise ConfigError(f"queue_size must be a positive number of frames or None, got {self.queue_size!r}")
        if self.backend != "h5py" and not callable(self.backend):
            raise ConfigError(f"backend={self.backend!r} is unknown; expected 'h5py' or a callable "
                              "(path, mode) -> Backend")

    def open_backend(self, mode: str | None = None) -> Backend:
        """Open the file: ``mode`` defaults to the saver's (``"x"`` means ``"w-"``)."""
        mode = mode or ("w-" if self.mode == "x" else self.mode)
        factory: Callable[..., Backend]
        if callable(self.backend):
            factory = self.backend
        else:
            from .backends.h5py import H5pyBackend as factory
        return factory(self.path, mode, swmr=self.swmr)


def make_config(path: str | os.PathLike[str], options: dict[str, Any]) -> SaverConfig:
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"path must be a string or os.PathLike, got {path!r}")
    opts = dict(options)
    if "compression" in opts:
        opts["compression"] = Compression.parse(opts["compression"])
    if "overflow" in opts:
        opts["overflow"] = Overflow.parse(opts["overflow"])
    try:
        return SaverConfig(path=Path(path), **opts)
    except TypeError as exc:
        raise ConfigError(f"open_saver: {exc}") from None
