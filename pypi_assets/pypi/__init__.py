"""The upstream protocol layer: PEP 691/503 simple index, JSON API, PEP 658 core metadata and
XML-RPC. No Dagster, no DuckDB, no filesystem access."""

from .client import ClientConfig, NotFound, PyPIClient, RequestStats, StaleResponse, UpstreamError
from .fetch import ProjectError, fetch_project
from .limits import DeadlineExceeded, InvalidResponse, LimitExceeded
from .names import UnsafeValue, canonical
from .records import (
    DISTRIBUTION_COLUMNS,
    SEED_FIELDS,
    Distribution,
    Project,
    ProjectListing,
    Release,
    StoredProject,
    UpstreamListing,
)

__all__ = [
    "DISTRIBUTION_COLUMNS",
    "SEED_FIELDS",
    "ClientConfig",
    "DeadlineExceeded",
    "Distribution",
    "InvalidResponse",
    "LimitExceeded",
    "NotFound",
    "Project",
    "ProjectError",
    "ProjectListing",
    "PyPIClient",
    "Release",
    "RequestStats",
    "StaleResponse",
    "StoredProject",
    "UnsafeValue",
    "UpstreamError",
    "UpstreamListing",
    "canonical",
    "fetch_project",
]
