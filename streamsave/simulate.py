"""Simulated instruments for demos, examples and tests: no hardware needed.

Three drivers, written the way a real asyncio driver would be: each is a coroutine
that produces frames at a fixed rate and pushes them into a
:class:`~streamsave.Channel`:

* :func:`run_camera`: 512 x 512 ``uint16`` images (shot noise on a dark level, plus a
  few Gaussian spots that move between frames), 1000 frames/s by default;
* :func:`run_spectrometer`: 2048-pixel ``float64`` spectra over 400-800 nm with two
  emission lines, 100 spectra/s by default;
* :func:`run_thermometer`: a ``float64`` temperature in kelvin near 293 K that drifts
  slowly, 10 readings/s by default;
* :func:`run_recorded`: a replaying instrument, which pushes a recorded channel's
  frames (``"Camera/image"`` by default) at the recorded rate, so a driver or a
  pipeline can be tested against a real recording; :func:`add_recorded_instrument`
  declares a channel like the recorded one.

:func:`add_simulated_instruments` declares the three detectors and their channels on
a saver (do it before the first push) and returns the channels.

Pacing: frame ``i`` is due at ``start + i / rate`` on :func:`time.monotonic`. A
driver sleeps until the next frame is due; when it is late (the event loop was
busy, or ``await push()`` waited for room in a full queue) it pushes every frame
that is due in a burst, yielding to the event loop between bursts, and never
busy-waits. Timestamps are the nominal acquisition times ``t0 + i / rate`` (Unix
epoch seconds), as a hardware-triggered instrument would report them.

Camera frames come from a pool generated once at start, so producing a frame costs
nothing; the pool's frames are never modified, so pushing them by reference is safe.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import anyio
import anyio.lowlevel
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from ._errors import ConfigError
from ._reader import open_reader
from ._replay import replay
from ._spec import Axis

if TYPE_CHECKING:
    from ._channel import Channel
    from ._saver import Saver

__all__ = (
    "CAMERA_RATE",
    "SPECTROMETER_RATE",
    "THERMOMETER_RATE",
    "Instruments",
    "Pacer",
    "add_recorded_instrument",
    "add_simulated_instruments",
    "camera_frames",
    "run_camera",
    "run_recorded",
    "run_spectrometer",
    "run_thermometer",
    "spectrum_model",
    "wavelengths",
)

#: default frame rates, in frames per second
CAMERA_RATE: Final = 1000.0
SPECTROMETER_RATE: Final = 100.0
THERMOMETER_RATE: Final = 10.0

#: at most this many frames are pushed between two yields to the event loop
MAX_BURST: Final = 64

CAMERA_POOL: Final = 16
SPECTRUM_PIXELS: Final = 2048


class Instruments(NamedTuple):
    """The channels of the three simulated detectors."""

    #: ``Camera/image``: (512, 512) uint16 counts
    camera: Channel
    #: ``Spectrometer/spectrum``: (2048,) float64 counts over a wavelength axis in nm
    spectrometer: Channel
    #: ``Thermometer/temperature``: scalar float64 kelvin
    thermometer: Channel


def wavelengths(pixels: int = SPECTRUM_PIXELS) -> npt.NDArray[np.float64]:
    """The spectrometer's wavelength axis: ``pixels`` values from 400 to 800 nm."""
    return np.linspace(400.0, 800.0, pixels)


def add_simulated_instruments(
    saver: Saver, *, camera_shape: tuple[int, int] = (512, 512), spectrum_pixels: int = SPECTRUM_PIXELS,
) -> Instruments:
    """Declare the simulated camera, spectrometer and thermometer on ``saver``.

    Call it before anything is pushed (in SWMR mode the layout freezes at the first
    push). Detector settings (rates are not known here, so only fixed properties)
    are stored with each detector.

    :param camera_shape: image size in pixels (rows, columns).
    :param spectrum_pixels: number of spectrometer pixels.
    :raises ~streamsave.ConfigError: the saver already has detectors with these names.
    :raises ~streamsave.LayoutFrozenError: something was already pushed.
    """
    camera = saver.add_detector("Camera", settings={"model": "simulated", "exposure_ms": 0.5,
                                                    "bit_depth": 16, "dark_level": 100})
    image = camera.add_channel("image", shape=camera_shape, dtype="uint16", units="counts",
                               axes=[Axis("y", units="px"), Axis("x", units="px")])
    spectrometer = saver.add_detector("Spectrometer", settings={"model": "simulated",
                                                                "integration_ms": 5.0})
    spectrum = spectrometer.add_channel(
        "spectrum", shape=(spectrum_pixels,), dtype="float64", units="counts",
        axes=[Axis("wavelength", units="nm", values=wavelengths(spectrum_pixels))])
    thermometer = saver.add_detector("Thermometer", settings={"model": "simulated", "sensor": "Pt100"})
    temperature = thermometer.add_channel("temperature", shape=(), dtype="float64", units="K",
                                          label="sample temperature")
    return Instruments(camera=image, spectrometer=spectrum, thermometer=temperature)


