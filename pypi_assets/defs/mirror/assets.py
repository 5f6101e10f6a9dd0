"""The metadata mirror as software-defined assets. Thin: each asset calls pipeline steps."""

import asyncio
import time
from typing import Any

import dagster as dg

from ...pipeline import (
    client_config,
    list_upstream,
    publish,
    recompute_selected_files,
    refresh_metadata,
    select_projects,
)
from ...pypi import PyPIClient
from ...store import MetadataStore
from ..resources import MirrorResource

POOL = "pypi_assets_duckdb"
GROUP = "pypi_mirror"


def _progress(context: dg.AssetExecutionContext) -> Any:
    last = [0.0]

    def progress(phase: str, done: int, total: int, detail: str) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > 5.0:
            last[0] = now
            context.log.info(f"{phase}: {done}/{total} {detail}")

    return progress


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    kinds={"duckdb", "python"},
    description="Every upstream project with its _last-serial (PEP 691 JSON /simple/, XML-RPC fallback).",
)
def upstream_projects(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings, config = mirror.settings(), mirror.config()
    ccfg = client_config(settings, config)

    async def run() -> tuple[Any, dict[str, Any]]:
        with MetadataStore(settings.db) as store:
            async with PyPIClient(ccfg) as client:
                listing = await list_upstream(client, store)
                return listing, client.stats.as_dict()

    listing, stats = asyncio.run(run())
    context.log.info(f"{len(listing)} projects at serial {listing.serial} from {ccfg.upstream}")
    return dg.MaterializeResult(
        metadata={
            "projects": len(listing),
            "upstream_serial": listing.serial,
            "source": listing.source,
            "upstream": ccfg.upstream,
            "requests": stats["total_requests"],
            "request_seconds": dg.MetadataValue.json(stats["request_seconds"]),
        }
    )


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    deps=[upstream_projects],
    kinds={"duckdb", "python"},
    description="Project-level filters of the bandersnatch config applied; projects gone upstream marked removed.",
)
def filtered_projects(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings, config = mirror.settings(), mirror.config()
    for w in config.warnings:
        context.log.warning(w)
    with MetadataStore(settings.db) as store:
        names = select_projects(store, config)
        listed = store.upstream_count()
        serial = int(store.get_meta("upstream_serial") or 0)
        removed = store.mark_removed(serial)
    context.log.info(
        f"{len(names)} of {listed} projects selected; {len(removed)} newly removed upstream"
    )
    return dg.MaterializeResult(
        metadata={
            "selected": len(names),
            "listed": listed,
            "newly_removed": len(removed),
            "removed_sample": dg.MetadataValue.json(sorted(removed)[:50]),
            "config_source": config.source,
        }
    )


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    deps=[filtered_projects],
    kinds={"duckdb", "python"},
    description="Per-file release metadata (distributions, releases, dependencies) for the selected projects; "
    "publishes a read-only snapshot for analysts.",
)
def release_metadata(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings, config = mirror.settings(), mirror.config()
    ccfg = client_config(settings, config)
    progress = _progress(context)

    async def run() -> tuple[Any, dict[str, Any]]:
        async with PyPIClient(ccfg) as client:
            report = await refresh_metadata(
                client, store, stop_on_error=config.stop_on_error, progress=progress
            )
            return report, client.stats.as_dict()

    started = time.perf_counter()
    with MetadataStore(settings.db) as store:
        report, stats = asyncio.run(run())
        recompute_selected_files(store, config)
        serial = int(store.get_meta("upstream_serial") or 0)
        snapshot = publish(store, serial)
        counts = store.counts()
    for name, err in sorted(report.failed.items()):
        context.log.error(f"{name}: {err}")
    metadata: dict[str, Any] = {
        "serial_reached": serial,
        "refreshed": len(report.refreshed),
        "skipped_up_to_date": report.selected - report.todo,
        "missing": len(report.missing),
        "failed": len(report.failed),
        "failed_projects": dg.MetadataValue.json(sorted(report.failed)[:100]),
        "requests": stats["total_requests"],
        "requests_by_kind": dg.MetadataValue.json(stats["requests"]),
        "request_seconds": dg.MetadataValue.json(stats["request_seconds"]),
        "seconds": round(time.perf_counter() - started, 3),
        "snapshot": str(snapshot),
        **{f"rows_{k}": v for k, v in counts.items()},
    }
    if report.failed:
        raise dg.Failure(
            description=f"{len(report.failed)} project(s) failed: {', '.join(sorted(report.failed)[:20])}",
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)
