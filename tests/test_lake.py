"""The analysts' lake: one snapshot per sync, costing what changed; history keyed on serial;
time travel against the upstream's own past state; readers in other processes during runs;
export to one plain DuckDB file and Parquet."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from packaging.utils import canonicalize_name

import pypi_assets
from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.store import MetadataStore
from pypi_assets.store.lake import LakeMismatch, publish_lake
from pypi_assets.store.lake_engine import LakeLocation, attach_lake
from pypi_assets.store.snapshot import SnapshotNotFound, snapshot_serial, snapshots
from pypi_assets.sync.run import run_sync
from pypi_assets.sync.settings import Settings

from .helpers import FAST, make_config, run_cli, sync

ROOT = Path(__file__).resolve().parents[1]


def _files(con: duckdb.DuckDBPyConnection, project: str) -> set[tuple[str, str, bool]]:
    """``(version, filename, yanked)`` of a project's selected files."""
    return {
        (v, f, bool(y))
        for v, f, y in con.execute(
            "SELECT release_version, filename, yanked FROM selected_distributions "
            "WHERE project = ?",
            [project],
        ).fetchall()
    }


def _upstream_files(up: FakeUpstream, name: str) -> set[tuple[str, str, bool]]:
    """The same, as the fake upstream has it now (its truth)."""
    norm = canonicalize_name(name)
    if norm not in up.index.projects:
        return set()
    return {
        (rel.version, f.filename, bool(f.yanked))
        for rel in up.index.releases(norm).values()
        for f in rel.files
    }


def _with_files(up: FakeUpstream) -> list[str]:
    return [n for n in sorted(up.index.projects) if any(_upstream_files(up, n))]


@pytest.fixture
def up() -> Any:
    with FakeUpstream(FakeIndex.generate(12)) as fake:
        yield fake


def test_time_travel_against_truth(up: FakeUpstream, tmp_path: Path) -> None:
    """Record upstream's state at S1, let it change in every way the history tracks, sync to
    S2: the snapshot as of S1 is upstream's S1 state, the newest is S2's, and the history
    and the change feed say exactly what changed."""
    db = tmp_path / "m.duckdb"
    names = _with_files(up)
    assert sync(up, db).ok
    s1 = up.index.serial
    truth1 = {n: _upstream_files(up, n) for n in names}

    grows, yanks, loses, goes, quarantined = names[:5]
    up.index.add_release(grows, "77.0", wheels=1)
    yanked_version = sorted(up.index.releases(yanks))[0]
    up.index.yank(yanks, yanked_version, "broken")
    lost = sorted(f for _v, f, _y in truth1[loses])[0]
    up.index.delete_file(loses, lost)
    up.index.delete_project(goes)
    assert up.index.set_status(quarantined, "quarantined", "malware")
    assert sync(up, db).ok
    s2 = up.index.serial
    assert s2 > s1 and snapshot_serial(db) == s2

    old = pypi_assets.connect(db, as_of=s1)
    new = pypi_assets.connect(db)
    for n in names:
        assert _files(old, n) == truth1[n], n
    for n in (grows, yanks, loses):
        assert _files(new, n) == _upstream_files(up, n), n
    assert _files(new, goes) == set()  # removed upstream
    assert (lost in {f for _v, f, _y in _files(old, loses)}) and lost not in {
        f for _v, f, _y in _files(new, loses)
    }

    # history: each change at a serial after S1, nothing else
    changes = new.execute(
        "SELECT project, action, version, filename FROM changes WHERE serial > ? ORDER BY ALL",
        [s1],
    ).fetchall()
    grown = {f for v, f, _y in _upstream_files(up, grows) if v == "77.0"}
    want = sorted(
        [(grows, "add_file", "77.0", f) for f in grown]
        + [(yanks, "yank", yanked_version, None)]
        + [(loses, "remove_file", next(v for v, f, _ in truth1[loses] if f == lost), lost)]
        + [(goes, "remove_file", v, f) for v, f, _y in truth1[goes]]
        + [(goes, "remove", None, None)]
        + [(quarantined, "status_quarantined", None, None)],
        key=repr,
    )
    got_without_status_changes_of_others = [
        c for c in changes if not (c[1].startswith("status_") and c[0] != quarantined)
    ]
    assert sorted(got_without_status_changes_of_others, key=repr) == want
    assert all(
        s1 < s <= s2
        for (s,) in new.execute("SELECT serial FROM changes WHERE serial > ?", [s1]).fetchall()
    )
    # every serial published has a time
    assert new.execute("SELECT count(*) FROM serial_times WHERE serial = ?", [s2]).fetchone() == (
        1,
    )
    # the reader of S1 never moves
    assert old.execute("SELECT max(serial) FROM changes").fetchone()[0] <= s1  # type: ignore[index]


