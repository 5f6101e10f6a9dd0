"""Issue 12, serving: the index as of any published snapshot (``/snapshot/<point>/``), the
change feed (``/changes``) and the blob retention that keeps a snapshot's files, checked
against the fake upstream's own pages before and after it changed, and through pip and uv."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from packaging.utils import canonicalize_name

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.filters import ConfigError, MirrorConfig
from pypi_assets.serve import MirrorServer
from pypi_assets.store.blobs import LocalBlobStore
from pypi_assets.store.readers import SnapshotIndex, SnapshotUnavailable
from pypi_assets.store.snapshot import snapshots
from pypi_assets.sync.run import run_sync
from pypi_assets.sync.settings import Settings
from pypi_assets.sync.verify import VerifyOptions, verify_mirror

from .helpers import FAST, make_config

pytestmark = pytest.mark.slow

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
UV = Path(sys.executable).with_name("uv")


@dataclass
class World:
    """A mirror synced at S1, then again at S2 after upstream changed."""

    up: FakeUpstream
    db: Path
    web: Path
    names: list[str]
    s1: int
    s2: int
    truth1: dict[str, Any]
    truth2: dict[str, Any]
    #: the events upstream's changes between S1 and S2 mean
    expected: set[tuple[str, str, str | None, str | None]]
    #: the file upstream removed after S1 that pip must still get at S1
    removed: tuple[str, str]  # (filename, sha256)


def _sync(up: FakeUpstream, db: Path, web: Path, config: MirrorConfig | None = None) -> None:
    settings = Settings(upstream=up.url, db=db, blobs=str(web))
    asyncio.run(run_sync(settings, config or make_config(), client_overrides=FAST))


def _state(client: httpx.Client, prefix: str, names: list[str]) -> dict[str, Any]:
    """Each project's simple page as a comparable value: its files (sha256, yanked) and its
    PEP 792 status, or ``None`` when the page is a 404."""
    out: dict[str, Any] = {}
    for name in names:
        r = client.get(f"{prefix}/simple/{name}/", headers=JSON)
        assert r.status_code in (200, 404), (prefix, name, r.status_code, r.text)
        if r.status_code == 404:
            out[name] = None
            continue
        page = r.json()
        files = {f["filename"]: (f["hashes"]["sha256"], f["yanked"]) for f in page["files"]}
        out[name] = {"files": files, "status": page.get("project-status")}
    return out


def _change_upstream(idx: FakeIndex, names: list[str]) -> set[tuple[str, str, Any, Any]]:
    """A new release, a yank, a removed release, a deleted project and a quarantine; the
    events they mean as ``(project, action, version, filename)``."""
    p0, p1, p2, p3, p4, _p5 = names
    expected: set[tuple[str, str, Any, Any]] = set()
    new = idx.add_release(p0, "9.0")
    expected |= {(p0, "add_file", "9.0", f.filename) for f in new.files}
    yanked = sorted(idx.releases(p1))[0]
    idx.yank(p1, yanked, "broken")
    expected.add((p1, "yank", yanked, None))
    expected |= {(p2, "remove_file", "5.0", f.filename) for f in idx.releases(p2)["5.0"].files}
    idx.delete_release(p2, "5.0")
    gone = {
        (p3, "remove_file", v, f.filename) for v, r in idx.releases(p3).items() for f in r.files
    }
    expected |= gone | {(p3, "remove", None, None)}
    idx.delete_project(p3)
    idx.set_status(p4, "quarantined", "malware")
    expected.add((p4, "status_quarantined", None, None))
    return expected


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("time-travel")
    db, web = tmp / "m.duckdb", tmp / "web"
    idx = FakeIndex.generate(6)
    names = sorted(idx.projects)
    # p2's newest release: a pure-Python wheel that upstream removes after S1
    wheel = next(f for f in idx.add_release(names[2], "5.0").files if f.filename.endswith(".whl"))
    removed = (wheel.filename, hashlib.sha256(wheel.content).hexdigest())
    with FakeUpstream(idx) as up, httpx.Client(timeout=60) as upstream:
        _sync(up, db, web)
        s1 = snapshots(db)[-1][2]
        truth1 = _state(upstream, up.url, names)
        expected = _change_upstream(idx, names)
        _sync(up, db, web)
        s2 = snapshots(db)[-1][2]
        truth2 = _state(upstream, up.url, names)
        yield World(up, db, web, names, s1, s2, truth1, truth2, expected, removed)


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[MirrorServer]:
    with MirrorServer(web=world.web, blobs=LocalBlobStore(world.web), db=world.db) as srv:
        yield srv


def test_snapshot_pages_equal_upstream_then_and_now(world: World, server: MirrorServer) -> None:
    assert world.s1 < world.s2 and world.truth1 != world.truth2
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert _state(c, f"/snapshot/{world.s1}", world.names) == world.truth1
        assert _state(c, "", world.names) == world.truth2
        assert _state(c, f"/snapshot/{world.s2}", world.names) == world.truth2
        # a serial between two snapshots is the older one; a time, the one current then
        assert _state(c, f"/snapshot/{world.s2 - 1}", world.names) == world.truth1
        when = snapshots(world.db)[0][1] + timedelta(milliseconds=1)
        point = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert _state(c, f"/snapshot/{point}", world.names) == world.truth1
        # the serials: the root's is the snapshot's, a page's its project's then
        root = c.get(f"/snapshot/{world.s1}/simple/", headers=JSON)
        assert root.json()["meta"]["_last-serial"] == world.s1
        assert root.headers["X-PyPI-Last-Serial"] == str(world.s1)
        listed = {canonicalize_name(p["name"]) for p in root.json()["projects"]}
        assert len(listed) == 6 and world.names[3] in listed
        now = c.get(f"/snapshot/{world.s2}/simple/", headers=JSON).json()
        # the deleted project and the quarantined one are not listed
        assert now["meta"]["_last-serial"] == world.s2
        assert {canonicalize_name(p["name"]) for p in now["projects"]} == listed - {
            world.names[3],
            world.names[4],
        }
        html = c.get(f"/snapshot/{world.s1}/simple/{world.names[2]}/")
        today = c.get(f"/simple/{world.names[2]}/")
        assert html.headers["content-type"] == today.headers["content-type"]
        assert html.headers["content-type"].endswith("html")
        assert world.removed[0] in html.text and world.removed[0] not in today.text


def test_snapshot_json_api_and_files(world: World, server: MirrorServer) -> None:
    p1, p2, p4 = world.names[1], world.names[2], world.names[4]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        then = c.get(f"/snapshot/{world.s1}/pypi/{p1}/json").json()
        now = c.get(f"/pypi/{p1}/json").json()
        yanked = sorted(then["releases"])[0]
        assert not any(f["yanked"] for f in then["releases"][yanked])
        assert all(f["yanked"] for f in now["releases"][yanked])
        assert c.get(f"/snapshot/{world.s1}/pypi/{p2}/5.0/json").status_code == 200
        assert c.get(f"/snapshot/{world.s2}/pypi/{p2}/5.0/json").status_code == 404
        # quarantined at S2: no JSON API, as upstream; at S1 it had one
        assert c.get(f"/snapshot/{world.s2}/pypi/{p4}/json").status_code == 404
        assert c.get(f"/snapshot/{world.s1}/pypi/{p4}/json").status_code == 200
        # the page's relative file links resolve under the prefix, to the blob
        page = c.get(f"/snapshot/{world.s1}/simple/{p2}/", headers=JSON).json()
        url = next(f["url"] for f in page["files"] if f["filename"] == world.removed[0])
        got = c.get(f"/snapshot/{world.s1}/simple/{p2}/{url.split('#')[0]}")
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == world.removed[1]


def test_snapshot_points_are_validated(world: World, server: MirrorServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for bad in ("abc", "-1", "1e3", "2026-01-01", "2026-13-01T00:00:00Z", "0x10", "%27"):
            r = c.get(f"/snapshot/{bad}/simple/")
            assert r.status_code == 400 and "RFC 3339" in r.json()["message"], bad
        before = c.get(f"/snapshot/{world.s1 - 1}/simple/")
        assert before.status_code == 404 and "no snapshot" in before.json()["message"]
        early = c.get("/snapshot/2000-01-01T00:00:00Z/simple/")
        assert early.status_code == 404
        moved = c.get(f"/snapshot/{world.s1}/simple/{world.names[0].upper()}/")
        assert moved.status_code == 301
        assert moved.headers["location"] == f"/snapshot/{world.s1}/simple/{world.names[0]}/"
        assert c.get(f"/snapshot/{world.s1}/simple/no-such-project/").status_code == 404
        assert c.get(f"/snapshot/{world.s1}/elsewhere").status_code == 404


def _feed(c: httpx.Client, url: str) -> tuple[list[dict[str, Any]], int]:
    """Every event from ``url`` on, following ``Link: rel=next``; and the pages read."""
    import json

    events: list[dict[str, Any]] = []
    pages = 0
    while True:
        r = c.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        rows = [json.loads(line) for line in r.text.splitlines()]
        pages += 1
        if rows:
            assert r.headers["X-Next-Since"] == str(rows[-1]["serial"])
        events += rows
        if "link" not in r.headers:
            return events, pages
        url = r.headers["link"].split(">")[0].lstrip("<")


def test_change_feed_lists_exactly_the_changes(world: World, server: MirrorServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        events, _ = _feed(c, f"/changes?since={world.s1}")
        got = {(e["project"], e["action"], e["version"], e["filename"]) for e in events}
        assert got == world.expected
        assert all(world.s1 < e["serial"] <= world.s2 and e["time"] for e in events)
        assert [e["serial"] for e in events] == sorted(e["serial"] for e in events)
        # paged by one: the same events, never a serial cut between two pages
        paged, pages = _feed(c, f"/changes?since={world.s1}&limit=1")
        assert paged == events and pages > 1
        everything, _ = _feed(c, "/changes?since=0")
        assert everything[-len(events) :] == events and len(everything) > len(events)
        for bad in ("since=x", "", "since=1&limit=0", "since=1&limit=10001", "since=1&since=2"):
            r = c.get(f"/changes?{bad}")
            assert r.status_code == 400 and r.json()["message"], bad


def _installer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", UV_NO_CACHE="1")
    return env


def test_pip_and_uv_install_the_old_version(
    world: World, server: MirrorServer, tmp_path: Path
) -> None:
    p2, (filename, sha) = world.names[2], world.removed
    index = f"{server.url}/snapshot/{world.s1}/simple/"
    common = ["--no-deps", "--only-binary", ":all:", "--no-cache-dir", "--index-url"]
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", *common, index, "-d", str(tmp_path), p2],
        capture_output=True, text=True, env=_installer_env(), timeout=300,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256((tmp_path / filename).read_bytes()).hexdigest() == sha
    # today's index no longer has it
    now = subprocess.run(
        [sys.executable, "-m", "pip", "download", *common, f"{server.url}/simple/",
         "-d", str(tmp_path / "now"), f"{p2}==5.0"],
        capture_output=True, text=True, env=_installer_env(), timeout=300,
    )  # fmt: skip
    assert now.returncode != 0
    assert UV.exists(), "uv is in the dev extra"
    target = tmp_path / "uv-target"
    uv = subprocess.run(
        [str(UV), "pip", "install", "--no-config", "--no-deps", "--only-binary", ":all:",
         "--python", sys.executable, "--target", str(target), "--index-url", index, p2],
        capture_output=True, text=True, env=_installer_env(), timeout=300,
    )  # fmt: skip
    assert uv.returncode == 0, uv.stderr
    assert (target / f"{p2.replace('-', '_')}-5.0.dist-info").is_dir(), sorted(os.listdir(target))


def test_snapshot_failures_are_one_line(
    world: World, server: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = duckdb.connect()
    closed.close()
    with pytest.raises(SnapshotUnavailable):
        SnapshotIndex(closed, 1, world.s1).query("SELECT 1")

    class Broken:
        def get(self, point: object) -> SnapshotIndex:
            return SnapshotIndex(closed, 1, world.s1)

    with httpx.Client(base_url=server.url, timeout=60) as c:
        monkeypatch.setattr(server, "snapshots", Broken)
        for path in ("/changes?since=0", f"/snapshot/{world.s1}/simple/"):
            r = c.get(path)
            assert r.status_code == 503 and len(r.text.splitlines()) == 1, path
            assert r.headers["Retry-After"] == "1"
    blobs = LocalBlobStore(world.web)
    with MirrorServer(web=world.web, blobs=blobs) as bare, httpx.Client(timeout=60) as c:
        r = c.get(f"{bare.url}/snapshot/{world.s1}/simple/")
        assert r.status_code == 404 and "no database" in r.json()["message"]


def _verify(world: World, config: MirrorConfig) -> tuple[list[str], list[str]]:
    settings = Settings(upstream=world.up.url, db=world.db, blobs=str(world.web))
    options = VerifyOptions(delete_unreferenced=True, force=True, sizes_only=True)
    report = verify_mirror(settings, config, LocalBlobStore(world.web), options)
    return report.blobs.retained, report.blobs.deleted


def test_retention_keeps_removed_files_then_lets_them_go(
    world: World, server: MirrorServer
) -> None:
    """Last in this module: it deletes blobs from the shared mirror."""
    p2, (filename, _sha) = world.names[2], world.removed
    with httpx.Client(base_url=server.url, timeout=60) as c:
        page = c.get(f"/snapshot/{world.s1}/simple/{p2}/", headers=JSON).json()
        url = next(f["url"] for f in page["files"] if f["filename"] == filename).split("#")[0]
        blob = f"/snapshot/{world.s1}/simple/{p2}/{url}"
        # unlimited by default: nothing a snapshot lists is deleted
        retained, deleted = _verify(world, make_config())
        assert any(k.endswith("/" + filename) for k in retained) and deleted == []
        assert c.get(blob).status_code == 200
        # a short retention: S2's snapshot is older than it, so S1's removed files go
        time.sleep(1.5)
        short = make_config("[pypi_assets]\nblob_retention = 1s\n")
        retained, deleted = _verify(world, short)
        assert retained == [] and any(k.endswith("/" + filename) for k in deleted)
        assert not any(world.names[0] in k for k in deleted)  # referenced files stay
        assert c.get(blob).status_code == 404
        assert c.get(f"/simple/{world.names[0]}/").status_code == 200


def test_blob_retention_option() -> None:
    assert make_config().blob_retention is None
    assert make_config("[pypi_assets]\nblob_retention = unlimited\n").blob_retention is None
    assert make_config("[pypi_assets]\nblob_retention = 30d\n").blob_retention == 30 * 86400
    with pytest.raises(ConfigError, match="blob_retention"):
        make_config("[pypi_assets]\nblob_retention = soon\n")
