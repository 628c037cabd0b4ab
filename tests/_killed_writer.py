"""A writer process for the crash tests: records 2D, 1D and 0D channels whose frame i
holds the value i everywhere, flushes often, and prints the durable counts after
each flush as one JSON line. The test kills it with SIGKILL (:func:`run_and_kill`)."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import numpy as np

import streamsave


def backend_from(spec: str) -> Any:
    """A backend name (``"tables"``), or ``"module:Class"`` for a backend class."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name) if name else spec


async def main(path: str, swmr: bool, compression: str | None, backend: str = "h5py") -> None:
    async with streamsave.open_saver(path, swmr=swmr, compression=compression, flush_interval=0.05,
                                     chunk_bytes=64 * 1024, backend=backend_from(backend)) as saver:
        image = saver.add_detector("Camera").add_channel("image", shape=(64, 64), dtype="uint16")
        spectrum = saver.add_detector("Spectrometer").add_channel("spectrum", shape=(100,))
        scalar = saver.add_detector("Thermometer").add_channel("T")
        i = 0
        while True:
            await image.push(np.full((64, 64), i % 65536, dtype="uint16"), timestamp=float(i))
            await spectrum.push(np.full(100, float(i)), timestamp=float(i))
            await scalar.push(float(i), timestamp=float(i))
            i += 1
            if i % 25 == 0:
                durable = await saver.flush()
                print(json.dumps(durable), flush=True)


def run_and_kill(path: Path, mode: str, compression: str, *, min_durable: int,
                 backend: str = "h5py") -> dict[str, int]:
    """Run this writer on ``path`` (``mode``: "swmr" or "plain"), SIGKILL it once every
    channel has at least ``min_durable`` durable frames; returns the last durable counts.
    ``backend``: a backend name, or ``"module:Class"``."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, __file__, str(path), mode, compression, backend],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    durable: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            durable = json.loads(line)
            if min(durable.values()) >= min_durable:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    assert durable and min(durable.values()) >= min_durable, err
    return durable


if __name__ == "__main__":
    comp = None if sys.argv[3] == "none" else sys.argv[3]
    anyio.run(main, sys.argv[1], sys.argv[2] == "swmr", comp, sys.argv[4] if len(sys.argv) > 4 else "h5py")
