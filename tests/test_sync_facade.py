"""The blocking facade (``streamsave.sync``) mirrors the async API: every public name has a
blocking twin, and each one is checked against a real file read back with plain h5py."""

from __future__ import annotations

import errno
import inspect
import threading
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter, as any reader would load it)
import numpy as np
import pytest

import streamsave
import streamsave.sync
from streamsave.backends.h5py import H5pyBackend
from tests.conftest import read_channel

#: Public async names with no blocking twin, each with the reason.
ASYNC_ONLY: dict[str, dict[str, str]] = {
    "Saver": {
        "open": "the facade's loop thread lives exactly as long as the open_saver block, so the sync "
                "entry point is streamsave.sync.open_saver",
    },
    "Detector": {},
    "Channel": {
        "push_from_thread": "sync push() already is the blocking, thread-safe push",
        "push_many_from_thread": "sync push_many() already is the blocking, thread-safe push_many",
    },
}


def _public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def _members(h5path: Path) -> list[tuple[str, object, object]]:
    """(class name, async object, sync twin) for one saver, detector and channel."""
    with streamsave.sync.open_saver(h5path) as saver:
        det = saver.add_detector("D")
        ch = det.add_channel("c", shape=(3,))
    return [("Saver", saver.saver, saver), ("Detector", det.detector, det), ("Channel", ch.channel, ch)]


def test_every_public_async_name_has_a_sync_twin(h5path: Path) -> None:
    """Methods, properties and attributes alike (compared on live objects, so attributes set
    in ``__init__`` count too): adding one to the async API without its twin fails here."""
    for kind, real, facade in _members(h5path):
        missing = _public(real) - _public(facade) - set(ASYNC_ONLY[kind])
        assert not missing, f"streamsave.sync.{kind} lacks {sorted(missing)}"
        stale = set(ASYNC_ONLY[kind]) - _public(real)
        assert not stale, f"ASYNC_ONLY lists {sorted(stale)}, which streamsave.{kind} no longer has"


def test_sync_methods_take_the_same_parameters_and_do_not_return_coroutines(h5path: Path) -> None:
    for kind, real, facade in _members(h5path):
        for name in sorted(_public(real) - set(ASYNC_ONLY[kind])):
            async_member = inspect.getattr_static(type(real), name, None)
            sync_member = inspect.getattr_static(type(facade), name, None)
            if not callable(async_member) or isinstance(async_member, property):
                assert not callable(getattr(facade, name)), f"sync.{kind}.{name} should be an attribute"
                continue
            assert callable(sync_member), f"sync.{kind}.{name} should be a method"
            assert not inspect.iscoroutinefunction(sync_member), f"sync.{kind}.{name} is async"
            assert not inspect.isasyncgenfunction(sync_member), f"sync.{kind}.{name} is async"
            expected = [(p.name, p.kind) for p in inspect.signature(getattr(real, name)).parameters.values()]
            got = [(p.name, p.kind) for p in inspect.signature(getattr(facade, name)).parameters.values()]
            assert got == expected, f"sync.{kind}.{name}"


def test_channel_properties_match_the_file(h5path: Path) -> None:
    with streamsave.sync.open_saver(h5path, compression="blosc2-lz4") as saver:
        cam = saver.add_detector("Camera")
        image = cam.add_channel("image", shape=(16, 24), dtype="uint16", chunk_frames=3, units="counts")
        spectrum = saver.add_detector("Spectrometer").add_channel("spectrum", shape=(64,), dtype="float32")
        temperature = saver.add_detector("Thermometer").add_channel("T", units="K")
        for i in range(7):
            image.push(np.full((16, 24), i, "uint16"))
            spectrum.push(np.full(64, i, "float32"))
            temperature.push(float(i))
        assert saver.channels == (image, spectrum, temperature)  # the same wrappers, in order
        assert list(saver.detectors) == ["Camera", "Spectrometer", "Thermometer"]
        assert saver.detectors["Camera"] is cam and cam.channels == {"image": image}
        assert (cam.name, cam.path) == ("Camera", cam.detector.path)
        assert saver.config.compression is not None and saver.state == "open"
    assert (image.detector, image.name, image.full_name) == ("Camera", "image", "Camera/image")
    assert (temperature.shape, temperature.stored_shape) == ((), (1,))
    assert (image.chunk_frames, image.units, image.overflow) == (3, "counts", streamsave.Overflow.BLOCK)
    assert image.frame_nbytes == 16 * 24 * 2 and image.copy is False
    assert image.paths.data == image.dataset_path and image.paths.time == image.time_axis_path
    with h5py.File(image.file_path, "r") as f:
        assert Path(image.file_path) == h5path
        for ch in (image, spectrum, temperature):
            data, times = f[ch.dataset_path], f[ch.time_axis_path]
            assert data.shape == (7, *ch.stored_shape) and times.shape == (7,)
            assert data.dtype == ch.dtype and data.chunks == ch.chunk_shape
            assert data.parent.attrs["TITLE"] == ch.name and data.parent.attrs["origin"] == ch.detector
            np.testing.assert_array_equal(data[:, 0].ravel() if ch is not image else data[:, 0, 0], np.arange(7))
        assert f[image.dataset_path].chunks == (3, 16, 24)


