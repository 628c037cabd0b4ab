"""A writer that kills itself right after storing a partly filled chunk again.

``python tests/_partial_chunk_writer.py PATH swmr|plain CODEC`` writes one channel of
256 float64 per frame (``chunk_frames=64``), frame ``i`` filled with ``i``, and flushes
after every 5 frames, printing ``{"durable": n}`` after each flush. During the third
flush it sends itself SIGKILL at the moment the backend returns from storing the
partly filled chunk a second time (the case where a store that moves the chunk, or
one that reuses the space the last flush's index points to, loses that flush's
frames). See ``tests/test_partial_chunks.py``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import anyio
import numpy as np

import streamsave
from streamsave.backends.h5py import H5pyBackend

FRAME = 256
CHUNK = 64


class KillingBackend(H5pyBackend):
    """Kills the process after the second store of chunk 0's data (a re-store at flush)."""

    stores = 0

    def write_chunk(self, path: str, offset: Any, data: Any, *args: Any) -> None:
        super().write_chunk(path, offset, data, *args)
        if path.endswith("EnlData00") and offset[0] == 0:
            KillingBackend.stores += 1
            if KillingBackend.stores == 3:
                os.kill(os.getpid(), signal.SIGKILL)


async def main(path: str, mode: str, codec: str) -> None:
    async with streamsave.open_saver(path, swmr=mode == "swmr", compression=None if codec == "none" else codec,
                                     flush_interval=60, backend=KillingBackend) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(FRAME,), chunk_frames=CHUNK)
        for i in range(CHUNK):
            await ch.push(np.full(FRAME, float(i)))
            if i % 5 == 4:
                durable = await saver.flush()
                print(json.dumps({"durable": durable["D/c"]}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
