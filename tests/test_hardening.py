"""Engine hardening, one behaviour per test: timestamps that never go backwards, fsync
at every flush, files that grow with the data and not with the flushes, no frame
lost or hang at close, bounded aborted closes, queues that count every frame they
hold, pushes that stay cancellable, and no side effects on the process.

Everything runs against real files (read back with plain h5py + hdf5plugin), real
threads and real subprocesses; backends that misbehave on purpose are subclasses of
the real h5py backend.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import AsyncGenerator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.lowlevel
import hdf5plugin  # noqa: F401  (the Blosc2 filter, as any reader would load it)
import numpy as np
import numpy.typing as npt
import pytest

import streamsave
from streamsave.backends.h5py import H5pyBackend
from tests.conftest import channel_paths, read_channel

#: the directory that holds the streamsave package under test (passed on to subprocesses)
PACKAGE_ROOT = Path(streamsave.__file__).resolve().parent.parent


# ---------------------------------------------------------------------- helpers
class _Metered(H5pyBackend):
    """Each data-chunk write waits for a permit from the test (time-axis writes do
    not), so a test can hold the writer still inside its first chunk write, then let
    it store exactly as many frames as it wants. Subclassed per test by the
    ``metered`` fixture, which owns the semaphore and the event."""

    permits: threading.Semaphore
    #: set when the writer reaches its first data-chunk write
    entered: threading.Event

    @classmethod
    def open_gate(cls) -> None:
        """Let every later write through."""
        cls.permits.release(1_000_000)

    def write_chunk(self, path: str, offset: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        if path.endswith("EnlData00"):
            self.entered.set()
            assert self.permits.acquire(timeout=60), "the test never let the writer go on"
        super().write_chunk(path, offset, data, *args, **kwargs)


@pytest.fixture
def metered() -> Iterator[type[_Metered]]:
    class Metered(_Metered):
        permits = threading.Semaphore(0)
        entered = threading.Event()

    yield Metered
    Metered.open_gate()  # whatever happened, never leave the writer waiting


class _SlowStorage(H5pyBackend):
    """Storage that takes 2 s per data chunk (time axes and metadata are quick)."""

    def write_chunk(self, path: str, offset: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        if path.endswith("EnlData00"):
            time.sleep(2.0)  # the slow device itself, not a wait for state
        super().write_chunk(path, offset, data, *args, **kwargs)


class _DiskFullAtThirdWrite(H5pyBackend):
    """The third chunk write (data or time axis) fails the way a full disk does."""

    def __init__(self, path: Any, mode: Any, *, swmr: bool = True) -> None:
        super().__init__(path, mode, swmr=swmr)
        self.calls = 0

    def write_chunk(self, path: str, offset: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        if self.calls >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().write_chunk(path, offset, data, *args, **kwargs)


class _NoSwmr(H5pyBackend):
    """A backend that declares it has no SWMR mode."""

    name = "no-swmr-backend"
    supports_swmr = False


class _SyncSpy:
    """Counts ``fsync``/``fdatasync`` calls on one file, and records every directory
    synced. The real calls still happen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
        self.path = path
        self.file = 0
        self.directories: list[str] = []  # "st_dev:st_ino" of every directory synced
        self._lock = threading.Lock()
        real_fsync = os.fsync
        real_fdatasync = getattr(os, "fdatasync", os.fsync)

        def fsync(fd: int) -> None:
            self._record(fd)
            real_fsync(fd)

        def fdatasync(fd: int) -> None:
            self._record(fd)
            real_fdatasync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        if hasattr(os, "fdatasync"):
            monkeypatch.setattr(os, "fdatasync", fdatasync)

    def _record(self, fd: int) -> None:
        st = os.fstat(fd)
        with self._lock:
            if stat.S_ISDIR(st.st_mode):
                self.directories.append(f"{st.st_dev}:{st.st_ino}")
            elif self.path.exists() and os.path.samestat(st, os.stat(self.path)):
                self.file += 1

    def synced_directory(self, directory: Path) -> bool:
        st = os.stat(directory)
        with self._lock:
            return f"{st.st_dev}:{st.st_ino}" in self.directories