class Pacer:
    """Schedules frames at ``rate`` per second against :func:`time.monotonic`.

    Frame ``i`` is due at ``start + i / rate``. :meth:`next_burst` sleeps until at
    least one frame is due and returns how many are (at most :data:`MAX_BURST`), or
    0 once ``duration`` seconds have passed or ``frames`` frames were scheduled.
    With neither limit it runs until cancelled.

    :raises ValueError: ``rate`` not a positive finite number, or a negative limit.
    """

    def __init__(self, rate: float, *, duration: float | None = None, frames: int | None = None) -> None:
        if not (isinstance(rate, int | float) and 0 < rate < math.inf):
            raise ValueError(f"rate must be a positive number of frames per second, got {rate!r}")
        if duration is not None and not duration >= 0:
            raise ValueError(f"duration must be a non-negative number of seconds or None, got {duration!r}")
        if frames is not None and frames < 0:
            raise ValueError(f"frames must be a non-negative integer or None, got {frames!r}")
        self.rate = float(rate)
        self.start = time.monotonic()
        #: Unix time of frame 0
        self.epoch = time.time()
        self.end = math.inf if duration is None else self.start + duration
        self.limit = math.inf if frames is None else frames
        #: frames handed out so far
        self.scheduled = 0

    def deadline(self) -> anyio.CancelScope:
        """A cancel scope that ends at the end of ``duration``, even if the driver is
        then waiting in ``push()`` for room in a full queue (the frame being pushed
        is then not queued, as :meth:`~streamsave.Channel.push` documents)."""
        return anyio.CancelScope(deadline=anyio.current_time() + (self.end - time.monotonic()))

    def timestamps(self, first: int, n: int) -> npt.NDArray[np.float64]:
        """Nominal acquisition times (Unix seconds) of frames ``first .. first + n - 1``."""
        return self.epoch + np.arange(first, first + n, dtype=np.float64) / self.rate

    async def next_burst(self) -> int:
        """Wait until a frame is due; return how many are due now (0: finished).

        Always yields to the event loop at least once, so a late driver cannot
        starve other tasks.
        """
        while True:
            now = time.monotonic()
            if now >= self.end or self.scheduled >= self.limit:
                await anyio.lowlevel.checkpoint()
                return 0
            due = min(math.floor((now - self.start) * self.rate + 1e-9) + 1, self.limit) - self.scheduled
            if due > 0:
                await anyio.lowlevel.checkpoint()
                n = int(min(due, MAX_BURST))
                self.scheduled += n
                return n
            next_at = self.start + self.scheduled / self.rate
            await anyio.sleep(min(next_at, self.end) - now)


def camera_frames(
    shape: tuple[int, int] = (512, 512), *, pool: int = CAMERA_POOL, seed: int | None = 0,
) -> list[npt.NDArray[np.uint16]]:
    """A pool of camera images: shot (Poisson) noise on a dark level of 100 counts,
    plus three Gaussian spots (a few thousand counts, 6-15 px wide) that move along
    circles through the pool, so cycling through it looks like a live scene.
    The arrays are read-only."""
    rows, cols = shape
    y = np.arange(rows, dtype=np.float64)[:, None]
    x = np.arange(cols, dtype=np.float64)[None, :]
    rng = np.random.default_rng(seed)
    spots = [(0.30, 0.35, 0.15, 4000.0, 8.0), (0.65, 0.60, 0.10, 2500.0, 15.0), (0.50, 0.25, 0.20, 6000.0, 6.0)]
    frames = []
    for k in range(pool):
        phase = 2 * math.pi * k / pool
        mean = np.full(shape, 100.0)
        for j, (cy, cx, radius, height, width) in enumerate(spots):
            py = (cy + radius * math.sin(phase + 2 * j)) * rows
            px = (cx + radius * math.cos(phase + 2 * j)) * cols
            mean += height * np.exp(-((y - py) ** 2 + (x - px) ** 2) / (2 * width**2))
        frame = np.minimum(rng.poisson(mean), np.iinfo(np.uint16).max).astype(np.uint16)
        frame.setflags(write=False)
        frames.append(frame)
    return frames


