"""The metadata mirror as software-defined assets. Thin: each asset calls pipeline steps."""

import asyncio
import time
from typing import Any

import dagster as dg

from ...pipeline import (
    WindowReport,
    client_config,
    lacking_metadata,
    list_upstream,
    publish,
    recompute_selected_files,
    refresh_window,
    select_projects,
)
from ...pypi import PyPIClient
from ...store import MetadataStore
from ...store.derived import refresh_derived
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
                listing = await list_upstream(client, store, config)
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


serial_windows = dg.DynamicPartitionsDefinition(name="serial_windows")


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    deps=[filtered_projects],
    partitions_def=serial_windows,
    kinds={"duckdb", "python"},
    description="Per-file release metadata (distributions, releases, dependencies) of the selected projects whose "
    "upstream serial falls in this serial window and whose stored serial is older.",
)
def release_metadata(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings, config = mirror.settings(), mirror.config()
    ccfg = client_config(settings, config)
    progress = _progress(context)
    key = context.partition_key
    started = time.perf_counter()
    with MetadataStore(settings.db) as store:

        async def run() -> WindowReport:
            async with PyPIClient(ccfg) as client:
                return await refresh_window(client, store, config, key, progress=progress)

        window = asyncio.run(run())
        report = window.refresh
        recompute_selected_files(store, config, report.refreshed + report.missing)
        sources = lacking_metadata(report.failed, store, report.refreshed)
        serial = int(store.get_meta("changelog_serial") or store.get_meta("upstream_serial") or 0)
        counts = store.counts(views=False)
    for name, err in sorted(report.failed.items()):
        context.log.error(f"{name}: {err}")
    stats = window.requests
    metadata: dict[str, Any] = {
        "window": key,
        "serial_reached": serial,
        "refreshed": len(report.refreshed),
        "candidates": report.selected,
        "missing": len(report.missing),
        "failed": len(report.failed),
        "failed_projects": dg.MetadataValue.json(sorted(report.failed)[:100]),
        "relisted": window.relisted,
        "metadata_sources": dg.MetadataValue.json(sources),
        "requests": stats["total_requests"],
        "requests_by_kind": dg.MetadataValue.json(stats["requests"]),
        "request_seconds": dg.MetadataValue.json(stats["request_seconds"]),
        "seconds": round(time.perf_counter() - started, 3),
        **{f"rows_{k}": v for k, v in counts.items()},
    }
    if report.failed:
        raise dg.Failure(
            description=f"{len(report.failed)} project(s) failed: {', '.join(sorted(report.failed)[:20])}",
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)


_DERIVED_DOCS = {
    "latest_releases": "One row per project: upstream's latest release with its upload time and summary (view).",
    "reverse_dependencies": "Who depends on whom: dependencies turned around (view).",
    "classifiers": "One row per file and Trove classifier, with its top-level category (view).",
    "licenses": "A normalised licence per file: License-Expression, else the licence classifier, else License (view).",
    "wheel_tags": "Wheel tags (interpreter, ABI, platform) parsed with packaging.utils.parse_wheel_filename (table).",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            group_name="analyst",
            deps=[release_metadata],
            description=doc,
            kinds={"duckdb"},
            automation_condition=dg.AutomationCondition.eager(),
        )
        for name, doc in _DERIVED_DOCS.items()
    ],
    pool=POOL,
)
def derived_tables(context: dg.AssetExecutionContext, mirror: MirrorResource):  # type: ignore[no-untyped-def,type-arg]
    """Each derived relation is an asset; they are rebuilt together from the stored metadata."""
    with MetadataStore(mirror.settings().db) as store:
        counts = refresh_derived(store)
    for name in _DERIVED_DOCS:
        yield dg.MaterializeResult(asset_key=name, metadata={"rows": counts[name]})


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    deps=[release_metadata, *_DERIVED_DOCS],
    kinds={"duckdb", "parquet"},
    automation_condition=dg.AutomationCondition.eager(),
    description="The read-only snapshot analysts open with pypi_assets.connect(): a versioned DuckDB copy plus "
    "Parquet, swapped in atomically. Re-published automatically after release_metadata changes.",
)
def metadata_snapshot(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings = mirror.settings()
    started = time.perf_counter()
    with MetadataStore(settings.db) as store:
        serial = int(store.get_meta("changelog_serial") or store.get_meta("upstream_serial") or 0)
        path = publish(store, serial)
        counts = store.counts()
    seconds = round(time.perf_counter() - started, 3)
    context.log.info(f"published {path} in {seconds}s")
    return dg.MaterializeResult(
        metadata={
            "snapshot": str(path),
            "serial": serial,
            "publish_seconds": seconds,
            **{f"rows_{k}": v for k, v in counts.items()},
        }
    )
