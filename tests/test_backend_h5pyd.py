"""The h5pyd backend against a real HSDS (tests/_hsds.py): the service itself (Unix
sockets only, every process stopped), what the engine stores there read back with
h5pyd and with open_reader, batching, bad input, credentials, and a service that
dies during a recording."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import numpy.typing as npt
import pytest

import streamsave
from tests._hsds import HsdsServer, in_ci, start_server, tcp_listeners
from tests.backend_conformance import BackendConformance

if in_ci():  # the HSDS tests must run there
    import h5pyd
else:
    h5pyd = pytest.importorskip("h5pyd", reason="h5pyd is not installed (pip install 'streamsave[hsds]')")

T0 = 1_700_000_000.0


def domain(server: HsdsServer, tmp_path: Path, name: str = "run.h5") -> str:
    """A domain of its own for each test, in the user's home folder."""
    return f"{server.home}{tmp_path.name}-{name}"


def image(i: int, shape: tuple[int, ...] = (64, 48)) -> npt.NDArray[np.uint16]:
    return ((np.arange(math.prod(shape)) * 7 + i * 13) % 4096).astype(np.uint16).reshape(shape)


async def record(target: str, frames: int, *, shape: tuple[int, ...] = (64, 48), **options: Any) -> str:
    async with streamsave.open_saver(target, backend="h5pyd", mode="w", flush_interval=60, **options) as saver:
        det = saver.add_detector("Camera", settings={"exposure": 0.25, "mode": "fast"})
        ch = det.add_channel("image", shape=shape, dtype="uint16", units="counts")
        temp = saver.add_detector("Sensor").add_channel("T", units="K")
        for i in range(frames):
            await ch.push(image(i, shape), timestamp=T0 + i)
            await temp.push(300.0 + i, timestamp=T0 + i)
            if i == frames // 2:
                await saver.flush()
    return target


class TestH5pydBackend(BackendConformance):
    """The conformance scenarios on HSDS: recordings are domains in the user's home
    folder, read back with h5pyd (the plain library here) and open_reader."""

    backend = "h5pyd"

    @pytest.fixture(autouse=True)
    def _service(self, hsds: HsdsServer) -> None:
        type(self).backend_options = hsds.connection()
        self.server = hsds

    def target(self, tmp_path: Path, name: str) -> str:
        return domain(self.server, tmp_path, name)

    @contextmanager
    def open_plain(self, target: str) -> Iterator[Any]:
        with h5pyd.File(target, "r", **self.server.connection()) as f:
            yield f

    def check_stored_compressed(self, dataset: Any, compression: str | None) -> None:
        """HSDS compresses each chunk itself, with the codec asked for (byte shuffle)."""
        if compression is None:
            assert dataset.compression is None
        else:
            assert dataset.compression == compression.split("-")[1] and dataset.shuffle


# ---------------------------------------------------------------------- the service
def test_the_service_listens_on_unix_sockets_only(hsds: HsdsServer) -> None:
    procs = hsds.processes()
    assert len(procs) == 4, [p.cmdline() for p in procs]  # the launcher, a service node, 2 data nodes
    assert tcp_listeners([p.pid for p in procs]) == []
    for proc in procs:  # the password is in a file, not on a command line
        assert hsds.password not in " ".join(proc.cmdline())
    assert hsds.endpoint.startswith("http+unix://")
    with socket.socket() as listener:  # the check finds a TCP listener when there is one
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert [(pid, port) for pid, _, port in tcp_listeners([os.getpid()])] == \
            [(os.getpid(), listener.getsockname()[1])]


def test_stopping_the_service_ends_every_process(tmp_path: Path) -> None:
    server = start_server(tmp_path / "hsds")
    try:
        pids = [p.pid for p in server.processes()]
        assert len(pids) == 4
    finally:
        server.cleanup()
    assert server.processes() == []
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), pid


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


