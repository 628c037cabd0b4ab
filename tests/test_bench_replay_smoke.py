"""Smoke test of the replay benchmarks: ``python -m bench --quick --only replay`` runs end to
end and records every figure its targets need. No timing is asserted (CI machines are noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAMES = {"replay_raw_read", "replay_fast_2d", "replay_pace_1k", "replay_pace_10k", "replay_lag_2d"}


def test_quick_replay_benchmarks_record_their_figures(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "replay", "--out", str(out), "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    entries = {e["name"]: e for e in doc["results"]}
    assert set(entries) == NAMES
    for entry in entries.values():
        assert entry["skipped"] is None, (entry["name"], entry["skipped"])
        assert entry["frames"] > 0 and entry["mb_per_s"] > 0, entry["name"]
    for name in ("replay_pace_1k", "replay_pace_10k"):
        assert {"p50", "p99", "max"} <= set(entries[name]["extra"]["lateness_ms"])
    assert entries["replay_lag_2d"]["loop_lag_ms"]["p99"] >= 0
    targets = doc["targets"]
    for key in ("replay_1k_lateness_p99_ms", "replay_10k_lateness_p99_ms", "replay_2d_loop_lag_p99_ms",
                "replay_fast_vs_raw_read"):
        assert targets[key]["value"] is not None, key
    assert not list(tmp_path.glob("streamsave-bench-*")), "benchmark files left behind"
