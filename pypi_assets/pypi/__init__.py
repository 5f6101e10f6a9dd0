"""The upstream protocol layer: PEP 691/503 simple index, JSON API, PEP 658 core metadata and
XML-RPC. No Dagster, no DuckDB, no filesystem access."""

from .client import ClientConfig, PyPIClient, RequestStats
from .errors import (
    ConfigurationError,
    DeadlineExceeded,
    IntegrityError,
    InvalidData,
    InvalidResponse,
    LimitExceeded,
    MetadataError,
    NotFound,
    NotModified,
    ProjectError,
    PyPIAssetsError,
    Refused,
    SimpleParseError,
    StaleResponse,
    UnsafeValue,
    UpstreamError,
    XmlRpcError,
)
from .fetch import fetch_project
from .names import canonical
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
    "ConfigurationError",
    "DeadlineExceeded",
    "Distribution",
    "IntegrityError",
    "InvalidData",
    "InvalidResponse",
    "LimitExceeded",
    "MetadataError",
    "NotFound",
    "NotModified",
    "Project",
    "ProjectError",
    "ProjectListing",
    "PyPIAssetsError",
    "PyPIClient",
    "Refused",
    "Release",
    "RequestStats",
    "SimpleParseError",
    "StaleResponse",
    "StoredProject",
    "UnsafeValue",
    "UpstreamError",
    "UpstreamListing",
    "XmlRpcError",
    "canonical",
    "fetch_project",
]
