"""The conformance scenarios on a backend without direct chunk write (h5py writing rows,
HDF5's Blosc2 filter compressing them): the engine's path for services such as HSDS.
Also with a request size limit, as HSDS has, and what the engine sends under it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
import numpy.typing as npt
import pytest

import streamsave
from streamsave.backends.h5py_rows import H5pyRowsBackend
from tests.backend_conformance import BackendConformance


class TestH5pyRowsBackend(BackendConformance):
    backend = H5pyRowsBackend
    killed_writer_backend = "streamsave.backends.h5py_rows:H5pyRowsBackend"


class LimitedRows(H5pyRowsBackend):
    """Rows, at most 4 MiB a request, a few codecs, no SWMR: what a service declares.
    Records the size of every write_rows call."""

    name = "limited-rows"
    supports_swmr = False
    codecs = frozenset({"lz4", "blosclz"})
    max_request_bytes = 4 * 2**20
    requests: ClassVar[list[tuple[str, int, int]]] = []
    lock = threading.Lock()

    def write_rows(self, path: str, start: int, values: npt.NDArray[Any]) -> None:
        with self.lock:
            LimitedRows.requests.append((path, start, values.nbytes))
        super().write_rows(path, start, values)


class TestLimitedRowsBackend(BackendConformance):
    backend = LimitedRows


class SmallRequests(LimitedRows):
    max_request_bytes = 10_000  # two 4 KiB chunks and a bit


@pytest.mark.parametrize(("backend", "joined"), [(SmallRequests, 2), (LimitedRows, 4)], ids=["10kB", "4MiB"])
async def test_rows_are_sent_in_requests_of_several_chunks_within_the_limit(
        tmp_path: Path, backend: type[LimitedRows], joined: int) -> None:
    """Chunks of 4 KiB: as many per request as the limit allows (the engine has up to
    8 chunks in flight; it stores them 4 at a time when the pipeline is full)."""
    LimitedRows.requests.clear()
    path = tmp_path / "batched.h5"
    n = 2000
    block = (np.arange(n * 256) % 251).astype(np.uint16).reshape(n, 256)  # 512-byte frames, 8 per 4 KiB chunk
    async with streamsave.open_saver(path, backend=backend, chunk_bytes=4096, compression="blosc2-lz4",
                                     flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(256,), dtype="uint16")
        await ch.push_many(block[:777])
        await saver.flush()  # a partly filled chunk, written as rows, then again with what follows
        await ch.push_many(block[777:])
        data_path = ch.paths.data
    sizes = [size for p, _, size in LimitedRows.requests if p == data_path]
    assert backend.max_request_bytes is not None and max(sizes) <= backend.max_request_bytes
    if joined == 2:
        assert max(sizes) == 2 * 4096, sizes  # as many as fit
    else:
        assert max(sizes) >= joined * 4096, sizes
    assert len(sizes) < n * 512 // 4096  # fewer requests than chunks
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f[data_path][()], block)
        assert "32026" in f[data_path]._filters  # HDF5 compressed the rows with the codec asked for
