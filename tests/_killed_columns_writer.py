"""A writer process for the crash test of per-frame columns and the log: frame i of a 2D
and of a 0D channel holds the value i, carries the frame number 3 * i and metadata derived
from i, and every 5th frame logs a message naming it. After each flush it prints the durable
counts (with "log": the messages logged before that flush) as one JSON line; the test kills
it with SIGKILL (``tests._killed_writer.run_and_kill``)."""

from __future__ import annotations

import json
import sys

import anyio
import numpy as np

import streamsave

META = {"exposure": "float64", "temperature": "float32", "position": "int32", "index": "int64"}


def metadata(i: int) -> dict[str, float | int]:
    return {"exposure": i * 0.25, "temperature": float(i % 1000), "position": -i, "index": i}


async def main(path: str, swmr: bool, compression: str | None) -> None:
    async with streamsave.open_saver(path, swmr=swmr, compression=compression, flush_interval=0.05,
                                     chunk_bytes=64 * 1024) as saver:
        image = saver.add_detector("Camera").add_channel("image", shape=(64, 64), dtype="uint16",
                                                          frame_numbers=True, metadata=META)
        scalar = saver.add_detector("Thermometer").add_channel("T", frame_numbers=True, metadata=META)
        i = logged = 0
        while True:
            await image.push(np.full((64, 64), i % 65536, dtype="uint16"), frame_number=3 * i, metadata=metadata(i))
            await scalar.push(float(i), frame_number=3 * i, metadata=metadata(i))
            if i % 5 == 0:
                saver.log(f"frame {i}")
                logged += 1
            i += 1
            if i % 25 == 0:
                durable = await saver.flush()
                print(json.dumps({**durable, "log": logged}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2] == "swmr", None if sys.argv[3] == "none" else sys.argv[3])
