"""Helpers for the fault-injection suite (tests/test_fault_suite.py): mirrors in temporary
directories, the CLI run as a subprocess (through tests/fault_runner.py), and a canonical
dump of a mirror's state -- its working database, its published snapshot and its blob store --
so that a mirror that went through a fault can be compared with a fault-free one with ``==``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
from packaging.utils import canonicalize_name

from pypi_assets.fake import FakeUpstream
from pypi_assets.store.snapshot import SnapshotNotFound, connect
from pypi_assets.store.snapshot import snapshot_serial as lake_serial

REPO = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).with_name("fault_runner.py")

#: Columns whose values legitimately differ between two runs that mirror the same upstream
#: state; every other column of every table is compared.
EXCLUDED_COLUMNS: dict[str, frozenset[str]] = {
    # wall-clock time of the write that stored the project's current state
    # and the time and serial at which the status poll last saw its status (a mirror that
    # polled before a fault and one that polled after saw the same status at other serials)
    "projects": frozenset({"updated_at", "status_checked_at", "status_serial"}),
    # wall-clock time at which this run stored (or found) the blob
    "blobs": frozenset({"stored_at"}),
    # the status poll's answers: when, and their ETags (a page's ETag changes with its
    # serial, so it depends on when it was polled; which pages were polled is compared)
    "upstream_etags": frozenset({"checked_at", "etag"}),
    # the feed's time: when the lake published the serial (history, below)
    "changes": frozenset({"time"}),
    "serial_times": frozenset({"time"}),
}

#: The lake's history (and the feed made of it) depends on the path a mirror took, not only
#: on where it ended: a mirror that saw upstream at S0 and again at S1 knows more than a
#: fresh one at S1, and one that saw a project dropped from a listing saw it come back. It is
#: compared with a twin that took the same path without the fault (:func:`history`), not
#: with a fresh reference.
HISTORY_TABLES = frozenset(
    {"file_history", "yank_history", "status_history", "project_history", "serial_times", "changes"}
)


#: ``meta`` keys that record how the mirror got where it is, not what was mirrored: which
#: upstream endpoint answered (a fault on the JSON root legitimately makes the XML-RPC
#: fallback answer: ``listing_source``), and when and at which serial the full listing was
#: last read (a run after a fault may read it earlier and catch up through the changelog,
#: which ``changelog_serial``, compared, records: ``listing_reconciled_at``,
#: ``upstream_serial``).
EXCLUDED_META = frozenset({"listing_source", "listing_reconciled_at", "upstream_serial"})

#: Directories of the blob store that are not content: ``.partial`` holds downloads in
#: progress (documented in pypi_assets/files.py; kept on purpose so an interrupted run
#: resumes with a Range request, and never served: nothing under it is a blob key).
BLOB_TEMP_DIRS = frozenset({".partial", ".pypi-assets"})  # the latter names databases

CONFIG = """\
[mirror]
directory = /tmp/unused
release-files = false
master = http://127.0.0.1
allow-non-https = true
workers = 3
timeout = {timeout}
global-timeout = {global_timeout}
{extra}
"""


def write_config(
    path: Path, extra: str = "", *, timeout: float = 5, global_timeout: float = 120
) -> Path:
    path.write_text(CONFIG.format(timeout=timeout, global_timeout=global_timeout, extra=extra))
    return path


@dataclass(frozen=True)
class Mirror:
    """One mirror: a working database (its snapshots beside it) and a blob directory."""

    root: Path
    blob_dir: Path | None = None  # default: ``root/blobs``
    db_name: str = "mirror.duckdb"  # the operator's choice of file name

    @property
    def db(self) -> Path:
        return self.root / self.db_name

    @property
    def blobs(self) -> Path:
        return self.blob_dir or self.root / "blobs"

    @property
    def home(self) -> Path:
        """The run's working directory and ``HOME``."""
        return self.root

    @classmethod
    def new(
        cls, parent: Path, name: str, blob_dir: Path | None = None, db_name: str = "mirror.duckdb"
    ) -> Mirror:
        m = cls(parent / name, blob_dir, db_name)
        m.root.mkdir(parents=True, exist_ok=True)
        return m


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int | None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (
            f"exit {self.rc} after {self.seconds:.1f}s\n--- stdout\n{self.stdout[-3000:]}"
            f"\n--- stderr\n{self.stderr[-3000:]}"
        )

    def error_lines(self) -> list[str]:
        """stderr lines that are not warnings (a quiet run prints nothing else there)."""
        return [
            line
            for line in self.stderr.splitlines()
            if line.strip() and not line.startswith(("warning:", "WARNING "))
        ]


