"""Reading a file's log messages (``run.log``) without unpickling anything.

A streamsave file keeps its messages in fixed-size datasets (``streamsave._log``),
read here as they are, bounded in a file being written (or whose writer was killed)
by what the last flush made durable. Other files (PyMoDAQ's) only have
``/RawData/Logger``, whose rows are pickles: a row is read only if it is the pickle
of a single string, recognised opcode by opcode with :mod:`pickletools` (which
parses and never executes), and skipped otherwise.
"""

from __future__ import annotations

import math
import pickletools
from typing import Any, Final

import h5py
import numpy as np

from ._log import LogMessage
from ._nodes import KINDS

__all__ = ("log_nodes", "messages_from_index", "messages_from_logger", "read_log", "string_from_pickle")

#: the most messages, and text bytes, read from one file
MAX_MESSAGES: Final = 10_000_000
MAX_TEXT_BYTES: Final = 1 << 30
_STRING_OPS: Final = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
_HARMLESS_OPS: Final = frozenset({"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})


def string_from_pickle(blob: bytes) -> str | None:
    """The string a pickle holds, if it holds exactly one string and nothing else
    (PyMoDAQ's Logger rows); ``None`` for anything else. Nothing is executed."""
    found: str | None = None
    try:
        for op, arg, _ in pickletools.genops(blob):
            if op.name in _STRING_OPS and found is None and isinstance(arg, str):
                found = arg
            elif op.name == "STOP":
                return found
            elif op.name not in _HARMLESS_OPS:
                return None
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError, MemoryError):
        return None
    return None


def messages_from_index(index: tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset], text: h5py.Dataset,
                        durable: h5py.Dataset | None, *, bounded: bool, live: bool) -> tuple[LogMessage, ...]:
    """The messages of streamsave's log datasets (``index``: times, levels, ends);
    with ``bounded``, only those the last flush made durable (``durable``: messages,
    bytes). Stops at the first message whose record is not consistent (a damaged file)."""
    if live:
        for node in (*index, text, durable):
            if node is not None:
                node.refresh()
    n, nbytes = min(int(node.shape[0]) for node in index), int(text.shape[0])
    if bounded and durable is not None and durable.shape == (2,) and durable.dtype.kind in "iu":
        promised = np.asarray(durable[()], dtype=np.int64)
        n, nbytes = min(n, max(0, int(promised[0]))), min(nbytes, max(0, int(promised[1])))
    n, nbytes = min(n, MAX_MESSAGES), min(nbytes, MAX_TEXT_BYTES)
    if not n:
        return ()
    times, levels, ends = (np.asarray(node[:n]) for node in index)
    ends = ends.astype(np.int64)
    good = (ends <= nbytes) & (np.diff(ends, prepend=0) >= 0)
    n = int(np.argmin(good)) if not good.all() else n
    if not n:
        return ()
    raw = bytes(np.asarray(text[:int(ends[n - 1])], dtype=np.uint8))
    out = []
    start = 0
    for when, level, end in zip(times[:n].tolist(), levels[:n].tolist(), ends[:n].tolist(), strict=True):
        out.append(LogMessage(float(when), int(level), raw[start:end].decode("utf-8", "replace")))
        start = end
    return tuple(out)


def messages_from_logger(logger: h5py.Dataset) -> tuple[LogMessage, ...]:
    """The messages of a ``/RawData/Logger`` array of pickled strings (time unknown:
    NaN, level 0); rows that are not the pickle of one string are skipped."""
    if logger.ndim != 1 or logger.dtype.kind != "O" or logger.shape[0] > MAX_MESSAGES:
        return ()
    out = []
    for row in logger[()]:
        blob = np.asarray(row)
        if blob.dtype != np.uint8 or blob.ndim != 1:
            continue
        found = string_from_pickle(blob.tobytes())
        if found is not None:
            out.append(LogMessage(math.nan, 0, found))
    return tuple(out)


def log_nodes(nodes: dict[str, Any]) -> tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset] | None:
    """The times, levels and ends datasets, if all three are one-dimensional numbers."""
    times, levels, ends = (nodes.get(key) for key in ("times", "levels", "ends"))
    if not (isinstance(times, KINDS.dataset) and isinstance(levels, KINDS.dataset) and isinstance(ends, KINDS.dataset)):
        return None
    if not (times.ndim == levels.ndim == ends.ndim == 1 and times.dtype.kind in "iuf"
            and levels.dtype.kind in "iu" and ends.dtype.kind in "iu"):
        return None
    return times, levels, ends


def read_log(nodes: dict[str, Any], *, bounded: bool, live: bool) -> tuple[LogMessage, ...]:
    """``run.log``: from streamsave's datasets when the file has them, else from the Logger."""
    index, text = log_nodes(nodes), nodes.get("text")
    if index is not None and isinstance(text, KINDS.dataset) and text.ndim == 1 and text.dtype == np.uint8:
        durable = nodes.get("durable")
        return messages_from_index(index, text, durable if isinstance(durable, KINDS.dataset) else None,
                                   bounded=bounded, live=live)
    logger = nodes.get("logger")
    return messages_from_logger(logger) if isinstance(logger, KINDS.dataset) else ()
