"""Log messages saved with the frames: ``saver.log(text)`` and a ``logging.Handler``.

Messages wait in the saver's :class:`LogBook` (a list under a short lock: posting
never waits on the file, from any thread) and the writer thread stores everything
posted at each flush, in one write per dataset, under the same guarantees as
frames (durable at the flush, consistent after a kill)::

    /streamsave/log_text       (bytes,) uint8, the messages' UTF-8 text, one after another
    /streamsave/log_times      (N,) float64, when each message was logged (epoch seconds)
    /streamsave/log_levels     (N,) int32, its logging level
    /streamsave/log_ends       (N,) int64, where its text ends in log_text
    /streamsave/log_durable    (2,) int64: messages and text bytes the last flush made durable

These are fixed-size types, which SWMR allows. PyMoDAQ's browser shows
``/RawData/Logger``, a variable-length array of pickled strings; HDF5 does not
support variable-length data under SWMR, so that copy is written when the file
closes (and by ``streamsave recover`` from the durable log). streamsave's reader
reads the fixed datasets; it never unpickles anything.
"""

from __future__ import annotations

import logging
import math
import pickle
import threading
import time
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import h5py
import numpy as np

from ._errors import LogMessageError

if TYPE_CHECKING:
    from .backends import Backend

__all__ = (
    "LOGGER",
    "LOG_COLUMNS",
    "LOG_DURABLE",
    "LOG_ENDS",
    "LOG_LEVELS",
    "LOG_TEXT",
    "LOG_TIMES",
    "MAX_PENDING",
    "LogBook",
    "LogHandler",
    "LogMessage",
    "LogWriter",
    "check_message",
    "logger_row",
)

LOGGER: Final = "/RawData/Logger"
LOG_TEXT: Final = "/streamsave/log_text"
LOG_TIMES: Final = "/streamsave/log_times"
LOG_LEVELS: Final = "/streamsave/log_levels"
LOG_ENDS: Final = "/streamsave/log_ends"
LOG_DURABLE: Final = "/streamsave/log_durable"
#: one value per message: (path, dtype, title). Separate datasets, not one compound: PyTables
#: (PyMoDAQ's default backend) cannot open a compound dataset that is not one of its tables
LOG_COLUMNS: Final = (
    (LOG_TIMES, np.dtype(np.float64), "time each message was logged, s since the Unix epoch"),
    (LOG_LEVELS, np.dtype(np.int32), "logging level of each message"),
    (LOG_ENDS, np.dtype(np.int64), "where the text of each message ends in log_text"),
)
#: messages waiting for the writer beyond this many are dropped (and counted)
MAX_PENDING: Final = 100_000


class LogMessage(NamedTuple):
    """One saved log message."""

    #: when it was logged, seconds since the Unix epoch
    time: float
    #: its :mod:`logging` level (``logging.INFO`` = 20 for :meth:`Saver.log`'s default)
    level: int
    text: str


def check_message(text: object, level: object, timestamp: object) -> tuple[str, int, float]:
    """``(text, level, time)`` of a :meth:`Saver.log` call.

    :raises ~streamsave.LogMessageError: text not a str, level not an int, time not
        a finite number.
    """
    if not isinstance(text, str):
        raise LogMessageError(f"a log message must be a str, got {type(text).__name__} {text!r:.200}")
    if isinstance(level, bool) or not isinstance(level, int | np.integer):
        raise LogMessageError(f"a log level must be an int (logging.INFO, ...), got {level!r}")
    if timestamp is None:
        return text, int(level), time.time()
    try:
        when = float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LogMessageError(f"a log timestamp must be seconds as a number, got {timestamp!r}") from None
    if not math.isfinite(when):
        raise LogMessageError(f"a log timestamp must be finite, got {timestamp!r}")
    return text, int(level), when


