"""The code location: ``workspace.yaml`` loads ``pypi_assets.defs:defs``."""

import dagster as dg

from .files.assets import release_files, simple_index
from .mirror.assets import (
    derived_tables,
    filtered_projects,
    metadata_snapshot,
    release_metadata,
    upstream_projects,
)
from .mirror.checks import release_metadata_checks
from .mirror.sensors import (
    hourly_incremental_sync,
    listing_job,
    snapshot_automation,
    snapshot_job,
    upstream_serial_sensor,
    window_job,
)
from .resources import MirrorResource

defs = dg.Definitions(
    assets=[
        upstream_projects,
        filtered_projects,
        release_metadata,
        derived_tables,
        metadata_snapshot,
        release_files,
        simple_index,
    ],
    asset_checks=[release_metadata_checks],
    jobs=[listing_job, window_job, snapshot_job],
    sensors=[upstream_serial_sensor, snapshot_automation],
    schedules=[hourly_incremental_sync],
    resources={"mirror": MirrorResource()},
)
