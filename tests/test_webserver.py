"""End to end through the real webserver, its daemon and its GraphQL API, exactly as the UI
drives them: on the embedded instance (the shipped dagster.yaml, SQLite) and on docs/deploy.md's
Postgres instance, run as documented against a throwaway PostgreSQL cluster."""

from __future__ import annotations

import math
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

from .helpers import deploy_instance_yaml, dump, sync
from .pg_cluster import Cluster
from .webserver import Dagster, dagster_webserver

WIDTH = 40
PER_RUN = 2  # windows per backfill run (BackfillPolicy.multi_run)
CONF = "[mirror]\ndirectory = /tmp/x\nrelease-files = false\nmaster = http://127.0.0.1\nallow-non-https = true\n"


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Dagster, FakeUpstream, Path]]:
    """The webserver and daemon on the instance named by the parameter: "embedded" (the
    shipped dagster.yaml) or "postgres" (docs/deploy.md's block, on its own database)."""
    tmp = tmp_path_factory.mktemp("web")
    conf = tmp / "b.conf"
    conf.write_text(CONF)
    db = tmp / "web.duckdb"
    instance_yaml, pg_env = None, {}
    if request.param == "postgres":
        cluster: Cluster = request.getfixturevalue("postgres")
        pg_env = cluster.create_db(f"dagster_{tmp.name.replace('-', '_')}").env()
        instance_yaml = deploy_instance_yaml()
    with FakeUpstream(FakeIndex.generate(16)) as up:
        env = {
            "PYPI_ASSETS_UPSTREAM": up.url,
            "PYPI_ASSETS_CONFIG": str(conf),
            "PYPI_ASSETS_DB": str(db),
            "PYPI_ASSETS_WINDOW_WIDTH": str(WIDTH),
            "PYPI_ASSETS_WINDOWS_PER_RUN": str(PER_RUN),
            **pg_env,
        }
        with dagster_webserver(tmp, env, instance_yaml) as server:
            yield server, up, db


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("stack", ["embedded", "postgres"], indirect=True)
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
    # BackfillPolicy.multi_run: one run per PER_RUN windows, not one per window
    assert len(runs) == math.ceil(len(keys) / PER_RUN) < len(keys), (status, runs)
    assert runs.count("SUCCESS") == len(runs), (status, runs, server.log.read_text()[-3000:])
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


def _pg(cluster: Cluster, db: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    import psycopg2

    con = psycopg2.connect(
        Cluster(cluster.host, cluster.port, cluster.user, cluster.password, db).dsn()
    )
    try:
        with con.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_window_runs_queue_and_run_in_parallel_on_postgres(
    stack: tuple[Dagster, FakeUpstream, Path], postgres: Cluster
) -> None:
    """docs/deploy.md's instance, as run: every storage is Postgres, runs go through the
    QueuedRunCoordinator, the daemon dequeues several at once, and their events are in Postgres."""
    from unittest import mock

    import dagster as dg
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    server, up, _db = stack
    text = (server.home / "dagster.yaml").read_text()
    assert text == deploy_instance_yaml()  # the documented block, verbatim
    pg_db = server.env["DAGSTER_PG_DB"]
    with mock.patch.dict(os.environ, {**postgres.env(), "DAGSTER_PG_DB": pg_db}):
        instance = dg.DagsterInstance.from_config(str(server.home))
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs > 1
        assert queue.op_concurrency_slot_buffer >= 1  # runs start while one holds the writer slot
        instance.dispose()
    keys = keys_upto(up.index.serial, WIDTH)
    server.add_partitions(keys)
    runs = [server.launch_partition("release_metadata", key) for key in keys]  # all at once
    assert [server.wait_run(r, timeout=600) for r in runs] == ["SUCCESS"] * len(runs), (
        server.log.read_text()[-3000:]
    )
    # The queue let them run side by side: some runs' lifetimes overlap (read from Postgres).
    spans = _pg(
        postgres,
        pg_db,
        "SELECT start_time, end_time FROM runs WHERE run_id = ANY(%s)",
        runs,
    )
    assert len(spans) == len(runs)
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)  # type: ignore[operator]
    assert overlap >= 2, spans
    # Each run's success (stored as PIPELINE_SUCCESS) and each window's materialisation are in
    # Postgres's event log.
    done = _pg(
        postgres,
        pg_db,
        "SELECT run_id FROM event_logs WHERE dagster_event_type = 'PIPELINE_SUCCESS' AND run_id = ANY(%s)",
        runs,
    )
    assert sorted(r[0] for r in done) == sorted(runs)
    parts = _pg(
        postgres,
        pg_db,
        "SELECT DISTINCT partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        " AND asset_key = %s AND run_id = ANY(%s)",
        '["release_metadata"]',
        runs,
    )
    assert sorted(p[0] for p in parts) == keys
    # The daemon runs on the same instance: its heartbeats are in Postgres, and so are the
    # automation ticks in the schedule storage.
    daemons = {r[0] for r in _pg(postgres, pg_db, "SELECT daemon_type FROM daemon_heartbeats")}
    assert {"QUEUED_RUN_COORDINATOR", "BACKFILL", "SCHEDULER", "SENSOR"} <= daemons, daemons
    assert _pg(postgres, pg_db, "SELECT count(*) FROM job_ticks")[0][0] > 0  # type: ignore[operator]
