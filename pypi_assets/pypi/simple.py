"""The Simple API, one spec in one module: PEP 503 (HTML) and PEP 691 (JSON) pages with the
PEP 700 fields and PEP 658 core metadata, parsed (what an upstream sends), rendered (what the
mirror writes) and negotiated (which of the two a client gets). Pure: no disk, no DuckDB.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

from packaging.version import InvalidVersion, Version

from .errors import SimpleParseError
from .limits import INT64_MAX, InvalidResponse, as_serial, loads_json

__all__ = [
    "API_VERSION",
    "HTML_CT",
    "JSON_CT",
    "PROJECT_STATUSES",
    "IndexOptions",
    "SimpleFile",
    "SimpleProjectPage",
    "negotiate",
    "parse_project_page_html",
    "parse_project_page_json",
    "parse_project_status",
    "parse_root_html",
    "parse_root_json",
    "render_project",
    "render_root",
    "serial_comment",
    "version_key",
]

#: PEP 691's media types (the ``latest`` aliases are accepted from clients, never sent)
JSON_CT = "application/vnd.pypi.simple.v1+json"
HTML_CT = "application/vnd.pypi.simple.v1+html"
JSON_LATEST = "application/vnd.pypi.simple.latest+json"
HTML_LATEST = "application/vnd.pypi.simple.latest+html"
ACCEPT = f"{JSON_CT}, {HTML_CT};q=0.2, text/html;q=0.01"
#: the API version the rendered pages announce (1.1: PEP 700's versions, size, upload-time;
#: 1.4: PEP 740's provenance)
API_VERSION = "1.4"

_SERIAL_RE = re.compile(r"<!--\s*SERIAL\s+(\d+)\s*-->")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_NAME = 1000  # a listed name longer than this is garbage (PEP 508 names are far shorter)


def _major(meta: Any) -> None:
    if not isinstance(meta, dict):
        raise SimpleParseError("simple JSON has no 'meta' object")
    version = str(meta.get("api-version", ""))
    if not version.startswith("1."):
        raise SimpleParseError(f"unsupported simple API version {version!r}")


def _compact(obj: dict[str, Any]) -> Any:
    # Project entries become (name, serial) tuples while parsing, so ~900k dicts never coexist.
    if "name" in obj and len(obj) <= 3:
        return (obj["name"], obj.get("_last-serial", 0))
    return obj


def loads_root_json(body: bytes | bytearray | str, what: str = "simple root") -> Any:
    """``json.loads`` for the ~40 MB root listing, at a fraction of the memory. Anything
    unparseable (garbage, nesting deep enough to exhaust the stack) raises
    :class:`SimpleParseError`."""
    try:
        return loads_json(body, what, object_hook=_compact)
    except InvalidResponse as exc:
        raise SimpleParseError(str(exc)) from None


def _serial(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT64_MAX


def parse_root_json(data: Any) -> tuple[int | None, list[str], list[int]]:
    """Names and serials (column-wise) from the root listing, parsed by either loader."""
    if not isinstance(data, dict):
        raise SimpleParseError("simple root JSON is not an object")
    _major(data.get("meta"))
    raw = data["meta"].get("_last-serial")
    serial = as_serial(raw)
    if raw is not None and serial is None:
        raise SimpleParseError(f"simple root JSON: serial out of range ({str(raw)[:40]!r})")
    projects = data.get("projects")
    if not isinstance(projects, list):
        raise SimpleParseError("simple root JSON has no 'projects' list")
    names: list[str] = []
    serials: list[int] = []
    for p in projects:
        if isinstance(p, dict):
            p = _compact(p) if "name" in p else p
        project_serial = as_serial(p[1]) if isinstance(p, tuple) else None
        if (
            not isinstance(p, tuple)
            or not isinstance(p[0], str)
            or len(p[0]) > _MAX_NAME
            or project_serial is None
        ):
            raise SimpleParseError(f"bad project entry {str(p)[:200]}")
        names.append(p[0])
        serials.append(project_serial)
    return serial, names, serials


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self._attrs: dict[str, str | None] | None = None
        self._text: list[str] = []
        #: ``<meta name=... content=...>`` of the page (the first of each name)
        self.metas: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._attrs = dict(attrs)
            self._text = []
        elif tag == "meta":
            a = dict(attrs)
            name, content = a.get("name"), a.get("content")
            if name and content is not None:
                self.metas.setdefault(name, content)

    def handle_data(self, data: str) -> None:
        if self._attrs is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._attrs is not None:
            self.anchors.append((self._attrs, "".join(self._text).strip()))
            self._attrs = None


def _html_serial(text: str) -> int | None:
    m = _SERIAL_RE.search(text)
    if m is None:
        return None
    digits = m.group(1)
    value = int(digits) if len(digits) <= 20 else -1
    if not _serial(value):
        raise SimpleParseError(f"SERIAL comment out of range ({digits[:40]!r})")
    return value


def parse_root_html(text: str) -> tuple[int | None, list[str]]:
    """The HTML root has no per-project serials."""
    p = _AnchorParser()
    p.feed(text)
    return _html_serial(text), [name for _attrs, name in p.anchors if name]


@dataclass(slots=True)
class SimpleFile:
    filename: str
    url: str
    sha256: str | None
    requires_python: str | None
    yanked: bool
    yanked_reason: str | None
    core_metadata_sha256: str | None  # None: not advertised
    core_metadata: bool
    size: int | None = None
    upload_time: str | None = None
    #: PEP 740: the provenance URL as the page states it (relative ones left as sent), or None
    provenance: str | None = None


@dataclass(slots=True)
class SimpleProjectPage:
    name: str
    serial: int | None
    versions: list[str] | None
    files: list[SimpleFile]
    #: PEP 792 (API 1.4): ``project-status`` / ``pypi:project-status``; ``None``: not given
    status: str | None = None
    status_reason: str | None = None
    #: the answer's ``ETag`` (checked: ASCII, at most 256 characters), for a later
    #: conditional request (the status poll's ``If-None-Match``); ``None``: none given
    etag: str | None = None


#: PEP 792's statuses. Another well-formed one (a later PEP's) is kept as upstream gives it.
PROJECT_STATUSES = ("active", "archived", "quarantined", "deprecated")
_STATUS = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_MAX_REASON = 4096


def parse_project_status(status: Any, reason: Any) -> tuple[str | None, str | None]:
    """PEP 792's status and reason, checked: ``(None, None)`` when no status is given; a
    status that is not a short lowercase word, or a reason that is not a string of at most
    4,096 characters, raises :class:`SimpleParseError`."""
    if status is None:
        return None, None
    if not isinstance(status, str) or not _STATUS.match(status):
        raise SimpleParseError(f"bad project-status {str(status)[:100]!r}")
    if reason is not None and (not isinstance(reason, str) or len(reason) > _MAX_REASON):
        raise SimpleParseError(f"bad project-status reason {str(reason)[:100]!r}")
    return status, reason or None


def _json_status(data: dict[str, Any]) -> tuple[str | None, str | None]:
    raw = data.get("project-status")
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise SimpleParseError("simple project JSON 'project-status' is not an object")
    return parse_project_status(raw.get("status"), raw.get("reason"))


def _core_meta(value: Any) -> tuple[bool, str | None]:
    if value is None or value is False:
        return False, None
    if value is True:
        return True, None
    if isinstance(value, dict):
        return True, _sha256(value.get("sha256"))
    raise SimpleParseError(f"bad core-metadata value {str(value)[:100]}")


def _sha256(value: Any) -> str | None:
    """A sha256 hex digest, or ``None`` for none; anything else is refused."""
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX64.match(value):
        raise SimpleParseError(f"malformed sha256 digest {str(value)[:100]!r}")
    return value


def _provenance(value: Any) -> str | None:
    """PEP 740's ``provenance``: a non-empty string, else none (judged before any request by
    :func:`.provenance.check_provenance_url`)."""
    return value if isinstance(value, str) and value else None


def parse_project_page_json(data: Any) -> SimpleProjectPage:
    if not isinstance(data, dict):
        raise SimpleParseError("simple project JSON is not an object")
    _major(data.get("meta"))
    files: list[SimpleFile] = []
    listed = data.get("files") or []
    if not isinstance(listed, list):
        raise SimpleParseError("simple project JSON 'files' is not a list")
    for f in listed:
        if not isinstance(f, dict):
            raise SimpleParseError("simple project file entry is not an object")
        yanked = f.get("yanked", False)
        cm = f.get("core-metadata", f.get("data-dist-info-metadata"))
        has_cm, cm_sha = _core_meta(cm)
        hashes = f.get("hashes") or {}
        size = f.get("size")
        rp = f.get("requires-python")
        ut = f.get("upload-time")
        files.append(
            SimpleFile(
                filename=str(f.get("filename")),
                # the file's URL: a hash fragment (``#sha256=…``, which our own served JSON
                # and other mirrors carry) is not part of it, as in the HTML form
                url=str(f.get("url")).partition("#")[0],
                sha256=_sha256(hashes.get("sha256")) if isinstance(hashes, dict) else None,
                requires_python=rp if isinstance(rp, str) else None,
                yanked=bool(yanked),
                yanked_reason=yanked if isinstance(yanked, str) and yanked else None,
                core_metadata=has_cm,
                core_metadata_sha256=cm_sha,
                size=size if _serial(size) else None,
                upload_time=ut if isinstance(ut, str) else None,
                provenance=_provenance(f.get("provenance")),
            )
        )
    raw = data.get("meta", {}).get("_last-serial")
    serial = as_serial(raw)
    if raw is not None and serial is None:
        raise SimpleParseError(f"simple project JSON: serial out of range ({str(raw)[:40]!r})")
    versions = data.get("versions")
    status, reason = _json_status(data)
    return SimpleProjectPage(
        name=str(data.get("name")),
        serial=serial,
        versions=list(versions) if isinstance(versions, list) else None,
        files=files,
        status=status,
        status_reason=reason,
    )


def _hash_fragment(url: str) -> tuple[str, str | None]:
    base, _, frag = url.partition("#")
    if frag.startswith("sha256="):
        return base, frag[len("sha256=") :]
    return base, None


def _attr_hash(value: str | None) -> tuple[bool, str | None]:
    if value is None or value.lower() == "false":
        return False, None
    if value.startswith("sha256="):
        return True, _sha256(value[len("sha256=") :])
    return True, None


def parse_project_page_html(text: str, name: str) -> SimpleProjectPage:
    p = _AnchorParser()
    p.feed(text)
    files: list[SimpleFile] = []
    for attrs, label in p.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, sha = _hash_fragment(href)
        yanked_attr = "data-yanked" in attrs
        reason = attrs.get("data-yanked") or None
        cm = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        has_cm, cm_sha = _attr_hash(cm) if cm is not None else (False, None)
        files.append(
            SimpleFile(
                filename=label,
                url=url,
                sha256=_sha256(sha),
                requires_python=attrs.get("data-requires-python"),
                yanked=yanked_attr,
                yanked_reason=reason,
                core_metadata=has_cm,
                core_metadata_sha256=cm_sha,
                provenance=_provenance(attrs.get("data-provenance")),
            )
        )
    status, reason = parse_project_status(
        p.metas.get("pypi:project-status"), p.metas.get("pypi:project-status-reason")
    )
    return SimpleProjectPage(
        name=name,
        serial=_html_serial(text),
        versions=None,
        files=files,
        status=status,
        status_reason=reason,
    )


# ---------------------------------------------------------------------------- negotiation
_KINDS = {
    JSON_CT: "json",
    JSON_LATEST: "json",
    HTML_CT: "html",
    HTML_LATEST: "html",
    "text/html": "html",
    "*/*": "html",
}


def _quality(params: list[str]) -> float:
    q = 1.0
    for b in params:
        if b.startswith("q="):
            try:
                q = float(b[2:])
            except ValueError:
                q = 0.0
    return q


def negotiate(accept: str, fmt: str | None = None) -> str:
    """PEP 691: ``json`` or ``html`` by the client's preference (``?format=`` first)."""
    if fmt in (JSON_CT, HTML_CT, "text/html"):
        return "json" if fmt == JSON_CT else "html"
    best, best_q = "html", -1.0
    for part in (accept or "text/html").split(","):
        bits = [b.strip() for b in part.split(";")]
        q = _quality(bits[1:])
        kind = _KINDS.get(bits[0].lower())
        if kind and q > best_q:
            best, best_q = kind, q
    return best


