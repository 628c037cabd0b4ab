"""A camera SDK that delivers frames on its own thread, through a callback.

The situation: many vendor SDKs (and PyMoDAQ plugins) call you back from a
thread they own, for every frame. ``channel.push_from_thread()`` is safe to call
from any such thread: it queues the frame without touching the event loop, and
when the queue is full it blocks only the SDK's thread (the ``block`` policy), so
the SDK itself slows down instead of losing frames.

Run it::

    python examples/threaded_callback.py callback.h5 --frames 2000
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np

import streamsave


class FakeSDK:
    """Stands in for a vendor library: a thread of its own calls ``callback(frame, t)``."""

    def __init__(self, frames: int, callback: Callable[[np.ndarray, float], None]) -> None:
        self._frames = frames
        self._callback = callback
        self.thread = threading.Thread(target=self._run, name="camera-sdk")

    def _run(self) -> None:
        image = np.zeros((128, 128), dtype="uint16")
        for i in range(self._frames):
            frame = image + i  # a new array for every frame: the saver keeps a reference
            self._callback(frame, time.time())


async def main(path: Path, frames: int) -> None:
    async with streamsave.open_saver(path, mode="w", compression="blosc2-lz4", queue_size=32) as saver:
        channel = saver.add_detector("Camera").add_channel("image", shape=(128, 128), dtype="uint16")

        def on_frame(frame: np.ndarray, t: float) -> None:  # runs on the SDK's thread
            channel.push_from_thread(frame, timestamp=t)

        sdk = FakeSDK(frames, on_frame)
        sdk.thread.start()
        await anyio.to_thread.run_sync(sdk.thread.join)
    stats = channel.statistics()
    print(f"pushed {stats.frames_pushed} frames from the SDK thread, wrote {stats.frames_written}, "
          f"dropped {stats.frames_dropped}, queue high water {stats.queue_high_water}/{stats.queue_capacity}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    anyio.run(main, args.output, args.frames)
