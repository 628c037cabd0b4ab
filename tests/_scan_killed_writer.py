"""A scan writer process for the crash test: a 2D and a 0D channel of a grid scan whose
points come in a shuffled order, the frame of point p holding p + 1 everywhere; after
every 20 points it flushes and prints how many points are durable (one JSON line).
The test kills it with SIGKILL and reads the file back."""

from __future__ import annotations

import json
import sys

import anyio
import numpy as np

import streamsave

SHAPE = (12, 10)
SEED = 7


def order() -> list[tuple[int, int]]:
    """The points in the order the writer pushes them."""
    flat = np.random.default_rng(SEED).permutation(SHAPE[0] * SHAPE[1])
    return [(int(p) // SHAPE[1], int(p) % SHAPE[1]) for p in flat]


async def main(path: str, swmr: bool, compression: str | None) -> None:
    axes = [streamsave.Axis("x", values=np.arange(SHAPE[0])), streamsave.Axis("y", values=np.arange(SHAPE[1]))]
    async with streamsave.open_saver(path, swmr=swmr, compression=compression, flush_interval=0.05) as saver:
        scan = saver.add_scan("Scan", axes=axes)
        det = scan.add_detector("Camera")
        image = det.add_channel("image", shape=(32, 32), dtype="uint16")
        value = det.add_channel("value")
        for n, (ix, iy) in enumerate(order(), start=1):
            p = ix * SHAPE[1] + iy
            await image.push(np.full((32, 32), p + 1, dtype="uint16"), index=(ix, iy))
            await value.push(float(p + 1), index=(ix, iy))
            if n % 20 == 0:
                durable = await saver.flush()
                print(json.dumps(durable), flush=True)
        await anyio.sleep_forever()  # killed here, or before


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2] == "swmr", None if sys.argv[3] == "none" else sys.argv[3])
