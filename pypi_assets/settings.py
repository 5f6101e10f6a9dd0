"""Run settings from flags and the contract's environment variables. Values, not globals."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .filters.config import MirrorConfig, load, loads

__all__ = ["DEFAULT_DB", "DEFAULT_UPSTREAM", "Settings", "default_config_text"]

DEFAULT_UPSTREAM = "https://pypi.org"
DEFAULT_DB = "data/pypi.duckdb"


def default_config_text() -> str:
    return resources.files("pypi_assets").joinpath("default.conf").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Settings:
    """Where to mirror from and to. ``upstream=None`` means: the config's ``master``."""

    upstream: str | None = None
    config_path: str | None = None
    db: Path = field(default_factory=lambda: Path(DEFAULT_DB))
    blobs: str | None = None
    concurrency: int | None = None
    backoff: float | None = None  # retry backoff base in seconds (PYPI_ASSETS_BACKOFF)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "upstream": env.get("PYPI_ASSETS_UPSTREAM") or None,
            "config_path": env.get("PYPI_ASSETS_CONFIG") or None,
            "db": Path(env.get("PYPI_ASSETS_DB") or DEFAULT_DB),
            "blobs": env.get("PYPI_ASSETS_BLOBS") or None,
            "concurrency": int(env["PYPI_ASSETS_CONCURRENCY"])
            if env.get("PYPI_ASSETS_CONCURRENCY")
            else None,
        }
        for k, v in overrides.items():
            if v is not None:
                values[k] = Path(str(v)) if k == "db" else v
        return cls(**values)  # type: ignore[arg-type]

    def load_config(self) -> MirrorConfig:
        if self.config_path:
            return load(self.config_path)
        return loads(default_config_text(), source="<embedded default.conf>")

    def upstream_for(self, config: MirrorConfig) -> str:
        return (self.upstream or config.get("mirror", "master") or DEFAULT_UPSTREAM).rstrip("/")

    def concurrency_for(self, config: MirrorConfig) -> int:
        return self.concurrency or config.workers
