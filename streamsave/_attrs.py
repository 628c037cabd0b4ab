"""Reading attributes safely: PyMoDAQ's JSON envelope, settings as JSON or XML.

PyMoDAQ evaluates the ``data`` field of its envelope (``{"module": "builtins",
"type": "int", "data": "1"}``) with ``eval`` and unpickles its Logger rows. streamsave
never runs anything a file contains: the envelope's ``data`` is parsed with
:func:`ast.literal_eval` (literals only: numbers, strings, tuples, lists, dicts,
booleans, None), limited in size, and settings XML is parsed by defusedxml, which
refuses entity expansion and external references.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from typing import Any, Final

import defusedxml.ElementTree as SafeElementTree
import numpy as np

__all__ = ("MAX_ATTR_TEXT", "attr", "envelope", "settings_from_json", "settings_from_xml", "text")

#: attribute text longer than this is not parsed as an envelope or as settings
MAX_ATTR_TEXT: Final = 1 << 20


def _xml_bool(body: str) -> bool:
    return body.strip() in ("1", "True", "true")


_XML_TYPES: Final[dict[str, Callable[[str], object]]] = {"int": int, "float": float, "bool": _xml_bool}


def attr(node: Any, key: str) -> Any:
    """An attribute's value, or ``None`` when it is missing, larger than
    :data:`MAX_ATTR_TEXT` bytes, or cannot be read (a damaged heap, an unsupported type)."""
    try:
        attrs = node.attrs
        if key not in attrs:
            return None
        get_id = getattr(attrs, "get_id", None)
        if get_id is None:  # a service's file (h5pyd): the value arrives whole, its size is checked after
            value = attrs.get(key)
            return None if isinstance(value, str | bytes) and len(value) > MAX_ATTR_TEXT else value
        if get_id(key).get_storage_size() > MAX_ATTR_TEXT:
            return None
        return attrs.get(key)
    except Exception:  # h5py raises many kinds on damaged or exotic attributes; all mean "unusable"
        return None


def envelope(value: Any) -> object:
    """The value inside PyMoDAQ's JSON envelope, parsed as a literal (never evaluated);
    ``None`` if ``value`` is not such an envelope, or its ``data`` is not a literal."""
    box = _box(value)
    if box is None:
        return None
    try:
        return _literal(box["data"])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


#: numpy scalar types PyMoDAQ's envelopes name under numpy 2 (``"np.float64(0.5)"``)
_NUMPY_SCALARS: Final = frozenset(
    f"{kind}{bits}" for kind, sizes in (("float", (16, 32, 64)), ("int", (8, 16, 32, 64)),
                                        ("uint", (8, 16, 32, 64)), ("complex", (64, 128))) for bits in sizes
) | {"bool", "bool_", "str_", "bytes_"}


def _literal(data: str) -> object:
    """A Python literal, or one numpy scalar of a literal (``np.float64(0.5)``, as
    numpy 2 prints them), as the plain Python value. Nothing is evaluated.

    :raises ValueError: anything else.
    """
    try:
        return ast.literal_eval(data)
    except (ValueError, SyntaxError):
        pass
    call = ast.parse(data.strip(), mode="eval").body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and len(call.args) == 1
            and not call.keywords and isinstance(call.func.value, ast.Name)
            and call.func.value.id in ("np", "numpy") and call.func.attr in _NUMPY_SCALARS):
        raise ValueError(f"not a literal: {data[:80]!r}")
    inner = ast.literal_eval(call.args[0])
    if not isinstance(inner, int | float | complex | str | bytes):
        raise ValueError(f"not a scalar literal: {data[:80]!r}")
    return inner


def _box(value: Any) -> dict[str, Any] | None:
    """PyMoDAQ's envelope (a JSON object with a text ``data``), or ``None``."""
    if isinstance(value, bytes | np.bytes_):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str) or not value.startswith("{") or len(value) > MAX_ATTR_TEXT:
        return None
    try:
        box = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(box, dict) or not isinstance(box.get("data"), str) or set(box) != {"module", "type", "data"}:
        return None
    return box


def text(value: Any) -> str | None:
    """An attribute as text: raw strings as they are, an envelope of a str unwrapped,
    numbers as their text; ``None`` for anything else."""
    if isinstance(value, bytes | np.bytes_):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float):
        return str(value)
    if not isinstance(value, str):
        return None
    if _box(value) is None:
        return value
    inner = envelope(value)  # an envelope whose data is not a literal is not used at all
    return str(inner) if isinstance(inner, str | int | float) and not isinstance(inner, bool) else None


def settings_from_json(value: Any, *, limit: int = MAX_ATTR_TEXT) -> dict[str, Any] | None:
    """Settings stored by streamsave (``params_json``): a JSON object, or ``None``."""
    raw = text(value)
    if raw is None or len(raw) > limit:
        return None
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def settings_from_xml(value: Any) -> dict[str, Any] | None:
    """PyMoDAQ's parameter-tree XML as nested dicts keyed by each element's ``title``
    (its tag when it has none); values converted by their ``type`` attribute (int,
    float, bool; anything else stays text). ``None`` if it is not such XML."""
    raw = text(value)
    if not raw or len(raw) > MAX_ATTR_TEXT or not raw.lstrip().startswith("<"):
        return None
    try:
        root = SafeElementTree.fromstring(raw)
    except Exception:  # defusedxml raises its own errors for entities; all mean "not usable"
        return None
    out = _xml_node(root)
    return out if isinstance(out, dict) else {"value": out}


def _xml_node(element: Any, depth: int = 0) -> Any:
    children = list(element)
    if children and depth < 64:
        out: dict[str, Any] = {}
        for child in children:
            out[child.get("title") or child.tag] = _xml_node(child, depth + 1)
        return out
    body = element.text or ""
    convert = _XML_TYPES.get(element.get("type", ""))
    if convert is not None:
        try:
            return convert(body)
        except ValueError:
            return body
    if element.get("type") == "group":
        return {}
    return body
