"""Streaming, verified, resumable file downloads.

The caller supplies an open binary file (``sink``); nothing here touches paths. Bytes are
hashed as they arrive, so memory stays flat whatever the file size. A body longer than the
advertised size is refused as soon as it overflows, a short one is resumed with a ``Range``
request, and a finished file whose sha256 differs is refused. Redirects are followed only to
the upstream's hosts and its file hosts.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import BinaryIO

import httpx

from .client import _RETRY_STATUS, NotFound, PyPIClient, UpstreamError, _retry_after

__all__ = ["IntegrityError", "download"]

CHUNK = 1 << 16


class IntegrityError(UpstreamError):
    """The upstream sent bytes that are not the advertised file. Never retried."""


async def download(
    client: PyPIClient,
    url: str,
    sink: BinaryIO,
    *,
    sha256: str,
    size: int | None,
    kind: str = "file",
    blake2b_256: str | None = None,
) -> int:
    """Download ``url`` into ``sink`` (opened ``r+b`` or ``w+b``), resuming after the bytes it
    already holds. Returns the byte count. ``size=None`` skips the size check (the ``.metadata``
    files' sizes are not advertised). ``blake2b_256``, when given, is checked too: a blob key
    built from that digest must hold bytes that hash to it, whatever sha256 a listing claims."""
    cfg = client.config
    url = client._check(url)
    st = _State(blake2b_256 is not None)
    sink.seek(0)
    while block := sink.read(1 << 20):
        st.update(block)
    st.have = sink.tell()
    if size is not None and st.have > size:
        st.restart(sink)
    attempt = 0
    complete = size is not None and 0 < size == st.have  # a finished earlier attempt
    while not complete:
        sink.seek(st.have)
        sink.truncate()  # drop anything an interrupted attempt wrote past the hashed bytes
        delay: float | None = None
        started = time.perf_counter()
        try:
            async with client._sem:
                started = time.perf_counter()
                async with asyncio.timeout(client.time_left(cfg.total_timeout, url)):
                    status, complete = await _attempt(client, url, sink, st, size)
            client._account(kind, started)
            if complete:
                break
            last = f"HTTP {status}" if status in _RETRY_STATUS else "truncated body"
        except (httpx.TimeoutException, TimeoutError) as exc:
            client._account(kind, started)
            last = f"timeout ({type(exc).__name__})"
        except httpx.TransportError as exc:
            client._account(kind, started)
            last = f"transport error ({type(exc).__name__})"
        except _RetryAfter as exc:
            client._account(kind, started)
            last, delay = "429 Too Many Requests", exc.delay
        attempt = await client._retry_or_give_up(url, attempt, last, delay)
    sink.flush()
    if st.hasher.hexdigest() != sha256:
        raise IntegrityError(f"{url}: sha256 {st.hasher.hexdigest()} does not match {sha256}")
    if blake2b_256 is not None and st.blake.hexdigest() != blake2b_256:
        raise IntegrityError(
            f"{url}: blake2b_256 {st.blake.hexdigest()} does not match {blake2b_256}"
        )
    return st.have


class _State:
    """Bytes held and their running hash, shared with the attempt that may be cut off."""

    def __init__(self, blake: bool = False) -> None:
        self.with_blake = blake
        self.hasher = hashlib.sha256()
        self.blake = hashlib.blake2b(digest_size=32)
        self.have = 0

    def update(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        if self.with_blake:
            self.blake.update(chunk)

    def restart(self, sink: BinaryIO) -> None:
        sink.seek(0)
        sink.truncate()
        self.hasher, self.have = hashlib.sha256(), 0
        self.blake = hashlib.blake2b(digest_size=32)


class _RetryAfter(Exception):
    def __init__(self, delay: float | None) -> None:
        self.delay = delay


async def _attempt(
    client: PyPIClient,
    url: str,
    sink: BinaryIO,
    st: _State,
    size: int | None,
) -> tuple[int, bool]:
    """One GET (with redirects), updating ``st`` as bytes arrive. Returns ``(status,
    complete)``; raises for answers that must not be retried."""
    for _hop in range(6):
        headers = {"Accept-Encoding": "identity"}
        if st.have:
            headers["Range"] = f"bytes={st.have}-"
        async with client._http.stream("GET", url, headers=headers) as resp:
            status = resp.status_code
            target = client._redirect(resp)
            if target is not None:
                url = target
                continue
            if status in (404, 410):
                raise NotFound(f"{url}: {status} Not Found")
            if status == 429:
                raise _RetryAfter(
                    _retry_after(resp.headers.get("Retry-After"), client.config.max_retry_after)
                )
            if status in _RETRY_STATUS:
                return status, False
            if status == 416 and size is not None and st.have == size:
                return status, True  # we already hold every byte
            if status not in (200, 206):
                raise UpstreamError(f"{url}: unexpected HTTP {status}")
            if status == 200 and st.have:
                st.restart(sink)  # the server ignored the Range: start again
            length = resp.headers.get("content-length")
            if size is not None and length and length.isdigit() and st.have + int(length) > size:
                raise IntegrityError(
                    f"{url}: body of {st.have + int(length)} bytes is larger than the "
                    f"advertised {size}"
                )
            async for chunk in resp.aiter_raw(CHUNK):
                if size is not None and st.have + len(chunk) > size:
                    raise IntegrityError(f"{url}: body is larger than the advertised {size} bytes")
                if size is None and st.have + len(chunk) > client.config.max_body:
                    raise IntegrityError(f"{url}: body larger than {client.config.max_body} bytes")
                sink.write(chunk)
                st.update(chunk)
                st.have += len(chunk)
                client.stats.bytes += len(chunk)
            return status, size is None or st.have == size
    raise UpstreamError(f"{url}: too many redirects")
