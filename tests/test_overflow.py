"""Overflow policies and accounting, with the writer held still by a gated backend."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import numpy as np
import pytest

import streamsave
from tests.conftest import GatedBackend, read_channel


async def _fill(h5path: Path, gated: type[GatedBackend], overflow: str):  # type: ignore[no-untyped-def]
    """Open a saver whose writer is stuck writing frame 0 with 3 more frames queued: a full
    queue of 4, since a frame counts against the queue until it is stored."""
    saver = await streamsave.Saver.open(h5path, backend=gated, queue_size=4, overflow=overflow,
                                        flush_interval=60)
    ch = saver.add_detector("D").add_channel("c", shape=(3,), dtype="int64", chunk_frames=1)
    await ch.push(np.full(3, 0))
    saver._control.ring()
    with anyio.fail_after(10):
        while not gated.last.entered.is_set():
            await anyio.sleep(0.001)
    for i in range(1, 4):
        ch.push_nowait(np.full(3, i))
    assert ch.statistics().queue_fill == 4
    if overflow in ("block", "error"):
        with pytest.raises(streamsave.QueueFull):  # the frame being stored still holds its room
            ch.push_nowait(np.full(3, 4))
    return saver, ch


async def test_error_policy_raises_and_counts_rejections(h5path: Path, gated: type[GatedBackend]) -> None:
    saver, ch = await _fill(h5path, gated, "error")
    with pytest.raises(streamsave.QueueFull, match="queue full"):
        await ch.push(np.full(3, 5))
    gated.last.gate.set()
    await saver.aclose()
    data, _ = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data[:, 0], [0, 1, 2, 3])
    st = ch.statistics()
    assert (st.frames_pushed, st.frames_written, st.frames_dropped, st.frames_rejected) == (4, 4, 0, 2)


async def test_push_nowait_raises_under_block_policy(h5path: Path, gated: type[GatedBackend]) -> None:
    saver, ch = await _fill(h5path, gated, "block")
    with pytest.raises(streamsave.QueueFull):
        ch.push_nowait(np.full(3, 5))
    gated.last.gate.set()
    await saver.aclose()
    assert ch.statistics().frames_written == 4


async def test_drop_newest_discards_the_new_frame(h5path: Path, gated: type[GatedBackend]) -> None:
    saver, ch = await _fill(h5path, gated, "drop_newest")
    await ch.push(np.full(3, 5))
    ch.push_nowait(np.full(3, 6))
    gated.last.gate.set()
    await saver.aclose()
    data, _ = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data[:, 0], [0, 1, 2, 3])
    st = ch.statistics()
    assert (st.frames_pushed, st.frames_written, st.frames_dropped) == (6, 4, 2)
    assert st.frames_pushed == st.frames_written + st.frames_dropped


async def test_drop_oldest_discards_the_oldest_queued(h5path: Path, gated: type[GatedBackend]) -> None:
    saver, ch = await _fill(h5path, gated, "drop_oldest")
    await ch.push(np.full(3, 5))
    await ch.push_many(np.full((2, 3), 6))
    gated.last.gate.set()
    await saver.aclose()
    data, _ = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data[:, 0], [0, 5, 6, 6])  # frame 0 was being stored: not droppable
    st = ch.statistics()
    assert (st.frames_pushed, st.frames_written, st.frames_dropped) == (7, 4, 3)


async def test_block_policy_waits_for_room_then_proceeds(h5path: Path, gated: type[GatedBackend]) -> None:
    saver, ch = await _fill(h5path, gated, "block")
    done = anyio.Event()

    async def producer() -> None:
        await ch.push(np.full(3, 5))
        await ch.push_many(np.full((6, 3), 6))  # larger than the queue: goes in whole once it is empty
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        await anyio.sleep(0.05)
        assert not done.is_set(), "push must wait while the queue is full"
        gated.last.gate.set()
        with anyio.fail_after(10):
            await done.wait()
    await saver.aclose()
    data, _ = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data[:, 0], [0, 1, 2, 3, 5, 6, 6, 6, 6, 6, 6])
    assert ch.statistics().queue_high_water == 6  # the oversized block, queued whole into the empty queue


async def test_cancelled_waiting_push_is_not_counted(h5path: Path, gated: type[GatedBackend]) -> None:
    saver, ch = await _fill(h5path, gated, "block")
    with anyio.move_on_after(0.05):
        await ch.push(np.full(3, 5))
    gated.last.gate.set()
    await saver.aclose()
    st = ch.statistics()
    assert (st.frames_pushed, st.frames_written, st.frames_dropped) == (4, 4, 0)


async def test_error_policy_refuses_whole_block(h5path: Path, gated: type[GatedBackend]) -> None:
    saver, ch = await _fill(h5path, gated, "error")
    with pytest.raises(streamsave.QueueFull):
        await ch.push_many(np.zeros((2, 3), "int64"))
    with pytest.raises(streamsave.QueueFull, match="queue full"):
        await ch.push_many(np.zeros((9, 3), "int64"))
    gated.last.gate.set()
    await saver.aclose()
    assert ch.statistics().frames_written == 4


class SlowBackend(GatedBackend):
    """Storage that takes 2 ms per chunk: slower than the producer."""

    def write_chunk(self, path: str, offset: object, data: object, filter_mask: int = 0) -> None:
        threading.Event().wait(0.002)
        super(GatedBackend, self).write_chunk(path, offset, data, filter_mask)  # type: ignore[arg-type]


@pytest.mark.parametrize("overflow", ["block", "drop_newest", "drop_oldest"])
async def test_slow_storage(h5path: Path, overflow: str) -> None:
    queue = 16
    saver = await streamsave.Saver.open(h5path, backend=SlowBackend, queue_size=queue, overflow=overflow,
                                        progress_interval=0.01)
    ch = saver.add_detector("D").add_channel("c", shape=(64,), chunk_frames=1)
    pressure: list[streamsave.Backpressure] = []
    async with saver.subscribe() as events:
        for i in range(300):
            await ch.push(np.full(64, float(i)))
        await saver.aclose()
        pressure = [e async for e in events if isinstance(e, streamsave.Backpressure)]
    st = ch.statistics()
    assert st.queue_high_water <= queue  # memory stays within the queue budget
    assert st.frames_pushed == 300 == st.frames_written + st.frames_dropped
    assert pressure and pressure[0].active
    data, _ = read_channel(h5path, "D/c")
    values = data[:, 0]
    assert (np.diff(values) > 0).all()
    if overflow == "block":
        assert st.frames_dropped == 0  # the producer was slowed down instead
        np.testing.assert_array_equal(values, np.arange(300.0))
    else:
        assert st.frames_dropped > 0
        if overflow == "drop_newest":
            assert values[0] == 0.0  # the oldest frames were kept
        else:
            assert values[-1] == 299.0  # the newest frames were kept
