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

Run as ``python tests/_crash_writer.py PATH swmr|plain CODEC FLUSH_INTERVAL CLOSE_AFTER``:
it prints one JSON line ``{"durable": {...}}`` after every flush (the frames the
flush made durable, per channel), and with ``CLOSE_AFTER`` > 0 it stops after that
many iterations, printing ``{"event": "closing"}`` before closing the file and
``{"event": "closed", "durable": {...}}`` after.
"""

from __future__ import annotations

import json
import sys
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

_POOL: Final = 16
_rng = np.random.default_rng(20261124)
_IMAGE_POOL: Final = _rng.poisson(200, (_POOL, IMAGE_SHAPE[0] * IMAGE_SHAPE[1] - 4)).astype(np.uint16)
_SPECTRUM_POOL: Final = _rng.standard_normal((_POOL, SPECTRUM_SIZE - 2))


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


MAKERS: Final[dict[str, Callable[[int], Any]]] = {"image": image, "spectrum": spectrum, "scalar": scalar}


def frame_index(kind: str, frame: npt.NDArray[Any]) -> int | None:
    """The index a frame carries, or ``None`` if its checksum is wrong (garbage)."""
    flat = frame.reshape(-1)
    if kind == "image":
        i, crc, content = int(flat[0]) | int(flat[1]) << 16, int(flat[2]) | int(flat[3]) << 16, flat[4:]
    elif kind == "spectrum":
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


async def main(path: str, swmr: bool, compression: str | None, flush_interval: float, close_after: int) -> None:
    import anyio

    import streamsave

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


if __name__ == "__main__":
    import anyio

    codec = None if sys.argv[3] == "none" else sys.argv[3]
    anyio.run(main, sys.argv[1], sys.argv[2] == "swmr", codec, float(sys.argv[4]), int(sys.argv[5]))
