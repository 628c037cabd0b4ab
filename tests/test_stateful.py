"""A stateful hypothesis test: random sequences of declarations, pushes, flushes and a
close, checked against a plain in-memory model of what the file must hold."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import streamsave
import streamsave.sync
from tests.conftest import read_channel

SHAPES = [(), (3,), (2, 4)]


class SaverMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "s.h5"
        self.context = streamsave.sync.open_saver(self.path, queue_size=8, flush_interval=3600,
                                                  compression="blosc2-lz4")
        self.saver = self.context.__enter__()
        self.channels: dict[str, tuple[streamsave.sync.Channel, tuple[int, ...]]] = {}
        self.model: dict[str, list[Any]] = {}
        self.rejected: dict[str, int] = {}
        self.pushed_any = False
        self.closed = False
        self.counter = 0

    def _frame(self, shape: tuple[int, ...]) -> Any:
        self.counter += 1
        return np.full(shape, self.counter, dtype="int32") if shape else np.int32(self.counter)

    @precondition(lambda self: not self.closed and len(self.channels) < 4)
    @rule(shape=st.sampled_from(SHAPES), chunk=st.integers(1, 5))
    def add_channel(self, shape: tuple[int, ...], chunk: int) -> None:
        name = f"c{len(self.channels)}"
        det = self.saver.add_detector(name) if not self.pushed_any else None
        if det is None:
            with pytest.raises(streamsave.LayoutFrozenError):
                self.saver.add_detector(name)
            return
        self.channels[name] = (det.add_channel("ch", shape=shape, dtype="int32", chunk_frames=chunk), shape)
        self.model[name] = []
        self.rejected[name] = 0

    @precondition(lambda self: not self.closed and self.channels)
    @rule(data=st.data(), n=st.integers(1, 20))
    def push(self, data: st.DataObject, n: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.channels)))
        ch, shape = self.channels[name]
        for _ in range(n):
            frame = self._frame(shape)
            ch.push(frame)
            self.model[name].append(frame)
        self.pushed_any = True

    @precondition(lambda self: not self.closed and self.channels)
    @rule(data=st.data())
    def push_nowait(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.channels)))
        ch, shape = self.channels[name]
        frame = self._frame(shape)
        try:
            ch.push_nowait(frame)
        except streamsave.QueueFull:
            self.rejected[name] += 1
        else:
            self.model[name].append(frame)
        self.pushed_any = True

    @precondition(lambda self: not self.closed and self.channels)
    @rule(data=st.data(), n=st.integers(0, 30))
    def push_many(self, data: st.DataObject, n: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.channels)))
        ch, shape = self.channels[name]
        block = np.stack([np.asarray(self._frame(shape)) for _ in range(n)]) if n else np.zeros((0, *shape), "int32")
        ch.push_many(block)
        self.model[name].extend(block)
        self.pushed_any = self.pushed_any or n > 0

    @precondition(lambda self: not self.closed)
    @rule()
    def flush(self) -> None:
        durable = self.saver.flush()
        for name in self.channels:
            assert durable[f"{name}/ch"] == len(self.model[name])

    @precondition(lambda self: not self.closed)
    @rule(data=st.data())
    def bad_frame(self, data: st.DataObject) -> None:
        if not self.channels:
            return
        name = data.draw(st.sampled_from(sorted(self.channels)))
        ch, shape = self.channels[name]
        with pytest.raises(streamsave.FrameMismatchError):
            ch.push(np.zeros((*shape, 2), "int32"))

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        self.context.__exit__(None, None, None)
        self.closed = True
        for name, frames in self.model.items():
            st_ = self.channels[name][0].statistics()
            assert st_.frames_pushed == st_.frames_written + st_.frames_dropped == len(frames)
            assert st_.frames_rejected == self.rejected[name]
            if not frames:
                continue  # empty channels are removed at close
            data, times = read_channel(self.path, f"{name}/ch")
            shape = self.channels[name][1]
            np.testing.assert_array_equal(data.reshape(len(frames), *shape), np.stack(frames).astype("int32"))
            assert len(times) == len(frames) and (np.diff(times) >= 0).all()

    @precondition(lambda self: self.closed)
    @rule()
    def use_after_close(self) -> None:
        for ch, shape in self.channels.values():
            with pytest.raises(streamsave.SaverClosedError):
                ch.push(self._frame(shape))
        with pytest.raises(streamsave.SaverClosedError):
            self.saver.add_detector("late")

    @invariant()
    def accounting(self) -> None:
        for name, (ch, _) in self.channels.items():
            s = ch.statistics()
            assert s.frames_pushed == len(self.model[name])
            assert s.frames_written <= s.frames_pushed and s.frames_durable <= s.frames_written

    def teardown(self) -> None:
        if not self.closed:
            self.close()
        self.tmp.cleanup()


TestSaverMachine = SaverMachine.TestCase
TestSaverMachine.settings = settings(max_examples=15, stateful_step_count=25, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