def test_subscribe_yields_events_to_another_thread(h5path: Path) -> None:
    events: list[streamsave.Event] = []
    with streamsave.sync.open_saver(h5path, progress_interval=0.02) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(4,), dtype="int32", chunk_frames=5)
        with saver.subscribe(buffer=10_000) as subscription:
            consumer = threading.Thread(target=lambda: events.extend(subscription))  # ends after FileClosed
            consumer.start()
            for i in range(50):
                ch.push(np.full(4, i, "int32"))
            saver.flush()
            final = saver.close()
            consumer.join(30)
            assert not consumer.is_alive()
            assert subscription.lost == 0
    created = [e for e in events if isinstance(e, streamsave.ChannelCreated)]
    assert len(created) == 1
    assert (created[0].channel, created[0].dataset, created[0].time_axis) == ("D/c", ch.dataset_path,
                                                                               ch.time_axis_path)
    assert created[0].chunk_shape == ch.chunk_shape and created[0].path == ch.file_path
    written = [e for e in events if isinstance(e, streamsave.FramesWritten)]
    assert written and written[-1].frames_written == 50 == sum(e.frames for e in written)
    assert any(isinstance(e, streamsave.Flushed) and e.durable == {"D/c": 50} for e in events)
    assert isinstance(events[-1], streamsave.FileClosed) and events[-1].statistics.frames_written == 50
    assert final.frames_written == 50
    with h5py.File(created[0].path, "r") as f:
        assert f[created[0].dataset].shape == (50, 4) and f[created[0].dataset].chunks == created[0].chunk_shape
        np.testing.assert_array_equal(f[created[0].dataset][:, 0], np.arange(50))


def test_subscribe_in_the_same_thread_and_after_the_close(h5path: Path) -> None:
    with streamsave.sync.open_saver(h5path) as saver:
        ch = saver.add_detector("D").add_channel("c")
        with pytest.raises(streamsave.ConfigError, match="buffer"), saver.subscribe(buffer=0):
            pass
        with saver.subscribe() as events:
            ch.push(1.0)
            durable = saver.flush()
            flushed = next(e for e in events if isinstance(e, streamsave.Flushed))
        assert flushed.durable == durable == {"D/c": 1}
        assert list(events) == list(events)  # leaving the block ended the iteration: nothing blocks
        saver.close()
        with saver.subscribe() as events:
            late = list(events)
    assert [type(e) for e in late] == [streamsave.FileClosed]
    assert read_channel(h5path, "D/c")[0].shape == (1, 1)


def test_progress_follows_a_channel_to_its_target(h5path: Path) -> None:
    target = 300
    with streamsave.sync.open_saver(h5path, queue_size=32, progress_interval=0.02) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(8,), dtype="int64", chunk_frames=10)
        updates = saver.progress(ch, target=target)
        first = next(updates)  # following before the first frame: nothing can be missed

        def produce() -> None:
            for i in range(target):
                ch.push(np.full(8, i))

        producer = threading.Thread(target=produce)
        producer.start()
        rest = list(updates)
        producer.join()
    assert isinstance(first, streamsave.Progress)
    assert (first.channel, first.current, first.target) == ("D/c", 0, target)
    assert rest and all(isinstance(p, streamsave.Progress) for p in rest)
    currents = [p.current for p in rest]
    assert currents == sorted(currents) and currents[-1] >= target
    assert rest[-1].rate > 0
    data, times = read_channel(h5path, "D/c")
    assert data.shape == (target, 8) and times.shape == (target,)
    np.testing.assert_array_equal(data[:, 0], np.arange(target))


def test_progress_ends_at_the_close_and_breaking_out_is_clean(h5path: Path) -> None:
    with streamsave.sync.open_saver(h5path, progress_interval=0.02) as saver:
        ch = saver.add_detector("D").add_channel("c")
        for p in saver.progress(ch):  # an open-ended follow: leave it after one update
            assert p.target is None and p.remaining is None
            break
        updates = saver.progress(ch.channel)  # the async channel is accepted too
        assert next(updates).current == 0
        updates.close()
        ch.push_many(np.arange(20.0))
        closer = threading.Thread(target=saver.close)
        closer_started = False
        seen = []
        for p in saver.progress(ch):
            seen.append(p.current)
            if not closer_started:
                closer.start()
                closer_started = True
        closer.join()
    assert seen[-1] == 20  # the last update comes with the close
    assert read_channel(h5path, "D/c")[0].shape == (20, 1)


def test_wait_closed_from_another_thread(h5path: Path) -> None:
    results: list[streamsave.SaverStatistics] = []
    with streamsave.sync.open_saver(h5path) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(2,))
        waiter = threading.Thread(target=lambda: results.append(saver.wait_closed()))
        waiter.start()
        for i in range(100):
            ch.push(np.array([i, -i], "float64"))
        assert waiter.is_alive()  # nobody has closed the file yet
    waiter.join(30)
    assert [r.state for r in results] == ["closed"]
    assert results[0].frames_written == 100 == saver.wait_closed().frames_written  # also after the block
    assert saver.close().frames_written == 100  # closing again after the block is harmless
    data, _ = read_channel(h5path, "D/c")
    np.testing.assert_array_equal(data[:, 1], -np.arange(100.0))


class FullDisk(H5pyBackend):
    """Storage whose chunk writes fail as on a full disk."""

    def write_chunk(self, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_wait_closed_raises_the_writers_failure(h5path: Path) -> None:
    with pytest.raises(streamsave.StreamSaveError) as raised, \
            streamsave.sync.open_saver(h5path, backend=FullDisk) as saver:
        ch = saver.add_detector("D").add_channel("c", chunk_frames=1)
        ch.push(1.0)
        with pytest.raises(streamsave.StreamSaveError) as waited:
            saver.wait_closed()  # the writer fails and closes the file by itself
    assert waited.value is raised.value is saver.statistics().error
    with pytest.raises(streamsave.StreamSaveError):
        saver.wait_closed()
    assert saver.statistics().state == saver.state == "failed"
    with h5py.File(h5path, "r", swmr=True) as f:  # a failed writer leaves the file as of its last flush
        assert f["RawData/Detector000/Data0D/CH00/EnlData00"].shape == (0, 1)
