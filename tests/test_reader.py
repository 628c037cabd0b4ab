"""The reader on files streamsave wrote: description, lazy indexing, timestamps, files
being written (in this process and in another), crashed and recovered files, follow(),
exports read back with their own libraries, and plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import anyio
import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter)
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamsave
from streamsave import Axis, ReadError
from tests import _follow_writer
from tests._killed_writer import run_and_kill

ROOT: Final = Path(__file__).parent.parent
FOLLOW_WRITER: Final = Path(__file__).with_name("_follow_writer.py")
ENV: Final = {**os.environ, "PYTHONPATH": str(ROOT)}

T0: Final = 1_700_000_000.0
DT: Final = 0.25  # exact in binary: timestamps compare exactly
N: Final = 120
IMAGE: Final = (12, 10)
SPECTRUM: Final = 40
WAVELENGTHS: Final = np.linspace(400.0, 800.0, SPECTRUM)
SETTINGS: Final = {"exposure_ms": 1.5, "mode": "fast", "roi": {"x": 3, "y": [1, 2]}, "on": True}
CHANNELS: Final = ("Camera/image", "Spectrometer/spectrum", "Thermometer/T")


def image(i: int) -> npt.NDArray[np.uint16]:
    return ((np.arange(IMAGE[0] * IMAGE[1]).reshape(IMAGE) + 7 * i) % 65536).astype(np.uint16)


def spectrum(i: int) -> npt.NDArray[np.float64]:
    return np.exp(-(((WAVELENGTHS - 600.0) / 40.0) ** 2)) * (i + 1)


def expected(name: str, frames: range | list[int] | npt.NDArray[Any]) -> npt.NDArray[Any]:
    idx = list(frames)
    if name == "Camera/image":
        return np.array([image(i) for i in idx], dtype=np.uint16).reshape(len(idx), *IMAGE)
    if name == "Spectrometer/spectrum":
        return np.array([spectrum(i) for i in idx]).reshape(len(idx), SPECTRUM)
    return np.array(idx, dtype=np.float64)


async def _record(path: Path, *, compression: str | None, swmr: bool, n: int = N) -> None:
    async with streamsave.open_saver(path, compression=compression, swmr=swmr, chunk_bytes=4096,
                                     flush_interval=0.05) as saver:
        cam = saver.add_detector("Camera", settings=SETTINGS)
        img = cam.add_channel("image", shape=IMAGE, dtype="uint16", units="counts", label="intensity")
        spec = saver.add_detector("Spectrometer").add_channel(
            "spectrum", shape=(SPECTRUM,), units="a.u.",
            axes=[Axis("wavelength", units="nm", values=WAVELENGTHS)])
        temp = saver.add_detector("Thermometer").add_channel("T", units="K", label="temperature")
        for i in range(n):
            t = T0 + i * DT
            await img.push(image(i), timestamp=t)
            await spec.push(spectrum(i), timestamp=t)
            await temp.push(float(i), timestamp=t)


def record(path: Path, *, compression: str | None = "blosc2-lz4", swmr: bool = True, n: int = N) -> Path:
    anyio.run(lambda: _record(path, compression=compression, swmr=swmr, n=n))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str | None, bool], Path]:
    root = tmp_path_factory.mktemp("reader")
    return {(comp, swmr): record(root / f"{comp}-{swmr}.h5", compression=comp, swmr=swmr)
            for comp in (None, "blosc2-lz4") for swmr in (True, False)}


@pytest.fixture
def closed_file(files: dict[tuple[str | None, bool], Path]) -> Path:
    return files[("blosc2-lz4", True)]


# ---------------------------------------------------------------------- description
@pytest.mark.parametrize("swmr", [True, False])
@pytest.mark.parametrize("compression", [None, "blosc2-lz4"])
def test_a_closed_file_describes_its_channels(files: dict[tuple[str | None, bool], Path],
                                               compression: str | None, swmr: bool) -> None:
    path = files[(compression, swmr)]
    with streamsave.open_reader(path) as run:
        assert list(run.channels) == list(CHANNELS)
        assert not run.live and not run.writing and run.refresh() is False
        cam, spec, temp = (run.channels[k] for k in CHANNELS)

        assert (cam.shape, cam.frame_shape, cam.dtype, len(cam)) == ((N, *IMAGE), IMAGE, np.dtype("uint16"), N)
        assert (spec.shape, spec.frame_shape, spec.dtype) == ((N, SPECTRUM), (SPECTRUM,), np.dtype("float64"))
        assert (temp.shape, temp.frame_shape, temp.dtype, len(temp)) == ((N,), (), np.dtype("float64"), N)
        assert (cam.units, cam.label, spec.units, spec.label, temp.units, temp.label) == (
            "counts", "intensity", "a.u.", "spectrum", "K", "temperature")
        assert (cam.detector, cam.name, cam.full_name) == ("Camera", "image", "Camera/image")

        assert cam.axes == () and temp.axes == ()
        (axis,) = spec.axes
        assert isinstance(axis, Axis) and (axis.label, axis.units) == ("wavelength", "nm")
        assert axis.values is not None
        np.testing.assert_array_equal(axis.values, WAVELENGTHS)

        assert cam.settings == SETTINGS and spec.settings == {} and temp.settings == {}
        for ch in (cam, spec, temp):
            assert ch.frames_durable == N
            if compression is None:
                assert ch.compression is None
            else:
                assert ch.compression is not None and ch.compression.startswith("blosc2-lz4")
            chunk = ch.chunk_shape
            assert chunk is not None and chunk[1:] == ch.frame_shape and chunk[0] >= 1
        with h5py.File(path, "r") as f:  # the paths it reports are the file's
            np.testing.assert_array_equal(f[cam.dataset_path][()], expected("Camera/image", range(N)))
            assert cam.time_axis_path is not None
            np.testing.assert_array_equal(f[cam.time_axis_path][()], T0 + np.arange(N) * DT)


def test_print_shows_the_tree(closed_file: Path) -> None:
    with streamsave.open_reader(closed_file) as run:
        shown = str(run)
        assert repr(run).startswith("<Run ")
        for name in CHANNELS:
            assert name in repr(run)
    lines = shown.splitlines()
    assert lines[0] == str(closed_file)
    assert len(lines) == 1 + len(CHANNELS)
    for line, name, shape in zip(lines[1:], CHANNELS, ("12x10 uint16", "40 float64", "scalar float64"), strict=True):
        assert line.split()[0] == name
        assert f"{N} frames" in line and shape in line and "blosc2-lz4" in line
    assert "counts" in lines[1] and "K" in lines[3]


# ---------------------------------------------------------------------- indexing
@pytest.mark.parametrize("name", CHANNELS)
def test_indexing_follows_numpy(closed_file: Path, name: str) -> None:
    reference = expected(name, range(N))
    with streamsave.open_reader(closed_file) as run:
        ch = run.channels[name]
        for index in (0, 1, N - 1, -1, -N, np.int64(5), np.int32(-3)):
            np.testing.assert_array_equal(ch[index], reference[index])
        for key in (slice(None), slice(3, 50), slice(3, 50, 7), slice(None, None, 13), slice(-10, None),
                    slice(-10, -2, 3), slice(100, 1000), slice(50, 10), slice(N, None), slice(None, None, -1),
                    slice(50, 10, -4), slice(-1, -N - 5, -9), slice(0, 0)):
            got = ch[key]
            np.testing.assert_array_equal(got, reference[key], err_msg=f"{name}[{key}]")
            assert got.shape == reference[key].shape and got.dtype == reference.dtype
        for bad in (N, -N - 1, 10**12, -(10**12)):
            with pytest.raises(IndexError, match="out of range"):
                ch[bad]
        for wrong in ((0, 1), 1.5, "3", None, True, np.bool_(False), [0, 1]):
            with pytest.raises(TypeError):
                ch[wrong]
        with pytest.raises(ValueError):
            ch[::0]


def test_reads_are_lazy(tmp_path: Path) -> None:
    """A slice costs its frames, never the whole channel (50 MiB here)."""
    import tracemalloc

    path = tmp_path / "big.h5"
    frames = 400

    async def main() -> None:
        async with streamsave.open_saver(path, compression="blosc2-lz4") as saver:
            ch = saver.add_detector("Cam").add_channel("img", shape=(256, 256), dtype="uint16")
            for i in range(frames):
                await ch.push(np.full((256, 256), i, dtype=np.uint16), timestamp=T0 + i)

    anyio.run(main)
    with streamsave.open_reader(path) as run:
        cam = run.channels["Cam/img"]
        tracemalloc.start()
        try:
            for look in (lambda: cam[200:210], lambda: cam[-1], lambda: cam[::40], lambda: cam[::-100],
                         lambda: cam.between(T0 + 100, T0 + 105), lambda: cam.timestamps[:],
                         lambda: cam.export(tmp_path / "ten.npy", frames=slice(50, 60))):
                tracemalloc.reset_peak()
                look()
                peak = tracemalloc.get_traced_memory()[1]
                assert peak < 8 * 2**20, f"a read of a few frames took {peak / 2**20:.0f} MiB"
        finally:
            tracemalloc.stop()
        assert cam.between(T0 + 100, T0 + 105).data[:, 0, 0].tolist() == [100, 101, 102, 103, 104]


_BOUND = st.one_of(st.none(), st.integers(-2 * N, 2 * N))


@settings(max_examples=150, deadline=None)
@given(start=_BOUND, stop=_BOUND, step=st.one_of(st.none(), st.integers(-3 * N, 3 * N).filter(bool)),
       name=st.sampled_from(CHANNELS))
def test_any_slice_reads_as_numpy_would(files: dict[tuple[str | None, bool], Path], start: int | None,
                                        stop: int | None, step: int | None, name: str) -> None:
    key = slice(start, stop, step)
    reference = expected(name, range(N))[key]
    times = (T0 + np.arange(N) * DT)[key]
    with streamsave.open_reader(files[("blosc2-lz4", True)]) as run:
        ch = run.channels[name]
        got = ch[key]
        assert got.shape == reference.shape and got.dtype == reference.dtype
        np.testing.assert_array_equal(got, reference)
        np.testing.assert_array_equal(ch.timestamps[key], times)


def test_timestamps_read_lazily_like_frames(closed_file: Path) -> None:
    times = T0 + np.arange(N) * DT
    with streamsave.open_reader(closed_file) as run:
        for name in CHANNELS:
            ts = run.channels[name].timestamps
            assert len(ts) == N and repr(ts).startswith("<Timestamps")
            np.testing.assert_array_equal(ts[10:20], times[10:20])
            np.testing.assert_array_equal(ts[::-7], times[::-7])
            np.testing.assert_array_equal(ts[5:100:9], times[5:100:9])
            np.testing.assert_array_equal(np.asarray(ts), times)
            np.testing.assert_array_equal(np.asarray(ts, dtype=np.float32), times.astype(np.float32))
            assert ts[-1] == times[-1] and ts[0] == times[0] and isinstance(ts[3], float)
            assert ts[200:300].shape == (0,)
            with pytest.raises(IndexError):
                ts[N]


def test_between_picks_the_frames_in_a_time_window(closed_file: Path) -> None:
    with streamsave.open_reader(closed_file) as run:
        for name in CHANNELS:
            ch = run.channels[name]
            block = ch.between(T0 + 10 * DT, T0 + 20 * DT)  # t0 <= t < t1
            assert isinstance(block, streamsave.FrameBlock) and block.start == 10
            np.testing.assert_array_equal(block.data, expected(name, range(10, 20)))
            np.testing.assert_array_equal(block.timestamps, T0 + np.arange(10, 20) * DT)
            everything = ch.between(-np.inf, np.inf)
            assert everything.start == 0 and len(everything.data) == N
            for t0, t1 in ((T0 + 20 * DT, T0 + 10 * DT), (0.0, 1.0), (T0 + 1e9, T0 + 2e9), (np.nan, np.inf)):
                empty = ch.between(t0, t1)
                assert empty.data.shape == (0, *ch.frame_shape) and empty.timestamps.shape == (0,)
            one = ch.between(T0 + 7 * DT, T0 + 7 * DT + DT / 2)
            assert one.start == 7 and len(one.data) == 1


def test_between_with_unsorted_timestamps(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    stamps = T0 + rng.permutation(200) * DT

    async def main() -> None:
        async with streamsave.open_saver(tmp_path / "shuffled.h5", chunk_bytes=1024) as saver:
            ch = saver.add_detector("D").add_channel("v", shape=(3,))
            for i, t in enumerate(stamps):
                await ch.push(np.full(3, float(i)), timestamp=float(t))

    anyio.run(main)
    with streamsave.open_reader(tmp_path / "shuffled.h5") as run:
        ch = run.channels["D/v"]
        np.testing.assert_array_equal(np.asarray(ch.timestamps), stamps)
        t0, t1 = T0 + 50 * DT, T0 + 90 * DT
        block = ch.between(t0, t1)
        picked = np.flatnonzero((stamps >= t0) & (stamps < t1))
        assert len(picked) == 40 and block.start == picked[0]
        np.testing.assert_array_equal(block.timestamps, stamps[picked])
        np.testing.assert_array_equal(block.data, np.repeat(picked[:, None].astype(float), 3, axis=1))


def test_a_channel_without_frames(tmp_path: Path) -> None:
    path = tmp_path / "some_empty.h5"

    async def main() -> None:
        async with streamsave.open_saver(path) as saver:
            saver.add_detector("Idle").add_channel("never", shape=(4,))
            busy = saver.add_detector("Busy").add_channel("x")
            await busy.push(1.0)

    anyio.run(main)
    with streamsave.open_reader(path) as run:
        assert "Busy/x" in run.channels and len(run.channels["Busy/x"]) == 1
        for ch in run.channels.values():  # whatever is listed reads
            ch[:]
            np.asarray(ch.timestamps)


# ---------------------------------------------------------------------- files being written
@pytest.mark.parametrize("swmr", [True, False])
async def test_a_file_being_written_in_this_process(tmp_path: Path, swmr: bool) -> None:
    path = tmp_path / "live.h5"
    async with streamsave.open_saver(path, flush_interval=3600, chunk_bytes=8 * 8 * 16, swmr=swmr) as saver:
        ch = saver.add_detector("S").add_channel("t", shape=(8,))
        for i in range(10):
            await ch.push(np.full(8, float(i)), timestamp=T0 + i)
        assert (await saver.flush())["S/t"] == 10
        with streamsave.open_reader(path) as run:
            reader = run.channels["S/t"]
            assert run.live and run.writing and len(reader) == 10 and reader.frames_durable == 10
            for i in range(10, 110):
                await ch.push(np.full(8, float(i)), timestamp=T0 + i)
            with anyio.fail_after(30):  # whole chunks stored, not yet flushed
                while ch.statistics().frames_written < 96:
                    await anyio.sleep(0.005)
            assert reader.refresh() == 10  # the journal's durable count, not the dataset's extent
            assert reader.shape == (10, 8)
            with pytest.raises(IndexError):
                reader[10]
            np.testing.assert_array_equal(reader[-1], np.full(8, 9.0))
            assert (await saver.flush())["S/t"] == 110
            assert reader.refresh() == 110 and reader.frames_durable == 110
            np.testing.assert_array_equal(reader[:][:, 0], np.arange(110.0))
            np.testing.assert_array_equal(np.asarray(reader.timestamps), T0 + np.arange(110))


def _start_writer(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(FOLLOW_WRITER), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


class _Stepper:
    def __init__(self, path: Path) -> None:
        self.proc = _start_writer(str(path), "step")

    def __call__(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read() if self.proc.stderr else ""
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def stepper(tmp_path: Path) -> Iterator[_Stepper]:
    step = _Stepper(tmp_path / "stepped.h5")
    yield step
    step.close()


def test_a_file_being_written_in_another_process(tmp_path: Path, stepper: _Stepper) -> None:
    path = tmp_path / "stepped.h5"
    assert stepper("push 0") == {"pushed": 0, "written": 0}  # the file exists, locked until writing starts
    with pytest.raises(ReadError, match="try again later"):
        streamsave.open_reader(path)
    assert stepper("push 10") == {"pushed": 10, "written": 0}
    assert stepper("flush") == {"durable": 10}
    with streamsave.open_reader(path) as run:
        reader = run.channels["Sensor/trace"]
        assert run.live and run.refresh() is True and "being written: SWMR reader" in str(run)
        assert len(reader) == 10 and reader.units == "V"
        chunk = _follow_writer.STEP_CHUNK
        durable = 10
        for push in (5, 3 * chunk, 2 * chunk + 1, 1):
            pushed = stepper(f"push {push}")["pushed"]
            for _ in range(3):  # never more than the last flush made durable
                assert reader.refresh() == durable
                assert len(reader.timestamps) == durable
            assert stepper("flush") == {"durable": pushed}
            durable = pushed
            assert reader.refresh() == durable
            np.testing.assert_array_equal(reader[:][:, 0], np.arange(durable, dtype=float))
            np.testing.assert_array_equal(reader.timestamps[:], _follow_writer.T0 + np.arange(durable))
        assert stepper("close") == {"event": "closed"}
        assert stepper.proc.wait(timeout=30) == 0
        assert run.refresh() is False and not run.writing
        assert len(reader) == durable
    with streamsave.open_reader(path) as again:
        assert not again.live and len(again.channels["Sensor/trace"]) == durable


# ---------------------------------------------------------------------- crashed files
def _journal(path: Path) -> dict[str, int]:
    with h5py.File(path, "r", swmr=True) as f:
        columns = json.loads(f["streamsave"].attrs["channels"])
        row = f["streamsave/durable_frames"][-1]
    return dict(zip(columns, (int(v) for v in row), strict=True))


def _check_killed_frames(run: streamsave.Run, at_least: dict[str, int]) -> None:
    for name, n in at_least.items():
        ch = run.channels[name]
        assert len(ch) >= n
        values = ch[:].reshape(len(ch), -1)
        index = np.arange(len(ch))
        want = index % 65536 if name == "Camera/image" else index
        np.testing.assert_array_equal(values, np.repeat(want[:, None], values.shape[1], axis=1))
        np.testing.assert_array_equal(np.asarray(ch.timestamps), index.astype(float))


@pytest.mark.parametrize(("mode", "compression"), [("swmr", "none"), ("plain", "blosc2-lz4")])
async def test_a_crashed_file_reads_its_durable_frames(tmp_path: Path, mode: str, compression: str) -> None:
    path = tmp_path / "killed.h5"
    durable = run_and_kill(path, mode, compression, min_durable=100)
    journal = _journal(path)
    if mode == "swmr":  # HDF5 refuses a plain reader: the error says what to do
        with pytest.raises(ReadError, match="streamsave recover"):
            streamsave.open_reader(path, swmr=False)
    else:  # a file written without SWMR opens plainly; still only its durable frames show
        with streamsave.open_reader(path, swmr=False) as plain:
            assert not plain.live and not plain.writing
            for ch in plain.channels.values():
                assert len(ch) == journal[ch.dataset_path]
            _check_killed_frames(plain, durable)
    with streamsave.open_reader(path, swmr=True) as run:
        assert run.live and run.writing  # its writer never said it closed the file
        for name, ch in run.channels.items():
            assert len(ch) == journal[ch.dataset_path] >= durable[name]
        _check_killed_frames(run, durable)
        cam = run.channels["Camera/image"]
        blocks = [b async for b in cam.follow(poll_interval=0.02, idle_timeout=0.2)]
        assert sum(len(b.data) for b in blocks) == len(cam)  # then stops: nothing new came
    report = streamsave.recover(path, tmp_path / "recovered.h5")
    with streamsave.open_reader(tmp_path / "recovered.h5") as clean:
        assert not clean.live and not clean.writing
        kept = {c.name: c.frames_kept for c in report.channels}
        for name, ch in clean.channels.items():
            assert len(ch) == kept[name] >= durable[name]
        _check_killed_frames(clean, durable)


# ---------------------------------------------------------------------- follow
async def test_follow_across_processes_gets_every_frame_once(tmp_path: Path) -> None:
    path = tmp_path / "followed.h5"
    frames, flush_every = 3001, 20  # not a multiple: close flushes the rest
    proc = await anyio.open_process([sys.executable, str(FOLLOW_WRITER), str(path), "follow", str(frames),
                                     str(flush_every)], env=ENV)
    ticks: list[float] = []
    stop = anyio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await anyio.sleep(0.005)

    blocks: list[streamsave.FrameBlock] = []
    try:
        assert proc.stdout is not None
        with anyio.fail_after(60):
            lines = proc.stdout.__aiter__()
            started = json.loads(await lines.__anext__())
            assert started["event"] == "started"
            async with anyio.create_task_group() as tg:
                tg.start_soon(heartbeat)
                with streamsave.open_reader(path) as run:
                    assert run.live
                    cam = run.channels["Sensor/trace"]
                    async for block in cam.follow(poll_interval=0.02):
                        blocks.append(block)
                    assert not run.writing
                stop.set()
            assert await proc.wait() == 0
            closed = json.loads(await lines.__anext__())
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.aclose()
    assert closed == {"event": "closed", "frames": frames}
    assert len(blocks) > 5  # it saw the file grow, flush by flush
    position = 0
    for block in blocks:  # each frame once, in order
        assert block.start == position and len(block.data) == len(block.timestamps) > 0
        position += len(block.data)
    data = np.concatenate([b.data for b in blocks])
    stamps = np.concatenate([b.timestamps for b in blocks])
    assert data.shape == (frames, _follow_writer.SIZE)
    np.testing.assert_array_equal(data, np.repeat(np.arange(frames, dtype=float)[:, None], _follow_writer.SIZE, 1))
    np.testing.assert_array_equal(stamps, _follow_writer.T0 + np.arange(frames))
    gaps = np.diff(ticks)
    assert len(ticks) > 20 and gaps.max() < 0.5, f"the event loop stalled for {gaps.max():.3f} s"


async def test_follow_on_a_closed_file_yields_everything_then_ends(closed_file: Path) -> None:
    with streamsave.open_reader(closed_file) as run:
        ch = run.channels["Spectrometer/spectrum"]
        with anyio.fail_after(10):
            blocks = [b async for b in ch.follow(poll_interval=0.01)]
            later = [b async for b in ch.follow(start=100)]
            beyond = [b async for b in ch.follow(start=N + 5)]
        assert [b.start for b in blocks] == [0]
        np.testing.assert_array_equal(blocks[0].data, expected("Spectrometer/spectrum", range(N)))
        assert [b.start for b in later] == [100] and len(later[0].data) == N - 100
        assert beyond == []
        for bad in (0, -1, True, "fast"):
            with pytest.raises(ValueError, match="poll_interval"):
                async for _ in ch.follow(poll_interval=bad):  # type: ignore[arg-type]
                    pass
        for options in ({"start": -1}, {"start": True}, {"start": 1.5}, {"idle_timeout": -1},
                        {"idle_timeout": float("nan")}, {"idle_timeout": "1"}):
            with pytest.raises(ValueError, match=r"start|idle_timeout"):
                async for _ in ch.follow(**options):
                    pass


def test_a_closed_run_refuses_to_read(closed_file: Path) -> None:
    run = streamsave.open_reader(closed_file)
    ch = run.channels["Camera/image"]
    run.close()
    run.close()  # twice is harmless
    assert run.closed and not run.writing
    assert len(ch) == N and ch.frame_shape == IMAGE and "Camera/image" in str(run)  # what was read stays
    for look in (lambda: ch[0], lambda: ch.timestamps[:3], lambda: ch.refresh(), lambda: run.refresh(),
                 lambda: ch.between(0, T0 * 2)):
        with pytest.raises(ReadError, match="was closed"):
            look()


# ---------------------------------------------------------------------- exports
@pytest.mark.parametrize("name", CHANNELS)
@pytest.mark.parametrize("suffix", [".npy", ".h5", ".hdf5"])
def test_export_binary_formats(closed_file: Path, tmp_path: Path, name: str, suffix: str) -> None:
    frames = slice(5, 100, 3)
    want = expected(name, range(N))[frames]
    times = (T0 + np.arange(N) * DT)[frames]
    with streamsave.open_reader(closed_file) as run:
        ch = run.channels[name]
        out = ch.export(tmp_path / f"out{suffix}", frames=frames)
        assert Path(out) == tmp_path / f"out{suffix}"
        if suffix == ".npy":
            got = np.load(out, allow_pickle=False)
            np.testing.assert_array_equal(got, want)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(np.load(ch.export(tmp_path / "all.npy")), expected(name, range(N)))
            return
        with h5py.File(out, "r") as f:
            np.testing.assert_array_equal(f["frames"][()], want)
            np.testing.assert_array_equal(f["timestamps"][()], times)
            assert f["frames"].attrs["units"] == ch.units and f["frames"].attrs["channel"] == name
            if name == "Spectrometer/spectrum":
                np.testing.assert_array_equal(f["axis0"][()], WAVELENGTHS)
                assert f["axis0"].attrs["label"] == "wavelength"


@pytest.mark.parametrize("name", ["Spectrometer/spectrum", "Thermometer/T"])
@pytest.mark.parametrize(("suffix", "delimiter"), [(".csv", ","), (".txt", None), (".CSV", ",")])
def test_export_text_has_the_timestamps_first(closed_file: Path, tmp_path: Path, name: str, suffix: str,
                                              delimiter: str | None) -> None:
    with streamsave.open_reader(closed_file) as run:
        ch = run.channels[name]
        out = ch.export(tmp_path / f"out{suffix}", frames=slice(10, 30))
        rows = np.loadtxt(out, delimiter=delimiter, ndmin=2)
        assert rows.shape == (20, 1 + (SPECTRUM if ch.frame_shape else 1))
        np.testing.assert_array_equal(rows[:, 0], T0 + np.arange(10, 30) * DT)
        np.testing.assert_allclose(rows[:, 1:].reshape(20, *ch.frame_shape), expected(name, range(10, 30)),
                                   rtol=1e-15)
        one = np.loadtxt(ch.export(tmp_path / f"one{suffix}", frames=slice(4, 5)), delimiter=delimiter, ndmin=2)
        assert one.shape[0] == 1 and one[0, 0] == T0 + 4 * DT
        header = Path(out).read_text().splitlines()[:2]
        assert header[0].startswith("# ") and name in header[0]
        assert header[1].startswith("# timestamp_s")


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".TIF"])
def test_export_tiff_stack(closed_file: Path, tmp_path: Path, suffix: str) -> None:
    tifffile = pytest.importorskip("tifffile")
    with streamsave.open_reader(closed_file) as run:
        cam = run.channels["Camera/image"]
        out = cam.export(tmp_path / f"stack{suffix}", frames=slice(0, 100))
        stack = tifffile.imread(out)
        assert stack.shape == (100, *IMAGE) and stack.dtype == np.uint16
        np.testing.assert_array_equal(stack, expected("Camera/image", range(100)))
        single = tifffile.imread(cam.export(tmp_path / f"one{suffix}", frames=slice(7, 8)))
        np.testing.assert_array_equal(single.reshape(IMAGE), image(7))


@pytest.mark.parametrize("shape", [(6, 3), (6, 4), (3, 6), (4, 4)])
@pytest.mark.parametrize("count", [1, 3, 4])
def test_export_tiff_never_takes_frames_for_colours(tmp_path: Path, shape: tuple[int, int], count: int) -> None:
    """3 or 4 frames, or frames 3 or 4 pixels wide, stay grey frames (not RGB pages)."""
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "few.h5"
    stack = np.arange(count * shape[0] * shape[1], dtype=np.uint16).reshape(count, *shape)

    async def main() -> None:
        async with streamsave.open_saver(path) as saver:
            await saver.add_detector("D").add_channel("f", shape=shape, dtype="uint16").push_many(stack)

    anyio.run(main)
    with streamsave.open_reader(path) as run:
        out = run.channels["D/f"].export(tmp_path / "few.tif")
    with tifffile.TiffFile(out) as tif:
        assert len(tif.pages) == count and all(p.photometric == tifffile.PHOTOMETRIC.MINISBLACK for p in tif.pages)
        np.testing.assert_array_equal(tif.asarray().reshape(count, *shape), stack)


def test_export_refuses_what_a_format_cannot_hold(closed_file: Path, tmp_path: Path) -> None:
    with streamsave.open_reader(closed_file) as run:
        cam, spec, temp = (run.channels[k] for k in CHANNELS)
        for bad in ("out.png", "out", "out.json", "out.npz", "out.h5.bak"):
            with pytest.raises(streamsave.ConfigError, match="unknown suffix"):
                cam.export(tmp_path / bad)
        for suffix in (".csv", ".txt"):
            with pytest.raises(streamsave.ConfigError, match="2-D frames"):
                cam.export(tmp_path / f"img{suffix}")
        for ch in (spec, temp):
            with pytest.raises(streamsave.ConfigError, match="TIFF"):
                ch.export(tmp_path / "x.tif")
        with pytest.raises(streamsave.ConfigError, match="slice"):
            cam.export(tmp_path / "x.npy", frames=3)  # type: ignore[arg-type]
        with pytest.raises(streamsave.ConfigError, match="source"):
            cam.export(closed_file)  # the file being read
        with pytest.raises(streamsave.ConfigError, match="does not exist"):
            cam.export(tmp_path / "missing" / "x.npy")
        (tmp_path / "adir.npy").mkdir()
        with pytest.raises(streamsave.ConfigError, match="is a directory"):
            cam.export(tmp_path / "adir.npy")
        (tmp_path / "adir.npy").rmdir()
        assert not any(tmp_path.iterdir())  # nothing half-written
    with streamsave.open_reader(closed_file) as run:  # and the source is intact
        assert len(run.channels["Camera/image"]) == N


def test_export_of_no_frames(closed_file: Path, tmp_path: Path) -> None:
    with streamsave.open_reader(closed_file) as run:
        spec = run.channels["Spectrometer/spectrum"]
        assert np.load(spec.export(tmp_path / "none.npy", frames=slice(0, 0))).shape == (0, SPECTRUM)
        lines = Path(spec.export(tmp_path / "none.csv", frames=slice(0, 0))).read_text().splitlines()
        assert len(lines) == 2 and all(line.startswith("# ") for line in lines)
        with pytest.raises(streamsave.ConfigError, match="no frames"):
            run.channels["Camera/image"].export(tmp_path / "none.tif", frames=slice(5, 5))
        with h5py.File(spec.export(tmp_path / "none.h5", frames=slice(0, 0)), "r") as f:
            assert f["frames"].shape == (0, SPECTRUM)


# ---------------------------------------------------------------------- plots
def _png(path: Path) -> npt.NDArray[Any]:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels: npt.NDArray[Any] = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert np.ptp(pixels[..., :3]) > 0.2, "the image is uniform"
    return pixels


@pytest.mark.parametrize(("name", "options"), [
    ("Thermometer/T", {}), ("Spectrometer/spectrum", {}), ("Spectrometer/spectrum", {"frame": -1}),
    ("Camera/image", {}), ("Camera/image", {"frame": 50}), ("Camera/image", {"mean": True}),
    ("Spectrometer/spectrum", {"mean": True}),
])
def test_plot_writes_a_png(closed_file: Path, tmp_path: Path, name: str, options: dict[str, Any]) -> None:
    pytest.importorskip("matplotlib")
    with streamsave.open_reader(closed_file) as run:
        out = run.channels[name].plot(tmp_path / "plot.png", **options)
    assert Path(out) == tmp_path / "plot.png"
    _png(Path(out))


def test_plot_refuses_a_frame_out_of_range(closed_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    with streamsave.open_reader(closed_file) as run, pytest.raises(IndexError):
        run.channels["Camera/image"].plot(tmp_path / "p.png", frame=N)
    assert not (tmp_path / "p.png").exists()


def test_plot_of_small_frames(tmp_path: Path) -> None:
    """A single pixel, a single column, one frame: still a picture, no warnings."""
    pytest.importorskip("matplotlib")
    path = tmp_path / "small.h5"

    async def main() -> None:
        async with streamsave.open_saver(path) as saver:
            d = saver.add_detector("D")
            column = d.add_channel("column", shape=(5, 1))
            pixel = d.add_channel("pixel", shape=(1, 1))
            short = d.add_channel("short", shape=(1,))
            scalar = d.add_channel("once")
            await column.push(np.arange(5.0).reshape(5, 1))
            await pixel.push(np.ones((1, 1)))
            await short.push(np.ones(1))
            await scalar.push(3.0)

    anyio.run(main)
    with streamsave.open_reader(path) as run:
        for key in ("D/column", "D/pixel", "D/short", "D/once"):
            out = run.channels[key].plot(tmp_path / f"{key.replace('/', '_')}.png")
            assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_reader_in_another_process_does_not_break_the_writers_close(tmp_path: Path) -> None:
    path = tmp_path / "held.h5"
    hold = ("import sys, streamsave\nrun = streamsave.open_reader(sys.argv[1])\nprint(len(run.channels['S/t']), "
            "flush=True)\nsys.stdin.read()\n")
    async with streamsave.open_saver(path, flush_interval=0.05) as saver:
        ch = saver.add_detector("S").add_channel("t", shape=(4,))
        saver.add_detector("Idle").add_channel("never")
        await ch.push_many(np.zeros((10, 4)))
        await saver.flush()
        reader = await anyio.open_process([sys.executable, "-c", hold, str(path)], env=ENV)
        try:
            assert reader.stdout is not None and reader.stdin is not None
            with anyio.fail_after(30):
                assert (await reader.stdout.receive()).strip() == b"10"
            await saver.aclose()  # the reader still has the file open
        finally:
            if reader.stdin is not None:
                await reader.stdin.aclose()
            with anyio.fail_after(30):
                await reader.wait()
    with streamsave.open_reader(path) as run:
        assert list(run.channels) == ["S/t"]


def test_a_plain_file_its_writer_never_closed(closed_file: Path, tmp_path: Path) -> None:
    """/streamsave/writing still 1 (a killed plain writer): only the journal's durable frames show."""
    import shutil

    path = Path(shutil.copy(closed_file, tmp_path / "unclosed.h5"))
    with h5py.File(path, "r+") as f:
        f["streamsave/writing"][0] = 1
        f["streamsave/durable_frames"][0, :] = [50, 60, 70]
    with streamsave.open_reader(path) as run:
        assert not run.live and not run.writing  # nobody has it open
        assert [len(ch) for ch in run.channels.values()] == [50, 60, 70]
        np.testing.assert_array_equal(run.channels["Thermometer/T"][:], np.arange(70.0))


