"""Every file's own metadata, on any upstream: the bytes of its METADATA / PKG-INFO.

Wheels: the PEP 658 ``.metadata`` file where the page advertises it; else, on an upstream
whose pages advertise none, the unadvertised ``<url>.metadata``, tried once per upstream
(the answer kept on the client for the run) before it is relied on; else
``*.dist-info/METADATA`` read with range requests (:mod:`.archives`), never the whole wheel.

Sdists: ``PKG-INFO`` from the blob store when the file is stored (``stored``, optional);
else from the archive, a tar streamed only until ``PKG-INFO`` is found under the
``max_pkg_info_scan`` byte cap, a zip read with range requests.

Each returns ``None`` when the file's own metadata cannot be had (the caller falls back to
the version JSON); what each source cost is added to ``client.own_metadata.costs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import IO, Any

from .archives import metadata_member, pkg_info_member, read_zip_member, tar_pkg_info
from .client import PyPIClient
from .errors import MetadataError, NotFound, UpstreamError
from .records import MetadataSource
from .sources import OwnMetadataState
from .warehouse import ParsedFile

__all__ = ["Found", "StoredFile", "file_metadata", "sdist_mode"]

log = logging.getLogger("pypi_assets")

#: Opens a stored copy of a release file (blocking; run in a thread), ``None`` when the
#: store does not hold it.
StoredFile = Callable[[ParsedFile], "IO[bytes] | None"]


@dataclass(slots=True)
class Found:
    """A file's own metadata file, where it came from, and (for a ``.metadata`` file) the
    sha256 that binds it, as PEP 658 advertises it."""

    body: bytes | bytearray
    source: MetadataSource
    core_metadata_sha256: str | None = None


#: Wheels that answer 404 before the upstream is taken not to serve unadvertised
#: ``.metadata`` files (its answer is kept on the client for the run).
PROBE_TRIES = 8

_TAR_MODES = ((".tar.gz", "r|gz"), (".tgz", "r|gz"), (".tar.bz2", "r|bz2"), (".tar.xz", "r|xz"))


def sdist_mode(filename: str) -> str | None:
    """How an archive's PKG-INFO is read: a tarfile stream mode, ``zip``, or ``None``."""
    lower = filename.lower()
    for suffix, mode in _TAR_MODES:
        if lower.endswith(suffix):
            return mode
    if lower.endswith(".tar"):
        return "r|"
    if lower.endswith((".zip", ".egg")):
        return "zip"
    return None


# ------------------------------------------------------------------------------- wheels
def _refused(state: OwnMetadataState) -> bool:
    """The upstream answered 404 to the unadvertised ``.metadata`` probe."""
    return state.unadvertised is False


async def _unadvertised(client: PyPIClient, f: ParsedFile) -> bytes | bytearray | None:
    """``<url>.metadata`` on an upstream whose pages advertise none. One wheel asks at a
    time (the others wait for its answer) until the upstream has answered: yes at its first
    ``.metadata`` served (then every wheel asks, a 404 falling back to range reads), no after
    :data:`PROBE_TRIES` wheels in a row answered 404 (then no wheel asks again in the run;
    one wheel's own 404 is not the upstream's answer, as some wheels have no METADATA file
    upstream)."""
    state = client.own_metadata
    if _refused(state):
        return None
    async with contextlib.nullcontext() if state.unadvertised else state.probe:
        if _refused(state):
            return None
        started = time.perf_counter()
        try:
            body = await client.core_metadata(f.url, None, gated=True)
        except NotFound:
            state.costs.failed["unadvertised"] += 1
            if state.unadvertised is None:
                state.probe_misses += 1
                if state.probe_misses >= PROBE_TRIES:
                    state.unadvertised = False
                    log.info("upstream serves no unadvertised .metadata files: range reads")
            return None
        state.unadvertised = True
        state.costs.add("unadvertised", 1, len(body), time.perf_counter() - started)
        return body


async def _ranged(
    client: PyPIClient, f: ParsedFile, pick: Callable[[list[str]], str | None], source: str
) -> bytes | None:
    """A zip member read with range requests; ``None`` when it cannot be."""
    received = 0

    async def fetch(start: int, end: int) -> bytes:
        nonlocal received
        kind = "range" if source == "range" else f"range:{source}"
        data = await client.get_range(kind, f.url, start, end)
        received += len(data)
        return data

    started = time.perf_counter()
    try:
        _name, data, requests = await read_zip_member(fetch, f.size, pick)
    except (MetadataError, UpstreamError) as exc:
        client.own_metadata.costs.failed[source] += 1
        log.warning("%s: no metadata by range requests: %s", f.filename, exc)
        return None
    client.own_metadata.costs.add(source, requests, received, time.perf_counter() - started)
    return data


