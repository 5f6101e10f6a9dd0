"""Files as assets: ``release_files`` (partitioned by serial window, like release_metadata)
and ``simple_index``. Both run only when blobs are enabled (``PYPI_ASSETS_BLOBS``, the
resource's ``blobs``, or ``release-files`` with ``directory`` in the bandersnatch config);
otherwise they skip and materialise nothing."""

from collections.abc import Iterator

import dagster as dg

from ...sync.index import write_index
from ...sync.run import claim_web_index, index_options, mirror_opening_store, track_blob_store
from ...sync.settings import SettingsError
from ...sync.windows import bounds
from ..partitions import serial_windows, window_backfill_policy
from ..resources import MirrorResource
from ..shared import (
    CODE_VERSION,
    EAGER_AFTER_CHECKS,
    FILES_TAGS,
    FRESHNESS,
    GROUP,
    OWNERS,
    POOL,
    log_progress,
)

_RELEASE_METADATA = dg.AssetKey("release_metadata")


@dg.asset(
    group_name=GROUP,
    deps=[_RELEASE_METADATA],
    partitions_def=serial_windows,
    backfill_policy=window_backfill_policy,
    kinds={"s3", "python"},
    owners=OWNERS,
    tags=FILES_TAGS,
    code_version=CODE_VERSION,
    output_required=False,
    description="The selected files (and their PEP 658 .metadata) of the projects whose stored serial falls in "
    "this window, streamed from upstream, sha256-verified and stored content-addressed "
    "(packages/aa/bb/<digest>/<filename>) in the blob store. Holds the DuckDB lock only to record blobs.",
)
def release_files(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
    settings, config = mirror.settings(), mirror.config()
    blobs = settings.blob_store(config)
    if blobs is None:
        context.log.info("blobs are not enabled (PYPI_ASSETS_BLOBS / release-files): nothing to do")
        return
    keys = context.partition_keys  # one window, or a backfill's range of them
    with mirror.store() as store:
        # as a CLI sync does: a new blob store starts with nothing recorded, and the store
        # lists this database, so `verify --delete-unreferenced` from another one refuses
        track_blob_store(store, blobs)
        rows = [
            row
            for key in keys
            for row in store.missing_blobs(bounds(key), metadata=config.core_metadata)
        ]
    context.log.info(f"{len(rows)} files to fetch into {blobs.description}")

    progress = log_progress(context)
    report = mirror.fetch(
        lambda client: mirror_opening_store(client, mirror.store, blobs, rows, progress=progress),
        config,
    ).value
    failed = sorted(report.failed)
    for name in failed:
        context.log.error(f"{name}: {report.failed[name]}")
    metadata = {
        "store": blobs.description,
        "window": keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}",
        "downloaded": report.downloaded,
        "present": report.present,
        "bytes": report.bytes,
        "provenance": report.provenance,
        "failed": len(failed),
        "failed_files": dg.MetadataValue.json(failed[:100]),
        "seconds": round(report.seconds, 3),
    }
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} file(s) failed: {', '.join(failed[:10])}", metadata=metadata
        )
    yield dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    deps=[_RELEASE_METADATA, release_files],
    kinds={"html", "json"},
    owners=OWNERS,
    tags=FILES_TAGS,
    code_version=CODE_VERSION,
    output_required=False,
    automation_condition=EAGER_AFTER_CHECKS,
    freshness_policy=FRESHNESS,
    description="PEP 503 HTML and PEP 691 JSON simple index (api-version 1.4, _last-serial on the root and every "
    "project) and the JSON API, written atomically under the web root. Only projects whose serial or selection "
    "changed are rewritten. Re-written automatically after release_metadata changes and its blocking checks pass.",
)
def simple_index(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
    settings, config = mirror.settings(), mirror.config()
    web = settings.web_root(config)
    if web is None:
        context.log.info("blobs are not enabled: no simple index")
        return
    try:  # one database writes one index folder
        claim_web_index(web, settings.db)
    except SettingsError as exc:
        raise dg.Failure(description=str(exc)) from None
    with mirror.store() as store:
        report = write_index(
            store,
            web,
            index_options(config),
            max_delete_share=config.max_removed_share,
            removed=store.removed_projects(),
        )
    context.log.info(
        f"{len(report.written)} project pages written, {report.unchanged} unchanged, "
        f"{len(report.deleted)} removed, under {web}"
    )
    yield dg.MaterializeResult(
        metadata={
            "web_root": str(web),
            "written": len(report.written),
            "unchanged": report.unchanged,
            "removed": len(report.deleted),
            "serial": report.serial,
            "written_sample": dg.MetadataValue.json(report.written[:50]),
        }
    )
