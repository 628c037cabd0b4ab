"""SIGKILL a streamsave writer at random moments, recover the file, check every frame.

The harness lives in ``tests/crash_run.py`` (``python tests/crash_run.py --kills 200``
for a long run). Here: at least 20 kills across SWMR and plain files, uncompressed and
blosc2 (LZ4, ZSTD), while streaming, while flushing almost continuously, and around
close. The seed is random unless ``STREAMSAVE_CRASH_SEED`` is set; failures print it.

Two writer bugs this harness found are fixed: plain compressed files losing the last
flush's chunks (HDF5 reused freed space at once; such files now never reuse it), and
SWMR files killed while closing being unreadable (the file now stays in SWMR mode to
the end, and is reopened with SWMR write access when empty channels must go).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests import crash_run

SEED = int(os.environ.get("STREAMSAVE_CRASH_SEED", random.SystemRandom().randrange(2**32)))


def test_killed_writers_lose_no_durable_frame(tmp_path: Path) -> None:
    summary = crash_run.run(21, SEED, tmp_path)
    assert summary.kills >= 21
    assert {o.case.swmr for o in summary.outcomes} == {True, False}
    assert {o.case.codec for o in summary.outcomes} == set(crash_run.CODECS)
    assert {o.case.moment for o in summary.outcomes if o.killed} == set(crash_run.MOMENTS)
    assert not summary.failures, f"seed {SEED} (STREAMSAVE_CRASH_SEED={SEED} to replay):\n" + "\n".join(
        summary.failures)
    assert sum(o.verified for o in summary.outcomes) > 0
