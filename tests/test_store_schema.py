"""The schema is declared once (store/schema.py): tables, migrations and inserts come from it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from pypi_assets.pypi.records import Distribution, Project, Release
from pypi_assets.store import MetadataStore
from pypi_assets.store.duckdb_store import (
    dependency_rows,
    distribution_row,
    project_row,
    release_rows,
)
from pypi_assets.store.long_texts import LongTexts
from pypi_assets.store.schema import (
    DEPENDENCIES,
    DISTRIBUTION_ROWS,
    PROJECTS,
    RELEASES,
    TABLES,
    Table,
)


def _project() -> Project:
    d = Distribution(
        filename="foo-1.0-py3-none-any.whl",
        packagetype="bdist_wheel",
        name="foo",
        version="1.0",
        description="long text",
        requires_dist=["bar>=1", 'baz; extra == "x"'],
        project="foo",
        release_version="1.0",
        sha256="0" * 64,
        project_serial=7,
    )
    rel = Release(name="foo", version="1.0", info={"summary": "s"}, file_count=1)
    return Project(
        name="foo",
        display_name="Foo",
        serial=7,
        releases=[rel],
        distributions=[d],
        info={"description": "long text"},
    )


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[1] for r in con.execute(f"PRAGMA table_info('{table}')").fetchall()]


def test_row_builders_give_exactly_the_declared_columns() -> None:
    p = _project()
    now = datetime.now(UTC)
    texts = LongTexts()
    assert list(project_row(p, now, texts)) == list(PROJECTS.names)
    assert [list(r) for r in release_rows(p, texts)] == [list(RELEASES.names)]
    assert list(distribution_row(p.distributions[0], texts)) == list(DISTRIBUTION_ROWS.names)
    deps = list(dependency_rows(p.name, p.distributions[0]))
    assert len(deps) == 2 and all(list(r) == list(DEPENDENCIES.names) for r in deps)
    assert project_row(p, now, texts)["info"] == '{"description": "long text"}'
    assert next(release_rows(p, texts))["wheel_count"] == 1


def test_a_fresh_database_has_every_declared_column(tmp_path: Path) -> None:
    with MetadataStore(tmp_path / "m.duckdb") as store:
        for table in TABLES:
            assert _columns(store.con, table.name) == list(table.names), table.name


@pytest.mark.parametrize("table", [PROJECTS, RELEASES, DISTRIBUTION_ROWS], ids=lambda t: t.name)
def test_an_older_database_is_migrated_with_its_data(tmp_path: Path, table: Table) -> None:
    """A database created from a shorter declaration (as an older version made it) gains the
    missing columns, with their declared types, and keeps its rows."""
    db = tmp_path / "old.duckdb"
    with MetadataStore(db) as store:
        store.write_projects([_project()])
        before = store.query(f"SELECT count(*) FROM {table.name}")[0][0]
    assert before >= 1
    dropped = [c for c in table.columns[2:] if c.name != table.key][-2:]
    con = duckdb.connect(str(db))
    for c in dropped:
        con.execute(f"ALTER TABLE {table.name} DROP COLUMN {c.name}")
    assert not {c.name for c in dropped} & set(_columns(con, table.name))
    con.close()

    with MetadataStore(tmp_path / "fresh.duckdb") as fresh:
        want = {r[1]: r[2] for r in fresh.query(f"PRAGMA table_info('{table.name}')")}
    with MetadataStore(db) as store:
        got = {r[1]: r[2] for r in store.query(f"PRAGMA table_info('{table.name}')")}
        assert got == want  # every column back, with its declared type
        assert store.query(f"SELECT count(*) FROM {table.name}")[0][0] == before
        # the migrated table takes new rows through the generated insert
        store.write_projects([replace(_project(), serial=8)])
        assert store.query("SELECT serial FROM projects")[0][0] == 8


def test_a_table_created_from_a_shorter_declaration_is_completed(tmp_path: Path) -> None:
    short = Table("releases", RELEASES.columns[:4])
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute(short.ddl())
    con.execute("INSERT INTO releases VALUES ('foo', '0.9', now(), false)")
    con.close()
    with MetadataStore(tmp_path / "old.duckdb") as store:
        assert _columns(store.con, "releases") == list(RELEASES.names)
        assert store.query("SELECT project, version, wheel_count, info FROM releases") == [
            ("foo", "0.9", None, None)
        ]


def test_a_database_laid_out_by_a_newer_version_is_not_written(tmp_path: Path) -> None:
    """A later layout (schema_version above this version's) is refused whole: writing it
    with this version's idea of the tables would lose what the newer one keeps apart."""
    from pypi_assets.store.schema import SCHEMA_VERSION

    db = tmp_path / "m.duckdb"
    with MetadataStore(db) as store:
        store.write_projects([_project()])
        store.con.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)]
        )
    with pytest.raises(duckdb.IOException, match="newer pypi-assets"):
        MetadataStore(db)
    con = duckdb.connect(str(db), read_only=True)  # and nothing was changed
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [
        (str(SCHEMA_VERSION + 1),)
    ]
    con.close()
