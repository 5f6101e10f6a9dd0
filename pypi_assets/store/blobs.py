"""Content-addressed blob stores: a local directory or an S3-compatible bucket (obstore).

Keys follow PyPI's file URLs, ``packages/aa/bb/<rest of the digest>/<filename>``, so a web
server pointed at a local store serves the same paths as files.pythonhosted.org; PEP 740
provenance objects live under PyPI's ``integrity/<project>/<version>/<filename>/provenance``.
Every key is built from a validated hex digest (or project name and version) and a validated
filename, never from a raw upstream string.
Writes are atomic: a verified temporary file is renamed into place (local) or uploaded with a
conditional put that refuses to overwrite (S3). No Dagster imports.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from ..pypi.names import UnsafeValue, check_filename, check_project_name

__all__ = [
    "BlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "blob_key",
    "blob_key_sql",
    "check_key",
    "file_key_of",
    "is_metadata_key",
    "key_digest",
    "metadata_key",
    "metadata_key_sql",
    "open_blob_store",
    "other_databases",
    "provenance_key",
    "provenance_key_sql",
    "provenance_parts",
    "register_database",
]

_HEX = re.compile(r"^[0-9a-f]{64}$")
_KEY = re.compile(r"^packages/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{60})/([^/\\]+?)(\.metadata)?$")
_INTEGRITY = re.compile(r"^integrity/([^/]+)/([^/]+)/([^/]+)/provenance$")
#: a version as a path segment: PEP 440's characters (and ``_``), no separators, no dot first
_VERSION_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!_-]{0,127}$")
CHUNK = 1 << 20


def _key_of(digest: str, filename: str) -> str:
    """The one layout of a key: ``packages/aa/bb/<rest of the digest>/<filename>``."""
    return f"packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"


def blob_key(filename: str, blake2b_256: str | None, sha256: str) -> str:
    """PyPI's path for a file: the blake2b-256 digest when known (as PyPI), else sha256."""
    digest = blake2b_256 if blake2b_256 and _HEX.match(blake2b_256) else sha256
    if not _HEX.match(digest):
        raise UnsafeValue(f"malformed digest {digest!r}")
    return _key_of(digest, check_filename(filename))


def blob_key_sql(digest: str, filename: str) -> str:
    """:func:`blob_key` as a SQL expression over a digest and a filename column (the
    ``selected_blob_keys`` view), so the database derives keys by the same formula."""
    d = digest
    return (
        f"'packages/' || substr({d}, 1, 2) || '/' || substr({d}, 3, 2) || '/' "
        f"|| substr({d}, 5) || '/' || {filename}"
    )


METADATA_SUFFIX = ".metadata"


def metadata_key(file_key: str) -> str:
    """The key of a file's PEP 658 ``.metadata``: beside the file, as PEP 658 serves it."""
    return file_key + METADATA_SUFFIX


def metadata_key_sql(file_key: str) -> str:
    """:func:`metadata_key` as a SQL expression over a key column."""
    return f"({file_key} || '{METADATA_SUFFIX}')"


def is_metadata_key(key: str) -> bool:
    return key.endswith(METADATA_SUFFIX)


def file_key_of(key: str) -> str:
    """The key of the file a key belongs to: itself, or the file a ``.metadata`` describes."""
    return key.removesuffix(METADATA_SUFFIX)


def key_digest(key: str) -> str:
    """The hex digest a key is built from (the inverse of the layout of :func:`blob_key`)."""
    parts = key.split("/")
    return parts[1] + parts[2] + parts[3]


PROVENANCE_PREFIX = "integrity/"


def provenance_key(project: str, version: str, filename: str) -> str:
    """PEP 740's route for a file's provenance object, as PyPI serves it:
    ``integrity/<project>/<version>/<filename>/provenance``. Every part is validated (a
    normalised project name, a version of PEP 440's characters, a safe filename)."""
    check_project_name(project)
    if canonicalize_name(project) != project:
        raise UnsafeValue(f"project name not normalised {project!r}")
    if not isinstance(version, str) or not _VERSION_SEGMENT.match(version) or ".." in version:
        raise UnsafeValue(f"version not usable in a path {str(version)[:100]!r}")
    return f"{PROVENANCE_PREFIX}{project}/{version}/{check_filename(filename)}/provenance"


