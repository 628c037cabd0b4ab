"""PyMoDAQ's own continuous saver (pymodaq_data's ``DataToExportTimedSaver`` on an
``H5SaverLowLevel`` with the h5py backend): what DAQ_Viewer's continuous saving does,
one ``DataToExport`` per frame. It is slow, so runs are capped in frames and seconds."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from ._baselines import GROUP, fsync_path
from ._common import Ctx, Entry, Skip
from ._frames import KINDS, frame_at, load_pool

# kind -> (max frames full, max frames quick); each run also stops after _SECONDS
_CAPS: Final = {"2d512": (150, 30), "1d": (400, 80), "0d": (450, 90)}
_SECONDS: Final = (5.0, 1.0)


def _import() -> tuple[Any, Any, Any, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pymodaq_data.data import DataRaw, DataToExport
            from pymodaq_data.h5modules.data_saving import DataToExportTimedSaver
            from pymodaq_data.h5modules.saving import H5SaverLowLevel
    except Exception as exc:
        raise Skip(f"pymodaq_data is not importable: {exc!r}") from exc
    return DataRaw, DataToExport, DataToExportTimedSaver, H5SaverLowLevel


def _run(ctx: Ctx, key: str) -> Entry:
    data_raw, data_to_export, timed_saver, saver_low_level = _import()
    from importlib.metadata import version

    kind = KINDS[key]
    pool = load_pool(key, ctx.workdir)
    max_frames = ctx.count(*_CAPS[key])
    max_seconds = _SECONDS[1] if ctx.quick else _SECONDS[0]
    path = ctx.workdir / f"pymodaq_{key}.h5"
    n = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            h5saver = saver_low_level(save_type="detector", backend="h5py")
            h5saver.init_file(path, new_file=True)
            node = h5saver.add_det_group(h5saver.raw_group, title="Detector")
            saver = timed_saver(h5saver)
            t_loop = time.perf_counter()
            while n < max_frames and time.perf_counter() - t_loop < max_seconds:
                frame = frame_at(pool, n)
                data = np.array([frame]) if key == "0d" else frame
                dte = data_to_export("det", data=[data_raw("ch", data=[data])])
                saver.add_data(node, dte)
                n += 1
            h5saver.close_file()
            fsync_path(path)
            seconds = time.perf_counter() - t0
    finally:
        path.unlink(missing_ok=True)
    entry = Entry(f"pymodaq_{key}", GROUP, params={
        "kind": key, "frame_bytes": kind.nbytes, "backend": "h5py",
        "saver": "DataToExportTimedSaver", "pymodaq_data": version("pymodaq_data"),
        "max_frames": max_frames, "max_seconds": max_seconds, "series": "PyMoDAQ continuous",
    })
    return entry.finish(n, n * kind.nbytes, seconds)


def pymodaq_2d(ctx: Ctx) -> Entry:
    return _run(ctx, "2d512")


def pymodaq_1d(ctx: Ctx) -> Entry:
    return _run(ctx, "1d")


def pymodaq_0d(ctx: Ctx) -> Entry:
    return _run(ctx, "0d")


PYMODAQ: Final[dict[str, Callable[[Ctx], Entry]]] = {
    "pymodaq_2d512": pymodaq_2d,
    "pymodaq_1d": pymodaq_1d,
    "pymodaq_0d": pymodaq_0d,
}
