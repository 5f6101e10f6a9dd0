"""DuckDB metadata store and analyst snapshots. No Dagster imports."""

from .duckdb_store import MetadataStore, WriteResult
from .snapshot import connect, current_snapshot, publish_snapshot, snapshot_dir

__all__ = [
    "MetadataStore",
    "WriteResult",
    "connect",
    "current_snapshot",
    "publish_snapshot",
    "snapshot_dir",
]
