"""``streamsave view``: a local web server that shows one HDF5 file in the browser.

The page is H5Web (ESRF's React viewer for HDF5, built into :file:`static/`); the data
comes from h5grove's readers, behind this package's own routes, which confine every
request to the one file the server was started on (:mod:`._confine`), open it as an SWMR
reader while a writer records it, and export frames through the reader's export
(:mod:`._export`). Nothing here is imported unless the ``view`` extra is installed; the
command line checks that first (:mod:`streamsave._cli._view`).
"""
