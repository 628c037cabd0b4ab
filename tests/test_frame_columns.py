"""Frame numbers, their gaps, and per-frame metadata: stored beside the frames, read back
with plain h5py and with the reader, refused with typed errors when wrong."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, cast

import anyio
import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter, as any reader would load it)
import numpy as np
import pytest

import streamsave
import streamsave.sync
from tests.conftest import GatedBackend, channel_paths, read_channel

META = {"exposure": "float64", "temperature": "float32", "position": "int32", "shutter": "bool"}


def _meta(i: int) -> dict[str, Any]:
    return {"exposure": 0.001 * i, "temperature": 290.0 + i, "position": i - 5, "shutter": i % 2 == 0}


def _columns(path: Path, name: str) -> tuple[Any, dict[str, Any]]:
    """(frame numbers, metadata by name) of a channel, with plain h5py."""
    with h5py.File(path, "r") as f:
        g = f[channel_paths(path)[name]]
        numbers = g["FrameNumbers"][()] if "FrameNumbers" in g else None
        meta = {k: g["Metadata"][k][()] for k in g["Metadata"]} if "Metadata" in g else {}
        return numbers, meta


@pytest.mark.parametrize("compression", [None, "blosc2-lz4"])
async def test_numbers_and_metadata_round_trip(h5path: Path, compression: str | None) -> None:
    """Each push form, small and large frames, frames cut into tiles: every stored frame has
    its number and metadata, and nothing else does."""
    async with streamsave.open_saver(h5path, compression=compression, flush_interval=0.02,
                                     chunk_bytes=16 * 1024) as saver:
        det = saver.add_detector("Cam")
        image = det.add_channel("image", shape=(64, 64), dtype="uint16", frame_numbers=True, metadata=META)
        tiles = det.add_channel("big", shape=(256, 64), dtype="uint16", frame_numbers=True, metadata=META)
        scalar = det.add_channel("T", frame_numbers=True, metadata={"x": "float64"})
        n = 0
        for i in range(0, 40, 2):  # given numbers with gaps of one
            await image.push(np.full((64, 64), i, "uint16"), frame_number=i, metadata=_meta(i))
            await tiles.push(np.full((256, 64), i, "uint16"), frame_number=i, metadata=_meta(i))
            n += 1
        image.push_nowait(np.full((64, 64), 40, "uint16"), metadata=_meta(40))  # the next number: 39
        await image.push_many(np.stack([np.full((64, 64), v, "uint16") for v in (50, 51, 52)]),
                              frame_numbers=[50, 51, 52],
                              metadata={k: [_meta(v)[k] for v in (50, 51, 52)] for k in META})
        await anyio.to_thread.run_sync(lambda: image.push_from_thread(
            np.full((64, 64), 60, "uint16"), frame_number=60, metadata=_meta(60)))
        for i in range(3000):  # staged small frames, numbered by the saver
            await scalar.push(float(i), metadata={"x": i * 0.5})
        await scalar.push_many(np.arange(5.0), metadata={"x": np.arange(5.0)})
        await saver.flush()
        with streamsave.open_reader(h5path) as live:  # while writing: as far as the last flush
            ch = live.channels["Cam/T"]
            assert ch.frame_numbers is not None and len(ch.frame_numbers) == len(ch) == 3005
    data, _ = read_channel(h5path, "Cam/image")
    numbers, meta = _columns(h5path, "Cam/image")
    assert numbers.tolist() == [*range(0, 40, 2), 39, 50, 51, 52, 60]
    assert len(data) == len(numbers) and all(len(v) == len(numbers) for v in meta.values())
    assert meta["position"].dtype == np.int32 and meta["temperature"].dtype == np.float32
    for i, number in enumerate(numbers.tolist()):
        expected = _meta(40 if number == 39 else number)
        assert int(data[i, 0, 0]) == (40 if number == 39 else number)
        assert meta["exposure"][i] == expected["exposure"] and meta["position"][i] == expected["position"]
        assert bool(meta["shutter"][i]) == expected["shutter"]
    tiles_numbers, tiles_meta = _columns(h5path, "Cam/big")
    assert tiles_numbers.tolist() == list(range(0, 40, 2)) and len(tiles_meta["exposure"]) == n
    scalar_numbers, scalar_meta = _columns(h5path, "Cam/T")
    np.testing.assert_array_equal(scalar_numbers, np.arange(3005))
    np.testing.assert_array_equal(scalar_meta["x"], np.r_[np.arange(3000) * 0.5, np.arange(5.0)])
    with streamsave.open_reader(h5path) as run:
        ch = run.channels["Cam/image"]
        assert ch.frame_numbers is not None
        assert ch.frame_numbers[-1] == 60 and ch.frame_numbers[::-1][0] == 60
        assert sorted(ch.metadata) == sorted(META) and ch.metadata["position"][:3].tolist() == [-5, -3, -1]
        gaps = ch.missing_frames()
        missing = [m for r in gaps for m in r]
        assert missing == [*range(1, 39, 2), *range(40, 50), *range(53, 60)]
        assert run.channels["Cam/T"].missing_frames() == []


async def test_plain_channels_have_no_columns(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(4,))
        assert not ch.frame_numbers and ch.frame_numbers_path is None and ch.metadata == {}
        await ch.push(np.zeros(4))
    with h5py.File(h5path, "r") as f:
        group = f[channel_paths(h5path)["D/c"]]
        assert set(group) == {"EnlData00", "Axis00"}
    with streamsave.open_reader(h5path) as run:
        assert run.channels["D/c"].frame_numbers is None and run.channels["D/c"].metadata == {}
        with pytest.raises(streamsave.ReadError, match="no frame numbers"):
            run.channels["D/c"].missing_frames()


async def _full_queue(h5path: Path, gated: type[GatedBackend], overflow: str) -> tuple[Any, Any]:
    """A saver whose writer is stuck storing frame 0 with 3 more queued (a full queue of 4)."""
    saver = await streamsave.Saver.open(h5path, backend=gated, queue_size=4, overflow=overflow, flush_interval=60)
    ch = saver.add_detector("D").add_channel("c", shape=(3,), dtype="int64", chunk_frames=1, metadata={"m": "int64"})
    await ch.push(np.full(3, 0), metadata={"m": 0})
    saver._control.ring()
    with anyio.fail_after(10):
        while not gated.last.entered.is_set():
            await anyio.sleep(0.001)
    for i in range(1, 4):
        ch.push_nowait(np.full(3, i), metadata={"m": i})
    return saver, ch


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest"])
async def test_dropped_frames_show_as_gaps(h5path: Path, gated: type[GatedBackend], overflow: str) -> None:
    """Drop policies number frames by default; the dropped ones are the missing numbers."""
    saver, ch = await _full_queue(h5path, gated, overflow)
    assert ch.frame_numbers
    for i in range(4, 7):
        await ch.push(np.full(3, i), metadata={"m": i})
    await ch.push_many(np.full((2, 3), 7), metadata={"m": [7, 8]})
    gated.last.gate.set()
    await saver.aclose()
    data, _ = read_channel(h5path, "D/c")
    numbers, meta = _columns(h5path, "D/c")
    np.testing.assert_array_equal(meta["m"], numbers)  # each frame kept its own number and metadata
    with streamsave.open_reader(h5path) as run:
        missing = [m for r in run.channels["D/c"].missing_frames() for m in r]
    st = ch.statistics()
    assert len(missing) == st.frames_dropped > 0
    assert sorted([*numbers.tolist(), *missing]) == list(range(st.frames_pushed))
    if overflow == "drop_newest":
        assert numbers.tolist() == [0, 1, 2, 3]
    else:
        assert numbers.tolist()[0] == 0 and numbers.tolist()[-2:] == [7, 8]
    np.testing.assert_array_equal(data[:, 0], [v if v < 7 else 7 for v in numbers.tolist()])


async def test_frames_dropped_at_an_aborted_close_show_at_the_end(h5path: Path, gated: type[GatedBackend]) -> None:
    saver = await streamsave.Saver.open(h5path, backend=gated, queue_size=8, close_timeout=0.2, flush_interval=60)
    ch = saver.add_detector("D").add_channel("c", shape=(3,), chunk_frames=1, frame_numbers=True)
    for i in range(5):
        await ch.push(np.full(3, float(i)), frame_number=10 + i)
    saver._control.ring()
    with anyio.fail_after(10):
        while not gated.last.entered.is_set():
            await anyio.sleep(0.001)

    def release() -> None:
        gated.last.gate.wait(0.5)
        gated.last.gate.set()

    opener = threading.Thread(target=release)
    opener.start()
    await saver.aclose(abort=True)
    opener.join()
    with streamsave.open_reader(h5path) as run:
        channel = run.channels["D/c"]
        assert channel.frame_numbers is not None
        stored = channel.frame_numbers[:].tolist()
        missing = [m for r in channel.missing_frames() for m in r]
    assert sorted(stored + missing) == list(range(10, 15)) and missing
    assert ch.statistics().frames_dropped == len(missing)


@pytest.mark.filterwarnings("ignore:The axis requested with index")
@pytest.mark.filterwarnings("ignore:The specified dimensionality is not coherent")
async def test_pymodaq_loads_a_channel_with_columns(h5path: Path) -> None:
    """PyMoDAQ's loader sees the frames and exactly one time axis; the columns are not axes."""
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader
    from pymodaq_data.h5modules.saving import H5SaverLowLevel

    async with streamsave.open_saver(h5path) as saver:
        ch = saver.add_detector("Cam").add_channel("image", shape=(8, 8), dtype="uint16", frame_numbers=True,
                                                  metadata=META)
        for i in range(5):
            await ch.push(np.full((8, 8), i, "uint16"), frame_number=2 * i, metadata=_meta(i))
    h5 = H5SaverLowLevel(backend="h5py")
    h5.init_file(h5path, mode="r")
    try:
        loaded = DataLoader(h5).load_data("/RawData/Detector000/Data2D/CH00/EnlData00")
        data = np.asarray(loaded[0])
        assert data.shape == (5, 8, 8) and data[:, 0, 0].tolist() == list(range(5))
        assert [a.label for a in loaded.axes].count("time") == 1
    finally:
        h5.close_file()


