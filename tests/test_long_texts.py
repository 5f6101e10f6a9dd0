"""Long descriptions are stored once, out of line (store/long_texts.py), and every reader
sees them whole: the ``distributions`` view, the stored state a later sync compares with,
the index's JSON API, and the analysts' lake. Small thresholds here, so the texts are small."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import duckdb
import pytest

import pypi_assets
from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.filters import release_file_filter
from pypi_assets.pypi.records import Distribution, Project, Release, StoredText
from pypi_assets.pypi.simple import IndexOptions
from pypi_assets.store import MetadataStore, duckdb_store
from pypi_assets.store.checks import run_checks
from pypi_assets.store.long_texts import (
    LONG_TEXT,
    PIECE,
    TornText,
    drop_unreferenced,
    text_digest,
)
from pypi_assets.store.snapshot import export_snapshot, publish_snapshot
from pypi_assets.sync.index import project_pages, write_index
from pypi_assets.sync.selection import _kept

from .helpers import big_description, dump, make_config, sync

LONG = 1000  # the threshold the stores here use


def _text(seed: str, n: int = 3 * PIECE + 17) -> str:
    unit = f"{seed}: caf\u00e9 \u2603 na\u00efve \U0001f40d line\n"
    return (unit * (n // len(unit) + 1))[:n]


def _project(name: str, text: str, serial: int = 5, other: str | None = None) -> Project:
    files = [
        Distribution(
            filename=f"{name}-1.0{ext}",
            packagetype=kind,
            name=name,
            version="1.0",
            description=text,
            project=name,
            release_version="1.0",
            sha256=f"{i}" * 64,
            project_serial=serial,
        )
        for i, (ext, kind) in enumerate(
            (("-py3-none-any.whl", "bdist_wheel"), (".tar.gz", "sdist"))
        )
    ]
    info = {"description": other if other is not None else text, "summary": "s", "version": "1.0"}
    rel = Release(name=name, version="1.0", info=dict(info), file_count=2)
    return Project(
        name=name,
        display_name=name.title(),
        serial=serial,
        releases=[rel],
        distributions=files,
        info=info,
        latest_version="1.0",
    )


def _pieces(store: MetadataStore) -> dict[str, int]:
    return dict(store.query("SELECT digest, count(*) FROM long_texts GROUP BY digest"))


def test_a_long_description_is_stored_once_and_read_whole(tmp_path: Path) -> None:
    text = _text("a")
    with MetadataStore(tmp_path / "m.duckdb", long_text=LONG) as store:
        store.write_projects([_project("foo", text)])
        store.replace_selected_projects(["foo"])
        # one text, in pieces, for two files and two infos
        assert _pieces(store) == {text_digest(text): 4}
        assert store.query(
            "SELECT count(*) FROM distribution_rows WHERE description IS NULL "
            "AND description_digest = ?",
            [text_digest(text)],
        ) == [(2,)]
        assert "caf" not in store.query("SELECT info FROM projects")[0][0]
        # the view and every reader give the text back
        got = store.query("SELECT description FROM distributions ORDER BY filename")
        assert got == [(text,), (text,)]
        # the stored state a sync compares with names the text, unread, once for all rows
        stored = store.load_stored("foo")
        assert stored is not None and stored.info is not None
        named = StoredText(text_digest(text))
        assert stored.info["description"] == named and stored.info["summary"] == "s"
        assert stored.releases["1.0"].info == {
            "description": named,
            "summary": "s",
            "version": "1.0",
        }
        assert {d.description for d in stored.distributions.values()} == {named}
        assert store.long_texts([named.digest]) == {named.digest: text}
        [indexed] = store.index_projects()
        assert indexed.info_description == text_digest(text)
        whole = indexed.whole(store.long_texts([indexed.info_description]))
        assert json.loads(whole.info or "{}")["description"] == text
        [(_, _, rinfo)] = store.release_infos(["foo"])
        assert json.loads(rinfo or "{}")["description"] == text


def test_a_short_description_stays_inline(tmp_path: Path) -> None:
    with MetadataStore(tmp_path / "m.duckdb", long_text=LONG) as store:
        store.write_projects([_project("foo", "short")])
        assert _pieces(store) == {}
        assert store.query("SELECT DISTINCT description FROM distribution_rows") == [("short",)]
        assert json.loads(store.query("SELECT info FROM projects")[0][0])["description"] == "short"


def test_texts_no_row_names_are_dropped_and_shared_ones_kept(tmp_path: Path) -> None:
    a, b, c = _text("a"), _text("b"), _text("c")
    with MetadataStore(tmp_path / "m.duckdb", long_text=LONG) as store:
        store.write_projects([_project("foo", a), _project("bar", a)])
        assert set(_pieces(store)) == {text_digest(a)}
        # foo's description changes: a is still bar's
        store.write_projects([_project("foo", b, serial=6)])
        assert set(_pieces(store)) == {text_digest(a), text_digest(b)}
        # bar's changes too, and its info has a text of its own: a is gone
        store.write_projects([_project("bar", b, serial=6, other=c)])
        assert set(_pieces(store)) == {text_digest(b), text_digest(c)}
        bar = store.load_stored("bar")
        assert bar is not None and bar.info is not None
        assert bar.info["description"] == StoredText(text_digest(c))
        assert store.long_texts([text_digest(c)]) == {text_digest(c): c}
        # a write skipped as older leaves no pieces behind
        store.write_projects([_project("foo", a, serial=2)])
        assert set(_pieces(store)) == {text_digest(b), text_digest(c)}


def test_a_crash_between_the_pieces_and_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pieces are committed before the project's transaction. A failure in it leaves
    them unnamed: the next write of the same text keeps them (after mending a torn one),
    and ``drop_unreferenced`` deletes those no row names."""
    import pypi_assets.store.duckdb_store as ds

    text, other = _text("a"), _text("z")
    with MetadataStore(tmp_path / "m.duckdb", long_text=LONG) as store:

        def boom(*_a: object, **_k: object) -> None:
            raise RuntimeError("crash")

        monkeypatch.setattr(ds, "_insert_projects", boom)
        with pytest.raises(RuntimeError):
            store.write_projects([_project("foo", text), _project("bar", other)])
        monkeypatch.undo()
        assert set(_pieces(store)) == {text_digest(text), text_digest(other)}
        assert store.query("SELECT count(*) FROM projects") == [(0,)]
        # a torn text (a piece lost) is written again whole
        store.con.execute("DELETE FROM long_texts WHERE part = 1")
        store.write_projects([_project("foo", text)])
        assert store.query("SELECT description FROM distributions LIMIT 1") == [(text,)]
        assert drop_unreferenced(store.con) == 1  # bar's text, which no row names
        assert set(_pieces(store)) == {text_digest(text)}
        store.con.execute("INSERT INTO long_texts VALUES ('f' || repeat('0', 63), 0, 'torn', 2)")
    with MetadataStore(tmp_path / "m.duckdb", long_text=LONG) as store:  # opening drops it
        assert set(_pieces(store)) == {text_digest(text)}


