"""Issue 11, items 2 and 3: files from the PEP 691 page, and every file's own metadata.

Against the shipped fake upstream on loopback, whose wheels and sdists are real archives."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pypi_assets.cli import _print_report
from pypi_assets.fake import FakeUpstream
from pypi_assets.pypi import ClientConfig, PyPIClient
from pypi_assets.pypi.fetch import fetch_project
from pypi_assets.pypi.metadata import fields_from_core_metadata
from pypi_assets.pypi.page_files import file_version
from pypi_assets.pypi.records import SEED_FIELDS
from pypi_assets.store.blobs import blob_key

from .helpers import sync, table


def _own_metadata(content: bytes, filename: str) -> bytes:
    """The METADATA / PKG-INFO inside a release file, read the ordinary way."""
    if filename.endswith(".whl"):
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            return z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA")))
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as t:
        member = next(
            m for m in t.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
        )
        handle = t.extractfile(member)
        assert handle is not None
        return handle.read()


def _expected(meta: bytes) -> dict[str, Any]:
    fields = fields_from_core_metadata(meta)
    fields["name"] = fields.pop("core_name")
    fields["version"] = fields.pop("core_version")
    return fields


def _rows(db: Path) -> list[dict[str, Any]]:
    cols = (*SEED_FIELDS, "metadata_source", "project", "release_version", "size", "url")
    got = table(db, f"SELECT {', '.join(cols)} FROM distributions")
    return [dict(zip(cols, row, strict=True)) for row in got]


def _files(fake: FakeUpstream) -> dict[str, Any]:
    return {
        f.filename: f
        for n in fake.index.projects
        for r in fake.index.releases(n).values()
        for f in r.files
    }


def test_own_metadata_with_the_shortcuts_off(fake: FakeUpstream, tmp_path: Path) -> None:
    """Version JSON 404, PEP 658 off, no ``releases`` key: every wheel's 24 seed fields equal
    its own METADATA, every sdist's its own PKG-INFO; range reads cost at most 3 requests and
    less than the wheel."""
    fake.configure(version_json_404=True, pep658="absent", releases_key=False)
    db = tmp_path / "m.duckdb"
    report = sync(fake, db)
    assert report.ok, report.failures
    files = _files(fake)
    rows = _rows(db)
    assert len(rows) == len(files)
    sources: dict[str, int] = defaultdict(int)
    for row in rows:
        f = files[row["filename"]]
        want = "range" if f.filename.endswith(".whl") else "pkg-info"
        assert row["metadata_source"] == want, row["filename"]
        sources[want] += 1
        expected = _expected(_own_metadata(f.content, f.filename))
        for col in SEED_FIELDS[2:]:
            assert row[col] == expected[col], (row["filename"], col)
        assert row["size"] == len(f.content)
    assert sources["range"] and sources["pkg-info"]
    # per wheel: at most 3 range requests, fewer bytes than the wheel
    ranges: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for path, header in fake.state.ranges:
        first, last = header.removeprefix("bytes=").split("-")
        ranges[path.rsplit("/", 1)[1]].append((int(first), int(last)))
    wheels = [f for f in files.values() if f.filename.endswith(".whl")]
    for f in wheels:
        spans = ranges[f.filename]
        assert 1 <= len(spans) <= 3, (f.filename, spans)
        assert sum(b - a + 1 for a, b in spans) < len(f.content), (f.filename, spans)
    # no wheel was downloaded whole; each sdist once, streamed
    assert fake.counts["file"] == sum(len(ranges[f.filename]) for f in wheels) + sources["pkg-info"]


def _big_wheel(metadata: bytes, filename: str, payload: int) -> bytes:
    dist = "-".join(filename.split("-")[:2])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(40):  # incompressible modules before the metadata, as in a real wheel
            z.writestr(f"pkg/mod{i}.py", os.urandom(payload // 40))
        z.writestr(f"{dist}.dist-info/METADATA", metadata)
        z.writestr(f"{dist}.dist-info/WHEEL", b"Wheel-Version: 1.0\n")
        z.writestr(f"{dist}.dist-info/RECORD", b"".join(b"pkg/mod%d.py,,\n" % i for i in range(40)))
    return buf.getvalue()


def test_range_read_of_a_real_sized_wheel_reads_a_small_fraction(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.configure(pep658="absent")
    name = sorted(fake.index.projects)[3]
    wheel = next(
        f
        for r in fake.index.releases(name).values()
        for f in r.files
        if f.filename.endswith(".whl")
    )
    fake.index.set_content(
        name, wheel.filename, _big_wheel(wheel.metadata, wheel.filename, 2 << 20)
    )

    async def run() -> Any:
        async with PyPIClient(ClientConfig(upstream=fake.url, backoff=0.01)) as c:
            return await fetch_project(c, name, None, None), c.own_metadata.costs

    project, costs = asyncio.run(run())
    row = next(d for d in project.distributions if d.filename == wheel.filename)
    assert row.metadata_source == "range"
    assert row.summary == _expected(wheel.metadata)["summary"]
    spans = [h for p, h in fake.state.ranges if p.endswith(wheel.filename)]
    # the tail (its directory, and here the member too, as dist-info comes last), then at
    # most the member
    assert 1 <= len(spans) <= 2, spans
    got = sum(int(b) - int(a) + 1 for a, b in (h.removeprefix("bytes=").split("-") for h in spans))
    assert got < len(wheel.content) // 20, (got, len(wheel.content))
    assert costs.files["range"] >= 1


def test_route_to_pypi_org_on_the_fake_leaves_no_none_rows(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    """``profile="proxy"``: HTML-only root, no serials, no XML-RPC, version JSON 404, PEP
    658 files served but not advertised. A sync ends with no ``none`` rows, and a later
    upstream change is picked up the same way."""
    fake.emulate_proxy()
    db = tmp_path / "m.duckdb"
    report = sync(fake, db)
    assert report.ok, report.failures
    assert table(db, "SELECT count(*) FROM distributions WHERE metadata_source = 'none'") == [(0,)]
    got = dict(table(db, "SELECT metadata_source, count(*) FROM distributions GROUP BY 1"))
    # the unadvertised .metadata files are found and relied on; wheels without one: range
    assert got.get("core-metadata") and got.get("pkg-info")
    assert set(got) <= {"core-metadata", "range", "pkg-info"}
    name = sorted(fake.index.projects)[4]
    fake.index.add_release(name, "42.0", wheels=2)
    assert sync(fake, db).ok
    new = table(
        db,
        f"SELECT metadata_source FROM distributions WHERE project = '{name}' "
        "AND release_version = '42.0'",
    )
    assert len(new) == 3 and all(s != "none" for (s,) in new)


def test_a_stored_sdist_is_read_from_the_store_not_upstream(fake: FakeUpstream) -> None:
    fake.configure(pep658="absent")
    name = sorted(fake.index.projects)[5]
    files = {f.filename: f for r in fake.index.releases(name).values() for f in r.files}
    opened: list[str] = []

    def stored(f: Any) -> io.BytesIO | None:
        opened.append(f.filename)
        return io.BytesIO(files[f.filename].content) if f.filename.endswith(".tar.gz") else None

    async def run() -> Any:
        async with PyPIClient(ClientConfig(upstream=fake.url, backoff=0.01)) as c:
            return await fetch_project(c, name, None, None, stored_file=stored)

    fake.reset_counts()
    project = asyncio.run(run())
    sdists = [d for d in project.distributions if d.packagetype == "sdist"]
    assert sdists and all(d.metadata_source == "pkg-info" for d in sdists)
    assert fake.counts["file"] == len(fake.state.ranges)  # only range reads of wheels
    assert {d.filename for d in sdists} <= set(opened)


def test_sdist_pkg_info_is_compared_with_the_version_json(fake: FakeUpstream) -> None:
    name = sorted(fake.index.projects)[6]

    async def run() -> Any:
        async with PyPIClient(ClientConfig(upstream=fake.url, backoff=0.01)) as c:
            await fetch_project(c, name, None, None)
            return c.own_metadata

    state = asyncio.run(run())
    assert state.compared == sum(
        1 for r in fake.index.releases(name).values() for f in r.files if f.packagetype == "sdist"
    )


def test_the_run_report_counts_sdists_whose_pkg_info_differs_from_the_version_json(
    fake: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An sdist re-uploaded with other metadata: its PKG-INFO says one thing, its release's
    version JSON (the first upload's) another. The report counts it, by field."""
    rel = fake.index.add_release(sorted(fake.index.projects)[2], "9.0.0", wheels=1)
    rel.info["summary"] = "what the first upload said"
    rel.info["author"] = "someone else"
    sdists = sum(
        1
        for n in fake.index.projects
        for r in fake.index.releases(n).values()
        for f in r.files
        if f.packagetype == "sdist"
    )
    report = sync(fake, tmp_path / "m.duckdb")
    assert report.ok
    got = report.summary()["pkg_info_vs_version_json"]
    assert got == {"compared": sdists, "differing": 1, "fields": {"author": 1, "summary": 1}}
    _print_report(report, as_json=False)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("PKG-INFO vs"))
    assert line.split()[3:] == [
        str(sdists),
        "sdists",
        "compared,",
        "1",
        "differ",
        "(author",
        "1,",
        "summary",
        "1)",
    ]