async def test_sync_facade_pushes_numbers_and_metadata(h5path: Path) -> None:
    def record() -> None:
        with streamsave.sync.open_saver(h5path) as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(2,), frame_numbers=True, metadata={"e": "float64"})
            assert ch.frame_numbers and ch.metadata == {"e": np.dtype("float64")}
            ch.push(np.zeros(2), frame_number=7, metadata={"e": 1.5})
            ch.push_nowait(np.zeros(2), metadata={"e": 2.5})
            ch.push_many(np.zeros((2, 2)), frame_numbers=[20, 21], metadata={"e": [3.5, 4.5]})
            assert ch.frame_numbers_path is not None and set(ch.metadata_paths) == {"e"}

    await anyio.to_thread.run_sync(record)
    numbers, meta = _columns(h5path, "D/c")
    assert numbers.tolist() == [7, 8, 20, 21] and meta["e"].tolist() == [1.5, 2.5, 3.5, 4.5]


# ---------------------------------------------------------------------- bad input
async def test_bad_declarations_are_config_errors(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        det = saver.add_detector("D")
        for bad, match in ((["exposure"], "map names to dtypes"), ({"e": "str"}, "numeric scalar dtype"),
                           ({"e": "nonsense"}, "not a numpy dtype"), ({"": "f8"}, "empty"),
                           ({"a/b": "f8"}, "'/'"), ({"..": "f8"}, "not allowed"),
                           ({f"m{i}": "f8" for i in range(65)}, "at most 64"), ({"e": "(2,)f8"}, "scalar")):
            with pytest.raises(streamsave.ConfigError, match=match):
                det.add_channel("c", metadata=bad)  # type: ignore[arg-type]
        with pytest.raises(streamsave.ConfigError, match="frame_numbers must be"):
            det.add_channel("c", frame_numbers="yes")  # type: ignore[arg-type]
        ch = det.add_channel("c", metadata={"e": "f8"})  # the failed declarations left nothing behind
        await ch.push(0.0, metadata={"e": 1.0})


async def test_bad_frame_numbers_are_refused_and_lose_nothing(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        det = saver.add_detector("D")
        ch = det.add_channel("c", shape=(2,), frame_numbers=True)
        plain = det.add_channel("p")
        await ch.push(np.zeros(2), frame_number=5)
        cases: list[tuple[Any, str]] = [(5, "not larger than the previous one \\(5\\)"), (3, "not larger"),
                                        (-1, "from 0 to 2\\*\\*63-1"), (2**63, "from 0"), (1.5, "must be an integer"),
                                        ("6", "must be an integer"), (True, "must be an integer"),
                                        (np.float64(6), "must be an integer")]
        for bad, match in cases:
            with pytest.raises(streamsave.FrameNumberError, match=match) as info:
                await ch.push(np.ones(2), frame_number=bad)
            assert "'D/c'" in str(info.value)
            with pytest.raises(streamsave.FrameNumberError, match=match):
                ch.push_nowait(np.ones(2), frame_number=bad)
        with pytest.raises(streamsave.FrameNumberError, match="keeps no frame numbers"):
            await plain.push(1.0, frame_number=1)
        for given, match in (([7, 7], "must increase"), ([8, 6], "must increase"), ([1.0, 2.0], "integers"),
                             ([7], "2 integers"), ([4, 9], "not larger"), ([-2, 9], "from 0")):
            with pytest.raises(streamsave.FrameNumberError, match=match):
                await ch.push_many(np.ones((2, 2)), frame_numbers=given)
        await ch.push(np.full(2, 2.0), frame_number=np.int64(6))
        await ch.push(np.full(2, 3.0))
        assert ch.statistics().frames_rejected == 0 and ch.statistics().frames_pushed == 3
    numbers, _ = _columns(h5path, "D/c")
    data, _ = read_channel(h5path, "D/c")
    assert numbers.tolist() == [5, 6, 7] and data[:, 0].tolist() == [0.0, 2.0, 3.0]


async def test_bad_metadata_is_refused_and_loses_nothing(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        det = saver.add_detector("D")
        ch = det.add_channel("c", shape=(2,), metadata={"e": "float32", "n": "uint8", "z": "complex64"})
        plain = det.add_channel("p")
        good = {"e": 1.0, "n": 3, "z": 1j}
        await ch.push(np.zeros(2), metadata=good)
        cases: list[tuple[Any, str]] = [
            (None, "got none"), ({"e": 1.0, "n": 3}, "missing 'z'"), ({**good, "x": 1}, "unknown 'x'"),
            ({"e": 1.0, "n": 3, "q": 1j}, "unknown 'q'; missing 'z'"), ([1.0, 3, 1j], "must be a dict"),
            ({**good, "n": 256}, "outside uint8's range"), ({**good, "n": -1}, "outside uint8"),
            ({**good, "n": 1.5}, "does not convert"), ({**good, "e": "1.0"}, "not a number"),
            ({**good, "e": 1e300}, "outside float32's range"), ({**good, "e": [1.0]}, "not a scalar"),
            ({**good, "n": True}, "is a boolean"), ({**good, "e": 2j}, "does not convert"), ({**good, "e": None},
                                                                                             "not a number")]
        for bad, match in cases:
            with pytest.raises(streamsave.MetadataError, match=match) as info:
                await ch.push(np.ones(2), metadata=bad)
            assert "'D/c'" in str(info.value)
        for bad_block, match in (({"e": [1.0], "n": [1, 2], "z": [1j, 2j]}, "2 numbers"),
                                 ({"e": [1.0, 2.0], "n": [1, 300], "z": [1j, 2j]}, "outside uint8"),
                                 ({"e": [1.0, 2.0], "n": [1, 2]}, "missing 'z'"),
                                 ({"e": ["a", "b"], "n": [1, 2], "z": [1j, 2j]}, "2 numbers")):
            with pytest.raises(streamsave.MetadataError, match=match):
                await ch.push_many(np.ones((2, 2)), metadata=cast(Any, bad_block))
        with pytest.raises(streamsave.MetadataError, match="declares no metadata"):
            await plain.push(1.0, metadata={"e": 1.0})
        await ch.push(np.full(2, 2.0), metadata={"e": np.float64(0.5), "n": np.uint8(7), "z": 2})
        await ch.push_many(np.full((2, 2), 3.0), metadata={"e": [1, 2], "n": np.array([1, 2], "int64"),
                                                          "z": [0.5, 1]})
    _, meta = _columns(h5path, "D/c")
    data, _ = read_channel(h5path, "D/c")
    assert data[:, 0].tolist() == [0.0, 2.0, 3.0, 3.0]
    assert meta["n"].tolist() == [3, 7, 1, 2] and meta["e"].tolist() == [1.0, 0.5, 1.0, 2.0]
    assert meta["z"].tolist() == [1j, 2, 0.5, 1]


async def test_info_shows_frame_numbers_gaps_and_metadata(h5path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streamsave.cli import main

    async with streamsave.open_saver(h5path) as saver:
        ch = saver.add_detector("D").add_channel("c", frame_numbers=True, metadata={"e": "float32"})
        for number in (0, 1, 2, 5, 6, 10):
            await ch.push(1.0, frame_number=number, metadata={"e": 0.5})
    assert main(["info", "--json", str(h5path)]) == 0
    doc = json.loads(capsys.readouterr().out)["channels"]["D/c"]
    assert doc["frame_numbers"] == {"first": 0, "last": 10, "missing": 5, "gaps": [[3, 4], [7, 9]]}
    assert doc["metadata"] == {"e": "float32"}
    assert main(["info", str(h5path)]) == 0
    text = capsys.readouterr().out
    assert "numbers  0..10, 5 missing in 2 gaps (3-4, 7-9)" in text and "metadata e (float32)" in text


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
async def test_small_frames_batched_and_dropped_keep_their_columns(h5path: Path, overflow: str) -> None:
    """Scalars are queued in batches; dropping part of a batch drops its columns with it."""
    async with streamsave.open_saver(h5path, flush_interval=0.01) as saver:
        ch = saver.add_detector("D").add_channel("c", dtype="int64", queue_size=64, chunk_frames=8,
                                                 overflow=overflow, metadata={"m": "int64"})
        for i in range(20_000):
            ch.push_nowait(i, metadata={"m": -i})  # never yields: the writer falls behind
            if i % 5000 == 0:
                await ch.push_many(np.arange(i, i + 3), metadata={"m": -np.arange(i, i + 3)})
    data, _ = read_channel(h5path, "D/c")
    numbers, meta = _columns(h5path, "D/c")
    values = data[:, 0]
    np.testing.assert_array_equal(meta["m"], -values)
    assert (np.diff(numbers) > 0).all() and len(numbers) == len(values)
    st = ch.statistics()
    assert st.frames_dropped > 0 and st.frames_written + st.frames_dropped == st.frames_pushed
    with streamsave.open_reader(h5path) as run:  # every drop is a missing number, at the end too
        assert sum(len(r) for r in run.channels["D/c"].missing_frames()) == st.frames_dropped
