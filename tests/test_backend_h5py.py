"""The conformance scenarios on the default backend (h5py, local files, SWMR)."""

from __future__ import annotations

from tests.backend_conformance import BackendConformance


class TestH5pyBackend(BackendConformance):
    backend = "h5py"
    killed_writer_backend = "h5py"
