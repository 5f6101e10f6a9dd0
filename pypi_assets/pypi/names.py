"""Validation of untrusted strings from upstream: project names, versions, filenames, URLs.

Nothing that comes from an upstream server becomes a path, a SQL identifier or a request
without passing through one of these functions first.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from .errors import UnsafeValue

__all__ = [
    "UnsafeValue",
    "canonical",
    "check_filename",
    "check_project_name",
    "check_sha256",
    "check_url",
    "is_valid_project_name",
    "packagetype_for",
    "upstream_url_problem",
]

# Each pattern is matched whole (fullmatch): '$' alone also matches before a final newline.
# PEP 508 names: ASCII letters and digits, with '.', '-', '_' allowed inside; at most 200.
# (No IGNORECASE: with it, [A-Z] also matches U+017F, U+0131 and the Kelvin sign U+212A.)
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")
# Distribution filenames: a conservative printable set, no separators, no leading dot.
_FILENAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!~-]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_FILENAME = 255


def is_valid_project_name(name: str) -> bool:
    return _NAME_RE.fullmatch(name) is not None


def check_project_name(name: object) -> str:
    if not isinstance(name, str) or not is_valid_project_name(name):
        raise UnsafeValue(f"invalid project name {name!r}")
    return name


def canonical(name: str) -> NormalizedName:
    """PEP 503 normalisation: lowercase, runs of -_. become '-'."""
    return canonicalize_name(name)


def check_filename(filename: object) -> str:
    if (
        not isinstance(filename, str)
        or len(filename) > _MAX_FILENAME
        or ".." in filename
        or not _FILENAME_RE.fullmatch(filename)
    ):
        raise UnsafeValue(f"unsafe filename {filename!r}")
    return filename


def check_sha256(value: object) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise UnsafeValue(f"malformed sha256 digest {value!r}")
    return value


def check_url(url: object, base: str, allowed_hosts: frozenset[str]) -> str:
    """Resolve ``url`` against ``base`` and accept it only on an allowed http(s) host."""
    if not isinstance(url, str) or len(url) > 4096 or any(c in url for c in "\r\n\t "):
        raise UnsafeValue(f"malformed URL {url!r}")
    full = urljoin(base, url)
    parts = urlsplit(full)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeValue(f"URL with unsupported scheme {url!r}")
    if parts.username or parts.password:
        raise UnsafeValue(f"URL with credentials {url!r}")
    try:
        origin = host_key(parts.scheme, parts.hostname, parts.port)
    except ValueError:
        raise UnsafeValue(f"URL with a bad port {url!r}") from None
    if origin not in allowed_hosts:
        raise UnsafeValue(f"URL on a host that is not allowed: {url!r}")
    return full


def upstream_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an upstream base URL (``/simple/`` and ``/pypi/NAME/json`` are
    appended to it), or ``None``: an http(s) URL with a host, a valid port, no credentials, no
    query or fragment, no whitespace or control characters."""
    if len(url) > 2048 or any(c <= " " or c == "\x7f" for c in url):
        return "malformed URL (whitespace or control characters)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL with a host (such as https://pypi.org)"
    if "@" in parts.netloc:
        return "a URL with credentials is not accepted"
    if port == 0:
        return "not a valid URL (Port out of range 1-65535)"
    if "?" in url or "#" in url:
        return "a URL with a query or fragment cannot be a base URL"
    if any(seg in (".", "..") for seg in parts.path.split("/")):
        return "a URL with . or .. path segments is not accepted"
    return None


def host_key(scheme: str, hostname: str, port: int | None) -> str:
    """``host`` or ``host:port`` (the port only when it is not the scheme's default): another
    port on the same host is another origin."""
    default = 443 if scheme == "https" else 80
    host = hostname.lower()
    return host if port is None or port == default else f"{host}:{port}"


_PACKAGETYPES = (
    (".whl", "bdist_wheel"),
    (".egg", "bdist_egg"),
    (".exe", "bdist_wininst"),
    (".msi", "bdist_msi"),
    (".dmg", "bdist_dmg"),
    (".rpm", "bdist_rpm"),
    (".deb", "bdist_deb"),
)


def packagetype_for(filename: str) -> str:
    """The packagetype Warehouse records, derived from the filename when upstream omits it."""
    low = filename.lower()
    for suffix, kind in _PACKAGETYPES:
        if low.endswith(suffix):
            return kind
    return "sdist"
