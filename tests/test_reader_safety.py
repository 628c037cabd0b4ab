"""Hostile and malformed files: each gives a clear StreamSaveError (ReadError), or reads
what it can, and never runs anything the file holds, crashes, hangs, follows links out
of the file, or allocates more than the reader's guards allow."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

import streamsave
from streamsave import Axis, ReadError, StreamSaveError

ROOT: Final = Path(__file__).parent.parent
ENV: Final = {**os.environ, "PYTHONPATH": str(ROOT)}
PAYLOAD: Final = "__import__('os').system('touch PWNED')"
HOSTILE: Final = json.dumps({"module": "builtins", "type": "int", "data": PAYLOAD})
CHANNELS: Final = ("Camera/image", "Spectrometer/spectrum", "Thermometer/T")
SPECTRUM_GROUP: Final = "/RawData/Detector001/Data1D/CH00"
IMAGE_GROUP: Final = "/RawData/Detector000/Data2D/CH00"
SCALAR_GROUP: Final = "/RawData/Detector002/Data0D/CH00"


async def _record(path: Path) -> None:
    async with streamsave.open_saver(path, compression="blosc2-lz4", chunk_bytes=8192) as saver:
        image = saver.add_detector("Camera", settings={"gain": 2}).add_channel(
            "image", shape=(16, 16), dtype="uint16", units="counts")
        spectrum = saver.add_detector("Spectrometer").add_channel(
            "spectrum", shape=(32,), axes=[Axis("wavelength", units="nm", values=np.linspace(400, 500, 32))])
        scalar = saver.add_detector("Thermometer").add_channel("T", units="K")
        for i in range(200):
            await image.push(np.full((16, 16), i, dtype="uint16"), timestamp=1e9 + i)
            await spectrum.push(np.full(32, float(i)), timestamp=1e9 + i)
            await scalar.push(float(i), timestamp=1e9 + i)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("safety") / "template.h5"
    anyio.run(_record, path)
    return path


@pytest.fixture
def sample(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a small streamsave file (2D compressed, 1D with an axis, 0D)."""
    return Path(shutil.copy(template, tmp_path / "sample.h5"))


def _edit(path: Path, change: Callable[[h5py.File], None]) -> Path:
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def _set_detector_attrs(path: Path, attrs: dict[str, dict[str, Any]]) -> None:
    with h5py.File(path, "r+") as f:
        for det, values in attrs.items():
            f[f"RawData/{det}"].attrs.update(values)


