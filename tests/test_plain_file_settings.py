"""Plain (non-SWMR) files are created with chunk index B-tree nodes of 1,024 entries
(``H5Pset_istore_k(fcpl, 512)``) and groups whose local heap starts at 4 KiB
(``H5Pset_local_heap_size_hint(gcpl, 4096)``), so that a flush rarely writes new
index or heap nodes, the metadata a writer killed inside a flush tears; SWMR files
keep HDF5's defaults. Both settings are standard HDF5 (a version 1 B-tree with a
larger K, a larger local heap): plain h5py and PyTables read such files as any.
"""

from __future__ import annotations

import ctypes
import errno
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter, as any reader would load it)
import numpy as np
import numpy.typing as npt
import pytest
import tables

import streamsave
import streamsave.backends.h5py as backend
from streamsave.backends.h5py import H5pyBackend
from tests.conftest import channel_paths, read_channel

T0 = 1_700_000_000.0
CHANNELS: dict[str, tuple[tuple[int, ...], str]] = {
    "Camera/image": ((6, 5), "uint16"),
    "Spectrometer/spectrum": ((40,), "float64"),
    "Thermometer/T": ((), "float32"),
}
FRAMES = 57
HDF5_DEFAULT_ISTORE_K = 32


def _hdf5() -> ctypes.CDLL:
    return ctypes.CDLL(h5py.h5p.__file__)


def istore_k(file: h5py.File) -> int:
    """The file's chunk index B-tree K, read back from its file creation properties."""
    getter = _hdf5().H5Pget_istore_k
    getter.argtypes, getter.restype = [ctypes.c_int64, ctypes.POINTER(ctypes.c_uint)], ctypes.c_int
    fcpl = file.id.get_create_plist()  # kept alive for the call
    value = ctypes.c_uint()
    assert getter(fcpl.id, ctypes.byref(value)) >= 0
    return value.value


def local_heap_size_hint(gcpl: Any) -> int:
    getter = _hdf5().H5Pget_local_heap_size_hint
    getter.argtypes, getter.restype = [ctypes.c_int64, ctypes.POINTER(ctypes.c_size_t)], ctypes.c_int
    value = ctypes.c_size_t()
    assert getter(gcpl.id, ctypes.byref(value)) >= 0
    return value.value


def heap_sizes(file: h5py.File) -> dict[str, int]:
    """Bytes of local heap per group below the root (0: a new-style group, no heap).

    HDF5 does not keep the size hint itself in the file (a group's creation properties
    read back report 0), so what it made is checked: the heap it allocated.
    """
    sizes: dict[str, int] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group):
            sizes[name] = h5py.h5o.get_info(obj.id).meta_size.obj.heap_size

    file.visititems(visit)
    return sizes


def frame(key: str, index: int) -> npt.NDArray[Any]:
    shape, dtype = CHANNELS[key]
    values = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) + 1000 * index + len(key)
    return values.astype(dtype)


async def record(path: Path, *, swmr: bool, compression: str | None = None) -> None:
    async with streamsave.open_saver(path, swmr=swmr, compression=compression, flush_interval=60) as saver:
        channels = {}
        for key, (shape, dtype) in CHANNELS.items():
            detector, name = key.split("/")
            channels[key] = saver.add_detector(detector).add_channel(name, shape=shape, dtype=dtype)
        for i in range(FRAMES):
            for key, ch in channels.items():
                await ch.push(frame(key, i), timestamp=T0 + i)
            if i % 10 == 9:
                await saver.flush()


def expected(key: str) -> npt.NDArray[Any]:
    shape, _ = CHANNELS[key]
    return np.stack([frame(key, i) for i in range(FRAMES)]).reshape(FRAMES, *(shape or (1,)))


