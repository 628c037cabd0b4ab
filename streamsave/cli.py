"""The ``streamsave`` command (also ``python -m streamsave``).

``streamsave demo [-o FILE] [--duration S] [--rate HZ] [--compression CODEC] [--overwrite]``
    records a simulated camera (512 x 512 ``uint16``, 1000 frames/s by default), a
    spectrometer (100 spectra/s) and a thermometer (10 readings/s) concurrently into
    one file, with a live table of what the saver is doing (it fits 80 columns); says
    how large the file can grow before it starts, then where it is and how to read it.
``streamsave info FILE [--json]``
    describes a recorded file (read with :func:`streamsave.open_reader`): per detector
    its settings, per channel its frames, frame shape, dtype, units, time span and
    rate, axes, compression and compression ratio. Works on a file being written.
    ``--json`` prints the same as one JSON document.
``streamsave export FILE CHANNEL -o OUT [--frames A:B] [--overwrite]``
    writes one channel (``"Detector/channel"``) to ``.npy``, ``.csv``/``.txt``,
    ``.tif``/``.tiff`` or ``.h5``, the format chosen by OUT's suffix.
``streamsave plot FILE CHANNEL -o OUT.png [--frame K | --mean] [--overwrite]``
    saves a PNG of one frame, or of the mean frame (0D channels: values against time).
``streamsave follow FILE [--interval S] [--wait S] [--idle-timeout S]``
    a live status of a file being written (durable frames, rates per channel),
    refreshed until the writer closes the file.
``streamsave recover FILE -o OUT [--overwrite]``
    copies the whole frames of a crashed writer's file into a new, clean file.
``streamsave replay SRC [-o DST] [--speed S | --as-fast-as-possible] [--channels A,B] [--start T] [--stop T] ...``
    replays a recording with its original timing, merged across channels by
    timestamp, with a live status (frames/s, lateness); with ``-o``, into a new file
    through a saver (``--compression``, ``--chunk-bytes``), as fast as possible
    unless ``--speed`` is given.
``streamsave view FILE [--host ADDR] [--port N] [--no-browser]``
    serves FILE to a web browser (H5Web: tree, attributes, settings, plots; new frames
    while a writer records it; export of frames), on loopback unless ``--host`` says
    otherwise; prints the address first, serves until Ctrl-C (needs the ``view`` extra).

Every argument is described by ``streamsave COMMAND --help``.

Exit status:

- 0: success (``follow``: the writer closed the file);
- 1: an error, reported as one line on stderr (``streamsave: error: ...``), without a
  traceback: a missing or unreadable file, an unknown channel, a file that exists,
  a format that cannot hold the channel, a storage error while recording;
- 2: a usage error (unknown command, missing or malformed argument), with the usage;
- 130: interrupted by Ctrl-C (``demo`` still closes the recording cleanly first: every
  frame accepted before the interrupt is written, and the summary is printed; ``view``
  stops serving).

This package (:mod:`streamsave.cli` and :mod:`streamsave._cli`) is the only code of
streamsave that prints.
"""

from __future__ import annotations

from ._cli import main

__all__ = ("main",)
