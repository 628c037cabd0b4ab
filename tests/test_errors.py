"""Bad input gets a typed error saying what was wrong, and loses nothing accepted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import pytest

import streamsave
from tests.conftest import read_channel

BAD_PUSHES: list[tuple[Any, type[Exception], str]] = [
    (np.zeros((4, 5), "uint16"), streamsave.FrameMismatchError, r"shape \(4, 5\), expected \(4, 4\)"),
    (np.zeros(16, "uint16"), streamsave.FrameMismatchError, r"shape \(16,\)"),
    (np.zeros((4, 4), "float64"), streamsave.FrameMismatchError, "dtype float64, expected uint16"),
    (np.zeros((4, 4), "int16"), streamsave.FrameMismatchError, "dtype int16"),
    (np.zeros((4, 4), dtype=object), streamsave.FrameMismatchError, "dtype object"),
    ([[0] * 4] * 4, streamsave.FrameMismatchError, "got list"),
    ("frame", streamsave.FrameMismatchError, "got str"),
    (None, streamsave.FrameMismatchError, "got NoneType"),
]


@pytest.mark.parametrize(("frame", "error", "message"), BAD_PUSHES)
async def test_bad_frame_is_refused_and_nothing_is_lost(h5path: Path, frame: Any, error: type[Exception],
                                                        message: str) -> None:
    good = np.arange(16, dtype="uint16").reshape(4, 4)
    async with streamsave.open_saver(h5path) as saver:
        ch = saver.add_detector("Cam").add_channel("img", shape=(4, 4), dtype="uint16")
        await ch.push(good)
        with pytest.raises(error, match=message) as info:
            await ch.push(frame)
        assert "'Cam/img'" in str(info.value)
        with pytest.raises(error):
            ch.push_nowait(frame)
        await ch.push(good + 1)
    data, _ = read_channel(h5path, "Cam/img")
    np.testing.assert_array_equal(data, [good, good + 1])
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("timestamp", "message"), [
    (float("nan"), "finite"), (float("inf"), "finite"), ("soon", "number"), (object(), "number"),
])
async def test_bad_timestamp(h5path: Path, timestamp: Any, message: str) -> None:
    async with streamsave.open_saver(h5path) as saver:
        ch = saver.add_detector("D").add_channel("T")
        await ch.push(1.0, timestamp=100.0)
        with pytest.raises(streamsave.TimestampError, match=message):
            await ch.push(2.0, timestamp=timestamp)
        await ch.push(3.0, timestamp=101.0)
    data, ts = read_channel(h5path, "D/T")
    np.testing.assert_array_equal(data[:, 0], [1.0, 3.0])
    np.testing.assert_array_equal(ts, [100.0, 101.0])


async def test_bad_blocks(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        ch = saver.add_detector("D").add_channel("s", shape=(3,))
        await ch.push_many(np.ones((2, 3)))
        with pytest.raises(streamsave.FrameMismatchError, match=r"\(n, \*\(3,\)\)"):
            await ch.push_many(np.ones((2, 4)))
        with pytest.raises(streamsave.FrameMismatchError):
            await ch.push_many(np.ones(3))
        with pytest.raises(streamsave.TimestampError, match=r"got \(3,\) timestamps for 2 frames"):
            await ch.push_many(np.ones((2, 3)), timestamps=[1.0, 2.0, 3.0])
        with pytest.raises(streamsave.TimestampError, match="finite"):
            await ch.push_many(np.ones((2, 3)), timestamps=[1.0, np.nan])
        await ch.push_many(np.zeros((1, 3)))
    data, _ = read_channel(h5path, "D/s")
    np.testing.assert_array_equal(data, [[1, 1, 1], [1, 1, 1], [0, 0, 0]])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"shape": (0, 4)}, "at least 1"),
    ({"shape": (-1,)}, "at least 1"),
    ({"shape": "abc"}, "sequence of integers"),
    ({"dtype": object}, "dtype object is not supported"),
    ({"dtype": "U8"}, "not supported"),
    ({"dtype": [("a", "f8")]}, "not supported"),
    ({"dtype": "no-such-dtype"}, "not a numpy dtype"),
    ({"shape": (4,), "axes": [streamsave.Axis("x", values=np.arange(5))]}, "5 values but the frame has 4"),
    ({"shape": (4,), "axes": [streamsave.Axis("x"), streamsave.Axis("y")]}, "at most 1 Axis"),
    ({"chunk_frames": 0}, "chunk_frames"),
    ({"queue_size": 0}, "queue_size"),
    ({"overflow": "sometimes"}, "not a policy"),
    ({"shape": (1 << 20, 1 << 11)}, "max_frame_bytes"),
    ({"units": 3}, "units and label must be strings"),
])
async def test_bad_channel_declarations(h5path: Path, kwargs: dict[str, Any], message: str) -> None:
    async with streamsave.open_saver(h5path) as saver:
        det = saver.add_detector("D")
        with pytest.raises(streamsave.ConfigError, match=message):
            det.add_channel("c", **kwargs)
        ok = det.add_channel("ok")
        await ok.push(1.0)
    assert read_channel(h5path, "D/ok")[0].shape == (1, 1)


@pytest.mark.parametrize(("name", "message"), [
    ("", "empty"), ("  ", "blank"), ("a/b", "'/'"), ("a\x00b", "NUL"), ("x" * 300, "300 characters"),
    (3, "must be a string"), ("\udcff", "UTF-8"),
])
async def test_bad_names(h5path: Path, name: Any, message: str) -> None:
    async with streamsave.open_saver(h5path) as saver:
        with pytest.raises(streamsave.ConfigError, match=message):
            saver.add_detector(name)
        det = saver.add_detector("D")
        with pytest.raises(streamsave.ConfigError, match=message):
            det.add_channel(name)


async def test_unusual_but_valid_names_round_trip(h5path: Path) -> None:
    names = ["Caméra ☃", "a.b", "CH00", "x" * 255]
    async with streamsave.open_saver(h5path) as saver:
        chans = [saver.add_detector(n).add_channel(n) for n in names]
        for i, ch in enumerate(chans):
            await ch.push(float(i))
    for i, n in enumerate(names):
        assert read_channel(h5path, f"{n}/{n}")[0][0, 0] == i


async def test_duplicates_are_refused(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        det = saver.add_detector("D")
        det.add_channel("c")
        with pytest.raises(streamsave.ConfigError, match="already"):
            saver.add_detector("D")
        with pytest.raises(streamsave.ConfigError, match="already has a channel named 'c'"):
            det.add_channel("c")


@pytest.mark.parametrize(("settings", "message"), [
    ({"a": object()}, "JSON values"), ({1: 2, "b": {3j: 1}}, "JSON values"), ([1, 2], "mapping"),
])
async def test_bad_settings(h5path: Path, settings: Any, message: str) -> None:
    async with streamsave.open_saver(h5path) as saver:
        with pytest.raises(streamsave.ConfigError, match=message):
            saver.add_detector("D", settings=settings)


async def test_adding_after_writing_started_in_swmr_mode(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        det = saver.add_detector("D")
        ch = det.add_channel("c")
        await ch.push(1.0)
        with pytest.raises(streamsave.LayoutFrozenError, match="before the first push"):
            det.add_channel("late")
        with pytest.raises(streamsave.LayoutFrozenError):
            saver.add_detector("Late")
        await ch.push(2.0)
    np.testing.assert_array_equal(read_channel(h5path, "D/c")[0][:, 0], [1.0, 2.0])


async def test_adding_after_writing_started_without_swmr(h5path: Path) -> None:
    async with streamsave.open_saver(h5path, swmr=False) as saver:
        ch = saver.add_detector("D").add_channel("c")
        await ch.push(1.0)
        await saver.flush()
        late = saver.add_detector("Late").add_channel("img", shape=(2, 2), dtype="uint8")
        await late.push(np.ones((2, 2), "uint8"))
        await ch.push(2.0)
    np.testing.assert_array_equal(read_channel(h5path, "D/c")[0][:, 0], [1.0, 2.0])
    np.testing.assert_array_equal(read_channel(h5path, "Late/img")[0], np.ones((1, 2, 2)))


async def test_push_and_add_after_close(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        det = saver.add_detector("D")
        ch = det.add_channel("c")
        await ch.push(1.0)
    with pytest.raises(streamsave.SaverClosedError, match="closed"):
        await ch.push(2.0)
    with pytest.raises(streamsave.SaverClosedError):
        ch.push_nowait(2.0)
    with pytest.raises(streamsave.SaverClosedError):
        saver.add_detector("E")
    with pytest.raises(streamsave.SaverClosedError):
        det.add_channel("d")
    assert await saver.aclose() == saver.statistics()  # closing twice is harmless
    assert ch.statistics().frames_written == 1


async def test_existing_file_is_never_overwritten_by_default(h5path: Path) -> None:
    h5path.write_bytes(b"precious")
    with pytest.raises(streamsave.StorageError) as info:
        async with streamsave.open_saver(h5path):
            pass
    assert isinstance(info.value, OSError)
    # what is wrong and what to do, not HDF5's "errno = 17 ... flags = 15, o_flags = c2"
    assert "already exists" in str(info.value) and "mode='w'" in str(info.value)
    assert "o_flags" not in str(info.value)
    with pytest.raises(streamsave.StorageError, match="already exists"):  # at once, not at the first push
        await streamsave.Saver.open(h5path)
    assert h5path.read_bytes() == b"precious"
    async with streamsave.open_saver(h5path, mode="w") as saver:
        await saver.add_detector("D").add_channel("c").push(1.0)
    assert read_channel(h5path, "D/c")[0].shape == (1, 1)


async def test_path_that_cannot_be_created(tmp_path: Path) -> None:
    with pytest.raises(streamsave.StorageError, match=r"the directory .*missing-dir' does not exist") as info:
        await streamsave.Saver.open(tmp_path / "missing-dir" / "run.h5")
    assert "errno =" not in str(info.value)
    with pytest.raises(streamsave.StorageError, match="is a directory"):
        await streamsave.Saver.open(tmp_path)
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(streamsave.StorageError):
            await streamsave.Saver.open(ro / "run.h5")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"compression": "gzip"}, "unknown"), ({"compression": 3}, "must be None"),
    ({"overflow": "never"}, "not a policy"), ({"flush_interval": 0}, "flush_interval"),
    ({"flush_interval": float("nan")}, "flush_interval"), ({"queue_size": -1}, "queue_size"),
    ({"mode": "a"}, "mode='a'"), ({"chunk_bytes": 1.5}, "chunk_bytes"), ({"colour": "red"}, "colour"),
    ({"backend": "zarr"}, "backend"),
])
async def test_bad_saver_options(h5path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(streamsave.ConfigError, match=message):
        await streamsave.Saver.open(h5path, **kwargs)
    assert not h5path.exists()


def test_bad_compression_objects() -> None:
    with pytest.raises(streamsave.ConfigError, match="codec 'snappy'"):
        streamsave.Compression(codec="snappy")
    with pytest.raises(streamsave.ConfigError, match="level"):
        streamsave.Compression(level=10)
    with pytest.raises(streamsave.ConfigError, match="shuffle"):
        streamsave.Compression(shuffle="twice")
    with pytest.raises(streamsave.ConfigError, match="label"):
        streamsave.Axis("")
    with pytest.raises(streamsave.ConfigError, match="1-D array of numbers"):
        streamsave.Axis("x", values=[["a"]])
    with pytest.raises(streamsave.ConfigError, match="finite"):
        streamsave.Axis("x", scale=float("inf"))


async def test_exception_inside_the_block_still_closes_the_file(h5path: Path) -> None:
    with pytest.raises(RuntimeError, match="driver crashed"):
        async with streamsave.open_saver(h5path, compression="blosc2-lz4") as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(8,))
            await ch.push_many(np.ones((100, 8)))
            raise RuntimeError("driver crashed")
    assert saver.statistics().state == "closed"
    assert read_channel(h5path, "D/c")[0].shape == (100, 8)


async def test_cancellation_inside_the_block_still_closes_the_file(h5path: Path) -> None:
    with anyio.move_on_after(0.2) as scope:
        async with streamsave.open_saver(h5path) as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(8,))
            for i in range(10**9):
                await ch.push(np.full(8, float(i)))
                if i % 100 == 0:
                    await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    st = ch.statistics()
    assert saver.statistics().state == "closed"
    assert st.frames_pushed == st.frames_written + st.frames_dropped
    data, _ = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data[:, 0], np.arange(st.frames_written))


async def test_scalar_channel_values(h5path: Path) -> None:
    """Python numbers that the dtype holds are accepted (True for bool, 293.1 for float32);
    others get a FrameMismatchError naming the value and the dtype, and lose nothing."""
    async with streamsave.open_saver(h5path) as saver:
        det = saver.add_detector("D")
        counts = det.add_channel("counts", dtype="uint16")
        f32 = det.add_channel("f32", dtype="float32")
        f16 = det.add_channel("f16", dtype="float16")
        flag = det.add_channel("flag", dtype="bool")
        c64 = det.add_channel("c64", dtype="complex64")
        await counts.push(5)
        await counts.push(np.uint16(7))
        for bad, message in [(-1, "does not fit in uint16"), (70000, "does not fit"),
                             (1.5, r"value 1.5 \(float\) does not fit in the channel's dtype uint16"),
                             (np.float32(2.0), "dtype float32"), (True, "value True"), (1j, "complex")]:
            with pytest.raises(streamsave.FrameMismatchError, match=message):
                await counts.push(bad)
        await counts.push(65535)
        await f32.push(293.1)
        await f32.push(3)
        await f32.push(float("nan"))
        await f32.push(np.float32(0.5))
        await f16.push(1.5)
        for bad in (70000.0, 1e300, 10**40, True, 2j):  # out of float16's range, or not a real number
            with pytest.raises(streamsave.FrameMismatchError, match="float16"):
                await f16.push(bad)
        with pytest.raises(streamsave.FrameMismatchError, match="float32"):
            await f32.push(1e300)
        await flag.push(True)
        await flag.push(False)
        await flag.push(np.bool_(True))
        for bad in (1, 0.0):
            with pytest.raises(streamsave.FrameMismatchError, match="bool"):
                await flag.push(bad)
        await c64.push(1 + 2j)
        await c64.push(2.5)
    np.testing.assert_array_equal(read_channel(h5path, "D/counts")[0][:, 0], [5, 7, 65535])
    f32_values = read_channel(h5path, "D/f32")[0][:, 0]
    np.testing.assert_array_equal(f32_values[[0, 1, 3]], np.array([293.1, 3, 0.5], dtype=np.float32))
    assert np.isnan(f32_values[2])
    np.testing.assert_array_equal(read_channel(h5path, "D/f16")[0][:, 0], [1.5])
    np.testing.assert_array_equal(read_channel(h5path, "D/flag")[0][:, 0], [True, False, True])
    np.testing.assert_array_equal(read_channel(h5path, "D/c64")[0][:, 0], np.array([1 + 2j, 2.5], "complex64"))
