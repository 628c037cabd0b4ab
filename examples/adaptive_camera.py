"""A camera driver that lowers its frame rate when the saver falls behind.

The situation: the disk (or the compression) cannot keep up with what the camera
could deliver. Instead of letting ``await push()`` stall the acquisition loop, the
driver listens to the saver's ``Backpressure`` events and halves its frame rate
when the queue passes its high-water mark, then creeps back up once it drains.
Nothing is dropped; the file records every frame that was taken.

Run it::

    python examples/adaptive_camera.py adaptive.h5 --duration 3 --rate 20000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anyio
import numpy as np

import streamsave


class RateControl:
    """The camera's current frame rate, adjusted by backpressure events."""

    def __init__(self, rate: float) -> None:
        self.rate = self.max_rate = rate
        self.changes: list[tuple[float, bool]] = []

    async def follow(self, saver: streamsave.Saver) -> None:
        async with saver.subscribe() as events:
            async for event in events:
                if isinstance(event, streamsave.Backpressure):
                    self.changes.append((self.rate, event.active))
                    self.rate = self.rate / 2 if event.active else min(self.max_rate, self.rate * 1.5)


async def camera(channel: streamsave.Channel, control: RateControl, duration: float) -> int:
    frames = np.random.default_rng(0).poisson(100, (8, 256, 256)).astype("uint16")
    start = time.monotonic()
    next_frame, n = start, 0
    while time.monotonic() - start < duration:
        await channel.push(frames[n % len(frames)])
        n += 1
        next_frame += 1 / control.rate
        await anyio.sleep(max(0.0, next_frame - time.monotonic()))
    return n


async def main(path: Path, duration: float, rate: float) -> None:
    control = RateControl(rate)
    async with streamsave.open_saver(path, mode="w", compression="blosc2-zstd", queue_size=64) as saver:
        channel = saver.add_detector("Camera").add_channel("image", shape=(256, 256), dtype="uint16")
        async with anyio.create_task_group() as tg:
            tg.start_soon(control.follow, saver)
            taken = await camera(channel, control, duration)
            tg.cancel_scope.cancel()
    stats = channel.statistics()
    print(f"took {taken} frames, wrote {stats.frames_written}, dropped {stats.frames_dropped}")
    print(f"rate changes: {len(control.changes)}; final rate {control.rate:.0f} frames/s (asked {rate:.0f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=20000.0, help="the camera's highest frame rate")
    args = parser.parse_args()
    anyio.run(main, args.output, args.duration, args.rate)
