"""What the assets of the code location share: the writer pool, groups, owners, tags, the
code version, freshness, the automation condition and the standard metadata."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from .. import pypi
from .._version import __version__
from ..pypi import DISTRIBUTION_COLUMNS
from ..store.schema import SCHEMA_VERSION, column_type
from ..sync.reports import Progress

#: Every asset that writes the working DuckDB runs in this pool; dagster.yaml gives it one slot.
POOL = "pypi_assets_duckdb"
GROUP = "pypi_mirror"
ANALYST_GROUP = "analyst"
OWNERS = ("team:pypi-assets",)
MIRROR_TAGS = {"domain": "mirror"}
FILES_TAGS = {"domain": "files"}
ANALYST_TAGS = {"domain": "analyst"}


def source_digest(package: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


#: The code version of every asset: the release, the stored schema's version, and a digest of
#: the upstream parser's source (``pypi_assets/pypi``), so that a parser change marks the
#: tables built from its records as changed in the UI, with no constant to remember to bump.
CODE_VERSION = (
    f"{__version__}-schema{SCHEMA_VERSION}-parser{source_digest(Path(pypi.__file__).parent)}"
)

#: PyPI's serial moves every few seconds and the sensor ticks every minute, so a window run
#: lands within minutes and the snapshot and the index follow it. Older than this means the
#: mirror is behind (or, on a quiet private index, that nothing changed upstream).
FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=6), warn_window=timedelta(hours=2)
)

#: Eager, and only once every blocking check of every upstream asset passed: an eager run is a
#: run of its own, so without this a snapshot or an index could publish data that a blocking
#: check of the window run before it had failed.
EAGER_AFTER_CHECKS = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
)

#: The columns of ``distributions`` (and of the view ``selected_distributions``), from the same
#: column list the DDL is generated from.
DISTRIBUTIONS_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name, column_type(name)) for name in DISTRIBUTION_COLUMNS]
)


def column_schema(schema: dg.TableSchema) -> dict[str, Any]:
    return {"dagster/column_schema": dg.MetadataValue.table_schema(schema)}


def row_count(rows: int) -> dict[str, Any]:
    return {"dagster/row_count": dg.MetadataValue.int(rows)}


def log_progress(context: dg.AssetExecutionContext, every: float = 5.0) -> Progress:
    """A progress callback that logs to the run at most every ``every`` seconds, and at the end."""
    last = [0.0]

    def progress(phase: str, done: int, total: int, detail: str) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > every:
            last[0] = now
            context.log.info(f"{phase}: {done}/{total} {detail}")

    return progress
