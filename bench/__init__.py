"""Benchmark suite for streamsave: ``python -m bench [--quick]``, ``python -m bench compare
A.json B.json`` and ``python -m bench plot RESULT.json -o throughput.png``.

Every benchmark (baselines and streamsave scenarios) runs in a fresh subprocess
(``python -m bench._run_one NAME``) so that its peak RSS is its own; all of them run in
the same invocation, over the same deterministic frames, so ratios between them are
measured on the same machine state. MB means 10**6 bytes, MiB 2**20.
"""
