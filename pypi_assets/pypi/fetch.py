"""Fetch one project at full depth, re-using whatever the store already holds.

Per project: the project JSON (one request: the project's ``info``, serial and ETag); its
PEP 691 page (the files, with their hashes, sizes, upload times, yanks and PEP 658
``core-metadata``: :mod:`.page_files`; the JSON's deprecated ``releases`` key only adds md5
and blake2b digests when it is there); the version JSON for each version not yet stored (the
release's ``info``); and each new file's own metadata (:mod:`.own_metadata`: PEP 658, an
unadvertised ``.metadata``, range reads of a wheel, an sdist's PKG-INFO).

Four steps, of which only the third does I/O:

- parse: the project JSON and version JSONs, in :mod:`.warehouse`;
- plan: which requests are needed, from the parsed project JSON and what is stored
  (:func:`plan_project`);
- fetch: those requests, against the :class:`PyPIClient` (:func:`_fetch_bodies`);
  (the page comes before the plan: :func:`_page_files`);
- assemble: the :class:`Project`, from the parsed parts and the fetched bodies
  (:func:`assemble_project`).
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import hashlib
import logging
import zlib
from typing import Any, Literal

from .client import ClientConfig, NotFound, PyPIClient, quote_version
from .errors import InvalidResponse, NotModified, ProjectError, UnsafeValue
from .metadata import (
    MetadataError,
    decode_core_metadata,
    fields_from_core_metadata,
    fields_from_version_info,
)
from .names import canonical, check_project_name, is_valid_project_name
from .own_metadata import StoredFile, file_metadata
from .page_files import files_from_page
from .provenance import page_provenance
from .records import (
    Distribution,
    MetadataSource,
    Project,
    Release,
    StoredProject,
    Vulnerability,
)
from .warehouse import (
    JsonLimits,
    ParsedFile,
    ParsedProject,
    fill_file,
    latest_version,
    parse_project,
    parse_time,
    parse_vulnerabilities,
    precount,
    project_info,
    release_record,
    version_fields,
    version_info,
)

__all__ = ["Depth", "NotModified", "ProjectError", "fetch_project", "parse_time"]

log = logging.getLogger("pypi_assets")

Depth = Literal["full", "project"]


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


# ------------------------------------------------------------------------------------- plan
def conditional_etag(stored: StoredProject | None) -> str | None:
    """The ETag to send with the project JSON request (``If-None-Match``), if any."""
    return stored.etag if stored is not None else None


@dataclasses.dataclass(slots=True)
class Plan:
    """What a project's fetch asks for after its project JSON, and what it re-uses."""

    #: filename -> the stored row of an unchanged file (same sha256, metadata at this depth)
    reused: dict[str, Distribution]
    #: version -> the stored version JSON ``info`` that is kept
    stored_infos: dict[str, dict[str, Any]]
    #: versions whose version JSON is asked for, in order
    version_jsons: list[str]
    #: new wheels: their own METADATA is read (:func:`.own_metadata.wheel_metadata`)
    new_wheels: list[ParsedFile]
    #: new sdists (and other files): their own PKG-INFO is read where the format allows
    new_others: list[ParsedFile] = dataclasses.field(default_factory=list)
    #: the page advertises PEP 658 metadata for some file (so a wheel it does not
    #: advertise has none: no unadvertised ``.metadata`` is tried)
    pep658: bool = False

    @property
    def simple_page(self) -> bool:
        """Whether the simple page is asked for."""
        return bool(self.new_wheels)


def _reusable(f: ParsedFile, stored: dict[str, Distribution], depth: Depth) -> Distribution | None:
    old = stored.get(f.filename)
    if old is None or old.sha256 != f.sha256:
        return None
    if depth == "full" and old.metadata_source == "none":
        return None
    return old


def plan_project(parsed: ParsedProject, stored: StoredProject | None, depth: Depth) -> Plan:
    """The requests after the project JSON. At ``depth="full"``: the version JSON of every
    version with files whose stored release has no ``info`` (new versions included), and the
    simple page when a wheel is new or changed. At ``depth="project"``: none."""
    stored_releases = stored.releases if stored else {}
    stored_files = stored.distributions if stored else {}
    reused: dict[str, Distribution] = {}
    new_files: list[ParsedFile] = []
    for files in parsed.files.values():
        for f in files:
            old = _reusable(f, stored_files, depth)
            if old is None:
                new_files.append(f)
            else:
                reused[f.filename] = old
    need_info = {
        v
        for v, files in parsed.files.items()
        if files and (stored_releases.get(v) is None or stored_releases[v].info is None)
    }
    new_wheels = [f for f in new_files if f.filename.endswith(".whl")]
    new_others = [f for f in new_files if not f.filename.endswith(".whl")]
    if depth == "project":
        need_info = set()
        new_wheels, new_others = [], []
    stored_infos = {
        v: r.info for v, r in stored_releases.items() if r.info is not None and v not in need_info
    }
    pep658 = any(f.core_metadata for fs in parsed.files.values() for f in fs)
    return Plan(reused, stored_infos, sorted(need_info), new_wheels, new_others, pep658)


