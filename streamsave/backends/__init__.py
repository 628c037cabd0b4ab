"""Storage backends: one module per storage library behind :class:`Backend`.

Saver and reader choose one by name (``backend="h5py"``, ``"tables"``, ``"h5pyd"``,
see :mod:`streamsave.backends._registry`) or take a :class:`Backend` class.
"""

from __future__ import annotations

from ._base import ALL_CODECS, AttrValue, Backend, DatasetSpec

__all__ = ("ALL_CODECS", "AttrValue", "Backend", "DatasetSpec")
