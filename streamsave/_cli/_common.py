"""What every subcommand shares: exit codes, the console, one-line errors, number formats."""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from rich.console import Console

from .._errors import StreamSaveError

__all__ = (
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "check_output",
    "console",
    "describe",
    "error",
    "find_channel",
    "frames_slice",
    "nbytes",
    "os_reason",
    "positive",
    "rate",
    "short_count",
)

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it

T = TypeVar("T")


class CommandError(Exception):
    """A failure a subcommand reports as one line on stderr, with exit status 1."""


# ---------------------------------------------------------------------------- output
def console() -> Console:
    """stdout; when it is not a terminal (a pipe, a CI log), 160 columns rather than
    rich's default 80, so tables are not squeezed (unless COLUMNS says otherwise)."""
    out = Console(highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(highlight=False, width=160)
    return out


def error(message: str) -> None:
    """Write ``streamsave: error: <message>`` to stderr, on one line."""
    sys.stderr.write(f"streamsave: error: {' '.join(message.split())}\n")
    sys.stderr.flush()


_ERRNO_PREFIX = re.compile(r"^\[Errno -?\d+\]\s*")
#: HDF5's report of a failed system call: "... (unable to open file: name = 'x', errno = 2, error message = 'No such
#: file or directory', flags = 13, o_flags = 242)"
_HDF5_ERRNO = re.compile(r"name = '(?P<name>[^']*)', errno = -?\d+, error message = '(?P<message>[^']*)'")


def describe(exc: BaseException) -> str:
    """One line for an exception: its first line, without ``[Errno N]`` prefixes or
    HDF5's error stack; a failed system call as ``'path': reason``."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror and len(exc.args) == 2 and isinstance(exc.args[1], str):
        text = exc.args[1]  # OSError(errno, message): the message, without "[Errno N]"
        if exc.filename is None and not isinstance(exc, StreamSaveError) and not _HDF5_ERRNO.search(text):
            return _first_line(text)
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{str(exc.filename)!r}: {_lower_first(exc.strerror)}"
    first = _first_line(text)
    system = _HDF5_ERRNO.search(first)
    if system:
        return f"{system['name']!r}: {_lower_first(system['message'])}"
    return first


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()] or ["unknown error"]
    return _ERRNO_PREFIX.sub("", lines[0].strip())


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def os_reason(exc: OSError) -> str:
    """Why a system call failed, without the file name: "permission denied"."""
    system = _HDF5_ERRNO.search(str(exc))
    if system:
        return _lower_first(system["message"])
    if exc.strerror:
        return _lower_first(exc.strerror)
    return describe(exc)


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing file unless ``overwrite``; refuse a directory.

    :raises CommandError: with the reason.
    """
    if path.is_dir():
        raise CommandError(f"{str(path)!r} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise CommandError(f"{str(path)!r} already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise CommandError(f"cannot create {str(path)!r}: the directory {str(path.parent)!r} does not exist")


# ---------------------------------------------------------------------------- channels
def find_channel(channels: Mapping[str, T], key: str, path: Path) -> T:
    """The channel called ``key``, or a :class:`CommandError` that lists them all."""
    if key in channels:
        return channels[key]
    folded = {k.casefold(): k for k in channels}
    if key.casefold() in folded:
        return channels[folded[key.casefold()]]
    if not channels:
        raise CommandError(f"{str(path)!r} has no channels")
    close = difflib.get_close_matches(key, list(channels), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise CommandError(f"no channel {key!r} in {str(path)!r}; {hint}available: {', '.join(channels)}")


# ---------------------------------------------------------------------------- arguments
def positive(kind: Callable[[str], float], what: str) -> Callable[[str], Any]:
    """An argparse type: a positive, finite number."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{what} must be positive and finite, got {text!r}")
        return value

    return parse


def frames_slice(text: str) -> slice:
    """An argparse type for ``--frames A:B`` (either end may be left out, negative
    numbers count from the end, as in Python)."""
    parts = text.split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"--frames takes A:B (e.g. 0:100, 100:, :-1), got {text!r}")
    try:
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frames takes whole numbers A:B (e.g. 0:100), got {text!r}") from None
    return slice(start, stop)


# ---------------------------------------------------------------------------- numbers
def nbytes(count: float) -> str:
    """A size in decimal units: 812 B, 1.6 MB, 2.62 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            value = count / scale
            return f"{value:,.2f} {unit}" if value < 10 else f"{value:,.1f} {unit}"
    return f"{count:,.0f} B"


def short_count(count: int) -> str:
    """A count in at most 7 characters: 999,999 then 1.23M, 12.3M, 123M, 1.23G."""
    if count < 1_000_000:
        return f"{count:,}"
    for unit, scale in (("G", 1e9), ("M", 1e6)):
        if count >= scale:
            value = count / scale
            digits = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{digits}f}{unit}"
    return f"{count:,}"  # not reached: every count of a million or more has a unit


def rate(value: float) -> str:
    """A rate in at most 7 characters: 9.5, 999.8, 1,000, 100,000, then 1.23M."""
    if not math.isfinite(value):
        return "-"
    if value >= 1_000_000:
        return short_count(int(value))
    return f"{value:,.0f}" if value >= 1000 else f"{value:,.1f}"
