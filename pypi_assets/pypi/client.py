"""A polite async client for Warehouse's mirror-facing protocols.

No Dagster, no DuckDB, no filesystem, no module-level state: a :class:`PyPIClient` holds
everything it needs, and :class:`ClientConfig` is a plain value.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import math
import os
import random
import re
import ssl
import time
import zlib
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from .._version import __version__
from .errors import (
    DeadlineExceeded,
    InvalidResponse,
    LimitExceeded,
    NotFound,
    RateLimited,
    SimpleParseError,
    StaleResponse,
    UnsafeValue,
    UpstreamError,
    XmlRpcError,
    XmlRpcUnavailable,
)
from .limits import (
    as_serial,
    check_json_tree,
    check_serial,
    loads_json,
)
from .metadata import decode_draining
from .names import canonical, check_project_name, check_url, host_key
from .records import UpstreamListing
from .simple import (
    ACCEPT,
    JSON_CT,
    SimpleProjectPage,
    loads_root_json,
    parse_project_page_html,
    parse_project_page_json,
    parse_root_html,
    parse_root_json,
)
from .sources import OwnMetadataState
from .xmlrpc import DEFAULT_RATE_WAIT, dumps_call, loads_response, rate_limit_wait

__all__ = [
    "DEFAULT_USER_AGENT",
    "ClientConfig",
    "DeadlineExceeded",
    "InvalidResponse",
    "LimitExceeded",
    "NotFound",
    "PyPIClient",
    "RequestStats",
    "StaleResponse",
    "UpstreamError",
]

DEFAULT_USER_AGENT = f"pypi-assets/{__version__} (+https://github.com/pypi-assets/pypi-assets)"
MAX_WORKERS = 10
#: An entity tag as RFC 9110 has it (weak or strong), short enough to store and send back.
_ETAG = re.compile(r'(W/)?"[\x21\x23-\x7e\x80-\xff]{0,200}"')
_RETRY_STATUS = frozenset({500, 502, 503, 504, 520, 521, 522, 523, 524})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: XML-RPC answers the client handles itself: a rate limit, and an upstream without XML-RPC.
_NO_XMLRPC = frozenset({404, 405, 501})
_XMLRPC_OK = frozenset({200, 429}) | _NO_XMLRPC
#: Rate-limited answers in a row after which one XML-RPC call gives up.
MAX_RATE_WAITS = 20
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    upstream: str = "https://pypi.org"
    concurrency: int = 3
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # between two reads; a trickle defeats it, total_timeout not
    #: One request's overall deadline, connect to last byte, its retries and waits included
    #: (bandersnatch's ``global-timeout``, its aiohttp ``ClientTimeout(total=...)``).
    total_timeout: float = 600.0
    #: The run's bound, counted from the client's creation (``[pypi_assets] run_timeout``): once
    #: passed, requests in flight are cut and new ones refused, and leaving the client's
    #: ``async with`` block raises :class:`DeadlineExceeded`. ``None``: unbounded.
    run_timeout: float | None = None
    retries: int = 3  # attempts after the first
    backoff: float = 1.0  # seconds, doubled per attempt, with jitter
    max_retry_after: float = 300.0
    stale_delays: tuple[float, ...] = (1.0, 2.0)  # bandersnatch: 3 attempts, 1 s then 2 s apart
    file_hosts: tuple[str, ...] = ()  # extra hosts file URLs may point at
    user_agent: str = DEFAULT_USER_AGENT
    max_body: int = 256 * 1024 * 1024  # decompressed bytes of one response held in memory
    #: A gated request's body over this many bytes waits until no other large gated body is
    #: held (see :meth:`PyPIClient.release_body`); smaller bodies keep their concurrency.
    large_body: int = 1024 * 1024
    max_versions: int = 20_000  # releases of one project
    max_files_per_release: int = 2_000
    changelog_page: int = 50_000  # Warehouse caps changelog_since_serial replies at this
    #: compressed bytes of an sdist streamed while looking for its PKG-INFO
    max_pkg_info_scan: int = 16 * 1024 * 1024
    #: XML-RPC calls this client makes per ``xmlrpc_window`` seconds, at most (PyPI allows
    #: 3,600 an hour per client; ``[pypi_assets] xmlrpc_calls_per_hour``); ``None``: no
    #: budget. A call over it waits (as for upstream's own limit) or raises RateLimited.
    xmlrpc_budget: int | None = 600
    xmlrpc_window: float = 3600.0

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_WORKERS:
            raise ValueError(f"concurrency must be between 1 and {MAX_WORKERS}")
        for key in (
            "max_body",
            "max_versions",
            "max_files_per_release",
            "total_timeout",
            "large_body",
            "xmlrpc_window",
        ):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be positive")
        if self.xmlrpc_budget is not None and self.xmlrpc_budget <= 0:
            raise ValueError("xmlrpc_budget must be positive (or None)")
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL, got {self.upstream!r}")

    @property
    def base(self) -> str:
        return self.upstream.rstrip("/")

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """Origins (``host`` or ``host:port``) that URLs may point at: the upstream's own, its
        file host, and ``file_hosts``. Another port on the same host is not allowed."""
        parts = urlsplit(self.upstream)
        hosts = {host_key(parts.scheme, parts.hostname or "", parts.port), *self.file_hosts}
        if parts.hostname in ("pypi.org", "www.pypi.org"):
            hosts.add("files.pythonhosted.org")
        return frozenset(h.lower() for h in hosts if h)

    def with_(self, **changes: Any) -> ClientConfig:
        return replace(self, **changes)


@dataclass
class RequestStats:
    """Requests made per kind, with their summed wall time."""

    count: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    retries: int = 0
    bytes: int = 0
    #: Things upstream sent that were kept with a repair, by kind (``metadata-invalid-utf8``:
    #: core metadata files with bytes that are not UTF-8, kept with U+FFFD in their place).
    repaired: Counter[str] = field(default_factory=Counter)
    #: Rate-limited answers (429, or an XML-RPC fault saying so) and waits for the call
    #: budget, and the seconds waited for them.
    rate_limited: int = 0
    rate_wait_seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.count.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.count),
            "request_seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "total_requests": self.total,
            "retries": self.retries,
            "bytes": self.bytes,
            "repaired": dict(self.repaired),
            "rate_limited": self.rate_limited,
            "rate_wait_seconds": round(self.rate_wait_seconds, 3),
        }


def _retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, cap))


def rate_limit_delay(headers: httpx.Headers, body: bytes | bytearray = b"") -> float:
    """The wait a 429 asks for: its ``Retry-After`` (seconds or an HTTP-date), else
    Warehouse's "Limit may reset in N seconds" in the body, else :data:`DEFAULT_RATE_WAIT`."""
    header = _retry_after(headers.get("Retry-After"), math.inf)
    if header is not None:
        return header
    wait = rate_limit_wait(bytes(body[:4000]).decode("utf-8", "replace"))
    return DEFAULT_RATE_WAIT if wait is None else wait


