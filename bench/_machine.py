"""What the results were measured on: machine, library versions, git commit, date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
_PACKAGES: Final = ("numpy", "h5py", "hdf5plugin", "blosc2", "anyio", "streamsave",
                    "pymodaq_data", "matplotlib", "rich")


def git_commit(short: bool = True) -> str | None:
    """The checked-out commit of the repository (read-only ``git rev-parse``)."""
    cmd = ["git", "-C", str(REPO), "rev-parse", *(["--short"] if short else []), "HEAD"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
    if name == "streamsave":  # run from a source tree without being installed
        try:
            from streamsave._version import __version__

            return f"{__version__} (source tree)"
        except Exception:
            return None
    return None


def _hdf5_version() -> str | None:
    try:
        import h5py

        return str(h5py.version.hdf5_version)
    except Exception:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 2)
    except OSError:
        pass
    return None


def filesystem_of(path: Path) -> str | None:
    """The filesystem type holding ``path`` (longest matching mount point in /proc/mounts)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    target, best, fstype = str(path.resolve()), -1, None
    for parts in mounts:
        mnt = parts[1]
        inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
        if len(parts) > 2 and inside and len(mnt) > best:
            best, fstype = len(mnt), parts[2]
    return fstype


def machine_info(workdir: Path | None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {
        "date": now.isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "versions": {name: _version(name) for name in _PACKAGES} | {"hdf5": _hdf5_version()},
        "git_commit": git_commit(short=False),
        "git_commit_short": git_commit(short=True),
        "bench_dir": str(workdir) if workdir else None,
        "bench_dir_fs": filesystem_of(workdir) if workdir else None,
        "env": {k: os.environ[k] for k in ("BLOSC_NTHREADS", "OPENBLAS_CORETYPE", "CI")
                if k in os.environ},
    }
