"""Mirroring the files themselves: download what the selection needs into a blob store, and
verify the store against DuckDB. No Dagster imports; the assets and the CLI call these.

A file is streamed to a partial file in the store's staging directory while its sha256 is
computed, checked against the advertised size and digest, and only then moved (local) or
conditionally put (S3) under its content-addressed key. An interrupted run leaves partial
files that the next run resumes with a ``Range`` request; nothing half-written is ever under a
key, and a crash between storing and recording a blob is healed by the next run, which finds
the blob present.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from ..pypi import InvalidData, PyPIClient, UnsafeValue, UpstreamError
from ..pypi.download import IntegrityError, download
from ..pypi.errors import LimitExceeded, Refused
from ..pypi.names import check_sha256
from ..pypi.provenance import (
    INTEGRITY_CT,
    MAX_PROVENANCE_BYTES,
    Publisher,
    check_provenance_url,
    parse_provenance,
)
from ..store.blobs import (
    PROVENANCE_PREFIX,
    BlobStore,
    check_key,
    is_metadata_key,
    is_provenance_key,
    key_digest,
    provenance_key,
)
from .pool import Batch, run_pool
from .reports import Progress, no_progress, one_line

__all__ = [
    "DEFAULT_MAX_DELETE_SHARE",
    "FilesReport",
    "TooManyDeletions",
    "VerifyReport",
    "check_delete_share",
    "delete_unreferenced",
    "fetch_provenance",
    "mirror_files",
    "mirror_provenance",
    "repair_provenance",
    "verify_blobs",
    "verify_provenance",
]

log = logging.getLogger(__name__)

#: ``(project, filename, key, url, sha256, size)``: one blob to fetch (size None: .metadata)
FileRow = tuple[str, str, str, str, str, int | None]
#: ``(key, project, filename, sha256, size)``: one blob now stored
Stored = tuple[str, str, str, str, int]


@dataclass
class FilesReport:
    candidates: int = 0
    downloaded: int = 0
    present: int = 0  # already in the store (recorded now)
    bytes: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # "project: filename" -> why
    seconds: float = 0.0
    provenance: int = 0  # PEP 740 provenance objects stored

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> dict[str, object]:
        return {
            "candidates": self.candidates,
            "downloaded": self.downloaded,
            "present": self.present,
            "bytes": self.bytes,
            "failed": sorted(self.failed),
            "seconds": round(self.seconds, 3),
            "provenance": self.provenance,
        }


def _stored_state(blobs: BlobStore, key: str, sha256: str, size: int | None) -> tuple[str, int]:
    """``("absent" | "intact" | "corrupt", stored size)``. A blob that is not recorded yet is
    only taken as stored once its bytes hash to the advertised sha256: a blob of the right
    size can still be corrupt (``verify`` forgets such blobs, and they must not come back)."""
    have = blobs.size(key)
    if have is None:
        return "absent", 0
    if size is not None and have != size:
        return "corrupt", have
    try:
        digest = _digest(blobs, key)
    except FileNotFoundError:
        return "absent", 0  # deleted meanwhile
    return ("intact" if digest == sha256 else "corrupt"), have


def _key_blake2b(key: str, sha256: str) -> str | None:
    """The blake2b-256 digest a file's bytes must have to live under ``key``: the key's own
    digest, unless the key was built from the sha256 (no blake2b advertised). ``None`` for
    ``.metadata`` files, whose key names the file they describe, and provenance objects."""
    if is_metadata_key(key) or is_provenance_key(key):
        return None
    digest = key_digest(key)
    return None if digest == sha256 else digest


def _matches_key(blobs: BlobStore, key: str) -> bool:
    """Whether the stored blob's bytes hash to the digest its key is built from (blake2b-256
    or sha256): such a blob is the key's rightful content, whatever a listing claims."""
    if is_metadata_key(key) or is_provenance_key(key):
        return False
    want = key_digest(key)
    sha, blake = hashlib.sha256(), hashlib.blake2b(digest_size=32)
    try:
        for chunk in blobs.read(key):
            sha.update(chunk)
            blake.update(chunk)
    except FileNotFoundError:
        return False
    return want in (sha.hexdigest(), blake.hexdigest())


def _part_name(blobs: BlobStore, key: str) -> Path:
    return blobs.staging() / f"{hashlib.sha256(key.encode()).hexdigest()}.part"


