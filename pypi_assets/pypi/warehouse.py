"""Warehouse's JSON API, both ways, and nothing else: no I/O, no disk, no database.

Parse: the project JSON (``pypi/<p>/json``) and a version JSON (``pypi/<p>/<v>/json``) as
upstream sends them, checked value by value, into the parts a :class:`~.records.Project` is
built from (:func:`parse_project`, :func:`version_info`, :func:`release_record`,
:func:`version_fields`, :func:`fill_file`).

Render: the same two documents for the mirror to serve, from stored rows
(:func:`render_json_api`, with one file entry in Warehouse's shape from :func:`warehouse_file`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from .client import quote_version
from .errors import ProjectError
from .limits import INT64_MAX, InvalidResponse, LimitExceeded, check_serial, loads_json
from .metadata import MetadataError, fields_from_version_info
from .names import (
    UnsafeValue,
    canonical,
    check_filename,
    check_project_name,
    check_sha256,
    check_url,
    packagetype_for,
)
from .records import Distribution, Ownership, ProjectNotes, Release, Vulnerability
from .simple import version_key

__all__ = [
    "PRECOUNT_CHARS",
    "JsonLimits",
    "Ownership",
    "ParsedFile",
    "ParsedProject",
    "ProjectError",
    "Vulnerability",
    "check_caps",
    "fill_file",
    "latest_version",
    "ownership_json",
    "parse_files",
    "parse_ownership",
    "parse_project",
    "parse_time",
    "parse_vulnerabilities",
    "precount",
    "project_info",
    "project_json_path",
    "project_notes",
    "release_record",
    "render_json_api",
    "version_fields",
    "version_info",
    "vulnerability_json",
    "warehouse_file",
]


# ------------------------------------------------------------------------------------ parse
@dataclasses.dataclass(frozen=True, slots=True)
class JsonLimits:
    """What a project JSON is held to: the caps on versions and files per release, and the
    origins its file URLs may point at (relative URLs resolve against ``base``)."""

    max_versions: int
    max_files_per_release: int
    base: str
    allowed_hosts: frozenset[str]


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 upload time; ``None`` when absent or unparseable. A time outside the years
    1970 to 9000 (which no upload has, and which time zone arithmetic may overflow) raises
    :class:`UnsafeValue`."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if not 1970 <= dt.year <= 9000:
        raise UnsafeValue(f"upload time out of range {value!r}")
    # Warehouse's times are UTC; a time without an offset is one too (and naive and aware
    # times could not be compared when a release's earliest upload is taken).
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _opt_str(value: Any, what: str, limit: int = 4096) -> str | None:
    """An optional short string field (``None`` when absent or not a string)."""
    if not isinstance(value, str):
        return None
    if len(value) > limit:
        raise UnsafeValue(f"{what} longer than {limit} characters")
    return value


@dataclasses.dataclass(slots=True)
class ParsedFile:
    """One entry of the project JSON's ``releases[version]``, checked."""

    version: str
    filename: str
    url: str
    sha256: str
    md5: str | None
    blake2b_256: str | None
    size: int
    packagetype: str
    upload_time: datetime | None
    yanked: bool
    yanked_reason: str | None
    python_version: str | None
    requires_python: str | None
    #: PEP 658: the page advertises a ``.metadata`` file (and its sha256, when given)
    core_metadata: bool = False
    core_metadata_sha256: str | None = None


_HEX = {n: re.compile(f"[0-9a-f]{{{n}}}") for n in (32, 64)}


