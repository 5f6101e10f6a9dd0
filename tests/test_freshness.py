"""Fresh changes without trusting the cached root (issue #11, item 1), against the fake on
loopback: the serial and the changes come from the XML-RPC changelog, paged and within a call
budget, honouring the rate limit in both of Warehouse's forms; new projects are found in the
changelog; the root is read only for the first sync and a reconciliation; an allowlist never
reads it; an upstream without XML-RPC is re-checked with conditional requests, and says so."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from pypi_assets.defs.mirror.assets import (
    filtered_projects,
    release_metadata,
    serial_windows,
    upstream_projects,
)
from pypi_assets.defs.mirror.sensors import upstream_serial_sensor
from pypi_assets.defs.resources import MirrorResource
from pypi_assets.fake import FakeIndex, FakeUpstream, Fault
from pypi_assets.pypi import ClientConfig, PyPIClient, RateLimited, UpstreamError
from pypi_assets.store import MetadataStore
from pypi_assets.sync.listing import CHANGES_CHANGELOG, CHANGES_CONDITIONAL, RECONCILED_AT
from pypi_assets.sync.windows import keys_upto

from .helpers import dump, make_config, run_cli, sync, table

NEW = "Fresh_Project"  # a display name that is not normalised, as real ones often are
WIDTH = 50  # serial windows this wide (PYPI_ASSETS_WINDOW_WIDTH)
CONF = (
    "[mirror]\ndirectory = /tmp/x\nrelease-files = false\nmaster = http://127.0.0.1\n"
    "allow-non-https = true\n"
)


def _changes_upstream(fake: FakeUpstream) -> str:
    """A release added to a selected project, and a new project with a release."""
    target = sorted(fake.index.projects)[5]
    fake.index.add_release(target, "7.0.0", wheels=1)
    fake.index.add_project(NEW)
    fake.index.add_release(NEW, "1.0.0", wheels=1)
    return target


def _mirrored(db: Path, target: str) -> bool:
    rel = table(
        db, f"SELECT count(*) FROM releases WHERE project = '{target}' AND version = '7.0.0'"
    )
    new = table(db, "SELECT state FROM projects WHERE name = 'fresh-project'")
    return rel == [(1,)] and new == [("ok",)]


# ------------------------------------------------------------------ the root frozen at S0
def test_one_sync_mirrors_changes_behind_a_frozen_root(fake: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    # A filter is in play: the new project passes it, the blocked one does not.
    blocked = sorted(fake.index.projects)[0]
    config = make_config(
        f"[plugins]\nenabled = blocklist_project\n[blocklist]\npackages = {blocked}\n"
    )
    assert sync(fake, db, config).ok
    fake.configure(cached_root=True)  # the CDN's copy of /simple/, frozen at S0
    s0 = fake.index.serial
    target = _changes_upstream(fake)
    fake.reset_counts()
    report = sync(fake, db, config)
    assert report.ok and report.changes == CHANGES_CHANGELOG and report.listing == "none"
    assert _mirrored(db, target)
    assert report.upstream_serial == fake.index.serial > s0
    assert sorted(report.refresh.refreshed) == sorted(["fresh-project", target])
    # Request count: 2 XML-RPC calls (changelog_last_serial, changelog_since_serial), then
    # per project its JSON, the version JSON, the simple page, the wheel's .metadata and the
    # sdist's own PKG-INFO (streamed from the sdist until found).
    assert fake.counts["simple-root"] == 0
    assert fake.counts["xmlrpc"] == 2
    assert fake.counts["project-json"] == 2 and fake.counts["version-json"] == 2
    assert fake.counts["file"] == 2
    assert fake.total_requests() == 12, dict(fake.counts)
    fake.reset_counts()
    assert sync(fake, db, config).up_to_date
    assert fake.total_requests() == 1 and fake.counts["xmlrpc"] == 1  # changelog_last_serial


def test_first_sync_behind_a_lagging_root_catches_up_through_the_changelog(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.configure(cached_root=True)
    target = _changes_upstream(fake)  # after the freeze: the root does not show them
    db = tmp_path / "m.duckdb"
    report = sync(fake, db)
    assert report.ok and report.changes == CHANGES_CHANGELOG
    assert report.listing == "full (first sync)"
    assert _mirrored(db, target)
    assert fake.counts["simple-root"] == 1


def test_reconciliation_reads_the_root_when_due_and_keeps_what_the_changelog_added(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "m.duckdb"
    sync(fake, db)
    fake.configure(cached_root=True)
    target = _changes_upstream(fake)
    assert sync(fake, db).listing == "none"
    with MetadataStore(db) as store:
        assert store.get_meta(RECONCILED_AT)
        store.set_meta(**{RECONCILED_AT: "2000-01-01T00:00:00+00:00"})
    fake.index.add_release(target, "8.0.0", wheels=0)
    fake.reset_counts()
    report = sync(fake, db)
    # The root is still the frozen copy: it lacks the new project, which is kept (not
    # removed, no "listing shrank" fault), and the changelog since S0 is applied after it.
    assert report.ok and report.listing == "full (reconciliation)"
    assert fake.counts["simple-root"] == 1
    assert report.refresh.refreshed == [target] and not report.refresh.removed
    assert _mirrored(db, target)
    config = make_config("[pypi_assets]\nreconcile_interval = 1d\n")
    fake.reset_counts()
    sync(fake, db, config)
    assert fake.counts["simple-root"] == 0  # reconciled a moment ago: not due


# ------------------------------------------------------------------ sensor tick and its run
def _mirror(fake: FakeUpstream, tmp_path: Path, db: Path) -> MirrorResource:
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    return MirrorResource(upstream=fake.url, config_path=str(conf), db=str(db))


def _materialize_everything(
    fake: FakeUpstream, mirror: MirrorResource, instance: dg.DagsterInstance
) -> None:
    """The listing's assets, then every serial window (a first full sync in Dagster)."""
    dg.materialize(
        [upstream_projects, filtered_projects], resources={"mirror": mirror}, instance=instance
    )
    keys = keys_upto(fake.index.serial, WIDTH)
    instance.add_dynamic_partitions(str(serial_windows.name), keys)
    for key in keys:
        dg.materialize(
            [release_metadata], partition_key=key, resources={"mirror": mirror}, instance=instance
        )