# ---------------------------------------------------------------------- read back
@pytest.mark.parametrize("compression", [None, "blosc2-lz4", "blosc2-zlib"], ids=str)
async def test_frames_read_back_with_h5pyd_and_open_reader(hsds: HsdsServer, tmp_path: Path,
                                                           compression: str | None) -> None:
    target = await record(domain(hsds, tmp_path), 41, compression=compression, backend_options=hsds.connection())
    with h5pyd.File(target, "r", **hsds.connection()) as f:
        data = f["/RawData/Detector000/Data2D/CH00/EnlData00"]
        np.testing.assert_array_equal(data[()], [image(i) for i in range(41)])
        np.testing.assert_array_equal(f["/RawData/Detector000/Data2D/CH00/Axis00"][()], T0 + np.arange(41))
        assert data.compression == {None: None, "blosc2-lz4": "lz4", "blosc2-zlib": "gzip"}[compression]
        assert data.shuffle is (compression is not None)
        assert json.loads(data.attrs["shape"])["data"] == "(41, 64, 48)"
        assert data.attrs["backend"] == "h5pyd"
        assert int(f["/streamsave/writing"][0]) == 0
    with streamsave.open_reader(target, backend="h5pyd", backend_options=hsds.connection()) as run:
        assert set(run.channels) == {"Camera/image", "Sensor/T"}
        assert not run.live
        ch = run.channels["Camera/image"]
        assert ch.shape == (41, 64, 48) and ch.units == "counts"
        assert ch.settings == {"exposure": 0.25, "mode": "fast"}
        np.testing.assert_array_equal(ch[5], image(5))
        np.testing.assert_array_equal(ch[::-4], [image(i) for i in range(40, -1, -4)])
        np.testing.assert_array_equal(run.channels["Sensor/T"][:], 300.0 + np.arange(41))
        np.testing.assert_array_equal(run.channels["Sensor/T"].timestamps[:], T0 + np.arange(41))


def _tree(node: Any, prefix: str = "") -> dict[str, dict[str, str]]:
    """Every node's attributes as text, by path (values that name the file or the
    moment of the recording left out)."""
    skip = {"file", "date", "time", "timestamp", "backend"}
    out: dict[str, dict[str, str]] = {}

    def value(v: Any) -> str:
        if isinstance(v, bytes | np.bytes_):
            return bytes(v).decode()
        if isinstance(v, np.ndarray):
            return repr([value(x) for x in v.tolist()])
        return str(v)

    out[prefix or "/"] = {k: value(node.attrs[k]) for k in node.attrs if k not in skip}
    if hasattr(node, "keys"):
        for key in node:
            out.update(_tree(node[key], f"{prefix}/{key}"))
    return out


async def test_the_tree_and_attributes_are_the_h5py_backends(hsds: HsdsServer, tmp_path: Path) -> None:
    local = tmp_path / "local.h5"
    async with streamsave.open_saver(local, mode="w", flush_interval=60, compression="blosc2-lz4", swmr=False) as saver:
        det = saver.add_detector("Camera", settings={"exposure": 0.25, "mode": "fast"})
        ch = det.add_channel("image", shape=(64, 48), dtype="uint16", units="counts")
        temp = saver.add_detector("Sensor").add_channel("T", units="K")
        for i in range(9):
            await ch.push(image(i), timestamp=T0 + i)
            await temp.push(300.0 + i, timestamp=T0 + i)
            if i == 4:
                await saver.flush()
    target = await record(domain(hsds, tmp_path), 9, compression="blosc2-lz4", backend_options=hsds.connection())
    with h5py.File(local, "r") as f:
        expected = _tree(f)
    with h5pyd.File(target, "r", **hsds.connection()) as f:
        got = _tree(f)
    assert set(got) == set(expected)
    for path, attrs in expected.items():
        assert got[path] == attrs, path


async def test_rows_are_joined_into_requests_under_the_limit(hsds: HsdsServer, tmp_path: Path) -> None:
    """Frames of 96 KiB, chunks of 2 (as the engine chooses for chunk_bytes=200 kB):
    the data goes in requests of about batch_bytes, never more than the service takes."""
    from streamsave.backends.h5pyd import H5pydBackend

    sizes: list[int] = []

    class Counting(H5pydBackend):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            conn = self.file.id.db.plugin.http_conn
            put = conn.PUT

            def counted(req: str, body: Any = None, **kw: Any) -> Any:
                if req.endswith("/value") and isinstance(body, bytes) and len(body) > 100_000:
                    sizes.append(len(body))
                return put(req, body=body, **kw)

            conn.PUT = counted

    batch = 2 * 2**20
    target = domain(hsds, tmp_path)
    frames = np.array([image(i, (256, 192)) for i in range(100)])
    async with streamsave.open_saver(target, backend=Counting, mode="w", flush_interval=60, chunk_bytes=200_000,
                                     backend_options={**hsds.connection(), "batch_bytes": batch}) as saver:
        ch = saver.add_detector("Camera").add_channel("image", shape=(256, 192), dtype="uint16")
        assert ch.chunk_frames == 2
        await ch.push_many(frames[:57])
        await saver.flush()
        await ch.push_many(frames[57:])
    assert sum(sizes) >= frames.nbytes  # a partly filled chunk is sent again with the frames that follow
    assert max(sizes) <= batch
    assert sorted(sizes)[len(sizes) // 2] >= batch - frames[0].nbytes * 2, sizes  # most requests are full
    assert len(sizes) <= 2 * frames.nbytes // batch + 4, sizes  # not one request per chunk (50 of them)
    with streamsave.open_reader(target, backend="h5pyd", backend_options=hsds.connection()) as run:
        np.testing.assert_array_equal(run.channels["Camera/image"][:], frames)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("options", "words"), [
    ({"compression": "blosc2-zstd"}, ["zstd", "'blosc2-lz4'", "'blosc2-lz4hc'", "'blosc2-blosclz'", "'blosc2-zlib'"]),
    ({"compression": streamsave.Compression(codec="lz4", shuffle="bit")}, ["shuffle='bit'", "'byte'", "'none'"]),
    ({"swmr": True}, ["SWMR", "swmr=False"]),
    ({"chunk_bytes": 101 * 2**20}, ["100 MiB", "in one request"]),
], ids=["zstd", "bitshuffle", "swmr", "request"])
async def test_what_hsds_cannot_store_is_refused_naming_what_it_can(
        hsds: HsdsServer, tmp_path: Path, options: dict[str, Any], words: list[str]) -> None:
    target = domain(hsds, tmp_path)
    with pytest.raises(streamsave.ConfigError) as info:
        async with streamsave.open_saver(target, backend="h5pyd", backend_options=hsds.connection(), **options):
            pass
    for word in words:
        assert word in str(info.value), str(info.value)
    with pytest.raises(streamsave.ReadError, match="does not exist"):  # refused before the domain was created
        streamsave.open_reader(target, backend="h5pyd", backend_options=hsds.connection())


