"""h5grove's content objects, built from nodes reached inside the served file only.

h5grove's own factory (``create_content``) follows every link, external ones too, and so
does its group metadata for each child. Here each entity is looked up with
:func:`._confine.node_at`; what it does not reach (an external link, a dangling soft link,
a virtual dataset) is described as the link it is, never followed.
"""

from __future__ import annotations

import math
from typing import Any, Final

import h5py
import numpy as np
from h5grove.content import (
    DatasetContent,
    DatatypeContent,
    EntityContent,
    ExternalLinkContent,
    GroupContent,
    SoftLinkContent,
)
from h5grove.utils import hdf_path_join, parse_slice

from ._confine import Refused, link_at, node_at

__all__ = ("MAX_READ_BYTES", "content_at", "dataset_at", "selected_bytes")

#: the most bytes one ``/data`` or ``/stats`` request may read (a whole 30 GB stack is refused)
MAX_READ_BYTES: Final = 1 << 30


class _Group(GroupContent):  # type: ignore[misc]  # h5grove is untyped
    """A group whose children are described through :func:`content_at` (not followed out of the file)."""

    def _get_child_metadata_content(self, depth: int = 0) -> list[Any]:
        return [content_at(self._h5file, hdf_path_join(self._path, name)).metadata(depth)
                for name in self._h5py_entity]


class _Unreadable(EntityContent):  # type: ignore[misc]
    """A node that is there but is not shown (its data lives in other files, or it is damaged)."""

    kind = "other"

    def metadata(self, depth: int | None = None) -> Any:
        return super().metadata()


def content_at(file: h5py.File, path: str) -> Any:
    """h5grove content for the entity at ``path``.

    :raises Refused: 404 if nothing is there.
    """
    node = node_at(file, path)
    if isinstance(node, h5py.Dataset):
        return DatasetContent(path, node)
    if isinstance(node, h5py.Group):
        return _Group(path, node, file)
    if isinstance(node, h5py.Datatype):
        return DatatypeContent(path, node)
    link = link_at(file, path)
    if isinstance(link, h5py.ExternalLink):
        return ExternalLinkContent(path, link)
    if isinstance(link, h5py.SoftLink):
        return SoftLinkContent(path, link)
    if link is not None:
        return _Unreadable(path)
    raise Refused(404, f"{path} is not a valid path in the file")


def dataset_at(file: h5py.File, path: str) -> DatasetContent:
    """The dataset at ``path`` (inside the file).

    :raises Refused: 404 if ``path`` is not such a dataset.
    """
    content = content_at(file, path)
    if not isinstance(content, DatasetContent):
        raise Refused(404, f"{path} is not a dataset in the file")
    return content


def selected_bytes(dset: h5py.Dataset, selection: str | None) -> int:
    """How many bytes ``dset[selection]`` reads (h5grove's selection syntax: ``"0,:,2:5"``).

    :raises Refused: 422 if the selection does not parse.
    """
    shape = dset.shape or ()
    if selection is None or not shape:
        return int(math.prod(shape)) * int(dset.dtype.itemsize)
    try:
        members = parse_slice(selection)
    except (ValueError, TypeError):
        raise Refused(422, f"selection={selection!r} is not a selection like '0,:,2:5'") from None
    sizes = list(shape)
    for axis, member in enumerate(members[:len(shape)]):
        sizes[axis] = 1 if not isinstance(member, slice) else len(range(*member.indices(shape[axis])))
    return int(np.prod(sizes, dtype=np.float64)) * int(dset.dtype.itemsize)
