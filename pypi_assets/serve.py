"""``pypi-assets serve``: the mirror over HTTP, usable as pip's ``--index-url``.

It serves the static simple index and JSON API that the ``simple_index`` asset (or ``sync``)
writes under the web root, with PEP 691 content negotiation, ``X-PyPI-Last-Serial`` headers
and Warehouse's redirects to normalised names, and the files from the blob store (a local
directory or S3), with HTTP ``Range`` so that mirrors of this mirror can resume. With
``--lazy`` a selected file that is not stored yet is fetched from the upstream on its first
request, verified, stored and then served (Pulp's "on demand"), and so is a selected file's
PEP 740 provenance object; only keys that the published snapshot lists as selected are ever
fetched, each once.

With the database, it also answers the index as of any published snapshot
(``/snapshot/<serial or RFC 3339 time>/simple/…`` and the JSON API, rendered on request by the
index writer's renderer from that snapshot), and the change feed (``/changes?since=SERIAL``,
JSON lines).

The app is a plain ASGI callable run by uvicorn: keep-alive, idle connections closed after
``keepalive_timeout``, connections whose request headers are not complete after
``header_timeout`` closed too (slow-header attacks), a real listen backlog, and a graceful
stop on SIGTERM/SIGINT (the listener closes, responses in flight complete). Filesystem and
object-store calls run on a thread pool of the server's own, so a slow disk or bucket never
stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import signal
import socket
import stat
import threading
from collections.abc import Awaitable, Callable, Generator, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import parse_qs, quote

import uvicorn
from packaging.utils import canonicalize_name

from .pypi import ClientConfig, PyPIClient, UnsafeValue
from .pypi.names import is_valid_project_name
from .pypi.provenance import INTEGRITY_CT
from .pypi.simple import HTML_CT, JSON_CT, IndexOptions, negotiate, render_root, serial_comment
from .store.blobs import (
    BlobStore,
    S3BlobStore,
    check_key,
    file_key_of,
    is_metadata_key,
    is_provenance_key,
    provenance_parts,
)
from .store.readers import (
    SelectedBlob,
    SnapshotIndex,
    SnapshotNotFound,
    SnapshotPool,
    SnapshotReader,
    SnapshotUnavailable,
    parse_point,
)
from .sync.files import ProvenanceRow, fetch_blob, fetch_provenance
from .sync.index import QUARANTINED, project_pages

__all__ = ["MirrorServer", "ServeError", "negotiate", "parse_range", "serve"]

log = logging.getLogger(__name__)

_PACKAGE = re.compile(r"^/(packages/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}/[^/]+)$")
_INTEGRITY = re.compile(r"^/(integrity/[^/]+/[^/]+/[^/]+/provenance)$")
_SIMPLE_PROJECT = re.compile(r"^/simple/([^/]+)/?$")
_JSON_API = re.compile(r"^/pypi/([^/]+)/(?:([^/]+)/)?json/?$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SNAPSHOT = re.compile(r"^/snapshot/([^/]+)(/.*)?$")
_DIGITS = re.compile(r"^[0-9]{1,18}$")
#: the change feed's page size: by default, and at most (``/changes?limit=``)
CHANGES_LIMIT = 1000
CHANGES_MAX = 10_000
NDJSON_CT = "application/x-ndjson"
_MAX_PATH = 4096  # longer request paths are refused with 414 before any lookup
_INLINE = 256 * 1024  # bodies up to this size are read in one go, larger ones streamed
_CHUNK = 256 * 1024
_IMMUTABLE = "max-age=365000000, immutable"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ServeError(Exception):
    """The server cannot start (e.g. the port is taken); the message is one line."""


def parse_range(value: str | None, size: int) -> tuple[int, int] | bool | None:
    """One ``Range: bytes=…`` against a body of ``size`` bytes (RFC 9110 14.1.2).

    ``(start, end)`` (end exclusive) for a satisfiable single range, ``False`` when it is
    unsatisfiable (416), ``None`` when there is no usable range (absent, malformed or
    several ranges: the whole body is sent, as the RFC allows)."""
    if not value:
        return None
    m = _RANGE.match(value.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if first:
        start = int(first)
        end = int(last) + 1 if last else size
        if last and end <= start:
            return None  # bytes=5-2 is invalid syntax: ignore it
        if start >= size:
            return False
        return start, min(end, size)
    suffix = int(last)
    if suffix == 0 or size == 0:
        return False
    return max(size - suffix, 0), size


# ------------------------------------------------------------------ bodies
class _Body:
    """A response body read in chunks on the server's thread pool."""

    def __init__(self, length: int) -> None:
        self.remaining = length

    def read(self) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        return None


