"""``python -m bench plot RESULT.json -o throughput.png``: MB/s against frame size for
the single-channel streamsave scenarios and the baselines (matplotlib, Agg)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ._report import entries_of, load


def plot(result: Path, out: Path) -> None:
    try:
        import matplotlib
    except ImportError as exc:
        raise SystemExit("plot needs matplotlib: pip install 'streamsave[bench]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = load(result)
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    hlines: dict[str, float] = {}
    for e in entries_of(doc):
        series, size = e.params.get("series"), e.params.get("frame_bytes")
        if e.skipped or e.mb_per_s is None or not series or not size:
            continue
        if e.params.get("plot") == "hline":
            hlines[str(series)] = e.mb_per_s
        else:
            label = str(series) if e.group == "streamsave" else f"{series} (baseline)"
            points[label].append((float(size), e.mb_per_s))

    fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    for label, pts in sorted(points.items()):
        xs, ys = zip(*sorted(pts), strict=True)
        style = "o-" if not label.endswith("(baseline)") else "s--"
        ax.plot(xs, ys, style, label=label)
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:,.0f}" if y >= 1000 else f"{y:.3g}", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    for (label, y), ls in zip(sorted(hlines.items()), (":", "-.", "--"), strict=False):
        ax.axhline(y, linestyle=ls, color="grey", label=f"{label}: {y:,.0f} MB/s")
    ax.set_xscale("log", base=2)
    sizes = sorted({x for pts in points.values() for x, _ in pts})
    if sizes:
        ax.set_xticks(sizes, [_size_label(x) for x in sizes])
    ax.set_yscale("log")
    ax.set_xlabel("frame size (bytes)")
    ax.set_ylabel("throughput (MB/s of raw frame data, 1 MB = 10^6 B)")
    m = doc.get("machine", {})
    mode = "quick" if doc.get("config", {}).get("quick") else "full"
    ax.set_title(f"streamsave vs baselines, {mode} run: {m.get('cpu_count')} cores, "
                 f"commit {m.get('git_commit_short')}, {m.get('date')}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _size_label(nbytes: float) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes:g} B"
