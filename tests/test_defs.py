"""The Dagster code location: loads, materialises by serial window against the fake upstream,
matches the CLI; sensor, checks, and the automation that waits for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

from pypi_assets.definitions import defs as load_definitions
from pypi_assets.defs.mirror.assets import (
    filtered_projects,
    metadata_snapshot,
    release_metadata,
    serial_windows,
    upstream_projects,
)
from pypi_assets.defs.mirror.checks import release_metadata_checks
from pypi_assets.defs.mirror.sensors import plan_tick, upstream_serial_sensor
from pypi_assets.defs.resources import MirrorResource
from pypi_assets.fake import FakeUpstream, Fault
from pypi_assets.sync.windows import bounds, key_for, keys_between, keys_upto

from .helpers import dump, json_api_path, sync

CONF = "[mirror]\ndirectory = /tmp/x\nrelease-files = false\nmaster = http://127.0.0.1\nallow-non-https = true\n"
ROOT = Path(__file__).resolve().parents[1]
WIDTH = 50


def test_definitions_load() -> None:
    defs = load_definitions()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        "upstream_projects",
        "filtered_projects",
        "release_metadata",
        "metadata_snapshot",
        "release_files",
        "simple_index",
        *("latest_releases", "reverse_dependencies", "classifiers", "licenses", "wheel_tags"),
    }
    assert defs.resolve_job_def("refresh_serial_window").partitions_def == serial_windows
    assert defs.resolve_sensor_def("upstream_serial_sensor") is not None


def test_window_keys_sort_numerically_and_cover_pypi_in_under_1000() -> None:
    keys = keys_upto(41_234_567, 100_000)
    assert len(keys) == 413 < 1000
    assert keys == sorted(keys)
    assert bounds(keys[-1]) == (41_200_000, 41_299_999)
    assert key_for(99_999, 100_000) == "000000000000-000000099999"
    assert keys_between(150, 260, 100) == [key_for(100, 100), key_for(200, 100)]
    assert keys_between(260, 260, 100) == []


def _mirror(fake: FakeUpstream, tmp_path: Path, db: Path) -> MirrorResource:
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    return MirrorResource(upstream=fake.url, config_path=str(conf), db=str(db))


def _materialize_all_windows(
    fake: FakeUpstream, mirror: MirrorResource, instance: dg.DagsterInstance
) -> list[dg.ExecuteInProcessResult]:
    results = [
        dg.materialize(
            [upstream_projects, filtered_projects], resources={"mirror": mirror}, instance=instance
        )
    ]
    keys = keys_upto(fake.index.serial, WIDTH)
    instance.add_dynamic_partitions(serial_windows.name, keys)
    for key in reversed(keys):  # any order converges
        results.append(
            dg.materialize(
                [release_metadata],
                partition_key=key,
                resources={"mirror": mirror},
                instance=instance,
                raise_on_error=False,
            )
        )
    return results


def test_backfill_of_all_windows_equals_cli_sync(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    db = tmp_path / "dagster.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    results = _materialize_all_windows(fake, _mirror(fake, tmp_path, db), instance)
    assert all(r.success for r in results)
    refreshed = 0
    for r in results[1:]:
        # one event per window run: the listing is current, so no run reports catching it up
        (m,) = r.get_asset_materialization_events()
        refreshed += m.materialization.metadata["refreshed"].value  # type: ignore[operator]
        meta = m.materialization.metadata
        assert meta["dagster/row_count"].value == meta["rows_distributions"].value
    assert refreshed == len(fake.index.projects)
    ref = tmp_path / "cli.duckdb"
    sync(fake, ref)
    assert dump(db) == dump(ref)
    # The snapshot asset publishes what analysts open.
    import pypi_assets

    snap = dg.materialize(
        [metadata_snapshot], resources={"mirror": _mirror(fake, tmp_path, db)}, instance=instance
    )
    assert snap.success
    con = pypi_assets.connect(db)
    assert con.execute("SELECT count(*) FROM selected_distributions").fetchone()[0] == len(
        dump(ref)["distributions"]
    )  # type: ignore[index]
    (published,) = snap.asset_materializations_for_node("metadata_snapshot")
    assert published.metadata["dagster/row_count"].value == len(dump(ref)["distributions"])


def test_open_window_run_fetches_only_the_changed_project(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    db = tmp_path / "d.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    mirror = _mirror(fake, tmp_path, db)
    _materialize_all_windows(fake, mirror, instance)
    target = sorted(fake.index.projects)[4]
    fake.index.add_release(target, "5.0.0", wheels=1)
    fake.reset_counts()
    key = key_for(fake.index.serial, WIDTH)
    instance.add_dynamic_partitions(serial_windows.name, [key])
    r = dg.materialize(
        [release_metadata], partition_key=key, resources={"mirror": mirror}, instance=instance
    )
    events = {e.asset_key.to_user_string(): e for e in r.get_asset_materialization_events()}
    # The run caught the listing up through the changelog, and says so: the listing's two
    # assets are reported as materialised by it (lineage), then release_metadata itself.
    assert list(events) == ["upstream_projects", "filtered_projects", "release_metadata"]
    for name in ("upstream_projects", "filtered_projects"):
        meta = events[name].materialization.metadata
        assert meta["source"].value == "changelog"
        assert meta["serial_reached"].value == fake.index.serial
    listed = events["upstream_projects"].materialization.metadata["dagster/row_count"].value
    assert listed == len(fake.index.projects)
    m = events["release_metadata"]
    assert m.materialization.metadata["refreshed"].value == 1
    assert {p for (_route, p) in fake.per_project} == {target}
    assert fake.counts["simple-root"] == 0  # no full listing: the changelog said what changed
    assert fake.counts["xmlrpc"] == 1


def test_window_runs_report_sdists_whose_pkg_info_differs_from_the_version_json(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    rel = fake.index.add_release(sorted(fake.index.projects)[1], "9.0.0", wheels=1)
    rel.info["summary"] = "what the first upload said"  # the sdist's PKG-INFO says otherwise
    instance = dg.DagsterInstance.ephemeral()
    results = _materialize_all_windows(
        fake, _mirror(fake, tmp_path, tmp_path / "d.duckdb"), instance
    )
    differing, fields = 0, dict[str, int]()
    for r in results[1:]:
        (m,) = r.get_asset_materialization_events()
        meta = m.materialization.metadata
        differing += meta["pkg_info_differing"].value  # type: ignore[operator]
        fields.update(meta["pkg_info_vs_version_json"].value["fields"])  # type: ignore[index]
    assert differing == 1 and fields == {"summary": 1}


def test_window_run_without_a_changelog_relists_and_reports_it(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """With no XML-RPC changelog the window run re-lists; the listing's assets are reported
    as materialised by it, with the source that moved them."""
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    monkeypatch.setenv("PYPI_ASSETS_BACKOFF", "0.01")
    db = tmp_path / "d.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    mirror = _mirror(fake, tmp_path, db)
    _materialize_all_windows(fake, mirror, instance)
    fake.index.add_release(sorted(fake.index.projects)[3], "6.0.0", wheels=1)
    fake.add_fault(Fault(path=r"^/pypi/?$", kind="status", status=500, times=1000))
    # Without a changelog only the root can show the release: purge the CDN's copy (this
    # test is about how a re-listing is reported, not about the root's lag)
    fake.purge_root()
    key = key_for(fake.index.serial, WIDTH)
    instance.add_dynamic_partitions(serial_windows.name, [key])  # type: ignore[arg-type]
    r = dg.materialize(
        [release_metadata], partition_key=key, resources={"mirror": mirror}, instance=instance
    )
    events = {e.asset_key.to_user_string(): e for e in r.get_asset_materialization_events()}
    assert list(events) == ["upstream_projects", "filtered_projects", "release_metadata"]
    assert events["release_metadata"].materialization.metadata["relisted"].value is True
    for name in ("upstream_projects", "filtered_projects"):
        assert events[name].materialization.metadata["source"].value == "listing"


def test_removed_project_propagates_through_changelog(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    db = tmp_path / "d.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    mirror = _mirror(fake, tmp_path, db)
    _materialize_all_windows(fake, mirror, instance)
    gone = sorted(fake.index.projects)[2]
    fake.index.delete_project(gone)
    key = key_for(fake.index.serial, WIDTH)
    instance.add_dynamic_partitions(serial_windows.name, [key])
    dg.materialize(
        [release_metadata], partition_key=key, resources={"mirror": mirror}, instance=instance
    )
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT state FROM projects WHERE name = ?", [gone]).fetchall() == [
        ("removed",)
    ]
    con.close()


def _project_rows(db: Path, name: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT state, status, status_reason, "
            "(SELECT count(*) FROM selected_files f WHERE f.project = p.name) "
            "FROM projects p WHERE name = ?",
            [name],
        ).fetchall()
    finally:
        con.close()


def test_a_window_run_keeps_a_quarantined_project_as_a_sync_does(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Quarantine is journaled: its window run meets a project whose JSON answers 404 and
    that the changelog may drop. As in ``sync``, its page is read: it stays stored, marked
    quarantined (not ``missing`` or ``removed``), its stored files kept for the clear."""
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    db, cli_db = tmp_path / "d.duckdb", tmp_path / "cli.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    mirror = _mirror(fake, tmp_path, db)
    _materialize_all_windows(fake, mirror, instance)
    assert sync(fake, cli_db).ok
    name = sorted(fake.index.projects)[3]
    files = _project_rows(db, name)[0][3]
    assert files > 0
    for status, reason in (("quarantined", "malware report"), ("active", None)):
        assert fake.index.set_status(name, status, reason)  # journaled
        key = key_for(fake.index.serial, WIDTH)
        instance.add_dynamic_partitions(serial_windows.name, [key])
        r = dg.materialize(
            [release_metadata], partition_key=key, resources={"mirror": mirror}, instance=instance
        )
        assert r.success
        assert sync(fake, cli_db).ok
        assert _project_rows(db, name) == _project_rows(cli_db, name)
        assert _project_rows(db, name)[0] == ("ok", status, reason, files)


