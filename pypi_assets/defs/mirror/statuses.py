"""The status poll in Dagster: PEP 792 archive, unarchive and deprecate, vulnerabilities and
ownership change upstream with no serial, so neither the sensor nor a window run sees them.
A job polls the selected projects that are due (``[pypi_assets] status_poll_interval``) with
conditional requests, as ``pypi-assets sync`` does; a schedule runs it often, and only the
projects whose cadence has passed are asked. When something changed, the job rewrites the
index pages that went stale and re-publishes the snapshot, and reports both as materialised
by it, as a window run does for the listing."""

from typing import Any

import dagster as dg

from ...sync.index import write_index
from ...sync.run import index_options, publish
from ...sync.status import StatusReport, poll_cutoff, poll_statuses
from ..resources import MirrorResource
from ..shared import POOL, log_progress


class StatusPollConfig(dg.Config):
    everything: bool = False  # poll every selected project now, whatever the cadence


def _poll_metadata(report: StatusReport, stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "polled": report.polled,
        "requests": report.requests,
        "not_modified": report.not_modified,
        "bytes": report.bytes,
        "changed": len(report.changed),
        "changed_projects": dg.MetadataValue.json(sorted(report.changed)[:100]),
        "statuses": dg.MetadataValue.json(report.statuses),
        "failed": len(report.failed),
        "failed_projects": dg.MetadataValue.json(sorted(report.failed)[:100]),
        "seconds": round(report.seconds, 3),
        "requests_by_kind": dg.MetadataValue.json(stats["requests"]),
    }


def _publish_changes(
    context: dg.OpExecutionContext, mirror: MirrorResource, changed: list[str]
) -> None:
    """The stale index pages (when blobs are enabled) and the snapshot, after a change."""
    settings, config = mirror.settings(), mirror.config()
    web = settings.web_root(config)
    with mirror.store() as store:
        if web is not None:
            index = write_index(
                store,
                web,
                index_options(config),
                max_delete_share=config.max_removed_share,
                removed=store.removed_projects(),
            )
            context.log_event(
                dg.AssetMaterialization(
                    asset_key="simple_index",
                    description="pages rewritten by the status poll",
                    metadata={"written": len(index.written), "serial": index.serial},
                )
            )
        commit = publish(store, store.known_serial())
    context.log_event(
        dg.AssetMaterialization(
            asset_key="metadata_snapshot",
            description="re-published by the status poll",
            metadata={
                "snapshot": str(commit),
                "lake_version": commit.version,
                "changed_projects": dg.MetadataValue.json(changed),
            },
        )
    )


@dg.op(
    name="poll_due_statuses",
    pool=POOL,
    out=dg.Out(dg.Nothing),
    description="Poll the selected projects' status and vulnerabilities when due.",
)
def poll_due_statuses(
    context: dg.OpExecutionContext, config: StatusPollConfig, mirror: MirrorResource
) -> dg.Output[None]:
    mirror_config = mirror.config()
    cutoff = poll_cutoff(mirror_config.status_poll_interval, everything=config.everything)
    new = mirror_config.polls_new_statuses
    progress = log_progress(context)  # type: ignore[arg-type]
    with mirror.store() as store:
        fetched = mirror.fetch(
            lambda client: poll_statuses(
                client, store, cutoff, new=new or config.everything, progress=progress
            ),
            mirror_config,
        )
    report = fetched.value
    for name, err in sorted(report.failed.items()):
        context.log.warning(f"{name}: {err}")
    context.log.info(
        f"{report.polled} polled, {report.requests} requests ({report.not_modified} answered "
        f"304), {len(report.changed)} changed"
    )
    if report.changed:
        _publish_changes(context, mirror, sorted(report.changed))
    return dg.Output(None, metadata=_poll_metadata(report, fetched.stats))


@dg.job(
    name="poll_project_statuses",
    description="Poll PEP 792 statuses, ownership and vulnerabilities (not journaled: no serial moves) "
    "of the selected projects whose [pypi_assets] status_poll_interval has passed, with conditional "
    "requests; rewrite the pages that changed and re-publish the snapshot.",
)
def status_poll_job() -> None:
    poll_due_statuses()


@dg.schedule(
    name="status_poll_schedule",
    job=status_poll_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every 15 minutes, poll the projects whose status_poll_interval (default a day) has passed; "
    "a tick with nothing due costs no upstream request.",
)
def status_poll_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(run_key=context.scheduled_execution_time.isoformat())
