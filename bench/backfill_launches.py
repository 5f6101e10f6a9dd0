"""Issue 13 benchmark: how many runs a backfill of every serial window launches, before
(``release_metadata`` without a backfill policy: one run per window) and after
(``BackfillPolicy.multi_run``: one run per range of ``PYPI_ASSETS_WINDOWS_PER_RUN`` windows).

Counted, not timed: Dagster's own backfill daemon iteration runs against a throwaway
instance whose run launcher only records the runs (nothing is executed), on the shipped
code location ("after") and on a stand-in with the same partitions and no policy ("before").
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import dagster as dg

from pypi_assets.defs.partitions import serial_windows
from pypi_assets.sync.windows import key_for, windows_per_run_from_env

from .common import table, write_result

ASSET = "release_metadata"


@dg.asset(name=ASSET, partitions_def=serial_windows)
def _no_policy() -> None:
    """The window asset as it was: partitioned by serial window, no backfill policy."""


#: The "before" code location: the same partitions, no backfill policy.
BEFORE = dg.Definitions(assets=[_no_policy])


def count_launches(module: str, attribute: str, windows: int) -> int:
    """Runs Dagster's backfill daemon launches for a backfill of ``windows`` windows of
    ``release_metadata`` in the code location ``module:attribute``."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.test_utils import create_test_daemon_workspace_context, instance_for_test
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    launcher = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    keys = [key_for(i * 100_000, 100_000) for i in range(windows)]
    target = ModuleTarget(module, attribute, os.getcwd(), "pypi_assets")
    with (
        instance_for_test(overrides={"run_launcher": launcher}) as instance,
        create_test_daemon_workspace_context(target, instance) as context,
    ):
        instance.add_dynamic_partitions(serial_windows.name, keys)
        graph = context.create_request_context().asset_graph
        instance.add_backfill(
            PartitionBackfill.from_asset_partitions(
                backfill_id="first-full-sync",
                asset_graph=graph,
                partition_names=keys,
                asset_selection=[dg.AssetKey(ASSET)],
                backfill_timestamp=time.time(),
                tags={},
                dynamic_partitions_store=instance,
                all_partitions=False,
                title=None,
                description=None,
                run_config=None,
            )
        )
        log = logging.getLogger("bench.backfill_launches")
        for _ in range(3):  # the first iteration requests every window (nothing runs)
            list(execute_backfill_iteration(context, log))
        return instance.get_runs_count()


def main(quick: bool = False) -> str:
    per_run = windows_per_run_from_env()
    sizes = [20, 100] if quick else [20, 100, 400]
    rows: list[list[object]] = []
    data: list[dict[str, Any]] = []
    for n in sizes:
        before = count_launches(__name__, "BEFORE", n)
        after = count_launches("pypi_assets.definitions", "defs", n)
        data.append({"windows": n, "before": before, "after": after, "per_run": per_run})
        rows.append([n, before, after, math.ceil(n / per_run), f"{before / max(after, 1):.1f}x"])
    md = "\n".join(
        [
            "# Run launches of a first full sync (backfill of every serial window)",
            "",
            f"`release_metadata` backfilled through Dagster's backfill daemon; "
            f"`PYPI_ASSETS_WINDOWS_PER_RUN` = {per_run}. Counted, not timed (`python -m bench "
            "backfill_launches`).",
            "",
            table(
                [
                    "windows",
                    "runs before (no policy)",
                    "runs after (multi_run)",
                    "ceil(windows / per run)",
                    "fewer",
                ],
                rows,
            ),
        ]
    )
    write_result("backfill_launches", md, data)
    return md
