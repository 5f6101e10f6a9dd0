"""The Dagster code location: loads, materialises against the fake upstream, matches the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from pypi_assets.defs import defs
from pypi_assets.defs.mirror.assets import filtered_projects, release_metadata, upstream_projects
from pypi_assets.defs.resources import MirrorResource
from pypi_assets.fake import FakeUpstream, Fault

from .conftest import sync
from .test_sync import _dump

CONF = "[mirror]\ndirectory = /tmp/x\nmaster = http://127.0.0.1\nallow-non-https = true\n"
ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load() -> None:
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"upstream_projects", "filtered_projects", "release_metadata"}
    assert defs.resolve_job_def("mirror_metadata") is not None


def _materialize(fake: FakeUpstream, tmp_path: Path, db: Path) -> dg.ExecuteInProcessResult:
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    mirror = MirrorResource(upstream=fake.url, config_path=str(conf), db=str(db))
    return dg.materialize(
        [upstream_projects, filtered_projects, release_metadata],
        resources={"mirror": mirror},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_materialise_graph_equals_cli_sync(fake: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "dagster.duckdb"
    result = _materialize(fake, tmp_path, db)
    assert result.success
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    md = mats["release_metadata"].materialization.metadata
    assert md["refreshed"].value == len(fake.index.projects)
    assert md["serial_reached"].value == fake.index.serial
    assert md["failed"].value == 0
    assert md["requests"].value > 0
    ref = tmp_path / "cli.duckdb"
    sync(fake, ref)
    assert _dump(db) == _dump(ref)


def test_failed_project_fails_the_asset_and_names_it(fake: FakeUpstream, tmp_path: Path) -> None:
    bad = sorted(fake.index.projects)[0]
    fake.add_fault(Fault(path=rf"^/pypi/{bad}/json$", kind="status", status=500, times=1000))
    os.environ["PYPI_ASSETS_BACKOFF"] = "0.01"
    try:
        result = _materialize(fake, tmp_path, tmp_path / "d.duckdb")
    finally:
        del os.environ["PYPI_ASSETS_BACKOFF"]
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert bad in str(failure.event_specific_data)


def test_dg_check_defs(tmp_path: Path) -> None:
    dg_cli = Path(sys.executable).with_name("dg")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    p = subprocess.run(
        [str(dg_cli), "check", "defs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "All definitions loaded successfully" in p.stdout + p.stderr
