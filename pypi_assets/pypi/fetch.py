"""Fetch one project at full depth, re-using whatever the store already holds.

Per project: the project JSON (one request); the version JSON for each version not yet stored;
the simple page (only when there are new wheels, to learn which advertise PEP 658 metadata);
and the ``.metadata`` file of each new wheel that has one.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import hashlib
import zlib
from datetime import UTC, datetime
from typing import Any, Literal

from .client import NotFound, PyPIClient, quote_version
from .errors import NotModified, ProjectError
from .limits import INT64_MAX, InvalidResponse, LimitExceeded, check_serial, loads_json
from .metadata import (
    MetadataError,
    decode_core_metadata,
    fields_from_core_metadata,
    fields_from_version_info,
)
from .names import (
    UnsafeValue,
    canonical,
    check_filename,
    check_project_name,
    check_sha256,
    packagetype_for,
)
from .records import Distribution, Project, Release, StoredProject

__all__ = ["Depth", "NotModified", "ProjectError", "fetch_project", "parse_time"]

Depth = Literal["full", "project"]


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
class _File:
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


def _hexdigest(value: Any, length: int) -> str | None:
    if value is None or value == "":
        return None
    if (
        not isinstance(value, str)
        or len(value) != length
        or any(c not in "0123456789abcdef" for c in value)
    ):
        raise UnsafeValue(f"malformed digest {value!r}")
    return value


def check_caps(client: PyPIClient, name: str, releases: Any) -> None:
    """Refuse a project over ``max_versions`` or ``max_files_per_release`` before anything
    else is asked about it."""
    cfg = client.config
    if not isinstance(releases, dict):
        raise InvalidResponse(f"{name}: project JSON 'releases' is not an object")
    if len(releases) > cfg.max_versions:
        raise LimitExceeded(
            f"{name}: {len(releases)} versions, over max_versions_per_project ({cfg.max_versions})"
        )
    for version, files in releases.items():
        if isinstance(files, list) and len(files) > cfg.max_files_per_release:
            raise LimitExceeded(
                f"{name} {str(version)[:100]}: {len(files)} files, over max_files_per_release "
                f"({cfg.max_files_per_release})"
            )


#: Project JSON larger than this is counted before it is parsed (see :func:`_precount`).
PRECOUNT_CHARS = 4 * 1024 * 1024


def _summary(pairs: list[tuple[str, Any]]) -> tuple[int, int, Any]:
    """An object reduced to its size, its longest list's length and its ``releases``."""
    longest = max((len(v) for _k, v in pairs if isinstance(v, list)), default=0)
    return len(pairs), longest, next((v for k, v in pairs if k == "releases"), None)


def _precount(client: PyPIClient, name: str, text: str) -> None:
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
    cfg = client.config
    if releases[0] > cfg.max_versions:
        raise LimitExceeded(
            f"{name}: {releases[0]} versions, over max_versions_per_project ({cfg.max_versions})"
        )
    if releases[1] > cfg.max_files_per_release:
        raise LimitExceeded(
            f"{name}: a release of {releases[1]} files, over max_files_per_release "
            f"({cfg.max_files_per_release})"
        )


def _parse_files(client: PyPIClient, releases: Any) -> dict[str, list[_File]]:
    if not isinstance(releases, dict):
        raise UnsafeValue("project JSON 'releases' is not an object")
    out: dict[str, list[_File]] = {}
    seen: set[str] = set()
    for version, files in releases.items():
        if not isinstance(version, str):
            raise UnsafeValue(f"bad version key {version!r}")
        quote_version(version)
        if not isinstance(files, list):
            raise UnsafeValue(f"release {version!r} files is not a list")
        parsed: list[_File] = []
        for f in files:
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
            parsed.append(
                _File(
                    version=version,
                    filename=filename,
                    url=client._check(f.get("url")),
                    sha256=check_sha256(digests.get("sha256")),
                    md5=_hexdigest(digests.get("md5") or f.get("md5_digest"), 32),
                    blake2b_256=_hexdigest(digests.get("blake2b_256"), 64),
                    size=size,
                    packagetype=packagetype,
                    upload_time=parse_time(f.get("upload_time_iso_8601") or f.get("upload_time")),
                    yanked=yanked,
                    yanked_reason=reason or None,
                    python_version=_opt_str(f.get("python_version"), f"{filename}: python_version"),
                    requires_python=_opt_str(
                        f.get("requires_python"), f"{filename}: requires_python"
                    ),
                )
            )
        out[version] = parsed
    return out


def _fill(d: Distribution, f: _File, project: str, serial: int) -> Distribution:
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


def _share_descriptions(
    info: dict[str, Any], releases: list[Release], dists: list[Distribution]
) -> None:
    """One string object per distinct description: each version's JSON and each file's
    METADATA bring their own copy of what is mostly the same README, often megabytes."""
    seen: dict[str, str] = {}

    def one(value: Any) -> Any:
        return seen.setdefault(value, value) if isinstance(value, str) and value else value

    for i in (info, *(r.info for r in releases)):
        if i is not None and i.get("description"):
            i["description"] = one(i["description"])
    for d in dists:
        d.description = one(d.description)


