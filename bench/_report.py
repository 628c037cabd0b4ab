"""Result files: the targets the project tracks, tables, and ``compare``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, Final, NamedTuple

from ._common import Entry
from ._filesize import ALLOWANCE, COMPRESSED_FACTOR, SIZE_FACTOR
from ._replay import replay_targets


class Target(NamedTuple):
    """A tracked figure: ``num.num_field`` (divided by ``den.den_field`` when ``den`` is
    set); with ``limit`` (``(">=" or "<=", bound)``) it passes or fails."""

    num: str
    num_field: str
    den: str | None
    den_field: str
    what: str
    limit: tuple[str, float] | None = None


TARGETS: Final[dict[str, Target]] = {
    "2d_uncompressed_vs_odirect": Target(
        "ss_2d_none", "mb_per_s", "odirect_write", "mb_per_s",
        "2D 512x512 uncompressed MB/s / O_DIRECT device MB/s"),
    "2d_lz4_vs_blosc2_alone": Target(
        "ss_2d_lz4", "mb_per_s", "blosc2_lz4", "mb_per_s",
        "2D 512x512 blosc2-lz4 MB/s / blosc2 alone LZ4 MB/s (all cores)"),
    "2d_zstd1bit_vs_blosc2_alone": Target(
        "ss_2d_zstd1bit", "mb_per_s", "blosc2_zstd1bit", "mb_per_s",
        "2D 512x512 zstd-1+bitshuffle MB/s / blosc2 alone ZSTD-1 MB/s"),
    "1d_frames_per_s": Target("ss_1d", "frames_per_s", None, "", "1D 2048 float64 frames/s"),
    "0d_push_per_s": Target("ss_0d_push", "frames_per_s", None, "",
                            "0D values/s, one await push each", (">=", 200_000.0)),
    "0d_push_many_values_per_s": Target(
        "ss_0d_push_many", "frames_per_s", None, "", "0D values/s with push_many blocks"),
    "2d_vs_pymodaq": Target(
        "ss_2d_none", "frames_per_s", "pymodaq_2d512", "frames_per_s",
        "streamsave 2D uncompressed frames/s / PyMoDAQ continuous saver 2D frames/s"),
    "1d_vs_pymodaq": Target(
        "ss_1d", "frames_per_s", "pymodaq_1d", "frames_per_s",
        "streamsave 1D frames/s / PyMoDAQ continuous saver 1D frames/s"),
    "16ch_aggregate_vs_single": Target(
        "ss_16x1d", "frames_per_s", "ss_1d", "frames_per_s",
        "16 detectors x 1D aggregate frames/s / one 1D channel frames/s"),
    "scan_2d_none_vs_continuous": Target(
        "ss_scan_2d_none", "mb_per_s", "ss_2d_none", "mb_per_s",
        "2D 512x512 uncompressed MB/s, a grid scan pushed by point / continuous"),
    "scan_2d_lz4_vs_continuous": Target(
        "ss_scan_2d_lz4", "mb_per_s", "ss_2d_lz4", "mb_per_s",
        "2D 512x512 blosc2-lz4 MB/s, a grid scan pushed by point / continuous"),
    "scan_2d_lz4_random_vs_raster": Target(
        "ss_scan_2d_lz4_random", "mb_per_s", "ss_scan_2d_lz4", "mb_per_s",
        "2D blosc2-lz4 grid scan MB/s, points in a shuffled order / in raster order"),
    "2d_metadata4_vs_none": Target(
        "ss_2d_none_meta4", "mb_per_s", "ss_2d_none", "mb_per_s",
        "2D 512x512 uncompressed MB/s with 4 metadata values per frame / without", (">=", 0.9)),
    "swmr_off_vs_on": Target(
        "ss_2d_lz4_swmr_off", "mb_per_s", "ss_2d_lz4", "mb_per_s", "2D lz4 MB/s, SWMR off / on"),
    "flush01_vs_flush1": Target(
        "ss_2d_lz4_flush01", "mb_per_s", "ss_2d_lz4", "mb_per_s",
        "2D lz4 MB/s, flush_interval 0.1 s / 1.0 s"),
    "subscribers3_vs_0": Target(
        "ss_2d_lz4_sub3", "mb_per_s", "ss_2d_lz4", "mb_per_s",
        "2D lz4 MB/s with 3 event subscribers / none"),
    **{f"fsync_flush_vs_close_{case}": Target(
        f"ss_fsync_{case}_flush", "mb_per_s", f"ss_fsync_{case}_close", "mb_per_s",
        f"{what}, flush_interval {interval}: MB/s with fsync='flush' / default (fsync at close)")
       for case, what, interval in (("2d_lz4_f1", "2D lz4", "1.0 s"), ("2d_lz4_f01", "2D lz4", "0.1 s"),
                                    ("1d_f1", "1D", "1.0 s"), ("1d_f01", "1D", "0.1 s"))},
    # reading a streamsave file back (bench/_read.py): no limits, the figures decide
    **{f"read_{reader}_vs_h5py_{mode}": Target(
        f"read_{reader}_{mode}", "mb_per_s", f"read_h5py_{mode}", "mb_per_s",
        f"2D lz4 read, {what}: {who} MB/s / h5py + hdf5plugin MB/s")
       for reader, who in (("direct", "direct chunk read + blosc2 (2 threads)"),
                           ("reader", "streamsave reader"))
       for mode, what in (("random", "random single frames"), ("range", "ranges of 64 frames"))},
}

# slow sensor file size (bench/_filesize.py): entry -> what it is
SIZE_TARGETS: Final = {"size_slow_0d": "0D float64, 1 value per flush",
                       "size_slow_1d": "1D 2048 float64, 1 frame per flush"}


def _passes(value: float | None, limit: tuple[str, float] | None) -> bool | None:
    if value is None or limit is None:
        return None
    op, bound = limit
    return value >= bound if op == ">=" else value <= bound


def _item(value: float | None, what: str, num: str, den: str | None,
          limit: tuple[str, float] | None) -> dict[str, Any]:
    return {"value": value, "what": what, "numerator": num, "denominator": den,
            "limit": f"{limit[0]} {limit[1]:g}" if limit else None, "pass": _passes(value, limit)}


def compute_targets(entries: Sequence[Entry]) -> dict[str, dict[str, Any]]:
    by_name = {e.name: e for e in entries}
    out: dict[str, dict[str, Any]] = {}
    for key, t in TARGETS.items():
        item = _item(None, t.what, t.num, t.den, t.limit)
        a = by_name.get(t.num)
        b = by_name.get(t.den) if t.den else None
        x = getattr(a, t.num_field) if a and not a.skipped else None
        y = getattr(b, t.den_field) if b and not b.skipped else None
        if x is None:
            item["reason"] = f"{t.num} not run" if a is None else f"{t.num}: {a.skipped or 'no value'}"
        elif t.den is None:
            item = _item(x, t.what, t.num, t.den, t.limit)
        elif y is None or y == 0:
            item["reason"] = f"{t.den} not run" if b is None else f"{t.den}: {b.skipped or 'no value'}"
        else:
            item = _item(x / y, t.what, t.num, t.den, t.limit)
            warning = a.extra.get("fsync_warning") if a else None
            if warning:
                item["reason"] = f"warning: {warning}"
        out[key] = item
    out |= _size_targets(by_name)
    out |= replay_targets(by_name)
    return out


def _size_targets(by_name: dict[str, Entry]) -> dict[str, dict[str, Any]]:
    """Per slow sensor entry: the worst file size / allowed size (pass <= 1), and the worst
    compressed / uncompressed file size (pass <= the entry's compressed factor)."""
    out: dict[str, dict[str, Any]] = {}
    for name, what in SIZE_TARGETS.items():
        e = by_name.get(name)
        if e is None:
            continue
        p = e.params
        size_what = (f"{what}: worst file size / ({p.get('size_factor', SIZE_FACTOR):g} x (values + "
                     f"timestamps) + {p.get('allowance_bytes_per_channel', ALLOWANCE) // 1024} KiB "
                     "per channel)")
        comp_what = f"{what}: worst compressed file / uncompressed file, same SWMR setting"
        comp_limit = ("<=", float(p.get("compressed_factor", COMPRESSED_FACTOR)))
        key = name.removeprefix("size_")
        configs = e.extra.get("configs", []) if not e.skipped else []
        ratios = [c["size_vs_allowed"] for c in configs if "size_vs_allowed" in c]
        comps = [c["vs_uncompressed"] for c in configs if "vs_uncompressed" in c]
        size_item = _item(max(ratios) if ratios else None, size_what, name, None, ("<=", 1.0))
        comp_item = _item(max(comps) if comps else None, comp_what, name, None, comp_limit)
        if e.skipped:
            size_item["reason"] = comp_item["reason"] = f"{name}: {e.skipped}"
        else:
            worst = [f"{c['codec']}/{'swmr' if c['swmr'] else 'plain'}" for c in configs
                     if not c.get("size_ok", True)]
            if worst:
                size_item["reason"] = "over: " + ", ".join(worst)
            worse = [f"{c['codec']}/{'swmr' if c['swmr'] else 'plain'}" for c in configs
                     if c.get("vs_uncompressed_ok") is False]
            if worse:
                comp_item["reason"] = "over: " + ", ".join(worse)
        out[f"{key}_file_size"] = size_item
        out[f"{key}_compressed_vs_none"] = comp_item
    return out


def _lag_p99(e: Entry) -> float | None:
    return (e.loop_lag_ms or {}).get("p99")


def _push_p99(e: Entry) -> float | None:
    return (e.push_latency_us or {}).get("p99")


# the figures --against compares, by name
FIGURES: Final[dict[str, Callable[[Entry], float | None]]] = {
    "mb_per_s": attrgetter("mb_per_s"), "frames_per_s": attrgetter("frames_per_s"),
    "peak_rss_mib": attrgetter("peak_rss_mib"), "loop_lag_p99_ms": _lag_p99,
    "push_p99_us": _push_p99,
}


def side_ratios(before: Sequence[Entry], after: Sequence[Entry]) -> dict[str, dict[str, float | None]]:
    """after / before of each figure, per benchmark run on both sides."""
    a_by = {e.name: e for e in after}
    out: dict[str, dict[str, float | None]] = {}
    for b in before:
        a = a_by.get(b.name)
        if a is None:
            continue
        row: dict[str, float | None] = {}
        for label, get in FIGURES.items():
            x = get(a) if not a.skipped else None
            y = get(b) if not b.skipped else None
            row[label] = x / y if x is not None and y else None
        out[b.name] = row
    return out


def target_ratios(before: dict[str, dict[str, Any]],
                  after: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, item in after.items():
        x, y = item.get("value"), before.get(key, {}).get("value")
        out[key] = x / y if x is not None and y else None
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
    entries = entries_of(doc)
    fsync_table(entries)
    size_table(entries)
    trows = [[k, fmt(v.get("value"), 3), v.get("limit") or "", _verdict(v.get("pass")),
              v.get("what", ""), (v.get("reason") or "")[:70]]
             for k, v in doc.get("targets", {}).items()
             if v.get("value") is not None or not (v.get("reason") or "").endswith(" not run")]
    print_table("targets (those of benchmarks that ran)",
                ["target", "value", "limit", "pass", "what", "reason"], trows)
    against_table(doc)


def _verdict(passed: bool | None) -> str:
    return "" if passed is None else ("PASS" if passed else "FAIL")


def _timing(e: Entry | None, op: str, stat: str) -> float | None:
    if e is None or e.skipped:
        return None
    value = e.extra.get("timings", {}).get(op, {}).get(stat)
    return float(value) if value is not None else None


def fsync_table(entries: Sequence[Entry]) -> None:
    """The ss_fsync_<case>_close / _flush pairs side by side."""
    by_name = {e.name: e for e in entries}
    rows = []
    for name, flush in by_name.items():
        if not (name.startswith("ss_fsync_") and name.endswith("_flush")):
            continue
        close = by_name.get(name.removesuffix("_flush") + "_close")
        f_ok = None if flush.skipped else flush
        c_ok = None if close is None or close.skipped else close
        mb_c, mb_f = (c_ok.mb_per_s if c_ok else None), (f_ok.mb_per_s if f_ok else None)
        rows.append([
            name.removeprefix("ss_fsync_").removesuffix("_flush"),
            fmt(flush.params.get("flush_interval"), 1),
            fmt(mb_c), fmt(mb_f), _ratio(mb_c, mb_f),
            f"{fmt(c_ok.extra.get('flushes') if c_ok else None)} / "
            f"{fmt(f_ok.extra.get('flushes') if f_ok else None)}",
            f"{fmt(_timing(c_ok, 'flush', 'mean_ms'), 2)} / {fmt(_timing(f_ok, 'flush', 'mean_ms'), 2)}",
            f"{fmt(_timing(c_ok, 'flush', 'max_ms'), 1)} / {fmt(_timing(f_ok, 'flush', 'max_ms'), 1)}",
            f"{fmt(c_ok.extra.get('fsync_calls') if c_ok else None)} / "
            f"{fmt(f_ok.extra.get('fsync_calls') if f_ok else None)}",
            (flush.skipped or flush.extra.get("fsync_warning") or "")[:70]])
    if rows:
        print_table("fsync='flush' against the default (close / flush)",
                    ["case", "interval s", "MB/s close", "MB/s flush", "flush/close", "flushes",
                     "flush mean ms", "flush max ms", "fsync calls", "note"], rows)


def size_table(entries: Sequence[Entry]) -> None:
    rows = []
    for e in entries:
        if e.name not in SIZE_TARGETS:
            continue
        if e.skipped:
            rows.append([e.name, "", "", "", "", "", "", "", "", e.skipped[:70]])
            continue
        rows.extend([e.name.removeprefix("size_"), c["codec"], "on" if c["swmr"] else "off",
                     fmt(c["frames"], 0), fmt(c["data_bytes"] / 1e3), fmt(c["file_bytes"] / 1e3),
                     fmt(c["file_over_data"], 2), fmt(c.get("size_vs_allowed"), 3),
                     fmt(c.get("vs_uncompressed"), 3), fmt(c.get("await_flush_mean_ms"), 2)]
                    for c in e.extra.get("configs", []))
    if rows:
        print_table("slow sensor file size (1 frame per flush; kB = 10^3 B)",
                    ["case", "codec", "SWMR", "frames", "values+ts kB", "file kB", "file/data",
                     "file/allowed", "vs none", "await flush ms"], rows)


def against_table(doc: dict[str, Any]) -> None:
    """``--against``: both sides and after / before."""
    ag = doc.get("against")
    if not ag:
        return
    after = {e.name: e for e in entries_of(doc)}
    rows = []
    for b in (Entry.from_json(x) for x in ag.get("results", [])):
        a = after.get(b.name)
        cells = [b.name]
        for label, digits in (("mb_per_s", 1), ("frames_per_s", 1), ("push_p99_us", 2),
                              ("loop_lag_p99_ms", 2), ("peak_rss_mib", 1)):
            get = FIGURES[label]
            vb = get(b) if not b.skipped else None
            va = get(a) if a and not a.skipped else None
            cells += [fmt(vb, digits), fmt(va, digits), _ratio(vb, va)]
        cells.append(((b.skipped or "") + " " + ((a.skipped or "") if a else "")).strip()[:50])
        rows.append(cells)
    after_label = ag.get("after", {}).get("label", "this checkout")
    print_table(f"before = {ag.get('label')}   after = {after_label}   (ratio = after/before)",
                ["name", "MB/s before", "after", "ratio", "frames/s before", "after", "ratio",
                 "push p99 us before", "after", "ratio", "lag p99 ms before", "after", "ratio",
                 "RSS MiB before", "after", "ratio", "skipped"], rows)
    bt, at = ag.get("targets", {}), doc.get("targets", {})
    trows = [[k, fmt(bt.get(k, {}).get("value"), 3), fmt(v.get("value"), 3),
              _ratio(bt.get(k, {}).get("value"), v.get("value")), _verdict(bt.get(k, {}).get("pass")),
              _verdict(v.get("pass"))]
             for k, v in at.items() if v.get("value") is not None or bt.get(k, {}).get("value") is not None]
    print_table("targets, before and after", ["target", "before", "after", "after/before",
                                              "pass before", "pass after"], trows)


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