def _open_locked(part: Path) -> int | None:
    """Open the key's partial file and take its exclusive lock without waiting. ``None`` when
    another writer (another run sharing the store, ``serve --lazy``, another task) holds it.

    The lock lives on the open file, so a writer that dies releases it; the name stays the
    same across runs, so an interrupted download is resumed by the next one."""
    while True:
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        # the writer that held it may have moved it into the store, or removed it, before
        # letting go: only the file that is still at the name counts
        try:
            if os.path.samestat(os.fstat(fd), os.stat(part)):
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


async def _lock_part(part: Path, executor: Executor | None) -> int:
    """Wait (without blocking the loop, and cancellably) for the partial file's lock."""
    loop = asyncio.get_running_loop()
    delay = 0.01
    while True:
        opening = loop.run_in_executor(executor, _open_locked, part)
        fd = await _holding(opening, lambda fd: fd)
        if fd is not None:
            return fd
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


T = TypeVar("T")


async def _holding(job: asyncio.Future[T], fd_of: Callable[[T], int | None]) -> T:
    """The result of an executor job that may open a locked descriptor (``fd_of`` finds it
    in the result). Cancelled while it runs, the job still finishes: then the descriptor
    is closed, so a held lock never leaks."""
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        job.add_done_callback(lambda done: _close_result(done, fd_of))
        raise


def _close_result(done: asyncio.Future[T], fd_of: Callable[[T], int | None]) -> None:
    if not done.cancelled() and done.exception() is None:
        fd = fd_of(done.result())
        if fd is not None:
            os.close(fd)


#: What :func:`_claim` found: the blob's state and stored size, the key's partial file
#: (``None``: the blob is intact, none was opened) and its locked descriptor (``None``:
#: another writer holds the lock).
_Claim = tuple[str, int, Path | None, int | None]


def _claim(blobs: BlobStore, key: str, sha256: str, size: int | None) -> _Claim:
    """Everything a download needs from the store before it starts, in one trip to the
    executor: the blob's state and, unless it is intact, the key's partial file locked,
    with the state read again under the lock (another writer may have just stored it)."""
    state, have = _stored_state(blobs, key, sha256, size)
    if state == "intact":
        return state, have, None, None
    part = _part_name(blobs, key)
    fd = _open_locked(part)
    if fd is not None:
        try:
            state, have = _stored_state(blobs, key, sha256, size)
        except BaseException:
            os.close(fd)
            raise
    return state, have, part, fd


async def fetch_blob(
    client: PyPIClient, blobs: BlobStore, row: FileRow, executor: Executor | None = None
) -> tuple[Stored, bool]:
    """Fetch one blob unless an intact copy is present. Returns the stored record and whether
    it was downloaded. Raises on anything that must not be stored. Filesystem and
    object-store calls run on ``executor`` (the default one if ``None``): one trip before
    the transfer and one after it, unless another writer holds the key.

    Writers of the same key, in this process or another sharing the store, take turns on
    the key's partial file (an ``flock``): the second finds the blob stored by the first."""
    project, filename, key, url, sha256, size = row
    check_key(key)
    check_sha256(sha256)
    loop = asyncio.get_running_loop()
    claiming = loop.run_in_executor(executor, _claim, blobs, key, sha256, size)
    state, have, part, fd = await _holding(claiming, lambda claim: claim[3])
    if part is None:
        return (key, project, filename, sha256, have), False
    waited = fd is None
    if fd is None:
        fd = await _lock_part(part, executor)
    with os.fdopen(fd, "r+b") as sink:  # closing it releases the lock
        if waited:  # the writer that held the lock may have stored it
            state, have = await loop.run_in_executor(
                executor, _stored_state, blobs, key, sha256, size
            )
        if state == "intact":
            part.unlink(missing_ok=True)  # bytes of an older attempt, not needed any more
            return (key, project, filename, sha256, have), False
        if state == "corrupt":
            if await loop.run_in_executor(executor, _matches_key, blobs, key):
                # the stored bytes are the key's rightful content: it is this row that lies
                # (another file's name and blake2b_256 with its own sha256)
                part.unlink(missing_ok=True)
                raise IntegrityError(
                    f"{key}: the stored blob matches its key's digest, not the advertised "
                    f"sha256 {sha256}; refusing to replace it"
                )
            log.warning("%s: %s: the stored blob is corrupt; fetching it again", project, key)
            await loop.run_in_executor(executor, blobs.delete, key)
        try:
            got = await download(
                client, url, sink, sha256=sha256, size=size, blake2b_256=_key_blake2b(key, sha256)
            )
        except (IntegrityError, UnsafeValue):
            part.unlink(missing_ok=True)  # never keep bytes that are not the advertised file
            raise
        await loop.run_in_executor(executor, blobs.put_file, key, part)
    return (key, project, filename, sha256, got), True


