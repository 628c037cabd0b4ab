"""The writer thread: the only code that touches the file.

One thread per saver owns the backend (all HDF5 calls happen here, never on the
event loop). Each cycle it takes what producers queued, cuts it into chunks of
whole frames, has a thread pool assemble and compress each chunk (the GIL is
released while blosc2 works), and stores finished chunks in order by direct chunk
write. At every flush it also stores the partly filled chunk of each channel, so no
accepted frame waits longer than ``flush_interval`` to become durable; the chunk is
stored again, complete, once it fills.

It talks back to the event loop only through fire-and-forget wake-ups
(:class:`~streamsave._waker.LoopWaker`), so a busy loop never slows it down.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._channel import Channel, Entry
from ._compress import ChunkEncoder, filter_for
from ._errors import StorageError, WriterError
from ._events import ChannelCreated, FileOpened, Flushed, FramesWritten
from ._layout import JOURNAL_FRAMES, JOURNAL_TIMES, TIME_CHUNK, Layout
from ._stats import Timer

if TYPE_CHECKING:
    from ._saver import Saver

from .backends import Backend

__all__ = ("Writer",)

log = logging.getLogger(__name__)

Piece = tuple[Any, int]  # (frame or block, frames)
Payload = bytes | memoryview
# (stored bytes of each tile of the chunk, buffer to recycle once they are written)
Encoded = tuple[list[Payload], npt.NDArray[Any] | None]


class _TimeAxis:
    """The channel's timestamps, stored a whole chunk at a time by direct chunk write
    (a per-batch dataset write costs more Python than the data chunk itself)."""

    __slots__ = ("buf", "chunk", "dirty", "filled", "index", "path")

    def __init__(self, path: str, chunk: int) -> None:
        self.path = path
        self.chunk = chunk
        self.buf = np.zeros(chunk, dtype=np.float64)
        self.index = 0  # time chunk being filled
        self.filled = 0
        self.dirty = False

    def put(self, backend: Backend, start: int, times: npt.NDArray[np.float64]) -> None:
        """Record ``times`` for frames ``start...`` (frames before this chunk are already stored)."""
        pos = start - self.index * self.chunk
        i = max(0, -pos)
        pos = max(0, pos)
        while i < len(times):
            take = min(len(times) - i, self.chunk - pos)
            self.buf[pos:pos + take] = times[i:i + take]
            pos += take
            i += take
            self.filled = max(self.filled, pos)
            self.dirty = True
            if pos == self.chunk:
                backend.write_chunk(self.path, (self.index * self.chunk,), self.buf.data)
                self.index += 1
                self.filled = pos = 0
                self.buf[:] = 0
                self.dirty = False

    def store(self, backend: Backend) -> None:
        """Store the partly filled chunk (at flush)."""
        if self.dirty:
            backend.write_chunk(self.path, (self.index * self.chunk,), self.buf.data)
            self.dirty = False


class _Stream:
    """The writer's state for one channel: the chunk being filled and buffers."""

    __slots__ = ("buffers", "channel", "dirty", "encoder", "extent", "index", "k", "m", "pieces",
                 "reported_written", "stored_sizes", "tile_rows", "time_axis", "times")

    def __init__(self, channel: Channel, encoder: ChunkEncoder) -> None:
        self.channel = channel
        self.encoder = encoder
        self.k = channel.chunk_frames
        #: rows per tile when each frame is stored as several chunks, else 0
        self.tile_rows = channel.chunk_shape[1] if channel.chunk_shape[1:] != channel.stored_shape else 0
        self.index = 0  # chunk being filled
        self.m = 0  # frames in it
        self.pieces: list[Piece] = []
        self.times: list[Any] = []
        self.dirty = False  # frames added since the chunk was last stored
        self.extent = 0  # dataset length
        self.buffers: list[npt.NDArray[Any]] = []
        self.stored_sizes: dict[int, int] = {}
        self.reported_written = 0
        self.time_axis = _TimeAxis(channel.paths.time, TIME_CHUNK)

    def buffer(self) -> npt.NDArray[Any]:
        try:
            return self.buffers.pop()
        except IndexError:
            ch = self.channel
            return np.empty((self.k, *ch.stored_shape), dtype=ch.dtype)


class _Job:
    __slots__ = ("frames", "future", "index", "stream", "times")

    def __init__(self, stream: _Stream, index: int, frames: int, times: npt.NDArray[np.float64],
                 future: Future[Encoded]) -> None:
        self.stream = stream
        self.index = index
        self.frames = frames
        self.times = times
        self.future = future


