"""Issue 10, defect 11 (serve under load) and the serve parts of defect 13: ``serve`` on
uvicorn with keep-alive, an idle timeout, a real backlog, HTTP Range on files, a graceful stop
on SIGTERM, 404/414 for over-long names (never a dropped connection), and one clear line with
exit 2 on a busy port."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.pypi import ClientConfig
from pypi_assets.serve import MirrorServer, parse_range
from pypi_assets.store.blobs import LocalBlobStore, blob_key, open_blob_store
from pypi_assets.sync.run import run_sync
from pypi_assets.sync.settings import Settings

from .helpers import FAST, PYTHON, make_config

HEX = "ab" * 32


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FakeUpstream]]:
    """A synced mirror (pages, JSON API, files) of a small fake upstream."""
    web = tmp_path_factory.mktemp("serve") / "web"
    with FakeUpstream(FakeIndex.generate(6)) as up:
        settings = Settings(upstream=up.url, db=web.parent / "m.duckdb", blobs=str(web))
        report = asyncio.run(run_sync(settings, make_config(), client_overrides=FAST))
        assert report.ok, report.failures
        yield web, up


def _files(web: Path, up: FakeUpstream) -> list[tuple[str, bytes]]:
    """``(url path, content)`` of every upstream file the mirror stored."""
    out = [
        ("/" + f.path, f.content)
        for norm in up.index.projects
        for release in up.index.releases(norm).values()
        for f in release.files
        if (web / f.path).is_file()
    ]
    assert out
    return out


def _blob(web: Path, name: str, data: bytes) -> str:
    key = blob_key(name, None, hashlib.sha256(data).hexdigest())
    (web / key).parent.mkdir(parents=True, exist_ok=True)
    (web / key).write_bytes(data)
    return "/" + key


def _response(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read one HTTP/1.1 response with a Content-Length: ``(head, body)``."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?i)content-length: (\d+)", head)
    assert m
    while len(body) < int(m.group(1)):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head, body


# ---------------------------------------------------------------------- load
def test_200_concurrent_clients_all_get_correct_answers(
    mirror: tuple[Path, FakeUpstream],
) -> None:
    web, up = mirror
    files = _files(web, up)
    projects = list(up.index.projects)

    async def client(i: int, srv: MirrorServer, go: asyncio.Event) -> list[str]:
        wrong = []
        # a client of its own each (its own connection); no TLS here, so no CA bundle to load
        async with httpx.AsyncClient(base_url=srv.url, timeout=60, verify=False) as c:
            await go.wait()
            r = await c.get("/simple/")
            if r.status_code != 200 or r.headers["X-PyPI-Last-Serial"] != str(up.index.serial):
                wrong.append(f"{i}: /simple/ {r.status_code}")
            norm = projects[i % len(projects)]
            r = await c.get(
                f"/simple/{norm}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
            )
            if r.status_code != 200 or r.json()["name"] != norm:
                wrong.append(f"{i}: /simple/{norm}/ {r.status_code}")
            path, content = files[i % len(files)]
            r = await c.get(path)
            if r.status_code != 200 or r.content != content:
                wrong.append(f"{i}: {path} {r.status_code}")
        return wrong

    async def main(srv: MirrorServer) -> list[str]:
        go = asyncio.Event()
        tasks = [asyncio.create_task(client(i, srv, go)) for i in range(200)]
        await asyncio.sleep(0.5)
        go.set()  # all 200 at once
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return [
            repr(r) if isinstance(r, BaseException) else line
            for r in results
            for line in ([r] if isinstance(r, BaseException) else r)
        ]

    with MirrorServer(web=web, blobs=LocalBlobStore(web)) as srv:
        errors = asyncio.run(main(srv))
    assert errors == []


def test_keep_alive_and_idle_connections_closed_after_the_timeout(
    mirror: tuple[Path, FakeUpstream],
) -> None:
    web, _up = mirror
    with MirrorServer(web=web, blobs=LocalBlobStore(web), keepalive_timeout=0.3) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            for _ in range(2):  # two requests on one connection: keep-alive
                sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
                head, body = _response(sock)
                assert head.startswith(b"HTTP/1.1 200") and b"<html" in body.lower()
            # then idle: the server closes it (recv returns b"" long before the 10 s deadline)
            assert sock.recv(1) == b""
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            assert sock.recv(1) == b""  # a client that connects and says nothing: closed too
        assert httpx.get(f"{srv.url}/simple/").status_code == 200  # the server is fine


def test_partial_request_headers_are_closed_after_the_header_timeout(tmp_path: Path) -> None:
    """A slow-header attack: connections that send part of a request's headers and then
    nothing, or trickle them, are closed (they would hold a file descriptor each for ever),
    while a complete request, and a slow download longer than the timeout, are served."""
    web = tmp_path / "web"
    (web / "simple").mkdir(parents=True)
    (web / "simple" / "index.v1_html").write_text("<html><body></body></html>")
    data = os.urandom(8 * 1024 * 1024)  # more than the socket buffers hold
    path = _blob(web, "big-1.0.tar.gz", data)
    srv = MirrorServer(web=web, blobs=LocalBlobStore(web), keepalive_timeout=30, header_timeout=0.5)
    with srv:
        partial = [socket.create_connection(("127.0.0.1", srv.port), timeout=20) for _ in range(20)]
        try:
            for sock in partial:
                sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n")
            with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as trickle:
                # a byte now and then: each one used to restart the wait
                for byte in b"GET /simple/ HTTP/1.1\r\n":
                    try:
                        trickle.sendall(bytes([byte]))
                    except OSError:
                        break  # already closed
                    time.sleep(0.1)
                assert trickle.recv(1) == b""
            for sock in partial:
                # closed by the server long before the 20 s socket timeout (and the 30 s
                # keep-alive timeout, which is what bounded them before: nothing)
                assert sock.recv(1) == b""
        finally:
            for sock in partial:
                sock.close()
        # a complete request on another connection is answered
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
            sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = _response(sock)
            assert head.startswith(b"HTTP/1.1 200") and b"<html" in body
            # a download read slowly, for longer than the header timeout, is not cut
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            time.sleep(1.5)
            head, body = _response(sock)
            assert head.startswith(b"HTTP/1.1 200")
            assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


# ---------------------------------------------------------------------- Range
def test_parse_range() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 5)
    assert parse_range("bytes=7-", 10) == (7, 10)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=-30", 10) == (0, 10)
    assert parse_range("bytes=5-99", 10) == (5, 10)
    assert parse_range("bytes=10-", 10) is False
    assert parse_range("bytes=-0", 10) is False
    assert parse_range("bytes=0-", 0) is False
    for ignored in ("bytes=4-2", "bytes=0-1,3-4", "items=0-1", "bytes=-", "bytes=a-b"):
        assert parse_range(ignored, 10) is None, ignored


class _StreamOnly:
    """A store that can only stream a blob from its start (no local path, no ranges)."""

    def __init__(self, inner: LocalBlobStore) -> None:
        self.inner = inner
        self.description = "stream-only"

    def size(self, key: str) -> int | None:
        return self.inner.size(key)

    def read(self, key: str) -> Iterator[bytes]:
        with self.inner.local_path(key).open("rb") as f:  # type: ignore[union-attr]
            while chunk := f.read(1000):  # small chunks: ranges cross chunk borders
                yield chunk

    def local_path(self, key: str) -> Path | None:
        return None


@pytest.mark.parametrize("store", ["local", "stream-only"])
def test_range_requests_on_files(tmp_path: Path, store: str) -> None:
    web = tmp_path / "web"
    data = os.urandom(3 * 256 * 1024 + 12345)  # larger than one read chunk
    path = _blob(web, "big-1.0.tar.gz", data)
    size = len(data)
    blobs = LocalBlobStore(web) if store == "local" else _StreamOnly(LocalBlobStore(web))
    with MirrorServer(web=web, blobs=blobs) as srv, httpx.Client(base_url=srv.url) as c:  # type: ignore[arg-type]
        full = c.get(path)
        assert full.status_code == 200 and full.content == data
        assert full.headers["Accept-Ranges"] == "bytes"
        assert c.head(path).headers["Accept-Ranges"] == "bytes"
        cases = {
            "bytes=0-9": (0, 10),
            "bytes=1000-299999": (1000, 300000),
            f"bytes={size - 7}-": (size - 7, size),
            "bytes=-100": (size - 100, size),
            f"bytes=5-{size + 1000}": (5, size),
        }
        for header, (start, end) in cases.items():
            r = c.get(path, headers={"Range": header})
            assert r.status_code == 206, header
            assert r.content == data[start:end], header
            assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}", header
            assert r.headers["Content-Length"] == str(end - start)
        for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
            r = c.get(path, headers={"Range": header})
            assert r.status_code == 416, header
            assert r.headers["Content-Range"] == f"bytes */{size}"
        # a resumed download: the first part, then the rest from where it stopped
        head = c.get(path, headers={"Range": "bytes=0-99999"}).content
        rest = c.get(path, headers={"Range": f"bytes={len(head)}-"}).content
        assert head + rest == data
        # several ranges, or If-Range (we send no validator): the whole file, 200
        assert c.get(path, headers={"Range": "bytes=0-1,5-6"}).content == data
        r = c.get(path, headers={"Range": "bytes=0-1", "If-Range": '"x"'})
        assert r.status_code == 200 and r.content == data
        # pages are not ranged
        assert c.get("/packages/aa/bb/cc/x.whl", headers={"Range": "bytes=0-1"}).status_code == 404


def test_range_requests_on_an_s3_store(tmp_path: Path) -> None:
    from .blobs_helpers import moto_s3

    data = os.urandom(300_000)
    with moto_s3("mirror") as s3:
        store = open_blob_store("s3://mirror/pypi", s3=s3)
        key = blob_key("s3file-1.0.tar.gz", None, hashlib.sha256(data).hexdigest())
        (tmp_path / "part").write_bytes(data)
        assert store.put_file(key, tmp_path / "part")
        (tmp_path / "web").mkdir()
        with MirrorServer(web=tmp_path / "web", blobs=store) as srv, httpx.Client() as c:
            url = f"{srv.url}/{key}"
            assert c.get(url).content == data
            r = c.get(url, headers={"Range": "bytes=1000-1999"})
            assert r.status_code == 206 and r.content == data[1000:2000]
            r = c.get(url, headers={"Range": "bytes=-10"})
            assert r.status_code == 206 and r.content == data[-10:]
            assert c.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416


# ---------------------------------------------------------------------- lazy
def test_lazy_fetches_each_selected_file_once_under_concurrency(tmp_path: Path) -> None:
    web, db = tmp_path / "web", tmp_path / "m.duckdb"
    with FakeUpstream(FakeIndex.generate(4)) as up:
        settings = Settings(upstream=up.url, db=db, blobs=str(web))
        report = asyncio.run(run_sync(settings, make_config(), client_overrides=FAST, lazy=True))
        assert report.ok and not (web / "packages").exists()
        norm = next(iter(up.index.projects))
        f = next(f for r in up.index.releases(norm).values() for f in r.files)
        cfg = ClientConfig(upstream=up.url, **FAST)  # type: ignore[arg-type]
        before = up.counts["file"]
        with MirrorServer(
            web=web, blobs=LocalBlobStore(web), db=db, lazy=True, client_config=cfg
        ) as srv:

            async def get_all() -> list[httpx.Response]:
                async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:
                    return list(await asyncio.gather(*(c.get("/" + f.path) for _ in range(20))))

            answers = asyncio.run(get_all())
            assert [r.status_code for r in answers] == [200] * 20
            assert all(r.content == f.content for r in answers)
            assert up.counts["file"] == before + 1  # one upstream fetch for 20 requests
            assert srv.fetched == [f.path]
            # a range of a lazily fetched file, then a key the selection does not list
            r = httpx.get(f"{srv.url}/{f.path}", headers={"Range": "bytes=0-3"})
            assert r.status_code == 206 and r.content == f.content[:4]
            unlisted = f"/packages/{HEX[:2]}/{HEX[2:4]}/{HEX[4:]}/nope-1.0.tar.gz"
            assert httpx.get(srv.url + unlisted).status_code == 404
        assert up.counts["file"] == before + 1


# ---------------------------------------------------------------------- hostile names
def test_overlong_names_get_404_and_the_connection_survives(
    mirror: tuple[Path, FakeUpstream],
) -> None:
    web, up = mirror
    norm = next(iter(up.index.projects))
    path, content = _files(web, up)[0]
    prefix = path.rsplit("/", 1)[0]  # an existing packages/aa/bb/<60 hex> directory
    long_paths = [
        f"{prefix}/{'a' * 250}.whl.metadata",  # a 259-byte file name on disk: ENAMETOOLONG
        f"{prefix}/{'a' * 250}.whl",
        f"/pypi/{norm}/{'1' * 300}/json",
        f"/simple/{'a' * 250}/",
        f"/pypi/{'a' * 250}/json",
        f"/packages/{HEX[:2]}/{HEX[2:4]}/{HEX[4:]}/{'b' * 300}.tar.gz",
        f"/pypi/{norm}/1%00/json",  # and a NUL byte, which no path may hold
        f"{prefix}/a%00.whl",
    ]
    with MirrorServer(web=web, blobs=LocalBlobStore(web)) as srv:
        with httpx.Client(base_url=srv.url) as c:
            for bad in long_paths:
                r = c.get(bad)
                assert r.status_code in (404, 414), bad
                # the same keep-alive connection answers the next request
                again = c.get(path)
                assert again.status_code == 200 and again.content == content
            assert c.get("/simple/" + "a" * 5000 + "/").status_code in (404, 414)
            assert c.get(f"/simple/{norm}/").status_code == 200
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(f"GET {long_paths[0]} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head, _body = _response(sock)
            assert head.startswith(b"HTTP/1.1 404")
            sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(sock)[0].startswith(b"HTTP/1.1 200")


# ---------------------------------------------------------------------- the CLI
def _serve_cmd(web: Path, port: int) -> list[str]:
    return [PYTHON, "-m", "pypi_assets.cli", "serve", "--blobs", str(web), "--port", str(port)]


def test_busy_port_is_one_line_and_exit_2(tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "web").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run(
            _serve_cmd(tmp_path / "web", port),
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=60,
        )
    assert p.returncode == 2
    assert "mirror on" not in p.stdout  # it never announced serving
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "address already in use" in lines[0]


def test_sigterm_lets_an_inflight_download_finish_and_exits_0(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    web = tmp_path / "web"
    data = os.urandom(16 * 1024 * 1024)  # more than the socket buffers hold
    path = _blob(web, "huge-1.0.tar.gz", data)
    proc = subprocess.Popen(
        _serve_cmd(web, 0),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/simple/", line)
        assert m, line
        port = int(m.group(1))
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.settimeout(30)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got = sock.recv(65536)
            assert got.startswith(b"HTTP/1.1 200")
            proc.send_signal(signal.SIGTERM)
            # the listener closes: new connections are refused (poll until then)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the server kept accepting connections after SIGTERM")
            assert proc.poll() is None  # still sending the response in flight
            while chunk := sock.recv(1 << 20):
                got += chunk
        _head, body = got.split(b"\r\n\r\n", 1)
        assert (
            len(body) == len(data)
            and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        )
        assert proc.wait(timeout=60) == 0
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