def metadata_wanted(plan: Plan, core_meta: dict[str, str | None]) -> list[ParsedFile]:
    """The new wheels whose ``.metadata`` file is asked for: those the simple page
    advertises (``core_meta``: filename -> advertised sha256)."""
    return [f for f in plan.new_wheels if f.filename in core_meta]


# ------------------------------------------------------------------------------------ fetch
@dataclasses.dataclass(slots=True)
class Bodies:
    """What the requests of a :class:`Plan` brought back, parsed."""

    #: filename -> the sha256 the simple page advertises for its ``.metadata`` (or None)
    core_meta: dict[str, str | None] = dataclasses.field(default_factory=dict)
    #: version -> its version JSON's ``info``
    infos: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: versions whose version JSON upstream does not serve (404)
    no_info: set[str] = dataclasses.field(default_factory=set)
    #: filename -> the fields of its METADATA file (parsed; unparseable ones are left out)
    metadata: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: filename -> where its ``metadata`` came from (absent: ``core-metadata``)
    sources: dict[str, MetadataSource] = dataclasses.field(default_factory=dict)
    #: version -> the vulnerabilities its version JSON lists (sync/status.py)
    vulnerabilities: dict[str, list[Vulnerability]] = dataclasses.field(default_factory=dict)
    #: version JSON path -> ``(version, ETag)``, for the status poll's ``If-None-Match``
    etags: dict[str, tuple[str | None, str]] = dataclasses.field(default_factory=dict)


def json_limits(config: ClientConfig) -> JsonLimits:
    return JsonLimits(
        max_versions=config.max_versions,
        max_files_per_release=config.max_files_per_release,
        base=config.base,
        allowed_hosts=config.allowed_hosts,
    )


async def _project_json(
    client: PyPIClient,
    name: str,
    expected_serial: int | None,
    stored: StoredProject | None,
    depth: Depth,
    parked: _Descriptions,
) -> ParsedProject:
    """The project JSON, parsed; :class:`NotModified` when the stored one is current."""
    limits = json_limits(client.config)
    try:
        got = await client.project_json(
            name, expected_serial, etag=conditional_etag(stored), gated=True
        )
        if got.status == 304:
            raise NotModified(f"{name}: unchanged (304)", got.headers_serial)
        data = got.json(precheck=lambda text: precount(limits, name, text))
        info = project_info(name, data)
        if depth == "full" and "description" in info:
            info["description"] = parked.park(info["description"])
    finally:
        client.release_body()
    return parse_project(
        name,
        data,
        limits,
        serial=got.serial,
        expected_serial=expected_serial,
        etag=got.headers.get("etag"),
    )


async def _page_files(
    client: PyPIClient, name: str, expected_serial: int | None, parsed: ParsedProject
) -> None:
    """The project's files from its PEP 691 page, into ``parsed.files`` (completed by the
    project JSON's ``releases`` where it has them)."""
    page = await client.simple_page(name, expected_serial)
    page_url = f"{client.config.base}/simple/{canonical(name)}/"
    json_files = parsed.files if parsed.has_releases else None
    if parsed.notes is not None:  # PEP 792, for sync/status.py
        parsed.notes.confirmed = True
        parsed.notes.status = (page.status, page.status_reason, page.serial)
        # its ETag: the status poll's first If-None-Match, so a poll right after is a 304
        parsed.notes.etags[f"/simple/{canonical(name)}/"] = (None, page.etag or "")
    try:
        parsed.provenance = page_provenance(page, page_url)
        parsed.files = files_from_page(
            json_limits(client.config), parsed.asked, page_url, page, json_files
        )
    except UnsafeValue as exc:
        raise InvalidResponse(f"{name}: {exc}") from None


