"""One exception hierarchy (pypi_assets/pypi/errors.py), the CLI's exit codes mapped by it,
and file downloads through the client's one public streaming call (``stream_to``): the same
retry policy as every other request, resuming with ``Range``."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pypi_assets import cli
from pypi_assets.filters.config import ConfigError
from pypi_assets.pypi import ClientConfig, PyPIClient, errors
from pypi_assets.pypi.download import download
from pypi_assets.store.duckdb_store import ListingShrank
from pypi_assets.sync.files import TooManyDeletions
from pypi_assets.sync.index import IndexOwnedElsewhere
from pypi_assets.sync.listing import UpstreamFault
from pypi_assets.sync.settings import SettingsError

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------ the tree
E = errors

#: class → (the branch it belongs to, its exit code and message from ``classify`` before the
#: tree existed: ``None`` is "a bug, keep the traceback" or "handled by its caller").
TREE: dict[type[BaseException], tuple[type[BaseException], tuple[int, str] | None]] = {
    E.UpstreamError: (E.UpstreamError, (3, "upstream unreachable: x")),
    E.NotFound: (E.UpstreamError, (3, "upstream unreachable: x")),
    E.StaleResponse: (E.UpstreamError, (3, "upstream unreachable: x")),
    E.DeadlineExceeded: (E.UpstreamError, (3, "upstream unreachable: x")),
    E.LimitExceeded: (E.UpstreamError, (3, "upstream unreachable: x")),
    UpstreamFault: (E.UpstreamError, (3, "upstream fault: x")),
    E.InvalidResponse: (E.InvalidResponse, (3, "upstream unreachable: x")),
    E.IntegrityError: (E.InvalidResponse, (3, "upstream unreachable: x")),
    E.UnsafeValue: (E.InvalidData, None),
    E.SimpleParseError: (E.InvalidData, None),
    E.MetadataError: (E.InvalidData, None),
    E.XmlRpcError: (E.InvalidData, None),
    E.ProjectError: (E.InvalidData, None),
    SettingsError: (E.ConfigurationError, (2, "x")),
    cli.UsageError: (E.ConfigurationError, (2, "x")),
    E.Refused: (E.Refused, None),
    IndexOwnedElsewhere: (E.Refused, None),
    TooManyDeletions: (E.Refused, None),
    E.NotModified: (E.PyPIAssetsError, None),
}


def _instance(cls: type[BaseException]) -> BaseException:
    if cls is E.NotModified:
        return E.NotModified("x", 1)
    return cls("x")


@pytest.mark.parametrize("cls", list(TREE), ids=lambda c: c.__name__)
def test_each_class_is_under_the_root_and_its_branch(cls: type[BaseException]) -> None:
    branch, _code = TREE[cls]
    assert issubclass(cls, E.PyPIAssetsError)
    assert issubclass(cls, branch)
    others = {E.UpstreamError, E.InvalidData, E.ConfigurationError, E.Refused} - {branch}
    if branch is E.InvalidResponse:
        others -= {E.UpstreamError}
    assert not any(issubclass(cls, o) for o in others), "one branch only"


@pytest.mark.parametrize("cls", list(TREE), ids=lambda c: c.__name__)
def test_classify_gives_each_class_the_exit_code_it_had(cls: type[BaseException]) -> None:
    assert cli.classify(_instance(cls)) == TREE[cls][1]


def test_the_classes_with_arguments_of_their_own() -> None:
    assert issubclass(ConfigError, E.ConfigurationError)
    assert cli.classify(ConfigError("f", "s", "k", "p")) == (2, "f: [s] k: p")
    shrank = ListingShrank(1, 2, 1, 0.1)
    assert isinstance(shrank, E.Refused) and cli.classify(shrank) is None


def test_the_bases_callers_rely_on_are_kept() -> None:
    """``except ValueError`` and ``except RuntimeError`` written before the tree still mean
    what they meant."""
    value_errors: list[type[Exception]] = [E.UnsafeValue, E.SimpleParseError, E.MetadataError]
    value_errors += [E.XmlRpcError, E.ProjectError, ConfigError, SettingsError, ListingShrank]
    assert all(issubclass(c, ValueError) for c in (*value_errors, IndexOwnedElsewhere))
    assert all(issubclass(c, RuntimeError) for c in (E.UpstreamError, E.XmlRpcError))
    assert issubclass(E.ProjectError, RuntimeError)
    assert not issubclass(E.InvalidData, E.UpstreamError)  # a parser's verdict is not retried


def test_old_names_still_import_from_where_they_were() -> None:
    from pypi_assets.pypi import client, download, fetch, limits, metadata, names, simple, xmlrpc

    moved = {
        limits: ("UpstreamError", "InvalidResponse", "LimitExceeded", "DeadlineExceeded"),
        client: ("NotFound", "StaleResponse", "UpstreamError"),
        names: ("UnsafeValue",),
        simple: ("SimpleParseError",),
        metadata: ("MetadataError",),
        fetch: ("NotModified", "ProjectError"),
        xmlrpc: ("XmlRpcError",),
        download: ("IntegrityError",),
    }
    for module, names_ in moved.items():
        for name in names_:
            assert getattr(module, name) is getattr(errors, name), f"{module.__name__}.{name}"


def test_the_package_exports_the_tree() -> None:
    import pypi_assets.pypi as pkg

    for name in errors.__all__:
        assert getattr(pkg, name) is getattr(errors, name)
        assert name in pkg.__all__


# ------------------------------------------------------------------------ downloads
def test_download_uses_only_the_clients_public_api() -> None:
    tree = ast.parse((ROOT / "pypi_assets/pypi/download.py").read_text(encoding="utf-8"))
    private = [
        f"line {n.lineno}: client.{n.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id == "client"
        and n.attr.startswith("_")
    ]
    assert private == []
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"_retry_after", "_RETRY_STATUS"}


class _Stream(httpx.AsyncByteStream):
    """A body sent in pieces, optionally cut by a transport error after them."""

    def __init__(self, pieces: list[bytes], cut: bool = False) -> None:
        self.pieces, self.cut = pieces, cut

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.cut:
            raise httpx.ReadError("connection reset")


Answer = Callable[[httpx.Request], httpx.Response]


class _Scripted(httpx.AsyncBaseTransport):
    """Answers requests in turn from a script, recording each request's Range."""

    def __init__(self, script: list[Answer]) -> None:
        self.script = list(script)
        self.ranges: list[str | None] = []
        self.urls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.ranges.append(request.headers.get("Range"))
        self.urls.append(str(request.url))
        return self.script.pop(0)(request)


