"""Smoke test of the benchmark suite: ``python -m bench --quick`` runs end to end and
writes a complete result file. No timing is asserted (CI machines are noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench._scenarios import BACKENDS

REPO = Path(__file__).resolve().parent.parent

EXPECTED = {
    # baselines
    "odirect_write", "pagecache_write", "blosc2_lz4", "blosc2_zstd1bit", "blosc2_lz4_2048",
    "naive_h5py", "pymodaq_2d512", "pymodaq_1d", "pymodaq_0d",
    # streamsave scenarios (recorded as skipped, with a reason, when they cannot run)
    "ss_2d_none", "ss_2d_lz4", "ss_2d_zstd1bit", "ss_2d2048_lz4", "ss_1d", "ss_0d_push",
    "ss_0d_push_many", "ss_16x1d", "ss_mixed", "ss_2d_lz4_swmr_off", "ss_2d_lz4_flush01",
    "ss_2d_lz4_sub3",
    # one per backend beside the default
    *(f"ss_2d_lz4_{backend.replace('-', '_')}" for backend in BACKENDS),
}
ENTRY_KEYS = {"name", "group", "params", "frames", "bytes_raw", "seconds", "frames_per_s",
              "mb_per_s", "ratio", "peak_rss_mib", "loop_lag_ms", "push_latency_us", "skipped"}


def test_quick_benchmark_run_writes_complete_results(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(out.read_text())

    machine = doc["machine"]
    assert machine["cpu_count"] >= 1
    for key in ("platform", "python", "date", "git_commit"):
        assert key in machine
    for package in ("numpy", "h5py", "hdf5", "hdf5plugin", "blosc2", "anyio"):
        assert machine["versions"][package], package
    assert doc["config"]["quick"] is True

    entries = {e["name"]: e for e in doc["results"]}
    assert set(entries) == EXPECTED
    for entry in entries.values():
        assert set(entry) >= ENTRY_KEYS, entry["name"]
        assert entry["skipped"] is not None or entry["seconds"] > 0, entry["name"]

    # the always-available baselines did run
    for name in ("pagecache_write", "blosc2_lz4", "blosc2_zstd1bit", "naive_h5py"):
        assert entries[name]["skipped"] is None, (name, entries[name]["skipped"])
        assert entries[name]["mb_per_s"] > 0
    assert {"2d_uncompressed_vs_odirect", "2d_lz4_vs_blosc2_alone", "1d_frames_per_s",
            "0d_push_per_s", "0d_push_many_values_per_s", "2d_vs_pymodaq",
            "16ch_aggregate_vs_single"} <= set(doc["targets"])
    assert not list(tmp_path.glob("streamsave-bench-*")), "benchmark files left behind"
