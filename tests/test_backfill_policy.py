"""A first full sync goes through ``BackfillPolicy.multi_run``: one run covers a range of
serial windows, so a backfill of every window launches far fewer runs than windows."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pypi_assets.defs.files.assets import release_files
from pypi_assets.defs.mirror.assets import (
    filtered_projects,
    release_metadata,
    serial_windows,
    upstream_projects,
)
from pypi_assets.defs.resources import MirrorResource
from pypi_assets.fake import FakeUpstream
from pypi_assets.sync.windows import DEFAULT_WINDOWS_PER_RUN, keys_upto, windows_per_run_from_env

from .helpers import dump, sync

CONF = "[mirror]\ndirectory = /tmp/x\nrelease-files = false\nmaster = http://127.0.0.1\nallow-non-https = true\n"
ROOT = Path(__file__).resolve().parents[1]
WIDTH = 50


def test_window_assets_have_a_multi_run_backfill_policy() -> None:
    for asset in (release_metadata, release_files):
        policy = asset.backfill_policy
        assert policy is not None and policy.policy_type.value == "MULTI_RUN"
        assert policy.max_partitions_per_run == DEFAULT_WINDOWS_PER_RUN > 1


@pytest.mark.parametrize("raw", ["0", "-3", "ten", "1001", "2.5"])
def test_windows_per_run_is_validated(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("PYPI_ASSETS_WINDOWS_PER_RUN", raw)
    with pytest.raises(ValueError, match="PYPI_ASSETS_WINDOWS_PER_RUN must be a whole number"):
        windows_per_run_from_env()
    monkeypatch.setenv("PYPI_ASSETS_WINDOWS_PER_RUN", "25")
    assert windows_per_run_from_env() == 25


def test_one_run_over_a_range_of_windows_equals_a_cli_sync(
    fake: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    db = tmp_path / "range.duckdb"
    mirror = MirrorResource(upstream=fake.url, config_path=str(conf), db=str(db))
    instance = dg.DagsterInstance.ephemeral()
    listing = dg.materialize(
        [upstream_projects, filtered_projects], resources={"mirror": mirror}, instance=instance
    )
    assert listing.success
    keys = keys_upto(fake.index.serial, WIDTH)
    assert len(keys) >= 3
    instance.add_dynamic_partitions(serial_windows.name, keys)
    run = dg.materialize(
        [release_metadata],
        resources={"mirror": mirror},
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )
    assert run.success
    events = run.get_asset_materialization_events()
    # one run, every window of the range materialised, each projects counted once
    assert sorted(e.partition for e in events) == keys
    meta = events[0].materialization.metadata
    assert meta["window"].value == f"{keys[0]}...{keys[-1]}"
    assert meta["refreshed"].value == len(fake.index.projects)
    ref = tmp_path / "cli.duckdb"
    sync(fake, ref)
    assert dump(db) == dump(ref)


@pytest.mark.timeout(600)
def test_a_backfill_of_many_windows_launches_few_runs(tmp_path: Path) -> None:
    """Dagster's own backfill daemon, counted: 20 windows, before and after the policy."""
    code = (
        "from bench.backfill_launches import count_launches as c;"
        "print(c('bench.backfill_launches', 'BEFORE', 20), c('pypi_assets.definitions', 'defs', 20))"
    )
    env = {**os.environ, "PYPI_ASSETS_WINDOWS_PER_RUN": "4", "DAGSTER_HOME": str(tmp_path)}
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=500
    )
    assert p.returncode == 0, p.stderr[-3000:]
    before, after = map(int, p.stdout.split()[-2:])
    assert before == 20  # one run per window without a policy
    assert after == math.ceil(20 / 4) < before
