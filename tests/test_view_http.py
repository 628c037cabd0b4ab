"""``streamsave view`` over plain HTTP, against the real server in a subprocess: the
address on stdout, confinement to the one file (every escape refused), links and
virtual datasets never followed, live files, the export endpoint, Ctrl-C, errors."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import tifffile

import streamsave
from streamsave import sync
from tests._view import TIMEOUT, ViewServer

SECRET: Final = "TOP-SECRET-4242"
FRAMES: Final = 6


def write_recorded(path: Path) -> None:
    """A small streamsave file: a 16x24 camera, a spectrum with its wavelength axis, a thermometer."""
    with sync.open_saver(path, compression="blosc2-lz4") as saver:
        cam = saver.add_detector("Camera", settings={"exposure_ms": 2.5, "gain": {"mode": "high", "value": 4}})
        image = cam.add_channel("image", shape=(16, 24), dtype="uint16", units="counts",
                                axes=[streamsave.Axis("row", units="px"), streamsave.Axis("column", units="px")])
        spectrum = saver.add_detector("Spectrometer").add_channel(
            "spectrum", shape=(32,), axes=[streamsave.Axis("wavelength", units="nm",
                                                           values=np.linspace(400, 700, 32))])
        temperature = saver.add_detector("Thermometer").add_channel("T", units="K")
        for i in range(FRAMES):
            image.push(frame(i))
            spectrum.push(np.sin(np.arange(32) / 4) + i)
            temperature.push(290.0 + i)


def frame(i: int) -> np.ndarray[Any, np.dtype[np.uint16]]:
    return (np.arange(16 * 24, dtype=np.uint16).reshape(16, 24) + 100 * i).astype(np.uint16)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``served/run.h5`` beside other files and a symlink, and a secret file outside."""
    root = tmp_path_factory.mktemp("view")
    outside, served = root / "outside", root / "served"
    outside.mkdir()
    served.mkdir()
    secret = outside / "secret.h5"
    with h5py.File(secret, "w") as f:
        f.attrs["marker"] = SECRET
        f.create_dataset("data", data=np.full(8, 4242.0)).attrs["marker"] = SECRET
    run = served / "run.h5"
    write_recorded(run)
    with h5py.File(served / "other.h5", "w") as f:
        f.attrs["marker"] = SECRET
    (served / "link.h5").symlink_to(secret)
    hostile = served / "hostile.h5"
    with h5py.File(hostile, "w") as f:
        f.create_dataset("ok", data=np.arange(10.0))
        f["escape"] = h5py.ExternalLink(str(secret), "/")
        f["escape_relative"] = h5py.ExternalLink("../outside/secret.h5", "/data")
        f["soft"] = h5py.SoftLink("/escape/data")
        f["dangling"] = h5py.SoftLink("/nowhere")
        layout = h5py.VirtualLayout(shape=(8,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(secret), "data", shape=(8,))
        f.create_virtual_dataset("virtual", layout)
        f.create_dataset("external_storage", shape=(8,), dtype="f8", external=[(str(outside / "raw.bin"), 0, 64)])
    (outside / "raw.bin").write_bytes(np.full(8, 4242.0).tobytes())
    return {"run": run, "secret": secret, "hostile": hostile, "served": served}


@pytest.fixture(scope="module")
def server(tree: dict[str, Path]) -> Iterator[ViewServer]:
    with ViewServer(tree["run"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def hostile(tree: dict[str, Path]) -> Iterator[ViewServer]:
    with ViewServer(tree["hostile"]) as srv:
        yield srv


def body_json(body: bytes) -> Any:
    return json.loads(body)


# ------------------------------------------------------------------------------ the server
def test_first_line_is_the_address_on_loopback(server: ViewServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/"
    status, page = server.request("/")
    assert status == 200 and b"<div id=\"root\">" in page
    asset = page.split(b'src="./')[1].split(b'"')[0].decode()
    status, script = server.request("/" + asset)
    assert status == 200 and len(script) > 100_000  # the built H5Web bundle


def test_meta_attr_and_data_of_the_served_file(server: ViewServer, tree: dict[str, Path]) -> None:
    path = "/RawData/Detector000/Data2D/CH00/EnlData00"
    status, body = server.get("/api/meta", file="run.h5", path=path)
    assert status == 200, body
    meta = body_json(body)
    assert meta["kind"] == "dataset" and meta["shape"] == [FRAMES, 16, 24]
    status, body = server.get("/api/attr", file="run.h5", path="/RawData/Detector000")
    assert status == 200 and body_json(body)["TITLE"] == "Camera"
    status, body = server.get("/api/data", file="run.h5", path=path, selection="3,:,:", format="bin", dtype="safe")
    assert status == 200
    np.testing.assert_array_equal(np.frombuffer(body, dtype=np.uint16).reshape(16, 24), frame(3))
    status, body = server.get("/api/data", file="run.h5", path=path, selection="5,2,:")
    assert status == 200 and body_json(body) == frame(5)[2].tolist()
    status, body = server.get("/api/stats", file="run.h5", path=path, selection="0,:,:")
    assert status == 200 and body_json(body)["max"] == int(frame(0).max())
    status, body = server.get("/api/paths", file="run.h5", path="/")
    assert status == 200 and path in body_json(body)


def test_data_formats_that_could_pickle_are_refused(server: ViewServer) -> None:
    path = "/RawData/Detector000/Data2D/CH00/EnlData00"
    for fmt in ("npy", "csv", "tiff", "pickle"):
        status, body = server.get("/api/data", file="run.h5", path=path, format=fmt)
        assert status == 422 and b"/api/export" in body, (fmt, body)


def test_summary_lists_channels_and_settings(server: ViewServer) -> None:
    status, body = server.get("/api/summary", file="run.h5")
    assert status == 200
    summary = body_json(body)
    assert summary["writing"] is False and summary["file"] == "run.h5"
    counts = {c["name"]: c["frames"] for c in summary["channels"]}
    assert counts == {"Camera/image": FRAMES, "Spectrometer/spectrum": FRAMES, "Thermometer/T": FRAMES}
    assert summary["settings"]["Camera"] == {"exposure_ms": 2.5, "gain": {"mode": "high", "value": 4}}


# ------------------------------------------------------------------------------ confinement
ROUTES: Final = ("/api/meta", "/api/attr", "/api/data", "/api/stats", "/api/paths", "/api/summary", "/api/export")


def escapes(tree: dict[str, Path]) -> list[str]:
    """``file`` values that name anything but the served file, raw (sent unencoded unless
    they carry their own encoding)."""
    secret, run = tree["secret"], tree["run"]
    plain = ["../outside/secret.h5", "../../outside/secret.h5", str(secret), str(run), "other.h5", "link.h5",
             "./run.h5", "run.h5/", "run.h5/../run.h5", "served/run.h5", "../served/run.h5", "RUN.H5",
             "run.h5 ", " run.h5", "run.h5\x00", "run.h5\x00../outside/secret.h5", "..\\outside\\secret.h5",
             "file://" + str(secret), "//" + str(secret), "~/run.h5", "", ".", "..", "/", "run.h5;", "run.h5?",
             "\u2024\u2024/outside/secret.h5", "\uff0e\uff0e/outside/secret.h5", "run\u2215h5", "r\u0075n.h5\u200b",
             "../" * 20 + "etc/passwd", "/etc/passwd", "/proc/self/environ", "/dev/zero", "C:\\Windows\\win.ini"]
    encoded = [urllib.parse.quote(v, safe="") for v in plain]
    pre_encoded = ["%2e%2e%2foutside%2fsecret.h5", "%2E%2E/outside/secret.h5", "..%2foutside%2fsecret.h5",
                   "%252e%252e%252foutside%252fsecret.h5", "..%252foutside%252fsecret.h5", "%c0%ae%c0%ae/outside",
                   "run.h5%00", "run%2eh5%2f..%2f..%2foutside%2fsecret.h5", "%2fetc%2fpasswd",
                   "..%5coutside%5csecret.h5"]
    return encoded + pre_encoded


@pytest.mark.parametrize("route", ROUTES)
def test_every_other_file_is_refused(server: ViewServer, tree: dict[str, Path], route: str) -> None:
    for value in escapes(tree):
        status, body = server.request(f"{route}?file={value}&path=/")
        assert status == 403, (route, value, status, body[:200])
        assert SECRET.encode() not in body and b"root:" not in body
    status, body = server.request(f"{route}?path=/")  # no file at all
    assert status == 403, (route, body)


@pytest.mark.parametrize("route", ROUTES)
def test_a_repeated_file_parameter_never_opens_another_file(server: ViewServer, route: str) -> None:
    for query in ("file=run.h5&file=../outside/secret.h5", "file=../outside/secret.h5&file=run.h5",
                  "file=run.h5&file=link.h5&file=other.h5"):
        status, body = server.request(f"{route}?{query}&path=/")
        assert SECRET.encode() not in body, (route, query)
        assert status in (200, 403, 404, 422), (route, query, status)


def test_static_files_do_not_escape_their_directory(server: ViewServer) -> None:
    for target in ("/../_server.py", "/..%2f_server.py", "/%2e%2e/_server.py", "/assets/../../_server.py",
                   "/assets/..%2f..%2f_server.py", "/%2e%2e%2f%2e%2e%2f__init__.py", "/..%5c_server.py",
                   "/static/../_server.py", "//etc/passwd", "/%2fetc%2fpasswd", "/api/../_server.py",
                   "/api/..%2f..%2f_view%2f_server.py"):
        status, body = server.request(target)
        assert b"The web application" not in body and b"root:" not in body, target
        assert status in (200, 400, 404), (target, status)
        if status == 200:  # the SPA's index for unknown paths, never a file outside
            assert body.startswith(b"<!doctype html>"), target


def test_paths_inside_the_file_cannot_climb_out(server: ViewServer) -> None:
    for path in ("/../../outside", "/RawData/../../..", "../", "/RawData/%2e%2e/%2e%2e", "/" + "a/" * 300):
        status, body = server.get("/api/meta", file="run.h5", path=path)
        assert status == 404, (path, status, body[:200])


def test_a_foreign_host_header_is_refused(server: ViewServer) -> None:
    """A page elsewhere whose name resolves to this machine (DNS rebinding) gets nothing."""
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.evil.example"):
        status, body = server.request("/api/meta?file=run.h5&path=/", headers={"Host": host})
        assert status == 400 and b"RawData" not in body, host
    status, _ = server.request("/api/meta?file=run.h5&path=/", headers={"Host": f"localhost:{server.port}"})
    assert status == 200


def test_no_cors_headers(server: ViewServer) -> None:
    conn_status, _ = server.request("/api/meta?file=run.h5&path=/", headers={"Origin": "http://evil.example"})
    assert conn_status == 200
    import http.client
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    conn.request("GET", "/api/meta?file=run.h5&path=/", headers={"Origin": "http://evil.example"})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.getheader("Access-Control-Allow-Origin") is None


# ------------------------------------------------------------------------------ links inside the file
def test_external_links_and_virtual_data_are_not_followed(hostile: ViewServer) -> None:
    status, body = hostile.get("/api/meta", file="hostile.h5", path="/")
    assert status == 200 and SECRET.encode() not in body, body
    children = {c["name"]: c for c in body_json(body)["children"]}
    assert children["escape"]["kind"] == "external_link"
    assert children["soft"]["kind"] == "soft_link" and children["dangling"]["kind"] == "soft_link"
    assert children["virtual"]["kind"] == "other" and children["external_storage"]["kind"] == "other"
    assert children["ok"]["kind"] == "dataset"
    for route in ("/api/data", "/api/stats", "/api/attr", "/api/meta"):
        for path in ("/escape", "/escape/data", "/escape_relative", "/soft", "/virtual", "/external_storage"):
            status, body = hostile.get(route, file="hostile.h5", path=path)
            assert SECRET.encode() not in body and b"4242" not in body, (route, path, body[:200])
            if route != "/api/meta":
                assert status == 404, (route, path, status, body[:200])
    status, body = hostile.get("/api/paths", file="hostile.h5", path="/")
    assert status == 200 and "/escape/data" not in body_json(body)
    status, body = hostile.get("/api/data", file="hostile.h5", path="/ok")
    assert status == 200 and body_json(body) == list(np.arange(10.0))


# ------------------------------------------------------------------------------ export
@pytest.mark.parametrize(("fmt", "query"), [("npy", {"frames": "2:5"}), ("tiff", {"frames": "1:3"}),
                                             ("h5", {"selection": "4,:,:"}), ("npy", {})])
def test_export_writes_through_the_reader(server: ViewServer, tree: dict[str, Path], fmt: str,
                                          query: dict[str, str]) -> None:
    path = "/RawData/Detector000/Data2D/CH00/EnlData00"
    status, body = server.get("/api/export", file="run.h5", path=path, format=fmt, **query)
    assert status == 200, body[:300]
    with streamsave.open_reader(tree["run"]) as run:
        image = run.channels["Camera/image"]
        frames = slice(2, 5) if "frames" in query and fmt == "npy" else slice(1, 3) if fmt == "tiff" else \
            slice(4, 5) if fmt == "h5" else slice(None)
        expected = image[frames]
    if fmt == "npy":
        got = np.load(io.BytesIO(body), allow_pickle=False)
    elif fmt == "tiff":
        got = tifffile.imread(io.BytesIO(body))
    else:
        with h5py.File(io.BytesIO(body), "r") as f:
            got = f["frames"][()]
            assert f["frames"].attrs["channel"] == "Camera/image"
    np.testing.assert_array_equal(got, expected)


def test_export_csv_of_a_spectrum_and_the_download_name(server: ViewServer) -> None:
    import http.client
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    conn.request("GET", "/api/export?" + urllib.parse.urlencode(
        {"file": "run.h5", "path": "/RawData/Detector001/Data1D/CH00/EnlData00", "format": "csv", "frames": "0:2"}))
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200
    assert 'filename="run-Spectrometer_spectrum-frames-0-2.csv"' in (response.getheader("Content-Disposition") or "")
    rows = np.loadtxt(io.StringIO(body.decode()), delimiter=",")
    assert rows.shape == (2, 33)
    np.testing.assert_allclose(rows[1, 1:], np.sin(np.arange(32) / 4) + 1)


def test_export_refusals(server: ViewServer) -> None:
    image = "/RawData/Detector000/Data2D/CH00/EnlData00"
    cases = [({"path": image, "format": "csv"}, 422, b"text files hold 0D and 1D"),
             ({"path": image, "format": "pickle"}, 422, b"not one of"),
             ({"path": image, "format": "npy", "frames": "a:b"}, 422, b"not a frame index"),
             ({"path": "/RawData/Detector000", "format": "npy"}, 404, b"not a channel"),
             ({"path": "/../outside/secret.h5", "format": "npy"}, 404, b"not a channel")]
    for params, status_expected, message in cases:
        status, body = server.get("/api/export", file="run.h5", **params)
        assert status == status_expected and message in body, (params, status, body)


# ------------------------------------------------------------------------------ a live file
def test_a_live_file_shows_each_flush(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    writer = subprocess.Popen([sys.executable, str(Path(__file__).parent / "_follow_writer.py"), str(path), "step"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert writer.stdin is not None and writer.stdout is not None

    def say(command: str) -> dict[str, Any]:
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.write(command + "\n")
        writer.stdin.flush()
        reply: dict[str, Any] = json.loads(writer.stdout.readline())
        return reply

    try:
        say("push 16")
        assert say("flush") == {"durable": 16}
        with ViewServer(path) as srv:
            data = "/RawData/Detector000/Data1D/CH00/EnlData00"
            for durable in (16, 48, 49):
                if durable > 16:
                    say(f"push {durable - (16 if durable == 48 else 48)}")
                    assert say("flush") == {"durable": durable}
                status, body = srv.get("/api/summary", file="live.h5")
                assert status == 200, body
                summary = body_json(body)
                assert summary["writing"] is True and summary["channels"][0]["frames"] == durable
                status, body = srv.get("/api/meta", file="live.h5", path=data)
                assert body_json(body)["shape"][1] == 8
                assert body_json(body)["shape"][0] >= durable
                status, body = srv.get("/api/data", file="live.h5", path=data, selection=f"{durable - 1},:")
                assert body_json(body) == [float(durable - 1)] * 8
            say("close")
            status, body = srv.get("/api/summary", file="live.h5")
            assert body_json(body)["writing"] is False
            assert srv.stop()[0] == 130
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.communicate(timeout=TIMEOUT)


# ------------------------------------------------------------------------------ the command
def test_ctrl_c_stops_cleanly(tree: dict[str, Path]) -> None:
    with ViewServer(tree["run"]) as srv:
        status, err = srv.stop()
    assert status == 130 and "stopped" in err and "Traceback" not in err


def test_sigterm_stops_it_too(tree: dict[str, Path]) -> None:
    with ViewServer(tree["run"]) as srv:
        srv.proc.send_signal(signal.SIGTERM)
        _, err = srv.proc.communicate(timeout=TIMEOUT)
        assert "Traceback" not in err


def streamsave_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-W", "error", *(["-c", code] if code else ["-m", "streamsave"]), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def test_bad_files_and_ports_give_one_line(tree: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5")
    for args, message in (([str(text)], "not an HDF5 file"), ([str(tmp_path / "missing.h5")], "does not exist"),
                          ([str(tmp_path)], "is a directory"),
                          ([str(tree["run"]), "--port", "70000"], "--port must be 0 to 65535")):
        result = streamsave_cli("view", *args, "--no-browser")
        assert result.returncode == 1, result
        assert result.stdout == "" and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    with ViewServer(tree["run"]) as srv:  # a port already taken
        result = streamsave_cli("view", str(tree["run"]), "--no-browser", "--port", str(srv.port))
        assert result.returncode == 1 and "address already in use" in result.stderr.lower(), result.stderr


def test_without_the_view_extra_the_error_names_it(tree: dict[str, Path]) -> None:
    code = ("import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None; "
            "from streamsave.cli import main; sys.exit(main(sys.argv[1:]))")
    result = streamsave_cli("view", str(tree["run"]), "--no-browser", code=code)
    assert result.returncode == 1
    assert "pip install 'streamsave[view]'" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    result = streamsave_cli("info", str(tree["run"]), code=code)  # the other commands do not need it
    assert result.returncode == 0, result.stderr


def test_help_describes_the_command() -> None:
    result = streamsave_cli("view", "--help")
    assert result.returncode == 0 and "--no-browser" in result.stdout and "loopback" in result.stdout


# ------------------------------------------------------------------------------ guards and parsing
def test_a_read_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:  # 16 GiB declared, nothing stored: the file stays tiny
        f.create_dataset("stack", shape=(1 << 20, 1 << 11), dtype="f8", chunks=(1024, 2048))
    with ViewServer(path) as srv:
        status, body = srv.get("/api/data", file="huge.h5", path="/stack")
        assert status == 413 and b"select fewer frames" in body, body
        status, body = srv.get("/api/stats", file="huge.h5", path="/stack")
        assert status == 413
        status, body = srv.get("/api/data", file="huge.h5", path="/stack", selection="5,:", format="bin")
        assert status == 200 and np.frombuffer(body, "f8").shape == (2048,)
        status, body = srv.get("/api/data", file="huge.h5", path="/stack", selection="a,b")
        assert status == 422, body


def test_a_file_locked_by_a_writer_without_swmr_says_so(tree: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "locked.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with ViewServer(path) as srv, h5py.File(path, "a"):  # another program holds it for writing
        status, body = srv.get("/api/meta", file="locked.h5", path="/")
        assert status == 503 and b"without SWMR" in body, body
        status, body = srv.get("/api/summary", file="locked.h5")
        assert status == 503, body


@pytest.mark.parametrize(("selection", "frames", "expected"), [
    (None, None, None), ("5,:,:", None, slice(5, 6)), ("-1,:", None, slice(-1, None)), ("-3", None, slice(-3, -2)),
    (":,3", None, slice(None, None, None)), ("2:8:2,:", None, slice(2, 8, 2)), ("0,:", "10:", slice(10, None)),
    (None, " :-1 ", slice(None, -1)), (None, "", None)])
def test_frames_from_a_selection(selection: str | None, frames: str | None, expected: slice | None) -> None:
    from streamsave._view._export import frames_from

    assert frames_from(selection, frames) == expected


@pytest.mark.parametrize("text", ["a:b", "1:2:3:4", "1.5", "0x10", "1;2"])
def test_frames_that_do_not_parse(text: str) -> None:
    from streamsave._view._confine import Refused
    from streamsave._view._export import frames_from

    with pytest.raises(Refused) as caught:
        frames_from(None, text)
    assert caught.value.status == 422 and repr(text) in caught.value.message


def test_the_served_file_is_never_written(tree: dict[str, Path], tmp_path: Path) -> None:
    import hashlib
    import shutil

    path = tmp_path / "run.h5"
    shutil.copyfile(tree["run"], path)
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    data = "/RawData/Detector000/Data2D/CH00/EnlData00"
    with ViewServer(path) as srv:
        for route, params in (("/api/meta", {"path": "/"}), ("/api/meta", {"path": data}), ("/api/attr", {"path": "/"}),
                              ("/api/data", {"path": data, "selection": "0,:,:"}), ("/api/stats", {"path": data}),
                              ("/api/paths", {"path": "/"}), ("/api/summary", {}),
                              ("/api/export", {"path": data, "format": "h5"})):
            status, body = srv.get(route, file="run.h5", **params)
            assert status == 200, (route, body[:200])
        assert srv.stop()[0] == 130
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]  # the export left nothing beside it
