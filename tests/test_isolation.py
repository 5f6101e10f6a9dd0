"""Tests never reach a real index: every connection outside loopback is refused."""

from __future__ import annotations

import socket

import httpx
import pytest


def test_the_network_guard_refuses_real_hosts() -> None:
    with pytest.raises(httpx.ConnectError, match="only connect to loopback"):
        httpx.get("http://151.101.0.223/simple/", timeout=2)  # a pypi.org address
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("151.101.0.223", 443))


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
