"""A writer process for the fault tests: records frame i = i everywhere until the
storage fails, then reports what it saw as one JSON line on stdout.

usage: _fault_writer.py PATH swmr|plain [fsize BYTES]
"""

from __future__ import annotations

import json
import resource
import signal
import sys

import anyio
import numpy as np

import streamsave


async def main(path: str, swmr: bool) -> dict[str, object]:
    report: dict[str, object] = {}
    events: list[str] = []
    saver = await streamsave.Saver.open(path, swmr=swmr, flush_interval=0.05)
    ch = saver.add_detector("D").add_channel("c", shape=(128, 128), dtype="uint16", chunk_frames=2)
    try:
        async with saver.subscribe() as sub:
            i = 0
            try:
                with anyio.fail_after(60):
                    while True:
                        await ch.push(np.full((128, 128), i, "uint16"))
                        i += 1
                        if i % 10 == 0:
                            await saver.flush()
            except streamsave.StorageError as exc:
                report["push_error"] = type(exc).__name__
            with anyio.fail_after(30):
                events.extend([type(e).__name__ async for e in sub])
        await saver.aclose()
    except streamsave.StorageError as exc:
        report["close_error"] = str(exc)
    report["events"] = events
    report["stats"] = ch.statistics()._asdict()
    return report


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[3] == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = int(sys.argv[4])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    print(json.dumps(anyio.run(main, sys.argv[1], sys.argv[2] == "swmr"), default=str), flush=True)
