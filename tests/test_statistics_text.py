"""``print(saver.statistics())`` is a short aligned report, not one long line; ``repr`` keeps
every field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import streamsave
import streamsave.sync
from streamsave import ChannelStatistics, OperationTiming, SaverStatistics

NAMES = ("Camera/image", "Spectrometer/spectrum", "Thermometer/temperature", "Andor Zyla 4.2/full frame ROI")


def channel(name: str, scale: int) -> ChannelStatistics:
    written = 123_456 * scale
    return ChannelStatistics(
        name=name, frames_pushed=written + 17, frames_written=written, frames_durable=written - 1_000,
        frames_dropped=17, frames_rejected=3, bytes_pushed=(written + 17) * 524_288, bytes_written=written * 524_288,
        bytes_stored=written * 262_144, queue_fill=511, queue_capacity=1_048_576, queue_high_water=4_096,
        compression_ratio=2.0, frames_per_second=3_739.25, mb_per_second=1_961.04, durable_timestamp=1.7e9,
        durable_at=1.7e9 + 1)


def saver_statistics(*, error: BaseException | None = None, elapsed: float = 3_723.5) -> SaverStatistics:
    chans = tuple(channel(name, i + 1) for i, name in enumerate(NAMES))
    return SaverStatistics(
        path="/data/2026-11-24/sample_42/run_0007.h5", state="failed" if error else "closed", channels=chans,
        frames_pushed=sum(c.frames_pushed for c in chans), frames_written=sum(c.frames_written for c in chans),
        frames_durable=sum(c.frames_durable for c in chans), frames_dropped=sum(c.frames_dropped for c in chans),
        bytes_written=sum(c.bytes_written for c in chans), bytes_stored=sum(c.bytes_stored for c in chans),
        elapsed=elapsed, flushes=3_724, error=error,
        timings={"encode": OperationTiming(120_000, 0.0021, 0.0131, 0.00203),
                 "write": OperationTiming(60_000, 0.00042, 0.25, 0.0009),
                 "flush": OperationTiming(3_724, 0.012, 1.5, 0.0101)})


def test_saver_statistics_is_a_multiline_report() -> None:
    stats = saver_statistics()
    text = str(stats)
    lines = text.splitlines()
    assert len(lines) == 1 + 1 + 1 + len(NAMES) + 1  # header, totals, column titles, rows, timings
    assert all(len(line) <= 120 for line in lines), max(lines, key=len)
    assert lines[0] == "Saver /data/2026-11-24/sample_42/run_0007.h5: closed, 1 h 02 min, 3,724 flushes"
    assert f"{stats.frames_pushed:,} pushed" in lines[1] and f"{stats.frames_written:,} written" in lines[1]
    assert f"{stats.frames_durable:,} durable" in lines[1] and f"{stats.frames_dropped:,} dropped" in lines[1]
    assert "ratio 2.00" in lines[1] and "error" not in text
    assert lines[2].split() == ["channel", "pushed", "written", "durable", "dropped", "queue", "MB/s", "ratio"]
    for line, chan in zip(lines[3:-1], stats.channels, strict=True):
        assert line.startswith(f"  {chan.name} ")
        assert line.split()[-7:] == [f"{chan.frames_written:,}", f"{chan.frames_durable:,}",
                                     f"{chan.frames_dropped:,}", "511", "/", "1,048,576", "1,961.0", "2.00"][-7:]
        assert f"{chan.frames_pushed:,}" in line
    assert lines[-1].strip().startswith("timings")
    for figure in ("encode 2.03/13.1 ms (120,000)", "write 900 us/250 ms (60,000)", "flush 10.1 ms/1.50 s (3,724)"):
        assert figure in lines[-1]


def test_rows_are_aligned() -> None:
    lines = str(saver_statistics()).splitlines()[2:-1]
    assert len({len(line) for line in lines}) == 1  # every row (and the titles) equally wide
    for title in ("pushed", "written", "durable", "dropped", "MB/s", "ratio"):
        end = lines[0].index(title) + len(title)  # numbers are right-aligned under their title
        assert all(line[end - 1] != " " and (end == len(line) or line[end] == " ") for line in lines[1:]), title


def test_an_error_is_reported_and_long_text_wraps() -> None:
    error = streamsave.StorageError("could not write the file: [Errno 28] No space left on device " + "x" * 150)
    text = str(saver_statistics(error=error, elapsed=12.345))
    lines = text.splitlines()
    assert lines[0].endswith(": failed, 12.3 s, 3,724 flushes")
    error_lines = [line for line in lines if "StorageError" in line]
    assert error_lines == [lines[2]] and lines[2].startswith("  error: StorageError: could not write the file")
    assert lines[3].startswith("      ") and "x" * 150 in lines[3]  # continued, never cut
    assert all(len(line) <= 120 for line in lines if "x" * 150 not in line)


def test_repr_is_unchanged() -> None:
    stats = saver_statistics()
    assert repr(stats).startswith("SaverStatistics(path='/data/2026-11-24/sample_42/run_0007.h5', state='closed', ")
    assert "\n" not in repr(stats)
    assert repr(stats.channels[0]).startswith("ChannelStatistics(name='Camera/image', frames_pushed=123473, ")
    assert eval(repr(stats.timings["encode"]), {"OperationTiming": OperationTiming}) == stats.timings["encode"]


def test_channel_statistics_text() -> None:
    chan = channel("Camera/image", 1)
    lines = str(chan).splitlines()
    assert lines == [
        "Camera/image: 123,473 pushed, 123,456 written, 122,456 durable, 17 dropped, 3 rejected",
        "  queue 511/1,048,576 (high water 4,096); 3,739.2 frames/s, 1,961.0 MB/s; 64.7 GB written, "
        "32.4 GB stored (ratio 2.00)",
    ]


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0.00 us"), (0.000_25, "250 us"), (0.034_27, "34.3 ms"), (1.5, "1.50 s"), (12.345, "12.3 s"),
    (75.5, "1 min 16 s"), (7_325, "2 h 02 min"),
])
def test_durations(seconds: float, text: str) -> None:
    stats = saver_statistics()._replace(elapsed=seconds)
    assert str(stats).splitlines()[0].endswith(f": closed, {text}, 3,724 flushes")


def test_a_real_saver_prints_a_readable_report(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with streamsave.sync.open_saver(path, compression="blosc2-lz4") as saver:
        assert "(no channels)" in str(saver.statistics())
        image = saver.add_detector("Camera").add_channel("image", shape=(64, 64), dtype="uint16")
        temperature = saver.add_detector("Thermometer").add_channel("temperature", units="K")
        for i in range(20):
            image.push(np.full((64, 64), i, "uint16"))
            temperature.push(293.0 + i / 100)
        live = str(saver.statistics())
    final = saver.statistics()
    for text in (live, str(final)):
        lines = text.splitlines()
        assert len(lines) >= 6 and all(len(line) <= 120 for line in lines)
        assert "Camera/image" in text and "Thermometer/temperature" in text
    text = str(final)
    assert text.startswith(f"Saver {path}: closed, ")
    assert f"{final.flushes} flushes" in text and "40 written" in text
    row = next(line for line in text.splitlines() if "Camera/image" in line).split()
    assert row[1:5] == ["20", "20", "20", "0"]
    assert row[-1] == f"{final.channels[0].compression_ratio:.2f}"
    assert str(final.channels[1]).startswith("Thermometer/temperature: 20 pushed, 20 written, 20 durable")
