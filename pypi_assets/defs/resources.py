"""Dagster resources. Every field can be set from the launchpad; unset fields fall back to the
contract's environment variables (PYPI_ASSETS_UPSTREAM, _CONFIG, _DB, _BLOBS, _CONCURRENCY)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ..filters import MirrorConfig
from ..settings import Settings


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
