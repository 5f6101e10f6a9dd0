"""Run settings from flags and the contract's environment variables. Values, not globals."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..filters.config import MirrorConfig, load, loads
from ..pypi import ClientConfig
from ..pypi.errors import ConfigurationError
from ..pypi.names import upstream_url_problem
from ..store.blobs import BlobStore, open_blob_store

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_UPSTREAM",
    "MAX_CONCURRENCY",
    "Settings",
    "SettingsError",
    "analyst_db",
    "client_config",
    "config_hash",
    "default_config_text",
]

DEFAULT_UPSTREAM = "https://pypi.org"
DEFAULT_DB = "data/pypi.duckdb"
#: as bandersnatch's ``workers``
MAX_CONCURRENCY = 10
#: seconds a run waits for another process's lock on the working database
DEFAULT_LOCK_TIMEOUT = 900.0


class SettingsError(ConfigurationError):
    """A flag or environment variable that cannot be used; the message names it."""


def default_config_text() -> str:
    return resources.files("pypi_assets").joinpath("default.conf").read_text(encoding="utf-8")


def analyst_db(environ: Mapping[str, str] | None = None) -> Path:
    """The database an analyst means: ``PYPI_ASSETS_DB`` (default ``data/pypi.duckdb``), a
    relative path taken from the directory the user started in (``$PWD``), as in a shell.

    Jupyter starts each kernel in the notebook's own folder but passes the environment on
    unchanged, so ``PYPI_ASSETS_DB=data/demo.duckdb jupyter lab notebooks/`` from the
    repository root opens ``./data/demo.duckdb``, not ``notebooks/data/demo.duckdb``. Without a
    usable ``$PWD`` (not absolute, not a directory) the current directory is used."""
    env = os.environ if environ is None else environ
    db = Path(env.get("PYPI_ASSETS_DB") or DEFAULT_DB).expanduser()
    if db.is_absolute():
        return db
    pwd = env.get("PWD") or ""
    base = Path(pwd) if os.path.isabs(pwd) and os.path.isdir(pwd) else Path.cwd()
    return base / db


@dataclass(frozen=True)
class Settings:
    """Where to mirror from and to. ``upstream=None`` means: the config's ``master``."""

    upstream: str | None = None
    config_path: str | None = None
    db: Path = field(default_factory=lambda: Path(DEFAULT_DB))
    blobs: str | None = None
    web: Path | None = None  # where the simple index is written (PYPI_ASSETS_WEB)
    concurrency: int | None = None
    backoff: float | None = None  # retry backoff base in seconds (PYPI_ASSETS_BACKOFF)
    #: seconds to wait for another process's lock on ``db`` (PYPI_ASSETS_LOCK_TIMEOUT)
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    def __post_init__(self) -> None:
        if self.upstream is not None:
            problem = upstream_url_problem(self.upstream)
            if problem is not None:
                raise SettingsError(f"upstream: {problem}: {self.upstream[:100]!r}")
        if self.blobs is not None:
            _check_blobs(self.blobs, "blobs")
        if self.concurrency is not None and not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise SettingsError(
                f"concurrency: must be between 1 and {MAX_CONCURRENCY}, got {self.concurrency}"
            )
        if not self.lock_timeout >= 0:
            raise SettingsError(f"lock timeout: must be 0 or more seconds, got {self.lock_timeout}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "upstream": env.get("PYPI_ASSETS_UPSTREAM") or None,
            "config_path": env.get("PYPI_ASSETS_CONFIG") or None,
            "db": Path(env.get("PYPI_ASSETS_DB") or DEFAULT_DB),
            "blobs": env.get("PYPI_ASSETS_BLOBS") or None,
            "web": Path(env["PYPI_ASSETS_WEB"]) if env.get("PYPI_ASSETS_WEB") else None,
            "concurrency": _number(env, "PYPI_ASSETS_CONCURRENCY", int),
        }
        lock_timeout = _number(env, "PYPI_ASSETS_LOCK_TIMEOUT", float)
        if lock_timeout is not None:
            values["lock_timeout"] = lock_timeout
        for k, v in overrides.items():
            if v is not None:
                values[k] = Path(str(v)) if k in ("db", "web") else v
        return cls(**values)  # type: ignore[arg-type]

    def load_config(self) -> MirrorConfig:
        if self.config_path:
            return load(self.config_path)
        return loads(default_config_text(), source="<embedded default.conf>")

    def upstream_for(self, config: MirrorConfig) -> str:
        url = self.upstream or config.get("mirror", "master") or DEFAULT_UPSTREAM
        problem = upstream_url_problem(url)
        if problem is not None:  # the config's master is checked when it is loaded, too
            raise SettingsError(f"[mirror] master: {problem}: {url[:100]!r}")
        return url.rstrip("/")

    def concurrency_for(self, config: MirrorConfig) -> int:
        return config.workers if self.concurrency is None else self.concurrency

    def check_paths(self, config: MirrorConfig) -> None:
        """Fail before any work when a local path cannot be what it is meant to be: the
        database must not be a directory, a local blob store must not be a file."""
        if self.db.is_dir():
            raise IsADirectoryError(errno.EISDIR, "the database is a directory", str(self.db))
        spec = self.blobs_spec(config)
        if spec is not None and not spec.startswith("s3://"):
            blobs = Path(spec)
            if blobs.exists() and not blobs.is_dir():
                raise NotADirectoryError(
                    errno.ENOTDIR, "the blob store is not a directory", str(blobs)
                )

    def blobs_spec(self, config: MirrorConfig) -> str | None:
        """Where files go, or ``None`` for metadata only: ``--blobs``/``PYPI_ASSETS_BLOBS``,
        else the bandersnatch config's ``release-files`` with ``directory`` (its ``web/``,
        bandersnatch's layout) or, with ``storage-backend = s3``, the ``[s3]`` bucket."""
        if self.blobs:
            return self.blobs
        if not config.release_files or not config.directory:
            return None
        if (config.get("mirror", "storage-backend") or "filesystem").strip() == "s3":
            root = (config.get("s3", "bucket") or config.directory).strip()
            spec = root if root.startswith("s3://") else f"s3://{root.strip('/')}"
            _check_blobs(spec, "[s3] bucket")
            return spec
        return str(Path(config.directory) / "web")

    def blob_store(self, config: MirrorConfig) -> BlobStore | None:
        spec = self.blobs_spec(config)
        if spec is None:
            return None
        return open_blob_store(spec, s3=config.sections.get("s3"), staging=self.staging_dir())

    def staging_dir(self) -> Path:
        return self.db.parent / "staging"

    def web_root(self, config: MirrorConfig) -> Path | None:
        """Where the simple index is written: ``--web``, else the local blob directory (so one
        directory serves everything), else ``web/`` beside the database."""
        spec = self.blobs_spec(config)
        if spec is None:
            return None
        if self.web is not None:
            return self.web
        if not spec.startswith("s3://"):
            return Path(spec)
        return self.db.parent / "web"


