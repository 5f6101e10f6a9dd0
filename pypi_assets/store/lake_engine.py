"""Where the analysts' lake lives, and how a DuckDB connection reaches it.

The lake is a DuckLake: a catalog (a SQLite file by default, so several local processes read
it while one writes; a DuckDB file for one process; PostgreSQL for several hosts) over Parquet
data files. The DuckLake, SQLite and PostgreSQL extensions come from the PyPI packages
``duckdb-extension-*`` (signed binaries: DuckDB checks each signature on ``LOAD``). Without
them, DuckDB's own ``INSTALL`` is tried (it needs internet).
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import os
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from ..pypi.errors import ConfigurationError
from .duckdb_store import says_storage_failed

__all__ = [
    "LakeLocation",
    "LakeUnavailable",
    "attach_lake",
    "lake_dir",
    "load_lake_extensions",
    "sql_literal",
]

#: catalog kind -> the DuckDB extension that reads it, by its entry-point name
_CATALOG_EXTENSIONS = {"sqlite": "sqlite_scanner", "postgres": "postgres_scanner", "duckdb": None}
#: an extension's entry-point name -> the PyPI package that ships it, and its file there
_PACKAGED = {
    "ducklake": ("duckdb_extension_ducklake", "ducklake"),
    "sqlite_scanner": ("duckdb_extension_sqlite", "sqlite"),
    "postgres_scanner": ("duckdb_extension_postgres", "postgres"),
}


class LakeUnavailable(ConfigurationError):
    """The lake's extensions cannot be loaded, or its location is not usable."""


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def lake_dir(db_path: str | Path) -> Path:
    """The folder beside the working database that holds its lake by default."""
    p = Path(db_path)
    return p.with_name(p.stem + ".lake")


@dataclass(frozen=True)
class LakeLocation:
    """A lake: its catalog (``sqlite:PATH``, ``duckdb:PATH`` or ``postgres:DSN``) and the
    folder its data files go to."""

    catalog: str
    data_path: str

    @classmethod
    def beside(cls, db_path: str | Path) -> LakeLocation:
        d = lake_dir(db_path).absolute()
        return cls(f"sqlite:{d / 'catalog.sqlite'}", str(d / "data") + os.sep)

    @classmethod
    def parse(cls, catalog: str, data_path: str | None, db_path: str | Path) -> LakeLocation:
        """A location from the operator's settings: ``catalog`` is ``sqlite``, ``duckdb``
        (beside the database) or ``KIND:TARGET``; ``data_path`` defaults to the folder beside
        the database. An unknown kind is a configuration error, never a guess."""
        default = cls.beside(db_path)
        kind, _, target = catalog.partition(":")
        if kind not in _CATALOG_EXTENSIONS:
            raise LakeUnavailable(
                f"lake catalog {catalog!r}: expected sqlite, duckdb or postgres:<dsn>"
            )
        if not target:
            if kind == "postgres":
                raise LakeUnavailable("lake catalog postgres: needs a DSN (postgres:dbname=...)")
            target = str(lake_dir(db_path).absolute() / f"catalog.{kind}")
        data = data_path or default.data_path
        if "://" in data:
            raise LakeUnavailable(f"lake data path {data!r}: only a local folder is supported")
        return cls(f"{kind}:{target}", data.rstrip(os.sep) + os.sep)

    @property
    def kind(self) -> str:
        return self.catalog.partition(":")[0]

    def local_catalog(self) -> Path | None:
        """The catalog file, for a file-based catalog."""
        kind, _, target = self.catalog.partition(":")
        return None if kind == "postgres" else Path(target)

    def exists(self) -> bool:
        """Whether a catalog was ever created here (PostgreSQL: assumed)."""
        path = self.local_catalog()
        return path is None or path.exists()


def _extension_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pypi-assets" / "duckdb-extensions" / duckdb.__version__


def _packaged_binary(name: str) -> Path | None:
    """The signed binary of extension ``name`` from its PyPI package, under the file name
    DuckDB expects (its entry point is named after the file)."""
    package, stem = _PACKAGED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    src = root / "extensions" / f"v{duckdb.__version__}" / f"{stem}.duckdb_extension"
    if not src.is_file():
        return None
    if stem == name:
        return src
    return _renamed_copy(src, name)


