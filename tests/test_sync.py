"""End-to-end metadata sync against the shipped fake upstream over loopback."""

from __future__ import annotations

import email.parser
import email.policy
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from packaging.utils import canonicalize_name

from pypi_assets.fake import FakeUpstream
from pypi_assets.pypi.records import SEED_FIELDS
from pypi_assets.store import lake_dir
from pypi_assets.store.snapshot import snapshot_serial

from .helpers import dump, make_config, sync, table


def _headers(meta: bytes) -> email.message.Message:
    return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(meta)


def test_columns_equal_wheel_metadata_and_version_json_for_every_version(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    report = sync(fake, db)
    assert report.ok and report.refresh.refreshed
    cols = ", ".join(SEED_FIELDS)
    rows = table(
        db, f"SELECT {cols}, url, release_version, metadata_source, project FROM distributions"
    )
    assert len(rows) == sum(
        len(r.files) for n in fake.index.projects for r in fake.index.releases(n).values()
    )
    versions_checked: set[tuple[str, str]] = set()
    wheel_rows = sdist_rows = 0
    for row in rows:
        rec = dict(
            zip(
                (*SEED_FIELDS, "url", "release_version", "metadata_source", "project"),
                row,
                strict=True,
            )
        )
        body = httpx.get(rec["url"]).content  # the real file, from the upstream
        if rec["metadata_source"] in ("core-metadata", "range", "pkg-info"):
            if rec["filename"].endswith(".whl"):
                wheel_rows += 1
                with zipfile.ZipFile(io.BytesIO(body)) as z:
                    meta = z.read(
                        next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
                    )
                # The .metadata file must be byte-identical to the wheel's own METADATA.
                if rec["metadata_source"] == "core-metadata":
                    assert httpx.get(rec["url"] + ".metadata").content == meta
            else:  # issue 11: an sdist carries its own PKG-INFO, not its release's JSON
                sdist_rows += 1
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as t:
                    member = next(m for m in t.getmembers() if m.name.endswith("/PKG-INFO"))
                    meta = t.extractfile(member).read()  # type: ignore[union-attr]
            h = _headers(meta)
            expect = {
                "metadata_version": h["Metadata-Version"],
                "name": h["Name"],
                "version": h["Version"],
                "summary": h["Summary"],
                "keywords": h["Keywords"],
                "home_page": h["Home-page"],
                "download_url": h["Download-URL"],
                "author": h["Author"],
                "author_email": h["Author-email"],
                "maintainer": h["Maintainer"],
                "maintainer_email": h["Maintainer-email"],
                "license": h["License"],
                "requires_python": h["Requires-Python"],
                "project_url": h.get_all("Project-URL") or [],
                "platform": h.get_all("Platform") or [],
                "supported_platform": h.get_all("Supported-Platform") or [],
                "requires_dist": h.get_all("Requires-Dist") or [],
                "provides_dist": h.get_all("Provides-Dist") or [],
                "obsoletes_dist": h.get_all("Obsoletes-Dist") or [],
                "requires_external": h.get_all("Requires-External") or [],
                "classifiers": h.get_all("Classifier") or [],
                "description": h.get_payload() if float(h["Metadata-Version"]) >= 2.1 else None,
            }
            for col, value in expect.items():
                if col == "description" and value is None:
                    continue
                assert rec[col] == value, (rec["filename"], col)
            assert rec["packagetype"] in ("bdist_wheel", "sdist")
        else:
            vj = httpx.get(
                f"{fake.url}/pypi/{rec['project']}/{rec['release_version']}/json"
            ).json()["info"]
            for col in (
                "summary",
                "description",
                "keywords",
                "home_page",
                "download_url",
                "author",
                "author_email",
                "maintainer",
                "maintainer_email",
                "license",
                "requires_python",
            ):
                assert rec[col] == (vj[col] or None), (rec["filename"], col)
            assert rec["name"] == vj["name"] and rec["version"] == vj["version"]
            assert rec["requires_dist"] == (vj["requires_dist"] or [])
            assert rec["classifiers"] == vj["classifiers"]
            assert rec["metadata_version"] is None  # the JSON API does not expose it
        versions_checked.add((rec["project"], rec["release_version"]))
    assert wheel_rows and sdist_rows
    # Older versions are covered, not only upstream's "latest".
    latest = {n: fake.index.latest(n).version for n in fake.index.projects if fake.index.latest(n)}  # type: ignore[union-attr]
    assert any(v != latest[p] for p, v in versions_checked)


def test_wheel_metadata_is_not_copied_from_the_sdist_or_latest(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    sync(fake, db)
    rows = table(
        db,
        "SELECT filename, requires_dist FROM distributions WHERE metadata_source = 'core-metadata'",
    )
    assert rows and all(any("colorama" in r for r in reqs) for _f, reqs in rows)
    sdists = table(db, "SELECT requires_dist FROM distributions WHERE packagetype = 'sdist'")
    assert not any(any("colorama" in r for r in reqs) for (reqs,) in sdists)


def test_second_sync_without_change_makes_at_most_two_requests(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    sync(fake, db)
    before = dump(db)
    fake.reset_counts()
    report = sync(fake, db)
    assert fake.total_requests() <= 2
    assert report.up_to_date
    assert dump(db) == before


def test_a_sync_asks_the_json_api_by_display_name_and_pays_no_redirect(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    """Warehouse's JSON API redirects every spelling but the display name (``/pypi/flask/json``
    answers 301 to ``/pypi/Flask/json``); the fake does the same. A sync asks with the
    display name from the listing, so no project pays a second request for it."""
    assert fake.state.switches.json_redirects
    shown = {p.name for p in fake.index.projects.values()}
    assert any(name != canonicalize_name(name) for name in shown)  # the case is exercised
    assert sync(fake, tmp_path / "m.duckdb").ok
    assert fake.counts["redirect"] == 0, dict(fake.counts)
    assert fake.counts["project-json"] == len(shown)


def test_new_release_fetches_only_that_project_and_its_new_files(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    sync(fake, db)
    target = sorted(fake.index.projects)[5]
    fake.index.add_release(target, "9.0.0", wheels=2)
    fake.reset_counts()
    report = sync(fake, db)
    assert report.refresh.refreshed == [target]
    touched = {proj for (_route, proj) in fake.per_project}
    assert touched == {target}
    assert fake.counts["project-json"] == 1
    assert fake.counts["version-json"] == 1  # only the new version
    assert fake.counts["core-metadata"] == 2  # only the two new wheels
    files = {
        r[0]
        for r in table(
            db,
            f"SELECT filename FROM distributions WHERE project = '{target}' AND release_version = '9.0.0'",
        )
    }
    assert len(files) == 3


def test_new_file_in_old_release_reuses_stored_version_info(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    sync(fake, db)
    target = sorted(fake.index.projects)[2]
    version = next(v for v, r in fake.index.releases(target).items() if r.files)
    fake.index.add_file(target, version)
    fake.reset_counts()
    sync(fake, db)
    assert fake.counts["version-json"] == 0
    assert fake.counts["core-metadata"] == 1


def test_yank_and_delete_propagate(fake: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    sync(fake, db)
    names = sorted(fake.index.projects)
    yanked = names[1]
    version = next(v for v, r in fake.index.releases(yanked).items() if r.files)
    fake.index.yank(yanked, version, "broken build")
    gone = names[3]
    fake.index.delete_project(gone)
    fake.reset_counts()
    report = sync(fake, db)
    assert fake.counts["version-json"] == 0 and fake.counts["core-metadata"] == 0
    assert report.refresh.removed == [gone]
    rows = table(
        db,
        f"SELECT DISTINCT yanked, yanked_reason FROM distributions WHERE project = '{yanked}' AND release_version = '{version}'",
    )
    assert rows == [(True, "broken build")]
    assert table(db, f"SELECT state FROM projects WHERE name = '{gone}'") == [("removed",)]
    assert table(db, f"SELECT count(*) FROM selected_distributions WHERE project = '{gone}'") == [
        (0,)
    ]
    assert (
        table(db, f"SELECT count(*) FROM distributions WHERE project = '{gone}'")[0][0] > 0
    )  # history kept


def test_allowlist_from_bandersnatch_config(fake: FakeUpstream, tmp_path: Path) -> None:
    names = [p.name for p in fake.index.projects.values()]
    pick = [names[3], names[7].upper(), names[10] + ">=0.2  # inline comment"]
    cfg = make_config(
        "[plugins]\nenabled =\n    allowlist_project\n[allowlist]\npackages =\n    "
        + "\n    ".join(pick)
        + "\n"
    )
    db = tmp_path / "m.duckdb"
    fake.reset_counts()
    report = sync(fake, db, cfg)
    want = sorted(
        {
            fake.index.get(n).name.lower().replace("_", "-").replace(".", "-")
            for n in (names[3], names[7], names[10])
        }
    )  # type: ignore[union-attr]
    assert sorted(report.refresh.refreshed) == want
    assert {p for (_r, p) in fake.per_project} == set(want)
    assert (
        sorted(r[0] for r in table(db, "SELECT DISTINCT project FROM selected_distributions"))
        == want
    )


def test_snapshot_published_and_connect_reads_it(fake: FakeUpstream, tmp_path: Path) -> None:
    import pypi_assets

    db = tmp_path / "m.duckdb"
    sync(fake, db)
    assert snapshot_serial(db) == fake.index.serial
    assert (lake_dir(db) / "catalog.sqlite").exists()
    con = pypi_assets.connect(db)
    n = con.execute("SELECT count(*) FROM selected_distributions").fetchone()[0]  # type: ignore[index]
    assert n == table(db, "SELECT count(*) FROM distributions")[0][0]
    with pytest.raises(duckdb.Error):
        con.execute("INSERT INTO lake.main.projects (name) VALUES ('x')")  # read-only


def test_analyst_connection_held_open_does_not_break_sync(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    import pypi_assets

    db = tmp_path / "m.duckdb"
    sync(fake, db)
    con = pypi_assets.connect(db)
    old = con.execute("SELECT count(*) FROM distributions").fetchone()[0]  # type: ignore[index]
    fake.index.add_release(sorted(fake.index.projects)[0], "7.0.0", wheels=1)
    report = sync(fake, db)  # publishes while the analyst's connection is open
    assert report.ok
    assert con.execute("SELECT count(*) FROM distributions").fetchone()[0] == old  # type: ignore[index]
    con2 = pypi_assets.connect(db)
    assert con2.execute("SELECT count(*) FROM distributions").fetchone()[0] == old + 2  # type: ignore[index]


def test_filter_change_fetches_only_newly_allowed_and_drops_excluded(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    names = sorted(fake.index.projects)
    db = tmp_path / "m.duckdb"

    def allow(*ns: str) -> Any:
        return make_config(
            "[plugins]\nenabled =\n    allowlist_project\n[allowlist]\npackages =\n    "
            + "\n    ".join(ns)
            + "\n"
        )

    sync(fake, db, allow(names[0], names[1]))
    fake.reset_counts()
    report = sync(fake, db, allow(names[0], names[1], names[2]))
    assert report.refresh.refreshed == [names[2]]  # only the newly allowed project is fetched
    assert {p for (_r, p) in fake.per_project} == {names[2]}
    fake.reset_counts()
    sync(fake, db, allow(names[2]))
    assert not fake.per_project  # narrowing the filter needs no fetching
    assert {r[0] for r in table(db, "SELECT DISTINCT project FROM selected_distributions")} == {
        names[2]
    }
    assert {r[0] for r in table(db, "SELECT DISTINCT project FROM distributions")} == set(
        names[:3]
    )  # kept
