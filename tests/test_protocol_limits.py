"""Issue 10, defects 4, 8 and 9: the protocol boundary distrusts the upstream.

A malformed project (a size of 10**30, JSON nested 100,000 deep) fails alone and is named;
a bad root listing is an upstream error; bodies, versions and files are capped, requests and
the run have deadlines; undecodable METADATA is kept with U+FFFD and counted.
"""

from __future__ import annotations

import asyncio
import json
import re
import tracemalloc
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from pypi_assets.fake import FakeUpstream, Fault
from pypi_assets.pypi import ClientConfig, PyPIClient, UpstreamError
from pypi_assets.pypi.fetch import fetch_project

from .helpers import make_config, sync

DEEP = b"[" * 100_000 + b"]" * 100_000
JSON_CT = "application/vnd.pypi.simple.v1+json"


def _names(fake: FakeUpstream) -> list[str]:
    return sorted(fake.index.projects)


def _stored_projects(db: Path) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT DISTINCT project FROM distributions").fetchall()}
    finally:
        con.close()


def _client(fake: FakeUpstream, **kw: Any) -> PyPIClient:
    opts: dict[str, Any] = {"upstream": fake.url, "backoff": 0.01, "read_timeout": 2.0}
    opts.update(kw)
    return PyPIClient(ClientConfig(**opts))


def _no_xmlrpc(fake: FakeUpstream) -> None:
    fake.add_fault(Fault(path=r"^/pypi$", kind="status", status=500, times=1000))


