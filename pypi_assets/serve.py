"""``pypi-assets serve``: the mirror over HTTP, usable as pip's ``--index-url``.

It serves the static simple index and JSON API that the ``simple_index`` asset (or ``sync``)
writes under the web root, with PEP 691 content negotiation, ``X-PyPI-Last-Serial`` headers
and Warehouse's redirects to normalised names, and the files from the blob store (a local
directory or S3). With ``--lazy`` a selected file that is not stored yet is fetched from the
upstream on its first request, verified, stored and then served (Pulp's "on demand"); only
keys that the published snapshot lists as selected are ever fetched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import duckdb
from packaging.utils import canonicalize_name

from .files import fetch_blob
from .pypi import ClientConfig, PyPIClient, UnsafeValue
from .pypi.names import is_valid_project_name
from .store.blobs import BlobStore, check_key, copy_to
from .store.index import HTML_CT, JSON_CT
from .store.snapshot import current_snapshot

__all__ = ["MirrorServer", "negotiate"]

log = logging.getLogger(__name__)

_PACKAGE = re.compile(r"^/(packages/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}/[^/]+)$")
_SIMPLE_PROJECT = re.compile(r"^/simple/([^/]+)/?$")
_JSON_API = re.compile(r"^/pypi/([^/]+)/(?:([^/]+)/)?json/?$")


def negotiate(accept: str, fmt: str | None = None) -> str:
    """PEP 691: ``json`` or ``html`` by the client's preference (``?format=`` first)."""
    if fmt in (JSON_CT, HTML_CT, "text/html"):
        return "json" if fmt == JSON_CT else "html"
    best, best_q = "html", -1.0
    for part in (accept or "text/html").split(","):
        bits = [b.strip() for b in part.split(";")]
        q = 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        kind = {
            JSON_CT: "json",
            "application/vnd.pypi.simple.latest+json": "json",
            HTML_CT: "html",
            "application/vnd.pypi.simple.latest+html": "html",
            "text/html": "html",
            "*/*": "html",
        }.get(bits[0].lower())
        if kind and q > best_q:
            best, best_q = kind, q
    return best


