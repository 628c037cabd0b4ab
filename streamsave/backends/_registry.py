"""Backends by name, and the checks of what a saver asks against what a backend can do.

Names are resolved lazily: the module of a backend (and the library it needs) is
imported only when a saver or reader asks for it, so ``import streamsave`` never
needs PyTables or h5pyd.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .._errors import ConfigError
from ._base import ALL_CODECS, ALL_SHUFFLES, Backend

if TYPE_CHECKING:
    from .._spec import Compression

__all__ = ("BACKENDS", "Capabilities", "backend_class", "capabilities", "check_request", "check_saver")

#: name -> (module, class, pip extra that installs its library)
BACKENDS: Final[dict[str, tuple[str, str, str]]] = {
    "h5py": ("streamsave.backends.h5py", "H5pyBackend", ""),
    "tables": ("streamsave.backends.tables", "TablesBackend", "tables"),
    "h5pyd": ("streamsave.backends.h5pyd", "H5pydBackend", "hsds"),
}


def backend_class(backend: str | Callable[..., Backend]) -> Callable[..., Backend]:
    """The backend class for a name (``"h5py"``, ``"tables"``, ``"h5pyd"``), or
    ``backend`` itself when it is a class or factory.

    :raises ~streamsave.ConfigError: an unknown name, or a backend whose library is
        not installed (the message names the pip extra that installs it).
    """
    if callable(backend):
        return backend
    if not isinstance(backend, str) or backend not in BACKENDS:
        names = ", ".join(repr(n) for n in BACKENDS)
        raise ConfigError(f"backend={backend!r} is unknown; expected one of {names} or a Backend class "
                          "(a callable (path, mode, *, swmr, **backend_options) -> Backend)")
    module_name, class_name, extra = BACKENDS[backend]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name == module_name:
            raise ConfigError(f"backend {backend!r} is not part of this streamsave installation "
                              f"(no module {module_name})") from None
        raise ConfigError(f"backend {backend!r} needs a library that is not installed ({exc.name or exc}); "
                          f"install it with: pip install 'streamsave[{extra}]'") from None
    cls: Callable[..., Backend] = getattr(module, class_name)
    return cls


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend declares (read from its class, with the h5py backend's values
    for factories that declare nothing)."""

    name: str
    direct_chunk_write: bool
    swmr: bool
    codecs: frozenset[str]
    max_request_bytes: int | None
    local: bool
    shuffles: frozenset[str] = ALL_SHUFFLES

    def can(self) -> str:
        """What the backend can do, in words, for error messages."""
        codecs = ", ".join(sorted(self.codecs)) or "none"
        limit = "no limit" if self.max_request_bytes is None else f"{_mib(self.max_request_bytes)} per request"
        shuffles = "" if self.shuffles == ALL_SHUFFLES else f" with shuffle {', '.join(sorted(self.shuffles))}"
        return (f"backend {self.name!r}: SWMR {'yes' if self.swmr else 'no'}, direct chunk write "
                f"{'yes' if self.direct_chunk_write else 'no'}, codecs {codecs}{shuffles} (or uncompressed), {limit}")


def capabilities(factory: object) -> Capabilities:
    """The capabilities ``factory`` (a backend class or instance) declares."""
    name = getattr(factory, "name", None) or getattr(factory, "__name__", type(factory).__name__)
    codecs: Any = getattr(factory, "codecs", ALL_CODECS)
    limit: Any = getattr(factory, "max_request_bytes", None)
    return Capabilities(
        name=str(name),
        direct_chunk_write=getattr(factory, "supports_direct_chunk_write", True) is not False,
        swmr=getattr(factory, "supports_swmr", True) is not False,
        codecs=frozenset(codecs),
        max_request_bytes=limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
        local=getattr(factory, "local", True) is not False,
        shuffles=frozenset(getattr(factory, "shuffles", ALL_SHUFFLES)),
    )


def check_saver(caps: Capabilities, *, swmr: bool | None, compression: Compression | None,
                chunk_bytes: int) -> bool:
    """Check a saver's options against a backend; return whether the file uses SWMR
    (``swmr=None``: where the backend has it).

    :raises ~streamsave.ConfigError: SWMR asked of a backend without it, a codec it
        cannot store, chunks larger than its largest request; the message says what
        the backend can do.
    """
    if swmr and not caps.swmr:
        raise ConfigError(f"backend {caps.name!r} has no SWMR mode; open the saver with swmr=False (or leave "
                          f"swmr unset: SWMR where the backend has it). {caps.can()}")
    if compression is not None and compression.codec not in caps.codecs:
        codecs = ", ".join(f"'blosc2-{c}'" for c in sorted(caps.codecs))
        raise ConfigError(f"backend {caps.name!r} cannot store compression={compression.name!r}; "
                          f"use one of {codecs or 'no codec'} or compression=None. {caps.can()}")
    if compression is not None and compression.shuffle not in caps.shuffles:
        shuffles = ", ".join(repr(s) for s in sorted(caps.shuffles))
        raise ConfigError(f"backend {caps.name!r} cannot store compression={compression.name!r} (shuffle="
                          f"{compression.shuffle!r}); use shuffle {shuffles}. {caps.can()}")
    check_request(caps, chunk_bytes, "chunk_bytes")
    return caps.swmr if swmr is None else bool(swmr)


def check_request(caps: Capabilities, nbytes: int, what: str) -> None:
    """:raises ~streamsave.ConfigError: ``nbytes`` (one chunk or one frame) is more than
    the backend takes in one request."""
    limit = caps.max_request_bytes
    if limit is not None and nbytes > limit:
        raise ConfigError(f"{what} of {nbytes:,} bytes ({_mib(nbytes)}) is more than backend {caps.name!r} accepts "
                          f"in one request ({limit:,} bytes, {_mib(limit)}); use smaller frames or chunks. "
                          f"{caps.can()}")


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.4g} MiB"
