"""The argument parser and the dispatch to subcommands (see :mod:`streamsave.cli`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .._errors import StreamSaveError
from .._version import __version__
from . import _demo, _export, _follow, _info, _recover, _replay, _view
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, CommandError, describe, error

__all__ = ("main", "parser")

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo.run, "info": _info.run, "export": _export.run_export, "plot": _export.run_plot,
    "follow": _follow.run, "recover": _recover.run, "replay": _replay.run,
    "view": _view.run,
}


def parser() -> argparse.ArgumentParser:
    """The ``streamsave`` parser, with one subparser per command."""
    top = argparse.ArgumentParser(
        prog="streamsave", description="Continuous, compressed saving of detector frames to HDF5, and reading "
                                       "the files back.",
        epilog="Exit status: 0 ok, 1 error (one line on stderr), 2 usage error, 130 interrupted (Ctrl-C). "
               "`streamsave COMMAND --help` describes each command.")
    top.add_argument("--version", action="version", version=f"streamsave {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _demo.add_parser(commands)
    _info.add_parser(commands)
    _export.add_parsers(commands)
    _follow.add_parser(commands)
    _recover.add_parser(commands)
    _replay.add_parser(commands)
    _view.add_parser(commands)
    return top


def _glue(argv: list[str], option: str) -> list[str]:
    """``--frames -3:`` as ``--frames=-3:``: argparse takes a value that starts with
    ``-`` (and is not a plain negative number) for an option."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            out += [arg, *args]
            break
        if arg == option:
            value = next(args, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamsave`` command line with ``argv`` (default: ``sys.argv[1:]``).

    :returns: the exit status (see :mod:`streamsave.cli`); usage errors return 2
        instead of raising :class:`SystemExit`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(_glue(argv, "--frames"))
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `streamsave info FILE | head`: the reader left, nothing to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except (CommandError, StreamSaveError, OSError) as exc:
        error(describe(exc))
        return EXIT_ERROR
