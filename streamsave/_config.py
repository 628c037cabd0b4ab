"""Saver options: one frozen dataclass, validated on construction."""

from __future__ import annotations

import errno
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._errors import ConfigError, StorageError
from ._spec import Compression, Overflow
from .backends import Backend
from .backends._registry import Capabilities, backend_class, capabilities, check_saver

__all__ = ("SaverConfig", "make_config")

Mode = Literal["w-", "x", "w"]
Fsync = Literal["flush", "close", "never"]
_FSYNC_BOOL: dict[bool, Fsync] = {True: "close", False: "never"}
DEFAULT_CHUNK_BYTES = 2 * 2**20


@dataclass(frozen=True, kw_only=True, slots=True)
class SaverConfig:
    """Everything :func:`open_saver` accepts, validated. See :func:`open_saver`."""

    path: Path
    mode: Mode = "w-"
    compression: Compression | None = None
    flush_interval: float = 1.0
    queue_size: int | None = None
    queue_bytes: int = 256 * 2**20
    memory_budget: int = 2**30
    overflow: Overflow = Overflow.BLOCK
    #: ``None`` (default): SWMR where the backend has it; resolved to a bool on construction
    swmr: bool | None = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES  # make_config: at most the backend's max_request_bytes when not given
    max_chunk_frames: int = 16384
    max_frame_bytes: int = 1 << 30
    compress_threads: int = field(default_factory=lambda: max(1, (os.cpu_count() or 1) - 1))
    max_inflight: int = 8
    fsync: Fsync = "close"
    close_timeout: float = 10.0
    title: str = "streamsave recording"
    progress_interval: float = 0.2
    high_water: float = 0.8
    backend: str | Callable[..., Backend] = "h5py"
    #: keywords for the backend's constructor (a server's endpoint, credentials): never shown
    backend_options: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    _caps: Capabilities | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fsync: object = self.fsync
        if isinstance(fsync, bool):
            object.__setattr__(self, "fsync", _FSYNC_BOOL[fsync])
        if self.fsync not in ("flush", "close", "never"):
            raise ConfigError(f"fsync={self.fsync!r} is not supported; expected 'flush' (sync the file to the device "
                              "at every flush), 'close' (the default: at close only), 'never', or True/False "
                              "('close'/'never')")
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
        for name in ("queue_bytes", "memory_budget", "chunk_bytes", "max_chunk_frames", "max_frame_bytes",
                     "compress_threads", "max_inflight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.queue_size is not None and (
                isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 1):
            raise ConfigError(f"queue_size must be a positive number of frames or None, got {self.queue_size!r}")
        if self.swmr is not None and not isinstance(self.swmr, bool):
            raise ConfigError(f"swmr must be True, False or None (SWMR where the backend has it), got {self.swmr!r}")
        options = self.backend_options
        if options is not None and (not isinstance(options, Mapping) or
                                    not all(isinstance(key, str) for key in options)):
            # the values are never shown: they may be credentials
            raise ConfigError("backend_options must be a mapping of keyword names to values, got a "
                              f"{type(options).__name__}")
        factory = backend_class(self.backend)
        _check_options(factory, options or {})
        caps = capabilities(factory)
        object.__setattr__(self, "_caps", caps)
        object.__setattr__(self, "swmr", check_saver(caps, swmr=self.swmr, compression=self.compression,
                                                     chunk_bytes=self.chunk_bytes))

    def check_target(self) -> None:
        """Fail at once, with a clear message, when the file cannot be created.

        :raises ~streamsave.StorageError: the directory is missing, the path is a
            directory, or the file exists and ``mode`` does not allow overwriting it.
        """
        path, parent = self.path, self.path.parent
        if not self.capabilities.local:
            return  # not a local file (a service's domain): the backend says what is wrong
        if not parent.is_dir():
            raise StorageError(errno.ENOENT, f"cannot create {str(path)!r}: the directory {str(parent)!r} does not "
                               "exist (create it first)")
        if path.is_dir():
            raise StorageError(errno.EISDIR, f"cannot create {str(path)!r}: it is a directory")
        if self.mode != "w" and (path.exists() or path.is_symlink()):
            raise StorageError(errno.EEXIST, f"{str(path)!r} already exists; pass mode='w' to overwrite it, or "
                               "choose another name")

    @property
    def capabilities(self) -> Capabilities:
        """What the backend's class declares it can do."""
        assert self._caps is not None
        return self._caps

    def backend_factory(self) -> Callable[..., Backend]:
        """The backend class (or factory) the saver opens its file with."""
        return backend_class(self.backend)

    def open_backend(self, mode: str | None = None) -> Backend:
        """Open the file: ``mode`` defaults to the saver's (``"x"`` means ``"w-"``)."""
        mode = mode or ("w-" if self.mode == "x" else self.mode)
        return self.backend_factory()(self.path, mode, swmr=bool(self.swmr), **(self.backend_options or {}))


def _check_options(factory: Callable[..., Backend], options: Mapping[str, Any]) -> None:
    """:raises ~streamsave.ConfigError: the backend's constructor takes none of some
    ``backend_options`` (named by key only: values may be credentials)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # a factory without a signature: it says itself what it refuses
    try:
        signature.bind("file.h5", "w-", swmr=False, **options)
    except TypeError:
        keys = ", ".join(repr(key) for key in options) or "none"
        name = getattr(factory, "name", getattr(factory, "__name__", "?"))
        raise ConfigError(f"backend {name!r} does not take the backend_options given (keys: {keys}); see its "
                          "documentation for the options it takes") from None


def make_config(path: str | os.PathLike[str], options: dict[str, Any]) -> SaverConfig:
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"path must be a string or os.PathLike, got {path!r}")
    opts = dict(options)
    if "compression" in opts:
        opts["compression"] = Compression.parse(opts["compression"])
    if "overflow" in opts:
        opts["overflow"] = Overflow.parse(opts["overflow"])
    caps = capabilities(backend_class(opts.get("backend", "h5py")))
    local = caps.local
    limit = caps.max_request_bytes
    if "chunk_bytes" not in opts and limit is not None and limit < DEFAULT_CHUNK_BYTES:
        opts["chunk_bytes"] = limit  # the default chunk, made to fit in one request of the backend
    try:
        # Absolute from the start: the writer must not follow a later os.chdir() (a service's
        # domain is kept as given).
        return SaverConfig(path=Path(os.path.abspath(path) if local else path), **opts)
    except TypeError as exc:
        raise ConfigError(f"open_saver: {exc}") from None
