"""The writer thread: the only code that touches the file.

One thread per saver owns the backend (all HDF5 calls happen here, never on the
event loop). Each cycle it takes what producers queued, cuts it into chunks of
whole frames, has a thread pool assemble and compress each chunk (the GIL is
released while blosc2 works), and stores finished chunks in order by direct chunk
write.

At every flush it also stores each channel's partly filled chunk, so no accepted
frame waits longer than ``flush_interval`` to become durable. Such a chunk is stored
**uncompressed** (its filter skipped in the chunk's filter mask), at full size, and
every later version of it, up to and including the full one, is stored the same
way: HDF5 then rewrites it in place, over bytes that hold the same frames, instead
of freeing its space and allocating new space. That is what keeps the last flush's
frames intact when the process dies in the middle of the next one (a freed chunk at
the end of the file is handed back by HDF5 at once and overwritten), and what keeps
a slow channel's file from growing with every flush (under SWMR freed space is never
reused). Chunks filled between two flushes are compressed as usual.

A backend without direct chunk write (a service such as HSDS) gets the same chunks
of whole frames uncompressed, as rows (:meth:`~streamsave.backends.Backend.write_rows`):
consecutive chunks of a channel are joined into one request of at most the
backend's ``max_request_bytes``, a partly filled chunk's rows are simply written
again with the frames added since, and the backend compresses as the dataset's
``compression`` says.

It talks back to the event loop only through fire-and-forget wake-ups
(:class:`~streamsave._waker.LoopWaker`), and to producers only through their
channels' ``_writer_*`` methods, so a busy loop never slows it down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._channel import Channel, Entry
from ._compress import ChunkEncoder, filter_for
from ._errors import ConfigError, StorageError, StreamSaveError, WriterError
from ._events import ChannelCreated, FileOpened, Flushed, FramesWritten
from ._layout import JOURNAL_FRAMES, JOURNAL_TIMES, JOURNAL_WRITING, TIME_CHUNK, Layout, encode
from ._log import LogWriter
from ._scan_writer import ScanWriter
from ._stats import Timer

if TYPE_CHECKING:
    from ._control import Control
    from ._detector import Detector

from .backends import Backend
from .backends._registry import capabilities, check_saver

__all__ = ("Writer", "WriterHooks")

log = logging.getLogger(__name__)

Piece = tuple[Any, int]  # (frame or block, frames)
Payload = bytes | memoryview
# (stored bytes, buffer to recycle once they are written)
Encoded = tuple[Payload, npt.NDArray[Any] | None]
_SKIP_FIRST_FILTER = 1  # a chunk's filter mask: stored without the (only) filter


class WriterHooks:
    """What the writer tells its saver (called from the writer thread)."""

    def opened(self) -> None:
        raise NotImplementedError

    def failed(self, exc: BaseException) -> None:
        raise NotImplementedError

    def done(self, flushes: int) -> None:
        raise NotImplementedError


class _TimeAxis:
    """The channel's timestamps, stored a whole chunk at a time by direct chunk write
    (a per-batch dataset write costs more Python than the data chunk itself). The
    partly filled chunk is stored at each flush, in place (uncompressed, fixed size).
    The per-frame columns (frame numbers, metadata) are stored the same way."""

    __slots__ = ("buf", "chunk", "dirty", "grow", "index", "path")

    def __init__(self, path: str, chunk: int, dtype: npt.DTypeLike = np.float64, *, grow: bool = False) -> None:
        self.path = path
        self.chunk = chunk
        self.buf = np.zeros(chunk, dtype=dtype)
        #: extend the dataset itself before storing a full chunk (a column, resized with its
        #: frames only at flush, not at every batch: one set_extent call per column saved each time)
        self.grow = grow
        self.index = 0  # time chunk being filled
        self.dirty = False

    def put(self, backend: Backend, start: int, times: npt.NDArray[Any]) -> None:
        """Record ``times`` for frames ``start...`` (frames before this chunk are already stored)."""
        pos = start - self.index * self.chunk
        i = max(0, -pos)
        pos = max(0, pos)
        while i < len(times):
            take = min(len(times) - i, self.chunk - pos)
            self.buf[pos:pos + take] = times[i:i + take]
            pos += take
            i += take
            self.dirty = True
            if pos == self.chunk:
                if self.grow:
                    backend.resize(self.path, (self.index + 1) * self.chunk)
                backend.write_chunk(self.path, (self.index * self.chunk,), self.buf.data)
                self.index += 1
                pos = 0
                self.buf[:] = 0
                self.dirty = False

    def store(self, backend: Backend) -> None:
        """Store the partly filled chunk (at flush)."""
        if self.dirty:
            backend.write_chunk(self.path, (self.index * self.chunk,), self.buf.data)
            self.dirty = False


class _Stream:
    """The writer's state for one channel: the chunk being filled and buffers."""

    __slots__ = ("buffers", "channel", "columns", "dirty", "encoder", "extent", "extras", "index", "k", "m",
                 "pieces", "raw", "released", "reported_written", "rows", "stored_sizes", "tile_rows", "time_axis",
                 "times")

    def __init__(self, channel: Channel, encoder: ChunkEncoder, *, rows: bool = False) -> None:
        self.channel = channel
        self.encoder = encoder
        self.k = channel.chunk_frames
        #: the backend takes rows, not chunks: frames are stored whole, uncompressed by the engine
        self.rows = rows
        #: rows per tile when each frame is stored as several chunks, else 0
        self.tile_rows = channel.chunk_shape[1] if channel.chunk_shape[1:] != channel.stored_shape and not rows \
            else 0
        self.index = 0  # chunk being filled
        self.m = 0  # frames in it
        self.pieces: list[Piece] = []
        self.times: list[Any] = []
        self.dirty = False  # frames added since the chunk was last stored
        #: the chunk being filled was stored partly filled: every version of it is stored raw
        self.raw = False
        self.extent = 0  # dataset length
        self.buffers: list[npt.NDArray[Any]] = []
        self.stored_sizes: dict[int, int] = {}
        #: frames of a partly filled chunk whose room was given back when it was stored
        self.released: dict[int, int] = {}
        self.reported_written = 0
        self.time_axis = _TimeAxis(channel.paths.time, TIME_CHUNK)
        paths = channel.paths
        #: the per-frame columns' stores, in ``Columns.dtypes`` order, and their values for the chunk being filled
        self.columns = [_TimeAxis(path, TIME_CHUNK, dtype, grow=True) for path, dtype in zip(
            ((paths.numbers,) if paths.numbers else ()) + paths.metadata, channel._columns.dtypes, strict=True)]
        self.extras: list[Any] = []

    def column_paths(self) -> list[str]:
        return [col.path for col in self.columns]

    def buffer(self) -> npt.NDArray[Any]:
        try:
            return self.buffers.pop()
        except IndexError:
            ch = self.channel
            return np.empty((self.k, *ch.stored_shape), dtype=ch.dtype)


