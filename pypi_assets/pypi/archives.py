"""One member of a release file, read without downloading the file: a wheel's
``*.dist-info/METADATA`` (or a zip sdist's ``PKG-INFO``) with HTTP range requests, as pip's
lazy wheel does, and an sdist's ``PKG-INFO`` from a tar stream read only until it is found.

No I/O of its own: the zip reader asks a ``fetch(start, end)`` callback for byte ranges, the
tar reader reads a blocking file object. Whatever cannot be read raises
:class:`~.errors.MetadataError` (the caller falls back to another source).

Zip, by range: the end of central directory is in the file's tail (first request, a
fraction of the file); the central directory just before it (in that tail for most wheels,
else a second request); then the one member's local header and compressed data (the last
request), inflated with zlib. Ranges already held are not asked for again.
"""

from __future__ import annotations

import lzma
import re
import struct
import tarfile
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO

from .errors import MetadataError

__all__ = [
    "MAX_MEMBER",
    "ZipMember",
    "metadata_member",
    "pkg_info_member",
    "read_zip_member",
    "tail_length",
    "tar_pkg_info",
]

#: A member larger than this (compressed or not) is not metadata: refused.
MAX_MEMBER = 16 * 1024 * 1024
#: The first request's length: the file's last 64 KiB at most, and never more than a
#: quarter of it (a small wheel then costs three requests but still less than its size).
MAX_TAIL = 64 * 1024

_EOCD = struct.Struct("<4sHHHHIIH")  # 22 bytes
_LOCATOR = struct.Struct("<4sIQI")  # zip64 end of central directory locator, 20 bytes
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")  # zip64 end of central directory record, 56 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_U16, _U32 = 0xFFFF, 0xFFFFFFFF

Fetch = Callable[[int, int], Awaitable[bytes]]


