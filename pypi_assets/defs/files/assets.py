"""Files as assets: ``release_files`` (partitioned by serial window, like release_metadata)
and ``simple_index``. Both run only when blobs are enabled (``PYPI_ASSETS_BLOBS``, the
resource's ``blobs``, or ``release-files`` with ``directory`` in the bandersnatch config);
otherwise they skip and materialise nothing."""

import asyncio
from collections.abc import Iterator

import dagster as dg

from ...files import FilesReport, Stored, mirror_files
from ...pipeline import client_config, index_options
from ...pypi import PyPIClient
from ...serial_windows import bounds
from ...store import MetadataStore
from ...store.index import write_index
from ..mirror.assets import GROUP, POOL, _progress, release_metadata, serial_windows
from ..resources import MirrorResource


@dg.asset(
    group_name=GROUP,
    deps=[release_metadata],
    partitions_def=serial_windows,
    kinds={"s3", "python"},
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
    window = bounds(context.partition_key)
    with MetadataStore(settings.db) as store:
        rows = store.missing_blobs(window, metadata=config.core_metadata)
    context.log.info(f"{len(rows)} files to fetch into {blobs.description}")

    def record(batch: list[Stored]) -> None:
        with MetadataStore(settings.db) as store:
            store.record_blobs(batch)

    async def run() -> FilesReport:
        async with PyPIClient(client_config(settings, config)) as client:
            return await mirror_files(client, blobs, rows, record, progress=_progress(context))

    report = asyncio.run(run())
    failed = sorted(report.failed)
    for name in failed:
        context.log.error(f"{name}: {report.failed[name]}")
    metadata = {
        "store": blobs.description,
        "window": context.partition_key,
        "downloaded": report.downloaded,
        "present": report.present,
        "bytes": report.bytes,
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
    deps=[release_metadata, release_files],
    kinds={"html", "json"},
    output_required=False,
    automation_condition=dg.AutomationCondition.eager(),
    description="PEP 503 HTML and PEP 691 JSON simple index (api-version 1.1, _last-serial on the root and every "
    "project) and the JSON API, written atomically under the web root. Only projects whose serial or selection "
    "changed are rewritten.",
)
def simple_index(
    context: dg.AssetExecutionContext, mirror: MirrorResource
) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
    settings, config = mirror.settings(), mirror.config()
    web = settings.web_root(config)
    if web is None:
        context.log.info("blobs are not enabled: no simple index")
        return
    with MetadataStore(settings.db) as store:
        report = write_index(
            store, web, index_options(config), max_delete_share=config.max_removed_share
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
