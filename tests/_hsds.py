"""A real HSDS (the HDF Group's REST service for HDF5 data) for tests and benchmarks.

:class:`HsdsServer` starts ``hsds`` with POSIX storage in a directory of its own,
listening on Unix sockets only (no TCP port), with two data nodes, and stops it
again with its whole process group. The password is never on a command line
(where ``ps`` shows it): it is in a password file readable by its owner alone.

Facts this relies on (HSDS 1.0.2):

- ``hsds --socket_dir D`` makes the service node listen on ``D/sn_1.sock`` and each
  data node on ``D/dn_N.sock``; the endpoint is ``http+unix://`` plus the URL-quoted
  path of ``sn_1.sock``. Socket paths are limited to about 100 bytes, so ``D`` is kept
  short (``hsds`` refuses directories longer than 63 characters).
- The bucket name must also be in the environment (``BUCKET_NAME``): the node
  processes do not get ``--bucket_name``.
- ``--password_file`` excludes ``--hs_username``; the user is made the service's
  administrator with ``ADMIN_USER`` in the environment, which lets it create the
  top-level ``/home/`` folder.
- The launcher starts one process per node; SIGTERM to the launcher alone orphans
  them, so it is started in a new session and the whole group is signalled.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Any, Final

__all__ = ("HsdsServer", "HsdsUnavailable", "hsds_command", "in_ci", "start_server", "tcp_listeners", "unavailable")

#: how long HSDS may take to answer its first request (measured: 1-1.6 s when idle)
START_TIMEOUT: Final = 60.0
#: how long the processes may take to end after SIGTERM before they are killed
STOP_TIMEOUT: Final = 15.0
#: the longest socket directory ``hsds`` accepts
_MAX_SOCKET_DIR: Final = 63


class HsdsUnavailable(RuntimeError):
    """HSDS is not installed, or would not start."""


def hsds_command() -> list[str]:
    """The command that runs the ``hsds`` launcher of this Python environment.

    :raises HsdsUnavailable: the ``hsds`` package is not installed.
    """
    script = Path(sys.executable).with_name("hsds")
    if script.is_file():
        return [str(script)]
    found = shutil.which("hsds")
    if found is None:
        raise HsdsUnavailable("the hsds package is not installed (pip install 'streamsave[hsds]')")
    return [found]


class HsdsServer:
    """One HSDS service with POSIX storage under ``root``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Stopping
    and starting again on the same ``root`` keeps what the service had written to
    storage (a restart after a crash).

    :param root: a directory for the storage, the password file and the logs.
    :param username: the one user, made administrator.
    :param nodes: data nodes.
    """

    bucket: Final = "streamsave"

    def __init__(self, root: Path, *, username: str = "tester", password: str | None = None,
                 nodes: int = 2) -> None:
        self.root = root
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(16)
        self.nodes = nodes
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: str | None = None
        self._log: Any = None

    # ------------------------------------------------------------------ where it is
    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def log_path(self) -> Path:
        return self.root / "hsds.log"

    @property
    def socket_dir(self) -> str:
        if self._socket_dir is None:
            raise HsdsUnavailable("HSDS was not started")
        return self._socket_dir

    @property
    def endpoint(self) -> str:
        """The URL h5pyd connects to (``http+unix://`` and the quoted socket path)."""
        return "http+unix://" + urllib.parse.quote(os.path.join(self.socket_dir, "sn_1.sock"), safe="")

    @property
    def home(self) -> str:
        """The user's home folder, ``/home/USER/``."""
        return f"/home/{self.username}/"

    def connection(self) -> dict[str, str]:
        """``endpoint``, ``username`` and ``password``, as h5pyd's keywords take them."""
        return {"endpoint": self.endpoint, "username": self.username, "password": self.password}

    @property
    def pgid(self) -> int | None:
        """The process group of the launcher and its nodes, while started."""
        return None if self._process is None else self._process.pid

    # ------------------------------------------------------------------ life
    def __enter__(self) -> HsdsServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> None:
        """Start the service and wait until it answers; create ``/home/USER/``.

        The launcher gives up when its nodes' sockets take more than 10 s to appear
        (a loaded machine): it is then started again, ``attempts`` times in all.

        :raises HsdsUnavailable: ``hsds`` is missing, or did not answer within
            :data:`START_TIMEOUT` seconds (its log is quoted).
        """
        for attempt in range(attempts):
            try:
                self._start()
                return
            except HsdsUnavailable:
                if attempt == attempts - 1:
                    raise

    def _start(self) -> None:
        if self._process is not None:
            raise RuntimeError("HSDS is already running")
        command = hsds_command()
        (self.storage / self.bucket).mkdir(parents=True, exist_ok=True)
        passwd = self.root / "passwd.txt"
        fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{self.username}:{self.password}\n")
        if self._socket_dir is None:
            self._socket_dir = tempfile.mkdtemp(prefix="streamsave-hsds-")
            if len(self._socket_dir) > _MAX_SOCKET_DIR:
                raise HsdsUnavailable(f"the temporary directory {self._socket_dir!r} is too long for HSDS's "
                                      f"sockets (at most {_MAX_SOCKET_DIR} characters): set TMPDIR shorter")
        for stale in Path(self._socket_dir).glob("*.sock"):  # left by a killed service: not a sign of readiness
            stale.unlink()
        env = {key: value for key, value in os.environ.items() if not key.startswith("HS_")}
        env.update(BUCKET_NAME=self.bucket, ADMIN_USER=self.username, LOG_LEVEL="WARNING",
                   PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop)
        self._process = subprocess.Popen(
            [*command, "--root_dir", str(self.storage), "--bucket_name", self.bucket,
             "--socket_dir", self.socket_dir, "--password_file", str(passwd), "--count", str(self.nodes),
             "--logfile", str(self.root / "nodes.log")],
            cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            self._wait_ready()
            self._make_home()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        import requests
        import requests_unixsocket

        deadline = time.monotonic() + START_TIMEOUT
        session = requests_unixsocket.Session()
        try:
            while True:
                process = self._process
                if process is None or process.poll() is not None:
                    raise HsdsUnavailable(f"hsds ended at start:\n{self.log_tail()}")
                sockets = ["sn_1.sock", *(f"dn_{i + 1}.sock" for i in range(self.nodes))]
                if all(os.path.exists(os.path.join(self.socket_dir, name)) for name in sockets):
                    with contextlib.suppress(requests.RequestException, ValueError):
                        about = session.get(self.endpoint + "/about", timeout=5)
                        if about.status_code == 200 and about.json().get("state") == "READY":
                            return
                if time.monotonic() > deadline:
                    raise HsdsUnavailable(f"hsds did not answer within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")
                time.sleep(0.1)
        finally:
            session.close()

    def _make_home(self) -> None:
        """Create ``/home/`` and ``/home/USER/`` (HSDS has no folders of its own)."""
        import h5pyd

        for folder in ("/home/", self.home):
            try:
                h5pyd.Folder(folder, mode="r", **self.connection()).close()
            except OSError:
                h5pyd.Folder(folder, mode="x", **self.connection()).close()

    def processes(self) -> list[Any]:
        """The processes of the service's process group still alive (psutil objects)."""
        import psutil

        pgid = self.pgid
        if pgid is None:
            return []
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        return found

    def kill(self) -> None:
        """Kill every process of the service at once (SIGKILL): a server that dies."""
        pgid = self.pgid
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """Stop the whole process group (SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`).

        :raises RuntimeError: a process of the group is still alive afterwards.
        """
        process = self._process
        if process is None:
            return
        # SIGINT to the launcher first: it then stops its nodes and writes the end of their logs;
        # then SIGTERM to the whole group
        for send, sig in ((os.kill, signal.SIGINT), (os.killpg, signal.SIGTERM)):
            with contextlib.suppress(ProcessLookupError):
                send(process.pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT / 2
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if left:
            raise RuntimeError(f"HSDS processes still alive after stopping: {[p.pid for p in left]}")

    def restart(self) -> None:
        """Start again on the same storage (after :meth:`kill` or :meth:`stop`)."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop, and remove the socket directory."""
        self.stop()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the service's logs (to explain a failure)."""
        out = []
        for path in (self.log_path, self.root / "nodes.log"):
            with contextlib.suppress(OSError):
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)


def tcp_listeners(pids: list[int]) -> list[tuple[int, str, int]]:
    """``(pid, address, port)`` of every TCP socket (IPv4 or IPv6) in state LISTEN
    held by one of ``pids``, read from ``/proc/net/tcp*`` and each process's file
    descriptors (so it needs no privileges for one's own processes)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes[target[8:-1]] = pid
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh)
            for row in fh:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # 0A: TCP_LISTEN
                    address, port = local.rsplit(":", 1)
                    found.append((inodes[inode], address, int(port, 16)))
    return found


def in_ci() -> bool:
    """Running in CI (``.ci/run`` exports ``STREAMSAVE_CI=1``; most CI services set ``CI``),
    where HSDS tests must run: they fail instead of skipping."""
    return os.environ.get("STREAMSAVE_CI") == "1" or os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip the test (outside CI) or fail it (in CI) because HSDS cannot run."""
    import pytest

    if in_ci():
        pytest.fail(f"HSDS tests must run in CI, but {reason}")
    pytest.skip(f"{reason}; install it with pip install 'streamsave[hsds]' to run the HSDS tests")


def start_server(root: Path, **options: Any) -> HsdsServer:
    """A started :class:`HsdsServer`, or a skip (a failure in CI) saying why not."""
    try:
        hsds_command()
        import h5pyd  # noqa: F401
    except (HsdsUnavailable, ImportError) as exc:
        unavailable(f"HSDS is not available ({exc})")
    server = HsdsServer(root, **options)
    try:
        server.start()
    except HsdsUnavailable as exc:
        server.cleanup()
        unavailable(f"HSDS would not start ({exc})")
    return server