@dataclass
class MirrorServer:
    web: Path
    blobs: BlobStore
    db: Path | None = None  # for --lazy: the published snapshot says what may be fetched
    lazy: bool = False
    client_config: ClientConfig | None = None
    host: str = "127.0.0.1"
    port: int = 0
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _snap: tuple[Path, duckdb.DuckDBPyConnection] | None = None
    fetched: list[str] = field(default_factory=list)  # keys fetched lazily, for operators
    _serials: dict[Path, tuple[int, dict[str, str]]] = field(default_factory=dict)

    def serial_header(self, path: Path, key: str) -> dict[str, str]:
        """``X-PyPI-Last-Serial`` from a page's JSON, parsed once per version of the file
        (the root of a large mirror is tens of megabytes)."""
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return {}
        with self._guard:
            hit = self._serials.get(path)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return {}
        serial = data.get("meta", {}).get("_last-serial") if key == "meta" else data.get(key)
        header = {"X-PyPI-Last-Serial": str(serial)} if isinstance(serial, int) else {}
        with self._guard:
            if len(self._serials) > 10_000:
                self._serials.clear()
            self._serials[path] = (mtime, header)
        return header

    def __post_init__(self) -> None:
        if self.lazy and (self.db is None or self.client_config is None):
            raise ValueError("lazy mode needs the database and an upstream")

    # -------------------------------------------------------------- lifecycle
    def _bind(self) -> ThreadingHTTPServer:
        handler = type("Handler", (_Handler,), {"mirror": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        return self._httpd

    def start(self) -> MirrorServer:
        """Serve from a background thread (tests, notebooks)."""
        self._thread = threading.Thread(target=self._bind().serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._bind().serve_forever()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -------------------------------------------------------------- lazy fetching
    def _selected(self, key: str) -> tuple[str, str, str, str, str, int | None] | None:
        """``(project, filename, key, url, sha256, size)`` if the snapshot selects ``key``."""
        assert self.db is not None
        snap = current_snapshot(self.db)
        if snap is None:
            return None
        with self._guard:
            if self._snap is None or self._snap[0] != snap:
                self._snap = (snap, duckdb.connect(str(snap), read_only=True))
            cur = self._snap[1].cursor()
        try:
            meta = key.endswith(".metadata")
            base = key.removesuffix(".metadata")
            row = cur.execute(
                "SELECT project, filename, url, sha256, size, core_metadata_sha256 "
                "FROM selected_blob_keys WHERE key = ?",
                [base],
            ).fetchone()
        finally:
            cur.close()
        if row is None:
            return None
        project, filename, url, sha, size, meta_sha = row
        if meta:
            if not meta_sha:
                return None
            return (project, filename + ".metadata", key, url + ".metadata", meta_sha, None)
        return (project, filename, key, url, sha, size)

    def fetch(self, key: str) -> bool:
        """Fetch a selected blob on demand (one fetch per key at a time)."""
        row = self._selected(key)
        if row is None:
            return False
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if self.blobs.size(key) is not None:
                return True
            assert self.client_config is not None

            async def run() -> None:
                async with PyPIClient(self.client_config) as client:
                    await fetch_blob(client, self.blobs, row)

            asyncio.run(run())
            self.fetched.append(key)
            log.info("fetched on demand: %s", key)
            return True


class _Handler(BaseHTTPRequestHandler):
    mirror: MirrorServer
    server_version = "pypi-assets"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    # -------------------------------------------------------------- responses
    def _head(
        self, status: int, ctype: str, length: int, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _bytes(
        self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        self._head(status, ctype, len(body), extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._bytes(status, json.dumps({"message": message}).encode(), "application/json")

    def _redirect(self, location: str) -> None:
        self._bytes(301, b"", "text/plain", {"Location": location})

    def _serial(self, path: Path, key: str) -> dict[str, str]:
        return self.mirror.serial_header(path, key)

    def _html_serial(self, path: Path) -> dict[str, str]:
        try:
            tail = path.read_bytes()[-64:]
        except OSError:
            return {}
        m = re.search(rb"<!--SERIAL (\d+)-->", tail)
        return {"X-PyPI-Last-Serial": m.group(1).decode()} if m else {}

    # -------------------------------------------------------------- routing
    def _route(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        web = self.mirror.web
        try:
            if path in ("/simple", "/simple/"):
                if path == "/simple":
                    return self._redirect("/simple/")
                return self._page(web / "simple", query)
            m = _SIMPLE_PROJECT.match(path)
            if m:
                name = m.group(1)
                if not is_valid_project_name(name):
                    return self._error(404, "Not Found")
                norm = canonicalize_name(name)
                if name != norm or not path.endswith("/"):
                    return self._redirect(
                        f"/simple/{norm}/" + (f"?{parts.query}" if parts.query else "")
                    )
                return self._page(web / "simple" / norm, query)
            m = _JSON_API.match(path)
            if m:
                return self._json_api(m.group(1), m.group(2))
            m = _PACKAGE.match(path)
            if m:
                return self._package(m.group(1))
            return self._error(404, "Not Found")
        except UnsafeValue as exc:
            return self._error(404, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            return None

    def _page(self, folder: Path, query: dict[str, list[str]]) -> None:
        fmt = query.get("format")
        kind = negotiate(self.headers.get("Accept", ""), fmt[0] if fmt else None)
        json_path = folder / "index.v1_json"
        target = json_path if kind == "json" else folder / "index.v1_html"
        if not target.is_file():  # simple-format = HTML or JSON: serve what there is
            kind = "html" if kind == "json" else "json"
            target = json_path if kind == "json" else folder / "index.v1_html"
        if not target.is_file():
            return self._error(404, "Not Found")
        extra = {"Vary": "Accept", **self._serial(json_path, "meta")}
        if "X-PyPI-Last-Serial" not in extra:
            extra.update(self._html_serial(folder / "index.v1_html"))
        self._bytes(200, target.read_bytes(), JSON_CT if kind == "json" else HTML_CT, extra)

    def _json_api(self, name: str, version: str | None) -> None:
        if not is_valid_project_name(name):
            return self._error(404, "Not Found")
        norm = canonicalize_name(name)
        if name != norm:
            tail = f"{version}/json" if version else "json"
            return self._redirect(f"/pypi/{norm}/{tail}")
        base = self.mirror.web / "pypi" / norm
        target = base / version / "json" if version else base / "json"
        if version is not None and (
            version in ("", ".", "..") or "/" in version or "\\" in version
        ):
            return self._error(404, "Not Found")
        if not target.is_file():
            return self._error(404, "Not Found")
        self._bytes(
            200, target.read_bytes(), "application/json", self._serial(target, "last_serial")
        )

    def _package(self, key: str) -> None:
        blobs = self.mirror.blobs
        check_key(key)
        size = blobs.size(key)
        if size is None and self.mirror.lazy:
            try:
                if self.mirror.fetch(key):
                    size = blobs.size(key)
            except Exception as exc:
                log.warning("on-demand fetch of %s failed: %s", key, exc)
                return self._error(502, f"upstream fetch failed: {exc}")
        if size is None:
            return self._error(404, "Not Found")
        ctype = "text/plain" if key.endswith(".metadata") else "application/octet-stream"
        self._head(200, ctype, size, {"Cache-Control": "max-age=365000000, immutable"})
        if self.command == "HEAD":
            return
        copy_to(blobs, key, self.wfile)


def serve(server: MirrorServer, announce: Callable[[str], None] = print) -> None:
    announce(f"pypi-assets mirror on {server.url}/simple/ (lazy={server.lazy})")
    server.serve_forever()
