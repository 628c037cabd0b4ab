"""Event channels: typed events for any number of subscribers, never slowing the writer."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

import streamsave
from tests.conftest import GatedBackend


async def test_a_subscriber_sees_the_whole_lifecycle(h5path: Path) -> None:
    saver = await streamsave.Saver.open(h5path, flush_interval=0.05, progress_interval=0.01)
    seen: list[streamsave.Event] = []

    async def listen(task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with saver.subscribe() as events:
            task_status.started()
            seen.extend([event async for event in events])

    async with anyio.create_task_group() as tg:
        await tg.start(listen)
        ch = saver.add_detector("D").add_channel("c", shape=(8,))
        for i in range(50):
            await ch.push(np.full(8, float(i)))
        await saver.flush()
        await saver.aclose()
    kinds = [type(e) for e in seen]
    assert streamsave.ChannelCreated in kinds
    assert streamsave.Flushed in kinds
    assert kinds[-1] is streamsave.FileClosed
    created = next(e for e in seen if isinstance(e, streamsave.ChannelCreated))
    assert created.channel == "D/c" and created.frame_shape == (8,) and created.dataset.endswith("EnlData00")
    written = [e for e in seen if isinstance(e, streamsave.FramesWritten)]
    assert written and sum(e.frames for e in written) == written[-1].frames_written == 50
    closed = seen[-1]
    assert isinstance(closed, streamsave.FileClosed)
    assert closed.statistics.frames_written == 50 and closed.statistics.state == "closed"
    assert closed.statistics.timings["flush"].calls >= 1


async def test_late_subscriber_still_gets_the_terminal_event(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        await saver.add_detector("D").add_channel("c").push(1.0)
    async with saver.subscribe() as events:
        got = [e async for e in events]
    assert len(got) == 1 and isinstance(got[0], streamsave.FileClosed)
    assert (await saver.wait_closed()).frames_written == 1


async def test_a_slow_subscriber_loses_progress_events_not_the_end(h5path: Path) -> None:
    async with streamsave.open_saver(h5path, flush_interval=0.01, progress_interval=0.001) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(4,))
        async with saver.subscribe(buffer=2) as events:
            for i in range(200):
                await ch.push(np.full(4, float(i)))
                if i % 20 == 0:
                    await saver.flush()
            await saver.aclose()
            got = [e async for e in events]
    assert events.lost > 0
    assert isinstance(got[-1], streamsave.FileClosed)
    assert got[-1].statistics.frames_written == 200


async def test_drops_and_backpressure_are_reported(h5path: Path) -> None:
    saver = await streamsave.Saver.open(h5path, backend=GatedBackend, queue_size=4, overflow="drop_newest",
                                        progress_interval=0.01, flush_interval=60)
    ch = saver.add_detector("D").add_channel("c", shape=(2,), chunk_frames=1)
    async with saver.subscribe() as events:
        await ch.push(np.zeros(2))
        saver._control.ring()
        with anyio.fail_after(10):
            while not GatedBackend.last.entered.is_set():
                await anyio.sleep(0.001)
        for _ in range(10):
            await ch.push(np.ones(2))
        found: list[streamsave.Event] = []
        with anyio.fail_after(10):  # arrives while the writer is still stuck in storage
            async for event in events:
                found.append(event)
                if isinstance(event, streamsave.FramesDropped):
                    break
        GatedBackend.last.gate.set()
        await saver.aclose()
        found.extend([e async for e in events])
    dropped = [e for e in found if isinstance(e, streamsave.FramesDropped)]
    assert dropped[0].channel == "D/c" and dropped[0].policy == "drop_newest"
    # queue of 4 with frame 0 still being stored (it holds its room): 3 of the 10 fit, 7 dropped
    assert sum(e.count for e in dropped) == dropped[-1].total == 7 == ch.statistics().frames_dropped
    pressure = [e for e in found if isinstance(e, streamsave.Backpressure)]
    assert pressure[0].active and pressure[0].queue_capacity == 4
    assert not pressure[-1].active  # relieved once the writer caught up


async def test_progress_helper_reaches_the_target(h5path: Path) -> None:
    async with streamsave.open_saver(h5path, progress_interval=0.01) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(16,), chunk_frames=10)
        updates: list[streamsave.Progress] = []

        async def watch() -> None:
            async for p in saver.progress(ch, target=100):
                updates.append(p)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.lowlevel.checkpoint()
            for i in range(100):
                await ch.push(np.full(16, float(i)))
                if i % 10 == 0:
                    await anyio.sleep(0.005)
            await saver.flush()
    assert updates[0].target == 100
    assert updates[-1].current == 100
    assert [u.current for u in updates] == sorted(u.current for u in updates)


async def test_bad_subscribe_buffer(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        with pytest.raises(streamsave.ConfigError, match="buffer"):
            async with saver.subscribe(buffer=0):
                pass
