"""A local HDF5 file through h5py, written the way a backend without direct chunk
write is: rows of whole frames, compressed by HDF5's own filter pipeline.

It exists to run the engine's row path (the one HSDS takes) on a local file, in the
conformance tests and the benchmark, and to measure what compressing in HDF5 costs
against the engine's own parallel compression. Files are the same as the h5py
backend's: the Blosc2 filter (id 32026) on the data, with the codec, level and
shuffle the saver was given. Use it with ``backend=H5pyRowsBackend``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import h5py
import hdf5plugin

from ._base import DatasetSpec
from .h5py import H5pyBackend

__all__ = ("H5pyRowsBackend",)

_SHUFFLE = {"none": hdf5plugin.Blosc2.NOFILTER, "byte": hdf5plugin.Blosc2.SHUFFLE,
            "bit": hdf5plugin.Blosc2.BITSHUFFLE}


class H5pyRowsBackend(H5pyBackend):
    """The h5py backend without direct chunk write: HDF5 compresses each chunk with
    hdf5plugin's Blosc2 filter as rows are written (single-threaded, in the writer
    thread). SWMR and crash behaviour are the h5py backend's."""

    name = "h5py-rows"
    supports_direct_chunk_write = False

    def create_dataset(self, path: str, spec: DatasetSpec) -> None:
        if spec.compression is None or spec.filter is not None:
            super().create_dataset(path, spec)
            return
        c = spec.compression
        cname: Any = c.codec  # one of hdf5plugin's names (Compression checked it)
        dtype: Any = h5py.vlen_dtype("uint8") if spec.dtype == "vlen-uint8" else spec.dtype
        dset = self.file.create_dataset(
            path, shape=spec.shape, maxshape=spec.maxshape, dtype=dtype, chunks=spec.chunks, data=spec.data,
            compression=hdf5plugin.Blosc2(cname=cname, clevel=c.level, filters=_SHUFFLE[c.shuffle]))
        for key, value in spec.attrs.items():
            dset.attrs[key] = value
        if spec.maxshape is not None:
            self._datasets[path] = dset

    def write_chunk(self, path: str, offset: Sequence[int], data: bytes | memoryview, filter_mask: int = 0) -> None:
        raise NotImplementedError(f"backend {self.name!r} has no direct chunk write: the engine writes rows")