#: What fails one file alone: the upstream's answers, the bytes, and the store's I/O.
_FILE_ERRORS = (UpstreamError, InvalidData, httpx.HTTPError, OSError)


async def mirror_files(
    client: PyPIClient,
    blobs: BlobStore,
    rows: Sequence[FileRow],
    record: Callable[[list[Stored]], None],
    *,
    progress: Progress = no_progress,
    batch: int = 200,
    flush_seconds: float = 5.0,
) -> FilesReport:
    """Fetch ``rows`` concurrently (the client's cap), calling ``record`` (from a thread) with
    stored blobs in batches. One file failing fails alone and is named with its project."""
    report = FilesReport(candidates=len(rows))
    started = time.perf_counter()
    # Downloads never wait for a write under way: the next file's flush catches up.
    pending: Batch[Stored] = Batch(record, max_items=batch, max_age=flush_seconds, wait=False)
    done = 0

    async def one(row: FileRow) -> None:
        nonlocal done
        name = f"{row[0]}: {row[1]}"
        try:
            stored, fetched = await fetch_blob(client, blobs, row, executor)
            pending.put(stored)  # flushed below, once the file is counted
            if fetched:
                report.downloaded += 1
                report.bytes += stored[4]
            else:
                report.present += 1
            status = "ok"
        except _FILE_ERRORS as exc:
            report.failed[name] = str(exc)
            log.warning("%s failed: %s", name, exc)
            status = "failed"
        done += 1
        progress("files", done, len(rows), f"{name} {status}")
        await pending.maybe_flush()

    # More workers than request slots, so that file creation and renames (a few ms each on
    # some filesystems, more on object stores) overlap with the transfers.
    n = max(1, min(len(rows), client.config.concurrency * 4))
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="blobs") as executor:
        await run_pool(rows, one, workers=n)
        await pending.flush()
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------------- verify
@dataclass
class VerifyReport:
    referenced: int = 0
    stored: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)
    #: blobs the selection no longer references that a snapshot in the retention period
    #: still lists (``[pypi_assets] blob_retention``): kept
    retained: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: of the above, the PEP 740 provenance objects: referenced (recorded) and stored
    provenance_referenced: int = 0
    provenance_stored: int = 0

    @property
    def ok(self) -> bool:
        """Everything referenced is present and intact (after any repair)."""
        broken = (set(self.missing) | set(self.corrupt)) - set(self.repaired)
        return not broken and not self.failed

    def summary(self) -> dict[str, object]:
        return {
            "referenced": self.referenced,
            "stored": self.stored,
            "missing": len(self.missing),
            "corrupt": len(self.corrupt),
            "unreferenced": len(self.unreferenced),
            "retained": len(self.retained),
            "repaired": len(self.repaired),
            "deleted": len(self.deleted),
            "failed": sorted(self.failed),
            "seconds": round(self.seconds, 3),
            "provenance": {
                "referenced": self.provenance_referenced,
                "stored": self.provenance_stored,
                "missing": sum(map(is_provenance_key, self.missing)),
                "corrupt": sum(map(is_provenance_key, self.corrupt)),
                "repaired": sum(map(is_provenance_key, self.repaired)),
            },
            "examples": {
                "missing": self.missing[:10],
                "corrupt": self.corrupt[:10],
                "unreferenced": self.unreferenced[:10],
            },
        }


def _digest(blobs: BlobStore, key: str) -> str:
    h = hashlib.sha256()
    for chunk in blobs.read(key):
        h.update(chunk)
    return h.hexdigest()


def verify_blobs(
    blobs: BlobStore,
    referenced: dict[str, tuple[str, str, str, int | None, str]],
    *,
    check_hashes: bool = True,
    progress: Progress = no_progress,
) -> VerifyReport:
    """One listing of the store against the keys the selection needs: missing keys, blobs
    whose size or sha256 is wrong, and blobs nothing references. Reading every byte (the
    default) costs time proportional to the stored bytes; ``check_hashes=False`` compares
    sizes only, proportional to the number of files."""
    started = time.perf_counter()
    report = VerifyReport(referenced=len(referenced))
    seen: set[str] = set()
    for i, (key, size) in enumerate(blobs.iter_blobs()):
        report.stored += 1
        want = referenced.get(key)
        if want is None:
            report.unreferenced.append(key)
            continue
        seen.add(key)
        _p, _f, sha, want_size, _url = want
        if (want_size is not None and size != want_size) or (
            check_hashes and _digest(blobs, key) != sha
        ):
            report.corrupt.append(key)
        if i % 1000 == 0:
            progress("verify", i, len(referenced), key)
    report.missing = sorted(set(referenced) - seen)
    report.corrupt.sort()
    report.unreferenced.sort()
    report.seconds = time.perf_counter() - started
    return report


