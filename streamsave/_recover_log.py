"""Recovering the log: the messages the last flush made durable, and PyMoDAQ's Logger
rows written again from them (see ``streamsave._recover``)."""

from __future__ import annotations

from typing import Final

import h5py
import numpy as np

from ._layout import encode
from ._log import LOG_DURABLE, LOG_ENDS, LOG_LEVELS, LOG_TEXT, LOG_TIMES, LOGGER, LogMessage, logger_row
from ._log_reader import log_nodes, messages_from_index

__all__ = ("durable_log", "rewrite_logger")

_H5_ERRORS: Final = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)


def durable_log(file: h5py.File, unreadable: dict[str, None]) -> tuple[tuple[LogMessage, ...], int] | None:
    """The log messages the last flush made durable and the bytes of their text, or
    ``None`` if the file has no streamsave log (a PyMoDAQ file: its Logger is copied
    as it is)."""
    index = log_nodes({"times": file.get(LOG_TIMES), "levels": file.get(LOG_LEVELS), "ends": file.get(LOG_ENDS)})
    text, durable = file.get(LOG_TEXT), file.get(LOG_DURABLE)
    if index is None or not isinstance(text, h5py.Dataset):
        return None
    try:
        messages = messages_from_index(index, text, durable if isinstance(durable, h5py.Dataset) else None,
                                       bounded=True, live=False)
        return messages, int(index[2][len(messages) - 1]) if messages else 0
    except _H5_ERRORS:
        unreadable[LOG_ENDS] = None
        return (), 0


def rewrite_logger(out: h5py.File, messages: tuple[LogMessage, ...]) -> None:
    """PyMoDAQ's ``/RawData/Logger`` rows, from the durable messages."""
    logger = out.get(LOGGER)
    if not isinstance(logger, h5py.Dataset) or logger.dtype.kind != "O":
        if LOGGER in out:
            del out[LOGGER]
        logger = out.create_dataset(LOGGER, shape=(0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.uint8),
                                    chunks=(64,))
        logger.attrs.update({"CLASS": "VLARRAY", "TITLE": "Logger", "type": "log", "data_type": "strings",
                             "subdtype": "string", "EXTDIM": encode(0), "dtype": "uint8"})
    rows = np.empty(len(messages), dtype=h5py.vlen_dtype(np.uint8))
    for i, message in enumerate(messages):
        rows[i] = logger_row(message.text)
    logger.resize((len(rows),))
    if len(rows):
        logger.write_direct(rows)  # slice assignment would broadcast rows of one length
    logger.attrs["shape"] = encode((len(rows),))
