"""``streamsave recover``: a clean copy of a crashed writer's file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._recover import recover
from ._common import EXIT_OK

__all__ = ("add_parser", "run")


def add_parser(commands: Any) -> None:
    rec = commands.add_parser(
        "recover", help="copy the whole frames of a crashed recording into a new, clean file",
        description="Copy every whole frame of a file whose writer was killed or failed into a new, ordinary "
                    "HDF5 file that any reader opens, each channel trimmed to what its writer's last flush "
                    "made durable; print what was kept per channel. FILE is only read, never modified.")
    rec.add_argument("file", type=Path, metavar="FILE", help="the crashed recording (only read)")
    rec.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="the clean file to create")
    rec.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    print(recover(args.file, args.output, overwrite=args.overwrite).summary())
    return EXIT_OK