_SERIAL_COMMENT = re.compile(rb"<!--SERIAL (\d+)-->")


def serial_comment(tail: bytes) -> str | None:
    """The serial of a rendered HTML page's closing ``<!--SERIAL n-->`` comment (its tail
    suffices), as the digits written."""
    m = _SERIAL_COMMENT.search(tail)
    return m.group(1).decode() if m else None


# ---------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class IndexOptions:
    """bandersnatch's ``[mirror]`` options for the index: ``root_uri`` (absolute file URLs in
    the JSON), ``simple-format`` (ALL, HTML or JSON), ``digest_name`` (the URL fragment's
    hash) and ``core-metadata`` (advertise PEP 658 files)."""

    root_uri: str = ""
    formats: str = "ALL"
    digest: str = "sha256"
    core_metadata: bool = True

    def key(self) -> str:
        return f"{self.root_uri}|{self.formats}|{self.digest}|{self.core_metadata}"


def version_key(v: str) -> tuple[int, Any]:
    """Versions in PEP 440 order, the unparseable ones first (in string order)."""
    try:
        return (1, Version(v))
    except InvalidVersion:
        return (0, v)


def iso(t: datetime | None) -> str | None:
    """PEP 700's ``upload-time``: UTC, microseconds, a ``Z``."""
    if t is None:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _html_page(
    title: str, lines: list[str], serial: int, metas: Iterable[tuple[str, str]] = ()
) -> bytes:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            "<html>",
            "  <head>",
            f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
            *(f'    <meta name="{k}" content="{html.escape(v)}">' for k, v in metas),
            f"    <title>{title}</title>",
            "  </head>",
            "  <body>",
            *lines,
            "  </body>",
            "</html>",
            f"<!--SERIAL {serial}-->",
            "",
        ]
    ).encode()