async def repair(
    client: PyPIClient,
    blobs: BlobStore,
    report: VerifyReport,
    referenced: dict[str, tuple[str, str, str, int | None, str]],
    record: Callable[[list[Stored]], None],
    *,
    progress: Progress = no_progress,
) -> None:
    """Fetch again what ``report`` found missing or corrupt (corrupt blobs are removed first)."""
    for key in report.corrupt:
        await asyncio.to_thread(blobs.delete, key)
    rows: list[FileRow] = []
    for key in sorted(set(report.missing) | set(report.corrupt)):
        if key not in referenced:
            continue  # a provenance object: :func:`repair_provenance`
        project, filename, sha, size, url = referenced[key]
        rows.append((project, filename, key, url, sha, size))
    files = await mirror_files(client, blobs, rows, record, progress=progress)
    report.failed.update(files.failed)
    failed_names = set(files.failed)
    report.repaired = [r[2] for r in rows if f"{r[0]}: {r[1]}" not in failed_names]


#: the share of the stored blobs (or of the written index pages) that one run may delete
#: without ``--force``: more than this usually means a faulty listing emptied the selection
DEFAULT_MAX_DELETE_SHARE = 0.05


class TooManyDeletions(Refused):
    """A bulk deletion above the allowed share was refused; nothing was deleted."""


def check_delete_share(count: int, total: int, max_share: float, what: str) -> None:
    """Raise :class:`TooManyDeletions` when deleting ``count`` of ``total`` ``what`` exceeds
    ``max_share`` of them."""
    if count and count > max_share * total:
        raise TooManyDeletions(
            f"refusing to delete {count} of {total} {what} ({count / total:.0%}, more than "
            f"the allowed {max_share:.0%})"
        )


def delete_unreferenced(
    blobs: BlobStore,
    report: VerifyReport,
    *,
    max_share: float = DEFAULT_MAX_DELETE_SHARE,
    force: bool = False,
) -> None:
    """Delete the blobs nothing references. Refuses (:class:`TooManyDeletions`, nothing
    deleted) when they are more than ``max_share`` of the stored blobs, unless ``force``."""
    if not force:
        check_delete_share(len(report.unreferenced), report.stored, max_share, "stored blobs")
    for key in report.unreferenced:
        blobs.delete(key)
        report.deleted.append(key)


# ---------------------------------------------------------------------- provenance (PEP 740)
#: ``(project, release_version, filename, provenance URL)``: one provenance object to fetch
ProvenanceRow = tuple[str, str, str, str]
#: ``(project, filename, bundle, kind, repository, workflow, environment)``
PublisherRow = tuple[str, str, int, str, str | None, str | None, str | None]


async def _provenance_body(client: PyPIClient, url: str) -> bytes:
    """The provenance object at ``url``, read no further than :data:`MAX_PROVENANCE_BYTES`."""
    body = bytearray()
    cap = MAX_PROVENANCE_BYTES

    async def receive(resp: httpx.Response, final: str) -> bool:
        announced = resp.headers.get("content-length", "")
        if announced.isdigit() and int(announced) > cap:
            raise LimitExceeded(f"{final}: provenance object larger than {cap} bytes")
        body.clear()
        async for chunk in resp.aiter_raw():
            body.extend(chunk)
            if len(body) > cap:
                raise LimitExceeded(f"{final}: provenance object larger than {cap} bytes")
        return True

    await client.stream_to("provenance", url, receive, headers=lambda: {"Accept": INTEGRITY_CT})
    return bytes(body)


def _put_bytes(blobs: BlobStore, key: str, data: bytes) -> None:
    """Store a small checked object under ``key`` through a temporary file of its own (two
    writers of one key each rename theirs into place)."""
    fd, name = tempfile.mkstemp(dir=blobs.staging(), suffix=".provenance.part")
    part = Path(name)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        blobs.put_file(key, part)
    finally:
        part.unlink(missing_ok=True)