def _hexdigest(value: Any, length: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or _HEX[length].fullmatch(value) is None:
        raise UnsafeValue(f"malformed digest {value!r}")
    return value


def check_caps(limits: JsonLimits, name: str, releases: Any) -> None:
    """Refuse a project over ``max_versions`` or ``max_files_per_release`` before anything
    else is asked about it."""
    if not isinstance(releases, dict):
        raise InvalidResponse(f"{name}: project JSON 'releases' is not an object")
    if len(releases) > limits.max_versions:
        raise LimitExceeded(
            f"{name}: {len(releases)} versions, over max_versions_per_project "
            f"({limits.max_versions})"
        )
    for version, files in releases.items():
        if isinstance(files, list) and len(files) > limits.max_files_per_release:
            raise LimitExceeded(
                f"{name} {str(version)[:100]}: {len(files)} files, over max_files_per_release "
                f"({limits.max_files_per_release})"
            )


#: Project JSON larger than this is counted before it is parsed (see :func:`precount`).
PRECOUNT_CHARS = 4 * 1024 * 1024


def _summary(pairs: list[tuple[str, Any]]) -> tuple[int, int, Any]:
    """An object reduced to its size, its longest list's length and its ``releases``."""
    longest = max((len(v) for _k, v in pairs if isinstance(v, list)), default=0)
    return len(pairs), longest, next((v for k, v in pairs if k == "releases"), None)


def precount(limits: JsonLimits, name: str, text: str) -> None:
    """Apply the caps to a large project JSON from a parse that keeps only counts, so a
    project over them is refused without its objects ever being built (100,000 versions are
    some 75 MB of JSON and four times that as objects)."""
    if len(text) <= PRECOUNT_CHARS:
        return
    try:
        top = loads_json(text, f"{name}: project JSON", object_pairs_hook=_summary)
    except InvalidResponse:
        return  # the full parse reports it
    releases = top[2] if isinstance(top, tuple) else None
    if not isinstance(releases, tuple):
        return
    if releases[0] > limits.max_versions:
        raise LimitExceeded(
            f"{name}: {releases[0]} versions, over max_versions_per_project ({limits.max_versions})"
        )
    if releases[1] > limits.max_files_per_release:
        raise LimitExceeded(
            f"{name}: a release of {releases[1]} files, over max_files_per_release "
            f"({limits.max_files_per_release})"
        )


def _parse_file(limits: JsonLimits, version: str, f: Any, seen: set[str]) -> ParsedFile:
    """One file entry of ``releases[version]``; ``seen``: the filenames before it."""
    if not isinstance(f, dict):
        raise UnsafeValue(f"release {version!r} has a non-object file entry")
    filename = check_filename(f.get("filename"))
    if filename in seen:
        raise UnsafeValue(f"duplicate filename {filename!r}")
    seen.add(filename)
    digests = f.get("digests") or {}
    if not isinstance(digests, dict):
        raise UnsafeValue(f"{filename}: digests is not an object")
    size = f.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= INT64_MAX:
        raise UnsafeValue(f"{filename}: size out of range {str(size)[:40]!r}")
    # Warehouse's JSON API sends a JSON boolean; anything else ("false" is truthy)
    # is an invalid value, not a guess
    yanked = f.get("yanked", False)
    if not isinstance(yanked, bool):
        raise UnsafeValue(f"{filename}: yanked is not a boolean {str(yanked)[:40]!r}")
    reason = _opt_str(f.get("yanked_reason"), f"{filename}: yanked_reason", 1 << 20)
    packagetype = f.get("packagetype") or packagetype_for(filename)
    if not isinstance(packagetype, str) or len(packagetype) > 32:
        raise UnsafeValue(f"{filename}: bad packagetype")
    return ParsedFile(
        version=version,
        filename=filename,
        url=check_url(f.get("url"), limits.base + "/", limits.allowed_hosts),
        sha256=check_sha256(digests.get("sha256")),
        md5=_hexdigest(digests.get("md5") or f.get("md5_digest"), 32),
        blake2b_256=_hexdigest(digests.get("blake2b_256"), 64),
        size=size,
        packagetype=packagetype,
        upload_time=parse_time(f.get("upload_time_iso_8601") or f.get("upload_time")),
        yanked=yanked,
        yanked_reason=reason or None,
        python_version=_opt_str(f.get("python_version"), f"{filename}: python_version"),
        requires_python=_opt_str(f.get("requires_python"), f"{filename}: requires_python"),
    )


def parse_files(limits: JsonLimits, releases: Any) -> dict[str, list[ParsedFile]]:
    """The project JSON's ``releases``: version -> its files, in upstream's order. A bad
    value raises :class:`UnsafeValue`; a filename is unique across the whole project."""
    if not isinstance(releases, dict):
        raise UnsafeValue("project JSON 'releases' is not an object")
    out: dict[str, list[ParsedFile]] = {}
    seen: set[str] = set()
    for version, files in releases.items():
        if not isinstance(version, str):
            raise UnsafeValue(f"bad version key {version!r}")
        quote_version(version)
        if not isinstance(files, list):
            raise UnsafeValue(f"release {version!r} files is not a list")
        out[version] = [_parse_file(limits, version, f, seen) for f in files]
    return out


@dataclasses.dataclass(slots=True)
class ParsedProject:
    """A project JSON, checked: what the rest of a project's fetch and assembly need of it."""

    asked: str  # the name as the caller asked for it (error messages name it)
    name: str  # normalised
    display: str  # ``info.name``
    serial: int
    etag: str | None  # the answer's ETag, when short enough to store
    info: dict[str, Any]  # the project JSON's ``info``, verbatim
    files: dict[str, list[ParsedFile]]  # version -> files
    #: whether the project JSON still had its deprecated ``releases`` key
    has_releases: bool = True
    #: filename -> its PEP 740 provenance URL (or None), from the simple page
    provenance: dict[str, str | None] = dataclasses.field(default_factory=dict)
    #: ownership and the latest release's vulnerabilities (then the page's status and the
    #: version JSONs' vulnerabilities, as the fetch reads them)
    notes: ProjectNotes | None = None


def project_info(name: str, data: Any) -> dict[str, Any]:
    """The project JSON's ``info`` object; :class:`ProjectError` when it has none."""
    if not isinstance(data, dict) or not isinstance(data.get("info"), dict):
        raise ProjectError(f"{name}: project JSON has no 'info' object")
    info: dict[str, Any] = data["info"]
    return info


def parse_project(
    name: str,
    data: dict[str, Any],
    limits: JsonLimits,
    *,
    serial: int | None,
    expected_serial: int | None,
    etag: str | None,
) -> ParsedProject:
    """A project JSON ``data`` (its ``info`` checked by :func:`project_info`) answered for
    ``name``. ``serial``: the answer's own (its header), else ``last_serial``, else the
    expected one. Raises :class:`LimitExceeded`, :class:`InvalidResponse`,
    :class:`UnsafeValue` or :class:`ProjectError`."""
    releases = data.get("releases")
    if releases is not None:  # deprecated; the PEP 691 page lists the files (files_from_page)
        check_caps(limits, name, releases)
    info = data["info"]
    display = check_project_name(info.get("name"))
    norm = canonical(name)
    if canonical(display) != norm:
        raise ProjectError(f"{name}: upstream answered for a different project {display!r}")
    if serial is None:
        ls = data.get("last_serial")
        serial = ls if isinstance(ls, int) else (expected_serial or 0)
    serial = check_serial(serial, f"{name}: last_serial")
    try:
        files = parse_files(limits, releases) if releases is not None else {}
    except UnsafeValue as exc:
        raise InvalidResponse(f"{name}: {exc}") from None
    etag = etag if etag and len(etag) <= 202 and etag.isascii() else None
    return ParsedProject(
        asked=name,
        name=norm,
        display=display,
        serial=serial,
        etag=etag,
        info=info,
        files=files,
        has_releases=releases is not None,
        notes=project_notes(norm, data, info.get("version"), etag=(display, etag)),
    )


def project_json_path(display: str) -> str:
    """The project JSON's path, as the fetch and the status poll ask for it: by the display
    name, which Warehouse does not redirect."""
    return f"/pypi/{display}/json"


def project_notes(
    name: str, data: Any, version: Any, *, etag: tuple[str, str | None] | None = None
) -> ProjectNotes:
    """The ownership and vulnerabilities of a project JSON (those of ``version``, its latest
    release) or of a version JSON, checked. ``etag``: ``(display name, ETag)`` of a project
    JSON, kept as the status poll's first ``If-None-Match`` for it (its read counts as the
    poll of the project JSON: a poll right after does not ask again)."""
    notes = ProjectNotes(name, ownership=parse_ownership(data, name))
    latest = version if isinstance(version, str) and version else None
    if latest is not None:
        notes.vulnerabilities[latest] = parse_vulnerabilities(data, f"{name} {latest}")
    if etag is not None:
        display, value = etag
        notes.etags[project_json_path(display)] = (latest, value or "")
    return notes


def version_info(name: str, version: str, data: Any) -> dict[str, Any]:
    """A version JSON's ``info``; :class:`ProjectError` when it has none."""
    vinfo = data.get("info") if isinstance(data, dict) else None
    if not isinstance(vinfo, dict):
        raise ProjectError(f"{name} {version}: version JSON has no 'info' object")
    return vinfo


def latest_version(parsed: ParsedProject) -> str | None:
    """Upstream's latest version (``info.version``), whose metadata the project JSON's
    ``info`` is."""
    return _opt_str(parsed.info.get("version"), f"{parsed.asked}: info.version", 256)


def release_record(
    name: str, version: str, files: list[ParsedFile], info: dict[str, Any] | None
) -> Release:
    """A release from its files in the project JSON and its version JSON's ``info``."""
    times = [f.upload_time for f in files if f.upload_time is not None]
    return Release(
        name=name,
        version=version,
        info=info,
        upload_time=min(times) if times else None,
        yanked=bool(files) and all(f.yanked for f in files),
        yanked_reason=next((f.yanked_reason for f in files if f.yanked_reason), None),
        file_count=len(files),
    )


def version_fields(name: str, version: str, info: dict[str, Any]) -> dict[str, Any]:
    """A file's metadata fields from its version JSON's ``info``, with the ``core_name`` and
    ``core_version`` it states (as :func:`~.metadata.fields_from_core_metadata` gives them)."""
    try:
        fields = fields_from_version_info(info)
    except MetadataError as exc:
        raise ProjectError(f"{name} {version}: {exc}") from exc
    fields["core_name"] = info.get("name")
    fields["core_version"] = info.get("version")
    return fields


def fill_file(d: Distribution, f: ParsedFile, project: str, serial: int) -> Distribution:
    """Set the file attributes, which always come from the current project JSON."""
    d.project = project
    d.release_version = f.version
    d.url = f.url
    d.sha256 = f.sha256
    d.md5 = f.md5
    d.blake2b_256 = f.blake2b_256
    d.size = f.size
    d.upload_time = f.upload_time
    d.yanked = f.yanked
    d.yanked_reason = f.yanked_reason
    d.python_version = f.python_version
    d.file_requires_python = f.requires_python
    d.project_serial = serial
    return d


# ----------------------------------------------------------------------------------- render
def warehouse_file(
    *,
    filename: str,
    packagetype: str,
    python_version: str | None,
    requires_python: str | None,
    size: int,
    upload_time: datetime | None,
    url: str,
    sha256: str,
    md5: str | None,
    blake2b_256: str | None,
    yanked: bool,
    yanked_reason: str | None,
) -> dict[str, Any]:
    """One file as Warehouse's JSON API lists it (in ``releases[v]`` and ``urls``)."""
    t = upload_time.astimezone(UTC) if upload_time is not None else None
    digests = (("blake2b_256", blake2b_256), ("md5", md5), ("sha256", sha256))
    return {
        "comment_text": "",
        "digests": {k: v for k, v in digests if v},
        "downloads": -1,
        "filename": filename,
        "has_sig": False,
        "md5_digest": md5,
        "packagetype": packagetype,
        "python_version": python_version,
        "requires_python": requires_python,
        "size": size,
        "upload_time": t.strftime("%Y-%m-%dT%H:%M:%S") if t else None,
        "upload_time_iso_8601": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if t else None,
        "url": url,
        "yanked": bool(yanked),
        "yanked_reason": yanked_reason,
    }


def _file_json(f: dict[str, Any], root_uri: str) -> dict[str, Any]:
    """A stored file row (the index's columns, its blob ``key``) in Warehouse's shape."""
    return warehouse_file(
        filename=f["filename"],
        packagetype=f["packagetype"],
        python_version=f["python_version"],
        requires_python=f["file_requires_python"],
        size=f["size"],
        upload_time=f["upload_time"],
        url=f"{root_uri}/{f['key']}",
        sha256=f["sha256"],
        md5=f["md5"],
        blake2b_256=f["blake2b_256"],
        yanked=f["yanked"],
        yanked_reason=f["yanked_reason"],
    )


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def render_json_api(
    name: str,
    serial: int,
    info: dict[str, Any] | None,
    latest: str | None,
    releases: dict[str, dict[str, Any] | None],
    files: list[dict[str, Any]],
    *,
    root_uri: str = "",
    vulnerabilities: dict[str, list[dict[str, Any]]] | None = None,
    ownership: dict[str, Any] | None = None,
) -> dict[str, bytes]:
    """``pypi/<name>/json`` and ``pypi/<name>/<version>/json`` in Warehouse's shapes, listing
    the selected files. ``releases``: version -> that version's stored ``info``;
    ``vulnerabilities``: version -> its records (:func:`vulnerability_json`), the project
    document carrying the latest release's, as Warehouse does; ``ownership``: as
    :func:`ownership_json` gives it (``None``: never polled, the key is left out)."""
    vulns = vulnerabilities or {}
    extra = {"ownership": ownership} if ownership is not None else {}
    by_version: dict[str, list[dict[str, Any]]] = {v: [] for v in releases}
    for f in files:
        by_version.setdefault(f["release_version"], []).append(_file_json(f, root_uri))
    kept = {v: fs for v, fs in by_version.items() if fs}
    out: dict[str, bytes] = {}
    project_info = dict(info or {})
    project = {
        "info": project_info,
        "last_serial": serial,
        # every stored release, as PyPI lists releases with no files too
        "releases": dict(sorted(by_version.items(), key=lambda kv: version_key(kv[0]))),
        "urls": kept.get(latest or "", []),
        "vulnerabilities": vulns.get(latest or "", []),
        **extra,
    }
    out[f"pypi/{name}/json"] = _dumps(project)
    for version, fs in kept.items():
        vinfo = releases.get(version) or (project_info if version == latest else None)
        if vinfo is None:
            continue
        doc = {
            "info": vinfo,
            "last_serial": serial,
            "urls": fs,
            "vulnerabilities": vulns.get(version, []),
            **extra,
        }
        out[f"pypi/{name}/{quote(version, safe='')}/json"] = _dumps(doc)
    return out


# ------------------------------------------------------------- vulnerabilities and ownership
#: At most this many vulnerabilities per release, aliases or fixed versions per record, and
#: roles per project: more is a hostile answer, refused.
MAX_VULNERABILITIES = 10_000
MAX_LIST = 1_000
_MAX_DETAILS = 1 << 20


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise UnsafeValue(f"{what}: not a list of at most {MAX_LIST} strings")
    return [s for s in (_opt_str(v, what, 256) for v in value) if s is not None]


def _vulnerability(v: Any, what: str) -> Vulnerability:
    if not isinstance(v, dict):
        raise UnsafeValue(f"{what}: a vulnerability is not an object")
    vid = _opt_str(v.get("id"), f"{what} id", 256)
    if not vid:
        raise UnsafeValue(f"{what}: a vulnerability has no id")
    return Vulnerability(
        id=vid,
        aliases=_str_list(v.get("aliases"), f"{what} {vid} aliases"),
        summary=_opt_str(v.get("summary"), f"{what} {vid} summary"),
        details=_opt_str(v.get("details"), f"{what} {vid} details", _MAX_DETAILS),
        fixed_in=_str_list(v.get("fixed_in"), f"{what} {vid} fixed_in"),
        link=_opt_str(v.get("link"), f"{what} {vid} link"),
        source=_opt_str(v.get("source"), f"{what} {vid} source", 256),
        withdrawn=_opt_str(v.get("withdrawn"), f"{what} {vid} withdrawn", 64),
    )


def parse_vulnerabilities(data: Any, what: str) -> list[Vulnerability]:
    """The ``vulnerabilities`` of a project or version JSON (``data``: the document), each
    field checked; absent: none. Raises :class:`UnsafeValue` for a malformed one."""
    raw = data.get("vulnerabilities") if isinstance(data, dict) else None
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_VULNERABILITIES:
        raise UnsafeValue(
            f"{what}: 'vulnerabilities' is not a list of at most {MAX_VULNERABILITIES}"
        )
    return [_vulnerability(v, what) for v in raw]


def parse_ownership(data: Any, what: str) -> Ownership | None:
    """The ``ownership`` of a project or version JSON; ``None`` when upstream gives none.
    Raises :class:`UnsafeValue` for a malformed one."""
    raw = data.get("ownership") if isinstance(data, dict) else None
    if raw is None:
        return None
    roles = raw.get("roles") if isinstance(raw, dict) else None
    if not isinstance(roles, list) or len(roles) > MAX_LIST:
        raise UnsafeValue(f"{what}: 'ownership' has no list of at most {MAX_LIST} roles")
    pairs = []
    for r in roles:
        role = _opt_str(r.get("role"), f"{what} role", 64) if isinstance(r, dict) else None
        user = _opt_str(r.get("user"), f"{what} user", 256) if isinstance(r, dict) else None
        if not role or not user:
            raise UnsafeValue(f"{what}: an ownership role without role or user")
        pairs.append((role, user))
    return Ownership(_opt_str(raw.get("organization"), f"{what} organization", 256), pairs)


def vulnerability_json(v: Vulnerability) -> dict[str, Any]:
    """A stored vulnerability in the JSON API's shape."""
    return dataclasses.asdict(v)


def ownership_json(o: Ownership) -> dict[str, Any]:
    """Stored ownership in the JSON API's shape."""
    return {"organization": o.organization, "roles": [{"role": r, "user": u} for r, u in o.roles]}
