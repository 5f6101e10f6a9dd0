"""DuckDB metadata store and the analysts' lake. No Dagster imports."""

from .duckdb_store import MetadataStore, WriteResult
from .lake_engine import LakeLocation, lake_dir
from .snapshot import SnapshotNotFound, connect, export_snapshot, publish_snapshot

__all__ = [
    "LakeLocation",
    "MetadataStore",
    "SnapshotNotFound",
    "WriteResult",
    "connect",
    "export_snapshot",
    "lake_dir",
    "publish_snapshot",
]