def _provenance_href(f: dict[str, Any], root_uri: str) -> str | None:
    """PEP 740: where the mirror serves the file's provenance object (``provenance_key``,
    when stored), beside the files: ``root_uri``-absolute, else relative to the page."""
    key = f.get("provenance_key")
    if not key:
        return None
    return f"{root_uri}/{quote(key)}" if root_uri else f"../../{quote(key)}"


def _json_file(f: dict[str, Any], url: str, core: str | None, root_uri: str) -> dict[str, Any]:
    """One file of a PEP 691 project page (PEP 700's fields, PEP 658's both spellings,
    PEP 740's provenance)."""
    meta: Any = {"sha256": core} if core else False
    return {
        "filename": f["filename"],
        "url": f"{root_uri}/{f['key']}" if root_uri else url,
        "hashes": {"sha256": f["sha256"]},
        "requires-python": f["file_requires_python"],
        "size": f["size"],
        "upload-time": iso(f["upload_time"]),
        "yanked": (f["yanked_reason"] or True) if f["yanked"] else False,
        "core-metadata": meta,
        "data-dist-info-metadata": meta,
        "provenance": _provenance_href(f, root_uri),
    }


def _anchor(f: dict[str, Any], url: str, core: str | None) -> str:
    """One file of a PEP 503 project page."""
    attrs = [f'href="{html.escape(url)}"']
    if f["file_requires_python"]:
        attrs.append(f'data-requires-python="{html.escape(f["file_requires_python"])}"')
    if core:
        attrs.append(f'data-dist-info-metadata="sha256={core}"')
        attrs.append(f'data-core-metadata="sha256={core}"')
    if f["yanked"]:
        attrs.append(f'data-yanked="{html.escape(f["yanked_reason"] or "")}"')
    provenance = _provenance_href(f, "")  # relative, as the file's own href
    if provenance:
        attrs.append(f'data-provenance="{html.escape(provenance)}"')
    return f"    <a {' '.join(attrs)}>{html.escape(f['filename'])}</a><br />"