async def _get_info(
    client: PyPIClient, name: str, version: str, parked: _Descriptions, bodies: Bodies
) -> None:
    try:
        vg = await client.version_json(name, version, gated=True)
        vdata = vg.json()
        path = f"/pypi/{name}/{quote_version(version)}/json"  # as asked: the display name
        bodies.etags[path] = (version, vg.headers.get("etag", "")[:256])
        del vg
        bodies.vulnerabilities[version] = parse_vulnerabilities(vdata, f"{name} {version}")
        vinfo = version_info(name, version, vdata)
        if "description" in vinfo:
            vinfo["description"] = parked.park(vinfo["description"])
        bodies.infos[version] = vinfo
    except NotFound:
        bodies.no_info.add(version)
    finally:
        client.release_body()


def _parse_meta(
    client: PyPIClient, body: bytes | bytearray, parked: _Descriptions
) -> dict[str, Any] | None:
    """A METADATA / PKG-INFO file's fields; ``None`` when it cannot be parsed (the file then
    falls back to its version JSON in the assembly)."""
    try:
        text, repaired = decode_core_metadata(body)
        del body
        fields = fields_from_core_metadata(text)
    except MetadataError:
        return None
    del text
    fields["description"] = parked.park(fields.get("description"))
    if repaired:  # bytes that are not UTF-8, kept as U+FFFD (as Warehouse does)
        client.stats.repaired["metadata-invalid-utf8"] += 1
    return fields


async def _get_meta(
    client: PyPIClient,
    f: ParsedFile,
    plan: Plan,
    parked: _Descriptions,
    bodies: Bodies,
    stored_file: StoredFile | None,
) -> None:
    """The file's own metadata (:func:`.own_metadata.file_metadata`), parsed."""
    try:
        found = await file_metadata(client, f, bodies.core_meta, plan.pep658, stored_file)
        if found is None:
            return
        fields = _parse_meta(client, found.body, parked)
        del found.body
        if fields is not None:
            bodies.metadata[f.filename] = fields
            bodies.sources[f.filename] = found.source
        if found.core_metadata_sha256 is not None:
            bodies.core_meta[f.filename] = found.core_metadata_sha256
    finally:
        client.release_body()


async def _fetch_bodies(
    client: PyPIClient,
    name: str,
    plan: Plan,
    parked: _Descriptions,
    stored_file: StoredFile | None = None,
) -> Bodies:
    """The plan's requests: the version JSONs and every new file's own metadata, at once.
    The first failure is raised as itself."""
    bodies = Bodies()
    bodies.core_meta = {
        f.filename: f.core_metadata_sha256 for f in plan.new_wheels if f.core_metadata
    }
    try:
        async with asyncio.TaskGroup() as tg:
            for v in plan.version_jsons:
                tg.create_task(_get_info(client, name, v, parked, bodies))
            for f in [*plan.new_wheels, *plan.new_others]:
                tg.create_task(_get_meta(client, f, plan, parked, bodies, stored_file))
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None  # callers handle plain exceptions per project
    return bodies


#: The fields an sdist's PKG-INFO and its version JSON are compared on.
_COMPARED = (
    "summary",
    "author",
    "author_email",
    "license",
    "requires_python",
    "requires_dist",
    "classifiers",
    "keywords",
    "home_page",
)


def _compare_sdists(client: PyPIClient, plan: Plan, bodies: Bodies) -> None:
    """Count (and log) where an sdist's PKG-INFO and its version JSON differ."""
    state = client.own_metadata
    for f in plan.new_others:
        info = bodies.infos.get(f.version)
        fields = bodies.metadata.get(f.filename)
        if info is None or fields is None or bodies.sources.get(f.filename) != "pkg-info":
            continue
        try:
            expected = fields_from_version_info(info)
        except MetadataError:
            continue
        state.compared += 1
        differs = [k for k in _COMPARED if (fields.get(k) or None) != (expected.get(k) or None)]
        state.differences.update(differs)
        state.differing += bool(differs)
        if differs:
            log.info("%s: PKG-INFO differs from the version JSON on %s", f.filename, differs)


def _restore(parked: _Descriptions, info: dict[str, Any], bodies: Bodies) -> None:
    """Every body is parsed: the descriptions come back, one string per distinct text."""
    for i in (info, *bodies.infos.values()):
        if "description" in i:
            i["description"] = parked.restore(i["description"])
    for fields in bodies.metadata.values():
        fields["description"] = parked.restore(fields.get("description"))