def ssl_context() -> ssl.SSLContext:
    """The operating system's trust store (plus SSL_CERT_FILE if set), like pip and curl use,
    so a site's own CA (for example a TLS-inspecting proxy) is honoured."""
    ctx = ssl.create_default_context()
    extra = os.environ.get("SSL_CERT_FILE")
    if extra and os.path.exists(extra):
        ctx.load_verify_locations(cafile=extra)
    return ctx


def quote_version(version: str) -> str:
    if not version or len(version) > 128 or any(ord(c) < 32 for c in version) or "/" in version:
        raise UnsafeValue(f"unsafe version string {version!r}")
    return quote(version, safe="")


_UNSET: Any = object()


_INFLATE_STEP = 1 << 20


def _inflate_into(body: bytearray, inflate: Any, raw: bytes | None, cap: int, url: str) -> None:
    """Inflate ``raw`` onto ``body``, 1 MiB at a time, refusing to pass ``cap`` bytes (one
    64 KiB chunk of a bomb inflates to 64 MiB; zlib would build that in blocks and copy).
    ``raw=None`` flushes what the inflater still holds, under the same cap."""
    data = raw
    while data is None or data:
        try:
            if data is None:
                out = inflate.flush()
            else:
                out = inflate.decompress(data, min(cap - len(body) + 1, _INFLATE_STEP))
        except zlib.error as exc:
            raise InvalidResponse(f"{url}: corrupt compressed body ({exc})") from None
        if len(body) + len(out) > cap:
            raise LimitExceeded(
                f"{url}: body larger than max_body_size ({cap} bytes, decompressed)"
            )
        body += out
        if data is None:
            return
        data = inflate.unconsumed_tail
        if not out and data:  # no progress: bytes after the end of the stream
            raise InvalidResponse(f"{url}: corrupt compressed body (trailing bytes)")


async def _first_bytes(resp: httpx.Response, limit: int = 4000) -> bytes:
    """At most ``limit`` bytes of a streamed body (a 429's message), as sent."""
    if resp.is_stream_consumed:
        return resp.content[:limit]
    head = bytearray()
    async for raw in resp.aiter_raw():
        head += raw
        if len(head) >= limit:
            break
    return bytes(head[:limit])


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _inflater(url: str, encoding: str) -> Any:
    """A zlib decompressor for ``Content-Encoding`` (gzip or deflate, as asked for), or
    ``None`` for an identity body."""
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header, detected
    raise InvalidResponse(f"{url}: unsupported Content-Encoding {encoding[:40]!r}")


