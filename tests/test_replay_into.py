"""replay_into (a copy through a saver, read back with plain h5py + hdf5plugin), the
replaying instrument of streamsave.simulate, and the blocking facade's replay."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter, as any reader would load it)
import numpy as np
import pytest

import streamsave
import streamsave.sync
from streamsave import simulate
from tests.conftest import channel_paths, read_channel

T0 = 1_700_000_000.0
BLOSC2 = "32026"
WAVELENGTHS = np.linspace(400.0, 800.0, 32)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A camera at 200 Hz (1 s), a spectrometer at 50 Hz with a wavelength axis, a
    thermometer at 10 Hz; blosc2-lz4, with settings."""
    path = tmp_path / "source.h5"
    rng = np.random.default_rng(3)
    with streamsave.sync.open_saver(path, compression="blosc2-lz4") as saver:
        cam = saver.add_detector("Camera", settings={"exposure_ms": 2.5, "mode": "fast"}).add_channel(
            "image", shape=(24, 32), dtype="uint16", units="counts", axes=[streamsave.Axis("y", units="px"),
                                                                           streamsave.Axis("x", units="px")])
        spec = saver.add_detector("Spectrometer").add_channel(
            "spectrum", shape=(32,), units="counts", label="intensity",
            axes=[streamsave.Axis("wavelength", units="nm", values=WAVELENGTHS)])
        temp = saver.add_detector("Thermometer").add_channel("T", units="K")
        cam.push_many(rng.integers(0, 4000, (200, 24, 32), dtype=np.uint16), timestamps=T0 + np.arange(200) / 200)
        spec.push_many(rng.normal(100, 5, (50, 32)), timestamps=T0 + 0.001 + np.arange(50) / 50)
        temp.push_many(293 + rng.normal(0, 0.01, 10), timestamps=T0 + 0.002 + np.arange(10) / 10)
    return path


def filters(path: Path, name: str) -> dict[str, object]:
    with h5py.File(path, "r") as f:
        return dict(f[channel_paths(path)[name] + "/EnlData00"]._filters)


async def test_round_trip_keeps_data_timestamps_and_descriptions_and_changes_compression(source: Path,
                                                                                           tmp_path: Path) -> None:
    copy = tmp_path / "copy.h5"
    report = await streamsave.replay_into(source, copy, compression="blosc2-zstd", chunk_frames=7)
    names = ["Camera/image", "Spectrometer/spectrum", "Thermometer/T"]
    assert dict(report.frames) == {"Camera/image": 200, "Spectrometer/spectrum": 50, "Thermometer/T": 10}
    assert report.bytes_written == 200 * 24 * 32 * 2 + 50 * 32 * 8 + 10 * 8
    assert report.seconds > 0 and report.mb_per_s > 0 and report.saver.frames_dropped == 0
    for name in names:
        data, times = read_channel(copy, name)
        want_data, want_times = read_channel(source, name)
        np.testing.assert_array_equal(data, want_data)
        np.testing.assert_array_equal(times, want_times)
        before, after = filters(source, name), filters(copy, name)
        assert BLOSC2 in before and BLOSC2 in after
        assert before[BLOSC2] != after[BLOSC2]  # the codec is part of the filter's parameters
    with h5py.File(copy, "r") as f:
        cam = f[channel_paths(copy)["Camera/image"] + "/EnlData00"]
        assert cam.chunks == (7, 24, 32)
        assert json.loads(f["RawData/Detector000"].attrs["params_json"]) == {"exposure_ms": 2.5, "mode": "fast"}
    with streamsave.open_reader(copy) as run:
        assert list(run.channels) == names
        assert (run.channels["Camera/image"].compression or "").startswith("blosc2-zstd")
        spec = run.channels["Spectrometer/spectrum"]
        assert (spec.units, spec.label) == ("counts", "intensity")
        (axis,) = spec.axes
        assert axis.units == "nm" and axis.values is not None
        np.testing.assert_allclose(axis.values, WAVELENGTHS)
        assert [a.label for a in run.channels["Camera/image"].axes] == ["y", "x"]
        assert run.channels["Thermometer/T"].units == "K"


async def test_the_default_keeps_the_source_compression(source: Path, tmp_path: Path) -> None:
    await streamsave.replay_into(source, tmp_path / "same.h5")
    with streamsave.open_reader(tmp_path / "same.h5") as run:
        assert run.channels["Camera/image"].compression == "blosc2-lz4-5-byte"
    await streamsave.replay_into(source, tmp_path / "raw.h5", compression=None)
    assert BLOSC2 not in filters(tmp_path / "raw.h5", "Camera/image")


async def test_a_subset_in_time_and_channels(source: Path, tmp_path: Path) -> None:
    copy = tmp_path / "subset.h5"
    report = await streamsave.replay_into(source, copy, channels=["Thermometer/T", "Camera/image"], start=0.25,
                                          stop=0.5)
    assert dict(report.frames) == {"Thermometer/T": 2, "Camera/image": 50}
    assert set(channel_paths(copy)) == {"Thermometer/T", "Camera/image"}
    data, times = read_channel(copy, "Camera/image")
    want_data, want_times = read_channel(source, "Camera/image")
    np.testing.assert_array_equal(times, want_times[50:100])
    np.testing.assert_array_equal(data, want_data[50:100])