def _renamed_copy(src: Path, name: str) -> Path:
    """A copy of ``src`` named ``name.duckdb_extension`` in the user's cache, made once and
    checked by content (a copy, not a link: DuckDB verifies the bytes it loads)."""
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    for folder in (
        _extension_cache(),
        Path(tempfile.gettempdir()) / f"pypi-assets-ext-{os.getuid()}",
    ):
        dst = folder / digest / f"{name}.duckdb_extension"
        if dst.is_file() and dst.stat().st_size == src.stat().st_size:
            return dst
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            return dst
        except OSError:
            continue
    raise LakeUnavailable(f"cannot place the {name} extension in a cache folder")


def _load(con: duckdb.DuckDBPyConnection, name: str) -> None:
    loaded = con.execute(
        "SELECT loaded FROM duckdb_extensions() WHERE extension_name = ?", [name]
    ).fetchone()
    if loaded is not None and loaded[0]:
        return
    binary = _packaged_binary(name)
    try:
        if binary is not None:
            con.execute(f"LOAD {sql_literal(str(binary))}")
        else:
            con.execute(f"INSTALL {name}")
            con.execute(f"LOAD {name}")
    except duckdb.Error as exc:
        package = _PACKAGED[name][0].replace("_", "-")
        raise LakeUnavailable(
            f"the DuckDB extension {name} cannot be loaded ({str(exc).splitlines()[0]}); "
            f"install {package}=={duckdb.__version__}"
        ) from exc


def load_lake_extensions(con: duckdb.DuckDBPyConnection, location: LakeLocation) -> None:
    """Load DuckLake and the extension its catalog needs into ``con``."""
    _load(con, "ducklake")
    catalog_ext = _CATALOG_EXTENSIONS[location.kind]
    if catalog_ext is not None:
        _load(con, catalog_ext)


def _write_ahead_log(path: Path) -> None:
    """Create a SQLite catalog in WAL mode (a persistent setting of the file), so that
    readers in other processes never block the writer's commit, nor it them. Only while
    the file is new: Python's SQLite is another copy of the library than DuckDB's, and two
    copies holding one file in one process undo each other's POSIX locks."""
    try:
        con = sqlite3.connect(path, timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.Error as exc:
        if says_storage_failed(str(exc)):  # a storage failure (exit 4), not a configuration one
            raise OSError(errno.ENOSPC, f"No space left on device: {path}") from exc
        raise LakeUnavailable(f"lake catalog {path}: {exc}") from exc


_ALIAS = re.compile(r"[a-z_][a-z0-9_]*")


def attach_lake(
    con: duckdb.DuckDBPyConnection,
    location: LakeLocation,
    alias: str,
    *,
    read_only: bool = False,
    version: int | None = None,
    at_time: datetime | None = None,
) -> None:
    """Attach the lake to ``con`` as ``alias``: writable (creating it if need be), or read-only,
    optionally as of one snapshot ``version`` or the snapshot current at ``at_time``."""
    if not _ALIAS.fullmatch(alias):
        raise ValueError(f"bad alias {alias!r}")
    load_lake_extensions(con, location)
    if read_only and not location.exists():
        raise FileNotFoundError(f"no lake at {location.catalog}")
    options = [f"DATA_PATH {sql_literal(location.data_path)}"]
    if read_only:
        options.append("READ_ONLY")
    if version is not None:
        options.append(f"SNAPSHOT_VERSION {int(version)}")
    if at_time is not None:
        options.append(f"SNAPSHOT_TIME {sql_literal(at_time.isoformat())}")
    path = location.local_catalog()
    if path is not None and not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
        Path(location.data_path).mkdir(parents=True, exist_ok=True)
        if location.kind == "sqlite" and not path.exists():
            _write_ahead_log(path)
    con.execute(
        f"ATTACH {sql_literal('ducklake:' + location.catalog)} AS {alias} ({', '.join(options)})"
    )