def spectrum_model(wl: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The noiseless spectrum: a broad background plus lines at 532 and 656.3 nm."""
    background = 200.0 * np.exp(-(((wl - 600.0) / 150.0) ** 2))
    lines: Sequence[tuple[float, float, float]] = ((532.0, 5000.0, 1.5), (656.3, 3000.0, 2.5))
    for center, height, sigma in lines:
        background = background + height * np.exp(-((wl - center) ** 2) / (2 * sigma**2))
    return background


async def run_camera(
    channel: Channel, *, rate: float = CAMERA_RATE, duration: float | None = None, frames: int | None = None,
    pool: Sequence[npt.NDArray[np.uint16]] | None = None,
) -> int:
    """Push camera images into ``channel`` at ``rate`` frames/s.

    Stops after ``duration`` seconds or ``frames`` frames, whichever comes first
    (runs until cancelled if neither is given); the duration is a hard deadline,
    which also interrupts a ``push`` waiting for room. Each frame is pushed with
    ``await channel.push()``, so a full queue slows the camera down (backpressure);
    the shortfall shows as fewer frames than ``rate * duration``.

    :param channel: a 2-D ``uint16`` channel (from :func:`add_simulated_instruments`).
    :param pool: images to cycle through, never modified (default:
        :func:`camera_frames` of the channel's shape, generated in a worker thread
        before the clock starts, which takes a few tenths of a second).
    :returns: the number of frames pushed.
    :raises ValueError: invalid rate or limits, or a channel that is not 2-D.
    :raises ~streamsave.StreamSaveError: what ``push`` raises (e.g. the saver closed).
    """
    if len(channel.shape) != 2:
        raise ValueError(f"run_camera needs a channel of 2-D frames, got shape {channel.shape}")
    if pool is None:
        pool = await anyio.to_thread.run_sync(camera_frames, (channel.shape[0], channel.shape[1]))
    pacer = Pacer(rate, duration=duration, frames=frames)
    pushed = 0
    with pacer.deadline():
        while n := await pacer.next_burst():
            for t in pacer.timestamps(pushed, n):
                await channel.push(pool[pushed % len(pool)], timestamp=float(t))
                pushed += 1
    return pushed


async def run_spectrometer(
    channel: Channel, *, rate: float = SPECTROMETER_RATE, duration: float | None = None,
    frames: int | None = None, seed: int | None = 1,
) -> int:
    """Push spectra into ``channel`` at ``rate`` spectra/s: :func:`spectrum_model`
    with line intensities fluctuating by 2 % and Gaussian read noise of 10 counts.

    Due spectra are pushed together with ``push_many`` (one call per burst).
    Limits and errors as in :func:`run_camera`; a block cut short by the deadline
    while waiting for room may be partly queued, and is not counted.

    :param channel: a 1-D ``float64`` channel.
    :returns: the number of spectra pushed.
    """
    rng = np.random.default_rng(seed)
    model = spectrum_model(wavelengths(channel.shape[0]))
    pacer = Pacer(rate, duration=duration, frames=frames)
    pushed = 0
    with pacer.deadline():
        while n := await pacer.next_burst():
            gain = 1.0 + 0.02 * rng.standard_normal((n, 1))
            block = model * gain + 10.0 * rng.standard_normal((n, model.size))
            await channel.push_many(block, timestamps=pacer.timestamps(pushed, n))
            pushed += n
    return pushed


async def run_thermometer(
    channel: Channel, *, rate: float = THERMOMETER_RATE, duration: float | None = None,
    frames: int | None = None, seed: int | None = 2,
) -> int:
    """Push temperatures (kelvin) into ``channel`` at ``rate`` readings/s.

    The sample sits near 293.15 K with a slow drift (a random walk of about
    1 mK per reading) and 5 mK of white sensor noise. One ``push`` per reading.
    Limits and errors as in :func:`run_camera`.

    :param channel: a scalar ``float64`` channel.
    :returns: the number of readings pushed.
    """
    rng = np.random.default_rng(seed)
    pacer = Pacer(rate, duration=duration, frames=frames)
    drift = 0.0
    pushed = 0
    with pacer.deadline():
        while n := await pacer.next_burst():
            for t in pacer.timestamps(pushed, n):
                drift += 0.001 * float(rng.standard_normal())
                await channel.push(293.15 + drift + 0.005 * float(rng.standard_normal()), timestamp=float(t))
                pushed += 1
    return pushed


def _describe(source: str | os.PathLike[str], recorded: str) -> dict[str, Any]:
    with open_reader(source) as run:
        if recorded not in run.channels:
            raise ConfigError(f"recorded={recorded!r} is not a channel of {str(source)!r}; expected one of: "
                              f"{', '.join(run.channels) or '(none)'}")
        ch = run.channels[recorded]
        return {"detector": ch.detector or "Recorded", "settings": ch.settings, "name": ch.name,
                "shape": ch.frame_shape, "dtype": ch.dtype, "units": ch.units,
                "label": "" if ch.label == ch.name else ch.label, "axes": ch.axes}


async def add_recorded_instrument(saver: Saver, source: str | os.PathLike[str], *,
                                  recorded: str = "Camera/image") -> Channel:
    """Declare on ``saver`` a detector and channel like a recorded one (same detector
    and channel names, settings, frame shape, dtype, units, label and axes), for
    :func:`run_recorded` to push into. Reads the file's description in a worker
    thread. Call it before anything is pushed, as :func:`add_simulated_instruments`.

    :raises ~streamsave.ReadError: the file cannot be read.
    :raises ~streamsave.ConfigError: ``recorded`` is not one of its channels.
    """
    found = await anyio.to_thread.run_sync(_describe, source, recorded)
    detector = saver.add_detector(found["detector"], settings=found["settings"])
    return detector.add_channel(found["name"], shape=found["shape"], dtype=found["dtype"], units=found["units"],
                                label=found["label"], axes=found["axes"])


async def run_recorded(
    channel: Channel, source: str | os.PathLike[str], *, recorded: str = "Camera/image", speed: float = 1.0,
    duration: float | None = None, frames: int | None = None, loop: bool = False,
) -> int:
    """Push a recorded channel's frames into ``channel`` at the recorded rate: a
    replaying instrument with the simulated camera's interface (:func:`run_camera`).

    Frames come from :func:`streamsave.replay` (read ahead in a worker thread, each
    released when its recorded timestamp says, scaled by ``speed``) and are pushed
    with ``await channel.push()``, so a full queue slows the instrument down
    (backpressure) and the shortfall shows as late frames. Timestamps are those a
    live instrument would give: the time the replay started plus the recorded time
    since the first frame (divided by ``speed``), Unix epoch seconds.

    :param channel: a channel whose frames match the recorded ones (from
        :func:`add_recorded_instrument`, or declared by hand).
    :param source: the recording.
    :param recorded: the recorded channel, ``"Detector/channel"``.
    :param speed: 1.0 is the recorded rate, 2.0 twice as fast.
    :param duration: stop after this many seconds (a hard deadline, which also
        interrupts a ``push`` waiting for room).
    :param frames: stop after this many frames.
    :param loop: start the recording again from its first frame when it ends (until
        ``duration`` or ``frames``); otherwise stop at its end.
    :returns: the number of frames pushed.
    :raises ~streamsave.ConfigError: an invalid ``speed``, an unknown ``recorded``.
    :raises ~streamsave.ReadError: the recording cannot be read.
    :raises ~streamsave.StreamSaveError: what ``push`` raises (e.g. the saver closed,
        or frames that do not match the channel).
    """
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0 < speed < math.inf:
        raise ConfigError(f"speed must be a positive number (1.0: the recorded rate), got {speed!r}")
    if frames is not None and frames < 0:
        raise ConfigError(f"frames must be a non-negative integer or None, got {frames!r}")
    pushed = 0
    scope = anyio.CancelScope(deadline=math.inf if duration is None else anyio.current_time() + duration)
    with scope:
        while frames is None or pushed < frames:
            epoch, first = time.time(), math.nan
            async with replay(source, speed=speed, channels=[recorded]) as items:
                async for item in items:
                    if math.isnan(first):
                        first = item.timestamp
                    await channel.push(item.data, timestamp=epoch + (item.timestamp - first) / speed)
                    pushed += 1
                    if frames is not None and pushed >= frames:
                        break
            if not loop or math.isnan(first):
                break
    return pushed
