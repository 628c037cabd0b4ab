"""Choosing a backend by name, what a missing library says, and the checks of a saver's
options against what the backend declares."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import streamsave
from streamsave._config import make_config
from streamsave.backends._registry import BACKENDS, backend_class, capabilities
from streamsave.backends.h5py import H5pyBackend


def test_names_resolve_to_their_classes() -> None:
    assert backend_class("h5py") is H5pyBackend
    pytest.importorskip("tables")
    from streamsave.backends.tables import TablesBackend

    assert backend_class("tables") is TablesBackend
    caps = capabilities(TablesBackend)
    assert (caps.name, caps.swmr, caps.direct_chunk_write, caps.local) == ("tables", False, True, True)


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(streamsave.ConfigError) as info:
        make_config("run.h5", {"backend": "hdf6"})
    assert "'hdf6'" in str(info.value) and all(repr(name) in str(info.value) for name in BACKENDS)


@pytest.mark.parametrize(("name", "library", "extra"), [("tables", "tables", "tables"), ("h5pyd", "h5pyd", "hsds")])
def test_a_missing_library_names_its_pip_extra(monkeypatch: pytest.MonkeyPatch, name: str, library: str,
                                               extra: str) -> None:
    module = BACKENDS[name][0]
    monkeypatch.setitem(sys.modules, library, None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, module, raising=False)
    here = Path(streamsave.__file__).parent / "backends" / f"{module.rsplit('.', 1)[1]}.py"
    with pytest.raises(streamsave.ConfigError) as info:
        make_config("run.h5", {"backend": name})
    if here.exists():
        assert f"pip install 'streamsave[{extra}]'" in str(info.value)
    else:  # the module itself is not there yet
        assert f"backend {name!r} is not part of this streamsave installation" in str(info.value)


class _Service(H5pyBackend):
    """A backend that declares what a remote service would (its files are local here)."""

    name = "service"
    supports_swmr = False
    supports_direct_chunk_write = False
    codecs = frozenset({"lz4"})
    max_request_bytes = 1 << 20
    local = False
    opened: list[tuple[str, dict[str, Any]]] = []  # noqa: RUF012

    def __init__(self, path: Any, mode: Any = "w-", *, swmr: bool = False, endpoint: str = "",
                 password: str = "") -> None:
        super().__init__(path, mode, swmr=swmr)

    @classmethod
    def open_readonly(cls, path: str, **backend_options: Any) -> Any:
        cls.opened.append((path, backend_options))
        return h5py.File(path, "r")


def test_what_the_backend_cannot_do_is_refused_with_what_it_can() -> None:
    with pytest.raises(streamsave.ConfigError) as info:
        make_config("/home/me/run.h5", {"backend": _Service, "swmr": True})
    assert "swmr=False" in str(info.value) and "codecs lz4" in str(info.value)
    with pytest.raises(streamsave.ConfigError) as info:
        make_config("/home/me/run.h5", {"backend": _Service, "compression": "blosc2-zstd"})
    assert "'blosc2-lz4'" in str(info.value) and "zstd" in str(info.value)
    with pytest.raises(streamsave.ConfigError, match="1 MiB per request"):
        make_config("/home/me/run.h5", {"backend": _Service, "chunk_bytes": (1 << 20) + 1})
    config = make_config("/home/me/run.h5", {"backend": _Service, "compression": "blosc2-lz4"})
    assert config.swmr is False


def test_swmr_none_is_what_the_backend_has_and_must_be_a_bool() -> None:
    assert make_config("run.h5", {}).swmr is True
    assert make_config("run.h5", {"swmr": False}).swmr is False
    with pytest.raises(streamsave.ConfigError, match="swmr must be True, False or None"):
        make_config("run.h5", {"swmr": "yes"})


def test_a_service_path_is_kept_as_given_and_not_checked_as_a_file() -> None:
    config = make_config("run.h5", {"backend": _Service})
    assert str(config.path) == "run.h5"  # not made absolute against the working directory
    config.check_target()  # no local directory to check
    assert str(make_config("run.h5", {}).path).startswith("/")


def test_backend_options_are_keyword_names_and_never_in_the_repr() -> None:
    secret = "hunter2-never-shown"
    config = make_config("/home/me/run.h5", {"backend": _Service, "backend_options": {"password": secret}})
    assert secret not in repr(config) and secret not in str(config)
    with pytest.raises(streamsave.ConfigError) as info:
        make_config("run.h5", {"backend_options": [("password", secret)]})
    assert secret not in str(info.value)
    with pytest.raises(streamsave.ConfigError) as info:
        make_config("/home/me/run.h5", {"backend": _Service, "backend_options": {"pasword": secret}})
    assert "'pasword'" in str(info.value) and secret not in str(info.value)


async def test_the_reader_opens_a_service_file_through_the_backend(tmp_path: Path) -> None:
    path = tmp_path / "remote.h5"
    async with streamsave.open_saver(path, compression="blosc2-lz4") as saver:
        await saver.add_detector("D").add_channel("c", shape=(3,)).push(np.arange(3.0))
    _Service.opened.clear()
    with streamsave.open_reader(path, backend=_Service, backend_options={"endpoint": "e"}) as run:
        np.testing.assert_array_equal(run.channels["D/c"][:], [[0.0, 1.0, 2.0]])
    assert _Service.opened == [(str(path), {"endpoint": "e"})]


def test_a_local_backend_has_no_readonly_opener() -> None:
    with pytest.raises(NotImplementedError):
        H5pyBackend.open_readonly("x.h5")
