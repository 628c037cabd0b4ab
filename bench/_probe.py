"""Instrumentation: event-loop heartbeat lag, push latency and resident memory."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt

from ._common import MIB


def _status_kib(field: str) -> float | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return None


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return kib * 1024.0 / MIB


def rss_mib() -> float:
    """This process's current resident set size (VmRSS), in MiB."""
    kib = _status_kib("VmRSS")
    return (kib or 0.0) * 1024.0 / MIB


def percentiles(values: list[float] | npt.NDArray[Any], scale: float,
                with_max: bool) -> dict[str, float]:
    """p50 / p99 (and max) of ``values`` multiplied by ``scale``; empty dict if no values."""
    arr = np.asarray(values, dtype=np.float64) * scale
    if arr.size == 0:
        return {}
    out = {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99))}
    if with_max:
        out["max"] = float(arr.max())
    out["n"] = float(arr.size)
    return out


class Heartbeat:
    """A task that sleeps ``period`` seconds in a loop and records how late it wakes up.

    Run it in the same event loop as the code under test (``tg.start_soon(hb.run)``) and
    cancel it when done; :meth:`summary` gives the lag in milliseconds.
    """

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.lags: list[float] = []

    async def run(self) -> None:
        period, record, clock = self.period, self.lags.append, time.perf_counter
        while True:
            t0 = clock()
            await anyio.sleep(period)
            record(max(0.0, clock() - t0 - period))

    def summary(self) -> dict[str, float]:
        return percentiles(self.lags, 1e3, with_max=True)


class Latency:
    """Durations of individual awaits in nanoseconds (``perf_counter_ns`` deltas), kept
    in an array allocated (and touched) up front, so recording a million of them
    neither allocates during the run nor inflates the peak RSS."""

    def __init__(self, capacity: int) -> None:
        self.ns: npt.NDArray[np.int64] = np.full(capacity, -1, dtype=np.int64)

    def recorded(self) -> npt.NDArray[np.int64]:
        return self.ns[self.ns >= 0]

    def summary(self) -> dict[str, float]:
        return percentiles(self.recorded(), 1e-3, with_max=False)

    @staticmethod
    def merged_summary(parts: list[Latency]) -> dict[str, float]:
        if not parts:
            return {}
        return percentiles(np.concatenate([p.recorded() for p in parts]), 1e-3, with_max=False)
