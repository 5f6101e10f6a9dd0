"""PEP 740 provenance: the per-file ``provenance`` URL of the Simple API, and the provenance
object it resolves to (``application/vnd.pypi.integrity.v1+json``), checked, with the
publisher identities its attestation bundles name. Pure: no I/O, no disk, no DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from .errors import InvalidResponse, UnsafeValue
from .limits import check_json_tree, loads_json
from .names import check_url
from .simple import SimpleProjectPage

__all__ = [
    "INTEGRITY_CT",
    "MAX_PROVENANCE_BYTES",
    "Publisher",
    "check_provenance_url",
    "page_provenance",
    "parse_provenance",
    "provenance_value",
]

#: PEP 740's media type for provenance objects
INTEGRITY_CT = "application/vnd.pypi.integrity.v1+json"
#: A provenance object larger than this is refused (PyPI's are a few KiB per attestation).
MAX_PROVENANCE_BYTES = 1024 * 1024
_MAX_URL = 4096
_MAX_FIELD = 1024  # a publisher field (repository, workflow, ...) longer than this is refused
_MAX_BUNDLES = 64
_PUBLISHER_FIELDS = ("kind", "repository", "workflow", "environment")


def provenance_value(raw: Any, base: str) -> str | None:
    """A file's ``provenance`` as a page states it, resolved against the page's ``base``:
    ``None`` for none (null, absent, or not a usable string). Not yet judged safe to request:
    :func:`check_provenance_url` does that, before any request."""
    if not isinstance(raw, str) or not raw or len(raw) > _MAX_URL:
        return None
    if any(c <= " " or c == "\x7f" for c in raw):
        return None
    # a relative URL resolves as a page's file URLs do (``../../integrity/...`` from another
    # mirror's page); an absolute one is kept as sent, its dot segments for
    # check_provenance_url to refuse
    return urljoin(base, raw)


def _traverses(url: str) -> bool:
    """Whether ``url``'s path has ``.`` or ``..`` segments (plain or percent-encoded) or an
    encoded ``/``."""
    segments = urlsplit(url).path.split("/")
    return any(unquote(s) in (".", "..") or "/" in unquote(s) for s in segments)


def page_provenance(page: SimpleProjectPage, page_url: str) -> dict[str, str | None]:
    """filename -> provenance URL (resolved against ``page_url``, or None) of every file of
    a simple project page."""
    return {sf.filename: provenance_value(sf.provenance, page_url) for sf in page.files}


def check_provenance_url(url: object, base: str, allowed_hosts: frozenset[str]) -> str:
    """``url`` if it may be requested: an allowed http(s) origin (:func:`.names.check_url`),
    no ``.`` or ``..`` path segments (plain or percent-encoded), no query or fragment.
    Raises :class:`UnsafeValue`."""
    full = check_url(url, base, allowed_hosts)
    parts = urlsplit(str(url))
    if _traverses(str(url)):
        raise UnsafeValue(f"provenance URL with a path traversal {str(url)[:200]!r}")
    if parts.query or parts.fragment:
        raise UnsafeValue(f"provenance URL with a query or fragment {str(url)[:200]!r}")
    return full


@dataclass(frozen=True, slots=True)
class Publisher:
    """One attestation bundle's publisher identity (PEP 740 ``publisher``)."""

    bundle: int  # its bundle's position in ``attestation_bundles``
    kind: str
    repository: str | None
    workflow: str | None
    environment: str | None


def _field(publisher: dict[str, Any], key: str, what: str) -> str | None:
    value = publisher.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_FIELD:
        raise InvalidResponse(f"{what}: publisher {key} is not a string of at most {_MAX_FIELD}")
    return value


def _publisher(i: int, bundle: Any, what: str) -> Publisher:
    if not isinstance(bundle, dict):
        raise InvalidResponse(f"{what}: attestation bundle {i} is not an object")
    publisher = bundle.get("publisher")
    if not isinstance(publisher, dict):
        raise InvalidResponse(f"{what}: attestation bundle {i} has no publisher object")
    if not isinstance(bundle.get("attestations"), list):
        raise InvalidResponse(f"{what}: attestation bundle {i} has no attestations list")
    kind, repository, workflow, environment = (
        _field(publisher, k, what) for k in _PUBLISHER_FIELDS
    )
    if not kind:
        raise InvalidResponse(f"{what}: attestation bundle {i}: publisher has no kind")
    return Publisher(i, kind, repository, workflow, environment)


def parse_provenance(body: bytes | bytearray, what: str) -> list[Publisher]:
    """A provenance object's bytes, checked: at most :data:`MAX_PROVENANCE_BYTES`, JSON,
    ``{"version": 1, "attestation_bundles": [{"publisher": {...}, "attestations": [...]},
    ...]}``. Returns the bundles' publishers; raises :class:`InvalidResponse` naming ``what``."""
    if len(body) > MAX_PROVENANCE_BYTES:
        raise InvalidResponse(f"{what}: provenance object larger than {MAX_PROVENANCE_BYTES} bytes")
    data = check_json_tree(loads_json(body, what), what)
    if not isinstance(data, dict) or data.get("version") != 1:
        raise InvalidResponse(f"{what}: not a version 1 provenance object")
    bundles = data.get("attestation_bundles")
    if not isinstance(bundles, list) or not 1 <= len(bundles) <= _MAX_BUNDLES:
        raise InvalidResponse(
            f"{what}: attestation_bundles is not a list of 1 to {_MAX_BUNDLES} bundles"
        )
    return [_publisher(i, b, what) for i, b in enumerate(bundles)]
