"""End to end through the real webserver and its GraphQL API, exactly as the UI drives it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.store.snapshot import snapshot_serial
from pypi_assets.sync.windows import keys_upto

from .helpers import dump, sync
from .webserver import Dagster, dagster_webserver

WIDTH = 40
CONF = "[mirror]\ndirectory = /tmp/x\nrelease-files = false\nmaster = http://127.0.0.1\nallow-non-https = true\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dagster, FakeUpstream, Path]]:
    tmp = tmp_path_factory.mktemp("web")
    conf = tmp / "b.conf"
    conf.write_text(CONF)
    db = tmp / "web.duckdb"
    with FakeUpstream(FakeIndex.generate(16)) as up:
        env = {
            "PYPI_ASSETS_UPSTREAM": up.url,
            "PYPI_ASSETS_CONFIG": str(conf),
            "PYPI_ASSETS_DB": str(db),
            "PYPI_ASSETS_WINDOW_WIDTH": str(WIDTH),
        }
        with dagster_webserver(tmp, env) as server:
            yield server, up, db


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_materialise_then_backfill_all_windows_via_graphql(
    stack: tuple[Dagster, FakeUpstream, Path], tmp_path: Path
) -> None:
    server, up, db = stack
    run = server.launch_assets("upstream_projects", "filtered_projects")
    assert server.wait_run(run) == "SUCCESS"
    keys = keys_upto(up.index.serial, WIDTH)
    assert len(keys) >= 4
    server.add_partitions(keys)
    backfill = server.backfill("release_metadata", keys)
    status, runs = server.wait_backfill(backfill)
    assert runs.count("SUCCESS") == len(keys), (status, runs, server.log.read_text()[-3000:])
    # The CLI's backfill drives the same API: after a new release it covers the new window too.
    up.index.add_release(sorted(up.index.projects)[0], "8.0.0", wheels=1)
    env = {**os.environ, "PYPI_ASSETS_UPSTREAM": up.url, "PYPI_ASSETS_WINDOW_WIDTH": str(WIDTH)}
    p = subprocess.run(
        [sys.executable, "-m", "pypi_assets.cli", "backfill", "--webserver", server.url, "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{len(keys_upto(up.index.serial, WIDTH))} serial windows" in p.stdout
    assert "Could not set lock" not in server.log.read_text()
    # The eager automation condition publishes the analyst snapshot after the windows land.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and snapshot_serial(db) is None:
        time.sleep(2)
    assert snapshot_serial(db) is not None, server.log.read_text()[-3000:]
    ref = tmp_path / "cli.duckdb"
    sync(up, ref)  # the same upstream, including the release added above
    assert dump(db) == dump(ref)
