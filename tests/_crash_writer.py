"""A writer process for the crash harness, and the frames it writes.

Every frame says which frame it is and carries a checksum of itself, so a verifier
can tell a whole frame from zeros or a torn chunk without knowing what was written:

* image (``uint16``, 24 x 40): elements 0-1 the index (low, high 16 bits), 2-3 the
  CRC32 of the content (low, high), the rest the content;
* spectrum (``float64``, 100): element 0 the index, 1 the CRC32 of the content, the
  rest the content;
* scalar (``float64``): ``index + crc32(index) / 2**32`` (exact in a float64 for
  indices below 2**20);

content is derived from the index alone (:func:`image`, :func:`spectrum`), so frames
can also be compared bit for bit. Frame ``i`` of every channel has the timestamp
:func:`timestamp` ``(i)``. Channels run at different rates; one channel never gets
a frame; without SWMR, one channel is added after writing started (so it is not in
the durability journal).

Two more scenarios stress what the mixed one rarely reaches:

* ``large``: one channel of large compressible frames (:func:`trace`, 256 ``float64``,
  64 frames a chunk) flushed by ``await saver.flush()`` after every 1-5 pushes, so the
  last, partly filled chunk is stored again at almost every flush and is at the end
  of the file;
* ``producers``: one channel (:func:`tagged`) fed at once by three threads
  (``push_from_thread``) and three tasks (``await push``); frames interleave, so
  neither frame order nor timestamp order is known in advance. Producers 0, 1 and 3
  give timestamps going forward, producer 4 timestamps going backwards, producers 2
  and 5 none (streamsave stamps them). A flusher task calls ``flush()`` every few ms.

Run as ``python tests/_crash_writer.py PATH swmr|plain CODEC FLUSH_INTERVAL CLOSE_AFTER
[mixed|large|producers [SEED]]``: it prints ``{"event": "started", "time": ...}``, then one
JSON line ``{"durable": {...}}`` after every flush (the frames the flush made durable,
per channel; in the ``large`` and ``producers`` scenarios after each ``flush()`` returns,
with ``"pushed"``: the frames each producer had pushed before calling it, all of which
that flush made durable). With ``CLOSE_AFTER`` > 0 it stops after that many
iterations (``mixed``) or frames per producer, printing ``{"event": "closing"}``
before closing the file and ``{"event": "closed", "durable": {...}}`` after; the
``large`` and ``producers`` scenarios always stop after :data:`SCENARIO_FRAMES`.
Whether HDF5 is flushing or closing the file at any moment is noted in
``PATH.flushing`` (see :func:`_mark_flushes`).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

IMAGE_SHAPE: Final = (24, 40)
SPECTRUM_SIZE: Final = 100
T0: Final = 1_700_000_000.0
#: channel name -> (kind, push every n-th iteration)
CHANNELS: Final = {"Camera/image": ("image", 1), "Spectrometer/spectrum": ("spectrum", 2),
                   "Thermometer/T": ("scalar", 3), "Late/counter": ("scalar", 1)}
NEVER: Final = "Idle/never"  # declared, never receives a frame
LATE: Final = "Late/counter"  # added after the first push, only without SWMR

#: the ``large`` scenario's channel: frames of TRACE_SIZE float64, TRACE_CHUNK frames a chunk
TRACE: Final = "Digitizer/trace"
TRACE_SIZE: Final = 256
TRACE_CHUNK: Final = 64
#: the ``producers`` scenario's channel, its frame size, and its producers (threads first)
TAGGED: Final = "Mixer/tagged"
TAGGED_SIZE: Final = 24
THREADS: Final = 3
TASKS: Final = 3
PRODUCERS: Final = THREADS + TASKS
#: producer -> how it stamps frame i: "forward" (:func:`tagged_timestamp`), "backward", or None (streamsave)
STAMPS: Final[dict[int, str | None]] = {0: "forward", 1: "forward", 2: None, 3: "forward", 4: "backward", 5: None}
#: frames per producer (``producers``) or in all (``large``) after which the writer closes its file
SCENARIO_FRAMES: Final = {"large": 6000, "producers": 4000}
#: every channel the verifier may meet -> kind of frame
KINDS: Final = {**{name: kind for name, (kind, _) in {**CHANNELS, NEVER: ("scalar", 0)}.items()},
                TRACE: "trace", TAGGED: "tagged"}

_POOL: Final = 16
_rng = np.random.default_rng(20261124)
_IMAGE_POOL: Final = _rng.poisson(200, (_POOL, IMAGE_SHAPE[0] * IMAGE_SHAPE[1] - 4)).astype(np.uint16)
_SPECTRUM_POOL: Final = _rng.standard_normal((_POOL, SPECTRUM_SIZE - 2))
#: a smooth pulse plus quantised noise: compresses to about a third, by a varying amount
_TRACE_POOL: Final = (np.round(1000 * np.exp(-((np.arange(TRACE_SIZE - 2) - 80) / 30.0) ** 2)
                               + 16 * _rng.standard_normal((_POOL, TRACE_SIZE - 2))) / 8)
_TAGGED_POOL: Final = _rng.standard_normal((_POOL, TAGGED_SIZE - 3))


def timestamp(i: int | npt.NDArray[np.int64]) -> Any:
    """Frame ``i``'s timestamp (exact in float64: 31 + 10 bits)."""
    return T0 + np.asarray(i, dtype=np.float64) / 1024


