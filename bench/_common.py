"""Shared types: a result entry, the run context, and the Skip signal."""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

MB: Final = 1_000_000
MIB: Final = 1 << 20


class Skip(Exception):
    """Raised by a benchmark that cannot run here; its message is the recorded reason."""


@dataclass(frozen=True)
class Ctx:
    """What a benchmark needs to know about the run it belongs to."""

    quick: bool
    workdir: Path
    soak_seconds: float = 0.0

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass
class Entry:
    """One benchmark's result, as written to the JSON file."""

    name: str
    group: str
    params: dict[str, Any] = field(default_factory=dict)
    frames: int = 0
    bytes_raw: int = 0
    seconds: float | None = None
    frames_per_s: float | None = None
    mb_per_s: float | None = None
    ratio: float | None = None
    peak_rss_mib: float | None = None
    loop_lag_ms: dict[str, float] | None = None
    push_latency_us: dict[str, float] | None = None
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def finish(self, frames: int, bytes_raw: int, seconds: float) -> Entry:
        """Set the counts and the time, and derive the rates from them."""
        self.frames = frames
        self.bytes_raw = bytes_raw
        self.seconds = seconds
        if seconds > 0:
            self.frames_per_s = frames / seconds
            self.mb_per_s = bytes_raw / MB / seconds
        return self

    def to_json(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, containers are cleaned recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