def test_pkg_info_scan_cap_falls_back_to_the_version_json(fake: FakeUpstream) -> None:
    name = sorted(fake.index.projects)[6]

    async def run() -> Any:
        cfg = ClientConfig(upstream=fake.url, backoff=0.01, max_pkg_info_scan=10)
        async with PyPIClient(cfg) as c:
            return await fetch_project(c, name, None, None)

    project = asyncio.run(run())
    assert {d.metadata_source for d in project.distributions if d.packagetype == "sdist"} == {
        "version-json"
    }


@pytest.mark.parametrize(
    ("filename", "versions", "expected"),
    [
        ("demo-1.0.tar.gz", ["1.0", "1.0.1"], "1.0"),
        ("demo-1.0.1.tar.gz", ["1.0", "1.0.1"], "1.0.1"),
        ("demo_pkg-2.0-py3-none-any.whl", ["2.0"], "2.0"),
        ("demo_pkg-2.0-1-py3-none-any.whl", ["2.0"], "2.0"),
        ("demo-1.0-py3.9.egg", ["1.0"], "1.0"),
        ("demo-1.0.win32.exe", ["1.0"], "1.0"),
        ("demo-3.0.zip", [], "3.0"),
        ("demo-9.9.tar.gz", ["1.0"], None),
    ],
)
def test_file_version_from_its_name(filename: str, versions: list[str], expected: str) -> None:
    assert file_version(filename, versions) == expected