def test_checks_pass_on_good_data_and_fail_on_bad(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(100_000))
    db = tmp_path / "d.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    mirror = _mirror(fake, tmp_path, db)
    _materialize_all_windows(fake, mirror, instance)
    evals = {r.check_name: r.passed for r in release_metadata_checks(mirror=mirror)}
    assert len(evals) == 7 and all(evals.values()), evals
    import duckdb

    con = duckdb.connect(str(db))
    con.execute(
        "UPDATE distribution_rows SET sha256 = 'NOT-HEX' WHERE filename = (SELECT min(filename) FROM distribution_rows)"
    )
    con.execute(
        "DELETE FROM selected_files WHERE filename = (SELECT max(filename) FROM selected_files)"
    )
    con.close()
    evals = {r.check_name: r.passed for r in release_metadata_checks(mirror=mirror)}
    assert evals["hashes_well_formed"] is False
    assert evals["selection_matches_filters"] is False
    assert evals["no_duplicate_filenames"] is True


def test_failed_project_fails_the_window_and_names_it(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(100_000))
    monkeypatch.setenv("PYPI_ASSETS_BACKOFF", "0.01")
    bad = sorted(fake.index.projects)[0]
    fake.add_fault(Fault(path=json_api_path(bad), kind="status", status=500, times=1000))
    results = _materialize_all_windows(
        fake, _mirror(fake, tmp_path, tmp_path / "d.duckdb"), dg.DagsterInstance.ephemeral()
    )
    assert not results[-1].success
    failure = next(e for e in results[-1].all_events if e.event_type_value == "STEP_FAILURE")
    assert bad in str(failure.event_specific_data)


