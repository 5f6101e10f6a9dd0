"""A fake Warehouse on loopback: simple index (HTML and JSON by ``Accept``, Index API 1.4),
JSON API, files, PEP 658 ``.metadata`` files, PEP 740 provenance and XML-RPC, with
``X-PyPI-Last-Serial`` on every response, PEP 503 and display-name redirects, PEP 792 project
status, per-route request counters, injected latency and injectable faults.

:class:`~pypi_assets.fake.modes.Switches` make it behave as pypi.org does today (a cached root
that lags, rate-limited XML-RPC) or fall short as proxies do (``profile="proxy"``)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import html
import json
import re
import socket
import threading
import time
import xmlrpc.client
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import canonicalize_name

from ..pypi.warehouse import warehouse_file
from .data import FakeFile, FakeIndex, FakeProject, FakeRelease, provenance_bundle
from .modes import PROFILES, RateLimit, RootSnapshot, Switches

__all__ = ["FakeUpstream", "Fault", "is_tally"]

JSON_CT = "application/vnd.pypi.simple.v1+json"
HTML_CT = "application/vnd.pypi.simple.v1+html"
INTEGRITY_CT = "application/vnd.pypi.integrity.v1+json"
API_VERSION = "1.4"
CHANGELOG_CAP = 50_000
#: Content types answered with an ETag (and 304 to a matching If-None-Match).
_CONDITIONAL = re.compile(
    r"application/(json|vnd\.pypi\.(simple\.v1\+(json|html)|integrity\.v1\+json))|text/html"
)


def _origin(address: object) -> str:
    """``http://host:port`` of a server bound to an AF_INET address (host is a str there)."""
    if not (isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str)):
        raise TypeError(f"not an AF_INET server address: {address!r}")
    return f"http://{address[0]}:{address[1]}"


@dataclass
class Fault:
    """Applied to the next ``times`` requests whose path matches ``path`` (a regex).

    kind: ``status`` (answer ``status``, with ``retry_after`` if set), ``delay`` (sleep
    ``seconds`` before answering), ``truncate`` (promise more bytes than are sent),
    ``stale`` (serve with a serial lower by ``lag``), ``reset`` (close without answering),
    ``corrupt`` (a file body of the right length whose bytes differ), ``oversize`` (a file body
    longer than the advertised size, with an honest Content-Length), ``body`` (answer 200
    with ``body`` instead of the real body: garbage, hostile JSON, ...), ``gzip`` (send
    ``body``, or the real body, gzip-compressed with ``Content-Encoding: gzip``: with a large
    ``body`` of zeros, a decompression bomb), ``trickle`` (send the body one byte every
    ``seconds``, for at most ``limit`` bytes: a body that never ends). With ``encoded``,
    a ``gzip`` fault's ``body`` is already gzip-compressed and is sent as it is (a bomb of
    a GiB is built once, not compressed again on every request).
    """

    path: str
    kind: str
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0.0
    lag: int = 1
    body: bytes = b""
    ctype: str | None = None
    limit: int = 1 << 30
    encoded: bool = False