async def test_an_existing_domain_is_kept_unless_mode_w(hsds: HsdsServer, tmp_path: Path) -> None:
    target = await record(domain(hsds, tmp_path), 3, backend_options=hsds.connection())
    with pytest.raises(streamsave.StorageError, match="the domain exists; pass mode='w'"):
        async with streamsave.open_saver(target, backend="h5pyd", backend_options=hsds.connection(), mode="x"):
            pass
    with streamsave.open_reader(target, backend="h5pyd", backend_options=hsds.connection()) as run:
        assert len(run.channels["Camera/image"]) == 3


async def test_a_missing_domain_or_folder_is_a_clear_error(hsds: HsdsServer, tmp_path: Path) -> None:
    with pytest.raises(streamsave.ReadError, match="does not exist"):
        streamsave.open_reader(domain(hsds, tmp_path, "never.h5"), backend="h5pyd",
                               backend_options=hsds.connection())
    with pytest.raises(streamsave.StorageError, match="HSDS: could not open the domain"):
        async with streamsave.open_saver("/home/nobody-here/run.h5", backend="h5pyd",
                                         backend_options=hsds.connection()):
            pass


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


async def test_a_refused_password_is_never_shown(hsds: HsdsServer, tmp_path: Path,
                                                 everything_logged: pytest.LogCaptureFixture) -> None:
    wrong = "not-the-password-0123"
    bad = {**hsds.connection(), "password": wrong}
    with pytest.raises(streamsave.StorageError) as info:
        async with streamsave.open_saver(domain(hsds, tmp_path), backend="h5pyd", backend_options=bad):
            pass
    with pytest.raises(streamsave.ReadError) as read_info:
        streamsave.open_reader(f"{hsds.home}anything.h5", backend="h5pyd", backend_options=bad)
    target = await record(domain(hsds, tmp_path, "ok.h5"), 4, backend_options=hsds.connection())
    with streamsave.open_reader(target, backend="h5pyd", backend_options=hsds.connection()) as run:
        shown = [str(run), repr(run)]
    for error in (info.value, read_info.value):
        shown += [str(error), repr(error), repr(error.__cause__), repr(error.__context__)]
    assert "401" in str(info.value) or "refused the credentials" in str(info.value), str(info.value)
    assert logging.getLogger().level == logging.DEBUG  # h5pyd's open did not silence the program's logging
    for secret in (wrong, hsds.password):
        for text in [*shown, everything_logged.text]:
            assert secret not in text


CONVENTIONS = textwrap.dedent("""
    import sys, anyio, numpy as np, streamsave

    async def main():
        async with streamsave.open_saver(sys.argv[1], backend="h5pyd", mode="w") as saver:
            await saver.add_detector("D").add_channel("c", shape=(3,)).push_many(np.arange(6.0).reshape(2, 3))
        with streamsave.open_reader(sys.argv[1], backend="h5pyd") as run:
            print(run.channels["D/c"][:].sum())

    anyio.run(main)
""")