class _FileBody(_Body):
    def __init__(self, f: IO[bytes], start: int, length: int) -> None:
        super().__init__(length)
        self.f = f
        if start:
            f.seek(start)

    def read(self) -> bytes:
        if self.remaining <= 0:
            return b""
        chunk = self.f.read(min(_CHUNK, self.remaining))
        self.remaining -= len(chunk)
        return chunk

    def close(self) -> None:
        self.f.close()


class _IterBody(_Body):
    """A store's chunk iterator; ``skip`` bytes are dropped first (a range on a store
    that cannot read one)."""

    def __init__(self, chunks: Iterator[bytes], skip: int, length: int) -> None:
        super().__init__(length)
        self.chunks = chunks
        self.skip = skip

    def read(self) -> bytes:
        while self.remaining > 0:
            chunk = next(self.chunks, b"")
            if not chunk:
                return b""
            if self.skip:
                drop = min(self.skip, len(chunk))
                chunk, self.skip = chunk[drop:], self.skip - drop
                if not chunk:
                    continue
            chunk = chunk[: self.remaining]
            self.remaining -= len(chunk)
            return chunk
        return b""

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


def _open_blob(blobs: BlobStore, key: str, start: int, end: int, size: int) -> _Body:
    """Open bytes ``start:end`` of a blob before any header is sent (a blob that vanished
    is still a 404, not a cut-off 200)."""
    local = blobs.local_path(key)
    if local is not None:
        return _FileBody(local.open("rb"), start, end - start)
    if isinstance(blobs, S3BlobStore) and (start, end) != (0, size):
        import obstore

        got = obstore.get(blobs.store, check_key(key), options={"range": (start, end)})
        return _IterBody((bytes(c) for c in got.stream(min_chunk_size=_CHUNK)), 0, end - start)
    return _IterBody(blobs.read(key), start, end - start)


@dataclass
class _Reply:
    status: int
    headers: dict[str, str]
    body: bytes | _Body = b""

    @property
    def length(self) -> int:
        return len(self.body) if isinstance(self.body, bytes) else self.body.remaining


def _reply(status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, {"Content-Type": ctype, **(extra or {})}, body)


def _error(status: int, message: str, extra: dict[str, str] | None = None) -> _Reply:
    return _reply(status, json.dumps({"message": message}).encode(), "application/json", extra)


def _redirect(location: str) -> _Reply:
    return _reply(301, b"", "text/plain", {"Location": location})


def _html_serial(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(f.tell() - 64, 0))
            tail = f.read()
    except OSError:
        return {}
    serial = serial_comment(tail)
    return {"X-PyPI-Last-Serial": serial} if serial else {}


