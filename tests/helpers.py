"""Plain helpers shared by the test modules (fixtures live in conftest.py; test modules import
these from here, never from conftest.py or from one another)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.filters import MirrorConfig, loads
from pypi_assets.sync.reports import SyncReport
from pypi_assets.sync.run import run_sync
from pypi_assets.sync.settings import Settings

__all__ = ["FAST", "PYTHON", "dump", "loopback_only", "make_config", "sync", "table"]

#: The interpreter running the tests, for subprocesses.
PYTHON = sys.executable

#: docs/deploy.md, whose config blocks are validated and whose instance block is run
DEPLOY_DOC = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"


def deploy_instance_yaml() -> str:
    """The text of deploy.md's Postgres instance block, as an operator would copy it."""
    for body in re.findall(r"```yaml\n(.*?)```", DEPLOY_DOC.read_text(), re.S):
        if body.startswith("# validate: instance\n"):
            return str(body)
    raise AssertionError("deploy.md has no instance block")


#: Retries fast enough for tests; the semantics (counts, Retry-After) are unchanged.
FAST = {"backoff": 0.01, "stale_delays": (0.01, 0.02), "read_timeout": 2.0, "connect_timeout": 2.0}


def loopback_only(address: object) -> None:
    """Tests may talk to the fake upstream, moto, the webserver and nginx on loopback, and
    to nothing else: a real index must never be reachable from a test."""
    if isinstance(address, (str, bytes)):
        return  # a Unix socket
    host = str(address[0]) if isinstance(address, tuple) else ""
    try:
        ok = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")


def make_config(extra: str = "", workers: int = 3) -> MirrorConfig:
    return loads(
        f"[mirror]\ndirectory = /tmp/unused\nrelease-files = false\nmaster = http://127.0.0.1\nallow-non-https = true\nworkers = {workers}\n{extra}"
    )


def sync(
    up: FakeUpstream, db: Path, config: MirrorConfig | None = None, **overrides: Any
) -> SyncReport:
    settings = Settings(upstream=up.url, db=db)
    return asyncio.run(
        run_sync(settings, config or make_config(), client_overrides={**FAST, **overrides})
    )


def table(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Everything an analyst sees, minus bookkeeping timestamps."""
    return {
        "projects": table(
            db,
            "SELECT name, display_name, serial, state, latest_version, removed_serial FROM projects ORDER BY name",
        ),
        "releases": table(db, "SELECT * FROM releases ORDER BY project, version"),
        "distributions": table(db, "SELECT * FROM distributions ORDER BY project, filename"),
        "dependencies": table(db, "SELECT * FROM dependencies ORDER BY ALL"),
        "selected": table(db, "SELECT * FROM selected_files ORDER BY ALL"),
    }


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``pypi-assets ARGS`` as a subprocess of this interpreter, its output captured."""
    return subprocess.run(
        [PYTHON, "-m", "pypi_assets.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def big_description(idx: FakeIndex, size: int) -> tuple[str, int]:
    """The release, its description and its METADATA file's size."""
    idx.add_project("big-description")
    rel = idx.add_release("big-description", "1.0", wheels=1, core_metadata=True)
    unit = "Lorem ipsum dolor sit amet, caf\u00e9 na\u00efve \u00fcber. "
    text = (unit * (size // len(unit.encode()) + 1))[: size // 2]
    rel.info["description"] = text
    for f in rel.files:
        if f.filename.endswith(".whl"):
            f.metadata = f.metadata.split(b"\n\n", 1)[0] + b"\n\n" + text.encode()
    return text, max(len(f.metadata) for f in rel.files)


def run_big_description_child(
    child: str, *args: str, timeout: float = 120, size: int = 5 * 1024 * 1024
) -> tuple[dict[str, Any], str, int]:
    """Serve a fake upstream with a big description (:func:`big_description`, ``size``) and a small
    project, and run ``child`` (Python source) in a fresh interpreter with the upstream's
    URL, the small project's name and ``args``. Returns the child's last line of output
    (JSON), the description and the largest body a fetch of the project reads."""
    import json
    import urllib.request

    idx = FakeIndex.generate(2)
    text, largest = big_description(idx, size)
    small = sorted(n for n in idx.projects if n != "big-description")[0]
    with FakeUpstream(idx) as up:
        for path in ("/pypi/big-description/json", "/pypi/big-description/1.0/json"):
            with urllib.request.urlopen(up.url + path) as r:  # loopback only
                largest = max(largest, len(r.read()))
        out = subprocess.run(
            [sys.executable, "-c", child, up.url, small, *args],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout,
        )
    return json.loads(out.stdout.strip().splitlines()[-1]), text, largest


def json_api_path(norm: str, version: str | None = None, *, any_version: bool = False) -> str:
    """A fault path matching the JSON API of project ``norm`` under any spelling of its
    name: a sync asks by display name (``Foo_Bar``), as Warehouse redirects any other.
    With ``version`` (or ``any_version``), that release's JSON."""
    letters = "".join(
        "[-_.]+" if c == "-" else f"[{c}{c.upper()}]" if c.isalpha() else re.escape(c) for c in norm
    )
    tail = "/[^/]+" if any_version else f"/{re.escape(version)}" if version is not None else ""
    return rf"^/pypi/{letters}{tail}/json/?$"
