"""The graph's partitions: serial windows (keys and bounds in :mod:`pypi_assets.sync.windows`),
and how a backfill groups them into runs."""

import dagster as dg

from ..sync.windows import windows_per_run_from_env

#: The name the sensor, the schedule and the webserver's GraphQL calls use.
SERIAL_WINDOWS = "serial_windows"

serial_windows = dg.DynamicPartitionsDefinition(name=SERIAL_WINDOWS)

#: A backfill launches one run per range of at most ``PYPI_ASSETS_WINDOWS_PER_RUN`` windows
#: (default 10), so a first full sync of ~400 windows costs ~40 run launches, not ~400. The
#: sensor and the schedule still request one window per run.
window_backfill_policy = dg.BackfillPolicy.multi_run(
    max_partitions_per_run=windows_per_run_from_env()
)
