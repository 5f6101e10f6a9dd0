"""PEP 792 project status, vulnerabilities and ownership (issue #11, items 4 and 6): parsed
from upstream, stored (``projects.status``, ``vulnerabilities``, ``project_roles``), polled on
a cadence with conditional requests, and served as upstream serves them, quarantined
projects hidden."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.fake.data import osv_record
from pypi_assets.filters import ConfigError, MirrorConfig
from pypi_assets.pypi.errors import SimpleParseError, UnsafeValue
from pypi_assets.pypi.simple import (
    parse_project_page_html,
    parse_project_page_json,
    render_project,
)
from pypi_assets.pypi.warehouse import parse_ownership, parse_vulnerabilities
from pypi_assets.store import MetadataStore
from pypi_assets.sync.reports import SyncReport
from pypi_assets.sync.run import run_sync
from pypi_assets.sync.settings import Settings

from .helpers import FAST, make_config, table

JSON_CT = "application/vnd.pypi.simple.v1+json"


# ---------------------------------------------------------------------- parse and render
def test_project_status_is_parsed_from_both_page_forms() -> None:
    page = parse_project_page_json(
        {
            "meta": {"api-version": "1.4"},
            "name": "a",
            "project-status": {"status": "archived", "reason": "done"},
            "files": [],
        }
    )
    assert (page.status, page.status_reason) == ("archived", "done")
    html = (
        '<html><head><meta name="pypi:repository-version" content="1.4">'
        '<meta name="pypi:project-status" content="deprecated">'
        '<meta name="pypi:project-status-reason" content="use b &amp; c">'
        "</head><body></body></html>"
    )
    page = parse_project_page_html(html, "a")
    assert (page.status, page.status_reason) == ("deprecated", "use b & c")
    old = parse_project_page_json({"meta": {"api-version": "1.1"}, "name": "a", "files": []})
    assert (old.status, old.status_reason) == (None, None)


@pytest.mark.parametrize(
    "status",
    [{"status": 7}, {"status": "X" * 80}, {"status": "active", "reason": "r" * 5000}, "active"],
)
def test_a_malformed_project_status_is_refused(status: Any) -> None:
    with pytest.raises(SimpleParseError):
        parse_project_page_json(
            {"meta": {"api-version": "1.4"}, "name": "a", "project-status": status, "files": []}
        )


def test_render_carries_the_status_only_once_observed() -> None:
    plain = render_project("a", "A", 5, [], [])
    assert b"project-status" not in plain["simple/a/index.v1_json"]
    pages = render_project("a", "A", 5, [], [], status="archived", status_reason="x<y")
    assert json.loads(pages["simple/a/index.v1_json"])["project-status"] == {
        "status": "archived",
        "reason": "x<y",
    }
    body = pages["simple/a/index.html"].decode()
    assert '<meta name="pypi:project-status" content="archived">' in body
    assert '<meta name="pypi:project-status-reason" content="x&lt;y">' in body


def test_vulnerabilities_and_ownership_are_parsed_and_checked() -> None:
    record = osv_record("PYSEC-1", fixed_in=["2.0"], aliases=["CVE-1"], summary="s")
    vulns = parse_vulnerabilities({"vulnerabilities": [record]}, "x")
    assert [v.id for v in vulns] == ["PYSEC-1"] and vulns[0].fixed_in == ["2.0"]
    assert parse_vulnerabilities({}, "x") == []
    owner = parse_ownership(
        {"ownership": {"organization": "org", "roles": [{"role": "Owner", "user": "u"}]}}, "x"
    )
    assert owner is not None and owner.roles == [("Owner", "u")] and owner.organization == "org"
    for bad in ({"vulnerabilities": [{"id": None}]}, {"vulnerabilities": [{"id": "a" * 300}]}):
        with pytest.raises(UnsafeValue):
            parse_vulnerabilities(bad, "x")
    with pytest.raises(UnsafeValue):
        parse_ownership({"ownership": {"roles": [{"role": "Owner"}]}}, "x")


def test_the_poll_interval_is_a_checked_key() -> None:
    assert make_config().status_poll_interval == 86_400
    cfg = make_config("[pypi_assets]\nstatus_poll_interval = 0\n")
    assert cfg.status_poll_interval == 0
    assert cfg.polls_new_statuses and make_config().polls_new_statuses
    off = make_config("[pypi_assets]\nstatus_poll_interval = Off\n")
    assert off.status_poll_interval == 0 and not off.polls_new_statuses
    for bad in ("-1", "of", "never"):
        with pytest.raises(ConfigError, match="off, 0 or a positive duration"):
            make_config(f"[pypi_assets]\nstatus_poll_interval = {bad}\n")


def test_an_old_database_keeps_its_state_under_the_new_name(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE projects (name VARCHAR PRIMARY KEY, serial BIGINT, status VARCHAR)")
    con.execute("INSERT INTO projects VALUES ('a', 3, 'removed')")
    con.close()
    with MetadataStore(db):
        pass
    assert table(db, "SELECT name, state, status FROM projects") == [("a", "removed", None)]


# ---------------------------------------------------------------------- against the fake
def _sync(up: FakeUpstream, web: Path, config: MirrorConfig, **kw: Any) -> SyncReport:
    settings = Settings(upstream=up.url, db=web.parent / "m.duckdb", blobs=str(web))
    report = asyncio.run(run_sync(settings, config, client_overrides=FAST, **kw))
    assert report.ok, report.failures
    return report


def _page(web: Path, name: str) -> dict[str, Any]:
    return json.loads((web / "simple" / name / "index.v1_json").read_bytes())  # type: ignore[no-any-return]


def _root(web: Path) -> set[str]:
    data = json.loads((web / "simple" / "index.v1_json").read_bytes())
    return {p["name"].lower() for p in data["projects"]}


def test_archive_quarantine_and_clear(tmp_path: Path) -> None:
    """Archive a selected project upstream, with no serial change: within one cadence,
    ``projects.status`` says archived and the served page says so. Quarantine it: its files
    are no longer served. Clear it: they come back."""
    web = tmp_path / "web"
    cadence = 1.0
    config = make_config(f"[pypi_assets]\nstatus_poll_interval = {cadence}\n")
    with FakeUpstream(FakeIndex.generate(6)) as up:
        first = _sync(up, web, config)
        # the fetch read every page and version JSON: nothing left to poll
        assert first.statuses is not None and first.statuses.requests == 0
        name = sorted(up.index.projects)[2]
        db = web.parent / "m.duckdb"
        assert table(db, f"SELECT status FROM projects WHERE name = '{name}'") == [("active",)]
        time.sleep(cadence)
        _sync(up, web, config)  # a first cadence
        serial = up.index.serial
        assert not up.index.set_status(name, "archived", "moved to b")  # not journaled
        assert up.index.serial == serial
        time.sleep(cadence)
        up.reset_counts()
        report = _sync(up, web, config)
        st = report.statuses
        assert st is not None and st.statuses == {name: "archived"}
        # the cost: every page of a quiet project answers 304
        pages = 6 + sum(len(up.index.releases(n)) for n in up.index.projects)
        assert st.requests == pages and st.not_modified == pages - 1
        assert table(db, f"SELECT status, status_reason FROM projects WHERE name = '{name}'") == [
            ("archived", "moved to b")
        ]
        served = _page(web, name)
        assert served["project-status"] == {"status": "archived", "reason": "moved to b"}
        assert served["files"]
        html = (web / "simple" / name / "index.html").read_text()
        assert '<meta name="pypi:project-status" content="archived">' in html
        files = len(served["files"])

        assert up.index.set_status(name, "quarantined", "malware report")  # journaled
        _sync(up, web, config)
        hidden = _page(web, name)
        assert hidden["project-status"]["status"] == "quarantined"
        assert hidden["files"] == [] and hidden["versions"] == []
        assert name not in _root(web)
        assert not (web / "pypi" / name / "json").exists()
        assert 'href="' not in (web / "simple" / name / "index.html").read_text()

        assert up.index.set_status(name, "active")  # journaled
        _sync(up, web, config)
        back = _page(web, name)
        assert back["project-status"] == {"status": "active"} and len(back["files"]) == files
        assert name in _root(web)
        assert (web / "pypi" / name / "json").exists()


def test_no_poll_before_the_cadence(tmp_path: Path) -> None:
    web = tmp_path / "web"
    with FakeUpstream(FakeIndex.generate(3)) as up:
        _sync(up, web, make_config())  # a day's cadence
        name = sorted(up.index.projects)[0]
        up.index.set_status(name, "archived")
        up.reset_counts()
        report = _sync(up, web, make_config())
        assert report.up_to_date and up.total_requests() <= 2
        assert _page(web, name)["project-status"] == {"status": "active"}
        report = _sync(up, web, make_config(), refresh_statuses=True)  # now, whatever the cadence
        assert report.statuses is not None and report.statuses.statuses == {name: "archived"}
        assert _page(web, name)["project-status"] == {"status": "archived"}


def test_the_first_poll_after_a_sync_is_all_304(tmp_path: Path) -> None:
    """The fetch records the ETag of each page it reads (the project page and the version
    JSONs), so the first status poll after a sync is conditional throughout: the fake
    answers 304 to every page the sync read. (A release with no files is not read by the
    sync, so its JSON is the one page the poll reads in full.)"""
    web = tmp_path / "web"
    with FakeUpstream(FakeIndex.generate(4)) as up:
        _sync(up, web, make_config())
        etags = table(web.parent / "m.duckdb", "SELECT path, etag FROM upstream_etags")
        assert sum(p.startswith("/simple/") for p, _e in etags) == 4
        # the project JSONs' too: at full depth the poll reads the version JSONs instead
        project_jsons = [p for p, _e in etags if p.count("/") == 3 and p.endswith("/json")]
        assert len(project_jsons) == 4
        assert all(e for _p, e in etags), etags
        releases = [r for n in up.index.projects for r in up.index.releases(n).values()]
        unread = sum(not r.files for r in releases)
        up.reset_counts()
        report = _sync(up, web, make_config(), refresh_statuses=True)
        st = report.statuses
        assert st is not None and st.polled == 4
        pages = 4 + len(releases)
        assert up.counts["simple-project"] == 4 and st.requests == pages
        assert up.state.statuses[304] == pages - unread == len(etags) - len(project_jsons)
        # the rest: the one uncached XML-RPC call, and the JSON of releases without files
        assert up.state.statuses[200] == 1 + unread and up.counts["xmlrpc"] == 1
        assert st.not_modified == pages - unread


def _upstream_json(client: httpx.Client, path: str) -> Any:
    return client.get(path).json()


def test_vulnerabilities_and_roles_equal_upstream(tmp_path: Path) -> None:
    """``vulnerabilities`` and ``project_roles`` equal upstream's for every selected project;
    the served JSON API and simple pages carry the same status and vulnerabilities."""
    web = tmp_path / "web"
    with FakeUpstream(FakeIndex.generate(5)) as up:
        idx = up.index
        names = sorted(idx.projects)
        _sync(up, web, make_config())
        # none of this moves a serial except the role change (journaled)
        for i, name in enumerate(names[:3]):
            versions = list(idx.releases(name))
            idx.set_vulnerabilities(
                name,
                versions[0],
                [osv_record(f"PYSEC-{i}", fixed_in=[versions[-1]], aliases=[f"CVE-{i}"])],
            )
            idx.set_vulnerabilities(name, versions[-1], [{"id": f"GHSA-{i}", "withdrawn": None}])
        idx.set_organization(names[1], "acme")
        idx.set_role(names[2], "helper", "Maintainer")
        idx.set_status(names[3], "deprecated", "use another")
        _sync(up, web, make_config(), refresh_statuses=True)
        db = web.parent / "m.duckdb"
        with httpx.Client(base_url=up.url, follow_redirects=True) as http:
            for name in names:
                _same_as_upstream(http, db, web, name)


def _same_as_upstream(http: httpx.Client, db: Path, web: Path, name: str) -> None:
    idx_page = http.get(f"/simple/{name}/", headers={"Accept": JSON_CT}).json()
    assert _page(web, name)["project-status"] == idx_page["project-status"]
    html = (web / "simple" / name / "index.html").read_text()
    assert f'content="{idx_page["project-status"]["status"]}"' in html
    project = _upstream_json(http, f"/pypi/{name}/json")
    owner = project["ownership"]
    roles = table(
        db, f"SELECT role, user, organization FROM project_roles WHERE project = '{name}'"
    )
    assert sorted(roles) == sorted(
        (r["role"], r["user"], owner["organization"]) for r in owner["roles"]
    )
    served = json.loads((web / "pypi" / name / "json").read_bytes())
    assert served["ownership"] == owner
    assert served["vulnerabilities"] == project["vulnerabilities"]
    for version in idx_versions(web, name):
        upstream = _upstream_json(http, f"/pypi/{name}/{version}/json")
        mine = json.loads((web / "pypi" / name / version / "json").read_bytes())
        assert mine["vulnerabilities"] == upstream["vulnerabilities"]
        assert mine["ownership"] == upstream["ownership"]
        stored = table(
            db,
            "SELECT id, aliases, summary, details, fixed_in, link, source, withdrawn "
            f"FROM vulnerabilities WHERE project = '{name}' AND version = '{version}'",
        )
        keys = ("id", "aliases", "summary", "details", "fixed_in", "link", "source", "withdrawn")
        assert [dict(zip(keys, r, strict=True)) for r in stored] == upstream["vulnerabilities"]


def idx_versions(web: Path, name: str) -> list[str]:
    return sorted(p.name for p in (web / "pypi" / name).iterdir() if p.is_dir())


def test_a_new_release_has_its_vulnerabilities_on_the_run_that_stores_it(tmp_path: Path) -> None:
    web = tmp_path / "web"
    with FakeUpstream(FakeIndex.generate(3)) as up:
        _sync(up, web, make_config())
        name = sorted(up.index.projects)[1]
        up.index.add_release(name, "9.0")
        up.index.set_vulnerabilities(name, "9.0", [{"id": "PYSEC-9"}])
        up.reset_counts()
        report = _sync(up, web, make_config())
        # the fetch read its version JSON: the poll has nothing left to ask
        assert report.statuses is not None and report.statuses.requests == 0
        assert up.counts["version-json"] == 1
        db = web.parent / "m.duckdb"
        assert table(db, f"SELECT version, id FROM vulnerabilities WHERE project = '{name}'") == [
            ("9.0", "PYSEC-9")
        ]
        served = json.loads((web / "pypi" / name / "json").read_bytes())
        assert [v["id"] for v in served["vulnerabilities"]] == ["PYSEC-9"]


def test_project_depth_polls_the_project_json_not_each_release(tmp_path: Path) -> None:
    """At ``--depth project`` the mirror holds no release's JSON, so the poll reads what that
    depth reads: the page and the project JSON (ownership, the latest release's
    vulnerabilities), not one version JSON per release. A first sync costs the project JSON
    and the page of each project; a cadence poll one conditional request of each."""
    web = tmp_path / "web"
    cadence = 1.0
    config = make_config(f"[pypi_assets]\nstatus_poll_interval = {cadence}\n")
    with FakeUpstream(FakeIndex.generate(5)) as up:
        names = sorted(up.index.projects)
        latest = {n: up.index.latest(n).version for n in names}  # type: ignore[union-attr]
        up.index.set_vulnerabilities(names[0], latest[names[0]], [{"id": "PYSEC-1"}])
        up.reset_counts()
        first = _sync(up, web, config, depth="project")
        assert up.counts["version-json"] == 0
        assert up.counts["simple-project"] == 5 and up.counts["project-json"] == 5
        # the fetch read the project JSONs: the poll asked for the pages alone
        assert first.statuses is not None and first.statuses.requests == 5
        db = web.parent / "m.duckdb"
        vulns = "SELECT project, version, id FROM vulnerabilities ORDER BY ALL"
        assert table(db, vulns) == [(names[0], latest[names[0]], "PYSEC-1")]
        assert table(db, "SELECT count(*) FROM projects WHERE status = 'active'") == [(5,)]

        up.index.set_status(names[1], "archived")  # neither is journaled
        up.index.set_vulnerabilities(names[2], latest[names[2]], [{"id": "GHSA-2"}])
        time.sleep(cadence)
        up.reset_counts()
        report = _sync(up, web, config, depth="project")
        st = report.statuses
        assert st is not None and up.counts["version-json"] == 0
        assert st.requests == 10 and st.not_modified == 8
        assert st.statuses == {names[1]: "archived"}
        assert table(db, vulns) == [
            (names[0], latest[names[0]], "PYSEC-1"),
            (names[2], latest[names[2]], "GHSA-2"),
        ]
        served = json.loads((web / "pypi" / names[2] / "json").read_bytes())
        assert [v["id"] for v in served["vulnerabilities"]] == ["GHSA-2"]


def test_statuses_off_asks_for_nothing_the_fetch_does_not_read(tmp_path: Path) -> None:
    """``status_poll_interval = off``: a first sync at project depth costs one request per
    project (its project JSON: its ownership and latest vulnerabilities are kept), and no
    status is known; quarantine is still followed (a project that answers 404 has its page
    read), and ``--refresh-statuses`` still polls every project when asked."""
    web = tmp_path / "web"
    config = make_config("[pypi_assets]\nstatus_poll_interval = off\n")
    with FakeUpstream(FakeIndex.generate(5)) as up:
        names = sorted(up.index.projects)
        up.index.set_vulnerabilities(names[0], up.index.latest(names[0]).version, [{"id": "X-1"}])  # type: ignore[union-attr]
        up.reset_counts()
        first = _sync(up, web, config, depth="project")
        assert up.counts["project-json"] == 5 and "simple-project" not in up.counts
        assert first.statuses is not None and first.statuses.requests == 0
        db = web.parent / "m.duckdb"
        assert table(db, "SELECT count(*) FROM projects WHERE status IS NULL") == [(5,)]
        assert table(db, "SELECT project, id FROM vulnerabilities") == [(names[0], "X-1")]
        assert "project-status" not in _page(web, names[1])

        assert up.index.set_status(names[1], "quarantined", "malware")  # journaled
        _sync(up, web, config, depth="project")
        hidden = _page(web, names[1])
        assert hidden["project-status"]["status"] == "quarantined" and hidden["files"] == []

        up.reset_counts()
        report = _sync(up, web, config, depth="project", refresh_statuses=True)
        assert report.statuses is not None and up.counts["simple-project"] >= 5
        assert table(db, "SELECT status, count(*) FROM projects GROUP BY ALL ORDER BY ALL") == [
            ("active", 4),
            ("quarantined", 1),
        ]
