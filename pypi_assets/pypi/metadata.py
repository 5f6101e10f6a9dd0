"""Map core metadata (PEP 658 ``.metadata`` files) and version-JSON ``info`` onto columns."""

from __future__ import annotations

import email.parser
import email.policy
import re
from typing import Any, cast

from packaging.metadata import parse_email

from .errors import MetadataError
from .records import CORE_METADATA_FIELDS, LIST_FIELDS, StoredText

__all__ = [
    "MetadataError",
    "decode_core_metadata",
    "decode_draining",
    "fields_from_core_metadata",
    "fields_from_version_info",
]


#: packaging's ``RawMetadata`` keys that differ from the column names (plurals)
_RAW_KEYS = {"platform": "platforms", "supported_platform": "supported_platforms"}
#: Single-valued core metadata columns (Keywords aside: a list in ``RawMetadata``).
_STR_FIELDS = tuple(c for c in CORE_METADATA_FIELDS if c not in LIST_FIELDS and c != "keywords")
#: List columns, column -> ``RawMetadata`` key (Project-URL aside: assembled separately).
_LIST_FIELDS = {
    c: _RAW_KEYS.get(c, c) for c in CORE_METADATA_FIELDS if c in LIST_FIELDS and c != "project_url"
}
_MAX_METADATA_BYTES = 16 * 1024 * 1024


_DRAIN_STEP = 1024 * 1024


def _drain_pieces(data: bytearray, errors: str, repair: bool) -> tuple[list[str], bool]:
    """``data`` (UTF-8) decoded 1 MiB at a time from its end, each step cut off ``data`` once
    decoded, so the bytes shrink as the text grows. Cuts fall before a byte that starts a
    sequence, so no character is split (and an invalid sequence is replaced as a whole
    decode would). Returns the pieces, first to last, and whether a piece failed to decode
    and was decoded with U+FFFD instead (only with ``repair``; without, the error is raised)."""
    pieces: list[str] = []
    repaired = False
    while data:
        cut = max(0, len(data) - _DRAIN_STEP)
        floor = max(0, cut - 3)
        while cut > floor and data[cut] & 0xC0 == 0x80:
            cut -= 1
        with memoryview(data) as view, view[cut:] as tail:
            try:
                pieces.append(str(tail, "utf-8", errors))
            except UnicodeDecodeError:
                if not repair:
                    raise
                pieces.append(str(tail, "utf-8", "replace"))
                repaired = True
        del data[cut:]
    pieces.reverse()
    return pieces, repaired


def decode_draining(data: bytes | bytearray, encoding: str, errors: str = "strict") -> str:
    """``data.decode(encoding, errors)``; a large UTF-8 ``bytearray`` is emptied as it is
    decoded (see :func:`_drain_pieces`), so its bytes and its text are never both held whole.
    (CPython decodes non-ASCII UTF-8 into a buffer as large as the input, copied once more
    when the first non-ASCII character widens it: three copies of a large body at once.)"""
    if (
        not isinstance(data, bytearray)
        or len(data) <= _DRAIN_STEP
        or encoding.lower().replace("_", "-") not in ("utf-8", "utf8")
    ):
        return data.decode(encoding, errors)
    pieces, _ = _drain_pieces(data, errors, repair=False)
    return "".join(pieces)


def decode_core_metadata(data: bytes | bytearray) -> tuple[str, bool]:
    """The text of a METADATA / PKG-INFO file, and whether it had bytes that are not UTF-8.

    Such bytes become U+FFFD and the rest is kept, as Warehouse does; parsing the raw bytes
    instead would drop every field they touch (``packaging`` moves it to "unparsed").
    A large ``bytearray`` is emptied as it is decoded (:func:`decode_draining`).
    """
    if len(data) > _MAX_METADATA_BYTES:
        raise MetadataError("core metadata file is larger than 16 MiB")
    if isinstance(data, bytearray) and len(data) > _DRAIN_STEP:
        pieces, repaired = _drain_pieces(data, "strict", repair=True)
        return "".join(pieces), repaired
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), True


#: ``email.feedparser``'s test for a header line: a line that fails it starts the body.
_HEADER_LINE = re.compile(r"From |[\041-\071\073-\176]*:|[\t ]")


def _split_message(text: str) -> tuple[str, str]:
    """The header block and the body, split where the email parser splits them (at the first
    blank line, or at the first line that is not a header), without parsing the body: a
    multi-megabyte description is not cut into lines and joined again."""
    pos, n = 0, len(text)
    while pos < n:
        nl = text.find("\n", pos)
        end = n if nl == -1 else nl + 1
        if text.startswith(("\n", "\r\n"), pos) or pos == end:
            return text[:pos], text[end:]
        if not _HEADER_LINE.match(text, pos):
            return text[:pos], text[pos:]
        pos = end
    return text, ""


def _headers(head: str) -> Any:
    return email.parser.HeaderParser(policy=email.policy.compat32).parsestr(head)