async def test_a_paced_copy_takes_the_recorded_time(source: Path, tmp_path: Path) -> None:
    t = time.perf_counter()
    report = await streamsave.replay_into(source, tmp_path / "paced.h5", speed=2.0, channels=["Camera/image"])
    assert time.perf_counter() - t >= 0.45 and report.frames == {"Camera/image": 200}
    assert report.replay.lateness_p50 < 0.01


async def test_the_copy_cannot_replace_its_source(source: Path, tmp_path: Path) -> None:
    with pytest.raises(streamsave.ConfigError, match="is the source itself"):
        await streamsave.replay_into(source, source, mode="w")
    existing = tmp_path / "x.h5"
    existing.touch()
    with pytest.raises(streamsave.StorageError, match="already exists"):
        await streamsave.replay_into(source, existing)
    with pytest.raises(streamsave.ConfigError, match="no channel 'Nope/x'"):
        await streamsave.replay_into(source, tmp_path / "y.h5", channels=["Nope/x"])
    assert not (tmp_path / "y.h5").exists()


# ---------------------------------------------------------------------- the replaying instrument
async def test_the_replaying_instrument_pushes_a_recording_at_its_rate(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "driven.h5"
    async with streamsave.open_saver(out) as saver:
        channel = await simulate.add_recorded_instrument(saver, source)
        assert (channel.full_name, channel.shape, channel.dtype, channel.units) == (
            "Camera/image", (24, 32), np.dtype("uint16"), "counts")
        t = time.perf_counter()
        started = time.time()
        pushed = await simulate.run_recorded(channel, source, speed=2.0)
        took = time.perf_counter() - t
    assert pushed == 200 and 0.45 <= took < 3
    data, times = read_channel(out, "Camera/image")
    want_data, want_times = read_channel(source, "Camera/image")
    np.testing.assert_array_equal(data, want_data)
    np.testing.assert_allclose(np.diff(times), np.diff(want_times) / 2, atol=1e-6)  # the recorded rate, scaled
    assert abs(times[0] - started) < 1.0  # stamped as a live instrument would


async def test_the_replaying_instrument_loops_until_its_limit(source: Path, tmp_path: Path) -> None:
    async with streamsave.open_saver(tmp_path / "loop.h5") as saver:
        channel = await simulate.add_recorded_instrument(saver, source, recorded="Thermometer/T")
        assert await simulate.run_recorded(channel, source, recorded="Thermometer/T", speed=20.0, loop=True,
                                           frames=25) == 25
    data, times = read_channel(tmp_path / "loop.h5", "Thermometer/T")
    want, _ = read_channel(source, "Thermometer/T")
    np.testing.assert_array_equal(data[:, 0], np.concatenate([want[:, 0]] * 3)[:25])
    assert np.all(np.diff(times) > 0)


async def test_the_replaying_instrument_refuses_bad_input(source: Path, tmp_path: Path) -> None:
    async with streamsave.open_saver(tmp_path / "bad.h5") as saver:
        with pytest.raises(streamsave.ConfigError, match=r"recorded='Cam/x'.*Camera/image"):
            await simulate.add_recorded_instrument(saver, source, recorded="Cam/x")
        channel = saver.add_detector("D").add_channel("c", shape=(24, 32), dtype="uint16")
        with pytest.raises(streamsave.ConfigError, match="speed must be a positive number"):
            await simulate.run_recorded(channel, source, speed=0)


# ---------------------------------------------------------------------- blocking facade
def test_the_blocking_facade_replays_and_copies(source: Path, tmp_path: Path) -> None:
    items = list(streamsave.sync.replay(source, speed=None, channels=["Thermometer/T", "Spectrometer/spectrum"]))
    assert len(items) == 60 and [i.timestamp for i in items] == sorted(i.timestamp for i in items)
    for item in streamsave.sync.replay(source, speed=None):  # leaving early closes it
        if item.index == 2:
            break
    report = streamsave.sync.replay_into(source, tmp_path / "sync.h5", channels=["Thermometer/T"])
    assert report.frames == {"Thermometer/T": 10}
    with pytest.raises(streamsave.ConfigError, match="speed"):
        streamsave.sync.replay(source, speed=-1)


def test_the_blocking_replay_takes_every_option_of_the_async_one(source: Path) -> None:
    import inspect

    for name, parameter in inspect.signature(streamsave.replay).parameters.items():
        if name == "source":
            continue
        frames = streamsave.sync.replay(source, **{name: parameter.default})
        frames.close()  # a generator not started: nothing was opened
    async_names = set(inspect.signature(streamsave.replay_into).parameters) - {"source", "destination",
                                                                                "saver_options"}
    report = streamsave.sync.replay_into(source, source.with_name("opts.h5"),
                                         **{n: inspect.signature(streamsave.replay_into).parameters[n].default
                                            for n in async_names})
    assert report.frames["Camera/image"] == 200