def provenance_key_sql(project: str, version: str, filename: str) -> str:
    """:func:`provenance_key` as a SQL expression over three columns (a row whose parts
    :func:`provenance_key` refuses never has a stored key, so never matches one)."""
    return f"('{PROVENANCE_PREFIX}' || {project} || '/' || {version} || '/' || {filename} || '/provenance')"


def is_provenance_key(key: str) -> bool:
    return key.startswith(PROVENANCE_PREFIX)


def provenance_parts(key: str) -> tuple[str, str, str]:
    """``(project, version, filename)`` of a provenance key (checked: :func:`check_key`)."""
    m = _INTEGRITY.match(check_key(key))
    if m is None:
        raise UnsafeValue(f"not a provenance key: {key!r}")
    return m.group(1), m.group(2), m.group(3)


def check_key(key: str) -> str:
    """Accept only keys of the shape :func:`blob_key` makes (plus ``.metadata``), or of
    the shape :func:`provenance_key` makes."""
    m = _INTEGRITY.match(key)
    if m:
        if provenance_key(m.group(1), m.group(2), m.group(3)) != key:
            raise UnsafeValue(f"not a provenance key: {key!r}")
        return key
    m = _KEY.match(key)
    if not m:
        raise UnsafeValue(f"not a blob key: {key!r}")
    check_filename(m.group(4))
    return key


class BlobStore(Protocol):
    """What the mirror needs from a store. Keys are checked with :func:`check_key`."""

    description: str

    def size(self, key: str) -> int | None:
        """The stored size, or ``None`` if absent."""

    def put_file(self, key: str, path: Path) -> bool:
        """Move a verified local file into the store atomically. ``False`` if the key existed
        already (the existing blob is kept; keys are content-addressed)."""

    def read(self, key: str) -> Iterator[bytes]:
        """The blob's bytes, in chunks (constant memory)."""

    def delete(self, key: str) -> None: ...

    def iter_blobs(self, prefix: str = "packages/") -> Iterator[tuple[str, int]]:
        """Every ``(key, size)`` under ``prefix`` (``packages/``, or the provenance
        objects' ``integrity/``)."""

    def staging(self) -> Path:
        """A local directory for partial downloads (same filesystem as the store if local)."""

    def local_path(self, key: str) -> Path | None:
        """The file behind a key, for stores that have one."""


@dataclass
class LocalBlobStore:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.description = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def put_file(self, key: str, path: Path) -> bool:
        """An atomic rename. The key is content-addressed and the file verified, so a blob
        already there has the same bytes (or was corrupt, and is healed)."""
        dest = self._path(key)
        for _ in range(3):  # another process's delete may remove an emptied parent meanwhile
            try:
                os.replace(path, dest)
                return True
            except FileNotFoundError:
                if not path.exists():
                    raise
                dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        return True

    def read(self, key: str) -> Iterator[bytes]:
        with self._path(key).open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, key: str) -> None:
        p = self._path(key)
        p.unlink(missing_ok=True)
        for parent in (p.parent, p.parent.parent, p.parent.parent.parent):
            try:
                parent.rmdir()  # only if empty
            except OSError:
                break

    def iter_blobs(self, prefix: str = "packages/") -> Iterator[tuple[str, int]]:
        base = self.root / prefix.strip("/")
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                yield f"{rel}/{name}", st.st_size

    def staging(self) -> Path:
        d = self.root / ".partial"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


