"""The README's code runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401

ROOT = Path(__file__).parent.parent


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_start_here_example_runs_and_the_file_reads_back(tmp_path: Path) -> None:
    start_here = next(b for b in _python_blocks() if "anyio.run(main)" in b)
    reading = next(b for b in _python_blocks() if b.startswith("import h5py, hdf5plugin"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for code in (start_here, reading):
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "run.h5", "r") as f:
        assert f["RawData/Detector000/Data2D/CH00/EnlData00"].shape == (2, 512, 512)
        assert f["RawData/Detector001/Data1D/CH00/Axis00"].attrs["units"] == "nm"
        assert f["RawData/Detector002/Data0D/CH00/EnlData00"].shape == (2, 1)