#: S3 bucket names (legacy ones included): letters, digits, dots, hyphens, underscores
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def _check_blobs(spec: str, what: str) -> None:
    """An ``s3://bucket[/prefix]`` blob store needs a valid bucket name and a prefix without
    ``.``/``..`` segments, whitespace, query or fragment; a local directory is checked later."""
    if not spec.startswith("s3://"):
        return
    rest = spec[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise SettingsError(f"{what}: no valid S3 bucket name in {spec[:100]!r}")
    segments = prefix.split("/")
    if (
        any(s in (".", "..") for s in segments)
        or any(c in prefix for c in "?#\\")
        or any(c <= " " or c == "\x7f" for c in prefix)
    ):
        raise SettingsError(f"{what}: not a usable S3 prefix in {spec[:100]!r}")


def _number(env: Mapping[str, str], name: str, kind: type[int] | type[float]) -> int | float | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}: not a number") from None


def config_hash(config: MirrorConfig) -> str:
    return hashlib.sha256(
        json.dumps(config.to_dict()["sections"], sort_keys=True).encode()
    ).hexdigest()[:16]


def client_config(settings: Settings, config: MirrorConfig, **overrides: Any) -> ClientConfig:
    values: dict[str, Any] = {
        "upstream": settings.upstream_for(config),
        "concurrency": settings.concurrency_for(config),
        "read_timeout": config.timeout,
        "connect_timeout": min(config.timeout, 30.0),
        # bandersnatch's global-timeout is aiohttp's ClientTimeout(total=...): each request's
        # overall deadline, retries included, so no request (a body that trickles, one that
        # never ends) holds the run longer. The run itself is bounded only if asked.
        "total_timeout": config.global_timeout,
        "run_timeout": config.run_timeout,
        "max_body": config.max_body_size,
        "max_versions": config.max_versions_per_project,
        "max_files_per_release": config.max_files_per_release,
        "max_pkg_info_scan": config.max_pkg_info_scan,
        "xmlrpc_budget": config.xmlrpc_calls_per_hour,
        "max_retry_after": config.max_rate_wait,
    }
    if settings.backoff is not None:
        values["backoff"] = settings.backoff
        values["stale_delays"] = (settings.backoff, 2 * settings.backoff)
    values.update(overrides)
    return ClientConfig(**values)
