"""Every error pypi-assets raises on purpose, in one tree (as httpx has in ``_exceptions.py``).

::

    PyPIAssetsError                   the root: every one of them
    ├── UpstreamError                 the upstream failed, after its retries (CLI: exit 3)
    │   ├── NotFound                  404 or 410
    │   ├── StaleResponse             older than the serial expected (a lagging CDN)
    │   ├── DeadlineExceeded          a request, or the run, took longer than allowed
    │   ├── LimitExceeded             an answer over a configured cap
    │   ├── RateLimited               over upstream's rate limit (or our call budget) for
    │   │                             longer than the run may wait: stopped, nothing lost
    │   ├── XmlRpcUnavailable         the upstream offers no XML-RPC (405, 404, 501)
    │   ├── UpstreamFault             (sync.listing) an answer a mirror must not act on
    │   └── InvalidResponse           the upstream sent something invalid
    │       └── IntegrityError        bytes that are not the advertised file
    ├── InvalidData (ValueError)      a value a parser refuses, no request in sight
    │   ├── UnsafeValue               a malformed or hostile name, URL, digest, version, ...
    │   ├── SimpleParseError          a Simple API page or listing
    │   ├── MetadataError             a core metadata file
    │   ├── XmlRpcError               an XML-RPC answer (a fault, hostile XML)
    │   └── ProjectError              a project as upstream serves it
    ├── ConfigurationError (ValueError)  the operator's input cannot be used (CLI: exit 2)
    │   ├── ConfigError               (filters.config) the config file
    │   ├── SettingsError             (sync.settings) a flag or an environment variable
    │   └── UsageError                (cli) the command line
    ├── Refused                       a safety check refused a change: nothing was changed
    │   ├── ListingShrank             (store.duckdb_store) a listing drops too many projects
    │   ├── IndexOwnedElsewhere       (sync.index) another database writes the index
    │   └── TooManyDeletions          (sync.files) a deletion over the allowed share
    └── NotModified                   (pypi.fetch) a signal, not a failure: upstream sent 304

The classes of ``pypi/`` are defined here (and re-exported where they were defined before);
those of the layers above subclass these where they are defined. ``InvalidData`` is the
parsers' verdict: the code that made the request reports it per project, or as an
``InvalidResponse``. A ``Refused`` is turned by its caller into what it means there (an
upstream fault, a settings error, a refusal the operator can override). Bases from before
the tree are kept (``UpstreamError`` is a ``RuntimeError``, ``XmlRpcError`` and
``ProjectError`` are too; the ``ValueError`` branches stay ``ValueError``), so that no
``except`` written against them changes meaning.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DeadlineExceeded",
    "IntegrityError",
    "InvalidData",
    "InvalidResponse",
    "LimitExceeded",
    "MetadataError",
    "NotFound",
    "NotModified",
    "ProjectError",
    "PyPIAssetsError",
    "RateLimited",
    "Refused",
    "SimpleParseError",
    "StaleResponse",
    "UnsafeValue",
    "UpstreamError",
    "XmlRpcError",
    "XmlRpcUnavailable",
]


class PyPIAssetsError(Exception):
    """The root of every error pypi-assets raises on purpose."""


# ------------------------------------------------------------------ the upstream failed
class UpstreamError(PyPIAssetsError, RuntimeError):
    """A request that failed after its retries; the message names the URL and the cause."""


class NotFound(UpstreamError):
    """Upstream answered 404 or 410."""


class StaleResponse(UpstreamError):
    """Upstream kept serving a page older than the serial we expect (a lagging CDN)."""


class DeadlineExceeded(UpstreamError):
    """A request, or the run, took longer than its deadline (``global-timeout``)."""


class LimitExceeded(UpstreamError):
    """An answer over a configured cap (body size, versions, files per release)."""


class RateLimited(UpstreamError):
    """Upstream's rate limit (HTTP 429, or an XML-RPC fault saying "Limit may reset in N
    seconds"), or the client's own call budget, asks for a wait longer than the run may
    make. Raised before anything is changed, so the next run loses nothing."""


class XmlRpcUnavailable(UpstreamError):
    """The upstream offers no XML-RPC endpoint (a proxy, a static mirror): 405, 404 or 501."""


class InvalidResponse(UpstreamError):
    """An answer that cannot be mirrored as sent (bad JSON, a value out of range, ...)."""


class IntegrityError(InvalidResponse):
    """The upstream sent bytes that are not the advertised file. Never retried."""


# ------------------------------------------------------------------ a parser's verdict
class InvalidData(PyPIAssetsError, ValueError):
    """A value a parser of ``pypi/`` refuses; the message names the value."""


class UnsafeValue(InvalidData):
    """An upstream value that is malformed or hostile; the message names the value."""


class SimpleParseError(InvalidData):
    """A Simple API (PEP 503/691) page or listing that cannot be read."""


class MetadataError(InvalidData):
    """A core metadata file that cannot be read."""


class XmlRpcError(InvalidData, RuntimeError):
    """An XML-RPC answer that is a fault, too large, or hostile XML."""


class ProjectError(InvalidData, RuntimeError):
    """A project that cannot be mirrored as upstream serves it; the message names it."""


# ------------------------------------------------------------------ the operator's input
class ConfigurationError(PyPIAssetsError, ValueError):
    """A config value, flag, environment variable or command line that cannot be used."""


# ------------------------------------------------------------------ refusals and signals
class Refused(PyPIAssetsError):
    """A safety check refused a bulk change, and nothing was changed."""


class NotModified(PyPIAssetsError):
    """The stored project is current: upstream answered a conditional request with 304.
    ``serial`` is the serial that answer carries, if any (a serial can move without the
    project JSON changing, as a role change does)."""

    def __init__(self, message: str, serial: int | None) -> None:
        super().__init__(message)
        self.serial = serial
