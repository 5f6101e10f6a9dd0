"""The graph's partitions: serial windows (keys and bounds in :mod:`pypi_assets.sync.windows`)."""

import dagster as dg

#: The name the sensor, the schedule and the webserver's GraphQL calls use.
SERIAL_WINDOWS = "serial_windows"

serial_windows = dg.DynamicPartitionsDefinition(name=SERIAL_WINDOWS)