#: Descriptions of at least this many characters are held compressed while the project's
#: other bodies are read and parsed (see :class:`_Descriptions`).
PARK_CHARS = 1024 * 1024
_PARK_STEP = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class _Parked:
    """A large description set aside in a :class:`_Descriptions`."""

    key: tuple[int, bytes]


class _Descriptions:
    """A project's large descriptions, held zlib-compressed (one copy per distinct text)
    while its other bodies are fetched and parsed, then restored as one string per distinct
    text. The project JSON, each version JSON and each wheel's METADATA carry their own copy
    of what is mostly the same README, often megabytes: kept as parsed, the first copy would
    be held while the next body is decoded and parsed (three copies at once), where parked it
    costs its compressed size."""

    def __init__(self) -> None:
        self._packed: dict[tuple[int, bytes], bytes] = {}
        self._restored: dict[tuple[int, bytes], str] = {}

    @staticmethod
    def _pieces(text: str) -> Any:
        for i in range(0, len(text), _PARK_STEP):
            yield text[i : i + _PARK_STEP].encode("utf-8", "surrogatepass")

    def park(self, value: Any) -> Any:
        """``value``, or a :class:`_Parked` in its place when it is a long string."""
        if not isinstance(value, str) or len(value) < PARK_CHARS:
            return value
        digest = hashlib.blake2b(digest_size=32)
        for piece in self._pieces(value):
            digest.update(piece)
        key = (len(value), digest.digest())
        if key not in self._packed:
            z = zlib.compressobj(1)
            self._packed[key] = b"".join([*(z.compress(p) for p in self._pieces(value)), z.flush()])
        return _Parked(key)

    def restore(self, value: Any) -> Any:
        """The string a :func:`park` result stands for (the same object for equal texts)."""
        if not isinstance(value, _Parked):
            return value
        text = self._restored.get(value.key)
        if text is None:
            # Inflated and decoded a piece at a time: a whole decode of the inflated bytes
            # would hold them, a buffer as large and (for text that is not ASCII) its copy.
            inflate = zlib.decompressobj()
            decode = codecs.getincrementaldecoder("utf-8")("surrogatepass")
            pieces: list[str] = []
            data = self._packed.pop(value.key)
            while data:
                pieces.append(decode.decode(inflate.decompress(data, _PARK_STEP)))
                data = inflate.unconsumed_tail
            pieces.append(decode.decode(inflate.flush(), final=True))
            text = "".join(pieces)
            del pieces
            self._restored[value.key] = text
        return text