def _by_format(base: str, formats: str, body: bytes, data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if formats in ("ALL", "HTML"):
        out[f"{base}/index.html"] = out[f"{base}/index.v1_html"] = body
    if formats in ("ALL", "JSON"):
        out[f"{base}/index.v1_json"] = data
    return out


def _status_fields(
    status: str | None, reason: str | None
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """PEP 792 in both forms: the JSON page's keys and the HTML page's ``<meta>`` tags (none
    for a status never observed)."""
    if status is None:
        return {}, []
    obj = {"status": status, **({"reason": reason} if reason else {})}
    metas = [("pypi:project-status", status)]
    if reason:
        metas.append(("pypi:project-status-reason", reason))
    return {"project-status": obj}, metas


def render_project(
    name: str,
    display: str,
    serial: int,
    files: list[dict[str, Any]],
    versions: Iterable[str],
    options: IndexOptions = IndexOptions(),
    *,
    status: str | None = None,
    status_reason: str | None = None,
) -> dict[str, bytes]:
    """The project's simple pages (HTML and JSON) as ``{relative path: bytes}``. ``files``:
    one mapping per file, with the columns the store's index query names. ``status``,
    ``status_reason``: PEP 792's, as upstream last gave them (``None``: not observed)."""
    jfiles = []
    anchors = []
    for f in files:
        algo = "md5" if options.digest == "md5" and f.get("md5") else "sha256"
        url = f"../../{f['key']}#{algo}={f[algo]}"
        core = f["core_metadata_sha256"] if options.core_metadata else None
        jfiles.append(_json_file(f, url, core, options.root_uri))
        anchors.append(_anchor(f, url, core))
    page = {
        "meta": {"api-version": API_VERSION, "_last-serial": serial},
        "name": name,
        "versions": sorted(set(versions), key=version_key),
        "files": jfiles,
    }
    status_keys, metas = _status_fields(status, status_reason)
    page.update(status_keys)
    shown = html.escape(display)
    lines = [f"    <h1>Links for {shown}</h1>", *anchors]
    body = _html_page(f"Links for {shown}", lines, serial, metas)
    data = json.dumps(page, sort_keys=True).encode()
    return _by_format(f"simple/{name}", options.formats, body, data)


def render_root(
    projects: list[tuple[str, str, int]], serial: int, formats: str = "ALL"
) -> dict[str, bytes]:
    """The root pages, ``projects`` as (name, display name, serial), as ``{relative path:
    bytes}`` in the order to write them. The root is always in HTML too: it is what a browser
    or a plain web server shows."""
    data = {
        "meta": {"api-version": API_VERSION, "_last-serial": serial},
        "projects": [{"name": display, "_last-serial": s} for _n, display, s in projects],
    }
    links = [
        f'    <a href="{quote(name)}/">{html.escape(display)}</a><br />'
        for name, display, _s in projects
    ]
    body = _html_page("Simple index", links, serial)
    out: dict[str, bytes] = {}
    if formats in ("ALL", "JSON"):
        out["simple/index.v1_json"] = json.dumps(data).encode()
    out["simple/index.v1_html"] = body
    out["simple/index.html"] = body
    return out
