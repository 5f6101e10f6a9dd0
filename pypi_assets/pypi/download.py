"""Streaming, verified, resumable file downloads.

The caller supplies an open binary file (``sink``); nothing here touches paths. Bytes are
hashed as they arrive, so memory stays flat whatever the file size. A body longer than the
advertised size is refused as soon as it overflows, a short one is resumed with a ``Range``
request, and a finished file whose sha256 differs is refused. The transport (retries,
redirects only to the upstream's hosts and its file hosts, deadlines, accounting) is the
client's :meth:`PyPIClient.stream_to`.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

import httpx

from .client import PyPIClient, RequestStats
from .errors import IntegrityError, UpstreamError

__all__ = ["IntegrityError", "download"]

CHUNK = 1 << 16


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
    url = client.check_url(url)
    st = _Transfer(sink, size, client.stats, client.config.max_body, blake2b_256 is not None)
    st.load()
    if not (size is not None and 0 < size == st.have):  # else: a finished earlier attempt
        await client.stream_to(
            kind, url, st.receive, headers=st.range, ok=frozenset({200, 206, 416})
        )
    sink.flush()
    if st.hasher.hexdigest() != sha256:
        raise IntegrityError(f"{url}: sha256 {st.hasher.hexdigest()} does not match {sha256}")
    if blake2b_256 is not None and st.blake.hexdigest() != blake2b_256:
        raise IntegrityError(
            f"{url}: blake2b_256 {st.blake.hexdigest()} does not match {blake2b_256}"
        )
    return st.have


class _Transfer:
    """The bytes ``sink`` holds and their running hash, kept by each attempt of one download
    (an attempt that is cut off leaves them for the next, which resumes after them)."""

    def __init__(
        self, sink: BinaryIO, size: int | None, stats: RequestStats, max_body: int, blake: bool
    ) -> None:
        self.sink, self.size, self.stats, self.max_body = sink, size, stats, max_body
        self.with_blake = blake
        self.hasher = hashlib.sha256()
        self.blake = hashlib.blake2b(digest_size=32)
        self.have = 0

    def load(self) -> None:
        """Hash what ``sink`` already holds; more than ``size`` is dropped."""
        self.sink.seek(0)
        while block := self.sink.read(1 << 20):
            self.update(block)
        self.have = self.sink.tell()
        if self.size is not None and self.have > self.size:
            self.restart()

    def update(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        if self.with_blake:
            self.blake.update(chunk)

    def restart(self) -> None:
        self.sink.seek(0)
        self.sink.truncate()
        self.hasher, self.have = hashlib.sha256(), 0
        self.blake = hashlib.blake2b(digest_size=32)

    def range(self) -> dict[str, str]:
        """The next attempt's headers: resume after the bytes held."""
        return {"Range": f"bytes={self.have}-"} if self.have else {}

    async def receive(self, resp: httpx.Response, url: str) -> bool:
        """One answer's body onto ``sink`` (see :meth:`PyPIClient.stream_to`): whether the
        file is complete; raises for a body that is not the advertised file."""
        size = self.size
        self.sink.seek(self.have)
        self.sink.truncate()  # drop anything an interrupted attempt wrote past the hashed bytes
        if resp.status_code == 416:
            if size is not None and self.have == size:
                return True  # we already hold every byte
            raise UpstreamError(f"{url}: unexpected HTTP 416")
        if resp.status_code == 200 and self.have:
            self.restart()  # the server ignored the Range: start again
        length = resp.headers.get("content-length")
        if size is not None and length and length.isdigit() and self.have + int(length) > size:
            raise IntegrityError(
                f"{url}: body of {self.have + int(length)} bytes is larger than the "
                f"advertised {size}"
            )
        async for chunk in resp.aiter_raw(CHUNK):
            if size is not None and self.have + len(chunk) > size:
                raise IntegrityError(f"{url}: body is larger than the advertised {size} bytes")
            if size is None and self.have + len(chunk) > self.max_body:
                raise IntegrityError(f"{url}: body larger than {self.max_body} bytes")
            self.sink.write(chunk)
            self.update(chunk)
            self.have += len(chunk)
            self.stats.bytes += len(chunk)
        return size is None or self.have == size
