"""streamsave: continuous, compressed, crash-safe saving of detector frames to HDF5.

::

    async with streamsave.open_saver("run.h5", compression="blosc2-lz4") as saver:
        image = saver.add_detector("Camera").add_channel("image", shape=(512, 512), dtype="uint16")
        await image.push(frame)

Everything public is importable from here; the modules behind it are private.
"""

from __future__ import annotations

from ._channel import Channel
from ._channel_reader import ChannelReader, FrameBlock, Timestamps
from ._column_reader import Column
from ._config import SaverConfig
from ._detector import Detector
from ._errors import (
    ConfigError,
    FrameMismatchError,
    FrameNumberError,
    LayoutFrozenError,
    LogMessageError,
    MetadataError,
    QueueFull,
    ReadError,
    RecoveryError,
    SaverClosedError,
    StorageError,
    StreamSaveError,
    TimestampError,
    WriterError,
)
from ._events import (
    Backpressure,
    ChannelCreated,
    Event,
    FileClosed,
    FileOpened,
    Flushed,
    FramesDropped,
    FramesWritten,
    Subscription,
    WriterFailed,
)
from ._log import LogHandler, LogMessage
from ._reader import Run, open_reader
from ._recover import ChannelRecovery, RecoveryReport, recover
from ._replay import Replay, ReplayItem, ReplayStatistics, replay
from ._replay_into import ReplayReport, replay_into
from ._saver import Saver, open_saver
from ._scan import Scan, ScanChannel, ScanDetector, ScanFinishedError, ScanPointError
from ._scan_reader import ScanChannelReader, ScanReader
from ._snapshot import SnapshotData, save_snapshot
from ._spec import Axis, Compression, Overflow
from ._stats import ChannelStatistics, OperationTiming, Progress, SaverStatistics
from ._version import __version__

__all__ = (
    "Axis",
    "Backpressure",
    "Channel",
    "ChannelCreated",
    "ChannelReader",
    "ChannelRecovery",
    "ChannelStatistics",
    "Column",
    "Compression",
    "ConfigError",
    "Detector",
    "Event",
    "FileClosed",
    "FileOpened",
    "Flushed",
    "FrameBlock",
    "FrameMismatchError",
    "FrameNumberError",
    "FramesDropped",
    "FramesWritten",
    "LayoutFrozenError",
    "LogHandler",
    "LogMessage",
    "LogMessageError",
    "MetadataError",
    "OperationTiming",
    "Overflow",
    "Progress",
    "QueueFull",
    "ReadError",
    "RecoveryError",
    "RecoveryReport",
    "Replay",
    "ReplayItem",
    "ReplayReport",
    "ReplayStatistics",
    "Run",
    "Saver",
    "SaverClosedError",
    "SaverConfig",
    "SaverStatistics",
    "Scan",
    "ScanChannel",
    "ScanChannelReader",
    "ScanDetector",
    "ScanFinishedError",
    "ScanPointError",
    "ScanReader",
    "SnapshotData",
    "StorageError",
    "StreamSaveError",
    "Subscription",
    "TimestampError",
    "Timestamps",
    "WriterError",
    "WriterFailed",
    "__version__",
    "open_reader",
    "open_saver",
    "recover",
    "replay",
    "replay_into",
    "save_snapshot",
)

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("streamsave."):
        _obj.__module__ = "streamsave"
del _name, _obj