def _iso(ts: float) -> tuple[str, str]:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S"), dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _State:
    index: FakeIndex
    latency: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    per_project: Counter[tuple[str, str]] = field(default_factory=Counter)
    ranges: list[tuple[str, str]] = field(default_factory=list)  # (path, Range header) of files
    #: answers sent, by HTTP status (``reset_counts`` clears them with the counts)
    statuses: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    root_cache: dict[tuple[Any, ...], bytes] = field(default_factory=dict)
    switches: Switches = field(default_factory=Switches)
    root_snapshot: RootSnapshot | None = None
    xmlrpc_window: RateLimit | None = None
    api_window: RateLimit | None = None

    # Lock order: the index's, then the state's.
    def configure(self, **changes: Any) -> None:
        """Set :class:`Switches`. Setting ``cached_root`` to ``True`` freezes the root now
        (it is on by default, and then the copy is taken at the root's first request)."""
        with self.index.lock, self.lock:
            self.switches.update(changes)
            if "xmlrpc_limit" in changes:
                limit = self.switches.xmlrpc_limit
                self.xmlrpc_window = RateLimit(*limit) if limit else None
            if "api_limit" in changes:
                api = self.switches.api_limit
                self.api_window = RateLimit(*api) if api else None
            if changes.get("cached_root"):
                self.root_snapshot = self._snapshot(time.monotonic())
            elif not self.switches.cached_root:
                self.root_snapshot = None

    def emulate_proxy(self) -> None:
        """The route to pypi.org on our machines (REFERENCE.md), on loopback."""
        self.configure(**PROFILES["proxy"])

    def purge_root(self) -> None:
        """Purge the CDN's copy of the root: the next request sees the live listing."""
        with self.lock:
            self.root_snapshot = None

    def live_projects(self) -> list[tuple[str, int]]:
        """The root's listing now: every project but the quarantined ones."""
        with self.index.lock:
            return [(p.name, p.serial) for p in self.index.projects.values() if not p.quarantined]

    def _snapshot(self, now: float) -> RootSnapshot:
        with self.index.lock:
            return RootSnapshot(self.index.serial, self.live_projects(), now)

    def root_listing(self) -> RootSnapshot:
        """The root as served: live (``projects`` is ``None``: read it with
        :meth:`live_projects`), or the cached copy (taken anew once purged or old)."""
        now = time.monotonic()
        with self.index.lock, self.lock:
            if not self.switches.cached_root:
                return RootSnapshot(self.index.serial, None, now)
            snap, age = self.root_snapshot, self.switches.root_max_age
            if snap is None or (age is not None and now - snap.taken >= age):
                snap = self.root_snapshot = self._snapshot(now)
            return snap

    def xmlrpc_wait(self) -> int | None:
        """``None`` when an XML-RPC call is within the limit; else seconds until it resets."""
        with self.lock:
            window = self.xmlrpc_window
            return None if window is None else window.take(time.monotonic())

    def api_wait(self) -> int | None:
        """``None`` when a JSON API or simple page request is within ``api_limit``; else
        the seconds until it resets (the request is tallied under ``api-limited``)."""
        with self.lock:
            window = self.api_window
            wait = None if window is None else window.take(time.monotonic())
            if wait is not None:
                self.counts["api-limited"] += 1
            return wait


def is_tally(key: str) -> bool:
    """Whether a count is a tally of requests already counted by their route: ``redirect``
    (and ``redirect:<route>``), ``not-modified`` (304s), ``xmlrpc-limited`` and
    ``api-limited``."""
    return key.startswith("redirect") or key in ("not-modified", "xmlrpc-limited", "api-limited")