DATA = bytes(range(256)) * 1024  # 256 KiB: four of the chunks download reads
SHA = hashlib.sha256(DATA).hexdigest()
URL = "http://127.0.0.1:9/packages/x-1.tar.gz"


def _status(code: int, headers: dict[str, str] | None = None) -> Answer:
    return lambda _r: httpx.Response(code, headers=headers or {}, stream=_Stream([]))


def _part(stop: int | None = None, cut: bool = False, code: int = 206) -> Answer:
    """The bytes from the request's ``Range`` to ``stop``; ``cut``: then a transport error."""

    def answer(request: httpx.Request) -> httpx.Response:
        start = int(request.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
        return httpx.Response(code, stream=_Stream([DATA[start:stop]], cut))

    return answer


def _run(transport: _Scripted, sink: io.BytesIO, **cfg: Any) -> tuple[int, PyPIClient, list[float]]:
    waits: list[float] = []

    async def main() -> tuple[int, PyPIClient]:
        config = ClientConfig(upstream="http://127.0.0.1:9", backoff=0.001, **cfg)
        async with PyPIClient(config, transport=transport) as client:
            got = await download(client, URL, sink, sha256=SHA, size=len(DATA))
        return got, client

    real_sleep = asyncio.sleep

    async def sleep(seconds: float, *args: Any) -> Any:
        waits.append(seconds)
        return await real_sleep(0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("pypi_assets.pypi.client.asyncio.sleep", sleep)
        got, client = asyncio.run(main())
    return got, client, waits


def test_download_retries_and_resumes_through_the_public_call() -> None:
    transport = _Scripted(
        [
            _status(429, {"Retry-After": "7"}),  # waits what it is told
            _part(100_000),  # a short body, ended cleanly: resumed after it
            _part(250_000, cut=True),  # cut mid-body: resumed after the whole chunks kept
            _part(),
        ]
    )
    sink = io.BytesIO(DATA[:300])  # an earlier attempt left 300 bytes
    got, client, waits = _run(transport, sink)
    assert got == len(DATA) and sink.getvalue() == DATA
    kept = 100_000 + 2 * (1 << 16)  # two 64 KiB chunks of the cut body had arrived
    assert transport.ranges == ["bytes=300-", "bytes=300-", "bytes=100000-", f"bytes={kept}-"]
    assert waits[0] == 7.0 and len(waits) == 3  # Retry-After, then two backoffs
    assert client.stats.count["file"] == 4 and client.stats.retries == 3
    assert client.stats.bytes == len(DATA) - 300


def test_download_gives_up_after_the_retries_like_any_request() -> None:
    transport = _Scripted([_status(503)] * 3)
    with pytest.raises(E.UpstreamError, match="giving up after 3 attempts: HTTP 503"):
        _run(transport, io.BytesIO(), retries=2)
    assert transport.ranges == [None, None, None]


@pytest.mark.parametrize(
    ("answer", "raised", "match"),
    [
        (_status(404), E.NotFound, "404 Not Found"),
        (_status(418), E.UpstreamError, "unexpected HTTP 418"),
        (_part(code=200), None, ""),
        (lambda _r: httpx.Response(200, stream=_Stream([DATA + b"x"])), E.IntegrityError, "larger"),
    ],
)
def test_download_answers_are_judged_once(
    answer: Answer, raised: type[Exception] | None, match: str
) -> None:
    transport = _Scripted([answer])
    if raised is None:
        assert _run(transport, io.BytesIO())[0] == len(DATA)
        return
    with pytest.raises(raised, match=match):
        _run(transport, io.BytesIO())
    assert len(transport.ranges) == 1  # never retried


def test_download_follows_redirects_only_to_allowed_hosts() -> None:
    def moved(to: str) -> Answer:
        return lambda _r: httpx.Response(302, headers={"Location": to}, stream=_Stream([]))

    transport = _Scripted([moved("/elsewhere/x-1.tar.gz"), _part(code=200)])
    assert _run(transport, io.BytesIO())[0] == len(DATA)
    assert transport.urls[1] == "http://127.0.0.1:9/elsewhere/x-1.tar.gz"
    transport = _Scripted([moved("http://evil.example/x-1.tar.gz")])
    with pytest.raises(E.UnsafeValue, match="not allowed"):
        _run(transport, io.BytesIO())
    assert len(transport.urls) == 1


def test_a_complete_file_is_not_fetched_again() -> None:
    transport = _Scripted([])
    got, client, _waits = _run(transport, io.BytesIO(DATA))
    assert got == len(DATA) and transport.urls == [] and client.stats.total == 0
