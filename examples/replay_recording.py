"""Test analysis code against a recording instead of the instrument.

Records a short run of the simulated camera and thermometer (unless RUN.h5 exists), then
replays it at its recorded rate (or ``--speed``) into a small analysis that tracks the mean
image intensity and the temperature, as it would run live, and prints how late frames came::

    python examples/replay_recording.py run.h5 --speed 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio
import numpy as np

import streamsave
from streamsave import simulate


async def record(path: Path, seconds: float) -> None:
    async with streamsave.open_saver(path, compression="blosc2-lz4") as saver:
        instruments = simulate.add_simulated_instruments(saver, camera_shape=(128, 128))
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: simulate.run_camera(instruments.camera, rate=200, duration=seconds))
            tg.start_soon(lambda: simulate.run_thermometer(instruments.thermometer, duration=seconds))
            tg.start_soon(lambda: simulate.run_spectrometer(instruments.spectrometer, duration=seconds))


async def analyse(path: Path, speed: float) -> None:
    means: list[float] = []
    temperature = float("nan")
    async with streamsave.replay(path, speed=speed,
                                 channels=["Camera/image", "Thermometer/temperature"]) as items:
        async for item in items:
            if item.channel == "Camera/image":
                means.append(float(np.mean(item.data)))
            else:
                temperature = float(item.data)
    stats = items.statistics()
    print(f"replayed {stats.frames_released} frames in {stats.elapsed:.2f} s at speed {speed:g}: "
          f"{stats.channel_frames}")
    print(f"mean image intensity {np.mean(means):.1f} counts, last temperature {temperature:.3f} K")
    print(f"lateness p50 {stats.lateness_p50 * 1e3:.2f} ms, p99 {stats.lateness_p99 * 1e3:.2f} ms, "
          f"dropped {stats.frames_dropped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="the recording (made first if it does not exist)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (1: the recorded rate)")
    parser.add_argument("--seconds", type=float, default=1.0, help="how long to record, if recording")
    args = parser.parse_args()
    if not args.path.exists():
        anyio.run(record, args.path, args.seconds)
        print(f"recorded {args.path}")
    anyio.run(analyse, args.path, args.speed)


if __name__ == "__main__":
    main()
