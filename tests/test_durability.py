"""Readers follow a file live (SWMR), and a writer killed with SIGKILL leaves every frame
it had reported durable readable and bit-exact."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import h5py
import numpy as np
import pytest

import streamsave
from tests._killed_writer import run_and_kill
from tests.conftest import channel_paths


@pytest.mark.parametrize("compression", ["none", "blosc2-lz4"])
@pytest.mark.parametrize("mode", ["swmr", "plain"])
def test_killed_writer_leaves_every_durable_frame(tmp_path: Path, mode: str, compression: str) -> None:
    path = tmp_path / "killed.h5"
    durable = run_and_kill(path, mode, compression, min_durable=300)
    with h5py.File(path, "r", swmr=(mode == "swmr")) as f:
        for name, group in channel_paths_swmr(path, mode == "swmr").items():
            data = f[group]["EnlData00"]
            times = f[group][next(k for k in f[group] if f[group][k].attrs.get("label") == "time")]
            n = durable[name]
            assert data.shape[0] >= n and times.shape[0] >= n
            frames = data[:n].reshape(n, -1)
            expected = np.arange(n) % 65536 if name == "Camera/image" else np.arange(n)
            np.testing.assert_array_equal(frames, np.repeat(expected[:, None], frames.shape[1], axis=1))
            np.testing.assert_array_equal(times[:n], np.arange(n, dtype=float))
        # the journal on disk promises at least what the writer reported, and the data keeps it
        columns = json.loads(f["streamsave"].attrs["channels"])
        last = f["streamsave/durable_frames"][-1]
        for name, group in channel_paths_swmr(path, mode == "swmr").items():
            promised = int(last[columns.index(group + "/EnlData00")])
            assert promised >= durable[name]
            assert f[group]["EnlData00"].shape[0] >= promised


def channel_paths_swmr(path: Path, swmr: bool) -> dict[str, str]:
    if not swmr:
        return channel_paths(path)
    found: dict[str, str] = {}
    with h5py.File(path, "r", swmr=True) as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Group) and obj.attrs.get("type") == "ch":
                found[f"{obj.attrs['origin']}/{obj.attrs['TITLE']}"] = "/" + name
        f.visititems(visit)
    return found


async def test_reader_follows_the_file_live(h5path: Path) -> None:
    reader = (
        "import sys, h5py, hdf5plugin\n"
        "f = h5py.File(sys.argv[1], 'r', swmr=True)\n"
        "d = f['RawData/Detector000/Data1D/CH00/EnlData00']\n"
        "d.refresh(); print(d.shape[0], float(d[-1, 0]) if d.shape[0] else -1)\n"
    )
    async with streamsave.open_saver(h5path, compression="blosc2-zstd") as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(16,))
        seen = []
        for step in range(3):
            await ch.push_many(np.full((10, 16), float(step)))
            await saver.flush()
            with anyio.fail_after(60):
                result = await anyio.run_process([sys.executable, "-c", reader, str(h5path)], check=True)
            out = result.stdout.decode().split()
            seen.append((int(out[0]), float(out[1])))
    assert seen == [(10, 0.0), (20, 1.0), (30, 2.0)]
