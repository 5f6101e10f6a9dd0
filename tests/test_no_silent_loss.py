"""Nothing is lost and nothing is silently wrong: a bad listing, a crash during publication,
changed blob settings, a transient 404, an upstream without serials and files without
metadata (issue 10, defects 1-3, 5, 14, 15 and the store side of 4)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream, Fault
from pypi_assets.pypi.records import Project
from pypi_assets.store import MetadataStore, lake, lake_dir
from pypi_assets.store.snapshot import snapshot_serial
from pypi_assets.store.snapshot import snapshots as snapshot_versions
from pypi_assets.sync import metadata, run
from pypi_assets.sync.listing import UpstreamFault
from pypi_assets.sync.run import run_sync
from pypi_assets.sync.settings import Settings

from .helpers import FAST, json_api_path, make_config, sync

#: Reads the root listing every run (a reconciliation is always due): with the XML-RPC
#: changelog, a later run reads the listing only when a reconciliation is due.
RELIST = make_config("[pypi_assets]\nreconcile_interval = 0.001\n")


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _statuses(db: Path) -> dict[str, str]:
    return dict(_rows(db, "SELECT name, state FROM projects"))  # type: ignore[arg-type]


def _garbage_listing(fake: FakeUpstream) -> None:
    """The root answers 200 with HTML garbage, again and again, and there is no XML-RPC (a
    proxy's 405; a failing XML-RPC, a 500, stops the run before any listing is read)."""
    fake.add_fault(
        Fault(
            path=r"^/simple/$",
            kind="body",
            body=b"<html><p>Bad gateway</p>",
            ctype="text/html",
            times=1000,
        )
    )
    fake.add_fault(Fault(path=r"^/pypi$", kind="status", status=405, times=1000))


def _root_json(fake: FakeUpstream, names: list[str]) -> bytes:
    idx = fake.index
    return json.dumps(
        {
            "meta": {"api-version": "1.4", "_last-serial": idx.serial},
            "projects": [
                {"name": idx.projects[n].name, "_last-serial": idx.projects[n].serial}
                for n in names
            ],
        }
    ).encode()


# ---------------------------------------------------------------------- defect 1
def test_garbage_listing_removes_nothing_and_the_mirror_heals(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    assert sync(fake, db).ok
    before = _statuses(db)
    snap = snapshot_versions(db)
    fake.index.add_release(sorted(fake.index.projects)[0], "99.0")  # the serial moves
    # XML-RPC is absent below, so the serial comes from HEAD /simple/: purge the CDN's copy
    # so it shows the move (this test is about a garbage listing, not the root's lag)
    fake.purge_root()
    _garbage_listing(fake)
    with pytest.raises(UpstreamFault, match="nothing removed"):
        sync(fake, db)
    assert _statuses(db) == before  # nothing marked removed
    assert set(before.values()) == {"ok"}
    assert snapshot_versions(db) == snap  # no empty snapshot published
    fake.state.faults.clear()
    report = sync(fake, db)
    assert report.ok and not report.refresh.removed
    assert set(_statuses(db).values()) == {"ok"}
    assert _rows(db, "SELECT count(*) FROM releases WHERE version = '99.0'") == [(1,)]


def test_listing_that_drops_many_projects_is_an_upstream_fault(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    assert sync(fake, db).ok
    names = sorted(fake.index.projects)
    half = names[: len(names) // 2]
    fake.index.add_release(names[0], "99.0")
    fake.add_fault(Fault(path=r"^/simple/$", kind="body", body=_root_json(fake, half), times=1000))
    with pytest.raises(UpstreamFault, match=r"drops 12 stored projects that still answer"):
        sync(fake, db, RELIST)
    assert set(_statuses(db).values()) == {"ok"}
    # A mirror that really shrank: each dropped project answers 404, so the removal goes
    # through, whatever the share.
    fake.state.faults.clear()
    for name in names[len(names) // 2 :]:
        fake.index.delete_project(name)
    report = sync(fake, db, RELIST)
    assert sorted(report.refresh.removed) == names[len(names) // 2 :]


def test_few_dropped_projects_confirmed_gone_are_removed(tmp_path: Path) -> None:
    """A small mirror whose upstream really deleted a project: more than 5% of it, but
    each dropped project answers 404, so the removal is confirmed and not a fault."""
    with FakeUpstream(FakeIndex.generate(6)) as fake:
        db = tmp_path / "m.duckdb"
        assert sync(fake, db).ok
        gone = sorted(fake.index.projects)[1]
        fake.index.delete_project(gone)
        report = sync(fake, db)
        assert report.refresh.removed == [gone]
        assert _statuses(db)[gone] == "removed"


def test_removed_project_listed_again_is_fetched_whatever_its_serial(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    assert sync(fake, db).ok
    victim = sorted(fake.index.projects)[3]
    # What an earlier bad listing did to today's main: the project marked removed with its
    # serial unchanged.
    with MetadataStore(db) as store:
        store.query("UPDATE projects SET state = 'removed' WHERE name = ?", [victim])
        store.set_meta(synced_serial="")
    fake.reset_counts()
    report = sync(fake, db)
    assert victim in report.refresh.refreshed
    assert _statuses(db)[victim] == "ok"
    assert _rows(db, f"SELECT count(*) > 0 FROM selected_files WHERE project = '{victim}'") == [
        (True,)
    ]


# ---------------------------------------------------------------------- defect 5
def test_transient_404_is_retried_on_the_next_run(fake: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    name = sorted(fake.index.projects)[5]
    fake.add_fault(Fault(path=json_api_path(name), kind="status", status=404, times=1))
    report = sync(fake, db)
    assert report.refresh.missing == [name]
    assert fake.index.serial == report.upstream_serial
    # Same upstream serial: the run must not be "up to date" while a project is missing.
    report2 = sync(fake, db)
    assert not report2.up_to_date
    assert report2.refresh.refreshed == [name]
    assert _statuses(db)[name] == "ok"


def test_transient_404_on_a_stored_project_keeps_its_rows(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    assert sync(fake, db).ok
    name = sorted(fake.index.projects)[5]
    files = _rows(db, f"SELECT count(*) FROM distributions WHERE project = '{name}'")
    fake.index.add_release(name, "99.0")
    fake.add_fault(Fault(path=json_api_path(name), kind="status", status=404, times=1))
    report = sync(fake, db)
    assert report.refresh.missing == [name]
    assert _statuses(db)[name] == "ok"
    assert _rows(db, f"SELECT count(*) FROM distributions WHERE project = '{name}'") == files
    report2 = sync(fake, db)
    assert report2.refresh.refreshed == [name]
    assert _rows(
        db, f"SELECT count(*) FROM releases WHERE project = '{name}' AND version = '99.0'"
    ) == [(1,)]


# ---------------------------------------------------------------------- defect 2
def test_crash_during_first_publication_is_healed_by_the_next_run(
    fake: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "m.duckdb"
    real = run.publish

    def crash(store: MetadataStore, serial: int) -> object:
        # Die inside the lake's transaction, after every row is written, before COMMIT.
        def die(*_a: object) -> None:
            raise KeyboardInterrupt

        with monkeypatch.context() as m:
            m.setattr(lake, "_replace_meta", die)
            return real(store, serial)

    monkeypatch.setattr(run, "publish", crash)
    with pytest.raises(KeyboardInterrupt):
        sync(fake, db)
    assert snapshot_serial(db) is None
    monkeypatch.setattr(run, "publish", real)
    report = sync(fake, db)
    assert snapshot_serial(db) == fake.index.serial == report.upstream_serial
    # and now it is up to date
    assert sync(fake, db).up_to_date


def test_lost_snapshot_is_republished_without_fetching(fake: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    assert sync(fake, db).ok
    catalog = lake_dir(db) / "catalog.sqlite"
    assert catalog.exists()
    shutil.rmtree(lake_dir(db))  # an operator's mistake, a lost disk, ...
    fake.reset_counts()
    report = sync(fake, db)
    assert report.up_to_date
    assert snapshot_serial(db) == fake.index.serial
    assert fake.counts["project-json"] == 0


# ---------------------------------------------------------------------- defect 3
def _blob_files(root: Path, *, metadata: bool = True) -> set[str]:
    """The stored release files (and their ``.metadata`` files, unless ``metadata`` is off)."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "packages" in p.parts and (metadata or not p.name.endswith(".metadata"))
    }


def _blob_sync(fake: FakeUpstream, db: Path, blobs: Path | None, lazy: bool = False) -> Any:
    settings = Settings(upstream=fake.url, db=db, blobs=str(blobs) if blobs else None)
    return asyncio.run(run_sync(settings, make_config(), client_overrides=FAST, lazy=lazy))


def test_up_to_date_covers_the_blob_settings(tmp_path: Path) -> None:
    with FakeUpstream(FakeIndex.generate(4)) as fake:
        db = tmp_path / "m.duckdb"
        n_files = sum(
            len(r.files) for n in fake.index.projects for r in fake.index.releases(n).values()
        )
        assert _blob_sync(fake, db, None).ok
        # adding --blobs to a metadata-only mirror
        first = tmp_path / "blobs1"
        report = _blob_sync(fake, db, first)
        assert not report.up_to_date and report.files.downloaded == len(_blob_files(first))
        assert len(_blob_files(first, metadata=False)) == n_files
        assert _blob_sync(fake, db, first).up_to_date
        # a new blob directory
        second = tmp_path / "blobs2"
        report = _blob_sync(fake, db, second)
        assert not report.up_to_date
        assert len(_blob_files(second, metadata=False)) == n_files
        # blobs that verify forgot: files, then provenance objects
        for prefix in ("packages/", "integrity/"):
            with MetadataStore(db) as store:
                keys = [
                    r[0]
                    for r in store.query(
                        "SELECT key FROM blobs WHERE starts_with(key, ?) ORDER BY key LIMIT 3",
                        [prefix],
                    )
                ]
                store.forget_blobs(keys)
            assert len(keys) == 3
            for k in keys:
                (second / k).unlink()
            report = _blob_sync(fake, db, second)
            assert not report.up_to_date
            fetched = report.files.downloaded if prefix == "packages/" else report.files.provenance
            assert fetched == 3 and all((second / k).is_file() for k in keys)
        assert len(_blob_files(second, metadata=False)) == n_files


def test_dropping_lazy_downloads_the_files(tmp_path: Path) -> None:
    with FakeUpstream(FakeIndex.generate(3)) as fake:
        db, blobs = tmp_path / "m.duckdb", tmp_path / "blobs"
        assert _blob_sync(fake, db, blobs, lazy=True).ok
        assert not _blob_files(blobs)
        report = _blob_sync(fake, db, blobs)
        assert not report.up_to_date and report.files.downloaded > 0
        assert len(_blob_files(blobs)) == report.files.downloaded


# ---------------------------------------------------------------------- defect 14
class _NoSerials(httpx.AsyncBaseTransport):
    """An upstream like this machine's route to pypi.org: an HTML-only root, no serial
    headers and no XML-RPC."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(405, request=request)
        if request.url.path == "/simple/":
            request.headers["Accept"] = "text/html"
        resp = await self.inner.handle_async_request(request)
        headers = [(k, v) for k, v in resp.headers.raw if k.lower() != b"x-pypi-last-serial"]
        body = await resp.aread()
        if request.url.path == "/simple/":
            body = body.replace(b"<!--SERIAL", b"<!--")
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        return httpx.Response(
            resp.status_code, headers=headers, stream=httpx.ByteStream(body), request=request
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_upstream_without_serials_is_rechecked_every_run(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    settings = Settings(upstream=fake.url, db=db)

    def run() -> Any:
        return asyncio.run(
            run_sync(settings, make_config(), client_overrides=FAST, transport=_NoSerials())
        )

    assert run().ok
    with MetadataStore(db) as store:
        assert store.get_meta("synced_serial") in (None, "")
    name = sorted(fake.index.projects)[2]
    fake.index.add_release(name, "99.0")
    fake.reset_counts()
    report = run()
    assert not report.up_to_date and not report.summary()["serials_known"]
    assert report.refresh.refreshed == [name]
    # every other project was re-checked cheaply: a conditional request answered 304
    others = len(fake.index.projects) - 1
    assert sorted(report.refresh.unchanged) == sorted(set(fake.index.projects) - {name})
    assert fake.counts["not-modified"] == others
    assert fake.counts["project-json"] == others + 1
    assert _rows(
        db, f"SELECT count(*) FROM releases WHERE project = '{name}' AND version = '99.0'"
    ) == [(1,)]


# ---------------------------------------------------------------------- defect 15
def test_files_without_metadata_fail_the_run_and_are_counted(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    name = sorted(fake.index.projects)[7]
    # Version JSON answers 404 for this project, as this machine's route does, and (since
    # issue 11 reads every file's own metadata from the file) so do its files.
    pkg = name.replace("-", "_")
    fault = json_api_path(name, any_version=True) + rf"|/{pkg}-[^/]*$"
    fake.add_fault(Fault(path=fault, kind="status", status=404, times=1000))
    report = sync(fake, db)
    lacking = _rows(
        db,
        "SELECT filename FROM selected_distributions WHERE metadata_source = 'none' "
        f"AND project = '{name}'",
    )
    assert lacking, "the fault must leave files without metadata"
    assert not report.ok
    assert "without metadata" in report.failures[name]
    assert report.metadata_sources["none"] == len(lacking)
    assert (
        sum(report.metadata_sources.values())
        == _rows(db, "SELECT count(*) FROM selected_distributions")[0][0]
    )
    assert report.summary()["metadata_sources"] == report.metadata_sources


# ---------------------------------------------------------------------- defect 4, store side
def test_a_project_the_store_refuses_fails_alone(
    fake: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever slips past the protocol checks, a value DuckDB refuses sinks one project, not
    its batch or the run."""
    db = tmp_path / "m.duckdb"
    bad = sorted(fake.index.projects)[4]
    real = metadata.fetch_project

    async def fetch(client: Any, display: str, *args: Any, **kw: Any) -> Any:
        project = await real(client, display, *args, **kw)
        if project.name == bad:
            project.distributions[0].size = 10**30
        return project

    monkeypatch.setattr(metadata, "fetch_project", fetch)
    report = sync(fake, db)
    assert set(report.refresh.failed) == {bad}
    assert "could not be stored" in report.refresh.failed[bad]
    assert len(report.refresh.refreshed) == len(fake.index.projects) - 1
    monkeypatch.setattr(metadata, "fetch_project", real)
    report = sync(fake, db)
    assert report.ok and report.refresh.refreshed == [bad]


def test_index_root_follows_the_serial_after_a_stale_listing(tmp_path: Path) -> None:
    """A root listing served stale (as the CDN does) leaves the index root at its serial; the
    next run, with the live serial and no project changed, must rewrite the root. (With
    XML-RPC the changelog catches the stale listing up at once: test_freshness.py.)"""
    with FakeUpstream(FakeIndex.generate(3), xmlrpc=False) as fake:
        db, blobs = tmp_path / "m.duckdb", tmp_path / "blobs"
        fake.add_fault(Fault(path=r"^/simple/$", kind="stale", lag=1, times=1000))
        assert _blob_sync(fake, db, blobs).ok
        root = json.loads((blobs / "simple" / "index.v1_json").read_text())
        assert root["meta"]["_last-serial"] == fake.index.serial - 1
        fake.state.faults.clear()
        assert _blob_sync(fake, db, blobs).ok
        root = json.loads((blobs / "simple" / "index.v1_json").read_text())
        assert root["meta"]["_last-serial"] == fake.index.serial
        assert f"<!--SERIAL {fake.index.serial}-->" in (blobs / "simple" / "index.html").read_text()


def test_any_dropped_project_is_confirmed_before_it_is_removed(tmp_path: Path) -> None:
    """A listing that drops one project of 20 (within the 5% share) removes nothing until
    that project answers 404; a real deletion then goes through."""
    with FakeUpstream(FakeIndex.generate(20)) as fake:
        db = tmp_path / "m.duckdb"
        assert sync(fake, db).ok
        names = sorted(fake.index.projects)
        fake.index.add_release(names[5], "99.0")
        fake.add_fault(
            Fault(path=r"^/simple/$", kind="body", body=_root_json(fake, names[1:]), times=1000)
        )
        with pytest.raises(UpstreamFault, match="nothing removed"):
            sync(fake, db, RELIST)
        assert set(_statuses(db).values()) == {"ok"}
        fake.state.faults.clear()
        fake.index.delete_project(names[0])
        report = sync(fake, db, RELIST)
        assert report.ok and report.refresh.removed == [names[0]]
        assert not _rows(db, f"SELECT * FROM selected_files WHERE project = '{names[0]}'")


def test_confirmed_removals_leave_the_index_and_a_narrowed_selection_is_reported(
    tmp_path: Path,
) -> None:
    with FakeUpstream(FakeIndex.generate(20)) as fake:
        db, blobs = tmp_path / "m.duckdb", tmp_path / "blobs"
        assert _blob_sync(fake, db, blobs).ok
        names = sorted(fake.index.projects)
        for name in names[:3]:  # 15% of the mirror, each confirmed gone by a 404
            fake.index.delete_project(name)
        report = _blob_sync(fake, db, blobs)
        assert report.ok and sorted(report.refresh.removed) == names[:3]
        assert sorted(report.index.deleted) == names[:3] and not report.index.kept
        assert not any((blobs / "simple" / n).exists() for n in names[:3])
        # The operator narrows the selection to one project: the index keeps the other pages
        # (more than the allowed share) and the run says so instead of claiming success.
        allow = "[plugins]\nenabled =\n    allowlist_project\n[allowlist]\npackages =\n"
        config = make_config(allow + f"    {names[3]}\n")
        settings = Settings(upstream=fake.url, db=db, blobs=str(blobs))
        narrowed = asyncio.run(run_sync(settings, config, client_overrides=FAST))
        assert len(narrowed.index.kept) == 16
        assert not narrowed.ok and "(index)" in narrowed.failures
        assert (blobs / "simple" / names[4]).exists()
        assert not asyncio.run(run_sync(settings, config, client_overrides=FAST)).up_to_date


def test_a_store_closed_under_a_batch_fails_the_run_not_its_projects(tmp_path: Path) -> None:
    """A run that hits a full disk closes its store while other batches are still being
    written; their 'connection closed' is the storage failure's echo, not each project's
    fault (it used to print one warning per project of the batch, and record them failed)."""
    store = MetadataStore(tmp_path / "m.duckdb")
    store.close()
    chunk = [Project(name=f"p{i}", display_name=f"p{i}", serial=i + 1) for i in range(3)]
    report = metadata.RefreshReport()
    with pytest.raises(duckdb.ConnectionException):
        metadata._write(store, chunk, report)
    assert report.failed == {}