class _Job:
    """One chunk (or one tile of a frame) on its way to the file."""

    __slots__ = ("columns", "final", "frames", "future", "index", "mask", "stream", "tile", "times")

    def __init__(self, stream: _Stream, index: int, frames: int, times: npt.NDArray[np.float64],
                 future: Future[Encoded], *, final: bool, mask: int, tile: int = -1,
                 columns: list[npt.NDArray[Any]] | None = None) -> None:
        self.stream = stream
        #: the chunk's per-frame column values, one array per column (None: the channel has none)
        self.columns = columns
        self.index = index
        self.frames = frames
        self.times = times
        self.future = future
        #: the chunk's last version: its frames give their room back once stored
        self.final = final
        self.mask = mask
        #: tile number for frames stored as tiles (-1: a whole chunk); the last tile completes the frame
        self.tile = tile


def _assemble(stream: _Stream, pieces: list[Piece], frames: int, raw: bool, timer: Timer) -> Encoded:
    """Copy a chunk's frames into a reusable buffer and encode it (pool thread)."""
    started = time.perf_counter()
    result = _assemble_chunk(stream, pieces, frames, raw)
    timer.add(time.perf_counter() - started)
    return result


def _encode_tile(stream: _Stream, frame: Any, tile: int, timer: Timer) -> Encoded:
    """One tile (``tile_rows`` whole rows) of a frame larger than ``chunk_bytes``: a
    contiguous slice of the frame, encoded in place; a short last tile is padded."""
    started = time.perf_counter()
    ch = stream.channel
    rows = stream.tile_rows
    part = np.ascontiguousarray(frame[tile * rows:(tile + 1) * rows], dtype=ch.dtype)
    if part.shape[0] < rows:
        padded = np.zeros((rows, *ch.shape[1:]), dtype=ch.dtype)
        padded[:part.shape[0]] = part
        part = padded
    payload = stream.encoder.encode(part)
    timer.add(time.perf_counter() - started)
    return payload, None


