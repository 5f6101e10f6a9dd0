"""The ``mirror`` resource: it hands an asset what it needs (the settings, the config, the
working store, a client on the upstream), so that an asset body is one call plus metadata.

Every field can be set from the launchpad; unset fields fall back to the contract's
environment variables (PYPI_ASSETS_UPSTREAM, _CONFIG, _DB, _BLOBS, _WEB, _CONCURRENCY).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import dagster as dg
from pydantic import Field

from ..filters import MirrorConfig
from ..pypi import PyPIClient
from ..store import MetadataStore
from ..sync.settings import Settings, client_config

T = TypeVar("T")


@dataclass(frozen=True)
class Fetched(Generic[T]):
    """What :meth:`MirrorResource.fetch` returns: the work's result, the upstream it talked
    to, and the client's request statistics (``ClientStats.as_dict()``)."""

    value: T
    upstream: str
    stats: dict[str, Any]


class MirrorResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    upstream: str | None = Field(
        default=None,
        description="Upstream URL; default PYPI_ASSETS_UPSTREAM, then the config's master.",
    )
    config_path: str | None = Field(
        default=None,
        description="bandersnatch config file; default PYPI_ASSETS_CONFIG, then the embedded allowlist.",
    )
    db: str | None = Field(
        default=None, description="Working DuckDB path; default PYPI_ASSETS_DB or data/pypi.duckdb."
    )
    blobs: str | None = Field(
        default=None,
        description="Blob store DIR or s3://…; default PYPI_ASSETS_BLOBS (unset: metadata only).",
    )
    web: str | None = Field(
        default=None,
        description="Where the simple index is written; default PYPI_ASSETS_WEB, then the local blob directory.",
    )
    concurrency: int | None = Field(
        default=None, description="Parallel upstream requests, 1-10; default: the config's workers."
    )

    def settings(self) -> Settings:
        return Settings.from_env(
            upstream=self.upstream,
            config_path=self.config_path,
            db=self.db,
            blobs=self.blobs,
            web=self.web,
            concurrency=self.concurrency,
        )

    def config(self) -> MirrorConfig:
        return self.settings().load_config()

    def store(self) -> MetadataStore:
        """The working database, open for writing; use it as a context manager."""
        return MetadataStore(self.settings().db)

    def fetch(
        self,
        work: Callable[[PyPIClient], Awaitable[T]],
        config: MirrorConfig | None = None,
        **overrides: Any,
    ) -> Fetched[T]:
        """Run ``work`` with a client on the upstream (configured from ``config``, else the
        configured one, and ``overrides`` of its :class:`~pypi_assets.pypi.ClientConfig`) in
        an event loop of its own, and close the client after."""
        settings = self.settings()
        ccfg = client_config(
            settings, settings.load_config() if config is None else config, **overrides
        )

        async def run() -> Fetched[T]:
            async with PyPIClient(ccfg) as client:
                value = await work(client)
                return Fetched(value, ccfg.upstream, client.stats.as_dict())

        return asyncio.run(run())


@dg.definitions
def resources() -> dg.Definitions:
    """Binds ``mirror`` for every asset, check, sensor and schedule of the code location."""
    return dg.Definitions(resources={"mirror": MirrorResource()})
