"""The exceptions streamsave raises.

Every exception derives from :class:`StreamSaveError`; most also derive from the
builtin they refine, so ``except ValueError`` keeps working for callers that do
not know streamsave::

    StreamSaveError
    ├── ConfigError (ValueError)          bad argument to open_saver / add_* / Compression / replay
    ├── FrameMismatchError (ValueError)   frame of the wrong shape, dtype or kind
    ├── TimestampError (ValueError)       timestamp that is not finite, or goes backwards
    ├── ScanPointError (ValueError)       a scan point outside the grid, of the wrong length, or measured
    │   └── ScanFinishedError             again; a push into a finished scan (both in streamsave._scan)
    ├── FrameNumberError (ValueError)     frame number that is not an integer >= 0, or does not increase
    ├── MetadataError (ValueError)        per-frame metadata unknown, missing or of the wrong type
    ├── LogMessageError (TypeError)       saver.log() text that is not a str, or a bad level or time
    ├── QueueFull                         push_nowait / overflow="error" on a full queue
    ├── SaverClosedError                  push or add after the saver was closed
    ├── LayoutFrozenError                 add_detector / add_channel after writing started (SWMR)
    ├── StorageError (OSError)            the file could not be created, written or flushed
    ├── WriterError                       the writer thread failed for another reason
    ├── RecoveryError                     streamsave recover could not read or rewrite a file
    └── ReadError (OSError)               open_reader / a channel could not read a file

Once the writer has failed, every later call on the saver or its channels raises
that same failure, so producers never hang on a dead writer.
"""

from __future__ import annotations

__all__ = (
    "ConfigError",
    "FrameMismatchError",
    "FrameNumberError",
    "LayoutFrozenError",
    "LogMessageError",
    "MetadataError",
    "QueueFull",
    "ReadError",
    "RecoveryError",
    "SaverClosedError",
    "StorageError",
    "StreamSaveError",
    "TimestampError",
    "WriterError",
)


class StreamSaveError(Exception):
    """Base class of every error raised by streamsave."""


class ConfigError(StreamSaveError, ValueError):
    """An argument to :func:`~streamsave.open_saver`, ``add_detector``, ``add_channel``,
    :class:`~streamsave.Compression` or :func:`~streamsave.replay` is invalid (for a
    replay also: a channel the file does not have, or one without timestamps)."""


class FrameMismatchError(StreamSaveError, ValueError):
    """A pushed frame does not match the channel's declared shape, dtype or kind."""


class TimestampError(StreamSaveError, ValueError):
    """A timestamp is not a finite number of seconds, or is earlier than the previous one."""


class FrameNumberError(StreamSaveError, ValueError):
    """A frame number is not an integer, is negative, or is not larger than the
    channel's previous one (given or assigned); or the channel keeps no frame numbers."""


class MetadataError(StreamSaveError, ValueError):
    """Per-frame metadata names a value the channel did not declare, lacks one it did,
    or holds a value that does not convert to the declared dtype."""


class LogMessageError(StreamSaveError, TypeError):
    """A message for :meth:`Saver.log` is not text, or its level or time is not a number."""


class QueueFull(StreamSaveError):
    """The channel's queue is full and the call may not wait (``push_nowait``, or
    ``overflow="error"``)."""


class SaverClosedError(StreamSaveError):
    """The saver is closing or closed: no more frames, detectors or channels."""


class LayoutFrozenError(StreamSaveError):
    """A detector or channel was added after writing started in SWMR mode.

    SWMR forbids creating HDF5 objects once readers may be following the file, so
    every detector and channel must be added before the first frame is pushed (or
    the saver opened with ``swmr=False``).
    """


class StorageError(StreamSaveError, OSError):
    """The file could not be created, written, flushed or closed (disk full, file
    size limit, permission lost, HDF5 error)."""


class WriterError(StreamSaveError):
    """The writer thread failed for a reason other than storage (e.g. compression)."""


class RecoveryError(StreamSaveError):
    """The file cannot be recovered (missing, not HDF5, not a streamsave or PyMoDAQ
    file, damaged beyond what recovery reads), or the output cannot be written."""


class ReadError(StreamSaveError, OSError):
    """A file cannot be read: missing, not HDF5, damaged, still being written without
    SWMR, or a part refused for safety (a link leading outside the file, a read larger
    than the guard)."""
