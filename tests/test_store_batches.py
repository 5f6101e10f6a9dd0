"""The store's write path costs a few statements per batch, not per project, and no
statement makes the Python client search for a module on every call."""

from __future__ import annotations

import importlib.abc
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from pypi_assets.pypi.records import Ownership, Project, ProjectNotes, Release, Vulnerability
from pypi_assets.store import MetadataStore
from pypi_assets.store.duckdb_store import record_notes
from pypi_assets.store.statuses import record_polls


def _project(name: str) -> Project:
    rel = Release(name=name, version="1.0", info={"summary": "s"}, file_count=0)
    return Project(name=name, display_name=name, serial=1, releases=[rel], distributions=[])


def _vuln(vid: str) -> Vulnerability:
    return Vulnerability(vid, [], "summary", None, ["2.0"], None, "osv", None)


def _notes(name: str, tag: str) -> ProjectNotes:
    return ProjectNotes(
        name=name,
        confirmed=True,
        status=("archived", f"reason {tag}", 7),
        ownership=Ownership(f"org-{tag}", [("Owner", f"user-{tag}")]),
        vulnerabilities={"1.0": [_vuln(f"V-{tag}")]},
        etags={f"/simple/{name}/": (None, f'"{tag}"')},
    )


class _Counting:
    """A connection that counts the statements run through it."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.statements = con, 0

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        self.statements += 1
        return self.con.execute(sql, params or [])


def _statements(store: MetadataStore, names: list[str]) -> int:
    with store.transaction() as con:
        counting = _Counting(con)
        record_notes(counting, [_notes(n, "x") for n in names], datetime.now(UTC))  # type: ignore[arg-type]
        return counting.statements


def test_notes_of_many_projects_take_as_many_statements_as_of_two(tmp_path: Path) -> None:
    names = [f"p{i}" for i in range(60)]
    with MetadataStore(tmp_path / "m.duckdb") as store:
        store.write_projects([_project(n) for n in names])
        two, sixty = _statements(store, names[:2]), _statements(store, names)
    assert sixty == two


def test_notes_stored_in_one_batch_equal_notes_stored_one_at_a_time(tmp_path: Path) -> None:
    """Set-based storing keeps each project's notes apart, and a project given twice in
    one batch ends as if its notes were stored in order (the later one wins)."""
    names = ["a", "b", "c"]
    batch = [_notes("a", "1"), _notes("b", "1"), _notes("a", "2"), ProjectNotes("c")]
    batch.append(ProjectNotes("b", confirmed=True))  # confirms, changes nothing else
    dumps = []
    for together in (True, False):
        with MetadataStore(tmp_path / f"{together}.duckdb") as store:
            store.write_projects([_project(n) for n in names])
            if together:
                record_polls(store, batch)
            else:
                for notes in batch:
                    record_polls(store, [notes])
            dumps.append(
                {
                    t: store.query(f"SELECT * EXCLUDE ({skip}) FROM {t} ORDER BY ALL")
                    for t, skip in (
                        ("projects", "updated_at, status_checked_at"),
                        ("project_roles", "organization"),
                        ("vulnerabilities", "summary"),
                        ("upstream_etags", "checked_at"),
                    )
                }
                | {
                    "confirmed": store.query(
                        "SELECT name FROM projects WHERE status_checked_at IS NOT NULL ORDER BY 1"
                    )
                }
            )
    assert dumps[0] == dumps[1]
    projects = {row[0]: row for row in dumps[0]["projects"]}
    assert "org-2" in projects["a"] and "org-1" in projects["b"]
    assert dumps[0]["confirmed"] == [("a",), ("b",)]
    assert dumps[0]["project_roles"] == [("a", "Owner", "user-2"), ("b", "Owner", "user-1")]
    assert [r[2] for r in dumps[0]["vulnerabilities"] if r[0] == "a"] == ["V-2"]
    assert dumps[0]["upstream_etags"][0][:4] == ("/simple/a/", "a", None, '"2"')


class _Lookups(importlib.abc.MetaPathFinder):
    """Counts the module searches that reach the import system (a cached module, or one
    found once, never does)."""

    def __init__(self) -> None:
        self.names: Counter[str] = Counter()

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        self.names[fullname] += 1
        return None


def test_store_writes_never_search_for_a_module(tmp_path: Path) -> None:
    """DuckDB's client looks for pandas on every statement with parameters; when pandas
    is not installed, each look searches ``sys.path`` under the import lock (2 ms a
    statement, measured, and the fetch's writer threads queue on that lock)."""
    names = [f"p{i}" for i in range(20)]
    with MetadataStore(tmp_path / "m.duckdb") as store:
        store.write_projects([_project(n) for n in names[:1]])  # the store's own imports
        lookups = _Lookups()
        sys.meta_path.insert(0, lookups)
        try:
            for n in names[1:]:
                store.write_projects([_project(n)])
                record_polls(store, [_notes(n, "x")])
        finally:
            sys.meta_path.remove(lookups)
    assert not lookups.names, dict(lookups.names)


def test_a_project_not_stored_yet_is_fetched_without_reading_the_store(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A first sync reads no project's stored state (there is none: one query tells); a
    later sync reads the state of each stored project it refreshes, so an unchanged file
    is reused (no request for it)."""
    import asyncio

    from pypi_assets.fake import FakeIndex, FakeUpstream
    from pypi_assets.sync.run import run_sync
    from pypi_assets.sync.settings import Settings

    from .helpers import FAST, make_config

    loads: list[str] = []
    real = MetadataStore.load_stored

    def counting(self: MetadataStore, name: str) -> Any:
        loads.append(name)
        return real(self, name)

    monkeypatch.setattr(MetadataStore, "load_stored", counting)
    with FakeUpstream(FakeIndex.generate(5)) as up:
        settings = Settings(upstream=up.url, db=tmp_path / "m.duckdb", blobs=None)
        first = asyncio.run(run_sync(settings, make_config(), client_overrides=FAST))
        assert first.ok and len(first.refresh.refreshed) == 5 and loads == []
        name = sorted(up.index.projects)[1]
        up.index.add_release(name, "9.0")
        up.reset_counts()
        again = asyncio.run(run_sync(settings, make_config(), client_overrides=FAST))
        assert again.ok and again.refresh.refreshed == [name] and loads == [name]
        # the stored state was used: only the new release's files were asked for metadata
        assert up.counts["version-json"] == 1
