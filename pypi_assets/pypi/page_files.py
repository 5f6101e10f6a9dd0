"""A project's files from its PEP 691 page (PEP 700 ``versions``, ``size``, ``upload-time``;
PEP 658 ``core-metadata``), not from the JSON API's deprecated ``releases`` key.

The page is authoritative for which files exist, their sha256, size, upload time, yank and
``requires-python``. When the project JSON still has ``releases``, it adds what the page does
not carry: md5 and blake2b-256 digests, ``packagetype`` and ``python_version`` (for a file
whose sha256 it agrees on). Without it, md5 and blake2b-256 are NULL, ``packagetype`` is
derived from the filename and ``python_version`` from the wheel's tag (``source`` for an
sdist). A file's version comes from ``releases`` when present, else from its filename
matched against the page's ``versions``. Pure: no I/O.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from .client import quote_version
from .limits import LimitExceeded
from .names import UnsafeValue, check_filename, check_sha256, check_url, packagetype_for
from .simple import SimpleFile, SimpleProjectPage
from .warehouse import JsonLimits, ParsedFile, parse_time

__all__ = ["file_version", "files_from_page", "python_version_for"]

_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip", ".egg", ".exe")


def _stem(filename: str) -> str:
    low = filename.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if low.endswith(suffix):
            return filename[: -len(suffix)]
    return filename.rsplit(".", 1)[0]


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def file_version(filename: str, versions: list[str]) -> str | None:
    """The release a file belongs to, by its filename: a wheel's version field, else the
    longest of ``versions`` that follows a ``-`` in the name (``name-1.0.tar.gz``,
    ``name-1.0-py3.9.egg``, ``name-1.0.win32.exe``); with no ``versions`` to match, the
    version as the filename writes it."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        written = parts[1] if len(parts) >= 5 else ""
        match = [v for v in versions if v == written or _same_version(v, written)]
        if match or versions:
            return match[0] if match else None
        return written or None
    stem = _stem(filename)
    found = [v for v in versions if stem.endswith(f"-{v}") or f"-{v}-" in stem or f"-{v}." in stem]
    if found:
        return max(found, key=len)
    if versions or "-" not in stem:
        return None
    return stem.rsplit("-", 1)[1] or None


def python_version_for(filename: str, packagetype: str) -> str | None:
    """Warehouse's ``python_version`` where the JSON API does not say: a wheel's python tag,
    ``source`` for an sdist."""
    if packagetype == "bdist_wheel":
        parts = filename[:-4].split("-")
        return parts[-3] if len(parts) >= 5 else None
    return "source" if packagetype == "sdist" else None


def _short(value: str | None, what: str, limit: int = 4096) -> str | None:
    if value is not None and len(value) > limit:
        raise UnsafeValue(f"{what} longer than {limit} characters")
    return value


def _page_file(
    limits: JsonLimits, page_url: str, sf: SimpleFile, old: ParsedFile | None, versions: list[str]
) -> ParsedFile:
    """One page entry, with what the project JSON adds (``old``, same filename)."""
    filename = check_filename(sf.filename)
    sha256 = check_sha256(sf.sha256)
    version = old.version if old is not None else file_version(filename, versions)
    if version is None:
        raise UnsafeValue(f"{filename}: no release of the project matches its name")
    quote_version(version)
    same = old if old is not None and old.sha256 == sha256 else None
    packagetype = same.packagetype if same else packagetype_for(filename)
    size = sf.size if sf.size is not None else (same.size if same else 0)
    return ParsedFile(
        version=version,
        filename=filename,
        url=check_url(sf.url, page_url, limits.allowed_hosts),
        sha256=sha256,
        md5=same.md5 if same else None,
        blake2b_256=same.blake2b_256 if same else None,
        size=size,
        packagetype=packagetype,
        upload_time=parse_time(sf.upload_time) or (same.upload_time if same else None),
        yanked=sf.yanked,
        yanked_reason=_short(sf.yanked_reason, f"{filename}: yanked_reason", 1 << 20),
        python_version=same.python_version if same else python_version_for(filename, packagetype),
        requires_python=_short(sf.requires_python, f"{filename}: requires-python"),
        core_metadata=sf.core_metadata,
        core_metadata_sha256=sf.core_metadata_sha256,
    )


def _check_caps(limits: JsonLimits, name: str, files: dict[str, list[ParsedFile]]) -> None:
    if len(files) > limits.max_versions:
        raise LimitExceeded(
            f"{name}: {len(files)} versions, over max_versions_per_project ({limits.max_versions})"
        )
    for version, fs in files.items():
        if len(fs) > limits.max_files_per_release:
            raise LimitExceeded(
                f"{name} {version[:100]}: {len(fs)} files, over max_files_per_release "
                f"({limits.max_files_per_release})"
            )


def files_from_page(
    limits: JsonLimits,
    name: str,
    page_url: str,
    page: SimpleProjectPage,
    json_files: dict[str, list[ParsedFile]] | None,
) -> dict[str, list[ParsedFile]]:
    """version -> files, from the page (``page_url``: where relative URLs resolve), each
    completed from ``json_files`` (the project JSON's ``releases``, parsed) when given.
    Releases with no files (PEP 700 ``versions``, or empty ``releases`` entries) are kept.
    A bad value raises :class:`UnsafeValue`, a cap :class:`LimitExceeded`."""
    known = {f.filename: f for fs in (json_files or {}).values() for f in fs}
    versions = list(page.versions or [])
    listed = set(versions)
    versions += [v for v in json_files or {} if v not in listed]
    if len(versions) > limits.max_versions:
        raise LimitExceeded(
            f"{name}: {len(versions)} versions, over max_versions_per_project "
            f"({limits.max_versions})"
        )
    out: dict[str, list[ParsedFile]] = {v: [] for v in versions}
    seen: set[str] = set()
    for sf in page.files:
        f = _page_file(limits, page_url, sf, known.get(sf.filename), versions)
        if f.filename in seen:
            raise UnsafeValue(f"duplicate filename {f.filename!r}")
        seen.add(f.filename)
        out.setdefault(f.version, []).append(f)
    _check_caps(limits, name, out)
    return out