# ---------------------------------------------------------------------- sensor
def test_plan_tick() -> None:
    # no change: nothing to add or run, cursor stays
    assert plan_tick(250, 250, set(), 100, 5) == ([], [], 250)
    assert plan_tick(250, 240, set(), 100, 5) == ([], [], 250)
    # growth: new windows added, changed windows run, cursor moves to the serial
    new, due, cursor = plan_tick(
        250, 420, {key_for(0, 100), key_for(100, 100), key_for(200, 100)}, 100, 5
    )
    assert new == [key_for(300, 100), key_for(400, 100)]
    assert due == [key_for(200, 100), key_for(300, 100), key_for(400, 100)]
    assert cursor == 420
    # capped: the cursor moves only to the end of the last window run, then continues
    new, due, cursor = plan_tick(0, 1000, set(), 100, 3)
    assert len(new) == 11 and due == keys_upto(299, 100) and cursor == 299
    _new2, due2, cursor2 = plan_tick(cursor, 1000, set(new), 100, 3)
    assert due2[0] == key_for(300, 100) and cursor2 == 599


def _tick(
    instance: dg.DagsterInstance, mirror: MirrorResource, cursor: str | None
) -> dg.SensorResult | dg.SkipReason:
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"mirror": mirror})
    return upstream_serial_sensor(ctx)  # type: ignore[no-any-return]


