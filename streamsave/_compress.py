"""Turning a chunk of whole frames into the bytes HDF5 stores for it.

The engine compresses chunks itself, in a thread pool, and hands HDF5 the finished
bytes by *direct chunk write*: HDF5's own filter pipeline is single-threaded and
several times slower (see ``docs/decisions/0001-direct-chunk-write.md``). The bytes
must be exactly what the filter declared on the dataset decodes:

* uncompressed: the raw C-ordered buffer, no filter;
* compressed: a blosc2 *super-chunk frame* (cframe) holding one blosc2 chunk, which
  hdf5plugin's Blosc2 filter (id 32026) decodes.

Each call uses one blosc2 thread: parallelism comes from running several encoders
at once, which beats blosc2's internal threads because these start and stop OS
threads on every call.
"""

from __future__ import annotations

import os
from typing import Any, Final

import blosc2
import numpy as np
import numpy.typing as npt

from ._spec import Compression

__all__ = ("BLOSC2_FILTER_ID", "ChunkEncoder", "choose_chunk_frames", "filter_for")

_configured = False


def _configure_blosc2() -> None:
    """Process-wide blosc2 settings streamsave needs, applied when the first saver
    that compresses creates its encoders (not at import: a program that imports
    streamsave and never compresses keeps blosc2's defaults).

    * c-blosc2 compresses a super-chunk frame's index with a context of its own that
      starts and joins 4 threads on every call unless ``BLOSC_NTHREADS`` says
      otherwise: measured, that doubles the CPU cost of every chunk. streamsave
      parallelises across chunks itself, so it asks for one thread unless the user
      set a value. python-blosc2 has no per-call knob for that context, hence the
      environment variable (read each time c-blosc2 creates a context).
    * python-blosc2 holds the GIL while compressing unless told otherwise; with it
      held, compression in a worker thread stalls the event loop for milliseconds.
      The switch is process-wide; releasing the GIL costs other blosc2 users nothing
      measurable.

    See ``docs/decisions/0004-blosc2-threads.md``.
    """
    global _configured
    if not _configured:
        os.environ.setdefault("BLOSC_NTHREADS", "1")
        blosc2.set_releasegil(True)
        _configured = True

BLOSC2_FILTER_ID: Final = 32026

_CODEC: Final = {
    "blosclz": blosc2.Codec.BLOSCLZ,
    "lz4": blosc2.Codec.LZ4,
    "lz4hc": blosc2.Codec.LZ4HC,
    "zlib": blosc2.Codec.ZLIB,
    "zstd": blosc2.Codec.ZSTD,
}
_SHUFFLE: Final = {
    "none": blosc2.Filter.NOFILTER,
    "byte": blosc2.Filter.SHUFFLE,
    "bit": blosc2.Filter.BITSHUFFLE,
}
# hdf5plugin.Blosc2's compression_opts: (0, 0, 0, 0, clevel, filter, compressor);
# HDF5 fills the first four (version, typesize, chunk size) when the dataset is made.
_H5_SHUFFLE: Final = {"none": 0, "byte": 1, "bit": 2}


def filter_for(compression: Compression | None) -> tuple[int, tuple[int, ...]] | None:
    """The HDF5 filter id and its options for datasets written with ``compression``."""
    if compression is None:
        return None
    opts = (0, 0, 0, 0, compression.level, _H5_SHUFFLE[compression.shuffle], _CODEC[compression.codec].value)
    return BLOSC2_FILTER_ID, opts


def choose_chunk_frames(frame_nbytes: int, target_bytes: int, max_frames: int) -> int:
    """How many whole frames go in one chunk: as many as fit in ``target_bytes``
    (at least one, at most ``max_frames``).

    Measured with 512x512 uint16 frames: 4 frames per 2 MiB chunk wrote 10-30 %
    faster than one frame per chunk, although one frame per chunk is encoded from
    the producer's array without a copy: fewer, larger calls win.
    """
    if frame_nbytes <= 0:
        return max_frames
    return max(1, min(max_frames, target_bytes // frame_nbytes))


class ChunkEncoder:
    """Encodes one chunk buffer into the bytes stored for it; safe to call from
    several threads at once (it keeps no mutable state).

    :param compression: the codec, or ``None`` to store raw bytes.
    :param itemsize: the frame dtype's item size, used as blosc2's typesize.
    """

    __slots__ = ("_cparams", "compression")

    def __init__(self, compression: Compression | None, itemsize: int) -> None:
        self.compression = compression
        self._cparams: dict[str, Any] | None = None
        if compression is not None:
            _configure_blosc2()
            self._cparams = {
                "typesize": itemsize,
                "clevel": compression.level,
                "codec": _CODEC[compression.codec],
                "filters": [_SHUFFLE[compression.shuffle]],
                "nthreads": 1,
            }

    def encode(self, chunk: npt.NDArray[Any], *, raw: bool = False) -> bytes | memoryview:
        """Return the stored form of ``chunk`` (a C-contiguous array); with ``raw``
        (or without compression), its bytes as they are.

        Raw chunks are returned as a view of ``chunk`` itself, so the caller must keep
        ``chunk`` unchanged until the bytes are written.
        """
        data = np.ascontiguousarray(chunk).data.cast("B")
        if self._cparams is None or raw:
            return data
        schunk = blosc2.SChunk(chunksize=max(1, data.nbytes), data=data, contiguous=True, cparams=self._cparams,
                               dparams={"nthreads": 1})
        frame: bytes = schunk.to_cframe()
        return frame

