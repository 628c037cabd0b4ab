"""Frames go in, and come back bit-exact through plain h5py + hdf5plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import streamsave
from tests.conftest import read_channel

CODECS: list[Any] = [
    None,
    "blosc2-lz4",
    "blosc2-zstd",
    "blosc2-lz4hc",
    "blosc2-blosclz",
    "blosc2-zlib",
    streamsave.Compression(codec="zstd", level=1, shuffle="bit"),
    streamsave.Compression(codec="lz4", level=9, shuffle="none"),
]
SHAPES = [(), (37,), (24, 17), (3, 5, 7)]
DTYPES = ["uint16", "float64", "int8", "complex64", "bool"]


def make_frames(rng: np.random.Generator, n: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "bool":
        return rng.random((n, *shape)) > 0.5
    if dtype.startswith("complex"):
        return (rng.normal(size=(n, *shape)) + 1j * rng.normal(size=(n, *shape))).astype(dtype)
    info = np.iinfo(dtype) if dtype.startswith(("int", "uint")) else None
    if info is not None:
        return rng.integers(info.min, info.max, size=(n, *shape), endpoint=True).astype(dtype)
    return rng.normal(size=(n, *shape)).astype(dtype)


@pytest.mark.parametrize("compression", CODECS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
async def test_every_codec_and_dimensionality_reads_back(h5path: Path, compression: Any,
                                                         shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    frames = make_frames(rng, 53, shape, "uint16")
    times = 1.7e9 + np.arange(53) * 1e-3
    async with streamsave.open_saver(h5path, compression=compression, chunk_bytes=4096) as saver:
        ch = saver.add_detector("Det").add_channel("ch", shape=shape, dtype="uint16")
        for i in range(30):
            await ch.push(frames[i], timestamp=times[i])
        await ch.push_many(frames[30:], timestamps=times[30:])
    data, ts = read_channel(h5path, "Det/ch")
    assert data.shape == (53, *(shape or (1,)))
    np.testing.assert_array_equal(data.reshape(frames.shape), frames)
    np.testing.assert_array_equal(ts, times)
    st = ch.statistics()
    assert (st.frames_pushed, st.frames_written, st.frames_durable, st.frames_dropped) == (53, 53, 53, 0)


@pytest.mark.parametrize("dtype", DTYPES)
async def test_dtypes_read_back(h5path: Path, dtype: str) -> None:
    frames = make_frames(np.random.default_rng(2), 20, (9,), dtype)
    async with streamsave.open_saver(h5path, compression="blosc2-lz4") as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(9,), dtype=dtype)
        await ch.push_many(frames)
    data, _ = read_channel(h5path, "D/c")
    assert data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(data, frames)


async def test_nan_and_inf_are_stored_faithfully(h5path: Path) -> None:
    frame = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0])
    async with streamsave.open_saver(h5path, compression="blosc2-zstd") as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(5,))
        await ch.push(frame)
    data, _ = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data[0], frame)
    assert np.signbit(data[0, 4])


async def test_partial_chunk_is_written_at_flush_then_completed(h5path: Path) -> None:
    frames = np.arange(10 * 6, dtype="int32").reshape(10, 6)
    async with streamsave.open_saver(h5path, compression="blosc2-lz4", flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(6,), dtype="int32", chunk_frames=4)
        await ch.push_many(frames[:3])
        assert await saver.flush() == {"D/c": 3}
        with h5py.File(h5path, "r", swmr=True) as f:
            np.testing.assert_array_equal(f["RawData/Detector000/Data1D/CH00/EnlData00"][()], frames[:3])
        await ch.push_many(frames[3:])
        assert (await saver.flush())["D/c"] == 10
    data, _ = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data, frames)
    with h5py.File(h5path, "r") as f:
        dset = f["RawData/Detector000/Data1D/CH00/EnlData00"]
        on_disk = sum(dset.id.get_chunk_info(i).size for i in range(dset.id.get_num_chunks()))
    assert ch.statistics().bytes_stored == on_disk  # the partial chunk's first version is not counted


async def test_blocks_larger_than_chunk_and_queue(h5path: Path) -> None:
    values = np.arange(100_000, dtype=np.float64)
    async with streamsave.open_saver(h5path, queue_size=1000) as saver:
        ch = saver.add_detector("D").add_channel("c", chunk_frames=333)
        await ch.push_many(values)  # larger than the queue: queued whole (by reference) into the empty queue
        assert ch.statistics().queue_high_water == 100_000
        await ch.push_many(values[:10])  # waits until the queue is empty again, then fits
        assert ch.statistics().frames_pushed == 100_010
    data, ts = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data[:, 0], np.concatenate([values, values[:10]]))
    assert ts.shape == (100_010,)


async def test_three_detectors_concurrently(h5path: Path) -> None:
    import anyio

    wl = np.linspace(400, 800, 256)
    async with streamsave.open_saver(h5path, compression="blosc2-lz4", flush_interval=0.05) as saver:
        image = saver.add_detector("Camera", settings={"exposure_ms": 1.0}).add_channel(
            "image", shape=(64, 64), dtype="uint16", units="counts")
        spectrum = saver.add_detector("Spectrometer").add_channel(
            "spectrum", shape=(256,), axes=[streamsave.Axis("wavelength", units="nm", values=wl)])
        temperature = saver.add_detector("Thermometer").add_channel("T", units="K")

        async def camera() -> None:
            for i in range(300):
                await image.push(np.full((64, 64), i, "uint16"))
                if i % 50 == 0:
                    await anyio.lowlevel.checkpoint()

        async def spectro() -> None:
            for i in range(200):
                await spectrum.push(np.full(256, float(i)))
                await anyio.lowlevel.checkpoint()

        async def thermo() -> None:
            for i in range(50):
                await temperature.push(293.0 + i)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(camera)
            tg.start_soon(spectro)
            tg.start_soon(thermo)
    img, t_img = read_channel(h5path, "Camera/image")
    spec, _ = read_channel(h5path, "Spectrometer/spectrum")
    temp, _ = read_channel(h5path, "Thermometer/T")
    assert img.shape == (300, 64, 64) and (img[:, 0, 0] == np.arange(300)).all()
    assert np.all(np.diff(t_img) >= 0)
    np.testing.assert_array_equal(spec[:, 0], np.arange(200.0))
    np.testing.assert_array_equal(temp[:, 0], 293.0 + np.arange(50))
    total = saver.statistics()
    assert total.state == "closed" and total.frames_written == 550 == total.frames_pushed


async def test_copy_false_keeps_reference_copy_true_snapshots(h5path: Path) -> None:
    buf = np.zeros(4)
    async with streamsave.open_saver(h5path, flush_interval=60) as saver:
        det = saver.add_detector("D")
        by_ref = det.add_channel("ref", shape=(4,))
        copied = det.add_channel("copy", shape=(4,), copy=True)
        await by_ref.push(buf)
        await copied.push(buf)
        buf[:] = 7  # the producer reuses its buffer before the writer has run
    copy_data, _ = read_channel(h5path, "D/copy")
    np.testing.assert_array_equal(copy_data[0], np.zeros(4))


async def test_non_contiguous_and_readonly_frames(h5path: Path) -> None:
    base = np.arange(200, dtype="uint16").reshape(10, 20)
    view = base[:, ::2]
    readonly = np.arange(10, dtype="uint16").repeat(10).reshape(10, 10)
    readonly.setflags(write=False)
    async with streamsave.open_saver(h5path) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(10, 10), dtype="uint16")
        await ch.push(view)
        await ch.push(readonly)
        await ch.push_many(np.stack([view, readonly])[:, ::-1])
    data, _ = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data[0], view)
    np.testing.assert_array_equal(data[1], readonly)
    np.testing.assert_array_equal(data[2], view[::-1])


async def test_lossless_dtype_conversion_and_scalars(h5path: Path) -> None:
    async with streamsave.open_saver(h5path) as saver:
        det = saver.add_detector("D")
        img = det.add_channel("img", shape=(2, 2), dtype="uint16")
        scalar = det.add_channel("s", dtype="float64")
        await img.push(np.ones((2, 2), dtype="uint8"))
        await scalar.push(1)
        await scalar.push(np.float32(2.5))
        await scalar.push(np.array(3.0))
    data, _ = read_channel(h5path, "D/s")
    np.testing.assert_array_equal(data[:, 0], [1.0, 2.5, 3.0])


async def test_the_journal_holds_the_last_flush(h5path: Path) -> None:
    """One row, rewritten in place at every flush: the frames the last completed flush
    made durable per channel, and when (a row per flush made slow sensors' files grow
    by as much as their data)."""
    async with streamsave.open_saver(h5path, flush_interval=60) as saver:
        a = saver.add_detector("A").add_channel("a", shape=(3,))
        b = saver.add_detector("B").add_channel("b")
        await a.push_many(np.zeros((5, 3)))
        first = await saver.flush()
        with h5py.File(h5path, "r", swmr=True) as f:
            assert f["streamsave/durable_frames"][()].tolist() == [[first["A/a"], first["B/b"]]] == [[5, 0]]
            first_time = float(f["streamsave/flush_times"][0])
        await b.push_many(np.zeros(7))
        second = await saver.flush()
    with h5py.File(h5path, "r") as f:
        rows = f["streamsave/durable_frames"][()]
        times = f["streamsave/flush_times"][()]
        columns = [c.split("/")[2] for c in json.loads(f["streamsave"].attrs["channels"])]
    assert columns == ["Detector000", "Detector001"]
    assert rows.tolist() == [[second["A/a"], second["B/b"]]] == [[5, 7]]
    assert times.shape == (1,) and times[0] >= first_time > 0


@pytest.mark.parametrize("compression", [None, "blosc2-lz4", "blosc2-zstd"])
@pytest.mark.parametrize("shape", [(100, 33), (101, 33), (7, 400, 3)])
async def test_frames_larger_than_a_chunk_are_tiled(h5path: Path, compression: Any, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 60000, size=(9, *shape)).astype("uint16")
    async with streamsave.open_saver(h5path, compression=compression, chunk_bytes=4096, flush_interval=60) as saver:
        ch = saver.add_detector("Big").add_channel("img", shape=shape, dtype="uint16")
        rows = ch.chunk_shape[1]
        assert ch.chunk_shape[0] == 1 and rows < shape[0] and np.prod(ch.chunk_shape) * 2 <= 2 * 4096
        for i in range(4):
            await ch.push(frames[i])
        await saver.flush()
        await ch.push_many(frames[4:])
    data, _ = read_channel(h5path, "Big/img")
    np.testing.assert_array_equal(data, frames)
    with h5py.File(h5path, "r") as f:
        assert f["RawData/Detector000"][f"{'Data2D' if len(shape) == 2 else 'DataND'}/CH00/EnlData00"].chunks == \
            (1, rows, *shape[1:])


@pytest.mark.parametrize("shape", [(), (3,)])
async def test_blocks_of_one_frame(h5path: Path, shape: tuple[int, ...]) -> None:
    async with streamsave.open_saver(h5path) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=shape, dtype="int32", chunk_frames=2)
        await ch.push_many(np.full((1, *shape), 7, "int32"), timestamps=[5.0])
        await ch.push(np.full(shape, 8, "int32"), timestamp=6.0)
        await ch.push_many(np.full((1, *shape), 9, "int32"))
    data, ts = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data.reshape(3, -1)[:, 0], [7, 8, 9])
    assert ts[:2].tolist() == [5.0, 6.0]


async def test_flush_includes_a_backlog_larger_than_the_pipeline(h5path: Path) -> None:
    """``flush()`` makes every accepted frame durable, even when more are queued than the
    writer takes in one cycle (chunk_frames x max_inflight)."""
    async with streamsave.open_saver(h5path, flush_interval=3600, max_inflight=2) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(4,), chunk_frames=3, queue_size=500)
        for i in range(400):  # 400 queue entries, not one block the writer would take at once
            ch.push_nowait(np.full(4, float(i)))
        assert (await saver.flush())["D/c"] == 400
        with h5py.File(h5path, "r", swmr=True) as f:
            assert f["RawData/Detector000/Data1D/CH00/EnlData00"].shape[0] == 400


async def test_channel_created_event_reports_the_tiled_chunk_shape(h5path: Path) -> None:
    saver = await streamsave.Saver.open(h5path, chunk_bytes=4096)
    async with saver.subscribe() as events:
        ch = saver.add_detector("Big").add_channel("img", shape=(100, 33), dtype="uint16")
        await ch.push(np.zeros((100, 33), "uint16"))
        await saver.aclose()
        created = [e async for e in events if isinstance(e, streamsave.ChannelCreated)]
    assert created[0].chunk_shape == ch.chunk_shape == (1, 50, 33)
