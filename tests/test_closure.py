"""Dependency closure (``[pypi_assets] dependency_closure``): pure rules, then real syncs that
extend the stored metadata in rounds against the fake upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.filters import DependencyRow, dependency_closure
from pypi_assets.filters.closure import wanted

from .helpers import make_config, sync

LINUX = {"python_version": "3.12", "sys_platform": "linux"}


def row(
    dep: str,
    spec: str = "",
    marker: str | None = None,
    extra: str | None = None,
    extras: tuple[str, ...] = (),
) -> DependencyRow:
    return DependencyRow(dep, dep, spec or None, extras, marker, extra)


def env(**kw: str) -> dict[str, str]:
    from pypi_assets.filters.config import _environment

    return _environment(" ".join(f"{k}={v}" for k, v in kw.items()))


def test_markers_and_extras() -> None:
    win = row("w", marker='sys_platform == "win32"')
    docs = row("d", marker='extra == "Docs"', extra="Docs")
    old = row("o", marker='python_version < "3.9"')
    assert wanted(win, set(), []) and wanted(old, set(), [])  # no environments: all markers true
    assert not wanted(docs, set(), [])  # ... except extras nobody asked for
    assert wanted(docs, {"docs"}, [])  # extra names are normalised
    assert wanted(docs, set(), [], all_extras=True)
    linux, windows = env(**LINUX), env(python_version="3.8", sys_platform="win32")
    assert not wanted(win, set(), [linux]) and wanted(win, set(), [linux, windows])
    assert windows["os_name"] == "nt" and windows["platform_system"] == "Windows"
    assert not wanted(old, set(), [linux]) and wanted(old, set(), [windows])
    assert wanted(docs, {"docs"}, [linux])


def test_closure_walks_to_a_fixed_point() -> None:
    graph = {
        "app": [row("lib", ">=1"), row("app", extras=("x",))],  # a self-dependency adds an extra
        "lib": [row("core"), row("bad")],
        "core": [row("leaf", marker='extra == "x"', extra="x")],
        "leaf": [],
    }
    calls: list[str] = []

    def deps(name: str, reqs: object) -> list[DependencyRow] | None:
        calls.append(name)
        return graph.get(name)

    c = dependency_closure(
        {"app": set()},
        deps,
        make_config(
            "[blocklist]\npackages =\n    bad\n[plugins]\nenabled =\n    blocklist_project\n"
        ),
    )
    assert set(c.requirements) == {"lib", "core"}  # 'bad' blocked, 'leaf' needs core[x]
    assert [str(r) for r in c.requirements["lib"]] == ["lib>=1"]
    assert c.required_by == {"lib": {"app"}, "core": {"lib"}}
    assert c.extras["app"] == {"x"} and c.unresolved == set()
    assert calls.count("app") == 2  # walked again once its extras grew

    c2 = dependency_closure(
        {"app": set()}, lambda n, r: None if n == "core" else graph.get(n), make_config()
    )
    assert c2.unresolved == {"core", "bad"}  # reached but not stored: the next round fetches them


def graph_index() -> FakeIndex:
    idx = FakeIndex()
    for name in ("app", "lib", "core", "winonly", "docsdep", "unrelated", "blocked-dep"):
        idx.add_project(name)
    for name, version, deps in [
        ("core", "1.0", []),
        ("lib", "0.9", []),
        ("lib", "1.0", ["core"]),
        ("lib", "1.1", ["core>=1"]),
        ("winonly", "1.0", []),
        ("docsdep", "1.0", []),
        ("unrelated", "1.0", []),
        ("blocked-dep", "1.0", []),
        (
            "app",
            "1.0",
            [
                "lib>=1.0",
                'winonly; sys_platform == "win32"',
                'docsdep; extra == "docs"',
                "blocked-dep",
                "ghost>=1",
            ],
        ),
    ]:
        idx.add_release(name, version, deps=deps, wheels=0)
    return idx


@pytest.fixture
def graph() -> Iterator[FakeUpstream]:
    with FakeUpstream(graph_index()) as up:
        yield up


def conf(allow: str = "app", extra: str = "", plugins: str = "") -> str:
    return (
        f"[plugins]\nenabled =\n    allowlist_project\n    blocklist_project\n{plugins}"
        f"[allowlist]\npackages =\n    {allow}\n[blocklist]\npackages =\n    blocked-dep\n"
        f"[pypi_assets]\ndependency_closure = true\n{extra}"
    )


def selection(db: Path) -> dict[str, set[str]]:
    con = duckdb.connect(str(db), read_only=True)
    out: dict[str, set[str]] = {}
    for p, v in con.execute("SELECT project, version FROM selected_distributions").fetchall():
        out.setdefault(p, set()).add(v)
    con.close()
    return out


def test_sync_extends_metadata_in_rounds(graph: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    report = sync(graph, db, make_config(conf()))
    assert report.ok and report.closure is not None
    assert report.closure.rounds == 2  # lib and winonly first, then core
    assert report.closure.added == ["core", "lib", "winonly"]
    assert report.closure.unlisted == ["ghost"]
    assert selection(db) == {
        "app": {"1.0"},
        "lib": {"0.9", "1.0", "1.1"},
        "core": {"1.0"},
        "winonly": {"1.0"},
    }
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute(
        "SELECT requirements, required_by FROM closure_projects WHERE name = 'core'"
    ).fetchone() == (["core", "core>=1"], ["lib"])
    fetched = {p for (_route, p) in graph.per_project}
    assert not fetched & {"unrelated", "docsdep", "blocked-dep"}
    con.close()

    graph.reset_counts()
    again = sync(graph, db, make_config(conf()))
    assert again.up_to_date and graph.total_requests() <= 2


def test_environments_extras_and_release_specifiers(graph: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    text = conf(
        allow="app[docs]",
        extra="closure_environments =\n    python_version=3.12 sys_platform=linux\n",
        plugins="    allowlist_release\n",
    )
    report = sync(graph, db, make_config(text))
    assert report.ok
    assert selection(db) == {
        "app": {"1.0"},
        "lib": {"1.0", "1.1"},  # allowlist_release: the closure's lib>=1.0 stands in for a line
        "core": {"1.0"},
        "docsdep": {"1.0"},  # requested through app[docs]; winonly is for win32 only
    }


def test_new_dependency_upstream_and_switching_the_closure_off(
    graph: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    assert sync(graph, db, make_config(conf())).ok
    graph.index.add_project("newdep")
    graph.index.add_release("newdep", "2.0", wheels=0)
    graph.index.add_release("lib", "1.2", deps=["newdep"], wheels=0)
    graph.reset_counts()
    report = sync(graph, db, make_config(conf()))
    assert report.ok and "newdep" in report.closure.added  # type: ignore[union-attr]
    assert {p for (_r, p) in graph.per_project} <= {"lib", "newdep"}
    assert selection(db)["newdep"] == {"2.0"}

    graph.reset_counts()
    off = sync(
        graph,
        db,
        make_config(conf().replace("dependency_closure = true", "dependency_closure = false")),
    )
    assert off.ok and not graph.per_project  # narrowing fetches nothing
    assert selection(db) == {"app": {"1.0"}}
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM closure_projects").fetchone() == (0,)
    con.close()