def tail_length(size: int) -> int:
    """The first range's length for a file of ``size`` bytes."""
    return max(min(MAX_TAIL, size // 4), min(size, _EOCD.size))


@dataclass(frozen=True, slots=True)
class ZipMember:
    """A central directory entry: what is needed to read the member."""

    name: str
    method: int
    crc: int
    csize: int
    usize: int
    offset: int


class _Held:
    """The byte ranges of one file fetched so far; a range is asked for only where it is
    not held (a range that runs into a held one is cut short and joined to it)."""

    def __init__(self, fetch: Fetch, size: int) -> None:
        self._fetch = fetch
        self.size = size
        self._parts: dict[int, bytes] = {}
        self.requests = 0

    async def get(self, start: int, end: int) -> bytes:
        if not 0 <= start <= end <= self.size:
            raise MetadataError(f"zip: range {start}-{end} outside the file ({self.size} bytes)")
        for s, data in self._parts.items():
            if s <= start and end <= s + len(data):
                return data[start - s : end - s]
        joined = next((s for s, d in self._parts.items() if start < s <= end <= s + len(d)), None)
        stop = end if joined is None else joined
        data = await self._fetch(start, stop)
        self.requests += 1
        if len(data) != stop - start:
            raise MetadataError(f"zip: asked for {stop - start} bytes, got {len(data)}")
        if joined is not None:
            data += self._parts.pop(joined)
        self._parts[start] = data
        return data[: end - start]


def _find_eocd(tail: bytes, tail_start: int) -> tuple[int, tuple[int, ...]]:
    """The end of central directory record in the file's tail: its offset and fields."""
    pos = len(tail)
    while (pos := tail.rfind(b"PK\x05\x06", 0, pos)) >= 0:
        if pos + _EOCD.size <= len(tail):
            fields = _EOCD.unpack_from(tail, pos)
            if pos + _EOCD.size + fields[7] == len(tail):
                return tail_start + pos, fields
    raise MetadataError("zip: no end of central directory record (not a zip file?)")


async def _directory_span(held: _Held, eocd_at: int, fields: tuple[int, ...]) -> tuple[int, int]:
    """The central directory's offset and size, through the zip64 records when needed."""
    _sig, _disk, _cd_disk, _n_disk, n_total, cd_size, cd_offset, _clen = fields
    if n_total != _U16 and cd_size != _U32 and cd_offset != _U32:
        return cd_offset, cd_size
    if eocd_at < _LOCATOR.size:
        raise MetadataError("zip64: no locator")
    sig, _d, at, _n = _LOCATOR.unpack(await held.get(eocd_at - _LOCATOR.size, eocd_at))
    if sig != b"PK\x06\x07":
        raise MetadataError("zip64: bad locator")
    record = _EOCD64.unpack(await held.get(at, at + _EOCD64.size))
    if record[0] != b"PK\x06\x06":
        raise MetadataError("zip64: bad end of central directory record")
    return record[9], record[8]


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """The sizes and offset a zip64 extra field (id 1) gives in place of 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if kind == 1:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            usize = values.pop(0) if usize == _U32 and values else usize
            csize = values.pop(0) if csize == _U32 and values else csize
            offset = values.pop(0) if offset == _U32 and values else offset
        pos += 4 + length
    return usize, csize, offset


def parse_directory(data: bytes) -> list[ZipMember]:
    """Every entry of a central directory."""
    out: list[ZipMember] = []
    pos = 0
    while pos + _CENTRAL.size <= len(data):
        f = _CENTRAL.unpack_from(data, pos)
        if f[0] != b"PK\x01\x02":
            raise MetadataError("zip: bad central directory entry")
        flags, method, crc, csize, usize, nlen, xlen, clen, offset = (
            f[3], f[4], f[7], f[8], f[9], f[10], f[11], f[12], f[16],
        )  # fmt: skip
        start = pos + _CENTRAL.size
        raw = data[start : start + nlen]
        name = raw.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        extra = data[start + nlen : start + nlen + xlen]
        usize, csize, offset = _zip64_extra(extra, usize, csize, offset)
        out.append(ZipMember(name, method, crc, csize, usize, offset))
        pos = start + nlen + xlen + clen
    return out


def _inflate(member: ZipMember, data: bytes) -> bytes:
    if member.method == 0:
        out = data
    elif member.method == 8:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            out = inflater.decompress(data, MAX_MEMBER + 1)
        except zlib.error as exc:
            raise MetadataError(f"zip: {member.name}: corrupt deflate data ({exc})") from None
    else:
        raise MetadataError(f"zip: {member.name}: compression method {member.method}")
    if len(out) > MAX_MEMBER or len(out) != member.usize:
        raise MetadataError(f"zip: {member.name}: not the size the directory states")
    if zlib.crc32(out) != member.crc:
        raise MetadataError(f"zip: {member.name}: CRC does not match")
    return out


async def _member_bytes(held: _Held, member: ZipMember) -> bytes:
    """The member's local header and data (one range, a second if its local extra field is
    longer than its central one), inflated."""
    if member.csize > MAX_MEMBER or member.usize > MAX_MEMBER:
        raise MetadataError(f"zip: {member.name} is larger than {MAX_MEMBER} bytes")
    guess = _LOCAL.size + len(member.name.encode()) + 64 + member.csize
    head = await held.get(member.offset, min(member.offset + guess, held.size))
    if len(head) < _LOCAL.size or head[:4] != b"PK\x03\x04":
        raise MetadataError(f"zip: {member.name}: bad local header")
    nlen, xlen = _LOCAL.unpack_from(head)[9:11]
    start = member.offset + _LOCAL.size + nlen + xlen
    data = await held.get(start, start + member.csize)
    return _inflate(member, data)


async def read_zip_member(
    fetch: Fetch, size: int, pick: Callable[[list[str]], str | None]
) -> tuple[str, bytes, int]:
    """The member of a zip file of ``size`` bytes that ``pick`` chooses from the names in
    its central directory: ``(name, bytes, requests made)``."""
    if size < _EOCD.size:
        raise MetadataError("zip: file too small")
    held = _Held(fetch, size)
    first = tail_length(size)
    tail = await held.get(size - first, size)
    eocd_at, fields = _find_eocd(tail, size - first)
    cd_offset, cd_size = await _directory_span(held, eocd_at, fields)
    if cd_offset + cd_size > eocd_at or cd_size > MAX_MEMBER:
        raise MetadataError("zip: central directory out of place")
    members = parse_directory(await held.get(cd_offset, cd_offset + cd_size))
    name = pick([m.name for m in members])
    if name is None:
        raise MetadataError("zip: no metadata member")
    member = next(m for m in members if m.name == name)
    return name, await _member_bytes(held, member), held.requests


def _dist_prefix(filename: str) -> str:
    return filename.split("-", 2)[0].lower().replace("-", "_").replace(".", "_")


def metadata_member(filename: str) -> Callable[[list[str]], str | None]:
    """A wheel's ``<name>-<version>.dist-info/METADATA``: the only one, or the one whose
    name is the wheel's."""

    def pick(names: list[str]) -> str | None:
        found = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(found) > 1:
            mine = [n for n in found if _dist_prefix(n) == _dist_prefix(filename)]
            found = mine if len(mine) == 1 else []
        return found[0] if len(found) == 1 else None

    return pick


def pkg_info_member(names: list[str]) -> str | None:
    """A zip sdist's ``<root>/PKG-INFO`` (an egg's ``EGG-INFO/PKG-INFO``)."""
    found = [n for n in names if re.fullmatch(r"[^/]+/PKG-INFO", n)]
    return found[0] if len(found) == 1 else None


def tar_pkg_info(fileobj: IO[bytes], mode: str) -> bytes:
    """The top-level ``PKG-INFO`` of a tar stream (``mode``: ``r|gz``, ``r|bz2``, ``r|xz``),
    read only until it is found: what follows it is never read. An egg-info's ``PKG-INFO``
    stands in when the archive has no top-level one."""
    fallback: bytes | None = None
    try:
        with tarfile.open(fileobj=fileobj, mode=mode) as archive:  # type: ignore[call-overload]
            for info in archive:
                if not info.isfile() or not info.name.endswith("PKG-INFO"):
                    continue
                if info.size > MAX_MEMBER:
                    raise MetadataError(f"sdist: {info.name} is larger than {MAX_MEMBER} bytes")
                top = re.fullmatch(r"(\./)?[^/]+/PKG-INFO", info.name) is not None
                if not top and (fallback is not None or ".egg-info/" not in info.name):
                    continue
                member = archive.extractfile(info)
                data = member.read() if member is not None else b""
                if top:
                    return data
                fallback = data
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise MetadataError(f"sdist: unreadable archive ({type(exc).__name__}: {exc})") from None
    if fallback is None:
        raise MetadataError("sdist: no PKG-INFO")
    return fallback
