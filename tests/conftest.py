from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream

from .helpers import loopback_only
from .pg_cluster import Cluster, pg_bindir, postgres_cluster

# Re-exported only until test_defs.py and test_webserver.py import it from helpers.py.

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def connect(self: socket.socket, address: Any) -> None:
        loopback_only(address)
        _connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        loopback_only(address)
        return _connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(autouse=True)
def _lake_self_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every publication in the tests compares the whole lake with the working database
    afterwards: a change that no project was marked dirty for fails the test that made it."""
    monkeypatch.setenv("PYPI_ASSETS_LAKE_CHECK", "1")


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeIndex.generate(24)) as up:
        yield up


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPI_ASSETS_")}
    env["PYPI_ASSETS_BACKOFF"] = "0.01"
    env["PYPI_ASSETS_LAKE_CHECK"] = "1"
    env["HOME"] = str(tmp_path)
    return env


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the whole session (tests/pg_cluster.py),
    stopped and removed at the end. Skipped without PostgreSQL's binaries, unless
    PYPI_ASSETS_REQUIRE_POSTGRES=1 (CI) makes that a failure."""
    bindir = pg_bindir()
    if bindir is None:
        msg = (
            "no PostgreSQL binaries (initdb, pg_ctl): install postgresql or set PYPI_ASSETS_PG_BIN"
        )
        if os.environ.get("PYPI_ASSETS_REQUIRE_POSTGRES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    with postgres_cluster(bindir) as cluster:
        yield cluster
