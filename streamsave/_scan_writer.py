"""The writer's side of scans: frames placed by point into chunks, stored by direct
chunk write (runs on the writer thread, see :mod:`streamsave._writer`).

A grid channel's chunk holds ``k`` points along the scan's last axis (one point when
a frame fills ``chunk_bytes``, or when the scan may ``overwrite`` points). A chunk
is compressed in the writer's pool once every point in it is measured; a chunk still
missing points at a flush is stored as it is (the missing points at the fill value),
uncompressed, and every later version of it too, so each replaces the last one in
place (the rule of continuous channels, ``docs/decisions/0006``). Adaptive channels
fill their chunks in arrival order, like continuous ones, and grow at every chunk.

Timestamps (and an adaptive scan's positions) are kept in memory and written at each
flush: a grid's as the rows of its first axis that changed, an adaptive scan's as
the points added since the last flush.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._compress import ChunkEncoder, filter_for
from ._events import ChannelCreated, FramesWritten
from ._layout import encode
from ._scan_layout import add_scan, add_scan_channel, add_scan_detector, position_paths
from ._stats import Timer
from .backends import Backend

if TYPE_CHECKING:
    from ._scan import Scan, ScanChannel, ScanDetector
    from ._writer import Writer

__all__ = ("ScanWriter",)

_SKIP_FIRST_FILTER = 1


class _Chunk:
    """A chunk being filled: the frames placed in it (by reference, copied into a buffer
    only when the chunk is stored), which of its points hold a frame."""

    __slots__ = ("base", "count", "filled", "new", "pieces", "points", "raw")

    def __init__(self, k: int, points: int) -> None:
        #: the chunk as last stored (partly filled), or ``None``: then its points not in
        #: ``pieces`` hold the fill value
        self.base: npt.NDArray[Any] | None = None
        self.pieces: list[tuple[int, Any]] = []  # (point in the chunk, frame) since ``base``
        self.filled = np.zeros(k, dtype=bool)
        self.count = 0  # points that hold a frame
        self.new = 0  # frames placed since the chunk was last stored
        self.points = points  # points it must hold to be complete
        self.raw = False  # stored partly filled once: every version is stored raw

    def assemble(self, stream: _Stream) -> npt.NDArray[Any]:
        """The chunk's buffer with every frame placed so far (which it keeps as ``base``:
        the frames' room is given back once it is stored, so producers may reuse them)."""
        ch = stream.channel
        buf = self.base
        if buf is None:
            shape = (stream.k, *ch.point_shape)
            complete = self.count == stream.k and len(self.pieces) == stream.k
            buf = np.empty(shape, dtype=ch.dtype) if complete else np.full(shape, ch.fill_value, dtype=ch.dtype)
        for within, data in self.pieces:
            buf[within] = data
        self.pieces = []
        self.base = buf
        return buf