def image(i: int) -> npt.NDArray[np.uint16]:
    content = (_IMAGE_POOL[i % _POOL] + np.uint16(i % 65536)).astype(np.uint16)
    crc = zlib.crc32(content.tobytes())
    head = np.array([i & 0xFFFF, i >> 16, crc & 0xFFFF, crc >> 16], dtype=np.uint16)
    return np.concatenate([head, content]).reshape(IMAGE_SHAPE)


def spectrum(i: int) -> npt.NDArray[np.float64]:
    content = _SPECTRUM_POOL[i % _POOL] + float(i)
    return np.concatenate([[float(i), float(zlib.crc32(content.tobytes()))], content])


def scalar(i: int) -> float:
    return i + zlib.crc32(i.to_bytes(8, "little")) / 2**32


def trace(i: int) -> npt.NDArray[np.float64]:
    """Frame ``i`` of the ``large`` scenario: ``[i, crc32(content), *content]``."""
    content = _TRACE_POOL[i % _POOL] + float(i % 4096)
    return np.concatenate([[float(i), float(zlib.crc32(content.tobytes()))], content])


def tagged(p: int, i: int) -> npt.NDArray[np.float64]:
    """Frame ``i`` of producer ``p``: ``[p, i, crc32(content), *content]``."""
    content = _TAGGED_POOL[(i + p) % _POOL] + float(i) + 1e6 * p
    return np.concatenate([[float(p), float(i), float(zlib.crc32(content.tobytes()))], content])


def tagged_timestamp(p: int, i: int | npt.NDArray[np.int64]) -> Any:
    """The timestamp producer ``p`` gives its frame ``i`` (None: streamsave stamps it)."""
    stamp = STAMPS[p]
    if stamp is None:
        return None
    j = np.asarray(i, dtype=np.float64)
    return T0 + (j if stamp == "forward" else 2**20 - j) / 1024 + p / 2**20  # exact in float64


def tagged_id(frame: npt.NDArray[Any]) -> tuple[int, int] | None:
    """``(producer, index)`` of a ``tagged`` frame, or ``None`` if its checksum is wrong."""
    flat = frame.reshape(-1)
    p, i = flat[0], flat[1]
    if not (np.isfinite(p) and np.isfinite(i) and p == int(p) and i == int(i) and 0 <= p < PRODUCERS and i >= 0):
        return None
    return (int(p), int(i)) if flat[2] == zlib.crc32(np.ascontiguousarray(flat[3:]).tobytes()) else None


MAKERS: Final[dict[str, Callable[[int], Any]]] = {"image": image, "spectrum": spectrum, "scalar": scalar,
                                                   "trace": trace}


