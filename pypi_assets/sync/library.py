"""Library use for other mirroring tools (the seed's request): parse a bandersnatch config,
filter, and get per-file metadata plus download URLs. No disk writes, no DuckDB, no downloads
of the files themselves."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterable

from ..filters import MirrorConfig, project_filter, release_file_filter
from ..pypi import NotFound, PyPIClient, fetch_project
from ..pypi.records import Project

__all__ = ["filtered_projects"]


async def filtered_projects(
    client: PyPIClient, config: MirrorConfig, *, names: Iterable[str] | None = None
) -> AsyncIterator[Project]:
    """Yield each project that passes the config's filters, with only the kept files.

    ``names`` limits the candidates (display names); by default the upstream list is read.
    Projects that vanished upstream (404) are skipped. Fetches run concurrently, bounded by
    the client's concurrency.
    """
    if names is None:
        listing = await client.list_projects()
        serials = dict(zip(listing.names, listing.serials, strict=True))
        candidates = listing.names
    else:
        candidates = list(names)
        serials = {}
    keep = project_filter(config).select(candidates)
    rff = release_file_filter(config)
    queue: asyncio.Queue[Project | None] = asyncio.Queue(maxsize=client.config.concurrency * 2)
    todo = iter(keep)

    async def worker() -> None:
        for name in todo:
            try:
                project = await fetch_project(client, name, serials.get(name), None)
            except NotFound:
                continue
            if rff.active:
                kept = set(
                    rff.select(
                        project.name,
                        project.latest_version,
                        project.releases,
                        project.distributions,
                    )
                )
                project = dataclasses.replace(
                    project, distributions=[d for d in project.distributions if d.filename in kept]
                )
            await queue.put(project)

    async def run() -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(client.config.concurrency):
                tg.create_task(worker())
        await queue.put(None)

    runner = asyncio.create_task(run())
    try:
        while (item := await queue.get()) is not None:
            yield item
    finally:
        if not runner.done():
            runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