def test_a_recovered_copy_says_its_writer_closed_it(closed_file: Path, tmp_path: Path) -> None:
    import shutil

    path = Path(shutil.copy(closed_file, tmp_path / "unclosed.h5"))
    with h5py.File(path, "r+") as f:
        f["streamsave/writing"][0] = 1
    streamsave.recover(path, tmp_path / "clean.h5")
    with h5py.File(tmp_path / "clean.h5", "r") as f:
        assert f["streamsave/writing"][0] == 0


def test_follow_under_asyncio_and_trio(closed_file: Path) -> None:
    """One run, followed from two event loops in turn (each anyio backend)."""
    with streamsave.open_reader(closed_file) as run:
        ch = run.channels["Thermometer/T"]

        async def frames() -> int:
            return sum([len(block.data) async for block in ch.follow(poll_interval=0.01)])

        assert anyio.run(frames) == N
        assert anyio.run(frames, backend="trio") == N
        assert anyio.run(frames) == N


def test_between_reads_only_the_frames_it_returns(tmp_path: Path) -> None:
    """Two frames at either end of a long channel whose timestamps are out of order."""
    import tracemalloc

    path = tmp_path / "far.h5"
    frames = 300

    async def main() -> None:
        async with streamsave.open_saver(path, compression="blosc2-lz4") as saver:
            ch = saver.add_detector("Cam").add_channel("img", shape=(256, 512), dtype="uint16")
            for i in range(frames):
                stamp = 0.0 if i in (0, frames - 1) else T0 + i
                await ch.push(np.full((256, 512), i, dtype=np.uint16), timestamp=stamp)

    anyio.run(main)
    with streamsave.open_reader(path) as run:
        tracemalloc.start()
        try:
            block = run.channels["Cam/img"].between(-1.0, 1.0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert block.start == 0 and block.data[:, 0, 0].tolist() == [0, frames - 1]
    assert peak < 16 * 2**20, f"between() read {peak / 2**20:.0f} MiB for two frames"
