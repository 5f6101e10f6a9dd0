"""Keeping up with upstream: a sensor on the serial, and a schedule for fixed times."""

import json

import dagster as dg

from ...pypi import RateLimited, UpstreamError
from ...sync.windows import bounds, keys_between, keys_upto, width_from_env
from ..partitions import SERIAL_WINDOWS, serial_windows
from ..resources import MirrorResource

MAX_RUNS_PER_TICK = 5

window_job = dg.define_asset_job(
    "refresh_serial_window",
    selection=dg.AssetSelection.keys("release_metadata", "release_files"),
    partitions_def=serial_windows,
    description="Refresh one serial window: release_metadata, then its files when blobs are enabled "
    "(what the sensor and backfills launch).",
)
listing_job = dg.define_asset_job(
    "refresh_listing",
    selection=dg.AssetSelection.keys("upstream_projects", "filtered_projects"),
    description="Re-read the full upstream project list and re-apply the project filters.",
)

snapshot_job = dg.define_asset_job(
    "publish_snapshot",
    selection=dg.AssetSelection.keys("metadata_snapshot"),
    description="Publish the analyst snapshot now (it also follows release_metadata automatically).",
)

snapshot_automation = dg.AutomationConditionSensorDefinition(
    "snapshot_automation",
    target=dg.AssetSelection.keys(
        "metadata_snapshot",
        "simple_index",
        "latest_releases",
        "reverse_dependencies",
        "classifiers",
        "licenses",
        "wheel_tags",
    ),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the eager conditions: rebuild the derived tables, re-publish the snapshot and "
    "rewrite the index after release_metadata changes, once its blocking checks passed.",
)


def _serial_or_skip(mirror: MirrorResource) -> int | dg.SkipReason:
    """The upstream's serial from one cheap request, or the reason a tick does nothing."""
    try:
        # One uncached call: XML-RPC changelog_last_serial (HEAD /simple/ without XML-RPC;
        # a failing XML-RPC skips the tick rather than trust the CDN's day-old root).
        # A rate limit is waited out only briefly: the next tick asks again.
        serial = mirror.fetch(
            lambda client: client.last_serial(live=True), retries=1, max_retry_after=10.0
        ).value
    except RateLimited as exc:
        return dg.SkipReason(f"upstream rate limit: {exc}")
    except UpstreamError as exc:
        return dg.SkipReason(f"upstream not reachable: {exc}")
    if serial is None or serial <= 0:  # unknown is not 0
        return dg.SkipReason(
            "upstream reports no serial (no XML-RPC changelog_last_serial, no "
            "X-PyPI-Last-Serial): "
            "run `pypi-assets sync` instead, which re-checks every selected project each run"
        )
    return serial


def plan_tick(
    cursor: int, serial: int, existing: set[str], width: int, max_runs: int
) -> tuple[list[str], list[str], int]:
    """(windows to add, windows to run, new cursor). Pure, so it is unit-tested directly.

    Windows that hold serials in ``(cursor, serial]`` run, oldest first, at most
    ``max_runs``; the cursor moves to the end of the last window run (never past ``serial``),
    so a capped tick continues where it stopped and the cursor only moves forward.
    """
    if serial <= cursor:
        return [], [], cursor
    new = [k for k in keys_upto(serial, width) if k not in existing]
    due = keys_between(cursor, serial, width)[:max_runs]
    moved = min(serial, bounds(due[-1])[1]) if due else serial
    return new, due, max(cursor, moved)


@dg.sensor(
    name="upstream_serial_sensor",
    job=window_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="One uncached request per tick for the upstream serial (XML-RPC changelog_last_serial; "
    "HEAD /simple/ without XML-RPC); adds serial windows as it grows and "
    "re-materialises the windows that changed, the open one included.",
)
def upstream_serial_sensor(
    context: dg.SensorEvaluationContext, mirror: MirrorResource
) -> dg.SensorResult | dg.SkipReason:
    state = json.loads(context.cursor) if context.cursor else {}
    cursor = int(state.get("serial", 0))
    serial = _serial_or_skip(mirror)
    if isinstance(serial, dg.SkipReason):
        return serial
    observation = dg.AssetObservation(
        asset_key="upstream_projects", metadata={"upstream_serial": serial}
    )
    if serial <= cursor:
        return dg.SensorResult(
            skip_reason=f"no upstream change since serial {cursor}", asset_events=[observation]
        )
    existing = set(context.instance.get_dynamic_partitions(SERIAL_WINDOWS))
    new, due, moved = plan_tick(cursor, serial, existing, width_from_env(), MAX_RUNS_PER_TICK)
    runs = [
        dg.RunRequest(
            run_key=f"{key}@{min(serial, bounds(key)[1])}",
            partition_key=key,
            tags={"pypi_assets/upstream_serial": str(serial)},
        )
        for key in due
    ]
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[serial_windows.build_add_request(new)] if new else [],
        cursor=json.dumps({"serial": moved}),
        asset_events=[observation],
    )


@dg.schedule(
    name="hourly_incremental_sync",
    job=window_job,
    cron_schedule="17 * * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="For sites that want fixed times: each hour, refresh the open serial window and the one before it "
    "(changes land in the newest window; the previous one covers a boundary crossed since the last tick).",
)
def hourly_incremental_sync(
    context: dg.ScheduleEvaluationContext, mirror: MirrorResource
) -> dg.SkipReason | list[dg.RunRequest]:
    serial = _serial_or_skip(mirror)
    if isinstance(serial, dg.SkipReason):
        return serial
    width = width_from_env()
    keys = keys_upto(serial, width)[-2:]
    existing = set(context.instance.get_dynamic_partitions(SERIAL_WINDOWS))
    missing = [k for k in keys_upto(serial, width) if k not in existing]
    if missing:
        context.instance.add_dynamic_partitions(SERIAL_WINDOWS, missing)
    stamp = (
        context.scheduled_execution_time.isoformat()
        if context.scheduled_execution_time
        else str(serial)
    )
    return [dg.RunRequest(run_key=f"{k}@{stamp}", partition_key=k) for k in keys]