def runner_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYPI_ASSETS_", "FAULT_"))}
    env.update(
        PYPI_ASSETS_BACKOFF="0.01",
        HOME=str(home),
        PYTHONPATH=str(REPO),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def cli(*args: str, home: Path, timeout: float = 90, env: dict[str, str] | None = None) -> Result:
    """``pypi-assets ARGS`` (through the runner) as a subprocess; a run that outlives
    ``timeout`` is killed and reported as exit -9 with a note."""
    # the peak RSS goes to a scratch directory on the ordinary /tmp: ``home`` may be full
    with tempfile.TemporaryDirectory(prefix="fault-run-") as scratch:
        rss = Path(scratch) / "peak-rss"
        full_env = runner_env(home, FAULT_RSS_FILE=str(rss), **(env or {}))
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, str(RUNNER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=home,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += f"\n[fault harness] killed: still running after {timeout:.0f}s"
        seconds = time.monotonic() - started
        raw = rss.read_text() if rss.exists() else ""
    return Result(proc.returncode, out, err, seconds, int(raw) if raw else None)


def sync(
    up: FakeUpstream,
    mirror: Mirror,
    config: Path,
    *,
    blobs: bool = True,
    kill: str | None = None,
    nth: int = 1,
    timeout: float = 90,
    extra: tuple[str, ...] = (),
) -> Result:
    args = ["sync", "--upstream", up.url, "--db", str(mirror.db), "--config", str(config), "-q"]
    if blobs:
        args += ["--blobs", str(mirror.blobs)]
    env = {"FAULT_KILL": kill, "FAULT_KILL_NTH": str(nth)} if kill else None
    return cli(*args, *extra, home=mirror.home, timeout=timeout, env=env)


# ---------------------------------------------------------------------- canonical state
Rows = list[tuple[Any, ...]]


def _canon(value: Any, places: tuple[tuple[str, str], ...] = ()) -> Any:
    """A comparable value; the mirror's own directories (which differ between the mirror
    and its reference, as in meta's record of the blob store) become placeholders."""
    if isinstance(value, list):
        return tuple(_canon(v, places) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canon(v, places)) for k, v in value.items()))
    if isinstance(value, str):
        for path, name in places:
            value = re.sub(re.escape(path) + r'(?=/|"|$)', name, value)
    return value


def dump_duckdb(path: Path, mirror: Mirror | None = None) -> dict[str, Rows]:
    """Every table and view of a DuckDB file: sorted rows of every column except
    :data:`EXCLUDED_COLUMNS`, keyed ``table(col, col, ...)`` so a column change shows.
    Paths of ``mirror``'s blob directory and root read as ``<blobs>`` and ``<root>``."""
    con = duckdb.connect(str(path), read_only=True)
    return dump_connection(con, mirror)


def dump_connection(
    con: duckdb.DuckDBPyConnection, mirror: Mirror | None = None, *, with_history: bool = False
) -> dict[str, Rows]:
    """As :func:`dump_duckdb`, of an open connection (closed afterwards); the lake's
    history tables only ``with_history``."""
    places = ((str(mirror.blobs), "<blobs>"), (str(mirror.root), "<root>")) if mirror else ()
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = 'main' UNION SELECT view_name FROM duckdb_views() "
                "WHERE database_name = current_database() AND schema_name = 'main' "
                "AND NOT internal ORDER BY 1"
            ).fetchall()
        ]
        out: dict[str, Rows] = {}
        for name in names:
            if name in HISTORY_TABLES and not with_history:
                continue
            cols = [
                r[0]
                for r in con.execute(f'DESCRIBE "{name}"').fetchall()
                if r[0] not in EXCLUDED_COLUMNS.get(name, frozenset())
            ]
            select = ", ".join(f'"{c}"' for c in cols)
            rows = [
                tuple(_canon(v, places) for v in r)
                for r in con.execute(f'SELECT {select} FROM "{name}"').fetchall()
                if not (name == "meta" and r[0] in EXCLUDED_META)
            ]
            out[f"{name}({', '.join(cols)})"] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


