"""pypi-assets: PyPI's metadata in DuckDB as a Dagster asset graph, incremental by serial.

Library use needs only :mod:`pypi_assets.pypi` and :mod:`pypi_assets.filters` (no disk, no
DuckDB). Analysts use :func:`connect` to open the newest published snapshot read-only, or the
one current at a past serial or time (``as_of``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:  # importing the package (e.g. for pypi/ and filters/ alone) loads no DuckDB
    import duckdb

__all__ = ["__version__", "connect"]


def connect(
    db: str | Path | None = None, *, as_of: int | datetime | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the newest published snapshot of ``db`` read-only, or, with ``as_of``, the one
    current at that upstream serial or time (every table and view as it was then). By
    default ``db`` is ``PYPI_ASSETS_DB`` (else ``data/pypi.duckdb``), a relative path taken
    from the directory you started in (``$PWD``, which Jupyter passes to kernels it starts in
    the notebook's folder)."""
    from .store.snapshot import connect as _connect
    from .sync.settings import analyst_db

    return _connect(db if db is not None else analyst_db(), as_of=as_of)