@pytest.mark.parametrize("source", ["environment", "hscfg"])
async def test_the_connection_comes_from_h5pyds_conventions(hsds: HsdsServer, tmp_path: Path, source: str) -> None:
    """No backend_options: HS_ENDPOINT / HS_USERNAME / HS_PASSWORD, or ~/.hscfg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HS_")}
    env["HOME"] = str(tmp_path)
    settings = {"HS_ENDPOINT": hsds.endpoint, "HS_USERNAME": hsds.username, "HS_PASSWORD": hsds.password}
    if source == "environment":
        env.update(settings)
    else:
        (tmp_path / ".hscfg").write_text("".join(f"{k.lower()} = {v}\n" for k, v in settings.items()))
    with anyio.fail_after(120):
        done = await anyio.run_process([sys.executable, "-c", CONVENTIONS, domain(hsds, tmp_path)], check=False,
                                       env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["15.0"]


# ---------------------------------------------------------------------- a service that dies
async def test_a_service_killed_during_a_recording(tmp_path: Path) -> None:
    """Producers get a StorageError (no hang); what a flush with fsync="flush" stored
    reads back after the service restarts on the same storage."""
    server = start_server(tmp_path / "hsds")
    try:
        target = f"{server.home}killed.h5"
        conn = server.connection()
        with anyio.fail_after(90):
            saver = await streamsave.Saver.open(target, backend="h5pyd", backend_options=conn, flush_interval=60,
                                                fsync="flush", chunk_bytes=64 * 1024)
            ch = saver.add_detector("Camera").add_channel("image", shape=(64, 48), dtype="uint16")
            for i in range(50):
                await ch.push(image(i), timestamp=T0 + i)
            durable = await saver.flush()
            assert durable == {"Camera/image": 50}
            await saver.flush()  # nothing new: the journal of the first flush reaches storage too
            for i in range(50, 80):
                await ch.push(image(i), timestamp=T0 + i)
            server.kill()
            assert server.processes() == []
            with pytest.raises(streamsave.StorageError) as info:
                await saver.flush()
            with pytest.raises(streamsave.StorageError):  # every later call raises that failure
                for i in range(80, 100_000):
                    await ch.push(image(i), timestamp=T0 + i)
            with pytest.raises(streamsave.StorageError):
                await saver.aclose()
        assert server.password not in str(info.value)
        server.start()
        with streamsave.open_reader(target, backend="h5pyd", backend_options=conn) as run:
            got = run.channels["Camera/image"]
            assert len(got) >= 50
            np.testing.assert_array_equal(got[:50], [image(i) for i in range(50)])
            np.testing.assert_array_equal(got.timestamps[:50], T0 + np.arange(50))
    finally:
        server.cleanup()
    assert server.processes() == []


async def test_the_backends_example_records_to_hsds(hsds: HsdsServer, tmp_path: Path) -> None:
    """examples/record_backends.py with --backend h5pyd, the connection from HS_*."""
    example = Path(__file__).resolve().parents[1] / "examples" / "record_backends.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HS_")}
    env.update(HS_ENDPOINT=hsds.endpoint, HS_USERNAME=hsds.username, HS_PASSWORD=hsds.password, HOME=str(tmp_path))
    target = domain(hsds, tmp_path, "example.h5")
    with anyio.fail_after(120):
        done = await anyio.run_process([sys.executable, "-W", "error", str(example), target, "--backend", "h5pyd",
                                        "--duration", "1", "--camera-rate", "50"], check=False, env=env, cwd=tmp_path)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "with backend 'h5pyd' (SWMR: False" in out and out.count("read back ") == 3, out
    assert hsds.password not in out + done.stderr.decode()
    with h5pyd.File(target, "r", **hsds.connection()) as f:
        data = f["/RawData/Detector000/Data2D/CH00/EnlData00"]
        assert data.shape[0] > 0 and data.compression == "lz4" and data.attrs["backend"] == "h5pyd"


async def test_a_reader_follows_the_flushes_of_a_writer(hsds: HsdsServer, tmp_path: Path) -> None:
    """No SWMR, but a reader sees each flush: live while the writer has the domain."""
    target = domain(hsds, tmp_path)
    conn = hsds.connection()
    async with streamsave.open_saver(target, backend="h5pyd", backend_options=conn, flush_interval=60) as saver:
        ch = saver.add_detector("Camera").add_channel("image", shape=(64, 48), dtype="uint16")
        for i in range(7):
            await ch.push(image(i), timestamp=T0 + i)
        await saver.flush()
        with streamsave.open_reader(target, backend="h5pyd", backend_options=conn) as run:
            got = run.channels["Camera/image"]
            assert run.live and run.writing and len(got) == 7
            for i in range(7, 19):
                await ch.push(image(i), timestamp=T0 + i)
            assert got.refresh() == 7  # not flushed yet
            await saver.flush()
            assert got.refresh() == 19
            np.testing.assert_array_equal(got[7:19], [image(i) for i in range(7, 19)])
    with streamsave.open_reader(target, backend="h5pyd", backend_options=conn) as run:
        assert not run.live and len(run.channels["Camera/image"]) == 19
