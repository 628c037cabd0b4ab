"""PNG plots of a channel with matplotlib (the ``plot`` extra), labelled from the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ._errors import ConfigError, ReadError

if TYPE_CHECKING:
    from ._channel_reader import ChannelReader

__all__ = ("plot",)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'streamsave[plot]'") from None
    matplotlib.use("Agg", force=True)  # files only: no window, no display needed
    import matplotlib.pyplot as plt

    return plt


def _axis_label(label: str, units: str) -> str:
    return f"{label} ({units})" if units else label


def plot(channel: ChannelReader, path: str | os.PathLike[str], *, frame: int | None = 0, mean: bool = False) -> Path:
    """See :meth:`ChannelReader.plot`."""
    out = Path(path)
    n = len(channel)
    if n == 0:
        raise ConfigError(f"{channel.full_name!r} has no frames to plot")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    value_label = _axis_label(channel.label, channel.units)
    try:
        if not channel.frame_shape:
            times = np.asarray(channel.timestamps[:])
            values = channel[:]
            if np.iscomplexobj(values):
                values, value_label = np.abs(values), f"|{value_label}|"
            x = times - times[0] if np.all(np.isfinite(times)) else np.arange(n)
            ax.plot(x, values, marker="o" if n == 1 else None)
            ax.set_xlabel("time since the first frame (s)")
            ax.set_ylabel(value_label)
            ax.set_title(channel.full_name)
        else:
            if mean:
                image = _mean(channel)
                what = f"mean of {n} frames"
            else:
                index = 0 if frame is None else frame
                image = channel[index]
                what = f"frame {index}"
            if np.iscomplexobj(image):
                image, value_label = np.abs(image), f"|{value_label}|"
            _draw(ax, fig, channel, np.asarray(image, dtype=np.float64), value_label)
            ax.set_title(f"{channel.full_name}, {what}")
        fig.tight_layout()
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out


#: the most bytes ``mean=True`` reads (in blocks of 64 MiB)
MAX_MEAN_BYTES: Final = 64 * 2**30


def _mean(channel: ChannelReader) -> Any:
    frame_bytes = channel.dtype.itemsize * int(np.prod(channel.frame_shape))
    if len(channel) * frame_bytes > MAX_MEAN_BYTES:
        raise ReadError(f"{channel.full_name!r}: the mean of {len(channel):,} frames would read "
                        f"{len(channel) * frame_bytes / 2**30:,.0f} GiB (at most {MAX_MEAN_BYTES >> 30} GiB): "
                        "plot one frame, or export a range and average it")
    total = np.zeros(channel.frame_shape, dtype=np.complex128 if channel.dtype.kind == "c" else np.float64)
    step = max(1, (64 * 2**20) // max(1, channel.dtype.itemsize * int(np.prod(channel.frame_shape))))
    for start in range(0, len(channel), step):
        total += channel[start:start + step].sum(axis=0, dtype=np.float64)
    return total / len(channel)


def _draw(ax: Any, fig: Any, channel: ChannelReader, image: Any, value_label: str) -> None:
    axes = channel.axes
    if image.ndim == 1:
        x = _coordinates(axes[0] if axes else None, image.shape[0])
        ax.plot(x, image, marker="o" if image.shape[0] == 1 else None)
        ax.set_xlabel(_axis_label(axes[0].label, axes[0].units) if axes else "index")
        ax.set_ylabel(value_label)
        return
    if image.ndim > 2:
        image = image.reshape(image.shape[0], -1)
    y = _edges(_coordinates(axes[0] if len(axes) > 0 else None, image.shape[0]))
    x = _edges(_coordinates(axes[1] if len(axes) > 1 else None, image.shape[1]))
    mesh = ax.imshow(image, origin="lower", aspect="auto", extent=(x[0], x[1], y[0], y[1]))
    fig.colorbar(mesh, ax=ax, label=value_label)
    ax.set_xlabel(_axis_label(axes[1].label, axes[1].units) if len(axes) > 1 else "column")
    ax.set_ylabel(_axis_label(axes[0].label, axes[0].units) if axes else "row")


def _coordinates(axis: Any, size: int) -> Any:
    """An axis's coordinates, or pixel indices when it has none usable (missing, not
    finite, or all equal)."""
    index = np.arange(size, dtype=np.float64)
    if axis is None:
        return index
    try:
        values = np.asarray(axis.coordinates(size), dtype=np.float64)
    except (ConfigError, ValueError, TypeError):
        return index
    if not np.all(np.isfinite(values)) or (size > 1 and values[0] == values[-1]):
        return index
    return values


def _edges(centres: Any) -> tuple[float, float]:
    """The outer edges of pixels centred on ``centres`` (half a step beyond each end)."""
    first, last = float(centres[0]), float(centres[-1])
    half = (last - first) / (len(centres) - 1) / 2 if len(centres) > 1 else 0.5
    return first - half, last + half