@pytest.mark.parametrize("compression", [None, "blosc2-lz4"], ids=str)
async def test_plain_file_reads_back_in_h5py_and_pytables(h5path: Path, compression: str | None) -> None:
    await record(h5path, swmr=False, compression=compression)
    for key in CHANNELS:
        data, times = read_channel(h5path, key)
        np.testing.assert_array_equal(data, expected(key))
        assert data.dtype == np.dtype(CHANNELS[key][1])
        np.testing.assert_array_equal(times, T0 + np.arange(FRAMES))
    groups = channel_paths(h5path)
    with tables.open_file(str(h5path), "r") as f:
        for key, group in groups.items():
            np.testing.assert_array_equal(f.get_node(f"{group}/EnlData00").read(), expected(key))
            axes = [n for n in f.get_node(group) if n._v_name.startswith("Axis")]
            assert len(axes) == 1
            np.testing.assert_array_equal(axes[0].read(), T0 + np.arange(FRAMES))


async def test_plain_file_has_large_index_nodes_and_heaps(h5path: Path) -> None:
    await record(h5path, swmr=False)
    with h5py.File(h5path, "r") as f:
        assert istore_k(f) == 512
        sizes = heap_sizes(f)
        assert "RawData/Detector000/Data2D/CH00" in sizes  # nested groups, one level at a time
        assert len(sizes) >= 3 * 3 + 2  # detector, dimension and channel groups; /RawData, /streamsave
        assert all(size >= 4096 for size in sizes.values()), sizes
        assert f.id.get_create_plist().get_file_space_strategy()[0] == h5py.h5f.FSPACE_STRATEGY_NONE
        assert f.libver[0] == "earliest"


async def test_swmr_file_keeps_hdf5_defaults(h5path: Path) -> None:
    await record(h5path, swmr=True)
    with h5py.File(h5path, "r") as f:
        assert istore_k(f) == HDF5_DEFAULT_ISTORE_K
        assert set(heap_sizes(f).values()) == {0}  # v110 groups: links in the object header, no heap
        assert f.id.get_create_plist().get_file_space_strategy()[0] != h5py.h5f.FSPACE_STRATEGY_NONE
    for key in CHANNELS:
        np.testing.assert_array_equal(read_channel(h5path, key)[0], expected(key))


def test_group_creation_properties_of_plain_files() -> None:
    assert local_heap_size_hint(backend._plain_gcpl()) == 4096
    assert local_heap_size_hint(h5py.h5p.create(h5py.h5p.GROUP_CREATE)) == 0  # HDF5's default


def test_plain_groups_like_h5py_groups(h5path: Path) -> None:
    b = H5pyBackend(h5path, "w-", swmr=False)
    b.create_group("/a", {"TITLE": "first"})
    b.create_group("/a/b", {})
    b.create_group("/x/y/z", {"n": 3})  # missing parents are made, with the same settings
    b.create_group("/é", {})  # a UTF-8 link name, as h5py writes it
    with pytest.raises(ValueError, match="already exists"):
        b.create_group("/a/b", {})
    b.close()
    with h5py.File(h5path, "r") as f:
        assert f["a"].attrs["TITLE"] == "first" and f["x/y/z"].attrs["n"] == 3
        assert set(f) == {"a", "x", "é"}
        assert f["/"].id.links.get_info("é".encode()).cset == h5py.h5t.CSET_UTF8
        sizes = heap_sizes(f)
        assert set(sizes) == {"a", "a/b", "x", "x/y", "x/y/z", "é"}
        assert all(size >= 4096 for size in sizes.values()), sizes
        assert h5py.h5o.get_info(f["a"].id).mtime == 0  # no timestamps, as h5py's groups


def test_creating_over_an_existing_file(h5path: Path) -> None:
    h5path.write_bytes(b"precious")
    with pytest.raises(OSError) as info:
        H5pyBackend(h5path, "w-", swmr=False)
    assert info.value.errno == errno.EEXIST
    assert h5path.read_bytes() == b"precious"
    H5pyBackend(h5path, "w", swmr=False).close()  # "w" truncates
    with h5py.File(h5path, "r") as f:
        assert istore_k(f) == 512 and list(f) == []


def test_settings_can_be_left_to_hdf5(h5path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "PLAIN_ISTORE_K", None)
    monkeypatch.setattr(backend, "PLAIN_LOCAL_HEAP_SIZE_HINT", None)
    b = H5pyBackend(h5path, "w-", swmr=False)
    b.create_group("/g", {})
    b.close()
    with h5py.File(h5path, "r") as f:
        assert istore_k(f) == HDF5_DEFAULT_ISTORE_K
        assert heap_sizes(f)["g"] < 4096
