"""Store semantics: atomic per-project replace, only when the incoming serial is newer."""

from __future__ import annotations

from pathlib import Path

from pypi_assets.pypi.records import Distribution, Project, Release
from pypi_assets.store import MetadataStore


def _project(serial: int, summary: str, files: int = 2) -> Project:
    dists = [
        Distribution(
            filename=f"foo-1.{i}.tar.gz",
            packagetype="sdist",
            name="foo",
            version=f"1.{i}",
            summary=summary,
            requires_dist=["bar>=1", 'baz; extra == "x"'],
            project="foo",
            release_version=f"1.{i}",
            sha256="0" * 64,
            project_serial=serial,
        )
        for i in range(files)
    ]
    rels = [
        Release(name="foo", version=f"1.{i}", info={"summary": summary}, file_count=1)
        for i in range(files)
    ]
    return Project(
        name="foo", display_name="Foo", serial=serial, releases=rels, distributions=dists
    )


def _rows(store: MetadataStore) -> list[tuple[object, ...]]:
    return store.query(
        "SELECT filename, summary, project_serial FROM distributions ORDER BY filename"
    )


def test_older_serial_never_overwrites_newer(tmp_path: Path) -> None:
    with MetadataStore(tmp_path / "db.duckdb") as store:
        assert store.write_projects([_project(10, "new")]).written == ["foo"]
        res = store.write_projects([_project(5, "old", files=3)])
        assert res.written == [] and res.skipped_older == ["foo"]
        assert _rows(store) == [("foo-1.0.tar.gz", "new", 10), ("foo-1.1.tar.gz", "new", 10)]
        # Equal serial: also skipped (idempotent re-runs).
        assert store.write_projects([_project(10, "again")]).written == []
        assert {r[1] for r in _rows(store)} == {"new"}


def test_newer_serial_replaces_whole_project(tmp_path: Path) -> None:
    with MetadataStore(tmp_path / "db.duckdb") as store:
        store.write_projects([_project(10, "a", files=3)])
        store.write_projects([_project(11, "b", files=1)])
        assert _rows(store) == [("foo-1.0.tar.gz", "b", 11)]
        assert store.query("SELECT count(*) FROM releases")[0][0] == 1
        assert store.query("SELECT count(*) FROM dependencies")[0][0] == 2
        assert store.query("SELECT serial, state FROM projects")[0] == (11, "ok")


def test_same_batch_keeps_the_newest(tmp_path: Path) -> None:
    with MetadataStore(tmp_path / "db.duckdb") as store:
        store.write_projects([_project(12, "twelve"), _project(9, "nine")])
        assert {r[2] for r in _rows(store)} == {12}


def test_failed_write_leaves_old_state(tmp_path: Path) -> None:
    with MetadataStore(tmp_path / "db.duckdb") as store:
        store.write_projects([_project(10, "old")])
        bad = _project(20, "new")
        bad.distributions[1].size = "not a number"  # type: ignore[assignment]
        try:
            store.write_projects([bad])
        except Exception:
            pass
        else:  # pragma: no cover
            raise AssertionError("the bad write should fail")
        assert _rows(store) == [("foo-1.0.tar.gz", "old", 10), ("foo-1.1.tar.gz", "old", 10)]


def test_dependencies_parsed(tmp_path: Path) -> None:
    with MetadataStore(tmp_path / "db.duckdb") as store:
        store.write_projects([_project(1, "x", files=1)])
        rows = store.query(
            "SELECT dep_project, specifier, optional, extra FROM dependencies ORDER BY dep_project"
        )
        assert rows == [("bar", ">=1", False, None), ("baz", None, True, "x")]


def test_removed_projects_are_marked_not_kept_silently(tmp_path: Path) -> None:
    with MetadataStore(tmp_path / "db.duckdb") as store:
        store.write_projects([_project(1, "x")])
        assert store.mark_removed(99) == ["foo"]  # the (empty) upstream listing lacks it
        assert store.query("SELECT state, removed_serial FROM projects")[0] == ("removed", 99)
        store.replace_selected_projects(["foo"])
        store.select_all_files_of_selected_projects()
        assert store.query("SELECT count(*) FROM selected_distributions")[0][0] == 0
        # A removed project that comes back with a newer serial is replaced as usual.
        assert store.write_projects([_project(100, "back")]).written == ["foo"]
        assert store.query("SELECT state FROM projects")[0] == ("ok",)