def test_sensor_runs_only_on_change_and_cursor_moves_forward(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    instance = dg.DagsterInstance.ephemeral()
    mirror = _mirror(fake, tmp_path, tmp_path / "d.duckdb")
    serial = fake.index.serial
    start = json.dumps({"serial": serial})
    fake.reset_counts()
    res = _tick(instance, mirror, start)
    assert isinstance(res, dg.SensorResult) and not res.run_requests
    assert fake.total_requests() == 1  # one cheap request per tick
    assert res.cursor is None or json.loads(res.cursor)["serial"] == serial
    fake.index.add_release(sorted(fake.index.projects)[0], "3.0.0", wheels=1)
    res = _tick(instance, mirror, start)
    assert isinstance(res, dg.SensorResult)
    assert [r.partition_key for r in res.run_requests] == keys_between(
        serial, fake.index.serial, WIDTH
    )
    assert json.loads(res.cursor)["serial"] == fake.index.serial  # type: ignore[arg-type]
    assert (
        res.asset_events
        and res.asset_events[0].metadata["upstream_serial"].value == fake.index.serial
    )  # type: ignore[union-attr]
    # An older cursor never wins: a tick from a newer cursor does not move it back.
    later = json.dumps({"serial": fake.index.serial + 10})
    res2 = _tick(instance, mirror, later)
    assert isinstance(res2, dg.SensorResult) and not res2.run_requests


def test_restarted_sensor_does_not_repeat_runs(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    instance = dg.DagsterInstance.ephemeral()
    mirror = _mirror(fake, tmp_path, tmp_path / "d.duckdb")
    start = json.dumps({"serial": fake.index.serial})
    fake.index.add_release(sorted(fake.index.projects)[1], "3.0.0", wheels=1)
    first = _tick(instance, mirror, start)
    again = _tick(
        instance, mirror, start
    )  # the same tick evaluated twice (a restart before the cursor was saved)
    assert isinstance(first, dg.SensorResult) and isinstance(again, dg.SensorResult)
    keys1 = [r.run_key for r in first.run_requests]
    assert keys1 and keys1 == [
        r.run_key for r in again.run_requests
    ]  # Dagster de-duplicates by run_key


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


def test_release_files_and_simple_index_assets(fake: FakeUpstream, tmp_path: Path) -> None:
    """With blobs enabled, each window's run stores its projects' files and the index follows;
    without, both assets skip."""
    from pypi_assets.defs.files.assets import release_files, simple_index
    from pypi_assets.store.blobs import LocalBlobStore

    db, web = tmp_path / "m.duckdb", tmp_path / "web"
    off = _mirror(fake, tmp_path, db)
    mirror = MirrorResource(
        upstream=fake.url, config_path=off.config_path, db=str(db), blobs=str(web)
    )
    instance = dg.DagsterInstance.ephemeral()
    _materialize_all_windows(fake, mirror, instance)
    keys = keys_upto(fake.index.serial, WIDTH)
    stored: list[int] = []
    for key in keys:
        result = dg.materialize(
            [release_files], partition_key=key, resources={"mirror": mirror}, instance=instance
        )
        assert result.success
        stored.append(len(list(LocalBlobStore(web).iter_blobs())))
    assert stored == sorted(stored) and stored[0] < stored[-1]  # each window adds its own files
    result = dg.materialize([simple_index], resources={"mirror": mirror}, instance=instance)
    assert result.success
    meta = result.asset_materializations_for_node("simple_index")[0].metadata
    assert meta["written"].value == len(fake.index.projects)
    assert (web / "simple" / "index.v1_json").exists()
    # the same database as a CLI sync with --blobs: every selected file is stored
    con = duckdb.connect(str(db), read_only=True)
    want = {r[0] for r in con.execute("SELECT key FROM selected_blob_keys").fetchall()}
    # ... and every PEP 740 provenance object, with its publishers
    (with_provenance,) = con.execute(
        "SELECT count(*) FROM selected_distributions WHERE provenance_url IS NOT NULL"
    ).fetchone()
    (objects,) = con.execute("SELECT count(*) FROM blobs WHERE key LIKE 'integrity/%'").fetchone()
    (publishers,) = con.execute("SELECT count(DISTINCT filename) FROM publishers").fetchone()
    con.close()
    assert with_provenance > 0 and objects == with_provenance == publishers
    assert want <= {k for k, _s in LocalBlobStore(web).iter_blobs()}
    # as a CLI sync: the blob store lists the database (so another database's
    # `verify --delete-unreferenced` refuses), and the index folder names its writer ...
    registry = json.loads((web / ".pypi-assets" / "databases.json").read_text())
    assert registry == [str(db.resolve())]
    assert (web / ".pypi-assets" / "index-owner").read_text().strip() == str(db.resolve())
    # ... so a second database cannot write over that index
    other = MirrorResource(
        upstream=fake.url,
        config_path=off.config_path,
        db=str(tmp_path / "o.duckdb"),
        blobs=str(web),
    )
    refused = dg.materialize(
        [simple_index], resources={"mirror": other}, instance=instance, raise_on_error=False
    )
    assert not refused.success
    assert "is written by database" in str(refused.get_step_failure_events()[0].event_specific_data)
    # blobs disabled: both skip, nothing materialised
    skipped = dg.materialize([simple_index], resources={"mirror": off}, instance=instance)
    assert skipped.success and not skipped.asset_materializations_for_node("simple_index")


# ------------------------------------------------------------ Dagster's idioms
DERIVED = ("latest_releases", "reverse_dependencies", "classifiers", "licenses", "wheel_tags")


def test_every_asset_has_owners_tags_code_version_and_the_standard_metadata(
    tmp_path: Path,
) -> None:
    from pypi_assets import __version__
    from pypi_assets.defs.shared import CODE_VERSION
    from pypi_assets.store import MetadataStore

    graph = load_definitions().resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    for key in keys:
        node = graph.get(key)
        assert list(node.owners) == ["team:pypi-assets"], key
        assert node.tags["domain"] in {"mirror", "files", "analyst"}, key
        assert node.code_version == CODE_VERSION, key
    assert CODE_VERSION.startswith(f"{__version__}-schema")
    fresh = {k.to_user_string() for k in keys if graph.get(k).freshness_policy is not None}
    assert fresh == {"release_metadata", "metadata_snapshot", "simple_index"}
    # The column schema in the catalog is the table's, from the list the DDL is built from.
    with MetadataStore(tmp_path / "s.duckdb") as store:
        columns = [r[0] for r in store.query("DESCRIBE distributions")]
    for name in ("release_metadata", "metadata_snapshot"):
        schema = graph.get(dg.AssetKey(name)).metadata["dagster/column_schema"].schema
        assert [c.name for c in schema.columns] == columns, name
        assert {c.name: c.type for c in schema.columns}["requires_dist"] == "VARCHAR[]"


def test_code_version_follows_the_parser_source(tmp_path: Path) -> None:
    from pypi_assets.defs.shared import source_digest

    pkg = tmp_path / "pypi"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "parse.py").write_text("X = 1\n")
    (pkg / "sub" / "more.py").write_text("Y = 2\n")
    (pkg / "notes.txt").write_text("not source")
    before = source_digest(pkg)
    (pkg / "notes.txt").write_text("still not source")
    assert source_digest(pkg) == before
    (pkg / "sub" / "more.py").write_text("Y = 3\n")
    assert source_digest(pkg) != before


def test_eager_assets_wait_for_the_blocking_checks(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The snapshot, the index and the derived tables follow release_metadata only after its
    blocking checks passed: a window run whose check fails requests none of them, the next
    one that passes requests them all (dg.evaluate_automation_conditions, as the daemon)."""
    from pypi_assets.defs.files.assets import release_files

    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(100_000))
    db = tmp_path / "m.duckdb"
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    mirror = MirrorResource(
        upstream=fake.url, config_path=str(conf), db=str(db), blobs=str(tmp_path / "web")
    )
    instance = dg.DagsterInstance.ephemeral()
    defs = load_definitions()
    dg.materialize(
        [upstream_projects, filtered_projects], resources={"mirror": mirror}, instance=instance
    )
    (key,) = keys_upto(fake.index.serial, 100_000)
    instance.add_dynamic_partitions(serial_windows.name, [key])  # type: ignore[arg-type]

    def window_run() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [release_metadata, release_files, release_metadata_checks],
            partition_key=key,
            resources={"mirror": mirror},
            instance=instance,
            raise_on_error=False,
        )

    cursor = None

    def requested() -> set[str]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        return {
            k
            for k in ("metadata_snapshot", "simple_index", *DERIVED)
            if result.get_num_requested(dg.AssetKey(k))
        }

    assert requested() == set()  # release_metadata is missing: nothing to follow yet
    run = window_run()
    assert run.success
    assert all(e.passed for e in run.get_asset_check_evaluations())
    assert requested() == {"metadata_snapshot", "simple_index", *DERIVED}
    assert requested() == set()  # the daemon's next tick: requested once, not again

    con = duckdb.connect(str(db))
    bad = con.execute(
        "SELECT filename, sha256 FROM distributions ORDER BY filename LIMIT 1"
    ).fetchone()
    assert bad is not None
    con.execute("UPDATE distribution_rows SET sha256 = 'NOT-HEX' WHERE filename = ?", [bad[0]])
    con.close()
    run = window_run()
    failed = {e.check_name for e in run.get_asset_check_evaluations() if not e.passed}
    assert "hashes_well_formed" in failed
    assert run.asset_materializations_for_node("release_metadata")  # it did materialise
    assert requested() == set()  # ...but nothing downstream publishes it

    con = duckdb.connect(str(db))
    con.execute("UPDATE distribution_rows SET sha256 = ? WHERE filename = ?", [bad[1], bad[0]])
    con.close()
    run = window_run()
    assert run.success
    assert requested() == {"metadata_snapshot", "simple_index", *DERIVED}


def test_dg_list_defs_and_the_workspace_file_name_one_location(tmp_path: Path) -> None:
    """`dg list defs` sees everything under defs/; `dg check defs` and the workspace file
    (what `dg dev -w workspace.yaml` loads) both load the code location `pypi_assets`."""
    bindir = Path(sys.executable).parent
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [str(bindir / argv[0]), *argv[1:]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    listed = json.loads(run("dg", "list", "defs", "--json").stdout)
    assert {a["asset_key"] for a in listed["assets"]} >= {"release_metadata", "simple_index"}
    assert len(listed["asset_checks"]) == 7
    assert {j["name"] for j in listed["jobs"]} == {
        "refresh_listing",
        "refresh_serial_window",
        "publish_snapshot",
        "poll_project_statuses",
    }
    assert [r["name"] for r in listed["resources"]] == ["mirror"]
    ok = "Validation successful for code location pypi_assets."
    for argv in (
        ("dg", "check", "defs", "--log-level", "info"),
        ("dagster", "definitions", "validate", "-w", "workspace.yaml"),
    ):
        p = run(*argv)
        assert ok in p.stdout + p.stderr, argv


# ---------------------------------------------------------------------- status poll
def test_status_poll_job_sees_an_archive_that_moves_no_serial(
    fake: FakeUpstream, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Archive is not journaled: no serial moves, so neither the sensor nor a window run sees
    it. The status poll job (on its schedule) polls the projects that are due and stores it."""
    from pypi_assets.defs.mirror.statuses import status_poll_job, status_poll_schedule

    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    db = tmp_path / "d.duckdb"
    conf = tmp_path / "b.conf"
    conf.write_text(CONF + "[pypi_assets]\nstatus_poll_interval = 3\n")
    web = tmp_path / "web"
    mirror = MirrorResource(upstream=fake.url, config_path=str(conf), db=str(db), blobs=str(web))
    instance = dg.DagsterInstance.ephemeral()
    _materialize_all_windows(fake, mirror, instance)
    run = status_poll_job.execute_in_process(resources={"mirror": mirror}, instance=instance)
    assert run.success  # the first poll: every project, never polled by a window run
    name = sorted(fake.index.projects)[1]
    serial = fake.index.serial
    assert not fake.index.set_status(name, "archived", "moved")  # not journaled
    assert fake.index.serial == serial
    res = _tick(instance, mirror, json.dumps({"serial": serial}))
    assert isinstance(res, dg.SensorResult) and not res.run_requests  # the sensor cannot see it
    import time

    time.sleep(3.0)  # one cadence
    fake.reset_counts()
    run = status_poll_job.execute_in_process(resources={"mirror": mirror}, instance=instance)
    assert run.success
    con = duckdb.connect(str(db), read_only=True)
    got = con.execute("SELECT status, status_reason FROM projects WHERE name = ?", [name])
    assert got.fetchall() == [("archived", "moved")]
    con.close()
    (out,) = [
        e for e in run.all_events if e.event_type_value == "STEP_OUTPUT"
    ]  # the poll's cost, as metadata
    meta = out.event_specific_data.metadata  # type: ignore[union-attr]
    assert meta["statuses"].value == {name: "archived"}
    changed = meta["changed_projects"].value
    assert name in changed and meta["changed"].value == len(changed)
    pages = fake.counts["simple-project"] + fake.counts["version-json"]
    assert meta["requests"].value == pages > len(fake.index.projects)
    assert meta["not_modified"].value == fake.counts["not-modified"]
    assert 0 < fake.counts["not-modified"] < pages  # the quiet pages answer 304
    published = {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()}
    assert published == {"simple_index", "metadata_snapshot"}
    served = json.loads((web / "simple" / name / "index.v1_json").read_bytes())
    assert served["project-status"] == {"status": "archived", "reason": "moved"}
    # nothing due within the cadence: the next run asks nothing (a cadence of an hour now:
    # the poll and its publication above can take longer than 3 s on a busy machine)
    conf.write_text(CONF + "[pypi_assets]\nstatus_poll_interval = 3600\n")
    fake.reset_counts()
    assert status_poll_job.execute_in_process(resources={"mirror": mirror}, instance=instance)
    assert fake.total_requests() == 0
    from datetime import UTC, datetime

    at = datetime(2026, 1, 1, 0, 15, tzinfo=UTC)
    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=at)
    (request,) = status_poll_schedule.evaluate_tick(ctx).run_requests or []
    assert request.run_key == at.isoformat()
    assert status_poll_schedule.job_name == "poll_project_statuses"
    assert load_definitions().resolve_job_def("poll_project_statuses") is not None