def _raw_keywords(headers: Any) -> str | None:
    # packaging splits Keywords on commas and strips; the column keeps the header as written.
    value = headers.get("Keywords")
    if value is None:
        return None
    text = str(value)
    return text or None


def _unfold_description(text: str) -> str:
    """A ``Description`` *header* (metadata < 2.1) has its continuation lines prefixed with
    7 spaces and ``|`` (setuptools) or 8 spaces (older tools); remove that folding."""
    lines = text.split("\n")
    out = [lines[0]]
    for line in lines[1:]:
        indent = min(8, len(line) - len(line.lstrip(" ")))
        if indent >= 7 and line[indent : indent + 1] == "|":
            line = line[indent + 1 :]
        elif indent == 8:
            line = line[8:]
        out.append(line)
    return "\n".join(out)


def fields_from_core_metadata(data: bytes | bytearray | str) -> dict[str, Any]:
    """Parse a METADATA / PKG-INFO file (metadata versions 1.0 to 2.5) into column values.

    ``data`` is the file's text (:func:`decode_core_metadata`), or its bytes, decoded here.
    Repeatable fields that are absent become ``[]`` (known to be empty).
    """
    text = data if isinstance(data, str) else decode_core_metadata(data)[0]
    if len(text) > _MAX_METADATA_BYTES:
        raise MetadataError("core metadata file is larger than 16 MiB")
    head, payload = _split_message(text)
    del text
    try:
        raw, unparsed = parse_email(head)
    except Exception as exc:  # packaging raises plain ValueError on undecodable input
        raise MetadataError(f"unparseable core metadata: {exc}") from exc
    if payload:
        # packaging's rule for the body: the description, unless a Description header gives
        # one too (then neither is known to be right).
        if "description" in raw:
            del raw["description"]
        elif "description" not in unparsed:
            raw["description"] = payload
    del payload
    if "metadata_version" not in raw:
        raise MetadataError("core metadata has no Metadata-Version")
    out: dict[str, Any] = {}
    for col in _STR_FIELDS:
        value = raw.get(col)
        out[col] = value if value not in ("", None) else None
    for col, key in _LIST_FIELDS.items():
        value = cast(list[str] | None, raw.get(key))
        out[col] = list(value or [])
    headers = _headers(head)
    if (
        out["description"] is not None
        and "\n" in out["description"]
        and headers.get("Description") is not None
    ):
        out["description"] = _unfold_description(out["description"])
    urls = raw.get("project_urls") or {}
    out["project_url"] = [f"{label}, {url}" for label, url in urls.items()]
    out["keywords"] = _raw_keywords(headers)
    out["core_name"] = raw.get("name")
    out["core_version"] = raw.get("version")
    return out


def _s(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MetadataError(f"expected a string, got {type(value).__name__}")
    return value or None


def _l(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MetadataError("expected a list of strings")
    return list(value)


def fields_from_version_info(info: dict[str, Any]) -> dict[str, Any]:
    """Column values from ``/pypi/<p>/<v>/json`` ``info`` (the first upload's form metadata).

    Fields the JSON API does not expose (metadata_version, provides_dist, obsoletes_dist,
    requires_external, supported_platform) are ``None``: unknown, not empty.
    """
    if not isinstance(info, dict):
        raise MetadataError("version JSON 'info' is not an object")
    out: dict[str, Any] = {
        "metadata_version": None,
        "provides_dist": None,
        "obsoletes_dist": None,
        "requires_external": None,
        "supported_platform": None,
    }
    # The same single-valued fields as core metadata (Metadata-Version aside), plus Keywords,
    # which the JSON API gives as the string written.
    for col in (*(c for c in _STR_FIELDS if c != "metadata_version"), "keywords"):
        value = info.get(col)
        # a stored release's info: its long description stays the stored text it names
        out[col] = value if isinstance(value, StoredText) else _s(value)
    out["requires_dist"] = _l(info.get("requires_dist")) or []
    out["classifiers"] = _l(info.get("classifiers")) or []
    out["provides_extra"] = _l(info.get("provides_extra")) or []
    out["license_files"] = _l(info.get("license_files")) or []
    out["dynamic"] = _l(info.get("dynamic")) or []
    platform = info.get("platform")
    if isinstance(platform, list):
        out["platform"] = _l(platform)
    else:
        p = _s(platform)
        out["platform"] = [p] if p else []
    # Warehouse folds Home-page and Download-URL into project_urls; keep only Project-URL entries.
    urls = info.get("project_urls") or {}
    if not isinstance(urls, dict):
        raise MetadataError("version JSON 'project_urls' is not an object")
    project_url: list[str] = []
    for label, url in urls.items():
        if not isinstance(label, str) or not isinstance(url, str):
            raise MetadataError("version JSON 'project_urls' has a non-string entry")
        if label == "Homepage" and url == out["home_page"]:
            continue
        if label == "Download" and url == out["download_url"]:
            continue
        project_url.append(f"{label}, {url}")
    out["project_url"] = project_url
    return out