def _values(path: Path, name: str = "D/c") -> npt.NDArray[Any]:
    """The frames of a scalar channel as a flat array."""
    data, _ = read_channel(path, name)
    return data[:, 0]


async def _wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (cheap, no side effects) until it holds, for up to 10 s."""
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.001)


def _refusal(call: Callable[[], object]) -> tuple[type[BaseException], str]:
    """The ``QueueFull`` that ``call`` raises, as (type, message)."""
    with pytest.raises(streamsave.QueueFull) as info:
        call()
    return type(info.value), str(info.value)


def _accounted(st: streamsave.ChannelStatistics) -> bool:
    return st.frames_pushed == st.frames_written + st.frames_dropped


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads every 0.1 ms instead of every 5 ms, so that races between threads
    show up within a short test."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


# ---------------------------------------------------------------------- 3a. one clock per channel
async def test_library_timestamps_never_go_backwards_with_threads_and_tasks(
        h5path: Path, frequent_thread_switches: None) -> None:
    """4 threads and 3 tasks push into one channel: the library's timestamps, in file
    order, never go backwards, and every frame is there exactly once."""
    per_producer = 5_000
    async with streamsave.open_saver(h5path, flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c")

        def from_thread(producer: int) -> None:
            for i in range(per_producer):
                ch.push_from_thread(producer * 1e6 + i)

        async def from_task(producer: int) -> None:
            for i in range(per_producer):
                await ch.push(producer * 1e6 + i)
                if i % 64 == 0:
                    await anyio.lowlevel.checkpoint()  # let the other tasks interleave

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for producer in range(4):
                    tg.start_soon(anyio.to_thread.run_sync, from_thread, producer)
                for producer in range(4, 7):
                    tg.start_soon(from_task, producer)
    data, times = read_channel(h5path, "D/c")
    backwards = int((np.diff(times) < 0).sum())
    assert backwards == 0, f"{backwards} of {len(times) - 1} steps of the time axis go backwards"
    expected = {p * 1e6 + i for p in range(7) for i in range(per_producer)}
    assert len(data) == len(expected)
    assert set(data[:, 0].tolist()) == expected


# ---------------------------------------------------------------------- 3b. clock stepped back, monotonic=True
async def test_library_timestamps_hold_while_the_clock_is_stepped_back(
        h5path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 1.7e9}
    monkeypatch.setattr("streamsave._channel.time.time", lambda: clock["now"])
    readings = [1.7e9 + 10, 1.7e9 + 20, 1.7e9 + 15, 1.7e9 + 5, 1.7e9 + 30, 1.7e9 + 25]
    async with streamsave.open_saver(h5path, flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c")
        for i, now in enumerate(readings):
            clock["now"] = now
            if i == 3:
                await ch.push_many(np.array([3.0, 3.1, 3.2]))  # a block at a stepped-back clock
            else:
                await ch.push(float(i))
    values, times = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(values[:, 0], [0, 1, 2, 3, 3.1, 3.2, 4, 5])
    assert (np.diff(times) >= 0).all(), f"stored timestamps go backwards: {times - 1.7e9}"
    held = np.maximum.accumulate(readings)  # a stepped-back clock is held until it catches up
    np.testing.assert_array_equal(times, [held[0], held[1], held[2], held[3], held[3], held[3], held[4], held[5]])


async def test_monotonic_channel_refuses_backward_timestamps_and_keeps_what_it_accepted(h5path: Path) -> None:
    async with streamsave.open_saver(h5path, flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c", monotonic=True)
        await ch.push(1.0, timestamp=10.0)
        await ch.push(2.0, timestamp=20.0)
        with pytest.raises(streamsave.TimestampError) as info:
            await ch.push(3.0, timestamp=15.0)
        message = str(info.value)
        assert "D/c" in message and "15.0" in message and "20.0" in message, message
        with pytest.raises(streamsave.TimestampError, match="D/c"):
            ch.push_nowait(3.0, timestamp=19.5)
        with pytest.raises(streamsave.TimestampError, match="D/c"):
            await anyio.to_thread.run_sync(lambda: ch.push_from_thread(3.0, timestamp=0.0))
        await ch.push(4.0, timestamp=20.0)  # equal is not earlier
        with pytest.raises(streamsave.TimestampError, match="D/c"):
            await ch.push_many(np.array([5.0, 6.0]), timestamps=[19.0, 30.0])  # starts before the last one
        with pytest.raises(streamsave.TimestampError, match="D/c"):
            await ch.push_many(np.array([5.0, 6.0]), timestamps=[40.0, 35.0])  # goes back inside the block
        await ch.push_many(np.array([7.0, 8.0]), timestamps=[30.0, 31.0])
        await ch.push(9.0, timestamp=32.0)
    st = ch.statistics()
    assert (st.frames_pushed, st.frames_written, st.frames_dropped) == (6, 6, 0)
    values, times = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(values[:, 0], [1, 2, 4, 7, 8, 9])
    np.testing.assert_array_equal(times, [10, 20, 20, 30, 31, 32])


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "error", "block"])
async def test_a_refused_backward_timestamp_drops_nothing_on_a_full_queue(
        h5path: Path, metered: type[_Metered], overflow: str) -> None:
    """The order check comes first: a full queue's policy never runs for a refused frame."""
    saver = await streamsave.Saver.open(h5path, backend=metered, queue_size=4, overflow=overflow, flush_interval=60)
    ch = saver.add_detector("D").add_channel("c", monotonic=True, chunk_frames=1)
    for i in range(4):
        ch.push_nowait(float(i), timestamp=10.0 + i)
    with pytest.raises(streamsave.TimestampError, match="D/c"):
        ch.push_nowait(9.0, timestamp=1.0)
    metered.open_gate()
    await saver.aclose()
    st = ch.statistics()
    assert (st.frames_pushed, st.frames_written, st.frames_dropped) == (4, 4, 0)
    np.testing.assert_array_equal(read_channel(h5path, "D/c")[0][:, 0], [0, 1, 2, 3])