def test_a_removed_name_that_comes_back_is_a_new_generation(
    up: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    assert sync(up, db).ok
    name = _with_files(up)[0]
    kept = up.index.projects[canonicalize_name(name)]
    up.index.delete_project(name)
    assert sync(up, db).ok
    up.index.projects[canonicalize_name(name)] = kept  # the name is registered again
    up.index.add_release(name, "1000.0", wheels=1)
    assert sync(up, db).ok
    con = pypi_assets.connect(db)
    rows = con.execute(
        "SELECT generation, appeared_serial < removed_serial, removed_serial IS NULL "
        "FROM project_history WHERE project = ? ORDER BY generation",
        [canonicalize_name(name)],
    ).fetchall()
    assert rows == [(1, True, False), (2, None, True)]


def test_one_change_publishes_one_project(up: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    first = sync(up, db)
    assert first.ok
    name = _with_files(up)[3]
    up.index.add_release(name, "42.0", wheels=1)
    report = sync(up, db)
    assert report.ok
    commit = report.published
    assert commit is not None and not commit.full
    assert commit.projects == 1, commit
    n_files = len(_upstream_files(up, name))
    # the changed project's rows, and nothing of the other eleven
    assert commit.rows["distributions"] == n_files
    assert commit.rows.get("projects") == 1
    with MetadataStore(db) as store:
        assert store.lake_pending() == 0


def test_status_change_without_serial_is_an_interval(up: FakeUpstream, tmp_path: Path) -> None:
    """An archive is not journaled: the poll sees it, and the history keys it on the
    serial of the publication that first saw it."""
    db = tmp_path / "m.duckdb"
    assert sync(up, db).ok
    name = _with_files(up)[1]
    assert not up.index.set_status(name, "archived", "done")
    settings = Settings(upstream=up.url, db=db)
    report = asyncio.run(
        run_sync(settings, make_config(), client_overrides=FAST, refresh_statuses=True)
    )
    assert report.ok
    con = pypi_assets.connect(db)
    rows = con.execute(
        "SELECT status, reason, to_serial IS NULL FROM status_history WHERE project = ? "
        "ORDER BY from_serial, status",
        [canonicalize_name(name)],
    ).fetchall()
    assert ("archived", "done", True) in rows
    assert all(r[2] is False for r in rows if r[0] != "archived")


def test_the_lake_self_check_catches_a_change_nobody_marked(
    up: FakeUpstream, tmp_path: Path
) -> None:
    """The check the tests run after every publication can fail: a row changed behind the
    store's back (no project marked dirty) is found."""
    db = tmp_path / "m.duckdb"
    assert sync(up, db).ok
    with MetadataStore(db) as store:
        store.con.execute("UPDATE releases SET summary = 'changed behind its back'")
        with pytest.raises(LakeMismatch, match="releases"):
            publish_lake(store.con, LakeLocation.beside(db), up.index.serial, check=True)


def test_as_of_a_time_and_before_the_first_snapshot(up: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    assert sync(up, db).ok
    s1 = up.index.serial
    name = _with_files(up)[0]
    up.index.add_release(name, "88.0", wheels=1)
    assert sync(up, db).ok
    (_v1, t1, serial1), (_v2, t2, _serial2) = snapshots(db)[-2:]
    assert serial1 == s1 and t1 < t2
    at_t1 = pypi_assets.connect(db, as_of=t1)
    assert "88.0" not in {v for v, _f, _y in _files(at_t1, canonicalize_name(name))}
    assert "88.0" in {v for v, _f, _y in _files(pypi_assets.connect(db), canonicalize_name(name))}
    with pytest.raises(SnapshotNotFound, match="no snapshot at or before serial"):
        pypi_assets.connect(db, as_of=0)
    with pytest.raises(SnapshotNotFound):
        pypi_assets.connect(db, as_of=datetime(2000, 1, 1, tzinfo=UTC))
    with pytest.raises(SnapshotNotFound, match="no published snapshot"):
        pypi_assets.connect(tmp_path / "other.duckdb")


def test_export_writes_one_duckdb_file_and_parquet(
    up: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    db = tmp_path / "m.duckdb"
    assert sync(up, db).ok
    out = tmp_path / "export" / "pypi.duckdb"
    r = run_cli(
        ["export", "--db", str(db), "--out", str(out), "--parquet", str(tmp_path / "pq")], cli_env
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lake = pypi_assets.connect(db)
    con = duckdb.connect(str(out), read_only=True)
    for table in ("distributions", "selected_distributions", "file_history", "latest_releases"):
        want = lake.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == want, table
        assert want is not None and want[0] > 0, table
    pq = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{tmp_path / 'pq' / 'distributions.parquet'}')"
    ).fetchone()
    assert pq == lake.execute("SELECT count(*) FROM distributions").fetchone()
    bad = run_cli(["export", "--db", str(db), "--out", str(out), "--as-of", "yesterday"], cli_env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


_READER = textwrap.dedent(
    """
    import sys, time
    import pypi_assets
    db, stop = sys.argv[1], sys.argv[2]
    import os
    errors = reads = 0
    held = pypi_assets.connect(db)
    first = held.execute("SELECT count(*) FROM distributions").fetchone()[0]
    seen = set()
    while not os.path.exists(stop):
        try:
            con = pypi_assets.connect(db)
            a = con.execute("SELECT count(*) FROM distributions").fetchone()[0]
            b = con.execute("SELECT count(*) FROM selected_distributions").fetchone()[0]
            seen.add(a)
            if a != b:
                errors += 1
            if held.execute("SELECT count(*) FROM distributions").fetchone()[0] != first:
                errors += 1  # a held connection stays on its snapshot
            con.close()
            reads += 1
        except Exception as exc:
            errors += 1
            print(repr(exc), file=sys.stderr)
        time.sleep(0.05)
    print(reads, errors, len(seen))
    """
)


@pytest.mark.slow
def test_readers_in_another_process_during_twenty_runs(up: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    assert sync(up, db).ok
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(db), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        name = _with_files(up)[0]
        for i in range(20):
            up.index.add_release(name, f"{100 + i}.0", wheels=1)
            assert sync(up, db).ok
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=120)
    reads, errors, seen = (int(x) for x in out.split())
    assert errors == 0, err
    assert reads > 20 and seen > 5, (reads, seen)


def test_a_table_a_newer_schema_adds_is_published_whole(up: FakeUpstream, tmp_path: Path) -> None:
    """A lake written before a table existed (``wheel_tags`` dropped here) gets that table
    whole at the next publication, while the other tables are compared for the dirty
    projects only; the self-check then finds the lake equal to the working database."""
    db = tmp_path / "m.duckdb"
    assert sync(up, db).ok
    location = LakeLocation.beside(db)
    with MetadataStore(db) as store:
        wheels = store.con.execute("SELECT count(*) FROM wheel_tags").fetchone()
        assert wheels is not None and wheels[0] > 0
        cur = store.con.cursor()
        attach_lake(cur, location, "old")
        cur.execute("DROP TABLE old.main.wheel_tags")
        cur.execute("DETACH old")
        cur.close()
        commit = publish_lake(store.con, location, up.index.serial, check=True)
    assert not commit.full and commit.rows == {"wheel_tags": wheels[0]}, commit.rows


@pytest.mark.parametrize("stem", ["mirror-1", 'my "mirror" 2', "select"])
def test_a_database_of_any_file_name_is_published(
    up: FakeUpstream, tmp_path: Path, stem: str
) -> None:
    """The working database's name is its file's stem, the operator's choice: publishing
    quotes it (a '-' made every run fail on a SQL syntax error after the fetch)."""
    db = tmp_path / f"{stem}.duckdb"
    assert sync(up, db).ok
    name = _with_files(up)[1]
    up.index.add_release(name, "42.0", wheels=1)
    report = sync(up, db)
    assert report.ok and report.published is not None
    assert report.published.projects == 1
    with MetadataStore(db) as store:
        assert store.lake_pending() == 0
        assert ("42.0", f"{name.replace('-', '_')}-42.0-py3-none-any.whl", False) in _files(
            store.con, name
        )
