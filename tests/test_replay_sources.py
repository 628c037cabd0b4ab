"""Replay of files written elsewhere: by another process still writing it, and by PyMoDAQ."""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import streamsave
from tests import _follow_writer
from tests.test_reader_pymodaq import FRAMES, SETTINGS_XML, _dte, image, spectrum

FOLLOW_WRITER = Path(_follow_writer.__file__)
ENV = {**os.environ, "PYTHONPATH": str(FOLLOW_WRITER.parent.parent)}


async def test_replay_follows_a_file_another_process_is_writing(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    frames, flush_every = 2001, 25
    proc = await anyio.open_process([sys.executable, str(FOLLOW_WRITER), str(path), "follow", str(frames),
                                     str(flush_every)], env=ENV)
    ticks: list[float] = []
    items: list[streamsave.ReplayItem] = []
    try:
        assert proc.stdout is not None
        with anyio.fail_after(60):
            lines = proc.stdout.__aiter__()
            assert json.loads(await lines.__anext__())["event"] == "started"
            async with anyio.create_task_group() as tg:
                async def heartbeat() -> None:
                    while True:
                        ticks.append(time.monotonic())
                        await anyio.sleep(0.005)

                tg.start_soon(heartbeat)
                async with streamsave.replay(path, speed=None, follow=True, poll_interval=0.02) as replayed:
                    async for item in replayed:
                        items.append(item)
                        if len(items) == 1:
                            first_seen = item
                tg.cancel_scope.cancel()
            assert await proc.wait() == 0
            closed = json.loads(await lines.__anext__())
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.aclose()
    assert closed == {"event": "closed", "frames": frames}
    assert first_seen.index == 0
    assert [i.index for i in items] == list(range(frames))  # every frame once, in order, up to the writer's close
    np.testing.assert_array_equal([i.timestamp for i in items], _follow_writer.T0 + np.arange(frames))
    np.testing.assert_array_equal(np.array([i.data for i in items]),
                                  np.repeat(np.arange(frames, dtype=float)[:, None], _follow_writer.SIZE, 1))
    gaps = np.diff(ticks)
    assert len(ticks) > 10 and gaps.max() < 0.5, f"the event loop stalled for {gaps.max():.3f} s"


async def test_follow_gives_up_on_a_writer_that_flushes_nothing_more(tmp_path: Path) -> None:
    """A writer that stops flushing (as a killed one would): idle_timeout ends the replay."""
    path = tmp_path / "stalled.h5"
    proc = await anyio.open_process([sys.executable, str(FOLLOW_WRITER), str(path), "step"], env=ENV)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        lines = BufferedByteReceiveStream(proc.stdout)
        with anyio.fail_after(60):
            await proc.stdin.send(b"push 40\nflush\n")
            assert json.loads(await lines.receive_until(b"\n", 1 << 16))["pushed"] == 40
            assert json.loads(await lines.receive_until(b"\n", 1 << 16)) == {"durable": 40}
            t = time.monotonic()
            async with streamsave.replay(path, speed=None, follow=True, poll_interval=0.02,
                                         idle_timeout=0.5) as replayed:
                got = [item.index async for item in replayed]
            waited = time.monotonic() - t
            assert got == list(range(40)) and 0.4 < waited < 10
            await proc.stdin.send(b"close\n")
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.aclose()


# ---------------------------------------------------------------------- PyMoDAQ
@pytest.fixture(scope="module")
def pymodaq_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What DAQ_Viewer's continuous saving writes, made by pymodaq_data itself (as in
    test_reader_pymodaq), with 5 ms between frames."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from pymodaq_data.data import Axis, DataRaw, DataToExport
            from pymodaq_data.h5modules.data_saving import DataToExportTimedSaver
            from pymodaq_data.h5modules.saving import H5SaverLowLevel
        except Exception as exc:  # pragma: no cover - the test extra installs it
            pytest.skip(f"pymodaq_data is not importable: {exc!r}")
        names: dict[str, Any] = {"Axis": Axis, "DataRaw": DataRaw, "DataToExport": DataToExport}
        path = tmp_path_factory.mktemp("pymodaq") / "continuous.h5"
        h5 = H5SaverLowLevel(save_type="detector", backend="h5py")
        h5.init_file(path, new_file=True)
        node = h5.add_det_group(h5.raw_group, title="Spectro", settings_as_xml=SETTINGS_XML)
        saver = DataToExportTimedSaver(h5)
        for i in range(FRAMES):
            saver.add_data(node, _dte(names, i))
            time.sleep(0.005)
        h5.close_file()
    return path


async def test_replay_of_a_pymodaq_continuous_file_by_its_time_axis(pymodaq_file: Path) -> None:
    import h5py

    with h5py.File(pymodaq_file, "r") as f:
        times = f["RawData/Detector000/NavAxes/Axis00"][()]
    assert np.all(np.diff(times) > 0.004)
    t = time.perf_counter()
    async with streamsave.replay(pymodaq_file, speed=1.0) as replayed:
        items = [item async for item in replayed]
    took = time.perf_counter() - t
    assert took >= 0.9 * (times[-1] - times[0])  # paced by the recorded time axis
    assert replayed.channels == ("Spectro/temperature", "Spectro/spectrum", "Spectro/image")
    # one time axis for the detector: each time, its channels in file order
    assert [(i.channel, i.index) for i in items] == [(c, k) for k in range(FRAMES) for c in replayed.channels]
    for item in items:
        assert item.timestamp == times[item.index]
        if item.channel == "Spectro/spectrum":
            np.testing.assert_array_equal(item.data, spectrum(item.index))
        elif item.channel == "Spectro/image":
            np.testing.assert_array_equal(item.data, image(item.index))
        else:
            assert item.data == 20.0 + item.index


async def test_replay_into_copies_a_pymodaq_file_into_a_streamsave_file(pymodaq_file: Path, tmp_path: Path) -> None:
    report = await streamsave.replay_into(pymodaq_file, tmp_path / "copy.h5", channels=["Spectro/spectrum"])
    assert report.frames == {"Spectro/spectrum": FRAMES}
    with streamsave.open_reader(tmp_path / "copy.h5") as run:
        ch = run.channels["Spectro/spectrum"]
        np.testing.assert_array_equal(ch[:], np.array([spectrum(i) for i in range(FRAMES)]))
        assert ch.settings["Detector Settings"]["Exposure (ms)"] == 12.5
        (axis,) = ch.axes
        assert (axis.label, axis.units) == ("wavelength", "nm")