class FakeUpstream:
    """Serve a :class:`FakeIndex` on 127.0.0.1. ``with FakeUpstream(index) as up: up.url``."""

    def __init__(
        self,
        index: FakeIndex,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        profile: str | None = None,
        **switches: Any,
    ) -> None:
        """``profile``: a preset of :data:`~pypi_assets.fake.modes.PROFILES` (``"proxy"``);
        ``switches``: :class:`~pypi_assets.fake.modes.Switches` fields, applied after it."""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fake upstream only listens on loopback")
        if profile is not None and profile not in PROFILES:
            raise ValueError(f"unknown fake upstream profile {profile!r}")
        self.state = _State(index=index, latency=latency)
        self.state.configure(**{**PROFILES[profile or "warehouse"], **switches})
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 128
        self._thread: threading.Thread | None = None

    @property
    def index(self) -> FakeIndex:
        return self.state.index

    @property
    def url(self) -> str:
        return _origin(self.server.server_address)

    @property
    def counts(self) -> Counter[str]:
        return self.state.counts

    @property
    def per_project(self) -> Counter[tuple[str, str]]:
        return self.state.per_project

    def reset_counts(self) -> None:
        with self.state.lock:
            self.state.counts.clear()
            self.state.per_project.clear()
            self.state.statuses.clear()

    def total_requests(self) -> int:
        """Requests answered (the tallies, :func:`is_tally`, left out)."""
        return sum(n for key, n in self.state.counts.items() if not is_tally(key))

    @property
    def switches(self) -> Switches:
        return self.state.switches

    def configure(self, **changes: Any) -> None:
        self.state.configure(**changes)

    def emulate_proxy(self) -> None:
        self.state.emulate_proxy()

    def purge_root(self) -> None:
        self.state.purge_root()

    def add_fault(self, fault: Fault) -> None:
        with self.state.lock:
            self.state.faults.append(fault)

    def set_latency(self, seconds: float) -> None:
        self.state.latency = seconds

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="fake-upstream", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def serve_announced(self) -> None:
        """Print where it listens (one line: scripts wait for it), then serve until Ctrl-C."""
        index = self.state.index
        print(
            f"fake upstream with {len(index.projects)} projects (serial {index.serial}) on "
            f"{self.url}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            self.serve_forever()


def _reset_stats(state: _State, args: dict[str, Any]) -> None:
    with state.lock:
        state.counts.clear()
        state.per_project.clear()


def _control_status(state: _State, a: dict[str, Any]) -> None:
    state.index.set_status(a["project"], a["status"], a.get("reason"))


def _control_vulns(state: _State, a: dict[str, Any]) -> None:
    state.index.set_vulnerabilities(a["project"], a["version"], list(a["vulnerabilities"]))


#: ``POST /_fake/<action>`` with a JSON body of arguments, for out-of-process users.
_CONTROL: dict[str, Callable[[_State, dict[str, Any]], object]] = {
    "project": lambda st, a: st.index.add_project(a["project"]),
    "release": lambda st, a: st.index.add_release(
        a["project"], a["version"], wheels=int(a.get("wheels", 1))
    ),
    "yank": lambda st, a: st.index.yank(a["project"], a["version"], a.get("reason")),
    "unyank": lambda st, a: st.index.unyank(a["project"], a["version"]),
    "delete-release": lambda st, a: st.index.delete_release(a["project"], a["version"]),
    "delete-file": lambda st, a: st.index.delete_file(a["project"], a["filename"]),
    "delete-project": lambda st, a: st.index.delete_project(a["project"]),
    "status": _control_status,
    "vulnerabilities": _control_vulns,
    "role": lambda st, a: st.index.set_role(a["project"], a["user"], a.get("role")),
    "organization": lambda st, a: st.index.set_organization(a["project"], a.get("organization")),
    "configure": lambda st, a: st.configure(**a),
    "emulate-proxy": lambda st, a: st.emulate_proxy(),
    "purge-root": lambda st, a: st.purge_root(),
    "reset-stats": _reset_stats,
}

_ROUTES = (
    ("simple-root", re.compile(r"^/simple/?$")),
    ("simple-project", re.compile(r"^/simple/(?P<name>[^/]+)/?$")),
    ("project-json", re.compile(r"^/pypi/(?P<name>[^/]+)/json/?$")),
    ("version-json", re.compile(r"^/pypi/(?P<name>[^/]+)/(?P<version>[^/]+)/json/?$")),
    (
        "core-metadata",
        re.compile(r"^/(?P<path>packages/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}/[^/]+)\.metadata$"),
    ),
    ("file", re.compile(r"^/(?P<path>packages/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}/[^/]+)$")),
    (
        "integrity",
        re.compile(
            r"^/integrity/(?P<name>[^/]+)/(?P<version>[^/]+)/(?P<filename>[^/]+)/provenance$"
        ),
    ),
    ("stats", re.compile(r"^/_fake/stats$")),
)


#: The routes ``api_limit`` applies to: the JSON API and the simple pages.
_API_ROUTES = frozenset({"simple-root", "simple-project", "project-json", "version-json"})


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"
    server_version = "fake-warehouse/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, delayed ACKs add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ------------------------------------------------------------------ plumbing
    @property
    def base(self) -> str:
        return _origin(self.server.server_address)

    def _fault(self, path: str) -> Fault | None:
        with self.state.lock:
            for f in self.state.faults:
                if f.times > 0 and re.search(f.path, path):
                    f.times -= 1
                    return f
        return None

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str,
        *,
        serial: int | None = None,
        headers: dict[str, str] | None = None,
        fault: Fault | None = None,
    ) -> None:
        if fault is not None:
            serial, status, body, ctype, headers = _content_fault(
                fault, serial, status, body, ctype, headers
            )
        etag = None
        if status == 200 and self.command in ("GET", "HEAD") and _CONDITIONAL.match(ctype):
            etag, status = self._conditional(body)
        with self.state.lock:
            self.state.statuses[status] += 1
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if self.state.switches.serial_headers:
            self.send_header(
                "X-PyPI-Last-Serial", str(serial if serial is not None else self.state.index.serial)
            )
        self.send_header("Vary", "Accept")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if fault is not None and fault.kind == "truncate":
            self.send_header("Content-Length", str(len(body) + 100))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        if fault is not None and fault.kind == "trickle":
            self._trickle(body, fault)
            return
        if etag is not None:
            self.send_header("ETag", etag)
            if status == 304:
                self.end_headers()
                return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _conditional(self, body: bytes) -> tuple[str, int]:
        """Warehouse (through its CDN) answers pages with an ETag and honours If-None-Match:
        the ETag, and 304 when the client has it, else 200."""
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if self.headers.get("If-None-Match", "").strip() != etag:
            return etag, 200
        with self.state.lock:
            self.state.counts["not-modified"] += 1
        return etag, 304

    def _trickle(self, body: bytes, fault: Fault) -> None:
        """No Content-Length, one byte every ``fault.seconds``: the client must give up."""
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        with contextlib.suppress(OSError):
            for i in range(min(len(body) or fault.limit, fault.limit)):
                self.wfile.write(body[i : i + 1] if body else b" ")
                self.wfile.flush()
                time.sleep(fault.seconds)

    def _file(self, content: bytes, fault: Fault | None) -> None:
        """A file, with a single ``Range`` (``bytes=N-``, ``bytes=N-M``, ``bytes=-N``)
        answered 206 as files.pythonhosted.org does."""
        if fault is not None and fault.kind == "corrupt":
            content = bytes([content[0] ^ 0xFF]) + content[1:]
        elif fault is not None and fault.kind == "oversize":
            content = content + b"\0" * 4096
        status, headers, body = 200, {}, content
        if self.headers.get("Range"):
            with self.state.lock:
                self.state.ranges.append((self.path, self.headers["Range"]))
            span = _byte_range(self.headers["Range"], len(content))
            if span == "unsatisfiable":
                self._send(
                    416, b"", "text/plain", headers={"Content-Range": f"bytes */{len(content)}"}
                )
                return
            if isinstance(span, tuple):
                start, end = span
                status, body = 206, content[start : end + 1]
                headers = {"Content-Range": f"bytes {start}-{end}/{len(content)}"}
        if fault is not None and fault.kind == "truncate":
            # the connection drops halfway through an honestly announced body
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(status, body, "application/octet-stream", headers=headers)

    def _json(
        self, data: Any, serial: int, fault: Fault | None, ctype: str = "application/json"
    ) -> None:
        self._send(200, json.dumps(data).encode(), ctype, serial=serial, fault=fault)

    def _not_found(self) -> None:
        self._send(404, b'{"message": "Not Found"}', "application/json")

    def _redirect(self, location: str, route: str) -> None:
        """A 301, counted as ``redirect`` and ``redirect:<route>`` (besides its route)."""
        with self.state.lock:
            self.state.counts["redirect"] += 1
            self.state.counts[f"redirect:{route}"] += 1
        self._send(301, b"", "text/plain", headers={"Location": location})

    def _accept_json(self) -> bool:
        """Warehouse's negotiation: the best quality wins; no match means HTML."""
        accept = self.headers.get("Accept", "")
        best, best_q = "html", -1.0
        for part in accept.split(","):
            bits = [b.strip() for b in part.split(";")]
            mtype = bits[0].lower()
            q = 1.0
            for b in bits[1:]:
                if b.startswith("q="):
                    try:
                        q = float(b[2:])
                    except ValueError:
                        q = 0.0
            kind = {JSON_CT: "json", HTML_CT: "html", "text/html": "html"}.get(mtype)
            if kind and q > best_q:
                best, best_q = kind, q
        return best == "json"

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _route(self, path: str) -> tuple[str, re.Match[str] | None]:
        if self.command == "POST":
            return ("xmlrpc" if path.rstrip("/") in ("/pypi", "/RPC2") else "other"), None
        for name, rx in _ROUTES:
            match = rx.match(path)
            if match:
                return name, match
        return "other", None

    def _count(self, route: str, match: re.Match[str] | None) -> None:
        project = ""
        if match is not None and "name" in match.groupdict():
            project = canonicalize_name(unquote(match.group("name")))
        with self.state.lock:
            self.state.counts[route] += 1
            if project:
                self.state.per_project[(route, project)] += 1

    def _early_fault(self, fault: Fault | None) -> bool:
        """Apply the faults that act before any content (status, delay, reset); ``True``
        when the request is answered."""
        if fault is None:
            return False
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send(fault.status, b"fault injected", "text/plain", headers=headers)
            return True
        if fault.kind == "delay":
            time.sleep(fault.seconds)
        if fault.kind == "reset":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        return False

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        if self.command == "POST" and path.startswith("/_fake/"):
            self._control(path[len("/_fake/") :])
            return
        route, match = self._route(path)
        if route == "stats":
            self._send(200, json.dumps(dict(self.state.counts)).encode(), "application/json")
            return
        self._count(route, match)
        if self.state.latency:
            time.sleep(self.state.latency)
        fault = self._fault(path)
        if self._early_fault(fault) or self._api_limited(route):
            return
        if route == "xmlrpc":
            self._xmlrpc_gate(fault)
        elif route == "simple-root":
            self._simple_root(fault)
        elif match is None:
            self._not_found()
        else:
            self._serve(route, match, fault)

    def _api_limited(self, route: str) -> bool:
        """Over ``api_limit`` on the JSON API or a simple page: answer 429 (``True``)."""
        if route not in _API_ROUTES:
            return False
        wait = self.state.api_wait()
        if wait is None:
            return False
        message = f"Too many requests. Limit may reset in {wait} seconds."
        retry_after = self.state.switches.api_limit_retry_after
        headers = {"Retry-After": str(wait)} if retry_after else {}
        self._send(429, message.encode(), "text/plain", headers=headers)
        return True

    def _serve(self, route: str, match: re.Match[str], fault: Fault | None) -> None:
        if route == "simple-project":
            return self._simple_project(unquote(match.group("name")), fault)
        if route == "project-json":
            return self._project_json(unquote(match.group("name")), fault)
        if route == "version-json":
            name, version = unquote(match.group("name")), unquote(match.group("version"))
            return self._version_json(name, version, fault)
        if route == "integrity":
            return self._provenance(match, fault)
        f = self.state.index.file_by_path(match.group("path"))
        if f is None:
            self._not_found()
        elif route == "core-metadata":
            if not f.core_metadata or self.state.switches.pep658 == "absent":
                self._not_found()
            else:
                self._send(200, f.metadata, "application/octet-stream", fault=fault)
        else:
            self._file(f.content, fault)

    def _control(self, action: str) -> None:
        """Mutations for out-of-process users (benchmarks): not counted as upstream requests."""
        length = int(self.headers.get("Content-Length", "0") or 0)
        try:
            args = json.loads(self.rfile.read(min(length, 1 << 20)) or b"{}")
            act = _CONTROL.get(action)
            if act is None:
                self._send(404, b'{"message": "unknown control action"}', "application/json")
                return
            act(self.state, args)
        except (KeyError, ValueError, TypeError) as exc:
            self._send(400, json.dumps({"message": str(exc)}).encode(), "application/json")
            return
        self._send(
            200, json.dumps({"serial": self.state.index.serial}).encode(), "application/json"
        )

    # ------------------------------------------------------------------ simple index
    def _simple_root(self, fault: Fault | None) -> None:
        sw = self.state.switches
        as_json = self._accept_json() and not sw.html_only_root
        snap = self.state.root_listing()
        key = (snap.serial, snap.taken if snap.projects is not None else None)
        with self.state.index.lock:
            full_key = (*key, as_json, sw.serial_headers)
            body = self.state.root_cache.get(full_key)
            if body is None:
                body = self._root_body(snap, as_json, sw.serial_headers)
                self.state.root_cache.clear()
                self.state.root_cache[full_key] = body
        self._send(200, body, JSON_CT if as_json else HTML_CT, serial=snap.serial, fault=fault)

    def _root_body(self, snap: RootSnapshot, as_json: bool, serials: bool) -> bytes:
        """The root listing (live when ``snap.projects`` is ``None``), in either form."""
        projects = snap.projects if snap.projects is not None else self.state.live_projects()
        if as_json:
            parts = [
                json.dumps({"name": n, "_last-serial": s} if serials else {"name": n})
                for n, s in projects
            ]
            meta: dict[str, Any] = {"api-version": API_VERSION}
            if serials:
                meta["_last-serial"] = snap.serial
            return (
                '{"meta": ' + json.dumps(meta) + ', "projects": [' + ", ".join(parts) + "]}"
            ).encode()
        links = "".join(
            f'    <a href="/simple/{canonicalize_name(n)}/">{html.escape(n)}</a>\n'
            for n, _ in projects
        )
        return (
            '<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" '
            f'content="{API_VERSION}">\n    <title>Simple index</title>\n  </head>\n  <body>\n'
            f"{links}  </body>\n</html>\n" + (f"<!--SERIAL {snap.serial}-->\n" if serials else "")
        ).encode()

    def _project_or_answer(self, name: str, canonical_path: str) -> tuple[str, FakeProject] | None:
        """The project for a request, or ``None`` once a PEP 503 redirect (to
        ``canonical_path``, with ``{norm}`` filled in) or a 404 has been sent."""
        norm = canonicalize_name(name)
        if name != norm:
            self._redirect(canonical_path.format(norm=norm), "simple-project")
            return None
        p = self.state.index.get(norm)
        if p is None:
            self._not_found()
            return None
        return norm, p

    def _simple_project(self, name: str, fault: Fault | None) -> None:
        idx = self.state.index
        found = self._project_or_answer(name, "/simple/{norm}/")
        if found is None:
            return
        norm, p = found
        with idx.lock:
            rels = idx.releases(norm)
            hidden = p.quarantined  # quarantined: the page lists nothing
            files = [] if hidden else [f for r in rels.values() for f in r.files]
            versions = [] if hidden else list(rels)
            status: dict[str, Any] = {"status": p.status}
            if p.status_reason:
                status["reason"] = p.status_reason
            serial = p.serial
        if self._accept_json():
            meta: dict[str, Any] = {"api-version": API_VERSION}
            if self.state.switches.serial_headers:
                meta["_last-serial"] = serial
            data = {
                "meta": meta,
                "name": norm,
                "project-status": status,
                "versions": versions,
                "files": [self._simple_file(norm, f) for f in files],
            }
            self._json(data, serial, fault, JSON_CT)
            return
        body = self._simple_html(norm, files, status, serial)
        self._send(200, body, HTML_CT, serial=serial, fault=fault)

    def _simple_html(
        self, norm: str, files: list[FakeFile], status: dict[str, Any], serial: int
    ) -> bytes:
        links = []
        for f in files:
            attrs = [f'href="{self.base}/{f.path}#sha256={f.sha256}"']
            if f.requires_python:
                attrs.append(f'data-requires-python="{html.escape(f.requires_python)}"')
            if f.yanked:
                attrs.append(f'data-yanked="{html.escape(f.yanked_reason or "")}"')
            if self._advertise_metadata(f):
                attrs.append(f'data-core-metadata="sha256={f.metadata_sha256}"')
                attrs.append(f'data-dist-info-metadata="sha256={f.metadata_sha256}"')
            provenance = self._provenance_url(norm, f)
            if provenance:
                attrs.append(f'data-provenance="{html.escape(provenance)}"')
            links.append(f"    <a {' '.join(attrs)}>{html.escape(f.filename)}</a><br />\n")
        metas = [
            ("pypi:repository-version", API_VERSION),
            ("pypi:project-status", status["status"]),
        ]
        if "reason" in status:
            metas.append(("pypi:project-status-reason", status["reason"]))
        head = "".join(f'    <meta name="{k}" content="{html.escape(str(v))}">\n' for k, v in metas)
        serial_comment = f"<!--SERIAL {serial}-->\n" if self.state.switches.serial_headers else ""
        return (
            f"<!DOCTYPE html>\n<html>\n  <head>\n{head}"
            f"    <title>Links for {html.escape(norm)}</title>\n  </head>\n  <body>\n    <h1>Links for {html.escape(norm)}</h1>\n"
            + "".join(links)
            + f"  </body>\n</html>\n{serial_comment}"
        ).encode()

    def _advertise_metadata(self, f: FakeFile) -> bool:
        return f.core_metadata and self.state.switches.pep658 == "advertised"

    def _provenance_url(self, norm: str, f: FakeFile) -> str | None:
        """PEP 740: where the file's provenance is, or ``None`` for a file without one."""
        if not f.has_provenance:
            return None
        if f.provenance_url is not None:
            return f.provenance_url
        version, filename = quote(f.version, safe=""), quote(f.filename, safe="")
        return f"{self.base}/integrity/{norm}/{version}/{filename}/provenance"

    def _simple_file(self, norm: str, f: FakeFile) -> dict[str, Any]:
        cm: Any = {"sha256": f.metadata_sha256} if self._advertise_metadata(f) else False
        _, iso = _iso(f.upload_time)
        return {
            "filename": f.overrides.get("filename", f.filename),
            "url": f.overrides.get("url", f"{self.base}/{f.path}"),
            "hashes": {"sha256": f.sha256},
            "requires-python": f.requires_python,
            "size": len(f.content),
            "upload-time": iso,
            "yanked": (f.yanked_reason or True) if f.yanked else False,
            "core-metadata": cm,
            "data-dist-info-metadata": cm,
            "provenance": self._provenance_url(norm, f),
            # hostile-upstream tests: PEP 691 fields as a faulty upstream would send them
            **{k: v for k, v in f.overrides.items() if k in _PAGE_OVERRIDES},
        }

    def _provenance(self, match: re.Match[str], fault: Fault | None) -> None:
        """``/integrity/<project>/<version>/<filename>/provenance`` (PEP 740)."""
        idx = self.state.index
        norm = canonicalize_name(unquote(match.group("name")))
        version, filename = unquote(match.group("version")), unquote(match.group("filename"))
        with idx.lock:
            p = idx.get(norm)
            f = idx.find_file(norm, version, filename)
            if p is None or p.quarantined or f is None or not f.has_provenance:
                self._not_found()
                return
            data, serial, body = provenance_bundle(p.name, f), p.serial, f.provenance_body
        if body is not None:
            self._send(200, body, INTEGRITY_CT, serial=serial, fault=fault)
            return
        self._json(data, serial, fault, INTEGRITY_CT)

    # ------------------------------------------------------------------ JSON API
    def _file_json(self, f: FakeFile) -> dict[str, Any]:
        return {
            **warehouse_file(
                filename=f.filename,
                packagetype=f.packagetype,
                python_version=f.python_version,
                requires_python=f.requires_python,
                size=len(f.content),
                upload_time=datetime.fromtimestamp(f.upload_time, UTC),
                url=f"{self.base}/{f.path}",
                sha256=f.sha256,
                md5=f.md5,
                blake2b_256=f.blake2b_256,
                yanked=f.yanked,
                yanked_reason=f.yanked_reason,
            ),
            **f.overrides,  # hostile-upstream tests: a filename or URL as an attacker would send
        }

    def _info(self, norm: str, rel: FakeRelease) -> dict[str, Any]:
        info = dict(rel.info)
        info.setdefault("name", self.state.index.projects[norm].name)
        info["project_url"] = f"{self.base}/project/{norm}/"
        info["package_url"] = f"{self.base}/project/{norm}/"
        info["release_url"] = f"{self.base}/project/{norm}/{rel.version}/"
        info["docs_url"] = None
        info["bugtrack_url"] = None
        info["downloads"] = {"last_day": -1, "last_month": -1, "last_week": -1}
        info["yanked"] = bool(rel.files) and all(f.yanked for f in rel.files)
        info["yanked_reason"] = next((f.yanked_reason for f in rel.files if f.yanked_reason), None)
        for k in (
            "summary",
            "keywords",
            "license",
            "author",
            "author_email",
            "maintainer",
            "maintainer_email",
            "home_page",
            "download_url",
            "requires_python",
            "description_content_type",
            "platform",
        ):
            info.setdefault(k, None)
        return info

    def _json_api_project(self, name: str, tail: str, route: str) -> tuple[str, FakeProject] | None:
        """Warehouse's ``json_project``/``json_release`` lookup: 404 for an unknown or
        quarantined project; a 301 to the display name for any other spelling of it (with
        ``json_redirects`` off: to the normalised name, for non-normalised names only)."""
        norm = canonicalize_name(name)
        p = self.state.index.get(norm)
        if p is None or p.quarantined:
            self._not_found()
            return None
        if self.state.switches.json_redirects and name != p.name:
            self._redirect(f"/pypi/{quote(p.name, safe='')}/{tail}", route)
            return None
        if not self.state.switches.json_redirects and name != norm:
            self._redirect(f"/pypi/{norm}/{tail}", route)
            return None
        return norm, p

    def _project_json(self, name: str, fault: Fault | None) -> None:
        idx = self.state.index
        found = self._json_api_project(name, "json", "project-json")
        if found is None:
            return
        norm, p = found
        with idx.lock:
            rels = idx.releases(norm)
            latest = idx.latest(norm)
            serial = p.serial
            data: dict[str, Any] = {
                "info": self._info(norm, latest) if latest else {"name": p.name, "version": None},
                "last_serial": serial,
            }
            if self.state.switches.releases_key:
                data["releases"] = {
                    v: [self._file_json(f) for f in r.files] for v, r in rels.items()
                }
            data["urls"] = [self._file_json(f) for f in latest.files] if latest else []
            data["vulnerabilities"] = idx.vulnerabilities(norm, latest.version) if latest else []
            data["ownership"] = idx.ownership(norm)
        self._json(data, serial, fault)

    def _version_json(self, name: str, version: str, fault: Fault | None) -> None:
        idx = self.state.index
        if self.state.switches.version_json_404:
            self._not_found()
            return
        found = self._json_api_project(name, version + "/json", "version-json")
        if found is None:
            return
        norm, p = found
        with idx.lock:
            rel = idx.releases(norm).get(version)
            if rel is None:
                self._not_found()
                return
            data = {
                "info": self._info(norm, rel),
                "last_serial": p.serial,
                "urls": [self._file_json(f) for f in rel.files],
                "vulnerabilities": idx.vulnerabilities(norm, version),
                "ownership": idx.ownership(norm),
            }
        self._json(data, p.serial, fault)

    # ------------------------------------------------------------------ XML-RPC
    def _xmlrpc_gate(self, fault: Fault | None) -> None:
        """XML-RPC as switched: absent (405), over its rate limit (429, or a fault inside a
        200, with Warehouse's "Limit may reset in N seconds"), or answered."""
        length = int(self.headers.get("Content-Length", "0") or 0)
        raw = self.rfile.read(min(length, 1 << 20))
        sw = self.state.switches
        if not sw.xmlrpc:
            self._send(405, b"Method Not Allowed", "text/plain", headers={"Allow": "GET, HEAD"})
            return
        wait = self.state.xmlrpc_wait()
        if wait is None:
            self._xmlrpc(raw, fault)
            return
        with self.state.lock:
            self.state.counts["xmlrpc-limited"] += 1
        message = (
            "The action could not be performed because there were too many requests. "
            f"Limit may reset in {wait} seconds."
        )
        if sw.xmlrpc_limit_fault:
            fault_body = xmlrpc.client.Fault(-32500, f"HTTPTooManyRequests: {message}")
            self._send(
                200, xmlrpc.client.dumps(fault_body, methodresponse=True).encode(), "text/xml"
            )
        else:
            self._send(429, message.encode(), "text/plain")

    def _xmlrpc(self, raw: bytes, fault: Fault | None) -> None:
        idx = self.state.index
        try:
            params, method = xmlrpc.client.loads(raw)
            with idx.lock:
                if method == "list_packages_with_serial":
                    result: Any = {
                        p.name: p.serial for p in idx.projects.values() if not p.quarantined
                    }
                elif method == "changelog_last_serial":
                    result = idx.serial
                elif method == "changelog_since_serial":
                    since = params[0]
                    if not isinstance(since, int | float | str | bytes):
                        raise TypeError(f"serial must be a number, not {type(since).__name__}")
                    result = idx.changelog_since(int(since), self.state.switches.changelog_cap)
                else:
                    raise xmlrpc.client.Fault(
                        -32601, f"method {method!r} is deprecated or disabled"
                    )
            body = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
        except xmlrpc.client.Fault as f:
            body = xmlrpc.client.dumps(f, methodresponse=True)
        except Exception as exc:  # malformed request
            body = xmlrpc.client.dumps(xmlrpc.client.Fault(-32700, str(exc)), methodresponse=True)
        self._send(200, body.encode(), "text/xml", serial=idx.serial, fault=fault)