async def wheel_metadata(
    client: PyPIClient, f: ParsedFile, advertised: dict[str, str | None], pep658: bool
) -> Found | None:
    """A wheel's METADATA: advertised ``.metadata``, else (``pep658``: the page advertises
    some file's, so this one has none) the unadvertised one, else by range requests. The
    ``.metadata`` requests are gated: the caller calls ``client.release_body()`` once the
    body is parsed."""
    if f.filename in advertised:
        sha = advertised[f.filename]
        started = time.perf_counter()
        try:
            body = await client.core_metadata(f.url, sha, gated=True)
        except NotFound:
            client.own_metadata.costs.failed["core-metadata"] += 1
        else:
            client.own_metadata.costs.add(
                "core-metadata", 1, len(body), time.perf_counter() - started
            )
            return Found(body, "core-metadata", sha)
    elif not pep658:
        probed = await _unadvertised(client, f)
        if probed is not None:
            return Found(probed, "core-metadata", hashlib.sha256(probed).hexdigest())
    data = await _ranged(client, f, metadata_member(f.filename), "range")
    return None if data is None else Found(data, "range")


# ------------------------------------------------------------------------------- sdists
class _Bridge:
    """A blocking file object over an async body: :func:`tar_pkg_info` reads it in a worker
    thread, each chunk fetched on the event loop. Refuses to pass ``cap`` bytes."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, chunks: AsyncIterator[bytes], cap: int, url: str
    ) -> None:
        self._loop, self._chunks, self._cap, self._url = loop, chunks, cap, url
        self._buf = b""
        self.received = 0

    async def _next(self) -> bytes:
        return await anext(self._chunks, b"")

    def read(self, n: int = -1) -> bytes:
        while not self._buf:
            chunk = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            if not chunk:
                return b""
            self.received += len(chunk)
            if self.received > self._cap:
                raise MetadataError(
                    f"{self._url}: no PKG-INFO within max_pkg_info_scan ({self._cap} bytes)"
                )
            self._buf = chunk
        n = len(self._buf) if n is None or n < 0 else n
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


async def _streamed(client: PyPIClient, f: ParsedFile, mode: str) -> bytes:
    """PKG-INFO from a tar streamed until it is found (one request)."""
    loop = asyncio.get_running_loop()
    found: list[tuple[bytes, int]] = []

    async def receive(resp: Any, final: str) -> bool:
        bridge = _Bridge(loop, resp.aiter_raw(), client.config.max_pkg_info_scan, final)
        try:
            data = await asyncio.to_thread(tar_pkg_info, bridge, mode)  # type: ignore[arg-type]
        finally:
            client.stats.bytes += bridge.received
        found[:] = [(data, bridge.received)]
        return True

    started = time.perf_counter()
    await client.stream_to("pkg-info", f.url, receive)
    data, received = found[0]
    client.own_metadata.costs.add("pkg-info", 1, received, time.perf_counter() - started)
    return data


def _read_stored(stored: StoredFile, f: ParsedFile, mode: str) -> bytes | None:
    handle = stored(f)
    if handle is None:
        return None
    with handle:
        if mode != "zip":
            return tar_pkg_info(handle, mode)
        try:
            with zipfile.ZipFile(handle) as z:
                name = pkg_info_member(z.namelist())
                if name is None:
                    raise MetadataError("sdist: no PKG-INFO")
                return z.read(name)
        except (zipfile.BadZipFile, OSError) as exc:
            raise MetadataError(f"sdist: unreadable zip ({exc})") from None


async def sdist_metadata(
    client: PyPIClient, f: ParsedFile, stored: StoredFile | None
) -> Found | None:
    """An sdist's (or egg's) PKG-INFO: from the stored copy, else from upstream."""
    mode = sdist_mode(f.filename)
    if mode is None:
        return None
    try:
        if stored is not None:
            started = time.perf_counter()
            data = await asyncio.to_thread(_read_stored, stored, f, mode)
            if data is not None:
                client.own_metadata.costs.add("stored", 0, 0, time.perf_counter() - started)
                return Found(data, "pkg-info")
        if mode == "zip":
            ranged = await _ranged(client, f, pkg_info_member, "pkg-info")
            return None if ranged is None else Found(ranged, "pkg-info")
        return Found(await _streamed(client, f, mode), "pkg-info")
    except (MetadataError, UpstreamError) as exc:
        client.own_metadata.costs.failed["pkg-info"] += 1
        log.warning("%s: no PKG-INFO: %s", f.filename, exc)
        return None


async def file_metadata(
    client: PyPIClient,
    f: ParsedFile,
    advertised: dict[str, str | None],
    pep658: bool,
    stored: StoredFile | None = None,
) -> Found | None:
    """The file's own metadata file, wheel or sdist; ``None`` when none can be had."""
    if f.filename.endswith(".whl"):
        return await wheel_metadata(client, f, advertised, pep658)
    return await sdist_metadata(client, f, stored)