def test_blob_keys_fall_back_to_sha256_without_blake2b() -> None:
    sha = "ab" * 32
    assert blob_key("x-1.0.tar.gz", None, sha) == f"packages/ab/ab/{sha[4:]}/x-1.0.tar.gz"


def test_a_sync_reads_sdists_already_in_the_blob_store_from_there(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    """A second database syncing into a blob directory that already holds the files (a
    rebuilt database, a mirror of a mirror) reads each sdist's PKG-INFO from the stored copy:
    no sdist is requested upstream, and every sdist's metadata is its own PKG-INFO."""
    from pypi_assets.sync.run import run_sync
    from pypi_assets.sync.settings import Settings

    from .helpers import FAST, make_config

    fake.configure(pep658="absent", version_json_404=True)
    blobs = tmp_path / "web"

    def run(db: Path) -> Any:  # each database writes its own index
        web = tmp_path / f"web-{db.stem}"
        settings = Settings(upstream=fake.url, db=db, blobs=str(blobs), web=web)
        return asyncio.run(run_sync(settings, make_config(), client_overrides=FAST))

    assert run(tmp_path / "a.duckdb").ok
    fake.reset_counts()
    fake.state.ranges.clear()
    db = tmp_path / "b.duckdb"
    assert run(db).ok
    sdists = {f for f in _files(fake) if f.endswith((".tar.gz", ".zip"))}
    # the only file requests are the wheels' range reads: no sdist is streamed
    assert fake.counts["file"] == len(fake.state.ranges)
    assert not {path.rsplit("/", 1)[1] for path, _r in fake.state.ranges} & sdists
    rows = table(db, "SELECT filename, metadata_source FROM distributions")
    assert {f: s for f, s in rows if f in sdists} == dict.fromkeys(sdists, "pkg-info")