async def fetch_provenance(
    client: PyPIClient, blobs: BlobStore, row: ProvenanceRow
) -> tuple[Stored, list[Publisher]]:
    """Fetch one file's provenance object, check it (a safe URL on an allowed origin, a
    size cap, the PEP 740 shape) and store it under its ``integrity/...`` key. Returns the
    stored record and the publishers it names; raises on anything that must not be stored."""
    project, version, filename, url = row
    key = provenance_key(project, version, filename)
    checked = check_provenance_url(url, client.config.base + "/", client.config.allowed_hosts)
    data = await _provenance_body(client, checked)
    publishers = parse_provenance(data, f"{checked}")
    await asyncio.to_thread(_put_bytes, blobs, key, data)
    return (key, project, filename, hashlib.sha256(data).hexdigest(), len(data)), publishers


async def mirror_provenance(
    client: PyPIClient,
    blobs: BlobStore,
    rows: Sequence[ProvenanceRow],
    record: Callable[[list[Stored], list[PublisherRow]], None],
    report: FilesReport,
    *,
    progress: Progress = no_progress,
) -> None:
    """Fetch the provenance objects of ``rows`` into the store and ``record`` them with
    their publishers. One failing fails that file's provenance alone: one line in
    ``report.failed`` (``"<project>: <filename> (provenance)"``) and in the log."""
    stored: list[Stored] = []
    publishers: list[PublisherRow] = []
    done = 0

    async def one(row: ProvenanceRow) -> None:
        nonlocal done
        project, _version, filename, _url = row
        name = f"{project}: {filename} (provenance)"
        try:
            got, pubs = await fetch_provenance(client, blobs, row)
            stored.append(got)
            publishers.extend(
                (project, filename, p.bundle, p.kind, p.repository, p.workflow, p.environment)
                for p in pubs
            )
            report.provenance += 1
        except _FILE_ERRORS as exc:
            report.failed[name] = one_line(exc)
            log.warning("%s failed: %s", name, one_line(exc))
        done += 1
        progress("provenance", done, len(rows), name)

    await run_pool(rows, one, workers=max(1, min(len(rows), client.config.concurrency)))
    if stored:
        await asyncio.to_thread(record, stored, publishers)


#: ``key -> (row, sha256, size)``: a provenance object the selection needs, with the digest
#: and size recorded when it was stored (``None``: not recorded yet)
ProvenanceRefs = dict[str, tuple[ProvenanceRow, str | None, int | None]]


def verify_provenance(
    blobs: BlobStore, referenced: ProvenanceRefs, report: VerifyReport, *, check_hashes: bool
) -> None:
    """As :func:`verify_blobs`, into ``report``, for the provenance objects under
    ``integrity/``: one recorded but absent is missing, one whose size or sha256 differs
    from what was recorded is corrupt, one no selected file names is unreferenced. One
    stored but not recorded (a run stopped between the two) is left to the next sync."""
    recorded = {k for k, (_row, sha, _size) in referenced.items() if sha is not None}
    report.provenance_referenced = len(recorded)
    report.referenced += len(recorded)
    seen: set[str] = set()
    for key, size in blobs.iter_blobs(PROVENANCE_PREFIX):
        report.stored += 1
        report.provenance_stored += 1
        want = referenced.get(key)
        if want is None:
            report.unreferenced.append(key)
            continue
        seen.add(key)
        _row, sha, want_size = want
        if sha is None:
            continue
        if (want_size is not None and size != want_size) or (
            check_hashes and _digest(blobs, key) != sha
        ):
            report.corrupt.append(key)
    report.missing = sorted([*report.missing, *(recorded - seen)])
    report.corrupt.sort()
    report.unreferenced.sort()


async def repair_provenance(
    client: PyPIClient,
    blobs: BlobStore,
    report: VerifyReport,
    referenced: ProvenanceRefs,
    record: Callable[[list[Stored], list[PublisherRow]], None],
    *,
    progress: Progress = no_progress,
) -> None:
    """Fetch again the provenance objects ``report`` found missing or corrupt (corrupt ones
    are removed first), as a sync fetches them: checked, then recorded."""
    keys = sorted(k for k in set(report.missing) | set(report.corrupt) if k in referenced)
    for key in keys:
        if key in report.corrupt:
            await asyncio.to_thread(blobs.delete, key)
    rows = [referenced[k][0] for k in keys]
    files = FilesReport()
    await mirror_provenance(client, blobs, rows, record, files, progress=progress)
    report.failed.update(files.failed)
    failed = set(files.failed)
    report.repaired += [
        k for k, r in zip(keys, rows, strict=True) if f"{r[0]}: {r[2]} (provenance)" not in failed
    ]