def _assemble(stream: _Stream, pieces: list[Piece], frames: int, timer: Timer,
              ) -> Encoded:
    """Copy a chunk's frames into a reusable buffer and encode it (pool thread)."""
    started = time.perf_counter()
    result = _assemble_chunk(stream, pieces, frames)
    timer.add(time.perf_counter() - started)
    return result


def _encode_tiles(stream: _Stream, frame: Any) -> Encoded:
    """A frame larger than ``chunk_bytes`` is stored as several chunks, tiles of whole
    rows (``tile_rows`` of them): each tile is a contiguous slice of the frame, encoded
    in place; only a short last tile is padded into a buffer."""
    ch = stream.channel
    rows = stream.tile_rows
    frame = np.ascontiguousarray(frame, dtype=ch.dtype)
    payloads: list[Payload] = []
    for start in range(0, ch.shape[0], rows):
        tile = frame[start:start + rows]
        if tile.shape[0] < rows:
            padded = np.zeros((rows, *ch.shape[1:]), dtype=ch.dtype)
            padded[:tile.shape[0]] = tile
            tile = padded
        payloads.append(stream.encoder.encode(tile))
    return payloads, None


def _assemble_chunk(stream: _Stream, pieces: list[Piece], frames: int) -> Encoded:
    if stream.tile_rows:
        return _encode_tiles(stream, pieces[0][0])
    if frames == stream.k and len(pieces) == 1:
        whole = pieces[0][0]
        if isinstance(whole, np.ndarray) and whole.flags.c_contiguous and whole.dtype == stream.channel.dtype:
            # One frame (or one pushed block) is the whole chunk: encode it in place, no copy.
            # The frame stays referenced by the job until the chunk is written.
            return [stream.encoder.encode(whole)], None
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
    payload = stream.encoder.encode(buf)
    if stream.encoder.compression is None:
        return [payload], buf  # the buffer is the payload: recycle it after writing
    stream.buffers.append(buf)
    return [payload], None


def _times_array(times: list[Any]) -> npt.NDArray[np.float64]:
    if all(type(t) is float for t in times):
        return np.array(times, dtype=np.float64)
    return np.concatenate([np.atleast_1d(np.asarray(t, dtype=np.float64)) for t in times])