def _assemble_chunk(stream: _Stream, pieces: list[Piece], frames: int, raw: bool) -> Encoded:
    if frames == stream.k and len(pieces) == 1 and not raw:
        whole = pieces[0][0]
        if isinstance(whole, np.ndarray) and whole.flags.c_contiguous and whole.dtype == stream.channel.dtype:
            # One frame (or one pushed block) is the whole chunk: encode it in place, no copy.
            # The frame stays referenced by the job until the chunk is written.
            return stream.encoder.encode(whole), None
    buf = stream.buffer()
    flat = buf.reshape((stream.k, *stream.channel.shape))
    pos = 0
    if all(n == 1 for _, n in pieces) and stream.channel.frame_nbytes <= 4096:
        flat[:frames] = [data for data, _ in pieces]
    else:
        for data, n in pieces:
            if n == 1:
                flat[pos] = data
            else:
                flat[pos:pos + n] = data
            pos += n
    if frames < stream.k:
        buf[frames:] = 0
    payload = stream.encoder.encode(buf, raw=raw)
    if raw or stream.encoder.compression is None:
        return payload, buf  # the buffer is the payload: recycle it after writing
    stream.buffers.append(buf)
    return payload, None


def _columns_arrays(extras: list[Any], dtypes: tuple[np.dtype[Any], ...]) -> list[npt.NDArray[Any]]:
    """A chunk's per-frame columns, one array per column, from the tuples of its pieces
    (scalars for a single frame, arrays for part of a block or batch)."""
    if not any(isinstance(e[0], np.ndarray) for e in extras):
        return [np.array(col, dtype=dt) for col, dt in zip(zip(*extras, strict=True), dtypes, strict=True)]
    return [np.concatenate([np.atleast_1d(np.asarray(e[i], dtype=dt)) for e in extras])
            for i, dt in enumerate(dtypes)]


def _times_array(times: list[Any]) -> npt.NDArray[np.float64]:
    if all(type(t) is float for t in times):
        return np.array(times, dtype=np.float64)
    return np.concatenate([np.atleast_1d(np.asarray(t, dtype=np.float64)) for t in times])


