"""The few HDF5 property-list calls h5py does not wrap, made on the HDF5 library h5py
loaded (so the settings apply to h5py's own objects)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
from typing import Any

import h5py

__all__ = ("set_property",)


@functools.cache
def _hdf5_library() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(h5py.h5p.__file__)
    except OSError:
        return None


def set_property(plist: h5py.h5p.PropID, function: str, value_type: Any, value: int) -> bool:
    """Call HDF5's ``function(plist, value)``; False if it is missing or fails (the
    property list then only lacks that setting)."""
    library = _hdf5_library()
    with contextlib.suppress(OSError, AttributeError):
        if library is not None:
            setter = getattr(library, function)
            setter.argtypes, setter.restype = [ctypes.c_int64, value_type], ctypes.c_int
            return bool(setter(plist.id, value) >= 0)
    return False
