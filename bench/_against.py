"""``--against REV``: the engine of another commit measured in the same run.

The "before" side is a temporary ``git worktree`` of REV, made outside the repository
and removed afterwards. Benchmarks of both sides run the *current* benchmark code
(this checkout's ``bench``); only the ``streamsave`` package imported by the benchmark
process differs. The before side's processes start in a directory that holds nothing
but a ``streamsave`` link to the worktree's package, put first on ``PYTHONPATH`` (the
checkout comes next, for ``bench``), so the worktree's own ``bench`` (if REV has one)
is never imported. Each process reports the file it imported ``streamsave`` from, and
a result from the wrong tree is discarded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ._machine import REPO


@dataclass(frozen=True)
class Side:
    """Where one side's benchmark processes import streamsave from."""

    key: str  # "after" or "before"
    label: str  # shown in the report
    package_dir: Path  # the streamsave package the processes must import
    import_root: Path | None = None  # first on PYTHONPATH and the cwd; None: the checkout
    commit: str | None = None
    modified: bool = False  # the checkout's streamsave has uncommitted changes

    def info(self) -> dict[str, object]:
        return {"label": self.label, "commit": self.commit, "streamsave_modified": self.modified}

    def env_and_cwd(self) -> tuple[dict[str, str], Path]:
        env = dict(os.environ)
        roots = [str(self.import_root)] if self.import_root else []
        roots += [str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        env["PYTHONPATH"] = os.pathsep.join(roots)
        return env, self.import_root or REPO

    def owns(self, module_file: str) -> bool:
        """Whether ``module_file`` (a streamsave module's ``__file__``) is in this side's tree."""
        return Path(module_file).resolve().is_relative_to(self.package_dir.resolve())


def git(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          timeout=120, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def checkout_side() -> Side:
    """The checkout being benchmarked (its working tree, uncommitted changes included)."""
    dirty = bool(git("status", "--porcelain", "--", "streamsave", check=False))
    label = f"working tree ({git('rev-parse', '--short', 'HEAD', check=False) or '?'}"
    return Side("after", label + (", modified)" if dirty else ")"), REPO / "streamsave",
                commit=git("rev-parse", "HEAD", check=False) or None, modified=dirty)


def _add_worktree(path: Path, commit: str) -> None:
    """``git worktree add``, retried while another git process holds a lock."""
    for attempt in range(10):
        proc = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet",
                               str(path), commit], capture_output=True, text=True, timeout=300,
                              check=False)
        if proc.returncode == 0:
            return
        if ".lock" not in proc.stderr or attempt == 9:
            raise SystemExit(f"git worktree add {commit} failed: {proc.stderr.strip()}")
        time.sleep(0.5 + attempt * 0.5)


def _remove_worktree(path: Path) -> None:
    git("worktree", "remove", "--force", str(path), check=False)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    git("worktree", "prune", check=False)


@contextmanager
def revision_side(rev: str, key: str = "before") -> Iterator[Side]:
    """A temporary worktree of ``rev`` (outside the repository), removed on exit."""
    commit = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if not commit:
        raise SystemExit(f"--against {rev!r}: not a commit of this repository")
    tmp = Path(tempfile.mkdtemp(prefix="streamsave-against-")).resolve()
    if tmp.is_relative_to(REPO.resolve()):
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"--against: the temporary directory {tmp} is inside the repository; "
                         "set TMPDIR elsewhere")
    src, root = tmp / "src", tmp / "root"
    try:
        _add_worktree(src, commit)
        package = src / "streamsave"
        if not (package / "__init__.py").is_file():
            raise SystemExit(f"--against {rev!r}: that commit has no streamsave package")
        root.mkdir()
        (root / "streamsave").symlink_to(package, target_is_directory=True)
        short = git("rev-parse", "--short", commit, check=False) or commit[:7]
        yield Side(key, f"{rev} ({short})" if rev != short else short, package, root,
                   commit=commit)
    finally:
        _remove_worktree(src)
        shutil.rmtree(tmp, ignore_errors=True)
