"""The scenarios every storage backend passes: the same recordings, the same read-back
checks, the same bad-input errors.

A backend's test module subclasses :class:`BackendConformance` and sets ``backend``
(and, for a service, overrides :meth:`~BackendConformance.target`,
:meth:`~BackendConformance.open_plain` and ``backend_options``). Each scenario that
needs a capability the backend lacks (SWMR, a codec, local files) skips, saying which.

Every recording is read back twice: with the plain library (h5py + hdf5plugin for a
local file, in a process that never imported streamsave when it matters) and with
:func:`streamsave.open_reader`.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio
import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter, as any reader would load it)
import numpy as np
import numpy.typing as npt
import pytest

import streamsave
from streamsave.backends import ALL_CODECS, Backend
from streamsave.backends._registry import Capabilities, backend_class, capabilities
from tests._killed_writer import run_and_kill

T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Spec:
    detector: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    frames: int

    @property
    def key(self) -> str:
        return f"{self.detector}/{self.name}"


#: 0D, 1D, 2D and 3D frames at different rates, and frames larger than a chunk; chunks of a
#: few frames (chunk_bytes below), so each channel has whole chunks and a partly filled one at
#: every flush
SPECS = (
    Spec("Camera", "image", (24, 20), "uint16", 37),
    Spec("Spectrometer", "spectrum", (50,), "float64", 23),
    Spec("Thermometer", "T", (), "float64", 101),
    Spec("Volume", "voxels", (4, 3, 2), "int32", 9),
    # 6,000-byte frames, larger than a chunk: each stored as 2 tiles of 38 rows (the last one padded)
    Spec("Big", "frame", (75, 40), "uint16", 6),
)
CHUNK_BYTES = 4096


def frame(spec: Spec, i: int) -> Any:
    """Frame ``i`` of a channel: distinct values in every frame and pixel."""
    size = math.prod(spec.shape)
    values = (np.arange(size) * 3 + i * 7) % 1000
    if not spec.shape:
        return float(i) * 0.5
    return values.reshape(spec.shape).astype(spec.dtype)


def frames(spec: Spec, n: int | None = None) -> npt.NDArray[Any]:
    n = spec.frames if n is None else n
    return np.array([frame(spec, i) for i in range(n)], dtype=spec.dtype).reshape((n, *(spec.shape or (1,))))


def times(n: int) -> npt.NDArray[np.float64]:
    return T0 + 0.25 * np.arange(n, dtype=np.float64)


def text(value: Any) -> str:
    """An attribute's text, whether the backend stored a variable-length string (h5py:
    ``str``) or a fixed-length one (PyTables: ``bytes``)."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8")
    return str(value)


@dataclass
class Recording:
    target: str
    #: channel key -> its dataset and time axis paths
    paths: dict[str, tuple[str, str]] = field(default_factory=dict)
    statistics: streamsave.SaverStatistics | None = None


