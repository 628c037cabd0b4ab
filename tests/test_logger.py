"""The file's log: saver.log() and a logging.Handler, batched per flush, durable with the
frames, read back by streamsave's reader (never unpickling) and by PyMoDAQ's browser."""

from __future__ import annotations

import logging
import math
import os
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import h5py
import numpy as np
import pytest

import streamsave
import streamsave.sync
from streamsave._log_reader import string_from_pickle
from streamsave.backends.h5py import H5pyBackend


@pytest.fixture
def lab_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.lab")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


class CountingBackend(H5pyBackend):
    """Counts the writes to the log's text, to show messages are batched."""

    log_writes = 0

    def write_rows(self, path: str, start: int, values: Any) -> None:
        if path == "/streamsave/log_text":
            CountingBackend.log_writes += 1
        super().write_rows(path, start, values)


async def test_messages_and_records_are_saved(h5path: Path, lab_logger: logging.Logger) -> None:
    CountingBackend.log_writes = 0
    t0 = time.time()
    async with streamsave.open_saver(h5path, backend=CountingBackend, flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c")
        handler = saver.log_handler(logging.INFO)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        lab_logger.addHandler(handler)
        saver.log("run started: é ✓ \udcff", timestamp=1.7e9)
        saver.log("calibration", level=logging.DEBUG)
        lab_logger.info("temperature %.1f K", 293.15)
        lab_logger.debug("below the handler's level")

        def from_a_thread() -> None:
            for i in range(500):
                lab_logger.warning("thread message %d", i)

        threads = [threading.Thread(target=from_a_thread) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        await ch.push(1.0)
        await saver.flush()
        assert CountingBackend.log_writes == 1  # 2,003 messages, one write of their text
        with streamsave.open_reader(h5path) as live:  # while writing: what the flush made durable
            assert len(live.log) == 2003
        saver.log("last words")
    lab_logger.error("after the close: ignored, not raised")
    assert handler.dropped == 1
    with streamsave.open_reader(h5path) as run:
        log = run.log
    assert len(log) == 2004 and isinstance(log[0], streamsave.LogMessage)
    assert log[0] == streamsave.LogMessage(1.7e9, logging.INFO, "run started: é ✓ \\udcff")
    assert (log[1].level, log[1].text) == (logging.DEBUG, "calibration")
    assert log[2].text == "INFO tests.lab: temperature 293.1 K" and t0 <= log[2].time <= time.time()
    texts = [m.text for m in log[3:-1]]
    assert sorted(texts) == sorted(f"WARNING tests.lab: thread message {i}" for i in range(500) for _ in range(4))
    assert log[-1].text == "last words"
    with h5py.File(h5path, "r") as f:  # PyMoDAQ's copy: one pickled string a row
        rows = f["RawData/Logger"][()]
        assert [pickle.loads(bytes(r)) for r in rows] == [m.text for m in log]
        assert f["RawData/Logger"].attrs["shape"] == '{"module": "builtins", "type": "tuple", "data": "(2004,)"}'


@pytest.mark.parametrize("backend", ["h5py", "tables"])
async def test_pymodaq_browser_reads_the_logger(h5path: Path, backend: str) -> None:
    pytest.importorskip("pymodaq_data")
    pytest.importorskip(backend)
    from pymodaq_data.h5modules.browsing import H5BrowserUtil

    async with streamsave.open_saver(h5path, compression="blosc2-lz4") as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(4,))
        saver.log("hello PyMoDAQ")
        await ch.push(np.zeros(4))
        saver.log("second")
    browser = H5BrowserUtil(backend=backend)
    browser.open_file(h5path, "r")
    try:
        logger = browser.get_node("/RawData/Logger")
        assert type(logger).__name__ == "StringARRAY"
        assert list(logger.read()) == ["hello PyMoDAQ", "second"]
    finally:
        browser.close_file()


async def test_bad_messages_are_refused(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        for text, level, ts, match in ((b"bytes", 20, None, "must be a str, got bytes"),
                                       (None, 20, None, "must be a str, got NoneType"),
                                       (42, 20, None, "must be a str, got int"),
                                       ("ok", "INFO", None, "level must be an int"),
                                       ("ok", True, None, "level must be an int"),
                                       ("ok", 20, "now", "seconds as a number"),
                                       ("ok", 20, math.nan, "finite")):
            with pytest.raises(streamsave.LogMessageError, match=match):
                saver.log(text, level=level, timestamp=ts)  # type: ignore[arg-type]
        saver.log("kept")
        with pytest.raises(TypeError, match="needs a streamsave saver"):
            streamsave.LogHandler(object())
    with pytest.raises(streamsave.SaverClosedError):
        saver.log("too late")
    with streamsave.open_reader(h5path) as run:
        assert [m.text for m in run.log] == ["kept"]


async def test_a_handler_never_blocks_the_loop_and_never_raises(h5path: Path, lab_logger: logging.Logger) -> None:
    """Records from threads while the loop is busy with pushes; a broken formatter is
    reported through logging's own handleError, never raised; after close, ignored."""
    async with streamsave.open_saver(h5path, flush_interval=0.01) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(64,))
        handler = streamsave.LogHandler(saver)
        lab_logger.addHandler(handler)
        stop = threading.Event()

        def chatter() -> None:
            while not stop.is_set():
                lab_logger.info("tick")

        thread = threading.Thread(target=chatter)
        thread.start()
        try:
            with anyio.fail_after(20):
                for i in range(2000):
                    await ch.push(np.full(64, float(i)))
                    lab_logger.info("pushed %d", i)  # from the loop thread itself
        finally:
            stop.set()
            thread.join()
    assert ch.statistics().frames_written == 2000
    with streamsave.open_reader(h5path) as run:
        texts = [m.text for m in run.log]
    assert [t for t in texts if t.startswith("pushed")] == [f"pushed {i}" for i in range(2000)]
    assert handler.dropped == 0
    lab_logger.info("after close")  # ignored
    assert handler.dropped == 1
    handler.setFormatter(logging.Formatter("%(nonexistent)s"))
    previous, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        lab_logger.info("bad format")  # handleError, which is silent with raiseExceptions off
    finally:
        logging.raiseExceptions = previous


async def test_sync_facade_logs(h5path: Path, lab_logger: logging.Logger) -> None:
    def record() -> None:
        with streamsave.sync.open_saver(h5path) as saver:
            saver.log("from the facade", level=logging.WARNING)
            lab_logger.addHandler(saver.log_handler())
            lab_logger.info("through the handler")
            lab_logger.addHandler(streamsave.LogHandler(saver))

    await anyio.to_thread.run_sync(record)
    with streamsave.open_reader(h5path) as run:
        assert [(m.level, m.text) for m in run.log] == [(30, "from the facade"), (20, "through the handler")]


def test_pickled_rows_are_parsed_never_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyMoDAQ's own Logger rows are read as strings without unpickling; anything else is skipped."""
    monkeypatch.chdir(tmp_path)

    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("touch PWNED",))

    for protocol in range(6):
        assert string_from_pickle(pickle.dumps("é message", protocol=protocol)) == "é message"
    for blob in (pickle.dumps(Boom()), pickle.dumps(["a"]), pickle.dumps(("a", "b")), b"", b"\x80\x04garbage",
                 pickle.dumps(b"bytes"), pickle.dumps(1)):
        assert string_from_pickle(blob) is None
    path = tmp_path / "pymodaq.h5"
    with h5py.File(path, "w") as f:
        f.create_group("RawData")
        logger = f.create_dataset("RawData/Logger", shape=(3,), dtype=h5py.vlen_dtype(np.uint8))
        for i, blob in enumerate((pickle.dumps("first"), pickle.dumps(Boom()), pickle.dumps("third"))):
            logger[i] = np.frombuffer(blob, dtype=np.uint8)
    with streamsave.open_reader(path) as run:
        log = run.log
    assert [m.text for m in log] == ["first", "third"] and all(math.isnan(m.time) for m in log)
    assert not (tmp_path / "PWNED").exists()


async def test_a_full_log_refuses_and_says_so(h5path: Path, monkeypatch: pytest.MonkeyPatch,
                                              lab_logger: logging.Logger) -> None:
    """More messages waiting than the bound: saver.log raises QueueFull, a handler counts the
    record as dropped; what was accepted is saved."""
    import streamsave._log

    monkeypatch.setattr(streamsave._log, "MAX_PENDING", 3)
    async with streamsave.open_saver(h5path, flush_interval=60) as saver:
        handler = saver.log_handler()
        lab_logger.addHandler(handler)
        for i in range(3):
            saver.log(f"m{i}")
        with pytest.raises(streamsave.QueueFull, match="messages waiting"):
            saver.log("one too many")
        lab_logger.info("dropped by the handler")
        assert handler.dropped == 1
        await saver.flush()  # the writer takes them: room again
        saver.log("after the flush")
    with streamsave.open_reader(h5path) as run:
        assert [m.text for m in run.log] == ["m0", "m1", "m2", "after the flush"]
