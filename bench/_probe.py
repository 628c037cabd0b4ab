"""Instrumentation: event-loop heartbeat lag, push latency and resident memory."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import anyio
import numpy as np

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


def percentiles(values: list[float] | list[int], scale: float, with_max: bool) -> dict[str, float]:
    """p50 / p99 (and max) of ``values`` multiplied by ``scale``; empty dict if no values."""
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64) * scale
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
    """Durations of individual awaits, in nanoseconds (``perf_counter_ns`` deltas)."""

    def __init__(self) -> None:
        self.ns: list[int] = []

    def summary(self) -> dict[str, float]:
        return percentiles(self.ns, 1e-3, with_max=False)

    @staticmethod
    def merge(parts: list[Latency]) -> Latency:
        out = Latency()
        for p in parts:
            out.ns.extend(p.ns)
        return out
