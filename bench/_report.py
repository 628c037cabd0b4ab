"""Result files: the targets the project tracks, tables, and ``compare``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ._common import Entry

# name -> (numerator entry, its field, denominator entry or None, its field, what it is)
TARGETS: Final[dict[str, tuple[str, str, str | None, str, str]]] = {
    "2d_uncompressed_vs_odirect": (
        "ss_2d_none", "mb_per_s", "odirect_write", "mb_per_s",
        "2D 512x512 uncompressed MB/s / O_DIRECT device MB/s"),
    "2d_lz4_vs_blosc2_alone": (
        "ss_2d_lz4", "mb_per_s", "blosc2_lz4", "mb_per_s",
        "2D 512x512 blosc2-lz4 MB/s / blosc2 alone LZ4 MB/s (all cores)"),
    "2d_zstd1bit_vs_blosc2_alone": (
        "ss_2d_zstd1bit", "mb_per_s", "blosc2_zstd1bit", "mb_per_s",
        "2D 512x512 zstd-1+bitshuffle MB/s / blosc2 alone ZSTD-1 MB/s"),
    "1d_frames_per_s": ("ss_1d", "frames_per_s", None, "", "1D 2048 float64 frames/s"),
    "0d_push_per_s": ("ss_0d_push", "frames_per_s", None, "", "0D values/s, one await push each"),
    "0d_push_many_values_per_s": (
        "ss_0d_push_many", "frames_per_s", None, "", "0D values/s with push_many blocks"),
    "2d_vs_pymodaq": (
        "ss_2d_none", "frames_per_s", "pymodaq_2d512", "frames_per_s",
        "streamsave 2D uncompressed frames/s / PyMoDAQ continuous saver 2D frames/s"),
    "1d_vs_pymodaq": (
        "ss_1d", "frames_per_s", "pymodaq_1d", "frames_per_s",
        "streamsave 1D frames/s / PyMoDAQ continuous saver 1D frames/s"),
    "16ch_aggregate_vs_single": (
        "ss_16x1d", "frames_per_s", "ss_1d", "frames_per_s",
        "16 detectors x 1D aggregate frames/s / one 1D channel frames/s"),
    "swmr_off_vs_on": (
        "ss_2d_lz4_swmr_off", "mb_per_s", "ss_2d_lz4", "mb_per_s", "2D lz4 MB/s, SWMR off / on"),
    "flush01_vs_flush1": (
        "ss_2d_lz4_flush01", "mb_per_s", "ss_2d_lz4", "mb_per_s",
        "2D lz4 MB/s, flush_interval 0.1 s / 1.0 s"),
    "subscribers3_vs_0": (
        "ss_2d_lz4_sub3", "mb_per_s", "ss_2d_lz4", "mb_per_s",
        "2D lz4 MB/s with 3 event subscribers / none"),
}


def compute_targets(entries: Sequence[Entry]) -> dict[str, dict[str, Any]]:
    by_name = {e.name: e for e in entries}
    out: dict[str, dict[str, Any]] = {}
    for key, (num, num_field, den, den_field, what) in TARGETS.items():
        item: dict[str, Any] = {"value": None, "what": what, "numerator": num,
                                "denominator": den}
        a = by_name.get(num)
        b = by_name.get(den) if den else None
        x = getattr(a, num_field) if a and not a.skipped else None
        y = getattr(b, den_field) if b and not b.skipped else None
        if x is None:
            item["reason"] = f"{num} not run" if a is None else f"{num}: {a.skipped or 'no value'}"
        elif den is None:
            item["value"] = x
        elif y is None or y == 0:
            item["reason"] = f"{den} not run" if b is None else f"{den}: {b.skipped or 'no value'}"
        else:
            item["value"] = x / y
        out[key] = item
    return out


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def entries_of(doc: dict[str, Any]) -> list[Entry]:
    return [Entry.from_json(e) for e in doc.get("results", [])]


def write(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1e5:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A rich table when rich is installed, aligned plain text otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                  for i, h in enumerate(headers)]
        print(f"\n{title}")
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        return
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for r in rows:
        table.add_row(*r)
    console = Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze into 80 columns
        console = Console(width=200)
    console.print(table)


def summary(doc: dict[str, Any]) -> None:
    rows = []
    for e in entries_of(doc):
        lag = e.loop_lag_ms or {}
        lat = e.push_latency_us or {}
        rows.append([e.name, fmt(e.frames, 0), fmt(e.seconds, 2), fmt(e.frames_per_s),
                     fmt(e.mb_per_s), fmt(e.ratio, 2), fmt(e.peak_rss_mib),
                     fmt(lag.get("p99"), 2), fmt(lag.get("max"), 1), fmt(lat.get("p99")),
                     (e.skipped or "")[:60]])
    print_table("results (medians of repeats)",
                ["name", "frames", "s", "frames/s", "MB/s", "ratio", "peak RSS MiB",
                 "lag p99 ms", "lag max ms", "push p99 us", "skipped"], rows)
    trows = [[k, fmt(v.get("value"), 3), v.get("what", ""), (v.get("reason") or "")[:50]]
             for k, v in doc.get("targets", {}).items()]
    print_table("targets", ["target", "value", "what", "reason"], trows)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:.2f}x" if a and b is not None else "-"


def compare(path_a: Path, path_b: Path) -> None:
    """Print A and B side by side, with B/A ratios."""
    doc_a, doc_b = load(path_a), load(path_b)
    ea = {e.name: e for e in entries_of(doc_a)}
    eb = {e.name: e for e in entries_of(doc_b)}
    names = list(ea) + [n for n in eb if n not in ea]
    rows = []
    for n in names:
        a, b = ea.get(n), eb.get(n)
        row = [n]
        for fld in ("mb_per_s", "frames_per_s"):
            va = getattr(a, fld) if a and not a.skipped else None
            vb = getattr(b, fld) if b and not b.skipped else None
            row += [fmt(va), fmt(vb), _ratio(va, vb)]
        pa = a.peak_rss_mib if a else None
        pb = b.peak_rss_mib if b else None
        lag_a = (a.loop_lag_ms or {}).get("p99") if a else None
        lag_b = (b.loop_lag_ms or {}).get("p99") if b else None
        row += [fmt(pa), fmt(pb), fmt(lag_a, 2), fmt(lag_b, 2)]
        rows.append(row)
    ma, mb = doc_a.get("machine", {}), doc_b.get("machine", {})
    title = (f"A = {path_a.name} ({ma.get('git_commit_short')}, {ma.get('date')})   "
             f"B = {path_b.name} ({mb.get('git_commit_short')}, {mb.get('date')})")
    print_table(title, ["name", "A MB/s", "B MB/s", "B/A", "A frames/s", "B frames/s", "B/A",
                        "A RSS MiB", "B RSS MiB", "A lag p99", "B lag p99"], rows)
    ta, tb = doc_a.get("targets", {}), doc_b.get("targets", {})
    trows = []
    for k in list(ta) + [k for k in tb if k not in ta]:
        va, vb = ta.get(k, {}).get("value"), tb.get(k, {}).get("value")
        trows.append([k, fmt(va, 3), fmt(vb, 3), _ratio(va, vb)])
    print_table("targets", ["target", "A", "B", "B/A"], trows)