class S3BlobStore:
    """An S3-compatible bucket through obstore. ``put_file`` uses ``mode="create"`` (a
    conditional ``If-None-Match: *`` put), so a blob is never overwritten or half-written."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        staging: Path | None = None,
    ) -> None:
        from obstore.store import S3Store

        options: dict[str, Any] = {}
        if endpoint:
            options["endpoint"] = endpoint
            options["virtual_hosted_style_request"] = False
            if endpoint.startswith("http://"):
                options["client_options"] = {"allow_http": True}
        if region:
            options["region"] = region
        if access_key_id:
            options["access_key_id"] = access_key_id
        if secret_access_key:
            options["secret_access_key"] = secret_access_key
        self.prefix = prefix.strip("/")
        self.store = S3Store(bucket, prefix=self.prefix or None, **options)
        self.description = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._staging = staging

    def size(self, key: str) -> int | None:
        import obstore

        try:
            return int(obstore.head(self.store, check_key(key))["size"])
        except FileNotFoundError:
            return None

    def put_file(self, key: str, path: Path) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError

        try:
            with path.open("rb") as f:
                obstore.put(self.store, check_key(key), f, mode="create", chunk_size=8 * CHUNK)
            return True
        except AlreadyExistsError:
            return False
        finally:
            path.unlink(missing_ok=True)

    def read(self, key: str) -> Iterator[bytes]:
        import obstore

        result = obstore.get(self.store, check_key(key))
        for chunk in result.stream(min_chunk_size=CHUNK):
            yield bytes(chunk)

    def delete(self, key: str) -> None:
        import obstore

        obstore.delete(self.store, check_key(key))

    def iter_blobs(self, prefix: str = "packages/") -> Iterator[tuple[str, int]]:
        import obstore

        for batch in obstore.list(self.store, prefix=prefix, chunk_size=1000):
            for meta in batch:
                yield str(meta["path"]), int(meta["size"])

    def staging(self) -> Path:
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="pypi-assets-staging-"))
        self._staging.mkdir(parents=True, exist_ok=True)
        return self._staging

    def local_path(self, key: str) -> Path | None:
        return None


def open_blob_store(
    spec: str, s3: dict[str, str] | None = None, staging: Path | None = None
) -> BlobStore:
    """``DIR`` or ``s3://bucket[/prefix]``. S3 settings come from the bandersnatch ``[s3]``
    section (``endpoint_url``, ``region_name``, ``aws_access_key_id``,
    ``aws_secret_access_key``), then the usual ``AWS_*`` environment variables."""
    if spec.startswith("s3://"):
        parts = urlsplit(spec)
        if not parts.netloc:
            raise ValueError(f"no bucket in {spec!r}")
        s3 = s3 or {}
        env = os.environ
        return S3BlobStore(
            parts.netloc,
            parts.path,
            endpoint=s3.get("endpoint_url") or env.get("AWS_ENDPOINT_URL"),
            region=s3.get("region_name") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            access_key_id=s3.get("aws_access_key_id") or env.get("AWS_ACCESS_KEY_ID"),
            secret_access_key=s3.get("aws_secret_access_key") or env.get("AWS_SECRET_ACCESS_KEY"),
            staging=staging,
        )
    return LocalBlobStore(Path(spec))


def copy_to(store: BlobStore, key: str, out: Any) -> int:
    """Stream a blob into a binary file object; returns the bytes written."""
    local = store.local_path(key)
    if local is not None:
        with local.open("rb") as f:
            shutil.copyfileobj(f, out, CHUNK)
            return f.tell()
    n = 0
    for chunk in store.read(key):
        out.write(chunk)
        n += len(chunk)
    return n


# ---------------------------------------------------------------------- databases
#: where a local store lists the databases that sync into it (outside ``packages/``, so no
#: blob key can name it and ``iter_blobs`` never lists it)
DATABASES_FILE = ".pypi-assets/databases.json"


def _databases_path(store: BlobStore) -> Path | None:
    return store.root / DATABASES_FILE if isinstance(store, LocalBlobStore) else None


def _read_databases(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [d for d in data if isinstance(d, str)] if isinstance(data, list) else []


def register_database(store: BlobStore, db: Path) -> None:
    """Record that ``db`` syncs into ``store``, so that deleting what ``db`` does not
    reference can be refused while other databases share the store. Local stores only: an
    S3 store keeps no such list (run one database per bucket prefix)."""
    path = _databases_path(store)
    if path is None:
        return
    me = str(Path(db).resolve())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = _read_databases(path)
        if me in known:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sorted({*known, me}), indent=1))
        os.replace(tmp, path)


def other_databases(store: BlobStore, db: Path) -> list[str]:
    """The databases other than ``db`` registered in ``store`` that still exist."""
    path = _databases_path(store)
    if path is None:
        return []
    me = str(Path(db).resolve())
    return [d for d in _read_databases(path) if d != me and Path(d).exists()]