# --------------------------------------------------------------------------------- assemble
def _new_distribution(
    parsed: ParsedProject, f: ParsedFile, rinfo: dict[str, Any] | None, bodies: Bodies
) -> Distribution:
    """A new or changed file's row, its metadata from its METADATA file when that was
    fetched and parsed, else from its version JSON, else none (``metadata_source='none'``:
    project depth, or no version JSON upstream; the version is asked for again on the next
    change of the project)."""
    source: MetadataSource
    if f.filename in bodies.metadata:
        fields = bodies.metadata[f.filename]
        source = bodies.sources.get(f.filename, "core-metadata")
    elif rinfo is not None:
        fields = version_fields(parsed.asked, f.version, rinfo)
        source = "version-json"
    else:
        return Distribution(
            filename=f.filename,
            packagetype=f.packagetype,
            name=parsed.display,
            version=f.version,
            metadata_source="none",
        )
    meta_name = fields.pop("core_name", None)
    meta_version = fields.pop("core_version", None)
    return Distribution(
        filename=f.filename,
        packagetype=f.packagetype,
        name=str(meta_name if isinstance(meta_name, str) and meta_name else parsed.display),
        version=str(meta_version if isinstance(meta_version, str) and meta_version else f.version),
        metadata_source=source,
        core_metadata_sha256=bodies.core_meta.get(f.filename),
        **fields,
    )


def assemble_project(parsed: ParsedProject, plan: Plan, bodies: Bodies) -> Project:
    """The project's complete new state: every release and file of the project JSON, each
    file's row re-used from the store when unchanged, else built from what was fetched."""
    info = parsed.info
    infos = {**plan.stored_infos, **bodies.infos}
    latest = latest_version(parsed)
    if latest is not None and latest in bodies.no_info:
        # The project JSON's info *is* the latest version's metadata; only there is it valid.
        infos[latest] = info
    releases: list[Release] = []
    dists: list[Distribution] = []
    for version, files in parsed.files.items():
        rinfo = infos.get(version)
        releases.append(release_record(parsed.name, version, files, rinfo))
        for f in files:
            old = plan.reused.get(f.filename)
            if old is not None:
                d = dataclasses.replace(old)
            else:
                d = _new_distribution(parsed, f, rinfo, bodies)
            d.provenance_url = parsed.provenance.get(f.filename, d.provenance_url)
            dists.append(fill_file(d, f, parsed.name, parsed.serial))
    _share_descriptions(info, releases, dists)
    if parsed.notes is not None:  # what the version JSONs say beside their info
        parsed.notes.vulnerabilities.update(bodies.vulnerabilities)
        parsed.notes.etags.update(bodies.etags)
    return Project(
        name=parsed.name,
        display_name=parsed.display,
        serial=parsed.serial,
        releases=releases,
        distributions=dists,
        latest_version=latest,
        info=info,
        etag=parsed.etag,
        notes=parsed.notes,
    )


def _display(parsed: ParsedProject, asked: str) -> str:
    """The name the JSON API answers without a redirect: the project's display name
    (``info.name``), when it is a valid spelling of the project; else the name asked."""
    shown = parsed.display
    if isinstance(shown, str) and is_valid_project_name(shown) and canonical(shown) == parsed.name:
        return shown
    return asked


async def fetch_project(
    client: PyPIClient,
    name: str,
    expected_serial: int | None,
    stored: StoredProject | None,
    *,
    depth: Depth = "full",
    stored_file: StoredFile | None = None,
) -> Project:
    """Fetch ``name`` and return its complete new state; raises NotFound, UpstreamError,
    UnsafeValue or ProjectError. Nothing unchanged is fetched again.

    ``depth="project"``: files, hashes, sizes and yanks, with the metadata columns left NULL
    (``metadata_source = 'none'``), in one request (the project JSON) while it has its
    ``releases`` key, else two (and the page). ``stored_file``: opens a stored copy of a
    release file, so an sdist's PKG-INFO is read from the blob store, not upstream.
    """
    check_project_name(name)
    parked = _Descriptions()
    parsed = await _project_json(client, name, expected_serial, stored, depth, parked)
    if depth == "full" or not parsed.has_releases:
        await _page_files(client, name, expected_serial, parsed)
    plan = plan_project(parsed, stored, depth)
    bodies = await _fetch_bodies(client, _display(parsed, name), plan, parked, stored_file)
    _restore(parked, parsed.info, bodies)
    _compare_sdists(client, plan, bodies)
    return assemble_project(parsed, plan, bodies)