async def test_a_monotonic_channels_default_timestamps_never_fall_before_given_ones(h5path: Path) -> None:
    future = time.time() + 3600
    async with streamsave.open_saver(h5path) as saver:
        ch = saver.add_detector("D").add_channel("c", monotonic=True)
        await ch.push(1.0)
        await ch.push(2.0, timestamp=future)
        await ch.push(3.0)  # the clock says earlier: held at the given timestamp
        await ch.push(4.0, timestamp=future + 1)
    times = read_channel(h5path, "D/c")[1]
    assert (np.diff(times) >= 0).all() and times[2] == future, times


async def test_given_timestamps_are_stored_as_given_by_default(h5path: Path) -> None:
    given = [10.0, 20.0, 15.0, 5.0, 5.0, -3.0]
    async with streamsave.open_saver(h5path, flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c")
        for i, ts in enumerate(given[:4]):
            await ch.push(float(i), timestamp=ts)
        await ch.push_many(np.array([4.0, 5.0]), timestamps=given[4:])
    values, times = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(values[:, 0], np.arange(6))
    np.testing.assert_array_equal(times, given)


# ---------------------------------------------------------------------- 4. fsync
async def test_fsync_flush_syncs_the_file_at_every_flush(h5path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = _SyncSpy(monkeypatch, h5path)
    async with streamsave.open_saver(h5path, fsync="flush", flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c")
        for i in range(20):
            await ch.push(float(i))
            await saver.flush()
        assert syncs.file >= 20, f"20 flushes with fsync='flush' synced the file {syncs.file} times"
    np.testing.assert_array_equal(_values(h5path), np.arange(20))


async def test_by_default_flushes_do_not_sync_and_close_does(h5path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = _SyncSpy(monkeypatch, h5path)
    async with streamsave.open_saver(h5path, flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c")
        for i in range(20):
            await ch.push(float(i))
            await saver.flush()
        assert syncs.file == 0, f"20 flushes with the default fsync synced the file {syncs.file} times"
    assert syncs.file >= 1  # fsync="close": on the device once closed
    np.testing.assert_array_equal(_values(h5path), np.arange(20))


async def test_the_new_files_directory_is_synced(h5path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = _SyncSpy(monkeypatch, h5path)
    saver = await streamsave.Saver.open(h5path, flush_interval=60)
    try:
        assert syncs.synced_directory(h5path.parent), "the directory entry of the new file was never synced"
    finally:
        await saver.aclose()


async def test_fsync_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(streamsave.ConfigError) as info:
        async with streamsave.open_saver(tmp_path / "bad.h5", fsync="sometimes"):
            pass
    message = str(info.value)
    assert "'sometimes'" in message and all(f"'{choice}'" in message for choice in ("flush", "close", "never"))
    assert not (tmp_path / "bad.h5").exists()
    for flag in (True, False):
        path = tmp_path / f"{flag}.h5"
        syncs = _SyncSpy(monkeypatch, path)
        async with streamsave.open_saver(path, fsync=flag) as saver:
            await saver.add_detector("D").add_channel("c").push(1.0)
        assert (syncs.file > 0) is flag  # True: sync at close; False: never
        np.testing.assert_array_equal(_values(path), [1.0])


# ---------------------------------------------------------------------- 5. file size
_SIZES: dict[tuple[str | None, bool, int, int | None, bool], int] = {}


async def _file_size(directory: Path, codec: str | None, swmr: bool, n: int, chunk_frames: int | None, *,
                     flush_each: bool) -> int:
    """The size of a file holding ``n`` random float64 values pushed one at a time,
    flushed after every value (``flush_each``) or once at the end."""
    key = (codec, swmr, n, chunk_frames, flush_each)
    if key not in _SIZES:
        path = directory / f"{codec}-{swmr}-{n}-{chunk_frames}-{flush_each}.h5"
        values = np.random.default_rng(n).random(n)
        async with streamsave.open_saver(path, compression=codec, swmr=swmr, flush_interval=60) as saver:
            ch = saver.add_detector("D").add_channel("c", chunk_frames=chunk_frames)
            for i in range(n):
                await ch.push(float(values[i]))
                if flush_each:
                    assert (await saver.flush())["D/c"] == i + 1
            await saver.flush()
        np.testing.assert_array_equal(_values(path), values)
        _SIZES[key] = path.stat().st_size
    return _SIZES[key]


async def _check_file_size(directory: Path, codec: str | None, swmr: bool, n: int,
                           chunk_frames: int | None) -> None:
    """``n`` flushes of one value each make a file no larger than the same values
    flushed once, give or take their raw size (8 bytes of value and 8 of timestamp
    each, as flushes store partly filled chunks uncompressed) and 64 KiB; and
    compression never makes it larger than 1.1 times the uncompressed file.

    (Measured against the same values flushed once rather than as an absolute size,
    so that a backend's fixed metadata allowance does not count as growth.)"""
    many = await _file_size(directory, codec, swmr, n, chunk_frames, flush_each=True)
    once = await _file_size(directory, codec, swmr, n, chunk_frames, flush_each=False)
    allowance = 1.2 * n * 16 + 64 * 2**10
    assert many - once <= allowance, (f"{n:,} flushes of one value each made a {many:,}-byte file, {many - once:,} "
                                      f"bytes more than one flush of the same values (allowed: {allowance:,.0f})")
    if codec is not None:
        plain = await _file_size(directory, None, swmr, n, chunk_frames, flush_each=True)
        assert many <= 1.1 * plain, f"compressed {many:,} bytes against {plain:,} uncompressed"


@pytest.mark.parametrize("swmr", [True, False], ids=["swmr", "plain"])
@pytest.mark.parametrize("codec", [None, "blosc2-lz4", "blosc2-zstd"])
async def test_file_grows_with_the_data_not_with_the_flushes(tmp_path: Path, codec: str | None, swmr: bool) -> None:
    # chunks of 256 frames: five full chunks (each stored partly filled hundreds of times) and a partial one
    await _check_file_size(tmp_path, codec, swmr, 1_500, 256)


@pytest.mark.slow
@pytest.mark.parametrize("swmr", [True, False], ids=["swmr", "plain"])
@pytest.mark.parametrize("codec", [None, "blosc2-lz4", "blosc2-zstd"])
async def test_file_grows_with_the_data_not_with_the_flushes_long(tmp_path: Path, codec: str | None,
                                                                   swmr: bool) -> None:
    await _check_file_size(tmp_path, codec, swmr, 6_000, None)  # the default chunk, stored 6,000 times


# ---------------------------------------------------------------------- 6. frames accepted during close
def _hammer(ch: streamsave.Channel, producer: int, accepted: list[int], warmed_up: threading.Event,
            warmup: int) -> None:
    """Push distinct values until the saver refuses; record every push that returned."""
    value = producer * 10**9
    while True:
        try:
            ch.push_nowait(value)
        except streamsave.QueueFull:
            pass
        except streamsave.SaverClosedError:
            warmed_up.set()
            return
        else:
            accepted.append(value)
            if len(accepted) >= warmup:
                warmed_up.set()
        value += 1


async def test_a_frame_accepted_during_close_is_written(tmp_path: Path) -> None:
    """4 threads push without waiting while the loop closes the saver: every push
    that returned is in the file, and nothing is counted as dropped."""
    for trial in range(100):
        path = tmp_path / f"{trial}.h5"
        saver = await streamsave.Saver.open(path, flush_interval=0.05)
        ch = saver.add_detector("D").add_channel("c", dtype="int64")
        accepted: list[int] = []
        warmed_up = threading.Event()
        warmup = 1 + (trial * 97) % 3000
        producers = [threading.Thread(target=_hammer, args=(ch, p, accepted, warmed_up, warmup)) for p in range(4)]
        for producer in producers:
            producer.start()
        try:
            with anyio.fail_after(10):
                await anyio.to_thread.run_sync(warmed_up.wait)
                await saver.aclose()
        finally:
            for producer in producers:  # each stops at its first refused push
                await anyio.to_thread.run_sync(producer.join)
        st = ch.statistics()
        assert st.frames_pushed == len(accepted), f"trial {trial}"
        assert (st.frames_written, st.frames_dropped) == (len(accepted), 0), f"trial {trial}: {st}"
        values = _values(path)
        assert len(values) == len(accepted) and set(values.tolist()) == set(accepted), f"trial {trial}"


# ---------------------------------------------------------------------- 7. flush racing aclose
async def _flush_while_closing(path: Path, frames: int, flush_first: bool) -> list[dict[str, int]]:
    """Start a flush and the close at the same moment, and keep starting flushes
    (20 per loop turn) until the close returns, so some land just as the writer
    finishes. Returns what every flush returned."""
    saver = await streamsave.Saver.open(path, flush_interval=60, fsync=False)
    ch = saver.add_detector("D").add_channel("c", shape=(4,))
    for i in range(frames):
        await ch.push(np.full(4, float(i)))
    results: list[dict[str, int]] = []
    closed = anyio.Event()

    async def flush() -> None:
        results.append(await saver.flush())

    async def close() -> None:
        await saver.aclose()
        closed.set()

    async with anyio.create_task_group() as tg:
        for task in (flush, close) if flush_first else (close, flush):
            tg.start_soon(task)
        while not closed.is_set():
            for _ in range(20):
                tg.start_soon(flush)
            await anyio.lowlevel.checkpoint()
    assert saver.statistics().state == "closed"
    with anyio.fail_after(1):  # after the close: at once, with the final counts
        results.append(await saver.flush())
    return results


async def test_flush_racing_aclose_never_hangs(tmp_path: Path, frequent_thread_switches: None) -> None:
    for trial in range(60):
        frames = 1 + trial % 5
        with anyio.fail_after(10):
            results = await _flush_while_closing(tmp_path / f"{trial}.h5", frames, flush_first=bool(trial % 2))
        assert len(results) >= 2 and all(r == {"D/c": frames} for r in results), f"trial {trial}"


# ---------------------------------------------------------------------- 8. bounded aborted close
async def test_aborted_close_ends_within_close_timeout_plus_one_storage_call(h5path: Path) -> None:
    started = time.monotonic()
    with anyio.CancelScope() as scope:
        async with streamsave.open_saver(h5path, backend=_SlowStorage, close_timeout=0.5,
                                         flush_interval=60) as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(64, 64), dtype="uint16", chunk_frames=1,
                                                     queue_size=20)
            for i in range(20):
                await ch.push(np.full((64, 64), i, dtype="uint16"))
            scope.cancel()
            started = time.monotonic()
            await anyio.sleep_forever()
    elapsed = time.monotonic() - started
    # close_timeout (0.5 s) + the 2 s storage call in progress then, with room to spare
    assert elapsed < 6, f"the aborted close took {elapsed:.1f} s"
    st = ch.statistics()
    assert st.frames_pushed == 20 and _accounted(st), st
    assert st.frames_dropped > 0, st
    if st.frames_written == 0:  # a channel that stored nothing is removed at close
        assert "D/c" not in channel_paths(h5path)
        return
    data, times = read_channel(h5path, "D/c")
    assert data.shape == (st.frames_written, 64, 64) and times.shape == (st.frames_written,)
    for i in range(st.frames_written):
        assert (data[i] == i).all(), f"frame {i} is damaged"


# ---------------------------------------------------------------------- 9. queue accounting
async def test_frames_in_the_writers_pipeline_count_against_the_queue(
        h5path: Path, metered: type[_Metered]) -> None:
    async with streamsave.open_saver(h5path, backend=metered, flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(256,), chunk_frames=1, queue_size=8)
        ch.push_nowait(np.full(256, 0.0))
        assert await anyio.to_thread.run_sync(metered.entered.wait, 10), "the writer never wrote frame 0"
        accepted = 1  # frame 0 is being written: it still holds its room
        with pytest.raises(streamsave.QueueFull):
            for i in range(1, 100):
                ch.push_nowait(np.full(256, float(i)))
                accepted += 1
        assert accepted == 8, f"a queue of 8 accepted {accepted} frames while the writer was stuck"
        assert ch.statistics().queue_fill == 8
        metered.open_gate()
    np.testing.assert_array_equal(read_channel(h5path, "D/c")[0][:, 0], np.arange(8))


@pytest.mark.parametrize("n", [200_000, pytest.param(1_000_000, marks=pytest.mark.slow)])
async def test_a_queue_of_scalars_is_compact(h5path: Path, metered: type[_Metered], n: int) -> None:
    """Held scalars cost about their 16 bytes (value and timestamp), not ~100 bytes of
    Python objects each (tracemalloc slows pushing about eightfold, hence the sizes)."""
    values = np.random.default_rng(9).random(n).tolist()  # made before measuring: the producer's own
    async with streamsave.open_saver(h5path, backend=metered, flush_interval=60, queue_size=2_000_000) as saver:
        ch = saver.add_detector("D").add_channel("c")
        push = ch.push_nowait
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for value in values:
                push(value)
            assert await anyio.to_thread.run_sync(metered.entered.wait, 10), "the writer never wrote"
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert held / n < 40, f"{n:,} queued scalars hold {held / n:.0f} bytes each"
        metered.open_gate()
    np.testing.assert_array_equal(_values(h5path), values)


# ---------------------------------------------------------------------- 10. push is a checkpoint
async def _push_loop_with_heartbeat(path: Path) -> tuple[float, int, int, streamsave.ChannelStatistics]:
    ticks = 0
    async with streamsave.open_saver(path, overflow="drop_oldest", flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c", queue_size=4)

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.001)
                ticks += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            pushes = 0
            started = time.monotonic()
            with anyio.move_on_after(0.2):
                for i in range(2_000_000):  # a bound, so a push that never yields still ends
                    await ch.push(float(i))
                    pushes += 1
            elapsed = time.monotonic() - started
            ticks_during = ticks
            tg.cancel_scope.cancel()
    return elapsed, ticks_during, pushes, ch.statistics()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_push_loop_that_never_waits_stays_cancellable(tmp_path: Path, backend: str) -> None:
    elapsed, ticks, pushes, st = anyio.run(_push_loop_with_heartbeat, tmp_path / "loop.h5", backend=backend)
    assert elapsed < 1, f"move_on_after(0.2) ended the push loop after {elapsed:.2f} s ({pushes:,} pushes)"
    assert ticks > 0, "the heartbeat task never ran during the push loop"
    assert pushes > 0 and st.frames_pushed == pushes and _accounted(st), st


# ---------------------------------------------------------------------- 11. relative path and chdir
async def test_a_relative_path_survives_chdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    async with streamsave.open_saver("run.h5", flush_interval=60) as saver:
        assert Path(saver.path).is_absolute() and Path(saver.path).resolve() == (home / "run.h5").resolve()
        ch = saver.add_detector("D").add_channel("c", shape=(8,))
        saver.add_detector("E").add_channel("never")  # empty: removed at close, which reopens the file
        assert Path(ch.file_path).is_absolute()
        for i in range(5):
            await ch.push(np.full(8, float(i)))
        assert (await saver.flush())["D/c"] == 5
        monkeypatch.chdir(elsewhere)
        for i in range(5, 10):
            await ch.push(np.full(8, float(i)))
        assert (await saver.flush())["D/c"] == 10
    assert list(elsewhere.iterdir()) == []
    assert set(channel_paths(home / "run.h5")) == {"D/c"}
    data, _ = read_channel(home / "run.h5", "D/c")
    np.testing.assert_array_equal(data, np.repeat(np.arange(10.0)[:, None], 8, axis=1))


# ---------------------------------------------------------------------- 12. push_many: all or nothing
async def test_a_cancelled_push_many_queues_nothing(h5path: Path, metered: type[_Metered]) -> None:
    async with streamsave.open_saver(h5path, backend=metered, flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(256,), chunk_frames=1, queue_size=32)
        ch.push_nowait(np.full(256, 0.0))
        assert await anyio.to_thread.run_sync(metered.entered.wait, 10), "the writer never wrote frame 0"
        filled = 1
        with pytest.raises(streamsave.QueueFull):
            for i in range(1, 10_000):
                ch.push_nowait(np.full(256, float(i)))
                filled += 1
        pushed = ch.statistics().frames_pushed
        block = np.repeat(np.arange(1000.0, 1020.0)[:, None], 256, axis=1)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ch.push_many, block)
                await anyio.wait_all_tasks_blocked()  # push_many is waiting for room
                metered.permits.release(5)  # five frames stored: room for 5, not for 20
                await _wait_until(lambda: ch.statistics().frames_written >= 5)
                await anyio.wait_all_tasks_blocked()  # push_many has seen the room it was given
                tg.cancel_scope.cancel()
        assert ch.statistics().frames_pushed == pushed, "a cancelled push_many queued part of its block"
        # the same block from a thread, in the same state, waits as long as its timeout, then queues nothing
        with pytest.raises(streamsave.QueueFull):
            await anyio.to_thread.run_sync(partial(ch.push_many_from_thread, block, timeout=0.3))
        assert ch.statistics().frames_pushed == pushed, "push_many_from_thread queued part of its block"
        metered.open_gate()
    values = _values(h5path, "D/c")
    assert not set(values.tolist()) & set(range(1000, 1020)), "frames of the cancelled block were written"
    np.testing.assert_array_equal(values, np.arange(filled))


async def test_push_many_and_push_many_from_thread_agree_on_a_full_queue(
        h5path: Path, metered: type[_Metered]) -> None:
    async with streamsave.open_saver(h5path, backend=metered, overflow="error", flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(256,), chunk_frames=1, queue_size=8)
        ch.push_nowait(np.full(256, 0.0))
        assert await anyio.to_thread.run_sync(metered.entered.wait, 10), "the writer never wrote frame 0"
        with pytest.raises(streamsave.QueueFull):
            for i in range(1, 100):
                ch.push_nowait(np.full(256, float(i)))
        pushed = ch.statistics().frames_pushed
        for n in (1, 5, 20):  # smaller than the queue, and larger than the whole queue
            block = np.full((n, 256), 1000.0 + n)
            with pytest.raises(streamsave.QueueFull) as on_loop:
                await ch.push_many(block)
            assert ch.statistics().frames_pushed == pushed, f"push_many queued part of a block of {n}"
            in_thread = await anyio.to_thread.run_sync(_refusal, partial(ch.push_many_from_thread, block))
            assert ch.statistics().frames_pushed == pushed, f"push_many_from_thread queued part of a block of {n}"
            assert (type(on_loop.value), str(on_loop.value)) == in_thread, f"a block of {n} frames"
        metered.open_gate()
    np.testing.assert_array_equal(_values(h5path), np.arange(pushed))


# ---------------------------------------------------------------------- 14. no warnings for a caught failure
async def test_a_caught_writer_failure_logs_no_warning(h5path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="streamsave")
    with pytest.raises(streamsave.StorageError) as info:
        with anyio.fail_after(30):
            async with streamsave.open_saver(h5path, backend=_DiskFullAtThirdWrite, flush_interval=60) as saver:
                ch = saver.add_detector("D").add_channel("c", shape=(16,), chunk_frames=1)
                for i in range(1000):
                    await ch.push(np.full(16, float(i)))
                    await saver.flush()
    assert info.value.errno == errno.ENOSPC
    assert saver.statistics().state == "failed" and _accounted(ch.statistics())
    loud = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in caplog.records
            if r.name.startswith("streamsave") and r.levelno >= logging.WARNING]
    assert loud == []


# ---------------------------------------------------------------------- 15. progress leaves nothing behind
async def test_breaking_out_of_progress_leaves_no_subscription(h5path: Path) -> None:
    async with streamsave.open_saver(h5path, flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c")
        await ch.push(1.0)
        updates = cast(AsyncGenerator[streamsave.Progress, None], saver.progress(ch, target=10))
        gc.disable()  # nothing may depend on the garbage collector closing the generator
        try:
            async for update in updates:
                assert update.channel == "D/c"
                break
            assert saver._hub.subscriptions == []
        finally:
            gc.enable()
            await updates.aclose()


# ---------------------------------------------------------------------- 18. no process-wide side effects
_BLOSC_PROBE = """
import json, os, sys
import anyio
import numpy as np
import streamsave

after_import = os.environ.get("BLOSC_NTHREADS")

async def main() -> None:
    async with streamsave.open_saver(sys.argv[1], compression="blosc2-lz4") as saver:
        await saver.add_detector("D").add_channel("c", shape=(64,)).push(np.arange(64.0))

anyio.run(main)
print(json.dumps({"after_import": after_import, "after_saver": os.environ.get("BLOSC_NTHREADS")}))
"""


def _probe_blosc_env(path: Path, preset: str | None) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k != "BLOSC_NTHREADS"}
    if preset is not None:
        env["BLOSC_NTHREADS"] = preset
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", _BLOSC_PROBE, str(path)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, str | None] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_importing_streamsave_leaves_blosc2_settings_alone(tmp_path: Path) -> None:
    assert _probe_blosc_env(tmp_path / "a.h5", None) == {"after_import": None, "after_saver": "1"}
    assert _probe_blosc_env(tmp_path / "b.h5", "3") == {"after_import": "3", "after_saver": "3"}


async def test_a_backend_without_swmr_is_refused_with_swmr(tmp_path: Path) -> None:
    with pytest.raises(streamsave.ConfigError) as info:
        async with streamsave.open_saver(tmp_path / "swmr.h5", backend=_NoSwmr, swmr=True):
            pass
    message = str(info.value)
    assert _NoSwmr.name in message and "swmr=False" in message, message
    assert not (tmp_path / "swmr.h5").exists()  # refused before the file was created
    async with streamsave.open_saver(tmp_path / "swmr.h5", backend=_NoSwmr, swmr=False) as saver:
        await saver.add_detector("D").add_channel("c").push(1.0)  # the advice works on the same path
    path = tmp_path / "plain.h5"
    async with streamsave.open_saver(path, backend=_NoSwmr, swmr=False) as saver:
        await saver.add_detector("D").add_channel("c").push(2.0)
    np.testing.assert_array_equal(_values(path), [2.0])