class LogBook:
    """Messages posted and not yet taken by the writer; safe from any thread.

    Posting takes a lock held for a list append, never waits for the writer, and
    after :meth:`close` (the writer's last look) refuses instead of queuing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[float, int, str]] = []
        self._closed = False
        #: messages dropped: over :data:`MAX_PENDING` waiting, or posted to a closed saver by a handler
        self.dropped = 0
        #: messages accepted
        self.posted = 0

    def post(self, text: str, level: int, when: float) -> str:
        """Queue one message: ``"ok"``; or nothing queued: ``"closed"`` once the saver
        closed, ``"full"`` with :data:`MAX_PENDING` messages waiting for the writer."""
        with self._lock:
            if self._closed:
                return "closed"
            if len(self._pending) >= MAX_PENDING:
                return "full"
            self._pending.append((when, level, text))
            self.posted += 1
            return "ok"

    def refused(self) -> None:
        """A handler's message was not taken (closed, or full): count it."""
        with self._lock:
            self.dropped += 1

    def take(self) -> list[tuple[float, int, str]]:
        with self._lock:
            taken, self._pending = self._pending, []
            return taken

    def close(self) -> list[tuple[float, int, str]]:
        """The writer's last look: what is left, and refuse every later message."""
        with self._lock:
            self._closed = True
            taken, self._pending = self._pending, []
            return taken


class LogHandler(logging.Handler):
    """A :class:`logging.Handler` that saves records in a saver's file.

    ``logging.getLogger("mylab").addHandler(saver.log_handler())``; each record is
    formatted (with the handler's formatter, ``%(message)s`` by default) and saved
    with its time and level. Safe from any thread and never blocks: it only hands
    the record to the saver, whose writer stores it at its next flush. Once the saver
    has closed, records are ignored (counted in ``dropped``), so a handler left
    attached never raises into :mod:`logging`.

    :param saver: a :class:`~streamsave.Saver` (or a ``streamsave.sync`` saver).
    :param level: the lowest level saved.
    """

    def __init__(self, saver: Any, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        inner = getattr(saver, "saver", saver)  # a streamsave.sync.Saver wraps the real one
        book = getattr(getattr(inner, "_control", None), "log", None)
        if not isinstance(book, LogBook):
            raise TypeError(f"LogHandler needs a streamsave saver, got {type(saver).__name__}")
        self._book = book

    @property
    def dropped(self) -> int:
        """Records the saver did not take (closed, or too many waiting)."""
        return self._book.dropped

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if self._book.post(text, record.levelno, record.created) != "ok":
            self._book.refused()


def logger_row(text: str) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """One ``/RawData/Logger`` row as PyMoDAQ writes it: the pickle of the string."""
    return np.frombuffer(pickle.dumps(text, protocol=4), dtype=np.uint8)


class LogWriter:
    """The writer thread's side: stores taken messages, then PyMoDAQ's copy at close.

    Keeps the text of every message it stored until the close, for the Logger rows.
    """

    def __init__(self) -> None:
        self.count = 0
        self.nbytes = 0
        self._texts: list[str] = []

    def store(self, backend: Backend, messages: list[tuple[float, int, str]]) -> bool:
        """Append ``messages`` (one resize and one write per dataset); whether any were."""
        if not messages:
            return False
        blobs = [text.encode("utf-8", "backslashreplace") for _, _, text in messages]
        columns: tuple[np.ndarray[Any, Any], ...] = (np.array([when for when, _, _ in messages], dtype=np.float64),
                   np.array([level for _, level, _ in messages], dtype=np.int32),
                   self.nbytes + np.cumsum([len(b) for b in blobs], dtype=np.int64))
        text = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        backend.resize(LOG_TEXT, self.nbytes + text.size)
        if text.size:
            backend.write_rows(LOG_TEXT, self.nbytes, text)
        for (path, _, _), values in zip(LOG_COLUMNS, columns, strict=True):
            backend.resize(path, self.count + len(messages))
            backend.write_rows(path, self.count, values)
        self.count += len(messages)
        self.nbytes += text.size
        self._texts.extend(b.decode("utf-8") for b in blobs)
        return True

    def mark_durable(self, backend: Backend) -> None:
        """Record what the coming flush makes durable (before the flush)."""
        backend.write_rows(LOG_DURABLE, 0, np.array([self.count, self.nbytes], dtype=np.int64))

    def write_logger(self, backend: Backend, encode: Any) -> None:
        """Write PyMoDAQ's ``/RawData/Logger`` rows (at close)."""
        if not self._texts:
            return
        rows = np.empty(len(self._texts), dtype=h5py.vlen_dtype(np.uint8))
        for i, text in enumerate(self._texts):
            rows[i] = logger_row(text)
        backend.resize(LOGGER, len(rows))
        backend.write_rows(LOGGER, 0, rows)
        backend.set_attrs(LOGGER, {"shape": encode((len(rows),))})
