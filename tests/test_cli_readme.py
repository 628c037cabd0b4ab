"""The README's Reading and Command line sections: the code runs as written, the
commands work, the picture is there, and the synopsis matches the parser."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from streamsave import cli
from streamsave._cli._main import parser

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
TIMEOUT = 120


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def commands(block: str) -> list[list[str]]:
    """Each line of a shell block, without its comment, split as a shell would."""
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if argv[0] == "streamsave":
        argv = [sys.executable, "-W", "error", "-m", "streamsave", *argv[1:]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the Start here example's run.h5."""
    path = tmp_path_factory.mktemp("readme")
    start_here = next(b for b in blocks(README, "python") if "anyio.run(main)" in b)
    done = run([sys.executable, "-c", start_here], path)
    assert done.returncode == 0, done.stderr
    return path


def test_the_reading_example_runs(workdir: Path) -> None:
    import tifffile

    (code,) = blocks(section("Reading"), "python")
    done = run([sys.executable, "-c", code], workdir)
    assert done.returncode == 0, done.stderr
    assert "Camera/image" in done.stdout
    assert tifffile.imread(workdir / "image.tif").shape == (2, 512, 512)
    assert (workdir / "spectrum.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.timeout(2 * TIMEOUT)
def test_the_reading_commands_work(workdir: Path) -> None:
    import matplotlib.image

    (shell,) = blocks(section("Reading"), "bash")
    (workdir / "docs" / "images").mkdir(parents=True)
    for argv in commands(shell):
        done = run(argv, workdir)
        assert done.returncode == 0, (argv, done.stderr)
        assert done.stderr == "", (argv, done.stderr)
    made = matplotlib.image.imread(workdir / "docs" / "images" / "spectrum-mean.png")
    committed = matplotlib.image.imread(ROOT / "docs" / "images" / "spectrum-mean.png")
    assert made.shape == committed.shape


def test_the_picture_is_committed_and_shown() -> None:
    pictures = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", section("Reading"))
    assert pictures == ["docs/images/spectrum-mean.png"]
    assert (ROOT / pictures[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"-o {pictures[0]}" in section("Reading")  # the command that made it


def test_the_command_line_synopsis_matches_the_parser() -> None:
    (synopsis,) = blocks(section("Command line"), "bash")
    subparsers = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    shown = {argv[1]: argv for argv in commands(synopsis) if argv[0] == "streamsave"}
    assert set(shown) == set(subparsers)
    for name, argv in shown.items():
        written = {w.strip("[]|") for w in argv if w.strip("[]|").startswith("-")}
        actions = [a for a in subparsers[name]._actions if a.option_strings and "--help" not in a.option_strings]
        for action in actions:  # every option is in the synopsis, under one of its names
            assert written & set(action.option_strings), (name, action.option_strings)
        assert written <= {o for a in actions for o in a.option_strings}, name  # and nothing else


def test_exit_codes_agree() -> None:
    text = " ".join(section("Command line").split())
    doc = " ".join((cli.__doc__ or "").split())
    for code, meaning in ((0, "success"), (1, "error"), (2, "usage"), (130, "Ctrl-C")):
        assert re.search(rf"\b{code}\b", text) and meaning.lower() in doc.lower(), (code, meaning)
    assert "0 success" in text and "1 an error" in text and "2 bad arguments" in text and "130 after Ctrl-C" in text
    assert "- 0: success" in (cli.__doc__ or "") and "- 130: interrupted by Ctrl-C" in (cli.__doc__ or "")
