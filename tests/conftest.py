from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.filters import MirrorConfig, loads
from pypi_assets.pipeline import SyncReport, run_sync
from pypi_assets.settings import Settings

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _loopback_only(address: object) -> None:
    """Tests may talk to the fake upstream, moto, the webserver and nginx on loopback, and
    to nothing else: a real index must never be reachable from a test."""
    if isinstance(address, (str, bytes)):
        return  # a Unix socket
    host = str(address[0]) if isinstance(address, tuple) else ""  # type: ignore[index]
    try:
        ok = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def connect(self: socket.socket, address: Any) -> None:
        _loopback_only(address)
        _connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _loopback_only(address)
        return _connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


#: Retries fast enough for tests; the semantics (counts, Retry-After) are unchanged.
FAST = {"backoff": 0.01, "stale_delays": (0.01, 0.02), "read_timeout": 2.0, "connect_timeout": 2.0}


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


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeIndex.generate(24)) as up:
        yield up


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPI_ASSETS_")}
    env["PYPI_ASSETS_BACKOFF"] = "0.01"
    env["HOME"] = str(tmp_path)
    return env


PYTHON = sys.executable