class BackendConformance:
    """The conformance scenarios; subclass it as ``TestXxxBackend``."""

    #: what ``open_saver`` and ``open_reader`` get as ``backend=``
    backend: ClassVar[str | Callable[..., Backend]] = "h5py"
    #: what they get as ``backend_options=``
    backend_options: ClassVar[dict[str, Any]] = {}
    #: the backend as ``tests/_killed_writer.py`` names it (a name or ``"module:Class"``);
    #: ``""``: the crash scenario does not apply
    killed_writer_backend: ClassVar[str] = ""

    # ------------------------------------------------------------------ hooks
    @property
    def caps(self) -> Capabilities:
        return capabilities(backend_class(self.backend))

    def target(self, tmp_path: Path, name: str) -> str:
        """Where a recording goes: a file under ``tmp_path`` (a service: a domain)."""
        return str(tmp_path / name)

    @contextmanager
    def open_plain(self, target: str) -> Iterator[Any]:
        """The recording opened read-only with the plain library (h5py + hdf5plugin)."""
        with h5py.File(target, "r") as f:
            yield f

    def check_stored_compressed(self, dataset: Any, compression: str | None) -> None:
        """The dataset declares the filter its chunks need (HDF5's Blosc2, id 32026)."""
        filters = dataset._filters
        if compression is None:
            assert not filters, filters
        else:
            assert "32026" in filters, filters

    def check_chunks(self, dataset: Any, spec: Spec) -> None:
        """The dataset's chunks: whole frames, or tiles of whole rows for frames larger
        than a chunk."""
        frame_bytes = math.prod(spec.shape) * np.dtype(spec.dtype).itemsize
        if frame_bytes > CHUNK_BYTES:
            assert dataset.chunks == (1, 38, *spec.shape[1:]), dataset.chunks
        else:
            assert dataset.chunks == (CHUNK_BYTES // frame_bytes if spec.shape else 512, *(spec.shape or (1,)))

    def options(self, **options: Any) -> dict[str, Any]:
        return {"backend": self.backend, "backend_options": dict(self.backend_options), "mode": "w", **options}

    def reader(self, target: str, **options: Any) -> streamsave.Run:
        return streamsave.open_reader(target, backend=self.backend, backend_options=dict(self.backend_options),
                                      **options)

    def need_local(self) -> None:
        if not self.caps.local:
            pytest.skip(f"backend {self.caps.name!r} has no local files")

    # ------------------------------------------------------------------ recording and checking
    async def record(self, target: str, *, specs: tuple[Spec, ...] = SPECS, compression: str | None = None,
                     flush_at: tuple[int, ...] = (5, 6, 17), empty: bool = False, **options: Any) -> Recording:
        """Record ``specs`` (frame i of every channel pushed together), flushing after
        the pushes of each index in ``flush_at``, so partly filled chunks are stored
        and then stored again."""
        rec = Recording(target)
        async with streamsave.open_saver(target, **self.options(compression=compression, chunk_bytes=CHUNK_BYTES,
                                                                 flush_interval=60, **options)) as saver:
            channels = {}
            for spec in specs:
                det = saver.detectors.get(spec.detector) or saver.add_detector(spec.detector)
                channels[spec.key] = det.add_channel(spec.name, shape=spec.shape, dtype=spec.dtype)
            if empty:
                saver.add_detector("Idle").add_channel("never", shape=(3,))
            for i in range(max(s.frames for s in specs)):
                for spec in specs:
                    if i < spec.frames:
                        await channels[spec.key].push(frame(spec, i), timestamp=T0 + 0.25 * i)
                if i in flush_at:
                    durable = await saver.flush()
                    assert durable == {s.key: min(i + 1, s.frames) for s in specs} | \
                        ({"Idle/never": 0} if empty else {})
            rec.paths = {key: (ch.paths.data, ch.paths.time) for key, ch in channels.items()}
        rec.statistics = saver.statistics()
        return rec

    def check_plain(self, rec: Recording, specs: tuple[Spec, ...] = SPECS,
                    compression: str | None = None) -> None:
        """Every frame and timestamp, and the tree's main attributes, with the plain library."""
        with self.open_plain(rec.target) as f:
            assert text(f["/"].attrs["NX_class"]) == "NXroot"
            for spec in specs:
                data_path, time_path = rec.paths[spec.key]
                data = f[data_path]
                assert data.shape == (spec.frames, *(spec.shape or (1,))), spec
                assert data.dtype == np.dtype(spec.dtype)
                np.testing.assert_array_equal(data[()], frames(spec), err_msg=spec.key)
                np.testing.assert_array_equal(f[time_path][()], times(spec.frames), err_msg=spec.key)
                group = f[data_path.rsplit("/", 1)[0]]
                assert text(group.attrs["TITLE"]) == spec.name
                assert text(group.attrs["NX_class"]) == "NXdata"
                assert text(data.attrs["CLASS"]) == "EARRAY"
                assert json.loads(text(data.attrs["shape"]))["data"] == repr((spec.frames, *(spec.shape or (1,))))
                assert text(data.attrs["backend"]) == self.caps.name
                self.check_stored_compressed(data, compression)
                self.check_chunks(data, spec)

    def check_reader(self, rec: Recording, specs: tuple[Spec, ...] = SPECS) -> None:
        with self.reader(rec.target) as run:
            assert set(run.channels) == {s.key for s in specs}
            for spec in specs:
                ch = run.channels[spec.key]
                assert ch.shape == (spec.frames, *spec.shape)
                np.testing.assert_array_equal(ch[:], frames(spec).reshape((spec.frames, *spec.shape)))
                np.testing.assert_array_equal(ch.timestamps[:], times(spec.frames))

    # ------------------------------------------------------------------ scenarios
    @pytest.mark.parametrize("codec", [None, "lz4", "zstd", "blosclz"], ids=str)
    async def test_every_frame_reads_back(self, tmp_path: Path, codec: str | None) -> None:
        if codec is not None and codec not in self.caps.codecs:
            pytest.skip(f"backend {self.caps.name!r} cannot store {codec}")
        compression = None if codec is None else f"blosc2-{codec}"
        rec = await self.record(self.target(tmp_path, "run.h5"), compression=compression)
        self.check_plain(rec, compression=compression)
        self.check_reader(rec)
        assert rec.statistics is not None
        assert rec.statistics.frames_written == sum(s.frames for s in SPECS)
        assert rec.statistics.frames_dropped == 0

    async def test_one_flush_at_every_frame(self, tmp_path: Path) -> None:
        """Partly filled chunks stored at every flush, then stored again, hold every frame."""
        codec = "lz4" if "lz4" in self.caps.codecs else None
        compression = None if codec is None else "blosc2-lz4"
        specs = SPECS[:3]
        rec = await self.record(self.target(tmp_path, "every.h5"), specs=specs, compression=compression,
                                flush_at=tuple(range(40)))
        self.check_plain(rec, specs, compression)
        self.check_reader(rec, specs)

    async def test_a_channel_without_frames_is_removed(self, tmp_path: Path) -> None:
        specs = SPECS[:2]
        rec = await self.record(self.target(tmp_path, "empty.h5"), specs=specs, empty=True, flush_at=(3,))
        self.check_plain(rec, specs)
        self.check_reader(rec, specs)
        with self.open_plain(rec.target) as f:
            idle = [f[f"/RawData/{d}"] for d in f["/RawData"] if text(f[f"/RawData/{d}"].attrs.get("TITLE", "")) ==
                    "Idle"]
            assert len(idle) == 1 and list(idle[0]) == []
            assert json.loads(text(idle[0].attrs["empty_channels"]))["data"] == "['never']"

    @pytest.mark.parametrize("size", ["small", "large"])
    async def test_settings_units_and_axes_read_back(self, tmp_path: Path, size: str) -> None:
        """Settings (large ones go to datasets), units and axes, through open_reader."""
        settings: dict[str, Any] = {"exposure (µs)": 12.5, "mode": "fast ✓", "roi": [1, 2, 3], "on": True}
        if size == "large":
            settings["table"] = [float(i) for i in range(12_000)]
        axis = streamsave.Axis("wavelength", units="nm", values=np.linspace(400.0, 800.0, 8))
        target = self.target(tmp_path, "settings.h5")
        async with streamsave.open_saver(target, **self.options(title="Messung ü")) as saver:
            ch = saver.add_detector("Kamera ä", settings=settings).add_channel(
                "Spektrum ö", shape=(8,), units="µW", axes=[axis])
            await ch.push_many(np.arange(24.0).reshape(3, 8))
        with self.reader(target) as run:
            (key,) = run.channels
            got = run.channels[key]
            assert key == "Kamera ä/Spektrum ö"
            assert got.settings == settings
            assert got.units == "µW"
            assert [(a.label, a.units) for a in got.axes] == [("wavelength", "nm")]
            np.testing.assert_allclose(got.axes[0].coordinates(8), axis.coordinates(8))
            np.testing.assert_array_equal(got[:], np.arange(24.0).reshape(3, 8))

    async def test_swmr_default_is_what_the_backend_has(self, tmp_path: Path) -> None:
        async with streamsave.open_saver(self.target(tmp_path, "default.h5"), **self.options()) as saver:
            assert saver.config.swmr is self.caps.swmr
            await saver.add_detector("D").add_channel("c").push(1.0)

    async def test_swmr_on_a_backend_without_it_is_refused(self, tmp_path: Path) -> None:
        if self.caps.swmr:
            pytest.skip(f"backend {self.caps.name!r} has SWMR")
        target = self.target(tmp_path, "swmr.h5")
        with pytest.raises(streamsave.ConfigError) as info:
            async with streamsave.open_saver(target, **self.options(swmr=True)):
                pass
        message = str(info.value)
        assert self.caps.name in message and "swmr=False" in message and "SWMR no" in message, message
        if self.caps.local:
            assert not Path(target).exists()

    async def test_a_codec_the_backend_cannot_store_is_refused(self, tmp_path: Path) -> None:
        missing = sorted(ALL_CODECS - self.caps.codecs)
        if not missing:
            pytest.skip(f"backend {self.caps.name!r} stores every codec")
        with pytest.raises(streamsave.ConfigError) as info:
            async with streamsave.open_saver(self.target(tmp_path, "codec.h5"),
                                             **self.options(compression=f"blosc2-{missing[0]}")):
                pass
        message = str(info.value)
        assert missing[0] in message and all(c in message for c in self.caps.codecs), message

    async def test_chunks_larger_than_a_request_are_refused(self, tmp_path: Path) -> None:
        limit = self.caps.max_request_bytes
        if limit is None:
            pytest.skip(f"backend {self.caps.name!r} has no request size limit")
        with pytest.raises(streamsave.ConfigError, match="in one request"):
            async with streamsave.open_saver(self.target(tmp_path, "big.h5"), **self.options(chunk_bytes=limit + 1)):
                pass
        async with streamsave.open_saver(self.target(tmp_path, "frame.h5"), **self.options()) as saver:
            side = math.isqrt(limit // 2) + 1  # one uint16 frame over the limit
            with pytest.raises(streamsave.ConfigError, match="in one request"):
                saver.add_detector("D").add_channel("huge", shape=(side, side), dtype="uint16")

    async def test_bad_frames_are_refused_and_lose_nothing(self, tmp_path: Path) -> None:
        target = self.target(tmp_path, "bad.h5")
        async with streamsave.open_saver(target, **self.options(flush_interval=60)) as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(4,), dtype="float32")
            await ch.push(np.zeros(4, dtype=np.float32), timestamp=T0)
            with pytest.raises(streamsave.FrameMismatchError, match=r"\(5,\)"):
                await ch.push(np.zeros(5, dtype=np.float32))
            with pytest.raises(streamsave.TimestampError):
                await ch.push(np.zeros(4, dtype=np.float32), timestamp=math.nan)
            await ch.push(np.ones(4, dtype=np.float32), timestamp=T0 + 1)
            paths = ch.paths
        with self.open_plain(target) as f:
            np.testing.assert_array_equal(f[paths.data][()], [[0] * 4, [1] * 4])
            np.testing.assert_array_equal(f[paths.time][()], [T0, T0 + 1])

    async def test_unknown_backend_options_are_refused_without_their_values(self, tmp_path: Path) -> None:
        secret = "s3cr3t-value-never-shown"
        with pytest.raises(streamsave.ConfigError) as info:
            async with streamsave.open_saver(self.target(tmp_path, "opts.h5"), **{
                    **self.options(), "backend_options": {**self.backend_options, "no_such_option": secret}}):
                pass
        assert "no_such_option" in str(info.value)
        assert secret not in str(info.value) and secret not in repr(info.value)

    async def test_backend_options_are_never_shown(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """Options reach the backend, and appear in no repr, statistics or log line."""
        secret = "s3cr3t-token-never-shown"
        real = backend_class(self.backend)
        received: list[str] = []
        extra = dict(self.backend_options)

        def factory(path: Any, mode: Any, *, swmr: bool, token: str) -> Backend:
            received.append(token)
            return real(path, mode, swmr=swmr, **extra)

        caps = self.caps
        for attr, value in (("name", caps.name), ("supports_swmr", caps.swmr), ("codecs", caps.codecs),
                            ("supports_direct_chunk_write", caps.direct_chunk_write),
                            ("max_request_bytes", caps.max_request_bytes), ("local", caps.local)):
            setattr(factory, attr, value)
        caplog.set_level(logging.DEBUG)
        target = self.target(tmp_path, "secret.h5")
        async with streamsave.open_saver(target, **{**self.options(flush_interval=60), "backend": factory,
                                                    "backend_options": {"token": secret}}) as saver:
            ch = saver.add_detector("D").add_channel("c")
            await ch.push(1.0)
            shown = [repr(saver), repr(saver.config), str(saver.config), repr(ch), str(saver.statistics())]
        shown.append(str(saver.statistics()))
        assert received == [secret]
        for text_shown in [*shown, caplog.text]:
            assert secret not in text_shown

    async def test_swmr_reader_in_another_process_follows(self, tmp_path: Path) -> None:
        if not self.caps.swmr:
            pytest.skip(f"backend {self.caps.name!r} has no SWMR: no reader while the file is written")
        self.need_local()
        target = self.target(tmp_path, "live.h5")
        script = textwrap.dedent("""
            import sys, streamsave
            with streamsave.open_reader(sys.argv[1]) as run:
                ch = run.channels["D/c"]
                print(run.live, ch.shape[0], float(ch[-1][0]))
        """)
        seen = []
        async with streamsave.open_saver(target, **self.options(compression=None, flush_interval=60)) as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(16,))
            for step in range(3):
                await ch.push_many(np.full((10, 16), float(step)))
                await saver.flush()
                with anyio.fail_after(60):
                    result = await anyio.run_process([sys.executable, "-c", script, target], check=True)
                live, n, last = result.stdout.decode().split()
                seen.append((live, int(n), float(last)))
        assert seen == [("True", 10, 0.0), ("True", 20, 1.0), ("True", 30, 2.0)]

    def test_a_killed_writer_leaves_every_durable_frame(self, tmp_path: Path) -> None:
        if not self.killed_writer_backend:
            pytest.skip(f"backend {self.caps.name!r} is not run in a killed writer process")
        self.need_local()
        path = Path(self.target(tmp_path, "killed.h5"))
        mode = "swmr" if self.caps.swmr else "plain"
        compression = "blosc2-lz4" if "lz4" in self.caps.codecs else "none"
        durable = run_and_kill(path, mode, compression, min_durable=120, backend=self.killed_writer_backend)
        with h5py.File(path, "r", swmr=self.caps.swmr) as f:  # the killed writer used this backend
            assert text(f["/RawData/Detector000/Data2D/CH00/EnlData00"].attrs["backend"]) == self.caps.name
        with self.reader(str(path)) as run:
            for name, n in durable.items():
                ch = run.channels[name]
                assert ch.shape[0] >= n, (name, ch.shape, n)
                got = ch[:n].reshape(n, -1)
                expected = np.arange(n) % 65536 if name == "Camera/image" else np.arange(n)
                np.testing.assert_array_equal(got, np.repeat(expected[:, None], got.shape[1], axis=1))
                np.testing.assert_array_equal(ch.timestamps[:n], np.arange(n, dtype=float))