class Writer:
    """Runs in its own thread: :meth:`run` returns when the file is closed.

    :param control: the state shared with the saver and producers.
    :param hooks: what to tell the saver when the file is open, failed, closed.
    :param timers: ``encode``/``write``/``flush`` duration accumulators.
    :param subscribed: whether anyone listens to events (progress is skipped otherwise).
    """

    def __init__(self, control: Control, hooks: WriterHooks, timers: dict[str, Timer],
                 subscribed: Callable[[], bool]) -> None:
        self.control = control
        self.hooks = hooks
        self.config = control.config
        self.timers = timers
        self.subscribed = subscribed
        self.backend: Backend | None = None
        self.layout: Layout | None = None
        self.streams: list[_Stream] = []
        self.inflight: deque[_Job] = deque()
        self.pool = ThreadPoolExecutor(self.config.compress_threads, thread_name_prefix="streamsave-encode")
        self.swmr_started = False
        #: the backend has no direct chunk write: chunks are stored as rows (see the module docstring)
        self.rows = False
        #: the most bytes one write_rows call may carry
        self.max_request = 1 << 62
        self.aborted = False
        self.flushes = 0
        #: the channels (data paths) the journal has columns for, once it exists
        self.journal: list[str] | None = None
        #: the scans' channels (``streamsave._scan_writer``)
        self.scans = ScanWriter(self)
        self.log = LogWriter()

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        try:
            self.backend = self._open()
            self.layout = Layout(self.backend, title=self.config.title,
                                 compression=self.config.compression.name if self.config.compression else "none")
        except BaseException as exc:
            self.hooks.failed(_translate(exc, "create"))
            self._shutdown()
            return
        self.hooks.opened()
        self.control.publish(FileOpened(path=str(self.config.path)))
        try:
            self._main_loop()
            self._finish()
        except BaseException as exc:
            self.hooks.failed(_translate(exc, "write"))
        finally:
            self._shutdown()

    def _open(self) -> Backend:
        """Open the backend, refusing what it cannot do (it reads the capability flags).

        The backend's class was checked with the saver's options (before the file was
        created); a factory may return a backend that declares less, checked here."""
        cfg = self.config
        backend = cfg.open_backend()
        try:
            caps = capabilities(backend)
            check_saver(caps, swmr=cfg.swmr, compression=cfg.compression, chunk_bytes=cfg.chunk_bytes)
            self.rows = not caps.direct_chunk_write
            self.max_request = caps.max_request_bytes or self.max_request
        except ConfigError:
            backend.close()
            if cfg.mode != "w":  # the file did not exist before: leave no trace of the refusal
                with contextlib.suppress(OSError):
                    os.unlink(cfg.path)
            raise
        return backend

    def _shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        failed = self.control.failure is not None
        if self.backend is not None:  # only still open after a failure
            try:
                self.backend.abandon()
            except BaseException as exc:  # already failed: do not mask the first error
                log.debug("abandoning the file after a failure raised %r", exc)
        for ch in self.control.channels:
            ch._writer_finish(failed)
        for event in self.control.finish():
            self.control.waker.call(event.set)
        self.hooks.done(self.flushes)

    def _main_loop(self) -> None:
        control, cfg = self.control, self.config
        bell = control.doorbell
        next_flush = time.monotonic() + cfg.flush_interval
        next_progress = time.monotonic() + cfg.progress_interval
        while True:
            deadline = min(next_flush, next_progress) if self.subscribed() else next_flush
            bell.wait(max(0.0, deadline - time.monotonic()))
            bell.clear()
            self._apply_layout()
            closing, aborting = control.closing()
            if aborting:
                self._abort()
            backlog = False
            for stream in self.streams:
                backlog |= self._collect(stream, self.config.max_inflight * stream.k)
                if stream.m and stream.dirty and stream.channel._writer_starved():
                    # producers wait for room held by a partly filled chunk (a queue smaller than
                    # a chunk or two): store it now, uncompressed, to give that room back
                    self._seal(stream, final=False)
            self._write_ready(wait=False)
            backlog |= self.scans.collect()
            if backlog:  # more is queued than one pipeline's worth: come straight back for it
                bell.set()
            now = time.monotonic()
            waiters = control.take_flush_waiters()
            if closing or waiters or now >= next_flush:
                try:
                    self._flush()
                except BaseException as exc:  # recorded before the waiters wake, so they raise it
                    failure = _translate(exc, "write")
                    control.fail(failure)
                    if failure is exc:
                        raise
                    raise failure from exc
                finally:  # waiters learn the outcome (success, or the failure) either way
                    for event in waiters:
                        control.waker.call(event.set)
                next_flush = time.monotonic() + cfg.flush_interval
                if closing and not any(s.channel._writer_queued() for s in self.streams):
                    self._progress()  # channels refuse frames before closing is seen: nothing more comes
                    return
            if now >= next_progress:
                self._progress()
                next_progress = now + cfg.progress_interval

    # ------------------------------------------------------------------ layout
    def _apply_layout(self) -> None:
        assert self.layout is not None and self.backend is not None
        items, frozen = self.control.take_layout()
        for kind, obj in items:
            if kind.startswith("scan"):
                self.scans.apply(kind, obj)
                continue
            if kind == "detector":
                det: Detector = obj
                self.layout.add_detector(det.path, det.name, det._settings_json)
                continue
            ch: Channel = obj
            self.layout.add_channel(
                ch.paths.group.rsplit("/", 2)[0], ch.detector, ch.paths, name=ch.name, shape=ch.shape,
                dtype=ch.dtype, chunk_shape=ch.chunk_shape,
                filter=None if self.rows else filter_for(self.config.compression),
                units=ch.units, label=ch.label, axes=ch.axes, compression=self.config.compression,
                metadata=ch._columns.metadata)
            encoder = ChunkEncoder(None if self.rows else self.config.compression, ch.dtype.itemsize)
            self.streams.append(_Stream(ch, encoder, rows=self.rows))
            self.control.publish(ChannelCreated(
                channel=ch.full_name, path=str(self.config.path), dataset=ch.paths.data, time_axis=ch.paths.time,
                frame_shape=ch.shape, dtype=ch.dtype.name, chunk_shape=ch.chunk_shape))
        if self.journal is None and frozen:
            self.journal = [s.channel.paths.data for s in self.streams]
            self.layout.add_journal(self.journal)
        if not self.swmr_started and self.config.swmr and frozen:
            self.backend.start_swmr()
            self.swmr_started = True

    # ------------------------------------------------------------------ chunks
    def _collect(self, stream: _Stream, limit: int) -> bool:
        """Move up to ``limit`` queued frames into chunks. Returns whether frames are
        left queued."""
        k = stream.k
        entries: list[Entry] = stream.channel._writer_take(max(1, limit - stream.m))
        for data, ts, n, cols in entries:
            if self.aborted:  # what was taken is dropped with the rest (counted when the writer ends)
                break
            if stream.tile_rows:
                for j in range(n):
                    frame, t = (data, ts) if type(ts) is float else (data[j], float(ts[j]))
                    one = None if cols is None else cols if type(ts) is float else tuple(c[j] for c in cols)
                    self._submit_tiles(stream, frame, t, one)
                continue
            start = 0
            while start < n and not self.aborted:
                take = min(n - start, k - stream.m)
                if type(ts) is float:  # a single pushed frame (a block of one has an array of times)
                    stream.pieces.append((data, 1))
                    stream.times.append(ts)
                    if cols is not None:
                        stream.extras.append(cols)
                elif take == 1:  # a single frame cut from a block: store it as one
                    stream.pieces.append((data[start], 1))
                    stream.times.append(float(ts[start]))
                    if cols is not None:
                        stream.extras.append(tuple(c[start] for c in cols))
                else:
                    stream.pieces.append((data[start:start + take], take))
                    stream.times.append(ts[start:start + take])
                    if cols is not None:
                        stream.extras.append(tuple(c[start:start + take] for c in cols))
                stream.m += take
                start += take
                stream.dirty = True
                if stream.m == k:
                    self._seal(stream, final=True)
        return stream.channel._writer_queued() > 0

    def _seal(self, stream: _Stream, *, final: bool) -> None:
        """Submit the chunk being filled for encoding; ``final`` when it is full."""
        if self.aborted:
            return
        pieces = stream.pieces if final else list(stream.pieces)
        times = _times_array(stream.times)
        columns = _columns_arrays(stream.extras, stream.channel._columns.dtypes) if stream.extras else None
        raw = (stream.raw or not final) and stream.encoder.compression is not None
        future = self.pool.submit(_assemble, stream, pieces, stream.m, raw, self.timers["encode"])
        future.add_done_callback(self._encoded)
        self.inflight.append(_Job(stream, stream.index, stream.m, times, future, final=final,
                                  mask=_SKIP_FIRST_FILTER if raw else 0, columns=columns))
        stream.dirty = False
        if final:
            stream.index += 1
            stream.m = 0
            stream.pieces = []
            stream.times = []
            stream.extras = []
            stream.raw = False
        else:
            stream.raw = True
        self._wait_for_room()

    def _submit_tiles(self, stream: _Stream, frame: Any, timestamp: float, cols: Any = None) -> None:
        """A frame larger than ``chunk_bytes``: one job per tile, in order."""
        if self.aborted:
            return
        tiles = -(-stream.channel.shape[0] // stream.tile_rows)
        times = np.array([timestamp])
        columns = None if cols is None else _columns_arrays([cols], stream.channel._columns.dtypes)
        for tile in range(tiles):
            future = self.pool.submit(_encode_tile, stream, frame, tile, self.timers["encode"])
            future.add_done_callback(self._encoded)
            self.inflight.append(_Job(stream, stream.index, 1, times, future, final=tile == tiles - 1, mask=0,
                                      tile=tile, columns=columns))
            self._wait_for_room()
        stream.index += 1

    def _encoded(self, _: Future[Encoded]) -> None:
        """A chunk is ready to store (pool thread): wake the writer, whose producers may
        be waiting for the room that storing it gives back."""
        self.control.ring()

    def _wait_for_room(self) -> None:
        if len(self.inflight) >= self.config.max_inflight:
            self._write_ready(wait=True, keep=self.config.max_inflight // 2)

    def _write_ready(self, *, wait: bool, keep: int = 0) -> None:
        """Store finished chunks in submission order; with ``wait``, until at most
        ``keep`` remain in flight."""
        done: list[tuple[_Job, Encoded]] = []
        inflight = self.inflight
        while inflight and (inflight[0].future.done() or (wait and len(inflight) > keep)):
            job = inflight.popleft()
            done.append((job, job.future.result()))
        if done:
            started = time.perf_counter()
            self._store(done)
            self.timers["write"].add(time.perf_counter() - started)

    def _store(self, done: list[tuple[_Job, Encoded]]) -> None:
        backend = self.backend
        assert backend is not None
        ends: dict[_Stream, int] = {}
        for job, _ in done:
            end = job.index * job.stream.k + job.frames
            if end > ends.get(job.stream, job.stream.extent):
                ends[job.stream] = end
        for stream, end in ends.items():
            backend.resize(stream.channel.paths.data, end)
            backend.resize(stream.channel.paths.time, end)
            stream.extent = end  # the columns follow at flush (and grow by whole chunks before)
            if self.rows:  # ... except as rows, written with their frames
                for col in stream.columns:
                    backend.resize(col.path, end)
        if self.rows:
            self._store_rows(backend, done)
            return
        for i, (job, (payload, buf)) in enumerate(done):
            if self._aborting():  # an aborted close ran out of time: store nothing more
                self._drop_jobs([j for j, _ in done[i:]])
                return
            self._store_one(backend, job, payload)
            if buf is not None:
                job.stream.buffers.append(buf)

    def _store_one(self, backend: Backend, job: _Job, payload: Payload) -> None:
        stream = job.stream
        ch = stream.channel
        start = job.index * stream.k
        size = len(payload) if isinstance(payload, bytes) else payload.nbytes
        if job.tile >= 0:  # a tile of a frame: written once; the frame is complete with its last tile
            backend.write_chunk(ch.paths.data, (start, job.tile * stream.tile_rows) + (0,) * (len(ch.shape) - 1),
                                payload, job.mask)
            if not job.final:
                ch._writer_stored(0, 0.0, size, 0)
                return
            delta, released = size, 0
        else:
            backend.write_chunk(ch.paths.data, (start,) + (0,) * len(ch.stored_shape), payload, job.mask)
            delta = size - stream.stored_sizes.pop(job.index, 0)  # a partly filled version is replaced
            released = stream.released.pop(job.index, 0)
            if not job.final:
                stream.stored_sizes[job.index] = size
                stream.released[job.index] = job.frames
        stream.time_axis.put(backend, start, job.times)
        if job.columns is not None:
            for col, values in zip(stream.columns, job.columns, strict=True):
                col.put(backend, start, values)
        # stored frames give their room back (the writer keeps those of a partly filled chunk
        # for its next version: at most one chunk per channel beyond the queue)
        ch._writer_stored(start + job.frames, float(job.times[-1]), delta, job.frames - released)

    def _store_rows(self, backend: Backend, done: list[tuple[_Job, Encoded]]) -> None:
        """Store chunks as rows: each run of consecutive frames of one channel, up to
        ``max_request`` bytes, in one request (and its timestamps in another)."""
        runs: list[list[tuple[_Job, npt.NDArray[Any], npt.NDArray[Any] | None]]] = []
        end = -1
        size = 0
        for job, (payload, buf) in done:
            stream = job.stream
            values = np.frombuffer(payload, dtype=stream.channel.dtype).reshape(
                (-1, *stream.channel.stored_shape))[:job.frames]
            start = job.index * stream.k
            if not runs or runs[-1][0][0].stream is not stream or start != end or size + values.nbytes > \
                    self.max_request:
                runs.append([])
                size = 0
            runs[-1].append((job, values, buf))
            end = start + job.frames
            size += values.nbytes
        for i, run in enumerate(runs):
            if self._aborting():  # an aborted close ran out of time: store nothing more
                self._drop_jobs([job for later in runs[i:] for job, _, _ in later])
                return
            self._store_run(backend, run)

    def _store_run(self, backend: Backend, run: list[tuple[_Job, npt.NDArray[Any], npt.NDArray[Any] | None]]) -> None:
        first = run[0][0]
        stream = first.stream
        ch = stream.channel
        start = first.index * stream.k
        values = run[0][1] if len(run) == 1 else np.concatenate([v for _, v, _ in run])
        times = first.times if len(run) == 1 else np.concatenate([job.times for job, _, _ in run])
        backend.write_rows(ch.paths.data, start, values)
        backend.write_rows(ch.paths.time, start, times)
        if first.columns is not None:  # frame numbers, metadata: the same rows
            for k, col in enumerate(stream.columns):
                column = first.columns[k] if len(run) == 1 else np.concatenate(
                    [job.columns[k] for job, _, _ in run if job.columns is not None])
                backend.write_rows(col.path, start, column)
        for job, part, buf in run:
            delta = part.nbytes - stream.stored_sizes.pop(job.index, 0)  # a partly filled version is replaced
            released = stream.released.pop(job.index, 0)
            if not job.final:
                stream.stored_sizes[job.index] = part.nbytes
                stream.released[job.index] = job.frames
            if buf is not None:
                stream.buffers.append(buf)
            job_start = job.index * stream.k
            ch._writer_stored(job_start + job.frames, float(job.times[-1]), delta, job.frames - released)

    def _drop_jobs(self, jobs: list[_Job]) -> None:
        """Forget chunks that will not be stored, and shrink the datasets back to the
        frames that are (the extents were set for the whole batch)."""
        for job in jobs:
            job.future.cancel()
        self._abort()
        assert self.backend is not None
        for stream in {job.stream for job in jobs}:
            written = stream.channel.statistics().frames_written
            if stream.extent > written:
                self.backend.resize(stream.channel.paths.data, written)
                self.backend.resize(stream.channel.paths.time, written)
                for col in stream.columns:
                    self.backend.resize(col.path, written)
                stream.extent = written

    def _aborting(self) -> bool:
        if not self.aborted and self.control.closing()[1]:
            self._abort()
        return self.aborted

    def _abort(self) -> None:
        """``close_timeout`` ran out on an aborted close: drop what is queued, in the
        pipeline and in chunks being filled (counted as dropped when the writer ends);
        from now on only the close itself touches the file."""
        self.aborted = True
        for job in self.inflight:
            job.future.cancel()
        self.inflight.clear()
        for stream in self.streams:
            stream.channel._writer_discard_queued()
            stream.pieces, stream.times, stream.m, stream.dirty = [], [], 0, False
            stream.extras = []
        self.scans.abort()

    def _flush(self) -> None:
        backend = self.backend
        assert backend is not None
        self._apply_layout()
        for stream in self.streams:  # every frame queued before the flush was requested
            mark = stream.channel._writer_flush_mark()
            while stream.channel._writer_left() < mark and not self.aborted:
                self._collect(stream, 1 << 62)
            if stream.m and stream.dirty:
                self._seal(stream, final=False)
        self._write_ready(wait=True)
        for stream in self.streams:
            stream.time_axis.store(backend)
            for col in stream.columns:
                backend.resize(col.path, stream.extent)
                col.store(backend)
        self.scans.flush()
        if self.log.store(backend, self.control.log.take()):  # messages posted since the last flush
            self.log.mark_durable(backend)
        if self.journal:  # the one row: what this flush makes durable
            row = [s.channel.statistics().frames_written for s in self.streams[:len(self.journal)]]
            backend.write_rows(JOURNAL_FRAMES, 0, np.array([row], dtype=np.int64))
            backend.write_rows(JOURNAL_TIMES, 0, np.array([time.time()]))
        if not self.swmr_started:  # channels the journal does not cover (added late, plain files)
            for stream in self.streams[len(self.journal or ()):]:
                self._write_final_attrs(stream)
        started = time.perf_counter()
        backend.flush(sync=self.config.fsync == "flush")
        self.timers["flush"].add(time.perf_counter() - started)
        self.flushes += 1
        now = time.time()
        durable = {s.channel.full_name: s.channel._writer_flushed(now) for s in self.streams}
        durable.update(self.scans.flushed(now))
        if self.subscribed():
            self.control.publish(Flushed(durable=durable, seconds=time.perf_counter() - started))

    def _progress(self) -> None:
        """Publish what changed since the last tick: writes, drops, backpressure."""
        subscribed = self.subscribed()
        self.scans.tick(subscribed)
        for stream in self.streams:
            ch = stream.channel
            ch._writer_tick()
            if not subscribed:
                continue
            st = ch.statistics()
            if st.frames_written != stream.reported_written:
                self.control.publish(FramesWritten.since(st, stream.reported_written))
                stream.reported_written = st.frames_written

    def _write_final_attrs(self, stream: _Stream, *, closing: bool = False) -> None:
        assert self.backend is not None
        st = stream.channel.statistics()
        # at close every accepted frame not written is dropped (by policy, or an aborted close)
        dropped = st.frames_pushed - st.frames_written if closing else st.frames_dropped
        attrs = Layout.final_attrs(stream.channel.shape, st.frames_written, dropped, st.frames_rejected)
        self.backend.set_attrs(stream.channel.paths.data, attrs)
        self.backend.set_attrs(stream.channel.paths.time, Layout.time_attrs(st.frames_written))
        if stream.channel.paths.numbers is not None:
            first, last = stream.channel._writer_number_range()
            self.backend.set_attrs(stream.channel.paths.numbers,
                                   {"first_frame_number": np.int64(first), "last_frame_number": np.int64(last)})

    def _finish(self) -> None:
        """Final attributes, removal of channels that never stored a frame (PyMoDAQ's
        loader cannot load an empty one), then close (and fsync) the file.

        The final attributes are rewritten in place, in SWMR mode too (every one of
        them exists from the start), so a writer killed while closing leaves a file
        SWMR readers still open. Only when empty channels must be removed, which SWMR
        forbids, is the file reopened without SWMR for that.
        """
        backend = self.backend
        assert backend is not None and self.layout is not None
        empty = [s.channel.paths.group for s in self.streams if s.channel.statistics().frames_written == 0]
        for stream in self.streams:
            if stream.channel.statistics().frames_written:
                self._write_final_attrs(stream, closing=True)
        scans_empty = self.scans.finish()
        if self.log.store(backend, self.control.log.close()):  # messages posted during the close
            self.log.mark_durable(backend)
        self.log.write_logger(backend, encode)  # PyMoDAQ's copy (variable-length: not before SWMR ends)
        if self.journal is not None:  # readers following the file stop at this
            backend.write_rows(JOURNAL_WRITING, 0, np.zeros(1, dtype=np.uint8))
        if empty or scans_empty:
            if self.swmr_started:
                backend.close()
                backend = self.backend = self.config.open_backend(mode="r+")
            if empty:
                self.layout.drop_empty(backend, empty)
            self.scans.drop(backend, scans_empty)
        self.backend = None
        backend.close(fsync=self.config.fsync != "never")


def _translate(exc: BaseException, action: str) -> BaseException:
    if isinstance(exc, StreamSaveError):
        return exc
    if isinstance(exc, OSError):
        err = StorageError(f"could not {action} the file: {exc}")
        err.errno = exc.errno
        err.__cause__ = exc
        return err
    if isinstance(exc, Exception):
        err2 = WriterError(f"the writer failed while trying to {action} the file: {exc!r}")
        err2.__cause__ = exc
        return err2
    return exc
