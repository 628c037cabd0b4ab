"""Embedding: pushes from foreign threads, the blocking facade, and an open/close
lifecycle spread over different tasks."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path

import anyio
import numpy as np
import pytest

import streamsave
import streamsave.sync
from tests.conftest import GatedBackend, read_channel


def test_sync_facade_records_and_closes(h5path: Path) -> None:
    with streamsave.sync.open_saver(h5path, compression="blosc2-lz4", queue_size=16) as saver:
        image = saver.add_detector("Cam").add_channel("img", shape=(32, 32), dtype="uint16")
        scalar = saver.add_detector("T").add_channel("T", units="K")
        for i in range(200):  # more than the queue: push blocks this thread when full
            image.push(np.full((32, 32), i, "uint16"))
        scalar.push_many(np.arange(100.0))  # larger than the queue: queued whole, once the queue is empty
        saver.flush()  # the 100 frames are stored and give their room back
        scalar.push_nowait(100.0)
        assert saver.flush() == {"Cam/img": 200, "T/T": 101}
    assert saver.statistics().state == "closed"
    np.testing.assert_array_equal(read_channel(h5path, "Cam/img")[0][:, 0, 0], np.arange(200))
    np.testing.assert_array_equal(read_channel(h5path, "T/T")[0][:, 0], np.arange(101.0))


def test_sync_facade_propagates_errors_and_closes(h5path: Path) -> None:
    with pytest.raises(ZeroDivisionError), streamsave.sync.open_saver(h5path) as saver:
        ch = saver.add_detector("D").add_channel("c")
        ch.push(1.0)
        _ = 1 / 0
    assert saver.statistics().state == "closed"
    assert read_channel(h5path, "D/c")[0].shape == (1, 1)
    with pytest.raises(streamsave.StorageError), streamsave.sync.open_saver(h5path):
        pass


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(cls).items()
            if not name.startswith("_") and callable(member)}


@pytest.mark.parametrize(("async_cls", "sync_cls", "async_only"), [
    (streamsave.Saver, streamsave.sync.Saver, {"open"}),
    (streamsave.Detector, streamsave.sync.Detector, set()),
    (streamsave.Channel, streamsave.sync.Channel, {"push_from_thread", "push_many_from_thread"}),
])
def test_sync_facade_matches_the_async_api(async_cls: type, sync_cls: type, async_only: set[str]) -> None:
    """Every public method of the async API has a blocking twin with the same parameters."""
    real, facade = _public(async_cls), _public(sync_cls)
    missing = set(real) - set(facade) - async_only
    assert not missing, f"sync.{sync_cls.__name__} lacks {missing}"
    for name in set(real) - async_only:
        assert list(real[name].parameters) == list(facade[name].parameters), name


def test_pushes_from_many_threads(h5path: Path) -> None:
    async def main() -> None:
        async with streamsave.open_saver(h5path, queue_size=8) as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(2,), dtype="int64", chunk_frames=4)

            def camera_callback(worker: int) -> None:
                for i in range(500):
                    ch.push_from_thread(np.array([worker, i]))

            with pytest.raises(RuntimeError, match="would block the event loop"):
                ch.push_from_thread(np.zeros(2, "int64"))
            threads = [threading.Thread(target=camera_callback, args=(w,)) for w in range(4)]
            for t in threads:
                t.start()
            def join_all() -> None:
                for t in threads:
                    t.join()

            await anyio.to_thread.run_sync(join_all)

    anyio.run(main)
    data, _ = read_channel(h5path, "D/c")
    assert data.shape == (2000, 2)
    for worker in range(4):  # each thread's frames arrive complete and in order
        np.testing.assert_array_equal(data[data[:, 0] == worker, 1], np.arange(500))


async def test_thread_push_times_out_when_the_writer_is_stuck(h5path: Path) -> None:
    saver = await streamsave.Saver.open(h5path, backend=GatedBackend, queue_size=2, flush_interval=60)
    ch = saver.add_detector("D").add_channel("c", chunk_frames=1)
    await ch.push(0.0)
    saver._control.ring()
    with anyio.fail_after(10):
        while not GatedBackend.last.entered.is_set():
            await anyio.sleep(0.001)

    def stuck() -> None:
        ch.push_from_thread(1.0)
        ch.push_from_thread(2.0)
        with pytest.raises(streamsave.QueueFull, match=r"after 0\.05 s"):
            ch.push_from_thread(3.0, timeout=0.05)

    await anyio.to_thread.run_sync(stuck)
    GatedBackend.last.gate.set()
    await saver.aclose()
    st = ch.statistics()
    assert (st.frames_written, st.frames_rejected) == (3, 1)


async def test_open_push_and_close_from_different_tasks(h5path: Path) -> None:
    """The bluesky pattern: stage opens, a driver task pushes, unstage closes."""
    holder: dict[str, streamsave.Saver] = {}
    opened, pushed = anyio.Event(), anyio.Event()

    async def stage() -> None:
        holder["saver"] = await streamsave.Saver.open(h5path)
        holder["ch"] = holder["saver"].add_detector("D").add_channel("c")  # type: ignore[assignment]
        opened.set()

    async def driver() -> None:
        await opened.wait()
        for i in range(10):
            await holder["ch"].push(float(i))  # type: ignore[attr-defined]
        pushed.set()

    async def unstage() -> None:
        await pushed.wait()
        await holder["saver"].aclose()
        await holder["saver"].aclose()  # closing twice is harmless

    async with anyio.create_task_group() as tg:
        tg.start_soon(unstage)
        tg.start_soon(driver)
        tg.start_soon(stage)
    assert (await holder["saver"].wait_closed()).frames_written == 10
    np.testing.assert_array_equal(read_channel(h5path, "D/c")[0][:, 0], np.arange(10.0))


def test_channel_describes_itself_for_integrations(h5path: Path) -> None:
    with streamsave.sync.open_saver(h5path) as saver:
        ch = saver.add_detector("Cam").add_channel("img", shape=(8, 8), dtype="uint16", chunk_frames=3)
        ch.push(np.zeros((8, 8), "uint16"))
        saver.flush()
        paths = ch.channel.paths
        assert paths is not None
        assert paths.data.endswith("/EnlData00") and paths.time.startswith(paths.group)
        assert ch.channel.chunk_shape == (3, 8, 8) and ch.channel.dataset_path == paths.data
        assert ch.channel.dtype == np.dtype("uint16") and ch.channel.file_path == str(h5path)
        assert ch.statistics().frames_durable == 1


@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_thread_blocks_larger_than_the_queue_never_stall(h5path: Path, chunk: int) -> None:
    """A block that needs more room than is free must wake the writer even when the queue
    holds fewer frames than would wake it on its own (a hang found by the stateful test)."""
    with streamsave.sync.open_saver(h5path, queue_size=8, flush_interval=3600) as saver:
        ch = saver.add_detector("D").add_channel("c", dtype="int32", chunk_frames=chunk)
        ch.push(np.int32(-1))  # one frame queued: below every wake threshold
        ch.push_many(np.arange(30, dtype="int32"))  # needs the queue drained, more than once
        assert saver.flush() == {"D/c": 31}
    np.testing.assert_array_equal(read_channel(h5path, "D/c")[0][:, 0], np.arange(-1, 30))