def _tick(
    instance: dg.DagsterInstance, mirror: MirrorResource, cursor: str
) -> dg.SensorResult | dg.SkipReason:
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"mirror": mirror})
    result = upstream_serial_sensor(ctx)
    assert isinstance(result, dg.SensorResult | dg.SkipReason)
    return result


def test_one_sensor_tick_and_its_run_mirror_changes_behind_a_frozen_root(
    fake: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYPI_ASSETS_WINDOW_WIDTH", str(WIDTH))
    db = tmp_path / "d.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    mirror = _mirror(fake, tmp_path, db)
    _materialize_everything(fake, mirror, instance)
    s0 = fake.index.serial
    fake.configure(cached_root=True)
    target = _changes_upstream(fake)
    fake.reset_counts()
    tick = _tick(instance, mirror, json.dumps({"serial": s0}))
    assert isinstance(tick, dg.SensorResult) and tick.run_requests
    assert fake.total_requests() == 1 and fake.counts["xmlrpc"] == 1  # one uncached call
    assert fake.counts["simple-root"] == 0
    for request in tick.dynamic_partitions_requests or []:
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        instance.add_dynamic_partitions(str(serial_windows.name), list(request.partition_keys))
    fake.reset_counts()
    for run in tick.run_requests:
        result = dg.materialize(
            [release_metadata],
            partition_key=run.partition_key,
            resources={"mirror": mirror},
            instance=instance,
        )
        assert result.success
    assert _mirrored(db, target)
    # The run's requests: one changelog call, then the two projects' requests as in a sync
    # (their sdists' PKG-INFO included: the two `file` requests).
    assert fake.counts["simple-root"] == 0 and fake.counts["xmlrpc"] == 1
    assert fake.counts["file"] == 2
    assert fake.total_requests() == 11, dict(fake.counts)


@pytest.mark.parametrize("status", [500, 405], ids=["failing", "absent"])
def test_a_tick_never_trusts_the_cached_root_while_xmlrpc_fails(
    fake: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """With XML-RPC failing (500) the tick skips and says why, rather than read the root's
    day-old header (which shows nothing new here); with XML-RPC absent (a proxy's 405) the
    header is all there is, and the tick uses it."""
    monkeypatch.setenv("PYPI_ASSETS_BACKOFF", "0.01")
    mirror = _mirror(fake, tmp_path, tmp_path / "d.duckdb")
    s0 = fake.index.serial
    fake.configure(cached_root=True)
    _changes_upstream(fake)
    fake.add_fault(Fault(path=r"^/(pypi|RPC2)/?$", kind="status", status=status, times=1000))
    fake.reset_counts()
    tick = _tick(dg.DagsterInstance.ephemeral(), mirror, json.dumps({"serial": s0 - 1}))
    if status == 500:
        assert isinstance(tick, dg.SkipReason), tick
        assert "500" in str(tick.skip_message) and "retry later" in str(tick.skip_message)
    else:
        assert isinstance(tick, dg.SensorResult) and tick.run_requests
        assert fake.counts["simple-root"] == 1  # HEAD /simple/


# ------------------------------------------------------------------ rate limits
@pytest.mark.parametrize("as_fault", [False, True], ids=["http-429", "fault-in-200"])
def test_rate_limited_changelog_is_waited_out_and_the_sync_completes(
    tmp_path: Path, as_fault: bool
) -> None:
    with FakeUpstream(FakeIndex.generate(8), changelog_cap=3) as fake:
        db = tmp_path / "m.duckdb"
        sync(fake, db)
        fake.configure(cached_root=True)
        target = _changes_upstream(fake)
        for i in range(3):
            fake.index.add_project(f"later-{i}")
        # two calls per 2 seconds: the paged changelog (3 rows a call) meets the limit
        fake.configure(xmlrpc_limit=(2, 2.0), xmlrpc_limit_fault=as_fault)
        fake.reset_counts()
        report = sync(fake, db)
        assert report.ok and _mirrored(db, target)
        assert fake.counts["xmlrpc-limited"] >= 1
        assert report.requests["rate_limited"] == fake.counts["xmlrpc-limited"]
        assert report.requests["rate_wait_seconds"] >= 1  # the wait the message named
        assert {f"later-{i}" for i in range(3)} <= {
            r[0] for r in table(db, "SELECT name FROM projects")
        }


def _synced_by_cli(
    fake: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> tuple[Path, list[str], dict[str, Any]]:
    """A mirror synced once by the CLI: its database, the sync's arguments, what it holds."""
    db = tmp_path / "m.duckdb"
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    args = ["sync", "--upstream", fake.url, "--config", str(conf), "--db", str(db)]
    assert run_cli(args, cli_env).returncode == 0
    return db, args, dump(db)


def test_a_rate_limit_longer_than_the_run_may_wait_stops_with_exit_3_losing_nothing(
    fake: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    db, args, before = _synced_by_cli(fake, tmp_path, cli_env)
    fake.configure(cached_root=True)
    _changes_upstream(fake)
    fake.configure(xmlrpc_limit=(1, 900.0))  # changelog_last_serial passes, the rest waits
    p = run_cli(args, cli_env)
    assert p.returncode == 3, p.stderr
    assert "rate limited" in p.stderr and "900 s" in p.stderr
    assert dump(db) == before
    fake.configure(xmlrpc_limit=None)
    assert run_cli(args, cli_env).returncode == 0  # the next run loses nothing


def test_a_failing_changelog_stops_the_run_instead_of_trusting_the_cached_root(
    fake: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """XML-RPC answers 500 on an upstream whose changelog the mirror follows: the root's
    header is a day old, so a run that took its serial from it would say "up to date" over
    real changes. It stops with exit 3 and one line, changing nothing; healed, the next run
    mirrors the changes."""
    db, args, before = _synced_by_cli(fake, tmp_path, cli_env)
    fake.configure(cached_root=True)  # the CDN's copy, frozen before the changes
    target = _changes_upstream(fake)
    fake.add_fault(Fault(path=r"^/(pypi|RPC2)/?$", kind="status", status=500, times=1000))
    p = run_cli(args, cli_env)
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert len(p.stderr.splitlines()) == 1 and "500" in p.stderr and "retry later" in p.stderr
    assert dump(db) == before
    fake.state.faults.clear()
    assert run_cli(args, cli_env).returncode == 0
    assert _mirrored(db, target)


def test_call_budget_waits_within_its_window_and_refuses_past_it(fake: FakeUpstream) -> None:
    async def calls(n: int, **budget: Any) -> float:
        cfg = ClientConfig(upstream=fake.url, max_retry_after=5.0, **budget)
        async with PyPIClient(cfg) as c:
            for _ in range(n):
                assert await c.xmlrpc("changelog_last_serial") == fake.index.serial
            return c.stats.rate_wait_seconds

    assert asyncio.run(calls(3, xmlrpc_budget=2, xmlrpc_window=0.3)) > 0.1
    with pytest.raises(RateLimited, match="call budget: 2 calls per 3600 s"):
        asyncio.run(calls(3, xmlrpc_budget=2))
    assert issubclass(RateLimited, UpstreamError)  # the CLI's exit 3


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "message-only"])
def test_rate_limited_json_api_and_pages_are_waited_out_and_the_sync_completes(
    tmp_path: Path, retry_after: bool
) -> None:
    """HTTP 429 on any request (here the JSON API and the simple pages) waits what it is
    told, in ``Retry-After`` or in Warehouse's "Limit may reset in N seconds"; the waits do
    not use up the retries, and the run reports them."""
    with FakeUpstream(FakeIndex.generate(6)) as fake:
        fake.configure(api_limit=(4, 1.0), api_limit_retry_after=retry_after)
        db = tmp_path / "m.duckdb"
        report = sync(fake, db, retries=1)  # more 429s in a row than retries: still waited
        assert report.ok, report.failures
        assert report.refresh.refreshed and not report.refresh.failed
        limited = fake.counts["api-limited"]
        assert limited >= 2
        summary = report.summary()
        assert summary["rate_limited"] == limited
        assert summary["rate_wait_seconds"] >= 1  # each wait at least the second it named
        assert table(db, "SELECT count(*) FROM projects WHERE state = 'ok'") == [(6,)]


def test_a_rate_limit_wait_longer_than_max_rate_wait_fails_the_request(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.configure(api_limit=(1, 60.0))  # one request, then "Limit may reset in 60 seconds"
    name = fake.index.projects[sorted(fake.index.projects)[0]].name
    config = make_config("[pypi_assets]\nmax_rate_wait = 5\n")
    assert config.max_rate_wait == 5.0

    async def main() -> None:
        cfg = ClientConfig(upstream=fake.url, max_retry_after=config.max_rate_wait)
        async with PyPIClient(cfg) as c:
            await c.project_json(name)
            await c.project_json(name)

    with pytest.raises(RateLimited, match=r"longer than max_rate_wait \(5 s\)"):
        asyncio.run(main())
    assert fake.counts["api-limited"] == 1


def test_changelog_is_paged_to_the_last_serial(fake: FakeUpstream) -> None:
    fake.configure(changelog_cap=4)  # smaller than the client's page: paging goes on

    async def main() -> tuple[list[list[Any]], int]:
        async with PyPIClient(ClientConfig(upstream=fake.url)) as c:
            rows = await c.changelog_since(0, until=fake.index.serial)
            return rows, c.stats.count["xmlrpc:changelog_since_serial"]

    rows, n = asyncio.run(main())
    assert [r[4] for r in rows] == sorted(r[4] for r in rows)
    assert rows[-1][4] == fake.index.serial and n == -(-len(rows) // 4)


# ------------------------------------------------------------------ allowlist-only
ALLOW = "[plugins]\nenabled = allowlist_project\n[allowlist]\npackages =\n"


def test_allowlist_only_asks_for_its_projects_and_never_reads_the_listing(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    names = sorted(fake.index.projects)[:3]
    config = make_config(ALLOW + "".join(f"    {n}\n" for n in [*names, "no-such-project"]))
    db = tmp_path / "m.duckdb"
    report = sync(fake, db, config)
    kinds = report.requests["requests"]
    assert fake.counts["simple-root"] == 0 and "xmlrpc:list_packages_with_serial" not in kinds
    assert report.listing == "allowlist (4 projects asked directly)"
    assert report.refresh.missing == ["no-such-project"]
    assert sorted(report.refresh.refreshed) == names
    assert fake.counts["xmlrpc"] == 1  # changelog_last_serial; the changelog is not needed yet
    first = dict(fake.counts)
    # later: only the changed project is asked for (and the missing one, again)
    fake.index.add_release(names[1], "9.0.0", wheels=1)
    fake.index.add_release(sorted(fake.index.projects)[10], "9.0.0", wheels=1)  # not allowlisted
    fake.reset_counts()
    report = sync(fake, db, config)
    assert report.changes == CHANGES_CHANGELOG and report.refresh.refreshed == [names[1]]
    assert {p for (_r, p) in fake.per_project} == {names[1], "no-such-project"}
    assert fake.counts["simple-root"] == 0 and fake.counts["xmlrpc"] == 2
    second = dict(fake.counts)
    # Per route. Besides the JSON and the pages, each file's own metadata: the wheels' PEP
    # 658 files (or, where a wheel has none, a range read of its METADATA) and each sdist's
    # PKG-INFO, streamed until found: the `file` requests.
    assert first == {
        "xmlrpc": 1,
        "project-json": 4,
        "simple-project": 3,
        "version-json": 12,
        "core-metadata": 16,
        "file": 26,
    }
    assert second == {
        "xmlrpc": 2,
        "project-json": 2,
        "simple-project": 1,
        "version-json": 1,
        "core-metadata": 1,
        "file": 1,
    }


# ------------------------------------------------------------------ no XML-RPC, no serials
def test_an_upstream_without_xmlrpc_is_rechecked_conditionally_and_says_so(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    with FakeUpstream(FakeIndex.generate(6), profile="proxy") as fake:
        db = tmp_path / "m.duckdb"
        report = sync(fake, db)
        assert report.changes == CHANGES_CONDITIONAL
        target = sorted(fake.index.projects)[2]
        fake.index.add_release(target, "5.0.0", wheels=0)
        fake.reset_counts()
        report = sync(fake, db)
        assert report.changes == CHANGES_CONDITIONAL
        assert report.refresh.refreshed == [target]
        # the others answer 304 (and so may the status poll's conditional requests)
        assert report.statuses is not None
        polled = report.statuses.not_modified
        assert fake.counts["not-modified"] == len(fake.index.projects) - 1 + polled
        assert fake.counts["xmlrpc"] == 1  # tried once (405), then remembered
        conf = tmp_path / "b.conf"
        conf.write_text(CONF)
        p = run_cli(
            ["sync", "--upstream", fake.url, "--config", str(conf), "--db", str(db)], cli_env
        )
        assert "changes          conditional re-check (no XML-RPC)" in p.stdout, p.stdout


def test_an_allowlist_without_xmlrpc_rechecks_only_its_projects(
    tmp_path: Path,
) -> None:
    with FakeUpstream(FakeIndex.generate(6), profile="proxy") as fake:
        names = sorted(fake.index.projects)[:2]
        config = make_config(ALLOW + "".join(f"    {n}\n" for n in names))
        db = tmp_path / "m.duckdb"
        sync(fake, db, config)
        fake.reset_counts()
        report = sync(fake, db, config)
        assert report.changes == CHANGES_CONDITIONAL
        assert sorted(report.refresh.unchanged) == names
        # no listing: the one request to /simple/ is the HEAD that looks for a serial header
        assert "simple-root" not in report.requests["requests"]
        assert fake.counts["not-modified"] == 2