# ----------------------------------------------------------------- defect 4: malformed values
def test_size_out_of_bigint_range_fails_that_project_alone(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    names = _names(fake)
    evil = names[3]
    rel = next(r for r in fake.index.releases(evil).values() if r.files)
    rel.files[0].overrides["size"] = 10**30
    db = tmp_path / "m.duckdb"
    report = sync(fake, db)
    assert set(report.refresh.failed) == {evil}
    # named as the JSON API is asked: by its display name (Warehouse redirects any other)
    display = fake.index.projects[evil].name
    assert display in report.refresh.failed[evil] and "size" in report.refresh.failed[evil]
    assert _stored_projects(db) == set(names) - {evil}


def test_deeply_nested_project_json_fails_that_project_alone(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    names = _names(fake)
    evil = names[5]
    display = fake.index.projects[evil].name  # the JSON API is asked by its display name
    fake.add_fault(
        Fault(
            path=rf"^/pypi/{re.escape(display)}/json$",
            kind="body",
            body=DEEP,
            times=100,
            ctype="application/json",
        )
    )
    db = tmp_path / "m.duckdb"
    report = sync(fake, db)
    assert set(report.refresh.failed) == {evil}
    assert "nested too deeply" in report.refresh.failed[evil]
    assert _stored_projects(db) == set(names) - {evil}


@pytest.mark.parametrize(
    "override",
    [
        {"upload_time_iso_8601": "0001-01-01T00:00:00+14:00", "upload_time": None},
        {"python_version": "\ud800"},
        {"yanked_reason": 1e400},
        # the JSON API's yanked is a boolean: a string "false" is not read as yanked
        {"yanked": "false"},
    ],
    ids=["upload-time", "lone-surrogate", "infinity", "yanked-string"],
)
def test_other_out_of_range_values_fail_that_project_alone(
    fake: FakeUpstream, tmp_path: Path, override: dict[str, Any]
) -> None:
    names = _names(fake)
    evil = names[7]
    rel = next(r for r in fake.index.releases(evil).values() if r.files)
    rel.files[0].overrides.update(override)
    db = tmp_path / "m.duckdb"
    report = sync(fake, db)
    assert set(report.refresh.failed) == {evil}
    assert evil in report.refresh.failed[evil] or "/pypi/" + evil in report.refresh.failed[evil]
    assert _stored_projects(db) == set(names) - {evil}


def _root(serial: int, projects: list[tuple[str, int]]) -> bytes:
    return json.dumps(
        {
            "meta": {"api-version": "1.4", "_last-serial": serial},
            "projects": [{"name": n, "_last-serial": s} for n, s in projects],
        }
    ).encode()


@pytest.mark.parametrize(
    "body",
    [
        _root(10**30, [("a", 1)]),
        _root(5, [("a", 10**30)]),
        b'{"meta": {"api-version": "1.4"}, "projects": ' + DEEP + b"}",
        DEEP,
    ],
    ids=["root-serial", "project-serial", "deep-projects", "deep-root"],
)
def test_bad_root_listing_is_an_upstream_error(fake: FakeUpstream, body: bytes) -> None:
    fake.add_fault(Fault(path=r"^/simple/$", kind="body", body=body, ctype=JSON_CT, times=10))
    _no_xmlrpc(fake)

    async def main() -> None:
        async with _client(fake) as c:
            await c.list_projects()

    with pytest.raises(UpstreamError, match="no usable project list"):
        asyncio.run(main())


def test_xmlrpc_listing_serial_out_of_range_is_an_upstream_error() -> None:
    big = "<value><int>" + "9" * 30 + "</int></value>"
    xml = (
        "<?xml version='1.0'?><methodResponse><params><param><value><struct><member>"
        f"<name>a</name>{big}</member></struct></value></param></params></methodResponse>"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(
                200, stream=httpx.ByteStream(xml.encode()), headers={"Content-Type": "text/xml"}
            )
        return httpx.Response(404, stream=httpx.ByteStream(b""))

    async def main() -> None:
        cfg = ClientConfig(upstream="http://127.0.0.1:9", retries=0)
        async with PyPIClient(cfg, transport=httpx.MockTransport(handler)) as c:
            await c.list_projects()

    with pytest.raises(UpstreamError, match="serial out of range"):
        asyncio.run(main())


def test_serial_header_out_of_range_is_an_upstream_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, stream=httpx.ByteStream(b""), headers={"X-PyPI-Last-Serial": str(10**30)}
        )

    async def main() -> None:
        cfg = ClientConfig(upstream="http://127.0.0.1:9", retries=0)
        async with PyPIClient(cfg, transport=httpx.MockTransport(handler)) as c:
            await c.last_serial()

    with pytest.raises(UpstreamError, match="out of range"):
        asyncio.run(main())


# ----------------------------------------------------------------- defect 8: unbounded work
def test_project_over_max_versions_fails_alone_before_its_version_requests(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    names = _names(fake)
    big = names[2]
    fake.index.add_many_releases(big, 300)
    db = tmp_path / "m.duckdb"
    config = make_config("[pypi_assets]\nmax_versions_per_project = 100\n")
    report = sync(fake, db, config)
    assert set(report.refresh.failed) == {big}
    assert "max_versions_per_project" in report.refresh.failed[big]
    assert big in report.refresh.failed[big]
    asked = sum(n for (_route, p), n in fake.per_project.items() if p == big)
    assert asked <= 3  # the project JSON (and the listing's HEAD at most), not 300 versions
    assert _stored_projects(db) == set(names) - {big}


def test_release_over_max_files_fails_alone(fake: FakeUpstream, tmp_path: Path) -> None:
    names = _names(fake)
    big = names[6]
    fake.index.add_many_releases(big, 2, files=30)
    db = tmp_path / "m.duckdb"
    report = sync(fake, db, make_config("[pypi_assets]\nmax_files_per_release = 20\n"))
    assert set(report.refresh.failed) == {big}
    assert "max_files_per_release" in report.refresh.failed[big]
    assert _stored_projects(db) == set(names) - {big}


def test_gzip_bomb_is_refused_at_the_cap_without_inflating_it(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    names = _names(fake)
    evil = names[4]
    bomb = bytes(64 * 1024 * 1024)  # 64 MiB of zeros, ~64 KiB on the wire
    fake.add_fault(Fault(path=rf"^/pypi/{evil}/json$", kind="gzip", body=bomb, times=100))

    async def main() -> str:
        cfg = ClientConfig(upstream=fake.url, backoff=0.01, max_body=1024 * 1024)
        async with PyPIClient(cfg) as c:
            try:
                await fetch_project(c, evil, None, None)
            except UpstreamError as exc:
                return str(exc)
        return ""

    tracemalloc.start()
    try:
        message = asyncio.run(main())
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "max_body_size" in message and evil in message
    assert peak < 16 * 1024 * 1024  # the cap is 1 MiB; the bomb inflates to 64 MiB
    # Through the configuration, in a sync: that project fails alone.
    db = tmp_path / "m.duckdb"
    report = sync(fake, db, make_config("[pypi_assets]\nmax_body_size = 1M\n"))
    assert set(report.refresh.failed) == {evil}
    assert "max_body_size" in report.refresh.failed[evil]
    assert _stored_projects(db) == set(names) - {evil}


def test_gzip_encoded_answers_still_work(fake: FakeUpstream) -> None:
    name = _names(fake)[0]
    fake.add_fault(Fault(path=rf"^/pypi/{name}/json$", kind="gzip", times=1))

    async def main() -> str:
        async with _client(fake) as c:
            return (await fetch_project(c, name, None, None)).name

    assert asyncio.run(main()) == name


def test_trickling_body_is_cut_at_the_global_timeout(fake: FakeUpstream, tmp_path: Path) -> None:
    names = _names(fake)
    slow = names[8]
    # One byte every 0.5 s, for 30 bytes: 15 s per attempt, where global-timeout (each
    # request's overall deadline, as in bandersnatch) allows 4.
    fake.add_fault(
        Fault(path=rf"^/pypi/{slow}/json$", kind="trickle", seconds=0.5, limit=30, times=100)
    )
    db = tmp_path / "m.duckdb"
    report = sync(fake, db, make_config("global-timeout = 4\n"))
    assert set(report.refresh.failed) == {slow}  # the request cut is named
    assert "global-timeout" in report.refresh.failed[slow]
    assert _stored_projects(db) == set(names) - {slow}  # the rest was stored


def test_run_timeout_bounds_the_whole_run(fake: FakeUpstream, tmp_path: Path) -> None:
    names = _names(fake)
    slow = names[8]
    fake.add_fault(
        Fault(path=rf"^/pypi/{slow}/json$", kind="trickle", seconds=0.5, limit=30, times=100)
    )
    db = tmp_path / "m.duckdb"
    config = make_config("global-timeout = 60\n[pypi_assets]\nrun_timeout = 6\n")
    with pytest.raises(UpstreamError, match="run_timeout") as info:
        sync(fake, db, config)
    assert f"/pypi/{slow}/json" in str(info.value)  # the request cut is named
    assert _stored_projects(db) == set(names) - {slow}  # the rest was stored


def test_request_deadline_covers_its_retries(fake: FakeUpstream) -> None:
    name = _names(fake)[0]
    fake.add_fault(
        Fault(path=rf"^/pypi/{name}/json$", kind="trickle", seconds=0.3, limit=20, times=100)
    )

    async def main() -> str:
        async with _client(fake, total_timeout=1.0, retries=5) as c:
            try:
                await fetch_project(c, name, None, None)
            except UpstreamError as exc:
                assert c.stats.count["project-json"] == 1  # no retry past the deadline
                return f"{type(exc).__name__}: {exc}"
        return ""

    message = asyncio.run(main())
    assert message.startswith("DeadlineExceeded") and f"/pypi/{name}/json" in message


# ----------------------------------------------------------------- defect 9: invalid UTF-8
def test_invalid_utf8_in_metadata_is_kept_as_replacement_characters_and_counted(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    names = _names(fake)
    target = None
    for n in names:
        for rel in fake.index.releases(n).values():
            for f in rel.files:
                if f.core_metadata and target is None:
                    target = (n, f)
    assert target is not None
    _name, f = target
    meta = f.metadata.decode()
    meta = meta.replace("Summary: ", "Summary: caf\udce9 ", 1).replace(
        "Author: ", "Author: Ren\udce9 ", 1
    )
    f.metadata = meta.encode("utf-8", "surrogateescape") + b"\nBody with \xff byte.\n"
    db = tmp_path / "m.duckdb"
    report = sync(fake, db)
    assert report.refresh.failed == {}
    con = duckdb.connect(str(db), read_only=True)
    try:
        summary, author, description, source = con.execute(
            "SELECT summary, author, description, metadata_source FROM distributions"
            " WHERE filename = ?",
            [f.filename],
        ).fetchone()  # type: ignore[misc]
    finally:
        con.close()
    assert source == "core-metadata"
    assert summary.startswith("caf\ufffd ")
    assert author is not None and author.startswith("Ren\ufffd ")
    assert description is not None and "Body with \ufffd byte." in description
    assert report.requests["repaired"] == {"metadata-invalid-utf8": 1}


def test_naive_and_aware_upload_times_in_one_release_are_both_utc(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    names = _names(fake)
    name, rel = next(
        (n, r) for n in names for r in fake.index.releases(n).values() if len(r.files) >= 2
    )
    rel.files[0].overrides.update(
        # the JSON API's and (issue 11: upload times come from it) the PEP 691 page's
        {
            "upload_time_iso_8601": None,
            "upload_time": "2020-01-02T03:04:05",
            "upload-time": "2020-01-02T03:04:05",
        }
    )
    db = tmp_path / "m.duckdb"
    report = sync(fake, db)
    assert report.refresh.failed == {}
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        got = con.execute(
            "SELECT strftime(upload_time, '%Y-%m-%d %H:%M:%S') FROM distributions"
            " WHERE filename = ?",
            [rel.files[0].filename],
        ).fetchone()
    finally:
        con.close()
    assert got == ("2020-01-02 03:04:05",)
    assert name in _stored_projects(db)


def test_large_project_json_over_a_cap_is_refused_before_its_objects_are_built(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pypi_assets.pypi import client as client_mod
    from pypi_assets.pypi import warehouse as warehouse_mod

    big = _names(fake)[2]
    fake.index.add_many_releases(big, 300)
    monkeypatch.setattr(warehouse_mod, "PRECOUNT_CHARS", 0)  # count every project JSON first

    def never(data: Any, what: str) -> Any:
        raise AssertionError("the full document was built")

    monkeypatch.setattr(client_mod, "check_json_tree", never)

    async def main() -> None:
        async with _client(fake, max_versions=100) as c:
            await fetch_project(c, big, None, None)

    with pytest.raises(UpstreamError, match=r"\d+ versions, over max_versions_per_project \(100\)"):
        asyncio.run(main())


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"a": [1, {"size": 10**30}]}, r"\['a'\]\[1\]\['size'\]: integer out of range"),
        ({"summary": "\ud800"}, "lone surrogate"),
        ({"\udc00": 1}, "lone surrogate"),
        ([float("inf")], "number out of range"),
        ([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], "nested deeper"),
    ],
    ids=["int", "surrogate", "surrogate-key", "inf", "depth"],
)
def test_every_parsed_value_is_checked(doc: Any, reason: str) -> None:
    from pypi_assets.pypi.limits import InvalidResponse, check_json_tree

    with pytest.raises(InvalidResponse, match=reason):
        check_json_tree(doc, "doc")
    ok = {"info": {"summary": "caf\u00e9 \U0001f600", "n": -1, "f": 1.5, "l": [None, True]}}
    assert check_json_tree(ok, "doc") is ok