async def fetch_project(
    client: PyPIClient,
    name: str,
    expected_serial: int | None,
    stored: StoredProject | None,
    *,
    depth: Depth = "full",
) -> Project:
    """Fetch ``name`` and return its complete new state; raises NotFound, UpstreamError,
    UnsafeValue or ProjectError. Nothing unchanged is fetched again.

    ``depth="project"`` makes exactly one request (the project JSON): files, hashes, sizes and
    yanks, with the metadata columns left NULL (``metadata_source = 'none'``).
    """
    check_project_name(name)
    norm = canonical(name)
    parked = _Descriptions()
    try:
        got = await client.project_json(
            name, expected_serial, etag=stored.etag if stored is not None else None, gated=True
        )
        if got.status == 304:
            raise NotModified(f"{name}: unchanged (304)", got.headers_serial)
        data = got.json(precheck=lambda text: _precount(client, name, text))
        if not isinstance(data, dict) or not isinstance(data.get("info"), dict):
            raise ProjectError(f"{name}: project JSON has no 'info' object")
        if depth == "full" and "description" in data["info"]:
            data["info"]["description"] = parked.park(data["info"]["description"])
    finally:
        client.release_body()
    check_caps(client, name, data.get("releases"))
    info = data["info"]
    display = check_project_name(info.get("name"))
    if canonical(display) != norm:
        raise ProjectError(f"{name}: upstream answered for a different project {display!r}")
    serial = got.serial
    etag = got.headers.get("etag")
    if serial is None:
        ls = data.get("last_serial")
        serial = ls if isinstance(ls, int) else (expected_serial or 0)
    serial = check_serial(serial, f"{name}: last_serial")
    try:
        files_by_version = _parse_files(client, data.get("releases"))
    except UnsafeValue as exc:
        raise InvalidResponse(f"{name}: {exc}") from None
    del data, got  # the files are parsed; only ``info`` is kept

    stored_releases = stored.releases if stored else {}
    stored_files = stored.distributions if stored else {}

    def reusable(f: _File) -> Distribution | None:
        """The stored row for an unchanged file (same sha256, metadata at this depth)."""
        old = stored_files.get(f.filename)
        if old is None or old.sha256 != f.sha256:
            return None
        if depth == "full" and old.metadata_source == "none":
            return None
        return old

    new_files = [f for files in files_by_version.values() for f in files if reusable(f) is None]
    need_info = {
        v
        for v, files in files_by_version.items()
        if files and (stored_releases.get(v) is None or stored_releases[v].info is None)
    }
    new_wheels = [f for f in new_files if f.filename.endswith(".whl")]
    if depth == "project":
        need_info = set()
        new_wheels = []

    core_meta: dict[str, str | None] = {}  # filename -> advertised sha256
    if new_wheels:
        page = await client.simple_page(name)
        for sf in page.files:
            if sf.core_metadata:
                core_meta[sf.filename] = sf.core_metadata_sha256

    infos: dict[str, dict[str, Any]] = {
        v: r.info for v, r in stored_releases.items() if r.info is not None and v not in need_info
    }

    no_info: set[str] = set()  # versions whose version JSON upstream does not serve

    async def get_info(version: str) -> None:
        try:
            vg = await client.version_json(name, version, gated=True)
            vdata = vg.json()
            del vg
            vinfo = vdata.get("info") if isinstance(vdata, dict) else None
            if not isinstance(vinfo, dict):
                raise ProjectError(f"{name} {version}: version JSON has no 'info' object")
            if "description" in vinfo:
                vinfo["description"] = parked.park(vinfo["description"])
            infos[version] = vinfo
        except NotFound:
            no_info.add(version)
        finally:
            client.release_body()

    metadata: dict[str, dict[str, Any]] = {}

    async def get_meta(f: _File) -> None:
        try:
            body = await client.core_metadata(f.url, core_meta.get(f.filename), gated=True)
            # Unparseable METADATA: the file falls back to its version JSON below.
            with contextlib.suppress(MetadataError):
                text, repaired = decode_core_metadata(body)
                del body
                fields = fields_from_core_metadata(text)
                del text
                fields["description"] = parked.park(fields.get("description"))
                metadata[f.filename] = fields
                if repaired:  # bytes that are not UTF-8, kept as U+FFFD (as Warehouse does)
                    client.stats.repaired["metadata-invalid-utf8"] += 1
        finally:
            client.release_body()

    try:
        async with asyncio.TaskGroup() as tg:
            for v in sorted(need_info):
                tg.create_task(get_info(v))
            for f in new_wheels:
                if f.filename in core_meta:
                    tg.create_task(get_meta(f))
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None  # callers handle plain exceptions per project
    # Every body is parsed: the descriptions come back, one string per distinct text.
    for i in (info, *infos.values()):
        if "description" in i:
            i["description"] = parked.restore(i["description"])
    for fields in metadata.values():
        fields["description"] = parked.restore(fields.get("description"))
    latest = _opt_str(info.get("version"), f"{name}: info.version", 256)
    if latest is not None and latest in no_info:
        # The project JSON's info *is* the latest version's metadata; only there is it valid.
        infos[latest] = info
        no_info.discard(latest)

    releases: list[Release] = []
    dists: list[Distribution] = []
    for version, files in files_by_version.items():
        rinfo = infos.get(version)
        times = [f.upload_time for f in files if f.upload_time is not None]
        releases.append(
            Release(
                name=norm,
                version=version,
                info=rinfo,
                upload_time=min(times) if times else None,
                yanked=bool(files) and all(f.yanked for f in files),
                yanked_reason=next((f.yanked_reason for f in files if f.yanked_reason), None),
                file_count=len(files),
            )
        )
        for f in files:
            old = reusable(f)
            if old is not None:
                d = dataclasses.replace(old)
            else:
                if f.filename in metadata:
                    fields = metadata[f.filename]
                    source = "core-metadata"
                else:
                    if rinfo is None and depth == "full" and version not in no_info:
                        await get_info(version)
                        rinfo = infos.get(version)
                        if rinfo is not None and "description" in rinfo:
                            rinfo["description"] = parked.restore(rinfo["description"])
                    if rinfo is None:
                        # Project depth, or no version JSON upstream: metadata stays NULL and
                        # the version is asked for again on the next change of the project.
                        d = Distribution(
                            filename=f.filename,
                            packagetype=f.packagetype,
                            name=display,
                            version=version,
                            metadata_source="none",
                        )
                        dists.append(_fill(d, f, norm, serial))
                        continue
                    try:
                        fields = fields_from_version_info(rinfo)
                    except MetadataError as exc:
                        raise ProjectError(f"{name} {version}: {exc}") from exc
                    fields["core_name"] = rinfo.get("name")
                    fields["core_version"] = rinfo.get("version")
                    source = "version-json"
                meta_name = fields.pop("core_name", None)
                meta_version = fields.pop("core_version", None)
                meta_name = meta_name if isinstance(meta_name, str) and meta_name else display
                meta_version = (
                    meta_version if isinstance(meta_version, str) and meta_version else version
                )
                d = Distribution(
                    filename=f.filename,
                    packagetype=f.packagetype,
                    name=str(meta_name),
                    version=str(meta_version),
                    metadata_source=source,  # type: ignore[arg-type]
                    core_metadata_sha256=core_meta.get(f.filename),
                    **fields,
                )
            dists.append(_fill(d, f, norm, serial))
    _share_descriptions(info, releases, dists)
    return Project(
        name=norm,
        display_name=display,
        serial=serial,
        releases=releases,
        distributions=dists,
        latest_version=latest,
        info=info,
        etag=etag if etag and len(etag) <= 202 else None,
    )
