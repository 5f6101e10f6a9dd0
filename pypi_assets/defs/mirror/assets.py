"""The metadata mirror as software-defined assets. Thin: each asset calls pipeline steps with
what the ``mirror`` resource hands out, and reports standard metadata."""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from ...store import MetadataStore
from ...store.derived import refresh_derived
from ...sync.listing import CHANGES_CHANGELOG, list_upstream, select_projects
from ...sync.reports import WindowReport
from ...sync.run import lacking_metadata, publish, refresh_windows
from ...sync.selection import recompute_selected_files
from ..partitions import serial_windows, window_backfill_policy
from ..resources import MirrorResource
from ..shared import (
    ANALYST_GROUP,
    ANALYST_TAGS,
    CODE_VERSION,
    DISTRIBUTIONS_SCHEMA,
    EAGER_AFTER_CHECKS,
    FRESHNESS,
    GROUP,
    MIRROR_TAGS,
    OWNERS,
    POOL,
    column_schema,
    log_progress,
    row_count,
)

__all__ = [
    "derived_tables",
    "filtered_projects",
    "metadata_snapshot",
    "release_metadata",
    "serial_windows",
    "upstream_projects",
]


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    owners=OWNERS,
    tags=MIRROR_TAGS,
    code_version=CODE_VERSION,
    kinds={"duckdb", "python"},
    description="Every upstream project with its _last-serial (PEP 691 JSON /simple/, XML-RPC fallback).",
)
def upstream_projects(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    config = mirror.config()
    with mirror.store() as store:
        fetched = mirror.fetch(lambda client: list_upstream(client, store, config), config)
    listing, stats = fetched.value, fetched.stats
    context.log.info(f"{len(listing)} projects at serial {listing.serial} from {fetched.upstream}")
    return dg.MaterializeResult(
        metadata={
            **row_count(len(listing)),
            "projects": len(listing),
            "upstream_serial": listing.serial,
            "source": listing.source,
            "upstream": fetched.upstream,
            "requests": stats["total_requests"],
            "request_seconds": dg.MetadataValue.json(stats["request_seconds"]),
        }
    )


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    owners=OWNERS,
    tags=MIRROR_TAGS,
    code_version=CODE_VERSION,
    deps=[upstream_projects],
    kinds={"duckdb", "python"},
    description="Project-level filters of the bandersnatch config applied; projects gone upstream marked removed.",
)
def filtered_projects(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    config = mirror.config()
    for w in config.warnings:
        context.log.warning(w)
    with mirror.store() as store:
        names = select_projects(store, config)
        listed = store.upstream_count()
        removed = store.mark_removed(store.listing_serial())
    context.log.info(
        f"{len(names)} of {listed} projects selected; {len(removed)} newly removed upstream"
    )
    return dg.MaterializeResult(
        metadata={
            **row_count(len(names)),
            "selected": len(names),
            "listed": listed,
            "newly_removed": len(removed),
            "removed_sample": dg.MetadataValue.json(sorted(removed)[:50]),
            "config_source": config.source,
        }
    )


def _listing_serials(store: MetadataStore) -> tuple[int, int]:
    """(serial the stored listing has reached, serial of its last full listing)."""
    return store.known_serial(), store.listing_serial()


def caught_up(
    before: tuple[int, int], store: MetadataStore, key: str
) -> list[dg.AssetMaterialization]:
    """The materialisations a window run reports for the listing's assets.

    A window whose end lies beyond the stored listing first catches up: through the
    changelog, or, on an upstream without one, a full re-listing and re-selection. Either way
    it writes the tables of ``upstream_projects`` and ``filtered_projects``. The catch-up
    stays in the window run (one run per upstream change, its cost proportional to the
    changes, and no second writer of the listing to order against it), and the run reports
    what it wrote as materialisations of those two assets, so the graph shows when the
    listing moved and which run moved it.

    What moved is read from the store (``before`` is :func:`_listing_serials` at the start),
    so a run that fails after catching up still reports it, and a changelog with nothing
    new reports nothing. The selected-project count is left to ``filtered_projects``' own
    runs: counting it here would scan the selection on every incremental run.
    """
    (reached, relisted_at), (known_before, listed_before) = _listing_serials(store), before
    relisted = relisted_at > listed_before
    if not relisted and reached <= known_before:
        return []
    by = {
        "serial_reached": reached,
        "source": "listing" if relisted else "changelog",
        "window": key,
    }
    return [
        dg.AssetMaterialization(
            asset_key=upstream_projects.key,
            description=f"caught up by release_metadata[{key}]",
            metadata={**row_count(store.upstream_count()), **by},
        ),
        dg.AssetMaterialization(
            asset_key=filtered_projects.key,
            description=f"caught up by release_metadata[{key}]",
            metadata=by,
        ),
    ]


def _changes(window: WindowReport) -> str:
    """How the window run learnt what changed upstream."""
    if window.changelog_serial is not None:
        return CHANGES_CHANGELOG
    if window.relisted:
        return "listing (no XML-RPC changelog)"
    return "none needed (the stored listing is current)"


def _window_metadata(
    window: WindowReport, serial: int, sources: dict[str, int], counts: dict[str, int]
) -> dict[str, Any]:
    """The materialisation metadata of one window run."""
    report, stats = window.refresh, window.requests
    return {
        **row_count(counts["distributions"]),
        "window": window.key,
        "serial_reached": serial,
        "refreshed": len(report.refreshed),
        "candidates": report.selected,
        "missing": len(report.missing),
        "removed": len(report.removed),
        "failed": len(report.failed),
        "failed_projects": dg.MetadataValue.json(sorted(report.failed)[:100]),
        "relisted": window.relisted,
        "changes": _changes(window),
        "metadata_sources": dg.MetadataValue.json(sources),
        # sdists whose own PKG-INFO differs from their release's version JSON, by field
        "pkg_info_differing": window.pkg_info_vs_version_json.get("differing", 0),
        "pkg_info_vs_version_json": dg.MetadataValue.json(window.pkg_info_vs_version_json),
        "requests": stats["total_requests"],
        "requests_by_kind": dg.MetadataValue.json(stats["requests"]),
        "request_seconds": dg.MetadataValue.json(stats["request_seconds"]),
        "rate_limited": stats["rate_limited"],
        "rate_wait_seconds": stats["rate_wait_seconds"],
        **{f"rows_{k}": v for k, v in counts.items()},
        **(
            {"statuses": dg.MetadataValue.json(window.statuses.summary())}
            if window.statuses is not None
            else {}
        ),
    }


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    owners=OWNERS,
    tags=MIRROR_TAGS,
    code_version=CODE_VERSION,
    deps=[filtered_projects],
    partitions_def=serial_windows,
    backfill_policy=window_backfill_policy,
    kinds={"duckdb", "python"},
    freshness_policy=FRESHNESS,
    metadata=column_schema(DISTRIBUTIONS_SCHEMA),
    description="Per-file release metadata (distributions, releases, dependencies) of the selected projects whose "
    "upstream serial falls in this serial window and whose stored serial is older. A window beyond the stored "
    "listing first catches up through the changelog and reports upstream_projects and filtered_projects as "
    "materialised by this run. A backfill run covers a range of windows, one after another.",
)
def release_metadata(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    config = mirror.config()
    progress = log_progress(context)
    keys = context.partition_keys  # one window, or a backfill's range of them
    key = keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"
    started = time.perf_counter()
    with mirror.store() as store:
        before = _listing_serials(store)
        try:
            window = mirror.fetch(
                lambda client: refresh_windows(client, store, config, keys, progress=progress),
                config,
            ).value
        finally:
            for event in caught_up(before, store, key):
                context.log_event(event)
        report = window.refresh
        recompute_selected_files(store, config, report.refreshed + report.missing + report.removed)
        sources = lacking_metadata(report.failed, store, report.refreshed)
        serial = store.known_serial()
        counts = store.counts(views=False)
    for name, err in sorted(report.failed.items()):
        context.log.error(f"{name}: {err}")
    metadata = _window_metadata(window, serial, sources, counts)
    metadata["seconds"] = round(time.perf_counter() - started, 3)
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
            group_name=ANALYST_GROUP,
            deps=[release_metadata],
            description=doc,
            kinds={"duckdb"},
            owners=OWNERS,
            tags=ANALYST_TAGS,
            code_version=CODE_VERSION,
            automation_condition=EAGER_AFTER_CHECKS,
        )
        for name, doc in _DERIVED_DOCS.items()
    ],
    pool=POOL,
)
def derived_tables(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
    """Each derived relation is an asset; they are rebuilt together from the stored metadata."""
    with mirror.store() as store:
        counts = refresh_derived(store)
    for name in _DERIVED_DOCS:
        yield dg.MaterializeResult(
            asset_key=name, metadata={**row_count(counts[name]), "rows": counts[name]}
        )


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    owners=OWNERS,
    tags=MIRROR_TAGS,
    code_version=CODE_VERSION,
    deps=[release_metadata, *_DERIVED_DOCS],
    kinds={"duckdb", "ducklake"},
    automation_condition=EAGER_AFTER_CHECKS,
    freshness_policy=FRESHNESS,
    metadata=column_schema(DISTRIBUTIONS_SCHEMA),
    description="The read-only snapshot analysts open with pypi_assets.connect(): one DuckLake snapshot per "
    "publication, tagged with the serial, costing what changed (history and time travel included). Re-published automatically after release_metadata changes and its "
    "blocking checks pass. Its row count and column schema are those of selected_distributions.",
)
def metadata_snapshot(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    started = time.perf_counter()
    with mirror.store() as store:
        serial = store.known_serial()
        commit = publish(store, serial)
        counts = store.counts()
    seconds = round(time.perf_counter() - started, 3)
    context.log.info(f"published {commit} in {seconds}s: {commit.projects} projects changed")
    return dg.MaterializeResult(
        metadata={
            **row_count(counts["selected_distributions"]),
            "snapshot": str(commit),
            "lake_version": commit.version,
            "projects_changed": commit.projects,
            "rows_published": sum(commit.rows.values()),
            "serial": serial,
            "publish_seconds": seconds,
            **{f"rows_{k}": v for k, v in counts.items()},
        }
    )