class _BodyGate:
    """One large body at a time: the task that holds the gate reads its body and parses it,
    then releases the gate; another task's large body waits. Re-entrant for its holder (a
    retried request keeps it)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    async def enter(self) -> None:
        task = asyncio.current_task()
        if task is None or self._owner is task:
            return
        await self._lock.acquire()
        self._owner = task

    def leave(self) -> None:
        if self._owner is not None and self._owner is asyncio.current_task():
            self._owner = None
            self._lock.release()


@dataclass(frozen=True, slots=True)
class _Again:
    """An attempt's outcome that calls for another: why, and the wait (``None``: backoff).
    ``stale``: the answer is older than expected; it waits ``delay`` and does not count."""

    reason: str
    delay: float | None = None
    stale: bool = False
    #: upstream's rate limit (HTTP 429): wait ``delay`` (:meth:`PyPIClient._rate_wait`);
    #: it does not count against ``retries``, at most ``MAX_RATE_WAITS`` times a request
    rate: bool = False


@dataclass(slots=True)
class Fetched:
    status: int
    headers: httpx.Headers
    body: bytes | bytearray
    url: str
    _parsed: Any = _UNSET

    @property
    def headers_serial(self) -> int | None:
        value = self.headers.get("X-PyPI-Last-Serial")
        if value is None:
            return None
        value = value.strip()
        if not value.isdigit() or not value.isascii():
            return None
        return check_serial(
            int(value) if len(value) <= 20 else -1, f"{self.url}: X-PyPI-Last-Serial"
        )

    @property
    def serial(self) -> int | None:
        """``X-PyPI-Last-Serial``; when a cache in between dropped the header, the serial the
        JSON body states (``last_serial`` or ``meta._last-serial``)."""
        if "X-PyPI-Last-Serial" in self.headers:
            return self.headers_serial
        if self._parsed is _UNSET and (
            self.body[:1] != b"{" or "json" not in self.headers.get("content-type", "")
        ):
            return None
        try:
            data = self.json()
        except InvalidResponse:
            return None
        found = data.get("last_serial") if isinstance(data, dict) else None
        if found is None and isinstance(data, dict) and isinstance(data.get("meta"), dict):
            found = data["meta"].get("_last-serial")
        return as_serial(found)

    def json(self, precheck: Callable[[str], None] | None = None) -> Any:
        """The body parsed and range-checked (:func:`check_json_tree`); the body's bytes are
        released once parsed, so a document is never held twice. ``precheck`` sees the text
        first (to refuse it before its objects are built)."""
        if self._parsed is _UNSET:
            # Decode, drop the bytes, then parse: body, text and objects never coexist.
            body, self.body = self.body, b""
            try:
                # A large body is emptied as it is decoded: bytes and text never both whole.
                text = decode_draining(body, json.detect_encoding(body), "surrogatepass")
            except (UnicodeDecodeError, LookupError) as exc:
                raise InvalidResponse(f"{self.url}: invalid JSON ({exc})") from None
            del body
            if precheck is not None:
                precheck(text)
            data = loads_json(text, self.url)
            del text
            self._parsed = check_json_tree(data, self.url)
        return self._parsed


def _fresh(
    got: Fetched, url: str, expected_serial: int | None, stale: Iterator[float]
) -> Fetched | _Again:
    """``got``, unless its serial is below ``expected_serial``: then another attempt after the
    next of the ``stale`` delays, and :class:`StaleResponse` once they are spent."""
    if expected_serial is None:
        return got
    serial = got.serial
    if serial is not None and serial >= expected_serial:
        return got
    delay = next(stale, None)
    if delay is None:
        raise StaleResponse(f"{url}: stale page, serial {serial} < expected {expected_serial}")
    return _Again("stale page", delay, stale=True)


def _listing_from_root_json(got: Fetched, root: str) -> UpstreamListing:
    """The PEP 691 JSON ``/simple/``; its bytes, text and parsed form never coexist."""
    body, got.body = got.body, b""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError) as exc:
        raise SimpleParseError(f"invalid JSON ({exc})") from None
    del body
    data = loads_root_json(text, root)
    del text
    meta_serial, names, serials = parse_root_json(data)
    del data
    serial = got.headers_serial if got.headers_serial is not None else meta_serial
    if serial is None:
        serial = max(serials, default=0)
    return UpstreamListing(serial, names, serials, "simple-json")


class PyPIClient:
    """Use as ``async with PyPIClient(cfg) as client: ...``."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config or ClientConfig()
        self.stats = RequestStats()
        self._sem = asyncio.Semaphore(self.config.concurrency)
        self._gate = _BodyGate()
        self._started = time.monotonic()
        run = self.config.run_timeout
        self._run_deadline = self._started + run if run is not None else float("inf")
        #: URLs refused or cut because the run's bound (``run_timeout``) had passed.
        self.deadline_hits: list[str] = []
        #: Why the upstream has no XML-RPC, once it said so (later calls make no request).
        self.xmlrpc_missing: str | None = None
        #: Where :meth:`last_serial` last took the serial from: ``"changelog"`` (live) or
        #: ``"simple-head"`` (the root's header, which a CDN may cache); ``None`` before.
        self.serial_source: str | None = None
        self._xmlrpc_calls: deque[float] = deque()  # when the budget's calls were made
        self._xmlrpc_lock = asyncio.Lock()
        cfg = self.config
        #: requests go to the transport directly (:meth:`_open`): the client's layers
        #: (auth, cookies, redirects, event hooks) are ones this client does not use, and
        #: cost some 15% of a request's CPU; the client builds each request
        self._transport = transport or httpx.AsyncHTTPTransport(
            verify=ssl_context(),
            limits=httpx.Limits(
                max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency
            ),
            trust_env=False,
        )
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=cfg.connect_timeout,
                read=cfg.read_timeout,
                write=cfg.read_timeout,
                pool=None,
            ),
            headers={"User-Agent": cfg.user_agent},
            follow_redirects=False,
            transport=self._transport,
            trust_env=False,
        )

    async def __aenter__(self) -> PyPIClient:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await self.aclose()
        if exc_type is None and self.deadline_hits:
            first = self.deadline_hits[0]
            raise DeadlineExceeded(
                f"run_timeout of the run ({self.config.run_timeout:g} s) reached: "
                f"{len(self.deadline_hits)} requests cut or not made (first: {first})"
            )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ transport core
    def check_url(self, url: object) -> str:
        """``url`` resolved against the upstream, if it may be requested (an allowed http(s)
        origin, no credentials); else :class:`UnsafeValue`."""
        return check_url(url, self.config.base + "/", self.config.allowed_hosts)

    def _redirect(self, resp: httpx.Response) -> str | None:
        """Where a redirect leads, if it may be followed (only to allowed origins)."""
        if resp.status_code in _REDIRECTS and "location" in resp.headers:
            return self.check_url(str(resp.url.join(resp.headers["location"])))
        return None

    def release_body(self) -> None:
        """Let another large gated body be read: the caller has parsed (and dropped) the
        body of its gated request. A no-op for a task that does not hold the gate."""
        self._gate.leave()

    async def _once(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        gated: bool = False,
    ) -> Fetched:
        """One request, following same-origin redirects, reading the body with a size cap.

        The body is read raw and inflated here, never past ``max_body`` decompressed bytes
        (httpx would inflate a whole network chunk at once: a bomb's 64 KiB become 64 MiB).
        ``gated``: a body over ``large_body`` bytes (announced, or once read that far) is
        read only while holding the client's gate, which the caller gives back with
        :meth:`release_body` once the body is parsed; so one large body of a project, and of
        the run, is held at a time, and its parse does not meet another's.
        """
        cap = self.config.max_body
        large = self.config.large_body if gated and method != "HEAD" else cap + 1
        async with self._open(method, url, headers, content) as (url, resp):
            expected = resp.headers.get("content-length", "")
            if expected.isdigit() and expected.isascii() and int(expected) > cap:
                raise LimitExceeded(f"{url}: body larger than max_body_size ({cap} bytes)")
            if expected.isdigit() and expected.isascii() and int(expected) > large:
                await self._gate.enter()
            inflate = _inflater(url, resp.headers.get("content-encoding", ""))
            body = bytearray()
            chunks: AsyncIterator[bytes]
            if resp.is_stream_consumed:  # a transport that answered with bytes, read
                chunks, inflate = _one_chunk(resp.content), None  # (and decoded) already
            else:
                chunks = resp.aiter_raw()
            async for raw in chunks:
                if method == "HEAD":
                    continue
                if len(body) > large:
                    await self._gate.enter()
                if inflate is None:
                    if len(body) + len(raw) > cap:
                        raise LimitExceeded(f"{url}: body larger than max_body_size ({cap} bytes)")
                    body += raw
                else:
                    _inflate_into(body, inflate, raw, cap, url)
            if inflate is not None and method != "HEAD":
                _inflate_into(body, inflate, None, cap, url)
            self.stats.bytes += len(body)
            return Fetched(resp.status_code, resp.headers, body, str(resp.url))

    @contextlib.asynccontextmanager
    async def _open(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> AsyncIterator[tuple[str, httpx.Response]]:
        """The answer to one request, its body not yet read, and the URL it came from:
        redirects are followed (at most 5) only to allowed origins, a 303 as a GET."""
        for _hop in range(6):
            request = self._http.build_request(method, url, headers=headers, content=content)
            resp = await self._transport.handle_async_request(request)
            resp.request = request
            try:
                target = self._redirect(resp)
                if target is None:
                    yield url, resp
                    return
            finally:
                await resp.aclose()
            url = target
            if resp.status_code == 303:
                method, content = "GET", None
        raise UpstreamError(f"{url}: too many redirects")

    def time_left(self, limit: float, url: str = "") -> float:
        """Seconds an attempt may take: ``limit``, less if the run's bound comes sooner.
        Raises :class:`DeadlineExceeded` once the run's bound has passed."""
        run = self.config.run_timeout
        if run is None:
            return limit
        left = self._run_deadline - time.monotonic()
        if left <= 0:
            self.deadline_hits.append(url)
            raise DeadlineExceeded(f"{url}: run_timeout ({run:g} s) reached, not requested")
        return min(limit, left)

    async def request(
        self,
        kind: str,
        url: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        expected_serial: int | None = None,
        ok: frozenset[int] = frozenset({200}),
        gated: bool = False,
    ) -> Fetched:
        """A request, its body read into memory, under the client's policy (:meth:`_retrying`);
        a response whose ``X-PyPI-Last-Serial`` is below ``expected_serial`` is asked for
        again after each of ``stale_delays`` and then reported stale (:class:`StaleResponse`).

        The whole of it, retries and waits included, has ``total_timeout`` to complete (from
        its first attempt's start); past that it raises :class:`DeadlineExceeded`.
        ``gated``: see :meth:`_once`; the caller must call :meth:`release_body` afterwards
        (in a ``finally``), whatever the outcome.
        """
        url = self.check_url(url)
        headers = {"Accept-Encoding": "gzip, deflate", **(headers or {})}
        stale = iter(self.config.stale_delays)

        async def attempt() -> Fetched | _Again:
            got = await self._once(method, url, headers, content, gated)
            if got.status not in ok:
                return self._judge(url, got.status, got.headers, got.body)
            return _fresh(got, url, expected_serial, stale)

        return await self._retrying(kind, url, attempt, whole=True)

    async def stream_to(
        self,
        kind: str,
        url: str,
        receive: Callable[[httpx.Response, str], Awaitable[bool]],
        *,
        headers: Callable[[], dict[str, str]] = dict,
        ok: frozenset[int] = frozenset({200}),
    ) -> None:
        """GET ``url`` under the client's policy (:meth:`_retrying`), the body streamed to
        ``receive`` rather than held: for each answer whose status is in ``ok``,
        ``receive(response, url)`` (``url``: where it came from, after redirects) reads the
        body as sent (``response.aiter_raw()``; ``Accept-Encoding: identity`` is asked for)
        and returns whether it is complete. A short body is asked for again ("truncated
        body"), as are timeouts, transport errors, 429 and 5xx; ``headers()`` gives each
        attempt's headers, so that a retry can resume where the last one stopped
        (``Range``). Since each attempt may resume, each has ``total_timeout`` of its own.
        What ``receive`` raises, other than a timeout or a transport error, ends the call.
        """
        url = self.check_url(url)

        async def attempt() -> _Again | None:
            sent = {"Accept-Encoding": "identity", **headers()}
            async with self._open("GET", url, sent, None) as (final, resp):
                if resp.status_code not in ok:
                    head = await _first_bytes(resp) if resp.status_code == 429 else b""
                    return self._judge(final, resp.status_code, resp.headers, head)
                return None if await receive(resp, final) else _Again("truncated body")

        await self._retrying(kind, url, attempt, whole=False)

    def _judge(
        self, url: str, status: int, headers: httpx.Headers, body: bytes | bytearray = b""
    ) -> _Again:
        """An answer whose status was not asked for: raise, or say why to try again."""
        if status == 404 or status == 410:
            raise NotFound(f"{url}: {status} Not Found")
        if status == 429:
            return _Again("429 Too Many Requests", rate_limit_delay(headers, body), rate=True)
        if status in _RETRY_STATUS:
            return _Again(f"HTTP {status}")
        raise UpstreamError(f"{url}: unexpected HTTP {status}")

    async def _retrying(
        self,
        kind: str,
        url: str,
        attempt: Callable[[], Awaitable[T | _Again]],
        *,
        whole: bool,
    ) -> T:
        """The client's one retry policy: ``attempt()`` runs under the concurrency cap and a
        deadline until it returns something other than :class:`_Again`. Timeouts, transport
        errors (truncated bodies included) and an :class:`_Again` back off exponentially with
        jitter (429: its ``Retry-After``), at most ``retries`` times; a stale answer waits
        its own delay and does not count. ``whole``: ``total_timeout`` bounds the attempts
        and waits together (from the first attempt's start), else each attempt alone. The
        run's bound (:meth:`time_left`) bounds all. Each attempt made counts under ``kind``.
        """
        cfg = self.config
        tries = rate_waits = 0
        deadline: float | None = None
        while True:
            try:
                async with self._sem:
                    started = time.perf_counter()
                    if whole and deadline is None:
                        deadline = time.monotonic() + cfg.total_timeout
                    limit = cfg.total_timeout if deadline is None else deadline - time.monotonic()
                    budget = self.time_left(limit, url)
                    try:
                        if budget <= 0:
                            raise TimeoutError
                        async with asyncio.timeout(budget):
                            got = await attempt()
                    finally:
                        self._account(kind, started)
            except (httpx.TimeoutException, TimeoutError) as exc:
                again = _Again(f"timeout ({type(exc).__name__})")
                cutoff = min(deadline if deadline is not None else math.inf, self._run_deadline)
                if time.monotonic() >= cutoff - 0.001:
                    self._deadline_passed(url, tries, again.reason)
            except httpx.TransportError as exc:  # includes truncated bodies
                again = _Again(f"transport error ({type(exc).__name__}: {exc})")
            else:
                if not isinstance(got, _Again):
                    return got
                again = got
            if again.stale:
                await self._sleep(again.delay or 0.0, deadline, url)
                self.stats.retries += 1
            elif again.rate:
                rate_waits += 1
                await self._rate_limited(url, again.delay or 0.0, rate_waits, deadline)
            else:
                tries = await self._retry_or_give_up(
                    url, tries, again.reason, again.delay, deadline
                )

    async def _rate_limited(
        self, url: str, seconds: float, waits: int, deadline: float | None
    ) -> None:
        """Upstream's rate limit answered a request (HTTP 429): wait as it asks, within
        :meth:`_rate_wait`'s bounds and the request's ``deadline``; else
        :class:`RateLimited`. Counted in ``stats`` (``rate_limited``, ``rate_wait_seconds``)."""
        self.stats.rate_limited += 1
        if waits > MAX_RATE_WAITS:
            raise RateLimited(f"{url}: still rate limited after {MAX_RATE_WAITS} waits")
        await self._rate_wait(seconds, url, deadline)
        self.stats.retries += 1

    def _deadline_passed(self, url: str, attempt: int, last: str) -> None:
        run = self.config.run_timeout
        if run is not None and time.monotonic() >= self._run_deadline - 0.001:
            self.deadline_hits.append(url)
            raise DeadlineExceeded(f"{url}: cut at the run_timeout of the run ({run:g} s)")
        raise DeadlineExceeded(
            f"{url}: no complete answer within {self.config.total_timeout:g} s "
            f"(global-timeout; {attempt + 1} attempts, last: {last})"
        )

    async def _sleep(self, seconds: float, deadline: float | None, url: str) -> None:
        """Wait before another attempt, unless that would pass the request's deadline."""
        if deadline is not None and time.monotonic() + seconds >= deadline:
            raise DeadlineExceeded(
                f"{url}: no complete answer within {self.config.total_timeout:g} s "
                f"(global-timeout; next attempt due after the deadline)"
            )
        self.time_left(seconds, url)
        await asyncio.sleep(seconds)

    async def _retry_or_give_up(
        self,
        url: str,
        attempt: int,
        last: str,
        delay: float | None,
        deadline: float | None = None,
    ) -> int:
        """After a failed attempt: raise once the retries are spent, else wait (``delay``, or
        exponential backoff with jitter) and return the next attempt's number. A wait that
        would end past ``deadline`` (``time.monotonic()``) raises :class:`DeadlineExceeded`."""
        cfg = self.config
        if attempt >= cfg.retries:
            raise UpstreamError(f"{url}: giving up after {attempt + 1} attempts: {last}")
        if delay is None:
            delay = cfg.backoff * (2**attempt) * (0.5 + random.random() / 2)
        await self._sleep(delay, deadline, url)
        self.stats.retries += 1
        return attempt + 1

    def _account(self, kind: str, started: float) -> None:
        self.stats.count[kind] += 1
        self.stats.seconds[kind] = self.stats.seconds.get(kind, 0.0) + time.perf_counter() - started

    # ------------------------------------------------------------------ XML-RPC
    async def xmlrpc(self, method: str, *params: Any) -> Any:
        """One XML-RPC call, within the call budget (``xmlrpc_budget`` per ``xmlrpc_window``),
        honouring upstream's rate limit in both of Warehouse's forms (HTTP 429, and a fault
        inside a 200; either says "Limit may reset in N seconds"): the call waits that long
        and is made again, or raises :class:`RateLimited` when the wait does not fit
        (:meth:`_rate_wait`). An upstream without XML-RPC (405, 404, 501) raises
        :class:`XmlRpcUnavailable`, and later calls raise it without a request."""
        if self.xmlrpc_missing is not None:
            raise XmlRpcUnavailable(self.xmlrpc_missing)
        for _ in range(MAX_RATE_WAITS):
            await self._take_budget(method)
            got = await self.request(
                f"xmlrpc:{method}",
                f"{self.config.base}/pypi",
                method="POST",
                headers={"Content-Type": "text/xml"},
                content=dumps_call(method, *params),
                ok=_XMLRPC_OK,
            )
            wait, value = self._xmlrpc_answer(method, got)
            if wait is None:
                return value
            self.stats.rate_limited += 1
            await self._rate_wait(wait, f"XML-RPC {method}")
        raise RateLimited(f"XML-RPC {method}: still rate limited after {MAX_RATE_WAITS} waits")

    def _xmlrpc_answer(self, method: str, got: Fetched) -> tuple[float | None, Any]:
        """``(None, value)`` for an answer, ``(seconds, None)`` for a rate limit."""
        if got.status in _NO_XMLRPC:
            self.xmlrpc_missing = f"{got.url}: the upstream offers no XML-RPC (HTTP {got.status})"
            raise XmlRpcUnavailable(self.xmlrpc_missing)
        if got.status == 429:
            return rate_limit_delay(got.headers, got.body), None
        try:
            return None, loads_response(got.body)
        except XmlRpcError as exc:
            wait = rate_limit_wait(str(exc))
            if wait is None:
                raise UpstreamError(f"{method}: {exc}") from exc
            return wait, None

    async def _rate_wait(self, seconds: float, what: str, deadline: float | None = None) -> None:
        """Wait ``seconds`` for a rate limit to reset, if the run may: at most
        ``max_retry_after`` (``[pypi_assets] max_rate_wait``), ending before the request's
        ``deadline`` (its ``total_timeout``) and the run's bound (``run_timeout``). Else
        :class:`RateLimited`, raised before the caller has changed anything."""
        cfg = self.config
        if seconds > cfg.max_retry_after:
            bound = f"max_rate_wait ({cfg.max_retry_after:g} s)"
        elif deadline is not None and time.monotonic() + seconds >= deadline:
            bound = f"the request's global-timeout ({cfg.total_timeout:g} s)"
        elif time.monotonic() + seconds >= self._run_deadline:
            bound = f"the run's run_timeout ({cfg.run_timeout:g} s)"
        else:
            self.stats.rate_wait_seconds += seconds
            await asyncio.sleep(seconds)
            return
        raise RateLimited(
            f"{what}: rate limited, the limit may reset in {seconds:g} s, longer than {bound} "
            "allows waiting: stopped before changing anything; run again later"
        )

    async def _take_budget(self, what: str) -> None:
        """Count one XML-RPC call against the budget, waiting (:meth:`_rate_wait`) while the
        last ``xmlrpc_window`` seconds already hold ``xmlrpc_budget`` calls."""
        budget, window = self.config.xmlrpc_budget, self.config.xmlrpc_window
        if budget is None:
            return
        async with self._xmlrpc_lock:
            calls = self._xmlrpc_calls
            while True:
                now = time.monotonic()
                while calls and now - calls[0] >= window:
                    calls.popleft()
                if len(calls) < budget:
                    calls.append(now)
                    return
                self.stats.rate_limited += 1
                reason = f"XML-RPC {what} (call budget: {budget} calls per {window:g} s)"
                await self._rate_wait(calls[0] + window - now, reason)

    async def changelog_since(
        self, serial: int, *, until: int | None = None, max_rounds: int = 10_000
    ) -> list[list[Any]]:
        """All changelog rows after ``serial``. Replies are capped (50,000 rows on PyPI), so
        the call is repeated from the highest serial seen: until it reaches ``until`` (the
        upstream's last serial, when known) or an empty reply; without ``until``, until a
        reply shorter than ``changelog_page``. A reply with a malformed row or a serial out
        of range raises :class:`InvalidResponse`."""
        rows: list[list[Any]] = []
        for _ in range(max_rounds):
            batch = await self.xmlrpc("changelog_since_serial", serial)
            if not isinstance(batch, list) or not batch:
                break
            for row in batch:
                if not isinstance(row, list) or len(row) != 5 or not isinstance(row[0], str):
                    raise InvalidResponse(f"changelog_since_serial: malformed row {row!r:.100}")
                check_serial(row[4], "changelog_since_serial")
            rows.extend(batch)
            top = max(int(r[4]) for r in batch)
            if top <= serial:
                break
            serial = top
            if (until is not None and top >= until) or (
                until is None and len(batch) < self.config.changelog_page
            ):
                break
        return rows

    # ------------------------------------------------------------------ project list
    async def last_serial(self, *, live: bool = False) -> int | None:
        """The upstream's global serial from one uncached call: XML-RPC
        ``changelog_last_serial`` (live on PyPI, where the ``/simple/`` root and its
        ``X-PyPI-Last-Serial`` are cached by the CDN for up to a day). Only when XML-RPC is
        absent (or fails), ``HEAD /simple/``. ``None`` when neither tells; raises when the
        upstream cannot be reached at all, states a serial out of range, or rate-limits the
        call for longer than the run may wait (:class:`RateLimited`).

        ``live``: the caller has followed this upstream's changelog and must not decide on a
        cached serial. An XML-RPC that fails (rather than being absent: 404, 405, 501) then
        raises :class:`UpstreamError` instead of falling back to the root's header, which
        could say "nothing changed" for a day."""
        try:
            value = await self.xmlrpc("changelog_last_serial")
        except RateLimited:
            raise
        except UpstreamError as exc:
            if live and self.xmlrpc_missing is None:
                raise UpstreamError(
                    f"{exc} (the changelog gives this upstream's live serial; the /simple/ "
                    "root's may be a day old, so nothing was decided on it: retry later)"
                ) from None
            value = None
        if isinstance(value, int) and not isinstance(value, bool):
            self.serial_source = "changelog"
            return check_serial(value, "changelog_last_serial")
        got = await self.request("simple-head", f"{self.config.base}/simple/", method="HEAD")
        self.serial_source = "simple-head"
        return got.serial

    async def list_projects(self) -> UpstreamListing:
        """Every project with its serial.

        The PEP 691 JSON ``/simple/`` first (one request). When the upstream does not serve
        JSON, or serves JSON that cannot be used (garbage, nested too deep, serials out of
        range), XML-RPC ``list_packages_with_serial``. When that is not offered either, the
        HTML root already received, with serials unknown (0): every selected project is then
        checked with one project-JSON request per run. When nothing usable is left, raises
        :class:`UpstreamError` naming each source's fault.
        """
        root = f"{self.config.base}/simple/"
        html_root: str | None = None
        root_fault = ""
        try:
            got = await self.request("simple-root", root, headers={"Accept": ACCEPT})
            ctype = got.headers.get("content-type", "").split(";")[0].strip()
            if ctype == JSON_CT:
                return _listing_from_root_json(got, root)
            if "html" in ctype:
                html_root = got.body.decode("utf-8", "replace")
                got.body = b""
            else:
                root_fault = f"{root}: unexpected Content-Type {ctype[:60]!r}"
        except SimpleParseError as exc:
            root_fault = f"{root}: {exc}"
        except UpstreamError as exc:
            root_fault = str(exc)
        try:
            names, serials = await self._xmlrpc_listing()
        except UpstreamError as exc:
            if html_root is None:
                raise UpstreamError(f"no usable project list: {root_fault}; {exc}") from None
            try:
                serial_or_none, listed = parse_root_html(html_root)
            except SimpleParseError as html_exc:
                raise UpstreamError(f"no usable project list: {html_exc}; {exc}") from None
            return UpstreamListing(serial_or_none or 0, listed, [0] * len(listed), "simple-html")
        return UpstreamListing(max(serials, default=0), names, serials, "xmlrpc")

    async def _xmlrpc_listing(self) -> tuple[list[str], list[int]]:
        """XML-RPC ``list_packages_with_serial``: names and serials, each checked."""
        mapping = await self.xmlrpc("list_packages_with_serial")
        if not isinstance(mapping, dict):
            raise InvalidResponse("list_packages_with_serial did not return a mapping")
        names = []
        serials = []
        for k, v in mapping.items():
            if not isinstance(k, str) or len(k) > 1000:
                raise InvalidResponse(f"list_packages_with_serial: bad name {k!r:.100}")
            names.append(k)
            serials.append(check_serial(v, f"list_packages_with_serial: {k[:100]}"))
        return names, serials

    # ------------------------------------------------------------------ per project
    async def project_json(
        self,
        name: str,
        expected_serial: int | None = None,
        *,
        etag: str | None = None,
        gated: bool = False,
    ) -> Fetched:
        """The project JSON. With ``etag`` (from an earlier answer) the request is
        conditional: an unchanged project answers 304, with no body (``Fetched.status``).
        ``gated``: see :meth:`request`. ``name`` is asked as given: Warehouse's JSON API
        redirects any other spelling to the display name (``/pypi/flask/json`` answers 301
        to ``/pypi/Flask/json``), so callers pass the display name from the listing."""
        check_project_name(name)
        if etag is not None and not _ETAG.fullmatch(etag):
            etag = None
        return await self.request(
            "project-json",
            f"{self.config.base}/pypi/{name}/json",
            expected_serial=expected_serial,
            headers={"If-None-Match": etag} if etag else None,
            ok=frozenset({200, 304}) if etag else frozenset({200}),
            gated=gated,
        )

    async def version_json(self, name: str, version: str, *, gated: bool = False) -> Fetched:
        """A release's JSON; ``name`` as for :meth:`project_json` (the display name)."""
        check_project_name(name)
        return await self.request(
            "version-json",
            f"{self.config.base}/pypi/{name}/{quote_version(version)}/json",
            gated=gated,
        )

    async def simple_page(self, name: str, expected_serial: int | None = None) -> SimpleProjectPage:
        check_project_name(name)
        got = await self.request(
            "simple-project",
            f"{self.config.base}/simple/{canonical(name)}/",
            headers={"Accept": ACCEPT},
            expected_serial=expected_serial,
        )
        return page_from(got, name)

    async def core_metadata(
        self, file_url: str, sha256: str | None, *, gated: bool = False
    ) -> bytes | bytearray:
        """The PEP 658 ``.metadata`` file for a wheel, verified against the advertised hash.
        ``gated``: see :meth:`request`."""
        got = await self.request("core-metadata", file_url + ".metadata", gated=gated)
        if sha256 is not None and hashlib.sha256(got.body).hexdigest() != sha256:
            raise UpstreamError(f"{file_url}.metadata: sha256 does not match the simple index")
        return got.body

    # ------------------------------------------------------------------ own metadata
    @functools.cached_property
    def own_metadata(self) -> OwnMetadataState:
        """What this run learnt about the upstream's metadata sources (the unadvertised
        ``.metadata`` probe's answer) and what each source cost."""
        return OwnMetadataState()

    async def get_range(self, kind: str, url: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of ``url``: one ``Range`` request under the
        client's policy (:meth:`stream_to`: retries, limits, deadlines; counted under
        ``kind``). An answer that is not ``206`` for exactly those bytes (an upstream that
        ignores ``Range`` answers the whole file, 200) is refused before its body is read:
        :class:`UpstreamError`."""
        if not 0 <= start < end:
            raise ValueError(f"bad range {start}-{end}")
        want = end - start
        got = bytearray()

        async def receive(resp: httpx.Response, final: str) -> bool:
            sent = resp.headers.get("content-range", "")
            if resp.status_code != 206 or not sent.startswith(f"bytes {start}-{end - 1}/"):
                raise UpstreamError(
                    f"{final}: range {start}-{end - 1} not honoured "
                    f"(HTTP {resp.status_code}, Content-Range {sent[:60]!r})"
                )
            got.clear()
            async for chunk in resp.aiter_raw():
                got.extend(chunk)
                if len(got) > want:
                    raise UpstreamError(f"{final}: range answer longer than asked")
            self.stats.bytes += len(got)
            return len(got) == want

        await self.stream_to(
            kind,
            url,
            receive,
            headers=lambda: {"Range": f"bytes={start}-{end - 1}"},
            ok=frozenset({200, 206}),
        )
        return bytes(got)


def page_from(got: Fetched, name: str) -> SimpleProjectPage:
    """A project page answer, parsed as the form its Content-Type names (PEP 691 JSON, else
    HTML); its serial, when the page does not state one, from the answer's header. A page
    that does not parse is an :class:`UpstreamError` naming its URL."""
    ctype = got.headers.get("content-type", "").split(";")[0].strip()
    try:
        if ctype == JSON_CT:
            page = parse_project_page_json(got.json())
        else:
            page = parse_project_page_html(got.body.decode("utf-8", "replace"), name)
    except SimpleParseError as exc:
        raise UpstreamError(f"{got.url}: {exc}") from exc
    if page.serial is None:
        page.serial = got.serial
    page.etag = usable_etag(got.headers.get("ETag"))
    return page


def usable_etag(value: str | None) -> str | None:
    """An ``ETag`` fit to be stored and sent back (ASCII, at most 256 characters), or ``None``."""
    return value if value and len(value) <= 256 and value.isascii() else None