def _file_reply(path: Path, ctype: str, extra: dict[str, str]) -> _Reply | None:
    """A whole file, read now when small, else streamed; ``None`` if it is not a file."""
    try:
        f = path.open("rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    try:
        size = _fsize(f)
        if size <= _INLINE:
            with f:
                return _reply(200, f.read(), ctype, extra)
        return _Reply(200, {"Content-Type": ctype, **extra}, _FileBody(f, 0, size))
    except BaseException:
        f.close()
        raise


def _fsize(f: IO[bytes]) -> int:
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "not a file")
    return st.st_size


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (or the response is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass


# ------------------------------------------------------------------ the server
class _Uvicorn(uvicorn.Server):
    """uvicorn's server, with SIGTERM/SIGINT handled as a plain graceful stop: uvicorn's own
    handler re-raises the signal after shutting down, which would kill the process with it
    instead of letting ``serve`` return (and the CLI exit 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(sig: int, frame: FrameType | None) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: do not wait for slow clients
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _protocol_class(header_timeout: float) -> type[asyncio.Protocol]:  # noqa: C901 (a class factory: mccabe adds up its methods)
    """uvicorn's HTTP protocol, with two timers uvicorn lacks:

    - the idle timer armed from the moment a connection is accepted too (uvicorn arms it
      only after a response): a client that connects and sends nothing is closed after the
      keep-alive timeout as well;
    - a header timer (``header_timeout``), armed when the first bytes of a request arrive
      and cancelled once its headers are complete: uvicorn cancels the idle timer on any
      data, so a client that sends part of a request and then nothing (a slow-header
      attack) would otherwise hold its connection, and a file descriptor, for ever. It
      never runs while a response is in flight, so a slow download is not cut."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - httptools is optional
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class Protocol(Base):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            if self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            if self._header_timer is None and (before is None or before.response_complete):
                # between requests: these bytes start the next one's headers
                self._header_timer = self.loop.call_later(header_timeout, self._header_expired)
            super().data_received(data)
            if self.cycle is not before:  # a request's headers are complete
                self._cancel_header_timer()

        def _header_expired(self) -> None:
            self._header_timer = None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False  # let the response in flight finish, then close
            elif not self.transport.is_closing():
                self.transport.close()

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

    return Protocol


@dataclass
class MirrorServer:
    web: Path
    blobs: BlobStore
    db: Path | None = None  # for --lazy: the published snapshot says what may be fetched
    lazy: bool = False
    client_config: ClientConfig | None = None
    host: str = "127.0.0.1"
    port: int = 0
    keepalive_timeout: float = 5.0  # idle keep-alive connections are closed after this
    header_timeout: float = 10.0  # a request's headers must be complete within this
    shutdown_timeout: float | None = 30.0  # graceful stop: wait this long for responses
    backlog: int = 2048
    threads: int = 32  # the pool for filesystem, DuckDB and object-store calls
    fetched: list[str] = field(default_factory=list)  # keys fetched lazily, for operators
    _sock: socket.socket | None = None
    _server: _Uvicorn | None = None
    _thread: threading.Thread | None = None
    _pool: ThreadPoolExecutor | None = None
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _reader: SnapshotReader | None = None  # the published snapshot, for --lazy
    _serials: dict[Path, tuple[int, dict[str, str]]] = field(default_factory=dict)
    _statuses: dict[Path, tuple[int, bool]] = field(default_factory=dict)  # _quarantined
    #: how the pages of ``/snapshot/<point>/`` are rendered (the config's index options)
    options: IndexOptions = field(default_factory=IndexOptions)
    #: the published snapshots ``/snapshot/`` and ``/changes`` answer from (needs ``db``)
    snapshot_cache: int = 8
    _snaps: SnapshotPool | None = None

    def __post_init__(self) -> None:
        if self.lazy and (self.db is None or self.client_config is None):
            raise ValueError("lazy mode needs the database and an upstream")
        for name in ("keepalive_timeout", "header_timeout"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a finite positive number of seconds")
        if self.shutdown_timeout is not None and not 0 <= self.shutdown_timeout < float("inf"):
            raise ValueError("shutdown_timeout must be a finite number of seconds, 0 or more")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")

    # -------------------------------------------------------------- lifecycle
    def bind(self) -> socket.socket:
        """Listen on ``host:port`` (port 0: any free one). Raises :class:`ServeError`."""
        if self._sock is not None:
            return self._sock
        where = f"{self.host}:{self.port}"
        try:
            infos = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, kind, proto, _name, addr = infos[0]
            sock = socket.socket(family, kind, proto)
        except (OSError, IndexError) as exc:
            raise ServeError(f"cannot listen on {where}: {_reason(exc)}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(self.backlog)
        except OSError as exc:
            sock.close()
            raise ServeError(f"cannot listen on {where}: {_reason(exc)}") from exc
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        return sock

    def _uvicorn(self) -> _Uvicorn:
        config = uvicorn.Config(
            self,
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            ws="none",
            http=_protocol_class(self.header_timeout),
            backlog=self.backlog,
            # a float works (uvicorn hands it to loop.call_later); sub-second in tests
            timeout_keep_alive=self.keepalive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=self.shutdown_timeout,  # type: ignore[arg-type]
            headers=[("Server", "pypi-assets")],
        )
        self._server = _Uvicorn(config)
        return self._server

    async def _run(self, server: _Uvicorn, sock: socket.socket) -> None:
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="serve")
        try:
            await server.serve(sockets=[sock])
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            with self._guard:
                if self._reader is not None:
                    self._reader.close()
                if self._snaps is not None:
                    self._snaps.close()

    def serve_forever(self) -> None:
        """Serve in this thread until SIGTERM/SIGINT (or :meth:`stop`), then stop
        gracefully: no new connections, responses in flight complete."""
        server, sock = self._uvicorn(), self.bind()
        try:
            with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                runner.run(self._run(server, sock))
        finally:
            sock.close()
            self._sock = None

    def start(self) -> MirrorServer:
        """Serve from a background thread (tests, notebooks); returns once accepting."""
        self.bind()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True, name="serve")
        self._thread.start()
        while self._thread.is_alive() and not (self._server and self._server.started):
            threading.Event().wait(0.01)
        if not self._thread.is_alive():
            self.stop()
            raise ServeError(f"the server on {self.host}:{self.port} stopped at start-up")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -------------------------------------------------------------- ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        loop = asyncio.get_running_loop()
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            reply = _error(405, "Method Not Allowed", {"Allow": "GET, HEAD"})
        else:
            reply = await self._answer(loop, scope)
        headers = [(b"content-length", str(reply.length).encode())]
        headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        body = reply.body
        if isinstance(body, bytes):
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
            return
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            while method != "HEAD" and body.remaining > 0 and not gone.done():
                chunk = await loop.run_in_executor(self._pool, body.read)
                if not chunk:  # the store had fewer bytes than it said: cut the connection
                    raise OSError(errno.EIO, "blob shorter than its size")
                last = body.remaining <= 0
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if method == "HEAD":
                await send({"type": "http.response.body", "body": b""})
        finally:
            gone.cancel()
            await loop.run_in_executor(self._pool, body.close)

    async def _answer(self, loop: asyncio.AbstractEventLoop, scope: Scope) -> _Reply:
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if len(path) > _MAX_PATH:
            return _error(414, "URI Too Long")
        try:
            m = _PACKAGE.match(path) or _INTEGRITY.match(path)
            if m:
                return await self._package(loop, m.group(1), headers)
            m = _SNAPSHOT.match(path)
            if m:
                return await self._snapshot(loop, m.group(1), m.group(2) or "", query, headers)
            return await loop.run_in_executor(self._pool, self._route, path, query, headers)
        except SnapshotNotFound as exc:
            return _error(404, str(exc).splitlines()[0] if str(exc) else "Not Found")
        except SnapshotUnavailable as exc:  # the lake's catalog failed: try again later
            log.warning("%s: %s", path, exc)
            return _error(503, str(exc).splitlines()[0], {"Retry-After": "1"})
        except UnsafeValue as exc:
            return _error(404, str(exc))
        except (OSError, ValueError) as exc:  # ENAMETOOLONG, EACCES, a NUL byte, ...
            log.debug("%s: %s", path, exc)
            return _error(404, "Not Found")

    # -------------------------------------------------------------- pages
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

    def _quarantined(self, project: str) -> bool:
        """Whether the project's written page says PEP 792 ``quarantined`` (then its
        provenance objects are hidden, as its files are), read once per version of the page."""
        folder = self.web / "simple" / project
        path = folder / "index.v1_json"
        if not path.is_file():
            path = folder / "index.v1_html"
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return False
        with self._guard:
            hit = self._statuses.get(path)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        try:
            quarantined = _page_status(path) == "quarantined"
        except (OSError, ValueError):
            return False
        with self._guard:
            if len(self._statuses) > 10_000:
                self._statuses.clear()
            self._statuses[path] = (mtime, quarantined)
        return quarantined

    def _route(self, path: str, query_string: str, headers: dict[str, str]) -> _Reply:
        query = parse_qs(query_string)
        web = self.web
        if path in ("/simple", "/simple/"):
            if path == "/simple":
                return _redirect("/simple/")
            return self._page(web / "simple", query, headers)
        m = _SIMPLE_PROJECT.match(path)
        if m:
            name = m.group(1)
            if not is_valid_project_name(name):
                return _error(404, "Not Found")
            norm = canonicalize_name(name)
            if name != norm or not path.endswith("/"):
                return _redirect(f"/simple/{norm}/" + (f"?{query_string}" if query_string else ""))
            return self._page(web / "simple" / norm, query, headers)
        m = _JSON_API.match(path)
        if m:
            return self._json_api(m.group(1), m.group(2))
        if path == "/changes":
            return self._changes(query)
        return _error(404, "Not Found")

    def _page(self, folder: Path, query: dict[str, list[str]], headers: dict[str, str]) -> _Reply:
        fmt = query.get("format")
        kind = negotiate(headers.get("accept", ""), fmt[0] if fmt else None)
        json_path = folder / "index.v1_json"
        target = json_path if kind == "json" else folder / "index.v1_html"
        if not target.is_file():  # simple-format = HTML or JSON: serve what there is
            kind = "html" if kind == "json" else "json"
            target = json_path if kind == "json" else folder / "index.v1_html"
        extra = {"Vary": "Accept", **self.serial_header(json_path, "meta")}
        if "X-PyPI-Last-Serial" not in extra:
            extra.update(_html_serial(folder / "index.v1_html"))
        reply = _file_reply(target, JSON_CT if kind == "json" else HTML_CT, extra)
        return reply or _error(404, "Not Found")

    def _json_api(self, name: str, version: str | None) -> _Reply:
        if not is_valid_project_name(name):
            return _error(404, "Not Found")
        norm = canonicalize_name(name)
        if name != norm:
            tail = f"{version}/json" if version else "json"
            return _redirect(f"/pypi/{norm}/{tail}")
        if version is not None and (
            version in ("", ".", "..") or "/" in version or "\\" in version or "\0" in version
        ):
            return _error(404, "Not Found")
        base = self.web / "pypi" / norm
        target = base / version / "json" if version else base / "json"
        reply = _file_reply(target, "application/json", self.serial_header(target, "last_serial"))
        return reply or _error(404, "Not Found")

    # -------------------------------------------------------------- snapshots and changes
    def snapshots(self) -> SnapshotPool:
        """The published snapshots (opened on first use). Raises :class:`SnapshotNotFound`
        when the server has no database."""
        if self.db is None:
            raise SnapshotNotFound("this server has no database: no snapshots to serve")
        with self._guard:
            if self._snaps is None:
                self._snaps = SnapshotPool(self.db, size=self.snapshot_cache)
            return self._snaps

    async def _snapshot(
        self,
        loop: asyncio.AbstractEventLoop,
        text: str,
        rest: str,
        query: str,
        headers: dict[str, str],
    ) -> _Reply:
        """``/snapshot/<serial or RFC 3339 time>/…``: the index as it was then, and the
        blobs its pages link to (relative links land under the same prefix)."""
        try:
            point = parse_point(text)
        except ValueError as exc:
            return _error(400, str(exc))
        m = _PACKAGE.match(rest) or _INTEGRITY.match(rest)
        if m:
            return await self._package(loop, m.group(1), headers)
        args = (point, f"/snapshot/{text}", rest, query, headers)
        return await loop.run_in_executor(self._pool, self._snapshot_route, *args)

    def _snapshot_route(
        self,
        point: int | datetime,
        prefix: str,
        rest: str,
        query_string: str,
        headers: dict[str, str],
    ) -> _Reply:
        query = parse_qs(query_string)
        if rest in ("/simple", "/simple/"):
            if rest == "/simple":
                return _redirect(f"{prefix}/simple/")
            snap = self.snapshots().get(point)
            root = render_root(snap.root_projects(QUARANTINED), snap.serial, self.options.formats)
            return _negotiated(root, "simple", query, headers, _serial_headers(snap, snap.serial))
        m = _SIMPLE_PROJECT.match(rest)
        if m:
            name = m.group(1)
            if not is_valid_project_name(name):
                return _error(404, "Not Found")
            norm = canonicalize_name(name)
            if name != norm or not rest.endswith("/"):
                tail = f"?{query_string}" if query_string else ""
                return _redirect(f"{prefix}/simple/{norm}/{tail}")
            snap, pages, serial = self._snapshot_pages(point, norm)
            if pages is None:
                return _error(404, "Not Found")
            extra = _serial_headers(snap, serial)
            return _negotiated(pages, f"simple/{norm}", query, headers, extra)
        m = _JSON_API.match(rest)
        if m:
            return self._snapshot_json(point, prefix, m.group(1), m.group(2))
        return _error(404, "Not Found")

    def _snapshot_pages(
        self, point: int | datetime, norm: str
    ) -> tuple[SnapshotIndex, dict[str, bytes] | None, int]:
        """A project's pages at ``point`` (``None``: not in that snapshot), and its serial."""
        snap = self.snapshots().get(point)
        project = snap.project(norm)
        if project is None:
            return snap, None, 0
        return snap, project_pages(snap, project, self.options, self.lazy), project.serial

    def _snapshot_json(
        self, point: int | datetime, prefix: str, name: str, version: str | None
    ) -> _Reply:
        if not is_valid_project_name(name) or (version is not None and not _safe_segment(version)):
            return _error(404, "Not Found")
        norm = canonicalize_name(name)
        if name != norm:
            tail = f"{version}/json" if version else "json"
            return _redirect(f"{prefix}/pypi/{norm}/{tail}")
        snap, pages, serial = self._snapshot_pages(point, norm)
        rel = f"pypi/{norm}/{quote(version, safe='')}/json" if version else f"pypi/{norm}/json"
        body = (pages or {}).get(rel)
        if body is None:  # not there then, quarantined then (no JSON API), or no such version
            return _error(404, "Not Found")
        return _reply(200, body, "application/json", _serial_headers(snap, serial))

    def _changes(self, query: dict[str, list[str]]) -> _Reply:
        """``/changes?since=SERIAL[&limit=N]``: the change feed as JSON lines, oldest first,
        from the newest snapshot; ``X-Next-Since`` says where the next page starts, and a
        ``Link: rel="next"`` is sent while more follow."""
        since, limit = query.get("since", [""]), query.get("limit", [str(CHANGES_LIMIT)])
        if len(since) != 1 or not _DIGITS.match(since[0]):
            return _error(400, "since must be one serial (digits): /changes?since=SERIAL")
        if len(limit) != 1 or not _DIGITS.match(limit[0]):
            return _error(400, f"limit must be one number from 1 to {CHANGES_MAX}")
        start, size = int(since[0]), int(limit[0])
        if not 1 <= size <= CHANGES_MAX:
            return _error(400, f"limit must be one number from 1 to {CHANGES_MAX}")
        snap = self.snapshots().get(None)
        rows, more = snap.changes(start, size)
        lines = [
            json.dumps(
                {
                    "serial": serial,
                    "time": when.isoformat() if when is not None else None,
                    "project": project,
                    "action": action,
                    "version": version,
                    "filename": filename,
                }
            )
            + "\n"
            for serial, when, project, action, version, filename in rows
        ]
        after = rows[-1][0] if rows else start
        extra = {**_serial_headers(snap, snap.serial), "X-Next-Since": str(after)}
        if more:
            extra["Link"] = f'</changes?since={after}&limit={size}>; rel="next"'
        return _reply(200, "".join(lines).encode(), NDJSON_CT, extra)

    # -------------------------------------------------------------- files
    async def _package(
        self, loop: asyncio.AbstractEventLoop, key: str, headers: dict[str, str]
    ) -> _Reply:
        check_key(key)
        blobs = self.blobs
        if is_provenance_key(key) and await loop.run_in_executor(
            self._pool, self._quarantined, provenance_parts(key)[0]
        ):
            return _error(404, "Not Found")  # hidden with its project's files
        size = await loop.run_in_executor(self._pool, blobs.size, key)
        if size is None and self.lazy:
            try:
                if await self._fetch(loop, key):
                    size = await loop.run_in_executor(self._pool, blobs.size, key)
            except Exception as exc:
                log.warning("on-demand fetch of %s failed: %s", key, exc)
                return _error(502, f"upstream fetch failed: {exc}")
        if size is None:
            return _error(404, "Not Found")
        extra = {
            "Content-Type": _content_type(key),
            "Cache-Control": _IMMUTABLE,
            "Accept-Ranges": "bytes",
        }
        # If-Range names a validator; we send none, so it never matches: whole body
        wanted = None if "if-range" in headers else parse_range(headers.get("range"), size)
        if wanted is False:
            return _error(416, "Range Not Satisfiable", {"Content-Range": f"bytes */{size}"})
        start, end = wanted if isinstance(wanted, tuple) else (0, size)
        status = 200
        if isinstance(wanted, tuple):
            status = 206
            extra["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        try:
            body = await loop.run_in_executor(self._pool, _open_blob, blobs, key, start, end, size)
        except FileNotFoundError:
            return _error(404, "Not Found")
        return _Reply(status, extra, body)

    def _selected(self, key: str) -> tuple[str, str, str, str, str, int | None] | None:
        """``(project, filename, key, url, sha256, size)`` if the snapshot selects ``key``."""
        assert self.db is not None
        with self._guard:
            if self._reader is None:
                self._reader = SnapshotReader(self.db)
            reader = self._reader
        meta = is_metadata_key(key)
        row: SelectedBlob | None = reader.selected_blob(file_key_of(key))
        if row is None:
            return None
        project, filename, url, sha, size, meta_sha = row
        if meta:
            if not meta_sha:
                return None
            return (project, filename + ".metadata", key, url + ".metadata", meta_sha, None)
        return (project, filename, key, url, sha, size)

    def _selected_provenance(self, key: str) -> ProvenanceRow | None:
        """``(project, version, filename, provenance URL)`` if the snapshot selects the file
        whose provenance object ``key`` names, and upstream has one."""
        assert self.db is not None
        with self._guard:
            if self._reader is None:
                self._reader = SnapshotReader(self.db)
            reader = self._reader
        project, version, filename = provenance_parts(key)
        url = reader.selected_provenance(project, version, filename)
        return None if url is None else (project, version, filename, url)

    async def _fetch(self, loop: asyncio.AbstractEventLoop, key: str) -> bool:
        """Fetch a selected blob (or provenance object) on demand, checked as a sync checks
        it; concurrent requests for one key share the fetch (the event loop is the only one
        touching ``_locks``)."""
        provenance = is_provenance_key(key)
        row = await loop.run_in_executor(
            self._pool, self._selected_provenance if provenance else self._selected, key
        )
        if row is None:
            return False
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if await loop.run_in_executor(self._pool, self.blobs.size, key) is not None:
                return True
            assert self.client_config is not None
            async with PyPIClient(self.client_config) as client:
                if len(row) == 4:
                    await fetch_provenance(client, self.blobs, row)
                else:
                    await fetch_blob(client, self.blobs, row, executor=self._pool)
            self.fetched.append(key)
            log.info("fetched on demand: %s", key)
        self._locks.pop(key, None)
        return True


_STATUS_META = re.compile(rb'<meta name="pypi:project-status" content="([a-z]+)"')


def _page_status(path: Path) -> str | None:
    """PEP 792's status of a written project page (JSON or HTML)."""
    data = path.read_bytes()
    if path.name == "index.v1_json":
        status = json.loads(data).get("project-status")
        value = status.get("status") if isinstance(status, dict) else None
        return value if isinstance(value, str) else None
    m = _STATUS_META.search(data)
    return m.group(1).decode() if m else None


def _safe_segment(version: str) -> bool:
    """A version as one path segment: never empty, ``.``, ``..``, a slash or a NUL."""
    return not (version in ("", ".", "..") or "/" in version or "\\" in version or "\0" in version)


def _serial_headers(snap: SnapshotIndex, serial: int) -> dict[str, str]:
    """``X-PyPI-Last-Serial`` (the page's serial) and the snapshot it was read from."""
    return {"X-PyPI-Last-Serial": str(serial), "X-PyPI-Assets-Snapshot": str(snap.serial)}


def _negotiated(
    pages: dict[str, bytes],
    base: str,
    query: dict[str, list[str]],
    headers: dict[str, str],
    extra: dict[str, str],
) -> _Reply:
    """The page of ``pages`` under ``base`` that PEP 691 negotiation picks (the other format
    when the config renders only one), as :meth:`MirrorServer._page` serves written ones."""
    fmt = query.get("format")
    kind = negotiate(headers.get("accept", ""), fmt[0] if fmt else None)
    json_rel, html_rel = f"{base}/index.v1_json", f"{base}/index.v1_html"
    if (json_rel if kind == "json" else html_rel) not in pages:
        kind = "html" if kind == "json" else "json"
    body = pages.get(json_rel if kind == "json" else html_rel)
    if body is None:
        return _error(404, "Not Found")
    ctype = JSON_CT if kind == "json" else HTML_CT
    return _reply(200, body, ctype, {"Vary": "Accept", **extra})


def _content_type(key: str) -> str:
    if is_provenance_key(key):
        return INTEGRITY_CT
    return "text/plain" if is_metadata_key(key) else "application/octet-stream"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def serve(server: MirrorServer, announce: Callable[[str], None] = print) -> None:
    """Bind, announce, serve until SIGTERM/SIGINT. Raises :class:`ServeError` before
    announcing anything if the address cannot be listened on."""
    server.bind()
    announce(f"pypi-assets mirror on {server.url}/simple/ (lazy={server.lazy})")
    server.serve_forever()