class Writer:
    """Runs in its own thread: :meth:`run` returns when the file is closed."""

    def __init__(self, saver: Saver) -> None:
        self.saver = saver
        self.config = saver.config
        self.backend: Backend | None = None
        self.layout: Layout | None = None
        self.streams: list[_Stream] = []
        self.inflight: deque[_Job] = deque()
        self.pool = ThreadPoolExecutor(self.config.compress_threads, thread_name_prefix="streamsave-encode")
        self.swmr_started = False
        self.flushes = 0
        #: the channels (data paths) the journal has columns for, once it exists
        self.journal: list[str] | None = None
        self.journal_rows = 0

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        saver = self.saver
        try:
            self.backend = self.config.open_backend()
            self.layout = Layout(self.backend, title=self.config.title,
                                 compression=self.config.compression.name if self.config.compression else "none")
        except BaseException as exc:
            saver._writer_failed(_translate(exc, "create"))
            self._shutdown()
            return
        saver._writer_opened()
        saver._publish(FileOpened(path=str(self.config.path)))
        try:
            self._main_loop()
            self._finish()
        except BaseException as exc:
            saver._writer_failed(_translate(exc, "write"))
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        failed = self.saver._failure is not None
        if self.backend is not None:  # only still open after a failure
            try:
                self.backend.abandon()
            except BaseException as exc:  # already failed: do not mask the first error
                log.debug("abandoning the file after a failure raised %r", exc)
        for ch in self.saver._channels:
            ch._take(1 << 62)  # whatever is still queued now can no longer be written
            if failed:  # the file holds what the last flush wrote, nothing after it
                ch._written = ch._durable
            ch._dropped_by_writer = ch._taken - ch._written
            ch._done_at = time.monotonic()
        self.saver._writer_done(self.flushes)

    def _main_loop(self) -> None:
        saver, cfg = self.saver, self.config
        wake = saver._wake
        next_flush = time.monotonic() + cfg.flush_interval
        next_progress = time.monotonic() + cfg.progress_interval
        while True:
            deadline = min(next_flush, next_progress) if saver._hub.subscriptions else next_flush
            wake.wait(max(0.0, deadline - time.monotonic()))
            wake.clear()
            self._apply_layout()
            closing = saver._closing
            if closing and saver._abort_deadline is not None and time.monotonic() > saver._abort_deadline:
                self._discard_queued()
            backlog = False
            for stream in self.streams:
                backlog |= self._collect(stream)
            self._write_ready(wait=False)
            if backlog:  # more is queued than one pipeline's worth: come straight back for it
                wake.set()
            now = time.monotonic()
            if closing or saver._flush_requests or now >= next_flush:
                requests, saver._flush_requests = saver._flush_requests, []
                try:
                    self._flush()
                finally:  # waiters learn the outcome (success, or the failure) either way
                    for event in requests:
                        saver._waker.call(event.set)
                next_flush = time.monotonic() + cfg.flush_interval
                if closing and all(not s.channel._entries for s in self.streams) and not saver._pending_layout:
                    self._progress()
                    return
            if now >= next_progress:
                self._progress()
                next_progress = now + cfg.progress_interval

    # ------------------------------------------------------------------ layout
    def _apply_layout(self) -> None:
        saver = self.saver
        assert self.layout is not None and self.backend is not None
        while saver._pending_layout:
            kind, obj = saver._pending_layout.popleft()
            if kind == "detector":
                self.layout.add_detector(obj.path, obj.name, obj._settings_json)
            else:
                ch: Channel = obj
                assert ch._detector_obj is not None
                flt = filter_for(self.config.compression)
                self.layout.add_channel(
                    ch._detector_obj.path, ch.detector, ch.paths, name=ch.name, shape=ch.shape, dtype=ch.dtype,
                    chunk_shape=ch.chunk_shape, filter=flt, units=ch.units, label=ch.label, axes=ch.axes)
                self.streams.append(_Stream(ch, ChunkEncoder(self.config.compression, ch.dtype.itemsize)))
                saver._publish(ChannelCreated(
                    channel=ch.full_name, path=str(self.config.path), dataset=ch.paths.data, time_axis=ch.paths.time,
                    frame_shape=ch.shape, dtype=ch.dtype.name, chunk_shape=ch.chunk_shape))
        if self.journal is None and saver._frozen and not saver._pending_layout:
            self.journal = [s.channel.paths.data for s in self.streams]
            self.layout.add_journal(self.journal)
        if not self.swmr_started and self.config.swmr and saver._frozen:
            self.backend.start_swmr()
            self.swmr_started = True

    # ------------------------------------------------------------------ chunks
    def _collect(self, stream: _Stream) -> bool:
        """Move queued frames into chunks, at most a pipeline's worth (``max_inflight``
        chunks), so frames wait in the bounded queue rather than in the writer and
        producers see steady backpressure. Returns whether frames are left queued."""
        k = stream.k
        limit = max(1, k * self.config.max_inflight - stream.m)
        entries: list[Entry] = stream.channel._take(limit)
        for data, ts, n in entries:
            start = 0
            while start < n:
                take = min(n - start, k - stream.m)
                if type(ts) is float:  # a single pushed frame (a block of one has an array of times)
                    stream.pieces.append((data, 1))
                    stream.times.append(ts)
                elif take == 1:  # a single frame cut from a block: store it as one
                    stream.pieces.append((data[start], 1))
                    stream.times.append(float(ts[start]))
                else:
                    stream.pieces.append((data[start:start + take], take))
                    stream.times.append(ts[start:start + take])
                stream.m += take
                start += take
                stream.dirty = True
                if stream.m == k:
                    self._seal(stream, final=True)
        return bool(stream.channel._entries)

    def _seal(self, stream: _Stream, *, final: bool) -> None:
        """Submit the chunk being filled for encoding; ``final`` when it is full."""
        pieces = stream.pieces if final else list(stream.pieces)
        times = _times_array(stream.times)
        future = self.pool.submit(_assemble, stream, pieces, stream.m, self.saver._timers["encode"])
        self.inflight.append(_Job(stream, stream.index, stream.m, times, future))
        stream.dirty = False
        if final:
            stream.index += 1
            stream.m = 0
            stream.pieces = []
            stream.times = []
        if len(self.inflight) >= self.config.max_inflight:
            self._write_ready(wait=True, keep=self.config.max_inflight // 2)

    def _write_ready(self, *, wait: bool, keep: int = 0) -> None:
        """Store finished chunks in submission order; with ``wait``, until at most
        ``keep`` remain in flight."""
        done: list[tuple[_Job, list[Payload], npt.NDArray[Any] | None]] = []
        inflight = self.inflight
        while inflight and (inflight[0].future.done() or (wait and len(inflight) > keep)):
            job = inflight.popleft()
            payloads, buf = job.future.result()
            done.append((job, payloads, buf))
        if done:
            self._store(done)

    def _store(self, done: list[tuple[_Job, list[Payload], npt.NDArray[Any] | None]]) -> None:
        started = time.perf_counter()
        self._store_chunks(done)
        self.saver._timers["write"].add(time.perf_counter() - started)

    def _store_chunks(self, done: list[tuple[_Job, list[Payload], npt.NDArray[Any] | None]]) -> None:
        backend = self.backend
        assert backend is not None
        ends: dict[_Stream, int] = {}
        for job, _, _ in done:
            end = job.index * job.stream.k + job.frames
            if end > ends.get(job.stream, job.stream.extent):
                ends[job.stream] = end
        for stream, end in ends.items():
            paths = stream.channel.paths
            backend.resize(paths.data, end)
            backend.resize(paths.time, end)
            stream.extent = end
        for job, payloads, buf in done:
            stream = job.stream
            ch = stream.channel
            start = job.index * stream.k
            size = 0
            for tile, payload in enumerate(payloads):
                offset = (start, tile * stream.tile_rows) + (0,) * (len(ch.stored_shape) - 1)
                backend.write_chunk(ch.paths.data, offset, payload)
                size += len(payload) if isinstance(payload, bytes) else payload.nbytes
            stream.time_axis.put(backend, start, job.times)
            ch._bytes_stored += size - stream.stored_sizes.pop(job.index, 0)
            if job.frames < stream.k:
                stream.stored_sizes[job.index] = size
            if buf is not None:
                stream.buffers.append(buf)
            if start + job.frames > ch._written:
                ch._written = start + job.frames
                ch._last_time = float(job.times[-1])
                ch._last_write = time.monotonic()

    def _flush(self) -> None:
        backend = self.backend
        assert backend is not None
        self._apply_layout()
        for stream in self.streams:
            ch = stream.channel
            queued = ch._entered  # every frame queued before the flush was requested is included
            while self._collect(stream) and ch._taken + ch._evicted < queued:
                pass
            if stream.m and stream.dirty:
                self._seal(stream, final=False)
        self._write_ready(wait=True)
        for stream in self.streams:
            stream.time_axis.store(backend)
        if not self.swmr_started:
            for stream in self.streams:
                self._write_final_attrs(stream)
        if self.journal is not None:  # one row per flush: what this flush makes durable
            row = np.array([[s.channel._written for s in self.streams[:len(self.journal)]]], dtype=np.int64)
            self.journal_rows += 1
            backend.resize(JOURNAL_FRAMES, self.journal_rows)
            backend.write_rows(JOURNAL_FRAMES, self.journal_rows - 1, row)
            backend.resize(JOURNAL_TIMES, self.journal_rows)
            backend.write_rows(JOURNAL_TIMES, self.journal_rows - 1, np.array([time.time()]))
        started = time.perf_counter()
        backend.flush()
        self.saver._timers["flush"].add(time.perf_counter() - started)
        self.flushes += 1
        now = time.time()
        for stream in self.streams:
            ch = stream.channel
            if ch._durable != ch._written:
                ch._durable = ch._written
                ch._durable_timestamp = ch._last_time
                ch._durable_at = now
        if self.saver._hub.subscriptions:
            self.saver._publish(Flushed(durable={s.channel.full_name: s.channel._durable for s in self.streams},
                                        seconds=time.perf_counter() - started))

    def _progress(self) -> None:
        """Publish what changed since the last tick: writes, drops, backpressure."""
        saver = self.saver
        for stream in self.streams:
            ch = stream.channel
            ch._report_progress()
            if not saver._hub.subscriptions:
                continue
            st = ch.statistics()
            if st.frames_written != stream.reported_written:
                saver._publish(FramesWritten(
                    channel=st.name, frames=st.frames_written - stream.reported_written,
                    frames_written=st.frames_written, frames_durable=st.frames_durable,
                    frames_dropped=st.frames_dropped, bytes_written=st.bytes_written, bytes_stored=st.bytes_stored,
                    compression_ratio=st.compression_ratio, queue_fill=st.queue_fill))
                stream.reported_written = st.frames_written

    def _write_final_attrs(self, stream: _Stream) -> None:
        assert self.backend is not None
        ch = stream.channel
        attrs = Layout.final_attrs(ch.shape, ch._written, ch._dropped, ch._rejected)
        self.backend.set_attrs(ch.paths.data, attrs)
        self.backend.set_attrs(ch.paths.time, Layout.time_attrs(ch._written))

    def _discard_queued(self) -> None:
        for stream in self.streams:
            stream.channel._take(1 << 62)

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
        empty = [s.channel.paths.group for s in self.streams if s.channel._written == 0]
        for stream in self.streams:
            if stream.channel._written:
                self._write_final_attrs(stream)
        if empty:
            if self.swmr_started:
                backend.close()
                backend = self.backend = self.config.open_backend(mode="r+")
            self.layout.drop_empty(backend, empty)
        self.backend = None
        backend.close(fsync=self.config.fsync)


def _translate(exc: BaseException, action: str) -> BaseException:
    if isinstance(exc, StorageError | WriterError):
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
