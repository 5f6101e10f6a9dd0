"""Analysts: derived tables, every documented example query, every notebook, run on freshly
synced demo data."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import pypi_assets
from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.store.snapshot import snapshots
from pypi_assets.sync.run import run_sync
from pypi_assets.sync.settings import Settings

from .helpers import FAST, make_config, sync

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
QUERIES = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "schema.md").read_text(), re.S)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    db = tmp_path_factory.mktemp("analyst") / "demo.duckdb"
    with FakeUpstream(FakeIndex.generate(40)) as up:
        up.index.yank(
            sorted(up.index.projects)[3],
            next(iter(up.index.releases(sorted(up.index.projects)[3]))),
            "bad",
        )
        # with a blob store, so the provenance objects (and their publishers) are mirrored
        settings = Settings(upstream=up.url, db=db, blobs=str(db.parent / "web"))
        assert asyncio.run(run_sync(settings, make_config(), client_overrides=FAST)).ok
        # a second snapshot, so that every query also runs as of the first one
        changed = sorted(up.index.projects)[5]
        up.index.add_release(changed, "99.0", wheels=1)
        victim = sorted(up.index.projects)[6]
        for rel in up.index.releases(victim).values():
            if rel.files:
                up.index.delete_file(victim, rel.files[0].filename)
                break
        assert asyncio.run(run_sync(settings, make_config(), client_overrides=FAST)).ok
    yield db


def test_derived_tables(demo_db: Path) -> None:
    con = pypi_assets.connect(demo_db)
    n_projects = con.execute("SELECT count(*) FROM projects WHERE state = 'ok'").fetchone()[0]  # type: ignore[index]
    assert con.execute("SELECT count(*) FROM latest_releases").fetchone()[0] == n_projects  # type: ignore[index]
    # wheel tags parsed with packaging: every wheel has at least one row, platforms as in the filename
    rows = con.execute(
        "SELECT d.filename, w.interpreter, w.abi, w.platform FROM distributions d "
        "LEFT JOIN wheel_tags w USING (filename) WHERE d.packagetype = 'bdist_wheel'"
    ).fetchall()
    assert rows and all(r[1] is not None for r in rows)
    assert all(r[0].removesuffix(".whl").endswith(f"{r[1]}-{r[2]}-{r[3]}") for r in rows)
    # licences: expression first, then classifier, then the free text
    srcs = dict(con.execute("SELECT license_source, count(*) FROM licenses GROUP BY 1").fetchall())
    assert srcs.get("license_expression") and srcs.get("classifier")
    assert (
        con.execute(
            "SELECT count(*) FROM licenses l JOIN distributions d USING (filename) "
            "WHERE d.license_expression IS NOT NULL AND l.license_normalized <> d.license_expression"
        ).fetchone()[0]
        == 0
    )  # type: ignore[index]
    # reverse dependencies mirror dependencies
    assert (
        con.execute("SELECT count(*) FROM reverse_dependencies").fetchone()[0]
        == con.execute(  # type: ignore[index]
            "SELECT count(*) FROM dependencies WHERE dep_project IS NOT NULL"
        ).fetchone()[0]
    )  # type: ignore[index]
    cats = {r[0] for r in con.execute("SELECT DISTINCT category FROM classifiers").fetchall()}
    assert {"License", "Programming Language"} <= cats


@pytest.mark.parametrize("sql", QUERIES, ids=[f"q{i}" for i in range(len(QUERIES))])
def test_documented_queries_run(demo_db: Path, sql: str) -> None:
    con = pypi_assets.connect(demo_db)
    rows = con.execute(sql).fetchall()
    assert rows, sql


@pytest.mark.parametrize("sql", QUERIES, ids=[f"q{i}" for i in range(len(QUERIES))])
def test_documented_queries_run_as_of_the_first_snapshot(demo_db: Path, sql: str) -> None:
    (_version, _time, first), *later = snapshots(demo_db)
    assert later, "the demo data has one snapshot only"
    old = pypi_assets.connect(demo_db, as_of=first)
    assert old.execute(sql).fetchall(), sql
    # and it is that snapshot: the release added later is not in it
    assert old.execute("SELECT count(*) FROM releases WHERE version = '99.0'").fetchone() == (0,)


def test_documented_queries_exist() -> None:
    assert len(QUERIES) >= 8


#: notebooks/README.md's commands: how to make the demo data, and how to start Jupyter on it
_README = re.search(
    r"# or: \.venv/bin/(pypi-assets demo)\nPYPI_ASSETS_DB=(\S+) \.venv/bin/jupyter lab (\S+)",
    (ROOT / "notebooks" / "README.md").read_text(),
)
assert _README is not None, "notebooks/README.md no longer says how to run the notebooks"
README_DEMO, README_DB, README_FOLDER = _README.groups()


@pytest.fixture(scope="module")
def launch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout's layout as the README assumes: the notebooks in ``notebooks/`` and the
    demo data made by the README's own command, run from this directory."""
    import shutil
    import subprocess

    from .helpers import PYTHON

    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPI_ASSETS_")}
    command = README_DEMO.split()
    assert command[0] == "pypi-assets"
    p = subprocess.run(
        [PYTHON, "-m", "pypi_assets.cli", *command[1:], "-q"],
        cwd=root,
        env={**env, "PWD": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    return root


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_as_the_readme_says(
    launch_dir: Path, notebook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PYPI_ASSETS_DB=data/demo.duckdb jupyter lab notebooks/`` from the checkout's root:
    the environment as the shell gives it (a relative path, ``$PWD`` the root), the kernel
    started in the notebook's folder, as Jupyter does."""
    import nbformat
    from nbclient import NotebookClient

    db_value, folder = README_DB, README_FOLDER
    assert not Path(db_value).is_absolute()  # the documented, relative form
    nb = nbformat.read(notebook, as_version=4)
    assert all(
        not c.get("outputs") and c.get("execution_count") is None
        for c in nb.cells
        if c.cell_type == "code"
    ), "commit notebooks with outputs cleared"
    monkeypatch.chdir(launch_dir)
    monkeypatch.setenv("PWD", str(launch_dir))
    monkeypatch.setenv("PYPI_ASSETS_DB", db_value)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    kernel_cwd = launch_dir / folder / notebook.name
    assert kernel_cwd.exists()
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(kernel_cwd.parent)}},
    ).execute()
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert images, "each notebook draws at least one plot"
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_relative_database_is_taken_from_the_launch_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pypi_assets.sync.settings import analyst_db

    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # the kernel's folder
    env = {"PWD": str(tmp_path), "PYPI_ASSETS_DB": "data/demo.duckdb"}
    assert analyst_db(env) == tmp_path / "data" / "demo.duckdb"
    assert analyst_db({**env, "PYPI_ASSETS_DB": "/abs/x.duckdb"}) == Path("/abs/x.duckdb")
    assert analyst_db({"PWD": str(tmp_path)}) == tmp_path / "data" / "pypi.duckdb"
    # no usable $PWD: the current directory, as before
    assert analyst_db({"PYPI_ASSETS_DB": "d.duckdb"}) == tmp_path / "notebooks" / "d.duckdb"
    assert analyst_db({"PWD": "relative", "PYPI_ASSETS_DB": "d.duckdb"}) == (
        tmp_path / "notebooks" / "d.duckdb"
    )


def test_notebooks_present() -> None:
    assert len(NOTEBOOKS) >= 3


def test_open_connection_survives_publish_and_reconnect_sees_new_data(tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    with FakeUpstream(FakeIndex.generate(10)) as up:
        sync(up, db)
        con = pypi_assets.connect(db)
        before = con.execute("SELECT count(*) FROM selected_distributions").fetchone()[0]  # type: ignore[index]
        up.index.add_release(sorted(up.index.projects)[0], "4.0.0", wheels=2)
        assert sync(up, db).ok  # publishes while con is open
        for _ in range(4):  # and again, so the open one is pruned from disk: still readable
            up.index.add_release(sorted(up.index.projects)[1], f"5.{_}.0", wheels=0)
            assert sync(up, db).ok
        assert con.execute("SELECT count(*) FROM selected_distributions").fetchone()[0] == before  # type: ignore[index]
        fresh = pypi_assets.connect(db)
        assert (
            fresh.execute("SELECT count(*) FROM selected_distributions").fetchone()[0]
            == before + 3 + 4
        )  # type: ignore[index]
    assert os.path.exists(db)
