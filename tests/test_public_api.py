"""The public surface: __all__ is the contract, and the core works under trio too."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import anyio
import numpy as np

import streamsave
from tests.conftest import read_channel


def test_all_matches_the_namespace() -> None:
    assert isinstance(streamsave.__all__, tuple)
    public = {n for n in dir(streamsave) if not n.startswith("_")} - {
        m.name for m in pkgutil.iter_modules(streamsave.__path__)} - {"annotations"}
    assert public == set(streamsave.__all__) - {"__version__"}
    for name in streamsave.__all__:
        assert getattr(streamsave, name) is not None


def test_private_modules_declare_all_as_tuples() -> None:
    for info in pkgutil.walk_packages(streamsave.__path__, "streamsave."):
        if info.name == "streamsave.__main__":
            continue
        module = importlib.import_module(info.name)
        exported = getattr(module, "__all__", None)
        if exported is not None:
            assert isinstance(exported, tuple), info.name
            for name in exported:
                assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"


def test_errors_refine_builtins() -> None:
    assert issubclass(streamsave.ConfigError, ValueError)
    assert issubclass(streamsave.FrameMismatchError, ValueError)
    assert issubclass(streamsave.TimestampError, ValueError)
    assert issubclass(streamsave.StorageError, OSError)
    for name in streamsave.__all__:
        obj = getattr(streamsave, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, streamsave.StreamSaveError)


def test_py_typed_is_shipped() -> None:
    assert (Path(streamsave.__file__).parent / "py.typed").exists()


def test_core_path_under_trio(tmp_path: Path) -> None:
    path = tmp_path / "trio.h5"

    async def main() -> None:
        async with streamsave.open_saver(path, compression="blosc2-lz4", queue_size=8) as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(32,), dtype="int32", chunk_frames=4)
            for i in range(200):  # a queue of 8 forces waits for room
                await ch.push(np.full(32, i, dtype="int32"))
            await ch.push_many(np.zeros((5, 32), dtype="int32"))
            assert (await saver.flush())["D/c"] == 205

    anyio.run(main, backend="trio")
    data, _ = read_channel(path, "D/c")
    np.testing.assert_array_equal(data[:200, 0], np.arange(200))
