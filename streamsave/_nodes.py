"""What the reader takes for groups, datasets and links.

Local files are read with h5py. A service's file (an HSDS domain) is opened by its
backend with the library that talks to it, h5pyd, whose ``Group``, ``Dataset``,
``HardLink`` and ``SoftLink`` mirror h5py's: :func:`accept` adds that library's
classes the first time one of its files is read, so the reader walks both with the
same code (``isinstance(node, KINDS.group)``), and h5py files pay nothing for it.
"""

from __future__ import annotations

import importlib
from typing import Any

import h5py

__all__ = ("KINDS", "accept", "external_data")


class _Kinds:
    """The classes of each kind of node, one tuple per kind (for ``isinstance``)."""

    __slots__ = ("dataset", "group", "hard", "soft")

    def __init__(self) -> None:
        self.group: tuple[type[Any], ...] = (h5py.Group,)
        self.dataset: tuple[type[Any], ...] = (h5py.Dataset,)
        self.hard: tuple[type[Any], ...] = (h5py.HardLink,)
        self.soft: tuple[type[Any], ...] = (h5py.SoftLink,)


KINDS = _Kinds()


def accept(file: Any) -> None:
    """Take the groups, datasets and links of ``file``'s library (an h5py look-alike
    such as h5pyd) from now on."""
    if isinstance(file, h5py.File):
        return
    library = importlib.import_module(type(file).__module__.partition(".")[0])
    for kind, name in (("group", "Group"), ("dataset", "Dataset"), ("hard", "HardLink"), ("soft", "SoftLink")):
        cls = getattr(library, name, None)
        known: tuple[type[Any], ...] = getattr(KINDS, kind)
        if isinstance(cls, type) and cls not in known:
            setattr(KINDS, kind, (*known, cls))


def external_data(dset: Any) -> bool:
    """The dataset's values live outside its file: a virtual dataset, data in external
    files (h5py), or chunks the service reads from other files (HSDS's ``*_REF``
    layouts)."""
    if isinstance(dset, h5py.Dataset):
        return bool(dset.is_virtual or dset.id.get_create_plist().get_external_count())
    layout = getattr(getattr(dset, "id", None), "layout", None)
    return isinstance(layout, dict) and "REF" in str(layout.get("class", ""))