def test_an_older_database_keeps_its_files(tmp_path: Path) -> None:
    """A database made when ``distributions`` was a table: it becomes the rows' table,
    and the view takes its name, with every row."""
    db = tmp_path / "old.duckdb"
    with MetadataStore(db, long_text=LONG) as store:
        store.write_projects([_project("foo", "short")])
    con = duckdb.connect(str(db))  # the old layout, its views over the table kept
    con.execute("DROP VIEW distributions")
    con.execute("ALTER TABLE distribution_rows DROP COLUMN description_digest")
    con.execute("ALTER TABLE distribution_rows RENAME TO distributions")
    con.close()
    with MetadataStore(db, long_text=LONG) as store:
        kinds = dict(
            store.query(
                "SELECT table_name, 'table' FROM duckdb_tables() UNION ALL "
                "SELECT view_name, 'view' FROM duckdb_views() WHERE NOT internal"
            )
        )
        assert kinds["distributions"] == "view" and kinds["distribution_rows"] == "table"
        assert store.query("SELECT description FROM distributions") == [("short",), ("short",)]
        store.write_projects([_project("foo", _text("a"), serial=6)])
        assert store.query(
            "SELECT count(*) FROM distributions WHERE length(description) > 1000"
        ) == [(2,)]


def _lake(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return con.execute(sql).fetchall()


def test_the_lake_keeps_the_text_apart_and_readers_see_it_whole(tmp_path: Path) -> None:
    """The lake's rows name the text and its long_texts holds it, once; the readers' views
    (``connect``) give it whole, as of each snapshot: a description changed later leaves the
    older snapshot its own text."""
    a, b = _text("a"), _text("b")
    db = tmp_path / "m.duckdb"
    with MetadataStore(db, long_text=LONG) as store:
        store.write_projects([_project("foo", a), _project("bar", "short")])
        store.replace_selected_projects(["foo", "bar"])
        publish_snapshot(store.con, db, 5, check=True)
        # written again unchanged: nothing to copy, nothing differs
        store.write_projects([replace(_project("foo", a), serial=6)])
        publish_snapshot(store.con, db, 6, check=True)
        store.write_projects([_project("foo", b, serial=7)])
        commit = publish_snapshot(store.con, db, 7, check=True)
        assert commit.rows["long_texts"] == 4  # b's pieces, and only them
    old, new = pypi_assets.connect(db, as_of=6), pypi_assets.connect(db)
    for con, text in ((old, a), (new, b)):
        infos = dict(_lake(con, "SELECT name, info FROM projects"))
        assert json.loads(str(infos["foo"])) == {
            "description": text,
            "summary": "s",
            "version": "1.0",
        }
        assert json.loads(str(infos["bar"]))["description"] == "short"
        [(rinfo,)] = _lake(con, "SELECT info FROM releases WHERE project = 'foo'")
        assert json.loads(str(rinfo))["description"] == text
        got = _lake(con, "SELECT DISTINCT description FROM distributions WHERE project = 'foo'")
        assert got == [(text,)]
        assert "info_description" not in {r[0] for r in _lake(con, "DESCRIBE projects")}
        assert "description_digest" not in {r[0] for r in _lake(con, "DESCRIBE distributions")}
    # the lake itself: the rows name the newest text, long_texts holds it alone
    assert _lake(new, "SELECT DISTINCT digest FROM lake.main.long_texts") == [(text_digest(b),)]
    raw = "SELECT DISTINCT description, description_digest FROM lake.main.distributions "
    assert _lake(new, raw + "WHERE project = 'foo'") == [(None, text_digest(b))]
    old.close()
    new.close()
    out = tmp_path / "export.duckdb"
    export_snapshot(db, out)
    exported = duckdb.connect(str(out), read_only=True)
    got = _lake(exported, "SELECT DISTINCT description FROM distributions WHERE project = 'foo'")
    assert got == [(b,)]


def test_a_torn_text_fails_the_check_and_is_never_read_short(tmp_path: Path) -> None:
    """A piece lost (by hand: the write makes them whole first) is named by the blocking
    check, and reading the project is an error, not a shorter description."""
    text = _text("a")
    with MetadataStore(tmp_path / "m.duckdb", long_text=LONG) as store:
        store.write_projects([_project("foo", text), _project("bar", "short")])
        checks = {c.name: c for c in run_checks(store, None)}
        assert checks["long_texts_whole"].passed
        store.con.execute("DELETE FROM long_texts WHERE part = 2")
        # a stray piece naming no text hides nothing (NOT IN over a NULL digest did)
        store.con.execute("INSERT INTO long_texts VALUES (NULL, 0, 'z', 1)")
        checks = {c.name: c for c in run_checks(store, None)}
        assert not checks["long_texts_whole"].passed
        store.con.execute("DELETE FROM long_texts WHERE digest IS NULL")
        assert checks["long_texts_whole"].metadata["sample"] == ["foo"]
        with pytest.raises(TornText, match="not stored whole"):
            store.load_stored("foo")
        with pytest.raises(TornText, match="3 of 4 pieces"):
            store.long_texts([text_digest(text)])
        # written again, the text is made whole; a piece changed is told by the digest
        store.write_projects([_project("foo", text, serial=6)])
        assert {c.name: c.passed for c in run_checks(store, None)}["long_texts_whole"]
        store.con.execute("UPDATE long_texts SET text = 'x' || text[2:] WHERE part = 0")
        with pytest.raises(TornText, match="do not make the text"):
            store.long_texts([text_digest(text)])
        # a sync carrying the stored text by digest checks it is still whole before
        # writing: a text lost meanwhile is an error, not rows naming nothing
        stored = store.load_stored("foo")
        assert stored is not None
        again = _project("foo", text, serial=7)
        again.distributions = list(stored.distributions.values())
        store.con.execute("DELETE FROM long_texts WHERE part = 3")
        with pytest.raises(TornText, match="not stored whole"):
            store.write_projects([again])


def test_listing_and_filtering_read_no_long_text(tmp_path: Path) -> None:
    """Listing the index's projects and the release-file filters read no long text (each
    index write and selection read them all, every run): a torn text shows only where the
    text is used, the pages of its own project, and those of the others are written."""
    text = _text("a")
    with MetadataStore(tmp_path / "m.duckdb", long_text=LONG) as store:
        store.write_projects([_project("bar", _text("b")), _project("foo", text)])
        store.replace_selected_projects(["bar", "foo"])
        store.con.execute(  # a piece altered: only reading the text can tell
            "UPDATE long_texts SET text = 'x' || text[2:] WHERE digest = ? AND part = 1",
            [text_digest(text)],
        )
        listed = {p.name: p for p in store.index_projects()}
        assert listed["foo"].info_description == text_digest(text)
        assert json.loads(listed["foo"].info or "{}")["description"] is None
        rff = release_file_filter(make_config())
        assert sorted(_kept(store, rff, "foo", None) or []) == [
            "foo-1.0-py3-none-any.whl",
            "foo-1.0.tar.gz",
        ]
        options = IndexOptions("")
        pages = project_pages(store, listed["bar"], options, lazy=True)
        api = json.loads(pages["pypi/bar/json"])
        assert api["info"]["description"] == _text("b")
        with pytest.raises(TornText):
            project_pages(store, listed["foo"], options, lazy=True)
        with pytest.raises(TornText):
            write_index(store, tmp_path / "web", lazy=True)


def test_a_filter_on_the_description_sees_the_stored_text(tmp_path: Path) -> None:
    """``regex_project_metadata`` can match ``info.description``: the selection puts the
    stored text back for it (only then), and the project is kept or dropped on its text."""
    rules = (
        "[plugins]\nenabled =\n    regex_project_metadata\n"
        "[regex_project_metadata]\nnot-null:info.description =\n    {}\n"
    )
    with MetadataStore(tmp_path / "m.duckdb", long_text=LONG) as store:
        store.write_projects([_project("foo", _text("a")), _project("bar", _text("b"))])
        for name, pattern, kept in (
            ("foo", ".*a: caf.*", True),
            ("bar", ".*a: caf.*", False),
            ("bar", ".*b: caf.*", True),
        ):
            rff = release_file_filter(make_config(rules.format(pattern)))
            assert bool(_kept(store, rff, name, None)) is kept, (name, pattern)


def test_pieces_stored_without_their_count_are_mended(tmp_path: Path) -> None:
    """The layout of one earlier commit: pieces without ``pieces``. Opening for writing
    counts them (the digest still checks the text), and the lake, published before texts
    were kept apart, is compared whole at its next publication."""
    text = _text("a")
    db = tmp_path / "m.duckdb"
    with MetadataStore(db, long_text=LONG) as store:
        store.write_projects([_project("foo", text)])
    con = duckdb.connect(str(db))
    con.execute("ALTER TABLE long_texts DROP COLUMN pieces")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    with MetadataStore(db, long_text=LONG) as store:
        assert store.query("SELECT DISTINCT pieces FROM long_texts") == [(4,)]
        stored = store.load_stored("foo")
        assert stored is not None and stored.info is not None
        assert stored.info["description"] == StoredText(text_digest(text))
        assert store.long_texts([text_digest(text)]) == {text_digest(text): text}
        assert store.get_meta("lake_full") == "1"
        assert store.get_meta("schema_version") == "2"
    # a database the next commit migrated said version 2 with the counts still NULL
    con = duckdb.connect(str(db))
    con.execute("UPDATE long_texts SET pieces = NULL")
    con.close()
    with MetadataStore(db, long_text=LONG) as store:
        assert store.query("SELECT DISTINCT pieces FROM long_texts") == [(4,)]
        assert store.load_stored("foo") is not None


def test_the_lake_never_takes_a_torn_text_and_mends_its_own(tmp_path: Path) -> None:
    from pypi_assets.store.lake import resolve_location
    from pypi_assets.store.lake_engine import attach_lake

    text = _text("a")
    db = tmp_path / "m.duckdb"
    with MetadataStore(db, long_text=LONG) as store:
        store.write_projects([_project("foo", text)])
        store.replace_selected_projects(["foo"])
        store.con.execute("UPDATE long_texts SET pieces = 9")  # torn in the working database
        with pytest.raises(TornText, match="not stored whole"):
            publish_snapshot(store.con, db, 5)
        store.con.execute(
            "UPDATE long_texts SET pieces = 4, part = part + 1"
        )  # as many, misnumbered
        with pytest.raises(TornText, match="not stored whole"):
            publish_snapshot(store.con, db, 5)
        assert not {c.name: c.passed for c in run_checks(store, None)}["long_texts_whole"]
        store.con.execute("UPDATE long_texts SET part = part - 1")
        publish_snapshot(store.con, db, 5)
        # a piece lost in the lake: the next publication of the project copies it whole
        cur = store.con.cursor()
        attach_lake(cur, resolve_location(db, None), "l")
        cur.execute("DELETE FROM l.main.long_texts WHERE part = 1")
        cur.execute("DETACH l")
        cur.close()
        store.write_projects([_project("foo", text, serial=6)])
        publish_snapshot(store.con, db, 6, check=True)
    con = pypi_assets.connect(db)
    assert _lake(con, "SELECT DISTINCT description FROM distributions") == [(text,)]


def test_a_sync_carries_a_stored_text_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later sync of a project with a long description (a new file in its release) reuses
    the stored release info and files as they are: their text stays named by its digest,
    never read back (a 50 MB text read back held 2.5 times its size), and the rows written
    equal those of a sync from scratch."""
    idx = FakeIndex.generate(2)
    text, _ = big_description(idx, 2 * LONG_TEXT + 2 * PIECE)  # 320 KiB of characters
    with FakeUpstream(idx) as up:
        sync(up, tmp_path / "m.duckdb")
        idx.add_file("big-description", "1.0", tag="cp311-none-any")

        def unread(*_: object, **__: object) -> NoReturn:
            raise AssertionError("a long text was read back")

        with monkeypatch.context() as m:
            m.setattr(duckdb_store, "read_texts", unread)
            again = sync(up, tmp_path / "m.duckdb")
        assert again.refresh.refreshed == ["big-description"] and not again.refresh.failed
        sync(up, tmp_path / "fresh.duckdb")
    got, fresh = dump(tmp_path / "m.duckdb"), dump(tmp_path / "fresh.duckdb")
    assert got["distributions"] == fresh["distributions"]
    assert got["releases"] == fresh["releases"]
    with MetadataStore(tmp_path / "m.duckdb") as store:
        # the wheel stored before keeps the text (the new one has its own METADATA), and the
        # release info names it by digest
        assert store.query(
            "SELECT count(*) FROM distributions WHERE project = 'big-description' "
            "AND description = ?",
            [text],
        ) == [(1,)]
        [(info, digest)] = store.query(
            "SELECT info, info_description FROM releases WHERE project = 'big-description'"
        )
        assert json.loads(info)["description"] is None
        assert store.long_texts([digest]) == {digest: text}