class _Stream:
    """One scan channel on the writer's side."""

    def __init__(self, channel: ScanChannel, encoder: ChunkEncoder) -> None:
        self.channel = channel
        self.encoder = encoder
        scan = channel.scan
        self.adaptive = scan.adaptive
        self.k = channel.chunk_frames
        self.last = 1 if scan.adaptive else scan.shape[-1]
        self.row_chunks = -(-self.last // self.k)
        self.open: dict[int, _Chunk] = {}  # least recently filled first
        #: chunks missing points whose buffer was let go (stored raw; read back when a point comes)
        self.evicted: dict[int, _Chunk] = {}
        #: the most chunk buffers kept open: as many bytes as the queue holds (at least 4 chunks)
        chunk_nbytes = self.k * max(1, channel.frame_nbytes)
        self.max_open = max(4, channel.queue_size * max(1, channel.frame_nbytes) // chunk_nbytes)
        self.inflight: deque[tuple[int, Future[bytes | memoryview], int, int]] = deque()  # key, bytes, frames, mask
        self.sizes: dict[int, int] = {}
        self.written = 0
        self.reported = 0  # frames_written in the last FramesWritten event
        self.extent = 0
        self.last_time = 0.0
        self.count = 0  # adaptive: points taken so far
        self.flushed = 0  # adaptive: points whose positions and times are in the file
        self.times: list[float] = []
        self.positions: list[npt.NDArray[np.float64]] = []
        self.grid_times = None if scan.adaptive else np.full(scan.shape, np.nan)
        self.dirty_rows: tuple[int, int] | None = None

    def offset(self, key: int) -> tuple[int, ...]:
        tail = (0,) * len(self.channel.point_shape)
        if self.adaptive:
            return (key * self.k, *tail)
        row, c = divmod(key, self.row_chunks)
        lead = np.unravel_index(row, self.channel.scan.shape[:-1]) if len(self.channel.scan.shape) > 1 else ()
        return (*(int(i) for i in lead), c * self.k, *tail)

    def chunk(self, key: int, backend: Backend) -> _Chunk:
        chunk = self.open.pop(key, None)
        if chunk is None:
            ch = self.channel
            chunk = self.evicted.pop(key, None)
            if chunk is not None:  # stored raw when it was let go: its bytes are the buffer
                raw = backend.read_chunk(ch.paths.data, self.offset(key))
                chunk.base = np.frombuffer(raw, dtype=ch.dtype).reshape((self.k, *ch.point_shape)).copy()
            else:
                points = self.k if self.adaptive else min(self.k, self.last - (key % self.row_chunks) * self.k)
                chunk = _Chunk(self.k, points)
        self.open[key] = chunk  # the most recently filled last
        return chunk


def _encode(stream: _Stream, chunk: _Chunk, timer: Timer) -> bytes | memoryview:
    """Assemble a complete chunk and encode it (pool thread; the chunk is no longer the
    writer's to change). One frame that is the whole chunk is encoded in place."""
    started = time.perf_counter()
    ch = stream.channel
    whole = chunk.pieces[0][1] if chunk.base is None and len(chunk.pieces) == 1 and stream.k == 1 else None
    if isinstance(whole, np.ndarray) and whole.dtype == ch.dtype and whole.flags.c_contiguous and \
            whole.shape == ch.point_shape:
        payload = stream.encoder.encode(whole[None], raw=chunk.raw)
    else:
        payload = stream.encoder.encode(chunk.assemble(stream), raw=chunk.raw)
    timer.add(time.perf_counter() - started)
    return payload


class ScanWriter:
    """Everything the writer does for scans; every method runs on the writer thread."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.streams: list[_Stream] = []
        self.scans: list[Scan] = []
        self._dims: set[str] = set()

    @property
    def backend(self) -> Backend:
        backend = self.writer.backend
        assert backend is not None
        return backend

    # ------------------------------------------------------------------ layout
    def apply(self, kind: str, obj: Any) -> None:
        """Create a declared scan, scan detector or scan channel in the file."""
        config = self.writer.config
        if kind == "scan":
            self.scans.append(obj)
            add_scan(self.backend, obj)
        elif kind == "scan_detector":
            detector: ScanDetector = obj
            add_scan_detector(self.backend, detector)
        else:
            ch: ScanChannel = obj
            add_scan_channel(self.backend, ch, filter=filter_for(config.compression),
                             compression=config.compression.name if config.compression else "none",
                             created_dims=self._dims)
            self.streams.append(_Stream(ch, ChunkEncoder(config.compression, ch.dtype.itemsize)))
            self.writer.control.publish(ChannelCreated(
                channel=ch.full_name, path=str(config.path), dataset=ch.paths.data, time_axis=ch.paths.time,
                frame_shape=ch.shape, dtype=ch.dtype.name, chunk_shape=ch.chunk_shape))

    # ------------------------------------------------------------------ frames
    def collect(self, limit: int | None = None) -> bool:
        """Place what producers queued into chunks; returns whether frames are left queued."""
        backlog = False
        for stream in self.streams:
            self._collect(stream, limit or self.writer.config.max_inflight * stream.k)
            ch = stream.channel
            backlog |= ch._writer_queued() > 0
            if ch._writer_starved() and any(c.new for c in stream.open.values()):
                # producers wait for room held by chunks still missing points: store them as they are
                self._store_partial(stream)
            self._write_ready(stream, wait=False)
        return backlog

    def _collect(self, stream: _Stream, limit: int) -> None:
        ch = stream.channel
        for (data, slot, position), ts, _, _columns in ch._writer_take(limit):
            if self.writer.aborted:
                return
            if stream.adaptive:
                slot = stream.count
                stream.count += 1
                stream.times.append(float(ts))
                stream.positions.append(position)
                key, within = divmod(slot, stream.k)
            else:
                row, col = divmod(slot, stream.last)
                c, within = divmod(col, stream.k)
                key = row * stream.row_chunks + c
                assert stream.grid_times is not None
                point = np.unravel_index(slot, ch.scan.shape)
                stream.grid_times[point] = ts
                first = int(point[0])
                lo, hi = stream.dirty_rows or (first, first + 1)
                stream.dirty_rows = (min(lo, first), max(hi, first + 1))
            chunk = stream.chunk(key, self.backend)
            chunk.pieces.append((within, data))
            if not chunk.filled[within]:
                chunk.filled[within] = True
                chunk.count += 1
            chunk.new += 1
            stream.last_time = float(ts)
            if chunk.count == chunk.points:
                del stream.open[key]
                self._submit(stream, key, chunk)
            elif len(stream.open) > stream.max_open:
                self._evict(stream)

    def _evict(self, stream: _Stream) -> None:
        """Too many chunks wait for points (points in a random order): store the least
        recently filled one as it is, raw, and let its buffer go (read back when a point
        comes). Without a backend that reads chunks back, keep them all."""
        key, chunk = next(iter(stream.open.items()))
        if type(self.backend).read_chunk is Backend.read_chunk:
            return
        if chunk.new:
            self._store_raw(stream, key, chunk)
        del stream.open[key]
        stream.evicted[key] = chunk
        chunk.base = None  # the memory goes; the bytes are in the file

    def _submit(self, stream: _Stream, key: int, chunk: _Chunk) -> None:
        """A complete chunk: assembled and encoded in the pool, stored in order."""
        mask = _SKIP_FIRST_FILTER if chunk.raw and stream.encoder.compression is not None else 0
        future = self.writer.pool.submit(_encode, stream, chunk, self.writer.timers["encode"])
        future.add_done_callback(lambda _: self.writer.control.ring())
        stream.inflight.append((key, future, chunk.new, mask))
        if len(stream.inflight) >= self.writer.config.max_inflight:
            self._write_ready(stream, wait=True, keep=self.writer.config.max_inflight // 2)

    def _write_ready(self, stream: _Stream, *, wait: bool, keep: int = 0) -> None:
        while stream.inflight and (stream.inflight[0][1].done() or (wait and len(stream.inflight) > keep)):
            key, future, frames, mask = stream.inflight.popleft()
            self._store(stream, key, future.result(), mask, frames, final=True)

    def _store(self, stream: _Stream, key: int, payload: bytes | memoryview, mask: int, frames: int, *,
               final: bool) -> None:
        if self.writer.aborted:
            return
        started = time.perf_counter()
        backend = self.backend
        ch = stream.channel
        if stream.adaptive:
            end = min(stream.count, (key + 1) * stream.k)
            if end > stream.extent:
                backend.resize(ch.paths.data, end)
                stream.extent = end
        backend.write_chunk(ch.paths.data, stream.offset(key), payload, mask)
        size = len(payload) if isinstance(payload, bytes) else payload.nbytes
        delta = size - stream.sizes.pop(key, 0)
        if not final:
            stream.sizes[key] = size
        stream.written += frames
        ch._writer_stored(stream.written, stream.last_time, delta, frames)
        self.writer.timers["write"].add(time.perf_counter() - started)

    def _store_partial(self, stream: _Stream) -> None:
        """Store every chunk still missing points, as it is (uncompressed, in place)."""
        for key, chunk in list(stream.open.items()):
            if chunk.new:
                self._store_raw(stream, key, chunk)

    def _store_raw(self, stream: _Stream, key: int, chunk: _Chunk) -> None:
        """Store a chunk still missing points as it is: raw, at full size, in place."""
        chunk.raw = True
        mask = _SKIP_FIRST_FILTER if stream.encoder.compression is not None else 0
        self._store(stream, key, chunk.assemble(stream).data.cast("B"), mask, chunk.new, final=False)
        chunk.new = 0

    # ------------------------------------------------------------------ flush and close
    def flush(self) -> None:
        """Store every frame queued before the flush, and the timestamps and positions."""
        backend = self.backend
        for stream in self.streams:
            ch = stream.channel
            mark = ch._writer_flush_mark()
            while ch._writer_left() < mark and not self.writer.aborted:
                self._collect(stream, 1 << 62)
            self._write_ready(stream, wait=True)
            self._store_partial(stream)
            if self.writer.aborted:
                continue
            if stream.adaptive:
                self._flush_positions(backend, stream)
            elif stream.dirty_rows is not None:
                assert stream.grid_times is not None
                lo, hi = stream.dirty_rows
                backend.write_rows(ch.paths.time, lo, stream.grid_times[lo:hi])
                stream.dirty_rows = None

    def _flush_positions(self, backend: Backend, stream: _Stream) -> None:
        n, done = stream.count, stream.flushed
        if n == done:
            return
        ch = stream.channel
        if n > stream.extent:
            backend.resize(ch.paths.data, n)
            stream.extent = n
        backend.resize(ch.paths.time, n)
        backend.write_rows(ch.paths.time, done, np.array(stream.times[done:n], dtype=np.float64))
        block = np.array(stream.positions[done:n], dtype=np.float64)
        for j, path in enumerate(position_paths(ch)):
            backend.resize(path, n)
            backend.write_rows(path, done, np.ascontiguousarray(block[:, j]))
        stream.flushed = n

    def flushed(self, now: float) -> dict[str, int]:
        """The file was flushed: what was written is durable."""
        return {s.channel.full_name: s.channel._writer_flushed(now) for s in self.streams}

    def tick(self, subscribed: bool) -> None:
        """The writer's periodic tick: backpressure and drop reports, and progress events."""
        for stream in self.streams:
            ch = stream.channel
            ch._writer_tick()
            if not subscribed:
                continue
            st = ch.statistics()
            if st.frames_written != stream.reported:
                self.writer.control.publish(FramesWritten.since(st, stream.reported))
                stream.reported = st.frames_written

    def abort(self) -> None:
        """An aborted close ran out of time: drop what is queued and what waits in chunks."""
        for stream in self.streams:
            for _, future, _, _ in stream.inflight:
                future.cancel()
            stream.inflight.clear()
            stream.open.clear()
            stream.channel._writer_discard_queued()

    def finish(self) -> list[str]:
        """Final attributes (sizes, ``scan_done``); returns the groups of adaptive
        channels that never stored a point, to be removed (PyMoDAQ's loader fails on
        an empty dataset)."""
        backend = self.backend
        empty = []
        for stream in self.streams:
            ch = stream.channel
            st = ch.statistics()
            attrs: dict[str, Any] = {"frames_rejected": encode(st.frames_rejected)}
            if stream.adaptive:
                if stream.flushed == 0:
                    empty.append(ch.paths.group)
                    continue
                attrs["shape"] = encode((stream.flushed, *ch.point_shape))
                for path in position_paths(ch):
                    backend.set_attrs(path, {"size": encode(stream.flushed)})
            backend.set_attrs(ch.paths.data, attrs)
        for scan in self.scans:
            backend.set_attrs(scan.path, {"scan_done": encode(True)})
        return empty

    @staticmethod
    def drop(backend: Backend, groups: list[str]) -> None:
        """Remove empty adaptive channel groups (the file is open without SWMR)."""
        for group in groups:
            backend.delete(group)