def frame_index(kind: str, frame: npt.NDArray[Any]) -> int | None:
    """The index a frame carries, or ``None`` if its checksum is wrong (garbage)."""
    flat = frame.reshape(-1)
    if kind == "image":
        i, crc, content = int(flat[0]) | int(flat[1]) << 16, int(flat[2]) | int(flat[3]) << 16, flat[4:]
    elif kind in ("spectrum", "trace"):
        if not (np.isfinite(flat[0]) and flat[0] == int(flat[0]) >= 0):
            return None
        i, crc, content = int(flat[0]), flat[1], flat[2:]
    else:
        value = float(flat[0])
        if not (np.isfinite(value) and 0 <= value < 2**20):
            return None
        i = int(value)
        return i if scalar(i) == value else None
    return i if crc == zlib.crc32(np.ascontiguousarray(content).tobytes()) else None


def _say(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def flushing_marker(path: str) -> str:
    """The file in which the writer of ``path`` notes whether HDF5 is writing metadata."""
    return f"{path}.flushing"


def _mark_flushes(path: str) -> None:
    """Note in :func:`flushing_marker` ``(path)`` whether HDF5 is flushing or closing the
    file: ``1`` from just before the backend calls ``H5Fflush``/``H5Fclose`` until just
    after it returns, ``0`` otherwise. Without SWMR, HDF5 writes the metadata of a flush
    in no particular dependency order, so a kill inside can tear it (a known limit of
    plain files); the harness tells those kills from the others by this note."""
    import os

    from streamsave.backends.h5py import H5pyBackend

    fd = os.open(flushing_marker(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, b"0", 0)
    for name in ("flush", "close"):
        real = getattr(H5pyBackend, name)

        def marked(self: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            os.pwrite(fd, b"1", 0)
            try:
                return _real(self, *args, **kwargs)
            finally:
                os.pwrite(fd, b"0", 0)

        setattr(H5pyBackend, name, marked)


async def main(path: str, swmr: bool, compression: str | None, flush_interval: float, close_after: int) -> None:
    import anyio

    import streamsave

    _mark_flushes(path)
    _say({"event": "started", "time": time.time()})
    async with streamsave.open_saver(path, swmr=swmr, compression=compression, flush_interval=flush_interval,
                                     chunk_bytes=16 * 1024, fsync=False) as saver:
        channels = {
            "Camera/image": saver.add_detector("Camera").add_channel("image", shape=IMAGE_SHAPE, dtype="uint16"),
            "Spectrometer/spectrum": saver.add_detector("Spectrometer").add_channel("spectrum", shape=(100,)),
            "Thermometer/T": saver.add_detector("Thermometer").add_channel("T"),
        }
        saver.add_detector("Idle").add_channel("never")
        async with anyio.create_task_group() as tg, saver.subscribe() as events:
            tg.start_soon(_report, events)
            await _produce(saver, channels, swmr, close_after)
            print(json.dumps({"event": "closing"}), flush=True)
            tg.cancel_scope.cancel()
    durable = {c.name: c.frames_durable for c in saver.statistics().channels}
    print(json.dumps({"event": "closed", "durable": durable}), flush=True)


async def _report(events: Any) -> None:
    import streamsave

    async for event in events:
        if isinstance(event, streamsave.Flushed):
            print(json.dumps({"durable": event.durable}), flush=True)


async def _produce(saver: Any, channels: dict[str, Any], swmr: bool, close_after: int) -> None:
    """Push frames until ``close_after`` iterations (forever if 0), yielding now and then."""
    import anyio

    counts = dict.fromkeys(CHANNELS, 0)
    it = 0
    while close_after <= 0 or it < close_after:
        for name, ch in channels.items():
            kind, every = CHANNELS[name]
            if it % every == 0:
                i = counts[name]
                await ch.push(MAKERS[kind](i), timestamp=float(timestamp(i)))
                counts[name] = i + 1
        if it == 0 and not swmr:  # after a flush the journal exists, without this channel
            await saver.flush()
            channels[LATE] = saver.add_detector("Late").add_channel("counter")
        it += 1
        if it % 16 == 0:
            await anyio.sleep(0.001)  # pacing: about 10k images/s at most


async def large(path: str, swmr: bool, compression: str | None, flush_interval: float, seed: int) -> None:
    """The ``large`` scenario: one channel, ``flush()`` after every 1-5 pushes."""
    import streamsave

    rng = random.Random(seed)
    _mark_flushes(path)
    _say({"event": "started", "time": time.time()})
    async with streamsave.open_saver(path, swmr=swmr, compression=compression, flush_interval=flush_interval,
                                     fsync=False) as saver:
        ch = saver.add_detector("Digitizer").add_channel("trace", shape=(TRACE_SIZE,), chunk_frames=TRACE_CHUNK)
        n = 0
        while n < SCENARIO_FRAMES["large"]:
            for _ in range(rng.randint(1, 5)):
                await ch.push(trace(n), timestamp=float(timestamp(n)))
                n += 1
            await saver.flush()
            _say({"durable": {TRACE: ch.statistics().frames_durable}, "pushed": [n]})
        _say({"event": "closing"})
    _say({"event": "closed", "durable": {TRACE: ch.statistics().frames_durable}})


async def producers(path: str, swmr: bool, compression: str | None, flush_interval: float, seed: int) -> None:
    """The ``producers`` scenario: three threads and three tasks push into one channel
    while a task flushes every few milliseconds."""
    import anyio

    import streamsave

    rng = random.Random(seed)
    frames = SCENARIO_FRAMES["producers"]
    pushed = [0] * PRODUCERS  # frames each producer has pushed (push returned)
    _mark_flushes(path)
    _say({"event": "started", "time": time.time()})
    async with streamsave.open_saver(path, swmr=swmr, compression=compression, flush_interval=flush_interval,
                                     fsync=False) as saver:
        ch = saver.add_detector("Mixer").add_channel("tagged", shape=(TAGGED_SIZE,))

        def thread(p: int) -> None:
            for i in range(frames):
                stamp = tagged_timestamp(p, i)
                ch.push_from_thread(tagged(p, i), timestamp=None if stamp is None else float(stamp))
                pushed[p] = i + 1
                if i % 8 == 7:
                    time.sleep(0.001)  # pacing: a few thousand frames/s per producer

        async def task(p: int) -> None:
            for i in range(frames):
                stamp = tagged_timestamp(p, i)
                await ch.push(tagged(p, i), timestamp=None if stamp is None else float(stamp))
                pushed[p] = i + 1
                if i % 8 == 7:
                    await anyio.sleep(0.001)

        async def flusher() -> None:
            while True:
                before = list(pushed)
                await saver.flush()
                _say({"durable": {TAGGED: ch.statistics().frames_durable}, "pushed": before})
                await anyio.sleep(rng.uniform(0, 0.005))

        def join() -> None:
            for t in threads:
                t.join()

        threads = [threading.Thread(target=thread, args=(p,), daemon=True) for p in range(THREADS)]
        for t in threads:
            t.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(flusher)
            async with anyio.create_task_group() as pushers:
                for p in range(THREADS, PRODUCERS):
                    pushers.start_soon(task, p)
                pushers.start_soon(anyio.to_thread.run_sync, join)
            tg.cancel_scope.cancel()
        _say({"event": "closing"})
    _say({"event": "closed", "durable": {TAGGED: ch.statistics().frames_durable}, "pushed": pushed})


if __name__ == "__main__":
    import anyio

    codec = None if sys.argv[3] == "none" else sys.argv[3]
    scenario = sys.argv[6] if len(sys.argv) > 6 else "mixed"
    if scenario == "mixed":
        anyio.run(main, sys.argv[1], sys.argv[2] == "swmr", codec, float(sys.argv[4]), int(sys.argv[5]))
    else:
        run = {"large": large, "producers": producers}[scenario]
        anyio.run(run, sys.argv[1], sys.argv[2] == "swmr", codec, float(sys.argv[4]), int(sys.argv[7]))