def _exercise(ch: streamsave.ChannelReader, scratch: Path) -> list[str]:
    """Every look the reader offers at a channel; StreamSaveErrors are collected, any
    other exception fails the test."""
    refused: list[str] = []
    n = len(ch)
    str(ch.shape) + str(ch.frame_shape) + str(ch.dtype) + ch.units + ch.label + repr(ch) + str(ch.frames_durable)
    str(ch.axes) + str(ch.settings) + str(ch.compression) + str(ch.chunk_shape) + ch.dataset_path
    step = max(1, n // 7)
    looks: list[Callable[[], object]] = [
        lambda: ch[0], lambda: ch[-1], lambda: ch[:10], lambda: ch[::step], lambda: ch[::-step],
        lambda: ch.timestamps[:10], lambda: ch.timestamps[-1], lambda: np.asarray(ch.timestamps),
        lambda: ch.between(-np.inf, np.inf), lambda: ch.export(scratch / "x.npy", frames=slice(0, 5)),
        lambda: ch.refresh(),
    ]
    for look in looks:
        try:
            look()
        except StreamSaveError as exc:
            refused.append(f"{type(exc).__name__}: {exc}")
        except IndexError:
            assert n == 0 or len(ch) == 0, "IndexError on a channel with frames"
    return refused


def read_everything(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Open a file and read all of it the reader offers: ``{"error": ...}`` if it is
    refused as a whole, else its channels' lengths and what was refused."""
    try:
        with streamsave.open_reader(path) as run, tempfile.TemporaryDirectory() as scratch:
            str(run) + repr(run)
            run.refresh()
            refused = {key: _exercise(ch, Path(scratch)) for key, ch in run.channels.items()}
            return {"channels": {key: len(ch) for key, ch in run.channels.items()}, "refused": refused,
                    "writing": run.writing}
    except StreamSaveError as exc:
        assert isinstance(exc, ReadError), repr(exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _read_in_child(paths: list[Path], timeout: float = 90) -> dict[str, dict[str, Any]]:
    """:func:`read_everything` for each path in a child process, so that a crash in
    HDF5 fails the test instead of killing it, and a hang is caught by the timeout."""
    code = ("import json, sys\nfrom tests.test_reader_safety import read_everything\n"
            "print(json.dumps({p: read_everything(p) for p in sys.argv[1:]}))\n")
    done = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True,
                          env=ENV, timeout=timeout, cwd=str(paths[0].parent))
    assert done.returncode == 0, f"the reader crashed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    result: dict[str, dict[str, Any]] = json.loads(done.stdout.splitlines()[-1])
    return result


# ---------------------------------------------------------------------- not HDF5 at all
def test_missing_path_directory_empty_file_and_random_bytes(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="does not exist"):
        streamsave.open_reader(tmp_path / "missing.h5")
    with pytest.raises(ReadError, match="is a directory"):
        streamsave.open_reader(tmp_path)
    (tmp_path / "empty.h5").write_bytes(b"")
    rng = np.random.default_rng(1)
    (tmp_path / "random.h5").write_bytes(rng.bytes(100_000))
    (tmp_path / "text.h5").write_text("not an HDF5 file\n" * 100)
    for name in ("empty.h5", "random.h5", "text.h5"):
        with pytest.raises(ReadError, match="not an HDF5 file"):
            streamsave.open_reader(tmp_path / name)
    # the signature, then garbage: HDF5 itself refuses it
    (tmp_path / "signature.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + rng.bytes(4096))
    (tmp_path / "short.h5").write_bytes(b"\x89HDF\r\n\x1a\n\x00")
    for name in ("signature.h5", "short.h5"):
        with pytest.raises(ReadError, match="cannot be opened"):
            streamsave.open_reader(tmp_path / name)
    with pytest.raises(ReadError, match="does not exist"):
        streamsave.open_reader(tmp_path / "missing" / "deeper.h5")


def test_pipes_and_devices_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    for path in (fifo, Path(os.devnull), Path("/dev/zero")):
        if path.exists():
            with pytest.raises(ReadError, match="not a regular file"):
                streamsave.open_reader(path)


# ---------------------------------------------------------------------- damaged files
def test_truncated_files(sample: Path, tmp_path: Path) -> None:
    data = sample.read_bytes()
    size = len(data)
    cuts = sorted({8, 64, 100, 512, 1024, 2048, 4096, 10_000, size // 8, size // 4, size // 3, size // 2,
                   2 * size // 3, 3 * size // 4, 7 * size // 8, size - 4096, size - 512, size - 100, size - 1})
    paths = []
    for cut in cuts:
        path = tmp_path / f"cut{cut}.h5"
        path.write_bytes(data[:cut])
        paths.append(path)
    results = _read_in_child(paths)
    for cut, path in zip(cuts, paths, strict=True):
        result = results[str(path)]
        if "error" in result:
            assert result["error"].startswith("ReadError: "), result
        if 64 <= cut < size - 65536:  # a superblock, and much less than it says: refused as truncated
            assert "is truncated" in result.get("error", ""), result
    assert results[str(paths[0])]["error"].startswith("ReadError: ")  # 8 bytes: no superblock
    # a few bytes short: opened, and what cannot be read is refused, quickly (see _read_in_child)
    assert "channels" in results[str(paths[-1])]


def test_damaged_bytes(sample: Path, tmp_path: Path) -> None:
    """Random bytes overwritten, blocks zeroed: read what reads, refuse the rest."""
    data = sample.read_bytes()
    rng = np.random.default_rng(2024)
    paths = []
    for i in range(24):
        damaged = bytearray(data)
        if i % 3 == 0:  # a zeroed block
            at = int(rng.integers(0, len(data) - 512))
            damaged[at:at + 512] = bytes(512)
        else:  # scattered random bytes
            for at in rng.integers(0, len(data), size=8 * (1 + i % 4)):
                damaged[int(at)] = int(rng.integers(0, 256))
        path = tmp_path / f"damaged{i}.h5"
        path.write_bytes(bytes(damaged))
        paths.append(path)
    results = _read_in_child(paths)
    for result in results.values():
        assert "error" not in result or result["error"].startswith("ReadError: ")


# ---------------------------------------------------------------------- nothing is executed
def test_an_envelope_holding_an_expression_is_never_run(sample: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    def plant(f: h5py.File) -> None:
        for group in (IMAGE_GROUP, SPECTRUM_GROUP, SCALAR_GROUP):
            for key in ("units", "label", "compression", "shape", "TITLE"):
                f[f"{group}/EnlData00"].attrs[key] = HOSTILE
            f[group].attrs["TITLE"] = HOSTILE
        f[f"{SPECTRUM_GROUP}/Axis00"].attrs.update({"index": HOSTILE, "offset": HOSTILE, "scaling": HOSTILE})
        f[f"{SPECTRUM_GROUP}/Axis01"].attrs["label"] = HOSTILE  # the time axis
        for det in ("Detector000", "Detector001"):
            f[f"RawData/{det}"].attrs.update({"TITLE": HOSTILE, "params_json": HOSTILE, "settings": HOSTILE})
        f.attrs["TITLE"] = HOSTILE
        f["streamsave"].attrs["channels"] = HOSTILE

    _edit(sample, plant)
    result = read_everything(sample)
    assert not (tmp_path / "PWNED").exists()
    with streamsave.open_reader(sample) as run:
        assert set(run.channels) == {"Detector000/CH00", "Detector001/CH00", "Thermometer/CH00"}
        for ch in run.channels.values():
            assert ch.units == "" and ch.label == ch.name  # the value is not used, not even as text
            assert ch.settings == {}
            assert "PWNED" not in str(ch.compression) and "module" not in str(ch.compression)
        spectrum = run.channels["Detector001/CH00"]
        assert spectrum.axes == ()  # an axis whose index is an expression is no axis
        assert spectrum.time_axis_path is None  # nor is a time axis whose label is one
        np.testing.assert_array_equal(run.channels["Thermometer/CH00"][:], np.arange(200.0))
        assert "PWNED" not in str(run) + repr(run)
    assert "error" not in result
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("data", [
    PAYLOAD, "(lambda: 1)()", "open('PWNED', 'w')", "[1] * 10**9", "10**10**10", "9" * 5000,
    "(" * 1000 + ")" * 1000, "[" * 100_000 + "]" * 100_000, "{'a': 1}['a']", "os.system", "b'x' * 10**9",
])
def test_envelope_data_is_a_literal_or_nothing(data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamsave._attrs import envelope, text

    monkeypatch.chdir(tmp_path)
    box = json.dumps({"module": "builtins", "type": "int", "data": data})
    started = time.perf_counter()
    assert envelope(box) is None
    assert text(box) is None
    assert time.perf_counter() - started < 2
    assert not (tmp_path / "PWNED").exists()
    assert envelope(json.dumps({"module": "builtins", "type": "tuple", "data": "(0, 1)"})) == (0, 1)
    assert text(json.dumps({"module": "builtins", "type": "str", "data": "'counts'"})) == "counts"


def test_pickles_in_a_file_are_never_loaded(sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("touch PWNED",))

    blob = pickle.dumps(Boom())

    def plant(f: h5py.File) -> None:
        logger = f["RawData/Logger"]
        logger.resize((2,))
        logger[0] = np.frombuffer(blob, dtype=np.uint8)
        logger[1] = np.frombuffer(blob, dtype=np.uint8)
        f[f"{IMAGE_GROUP}/EnlData00"].attrs["units"] = np.void(blob)
        f["RawData/Detector000"].attrs["params_json"] = np.void(blob)
        f.create_dataset("pickled", data=np.frombuffer(blob, dtype=np.uint8))

    _edit(sample, plant)
    result = read_everything(sample)
    assert "error" not in result and set(result["channels"]) == set(CHANNELS)
    with streamsave.open_reader(sample) as run:
        image = run.channels["Camera/image"]
        assert image.units == "" and image.settings == {"gain": 2}  # from the settings XML instead
    assert not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------- settings XML
BILLION_LAUGHS: Final = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<settings><gain title="gain" type="str">&lol9;</gain></settings>"""


def _external_entity(secret: Path) -> str:
    return (f'<?xml version="1.0"?>\n<!DOCTYPE s [<!ENTITY leak SYSTEM "file://{secret}">]>\n'
            '<settings><gain title="gain" type="str">&leak;</gain></settings>')


def test_settings_xml_with_entities_is_refused(sample: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    quadratic = ('<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "' + "x" * 50_000 + '">]><settings><v title="v">'
                 + "&a;" * 5000 + "</v></settings>")
    deep = "<a>" * 50_000 + "</a>" * 50_000
    _set_detector_attrs(sample, {"Detector000": {"params_json": "", "settings": BILLION_LAUGHS},
                                 "Detector001": {"params_json": "", "settings": _external_entity(secret)},
                                 "Detector002": {"params_json": "", "settings": quadratic}})
    started = time.perf_counter()
    with streamsave.open_reader(sample) as run:
        assert time.perf_counter() - started < 5
        for ch in run.channels.values():
            assert ch.settings == {}
            assert "SECRET" not in str(ch.settings) and "lol" not in str(ch.settings)
    _edit(sample, lambda f: f["RawData/Detector000"].attrs.update({"settings": deep}))
    _edit(sample, lambda f: f["RawData/Detector001"].attrs.update(
        {"settings": '<settings><gain title="gain" type="float">2.5</gain><on title="on" type="bool">1</on>'
                     '<name title="name" type="str">cam</name></settings>'}))
    with streamsave.open_reader(sample) as run:
        assert isinstance(run.channels["Camera/image"].settings, dict)
        assert run.channels["Spectrometer/spectrum"].settings == {"gain": 2.5, "on": True, "name": "cam"}


def test_params_json_that_is_not_an_object(sample: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    _set_detector_attrs(sample, {"Detector000": {"params_json": deep, "settings": ""},
                                 "Detector001": {"params_json": "[1, 2]", "settings": ""},
                                 "Detector002": {"params_json": "{not json", "settings": ""}})
    with streamsave.open_reader(sample) as run:
        assert [ch.settings for ch in run.channels.values()] == [{}, {}, {}]


# ---------------------------------------------------------------------- unexpected types
def test_attributes_of_unexpected_types(sample: Path) -> None:
    compound = np.array((1, 2.5), dtype=[("a", "i4"), ("b", "f8")])
    vlen_int = h5py.vlen_dtype(np.int32)

    def plant(f: h5py.File) -> None:
        image = f[f"{IMAGE_GROUP}/EnlData00"]
        image.attrs["units"] = np.arange(5)
        image.attrs["label"] = compound
        ragged = np.empty(2, dtype=object)
        ragged[0], ragged[1] = np.arange(3, dtype=np.int32), np.arange(1, dtype=np.int32)
        image.attrs.create("compression", ragged, dtype=vlen_int)
        f[IMAGE_GROUP].attrs["TITLE"] = f["RawData"].ref  # an object reference
        f[IMAGE_GROUP].attrs["signal"] = np.array([b"EnlData00", b"x"])
        f[SPECTRUM_GROUP].attrs["TITLE"] = np.bytes_(b"\xff\xfebad\x00")  # not UTF-8, with a NUL
        f[SPECTRUM_GROUP].attrs["signal"] = "../../Detector000/Data2D/CH00/EnlData00"
        f[SPECTRUM_GROUP].attrs["axes"] = 7
        axis = f[f"{SPECTRUM_GROUP}/Axis00"]
        axis.attrs["index"] = np.array([1, 2])
        axis.attrs["label"] = h5py.Empty("S10")
        axis.attrs["units"] = np.float64(3.5)
        f[f"{SPECTRUM_GROUP}/Axis01"].attrs["index"] = compound  # the time axis
        f["RawData/Detector000"].attrs["TITLE"] = np.array([[1.0, 2.0], [3.0, 4.0]])
        f["RawData/Detector000"].attrs["params_json"] = np.array(["{}", "{}"], dtype=h5py.string_dtype())
        f["RawData/Detector001"].attrs.create("settings", 1, dtype=h5py.enum_dtype({"A": 1}, basetype="i1"))
        f["RawData/Detector002"].attrs["params_json"] = np.zeros(10_000)
        f["streamsave"].attrs["channels"] = np.arange(3)
        f[f"{SCALAR_GROUP}/EnlData00"].attrs["units"] = True

    _edit(sample, plant)
    result = read_everything(sample)
    assert "error" not in result, result
    with streamsave.open_reader(sample) as run:
        assert set(run.channels) == {"Detector000/CH00", "Spectrometer/\ufffd\ufffdbad", "Thermometer/T"}
        image = run.channels["Detector000/CH00"]
        assert (image.units, image.label, image.settings) == ("", "CH00", {"gain": 2})  # settings from the XML
        assert image.compression is not None  # from the dataset's filters instead
        spectrum = run.channels["Spectrometer/\ufffd\ufffdbad"]
        assert spectrum.frame_shape == (32,)  # its own data: signal paths do not leave the group
        assert spectrum.axes == () and spectrum.settings == {}
        assert run.channels["Thermometer/T"].units == "True"
        assert len(spectrum) == 200 and spectrum.timestamps[0] == 1e9  # labelled "time": still the time axis


def test_data_of_unexpected_types_is_not_a_channel(tmp_path: Path) -> None:
    path = tmp_path / "types.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("strings", data=np.array([b"a", b"b"]))
        f.create_dataset("vlen", shape=(3,), dtype=h5py.vlen_dtype(np.float64))
        f.create_dataset("compound", data=np.zeros(4, dtype=[("a", "i4"), ("b", "f8")]))
        f.create_dataset("refs", data=np.array([f.ref] * 2, dtype=h5py.ref_dtype))
        f.create_dataset("scalar", data=3.0)
        f.create_dataset("null", data=h5py.Empty("f8"))
        f.create_dataset("array_type", shape=(4,), dtype=np.dtype(("f8", (3,))))
        f.create_dataset("enum", data=np.zeros(4, np.int8), dtype=h5py.enum_dtype({"A": 0}, basetype="i1"))
        f.create_dataset("ok", data=np.arange(12.0).reshape(4, 3))
        f.create_dataset("bool", data=np.array([True, False]))
        f.create_dataset("complex", data=np.array([1 + 2j, 3j]))
        f.create_dataset("zero", shape=(0, 5), dtype="f8")
        f.create_dataset("empty_frames", shape=(4, 0), dtype="f8")
    result = read_everything(path)
    assert "error" not in result, result
    assert set(result["channels"]) == {"enum", "ok", "bool", "complex", "zero", "empty_frames"}
    with streamsave.open_reader(path) as run:
        np.testing.assert_array_equal(run.channels["ok"][1:3], np.arange(12.0).reshape(4, 3)[1:3])
        assert run.channels["complex"][1] == 3j


def test_a_streamsave_channel_of_strings_is_left_out(sample: Path) -> None:
    def plant(f: h5py.File) -> None:
        del f[f"{SCALAR_GROUP}/EnlData00"]
        f.create_dataset(f"{SCALAR_GROUP}/EnlData00", data=np.array([b"x"] * 200).reshape(200, 1))
        del f[f"{IMAGE_GROUP}/EnlData00"]
        f.create_dataset(f"{IMAGE_GROUP}/EnlData00", data=h5py.Empty("f8"))

    _edit(sample, plant)
    with streamsave.open_reader(sample) as run:
        assert list(run.channels) == ["Spectrometer/spectrum"]


# ---------------------------------------------------------------------- absurd shapes
def test_an_absurd_shape_is_listed_and_guarded(tmp_path: Path) -> None:
    path = tmp_path / "absurd.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("huge", shape=(2**40, 1024), maxshape=(None, 1024), chunks=(64, 1024), dtype="f8")
        f.create_dataset("tiny_chunks", shape=(2**40, 1024), maxshape=(None, 1024), chunks=(1, 1), dtype="f8")
        f.create_dataset("big_chunks", shape=(2**40, 4), maxshape=(None, 4), chunks=(2**26, 4), dtype="f8")
        f.create_dataset("huge_frame", shape=(4, 2**31, 2**31), maxshape=(None, 2**31, 2**31),
                         chunks=(1, 1024, 1024), dtype="u1")
    assert path.stat().st_size < 1 << 20
    started = time.perf_counter()
    with streamsave.open_reader(path) as run:
        huge, tiny, big, frame = (run.channels[k] for k in ("huge", "tiny_chunks", "big_chunks", "huge_frame"))
        assert len(huge) == 2**40 and huge.shape == (2**40, 1024) and huge.frame_shape == (1024,)
        assert f"{2**40:,} frames" in str(run)
        np.testing.assert_array_equal(huge[5], np.zeros(1024))
        assert huge[::2**31].shape == (512, 1024)
        for read in (lambda: huge[:], lambda: huge[: 2**20], lambda: np.asarray(huge.timestamps),
                     lambda: huge.timestamps[: 2**40], lambda: huge.export(tmp_path / "all.npy"),
                     lambda: huge[::-1]):
            with pytest.raises(ReadError, match="GiB; read fewer"):
                read()
        with pytest.raises(ReadError, match="no timestamps"):
            huge.between(0, 1)
        assert tiny[0].shape == (1024,)  # 1024 chunks
        with pytest.raises(ReadError, match="chunks"):
            tiny[:2000]
        with pytest.raises(ReadError, match="MiB"):
            big[0]
        with pytest.raises(ReadError, match="GiB"):
            frame[0]
        assert not (tmp_path / "all.npy").exists()
        pytest.importorskip("matplotlib")
        with pytest.raises(ReadError, match="mean"):
            huge.plot(tmp_path / "mean.png", mean=True)
        with pytest.raises(ReadError):
            frame.plot(tmp_path / "frame.png")
        huge.plot(tmp_path / "first.png")
    assert time.perf_counter() - started < 30


def test_an_absurd_time_axis_in_a_streamsave_file(sample: Path, tmp_path: Path) -> None:
    def plant(f: h5py.File) -> None:
        group = f[SPECTRUM_GROUP]
        attrs = dict(group["Axis01"].attrs)
        for key in ("EnlData00", "Axis01"):
            del group[key]
        group.create_dataset("EnlData00", shape=(2**40, 32), maxshape=(None, 32), chunks=(1024, 32), dtype="f8")
        group.create_dataset("Axis01", shape=(2**40,), maxshape=(None,), chunks=(1024,), dtype="f8")
        group["Axis01"].attrs.update(attrs)

    _edit(sample, plant)
    with streamsave.open_reader(sample) as run:
        spectrum = run.channels["Spectrometer/spectrum"]
        assert len(spectrum) == 2**40 and spectrum.timestamps[-1] == 0.0
        for read in (lambda: spectrum.between(0, 1), lambda: np.asarray(spectrum.timestamps)):
            with pytest.raises(ReadError, match="GiB"):
                read()


def test_a_journal_of_absurd_shape_is_ignored(sample: Path) -> None:
    def plant(f: h5py.File) -> None:
        del f["streamsave/durable_frames"], f["streamsave/writing"]
        f.create_dataset("streamsave/durable_frames", shape=(2**40, 2**20), maxshape=(None, 2**20),
                         chunks=(1, 1024), dtype="i8")
        f.create_dataset("streamsave/writing", data=np.array([b"yes"]))

    _edit(sample, plant)
    with streamsave.open_reader(sample) as run:
        assert not run.live and [len(c) for c in run.channels.values()] == [200, 200, 200]


# ---------------------------------------------------------------------- links out of the file
def _other_file(tmp_path: Path) -> Path:
    other = tmp_path / "elsewhere" / "other.h5"
    other.parent.mkdir()
    with h5py.File(other, "w") as f:
        f.create_dataset("secret", data=np.arange(10.0))
        g = f.create_group("group")
        g.create_dataset("EnlData00", data=np.zeros((5, 32)))
    return other


def _open_files() -> set[str]:
    ids = h5py.h5f.get_obj_ids(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)
    return {os.fsdecode(fid.name) for fid in ids}


def test_links_out_of_a_generic_file_are_not_followed(tmp_path: Path) -> None:
    other = _other_file(tmp_path)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"EXTERNAL-BYTES" * 10)
    path = tmp_path / "links.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("local", data=np.arange(6.0))
        f["linked"] = h5py.ExternalLink(str(other), "/secret")
        f["linked_group"] = h5py.ExternalLink(str(other), "/group")
        layout = h5py.VirtualLayout(shape=(10,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "secret", shape=(10,))
        f.create_virtual_dataset("virtual", layout, fillvalue=-1)
        f.create_dataset("raw_outside", shape=(140,), dtype="u1", external=[(str(outside), 0, 140)])
        f["soft_out"] = h5py.SoftLink("/linked_group/EnlData00")
    before = _open_files()
    with streamsave.open_reader(path) as run:
        assert list(run.channels) == ["local"]
        assert str(other) not in _open_files() - before
    result = read_everything(path)
    assert result["channels"] == {"local": 6}


def test_links_out_of_a_streamsave_file_are_not_followed(sample: Path, tmp_path: Path) -> None:
    other = _other_file(tmp_path)

    def plant(f: h5py.File) -> None:
        del f[f"{IMAGE_GROUP}/EnlData00"]
        f[f"{IMAGE_GROUP}/EnlData00"] = h5py.ExternalLink(str(other), "/group/EnlData00")
        spectrum = f[SPECTRUM_GROUP]
        del spectrum["EnlData00"]
        layout = h5py.VirtualLayout(shape=(5, 32), dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "group/EnlData00", shape=(5, 32))
        spectrum.create_virtual_dataset("EnlData00", layout)
        scalar = f[SCALAR_GROUP]
        scalar["ext"] = h5py.ExternalLink(str(other), "/group")
        scalar.attrs["signal"] = "ext/EnlData00"  # a path through an external link
        f["outside"] = h5py.ExternalLink(str(other), "/group")
        f["RawData/Detector003"] = h5py.ExternalLink(str(other), "/")
        f["RawData/Detector004"] = h5py.SoftLink("/outside")

    _edit(sample, plant)
    before = _open_files()
    with streamsave.open_reader(sample) as run:
        assert list(run.channels) == ["Thermometer/T"]  # its own EnlData00, not the signal's
        np.testing.assert_array_equal(run.channels["Thermometer/T"][:], np.arange(200.0))
        assert str(other) not in _open_files() - before


def test_a_soft_link_through_an_external_link_is_not_followed(sample: Path, tmp_path: Path) -> None:
    other = _other_file(tmp_path)

    def plant(f: h5py.File) -> None:
        f["outside"] = h5py.ExternalLink(str(other), "/group")
        spectrum = f[SPECTRUM_GROUP]
        del spectrum["EnlData00"]
        spectrum["EnlData00"] = h5py.SoftLink("/outside/EnlData00")
        image = f[IMAGE_GROUP]
        image.move("EnlData00", "Frames")
        image["EnlData00"] = h5py.SoftLink("Frames")  # inside the file: followed

    _edit(sample, plant)
    with streamsave.open_reader(sample) as run:
        assert list(run.channels) == ["Camera/image", "Thermometer/T"]
        assert run.channels["Camera/image"][3][0, 0] == 3


# ---------------------------------------------------------------------- recursive links
def test_recursive_soft_links_in_a_generic_file(tmp_path: Path) -> None:
    path = tmp_path / "loops.h5"
    with h5py.File(path, "w") as f:
        a = f.create_group("a")
        a.create_dataset("data", data=np.arange(4.0))
        a["self"] = h5py.SoftLink("/a")
        a["up"] = h5py.SoftLink("/")
        a["dot"] = h5py.SoftLink(".")
        a["loop"] = a  # a hard link to itself: a cycle
        a["parent"] = f["/"]
        f["x"] = h5py.SoftLink("/y")
        f["y"] = h5py.SoftLink("/x")
        f["deep"] = h5py.SoftLink("/a/self/self/self/self/self/self/self/self/self/self/self/self/self/self/data")
        f["dangling"] = h5py.SoftLink("/nowhere")
    started = time.perf_counter()
    result = read_everything(path)
    assert result["channels"] == {"a/data": 4}
    assert time.perf_counter() - started < 10


def test_recursive_links_in_a_streamsave_file(sample: Path) -> None:
    def plant(f: h5py.File) -> None:
        raw = f["RawData"]
        raw["Detector009"] = h5py.SoftLink("/RawData")
        raw["Detector008"] = raw  # hard-link cycle
        raw["Detector001/Data1D/CH01"] = h5py.SoftLink(SPECTRUM_GROUP)  # the same channel twice
        raw["Detector001/Data1D/CH02"] = raw["Detector001/Data1D/CH00"]
        raw["Detector001/Data1D/CH00/loop"] = h5py.SoftLink(SPECTRUM_GROUP)
        raw["Detector001/Data1D/CH00/x"] = h5py.SoftLink("y")
        raw["Detector001/Data1D/CH00/y"] = h5py.SoftLink("x")
        raw["Detector000/Data2D/Data2D"] = raw["Detector000/Data2D"]
        raw["Detector002/Data0D/CH00/Data0D"] = h5py.SoftLink("/RawData/Detector002/Data0D")

    _edit(sample, plant)
    started = time.perf_counter()
    result = read_everything(sample)
    assert result["channels"] == dict.fromkeys(CHANNELS, 200)
    assert time.perf_counter() - started < 10


def test_many_links_to_one_group_are_walked_once(tmp_path: Path) -> None:
    """Hard links can make a tree of millions of paths from a few groups: each group is
    walked once, and the walk has a budget."""
    path = tmp_path / "fan.h5"
    with h5py.File(path, "w") as f:
        leaf = f.create_group("leaf")
        leaf.create_dataset("data", data=np.arange(3.0))
        mid = f.create_group("mid")
        for i in range(300):
            mid[f"l{i}"] = leaf
        for i in range(300):
            f[f"m{i}"] = mid
    started = time.perf_counter()
    with streamsave.open_reader(path) as run:
        assert list(run.channels) == ["leaf/data"]
    assert time.perf_counter() - started < 10


# ---------------------------------------------------------------------- odd but valid
def test_a_file_without_datasets(tmp_path: Path) -> None:
    path = tmp_path / "bare.h5"
    with h5py.File(path, "w") as f:
        f.create_group("a/b/c")
        f.attrs["note"] = "nothing here"
    with streamsave.open_reader(path) as run:
        assert dict(run.channels) == {} and "(no channels)" in str(run) and not run.live


def test_chunks_with_a_filter_nobody_has(tmp_path: Path) -> None:
    path = tmp_path / "filter.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", shape=(8, 4), maxshape=(None, 4), chunks=(4, 4), dtype="f8",
                             compression=32123, allow_unknown_filter=True)
        d.id.write_direct_chunk((0, 0), np.arange(16.0).tobytes(), 0)
        d.id.write_direct_chunk((4, 0), b"\x00" * 7, 0)  # too short for any chunk
    with streamsave.open_reader(path) as run:
        ch = run.channels["x"]
        assert ch.compression is not None and len(ch) == 8
        for key in (0, slice(None), 5):
            with pytest.raises(ReadError, match="cannot be read"):
                ch[key]
