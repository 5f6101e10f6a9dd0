"""The code location: ``workspace.yaml`` loads ``pypi_assets.defs:defs``."""

from __future__ import annotations

import dagster as dg

from .mirror.assets import filtered_projects, release_metadata, upstream_projects
from .resources import MirrorResource

mirror_job = dg.define_asset_job(
    "mirror_metadata",
    selection=dg.AssetSelection.assets(upstream_projects, filtered_projects, release_metadata),
    description="List upstream, apply filters, refresh changed projects, publish the snapshot.",
)

defs = dg.Definitions(
    assets=[upstream_projects, filtered_projects, release_metadata],
    jobs=[mirror_job],
    schedules=[
        dg.ScheduleDefinition(
            name="hourly_incremental_sync",
            job=mirror_job,
            cron_schedule="17 * * * *",
            default_status=dg.DefaultScheduleStatus.STOPPED,
        )
    ],
    resources={"mirror": MirrorResource()},
)
