"""A writer process for the reader's live tests: one 1D channel ``Sensor/trace`` whose
frame ``i`` holds ``i`` everywhere, with timestamp ``T0 + i``.

Two modes, each printing one JSON line per step:

* ``python tests/_follow_writer.py PATH follow FRAMES FLUSH_EVERY [PAUSE]``: pushes
  ``FRAMES`` frames, calling ``flush()`` after every ``FLUSH_EVERY`` of them (and
  sleeping ``PAUSE`` seconds, default 0.002, so a reader sees many flushes); prints
  ``{"event": "started", "durable": n}`` after the first flush, then closes the file
  and prints ``{"event": "closed", "frames": FRAMES}``.
* ``python tests/_follow_writer.py PATH step``: reads commands from stdin, one a line:
  ``push K`` pushes ``K`` more frames without flushing and waits until the writer has
  stored every whole chunk of them (prints ``{"pushed": n, "written": w}``); ``flush``
  flushes (prints ``{"durable": n}``); ``close`` closes the file (prints
  ``{"event": "closed"}``). Nothing is flushed unless asked.
"""

from __future__ import annotations

import json
import sys
from typing import Final

import anyio
import anyio.to_thread
import numpy as np

import streamsave

T0: Final = 1_700_000_000.0
SIZE: Final = 8
#: frames per chunk in ``step`` mode (chunk_bytes / frame bytes)
STEP_CHUNK: Final = 16


def _say(message: object) -> None:
    print(json.dumps(message), flush=True)


async def follow(path: str, frames: int, flush_every: int, pause: float) -> None:
    async with streamsave.open_saver(path, flush_interval=0.05, chunk_bytes=SIZE * 8 * 64) as saver:
        trace = saver.add_detector("Sensor").add_channel("trace", shape=(SIZE,), units="V")
        for i in range(frames):
            await trace.push(np.full(SIZE, float(i)), timestamp=T0 + i)
            if (i + 1) % flush_every == 0:
                durable = await saver.flush()
                if i + 1 == flush_every:
                    _say({"event": "started", "durable": durable["Sensor/trace"]})
                await anyio.sleep(pause)
    _say({"event": "closed", "frames": frames})


async def step(path: str) -> None:
    async with streamsave.open_saver(path, flush_interval=3600.0, chunk_bytes=SIZE * 8 * STEP_CHUNK) as saver:
        trace = saver.add_detector("Sensor").add_channel("trace", shape=(SIZE,), units="V")
        pushed = 0
        while True:
            line = (await anyio.to_thread.run_sync(sys.stdin.readline)).split()
            if not line or line[0] == "close":
                break
            if line[0] == "push":
                for _ in range(int(line[1])):
                    await trace.push(np.full(SIZE, float(pushed)), timestamp=T0 + pushed)
                    pushed += 1
                whole = pushed - pushed % STEP_CHUNK
                with anyio.fail_after(30):
                    while trace.statistics().frames_written < whole:
                        await anyio.sleep(0.005)
                _say({"pushed": pushed, "written": trace.statistics().frames_written})
            elif line[0] == "flush":
                durable = await saver.flush()
                _say({"durable": durable["Sensor/trace"]})
    _say({"event": "closed"})


if __name__ == "__main__":
    if sys.argv[2] == "follow":
        pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.002
        anyio.run(follow, sys.argv[1], int(sys.argv[3]), int(sys.argv[4]), pause)
    else:
        anyio.run(step, sys.argv[1])
