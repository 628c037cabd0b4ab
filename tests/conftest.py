"""Shared fixtures: files under tmp_path, read back with plain h5py + hdf5plugin."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter, as any reader would load it)
import numpy as np
import numpy.typing as npt
import pytest

from streamsave.backends.h5py import H5pyBackend


@pytest.fixture
def h5path(tmp_path: Path) -> Path:
    return tmp_path / "run.h5"


def channel_paths(path: Path) -> dict[str, str]:
    """``{"Detector/channel": "/RawData/.../CHnn"}`` for every channel in a file."""
    found: dict[str, str] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and obj.attrs.get("type") == "ch":
            found[f"{obj.attrs['origin']}/{obj.attrs['TITLE']}"] = "/" + name

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def read_channel(path: Path, name: str) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64]]:
    """(frames, timestamps) of one channel, read with plain h5py."""
    group = channel_paths(path)[name]
    with h5py.File(path, "r") as f:
        g = f[group]
        time_name = [k for k in g if k.startswith("Axis") and g[k].attrs.get("label") == "time"]
        assert len(time_name) == 1, f"{name}: expected exactly one time axis, found {time_name}"
        return g["EnlData00"][()], g[time_name[0]][()]


class GatedBackend(H5pyBackend):
    """An h5py backend whose chunk writes wait until the test opens the gate, so a
    test can hold the writer still and fill a queue deterministically."""

    def __init__(self, path: Any, mode: Any, *, swmr: bool = True) -> None:
        super().__init__(path, mode, swmr=swmr)
        self.gate = threading.Event()
        self.entered = threading.Event()
        GatedBackend.last = self

    last: GatedBackend

    def write_chunk(self, path: str, offset: Any, data: Any, filter_mask: int = 0) -> None:
        self.entered.set()
        self.gate.wait(30)
        super().write_chunk(path, offset, data, filter_mask)


@pytest.fixture
def gated() -> Iterator[type[GatedBackend]]:
    yield GatedBackend
    if hasattr(GatedBackend, "last"):
        GatedBackend.last.gate.set()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a saver's writer or encoder threads running."""
    yield
    deadline = time.monotonic() + 10
    while True:
        alive = [t.name for t in threading.enumerate() if t.name.startswith("streamsave-")]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not alive, f"threads left running: {alive}"


@pytest.fixture(scope="session")
def hsds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real HSDS service for the session (tests/_hsds.py): skipped with the reason
    when HSDS is not installed, except in CI, where that fails."""
    from tests._hsds import start_server

    server = start_server(tmp_path_factory.mktemp("hsds"))
    yield server
    server.cleanup()  # raises if a process of the service is left