#: :attr:`FakeFile.overrides` keys that the PEP 691 page serves too (besides the
#: filename and URL, which it always takes from them).
_PAGE_OVERRIDES = frozenset({"upload-time", "size", "hashes", "requires-python"})


def _byte_range(header: str, size: int) -> tuple[int, int] | str | None:
    """One ``Range`` as (first, last) byte, inclusive; ``"unsatisfiable"`` (416); ``None``
    for a header that is not one byte range (the whole file is sent, as RFC 9110 allows)."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if m is None or not (m.group(1) or m.group(2)):
        return None
    if not m.group(1):  # a suffix: the last N bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n and size else "unsatisfiable"
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


def _content_fault(
    fault: Fault,
    serial: int | None,
    status: int,
    body: bytes,
    ctype: str,
    headers: dict[str, str] | None,
) -> tuple[int | None, int, bytes, str, dict[str, str] | None]:
    """The answer as the faults that alter its content make it: a lagging serial, a
    replaced body, a gzip body."""
    if fault.kind == "stale" and serial is not None:
        serial -= fault.lag
    if fault.kind == "body":
        status, body, ctype = 200, fault.body, fault.ctype or ctype
    if fault.kind == "gzip":
        body = fault.body if fault.encoded else gzip.compress(fault.body or body, compresslevel=9)
        headers = {**(headers or {}), "Content-Encoding": "gzip"}
    return serial, status, body, ctype, headers
