"""Cancelling producers, subscribers or everything at random points never hangs,
leaks threads (see conftest) or breaks the accounting pushed == written + dropped."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamsave
from tests.conftest import channel_paths, read_channel


async def _scenario(path: Path, cancel_after: int, where: str, overflow: str, queue: int) -> None:
    counts = {"pushes": 0}
    with anyio.move_on_after(30):  # a hang fails the assertions below instead of the whole run
        async with anyio.create_task_group() as outer:
            async with streamsave.open_saver(path, queue_size=queue, overflow=overflow, flush_interval=0.01,
                                             progress_interval=0.001) as saver:
                ch = saver.add_detector("D").add_channel("c", shape=(4,), dtype="int64", chunk_frames=3)
                with anyio.CancelScope() as producer_scope:

                    async def listen() -> None:
                        async with saver.subscribe(buffer=4) as events:
                            async for _ in events:
                                await anyio.sleep(0.001)

                    outer.start_soon(listen)
                    for i in range(10_000):
                        if i == cancel_after:
                            if where == "producer":
                                producer_scope.cancel()
                            elif where == "everything":
                                outer.cancel_scope.cancel()
                        try:
                            await ch.push(np.full(4, i))
                            counts["pushes"] += 1
                        except streamsave.QueueFull:
                            pass
                        if i % 7 == 0:
                            await anyio.lowlevel.checkpoint()
                if where == "subscriber":
                    outer.cancel_scope.cancel()
            outer.cancel_scope.cancel()
    stats = ch.statistics()
    assert saver.statistics().state == "closed"
    assert stats.frames_pushed == stats.frames_written + stats.frames_dropped
    if stats.frames_written == 0:  # cancelled before its first push (push is a checkpoint): removed at close
        assert "D/c" not in channel_paths(path)
        return
    data, _ = read_channel(path, "D/c")
    assert data.shape[0] == stats.frames_written
    values = data[:, 0]
    assert (np.diff(values) > 0).all()  # written in order, each at most once
    if overflow == "block":
        assert stats.frames_dropped == 0
        np.testing.assert_array_equal(values, np.arange(stats.frames_written))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cancel_after=st.integers(0, 400),
    where=st.sampled_from(["producer", "everything", "subscriber"]),
    overflow=st.sampled_from(["block", "drop_oldest", "drop_newest", "error"]),
    queue=st.integers(1, 64),
)
def test_cancel_anywhere(cancel_after: int, where: str, overflow: str, queue: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(_scenario, Path(tmp) / "c.h5", cancel_after, where, overflow, queue)


@settings(max_examples=8, deadline=None)
@given(cancel_after=st.integers(0, 200), where=st.sampled_from(["producer", "everything"]))
def test_cancel_anywhere_under_trio(cancel_after: int, where: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(_scenario, Path(tmp) / "c.h5", cancel_after, where, "block", 8, backend="trio")