def dump_blobs(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under the blob directory (the simple index
    included: it is written there), except under :data:`BLOB_TEMP_DIRS`."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in BLOB_TEMP_DIRS]
        for fn in filenames:
            p = Path(dirpath) / fn
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return dict(sorted(out.items()))


def snapshot_serial(db: Path) -> int | None:
    """The serial of the lake's newest snapshot (``None``: none)."""
    return lake_serial(db)


def dump_snapshot(mirror: Mirror) -> dict[str, Rows] | None:
    """Every table and view of the newest lake snapshot, as analysts see it (its history
    aside: :func:`history`)."""
    try:
        con = connect(mirror.db)
    except SnapshotNotFound:
        return None
    return dump_connection(con, mirror)


def history(mirror: Mirror) -> dict[str, Rows]:
    """The lake's history tables and change feed (publication times aside)."""
    con = connect(mirror.db)
    dumped = dump_connection(con, mirror, with_history=True)
    return {k: v for k, v in dumped.items() if k.split("(")[0] in HISTORY_TABLES}


def state(mirror: Mirror, *, blobs: bool = True) -> dict[str, Any]:
    """The canonical state of a mirror: working database, newest lake snapshot (its serial
    and its content: tables, views and history), blob store."""
    out: dict[str, Any] = {
        "db": dump_duckdb(mirror.db, mirror) if mirror.db.exists() else None,
        "snapshot serial": snapshot_serial(mirror.db),
        "snapshot": dump_snapshot(mirror),
    }
    if blobs:
        out["blobs"] = dump_blobs(mirror.blobs)
    return out


def _diff_rows(label: str, got: Any, want: Any, lines: list[str], limit: int = 8) -> None:
    if got == want:
        return
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want)):
            if key not in got:
                lines.append(f"{label} / {key}: missing (reference has it)")
            elif key not in want:
                lines.append(f"{label} / {key}: unexpected (reference has none)")
            else:
                _diff_rows(f"{label} / {key}", got[key], want[key], lines, limit)
        return
    if isinstance(got, list) and isinstance(want, list):
        extra = [r for r in got if r not in want]
        lost = [r for r in want if r not in got]
        lines.append(f"{label}: {len(got)} rows, reference {len(want)}")
        for r in lost[:limit]:
            lines.append(f"  - {str(r)[:300]}")
        for r in extra[:limit]:
            lines.append(f"  + {str(r)[:300]}")
        if len(lost) > limit or len(extra) > limit:
            lines.append(f"  ... ({len(lost)} only in the reference, {len(extra)} only here)")
        return
    lines.append(f"{label}: {str(got)[:300]} (reference: {str(want)[:300]})")


def diff(got: dict[str, Any], want: dict[str, Any]) -> str:
    """A readable difference (``-`` only in the reference, ``+`` only here); '' if equal."""
    lines: list[str] = []
    _diff_rows("state", got, want, lines)
    return "\n".join(lines)


def assert_converged(mirror: Mirror, reference: dict[str, Any], *, blobs: bool = True) -> None:
    got = state(mirror, blobs=blobs)
    if got != reference:
        raise AssertionError(
            f"{mirror.root.name} differs from the fault-free reference:\n{diff(got, reference)}"
        )


def reference(
    up: FakeUpstream, parent: Path, config: Path, *, blobs: bool = True
) -> dict[str, Any]:
    """The state of a fault-free sync of ``up`` as it is now, into a fresh mirror."""
    m = Mirror.new(parent, f"reference-{time.monotonic_ns()}")
    r = sync(up, m, config, blobs=blobs)
    assert r.rc == 0, "the fault-free reference run failed:\n" + r.describe()
    return state(m, blobs=blobs)


# ---------------------------------------------------------------------- upstream helpers
def project_json(up: FakeUpstream, norm: str) -> dict[str, Any]:
    """The fake's real project JSON (to craft a hostile variant of it)."""
    data = httpx.get(f"{up.url}/pypi/{norm}/json", timeout=10, follow_redirects=True).json()
    assert isinstance(data, dict)
    return data


def projects_with_files(up: FakeUpstream) -> list[str]:
    return [n for n in sorted(up.index.projects) if up.index.latest(n) is not None]


def stored_status(db: Path) -> dict[str, tuple[str, int]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT name, state, serial FROM projects").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}
    finally:
        con.close()


def upstream_serials(up: FakeUpstream) -> dict[str, int]:
    return {canonicalize_name(p.name): p.serial for p in up.index.projects.values()}


def listing_json(up: FakeUpstream, keep: set[str]) -> bytes:
    """The fake's PEP 691 root listing with only the projects in ``keep``."""
    with up.index.lock:
        projects = [
            {"name": p.name, "_last-serial": p.serial}
            for n, p in up.index.projects.items()
            if n in keep
        ]
        serial = up.index.serial
    return json.dumps(
        {"meta": {"api-version": "1.4", "_last-serial": serial}, "projects": projects}
    ).encode()
