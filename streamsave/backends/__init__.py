"""Storage backends: one module per storage library behind :class:`Backend`."""

from __future__ import annotations

from ._base import AttrValue, Backend, DatasetSpec

__all__ = ("AttrValue", "Backend", "DatasetSpec")
