"""Serial windows: fixed-width buckets of PyPI's serial number, the partitions of the graph.

A key names its own bounds, zero-padded, so lexical order is numeric order and a key keeps
its meaning even if the configured width changes later: ``000040000000-000040099999``.
"""

from __future__ import annotations

import os

__all__ = [
    "DEFAULT_WIDTH",
    "DEFAULT_WINDOWS_PER_RUN",
    "bounds",
    "key_for",
    "keys_between",
    "keys_upto",
    "width_from_env",
    "windows_per_run_from_env",
]

DEFAULT_WIDTH = 100_000  # PyPI's ~4e7 serials -> ~400 windows
_PAD = 12
#: How many windows one backfill run covers: ~400 windows -> ~40 run launches, not ~400.
DEFAULT_WINDOWS_PER_RUN = 10
_MAX_WINDOWS_PER_RUN = 1000


def width_from_env() -> int:
    width = int(os.environ.get("PYPI_ASSETS_WINDOW_WIDTH") or DEFAULT_WIDTH)
    if width < 1:
        raise ValueError("PYPI_ASSETS_WINDOW_WIDTH must be positive")
    return width


def windows_per_run_from_env() -> int:
    """``PYPI_ASSETS_WINDOWS_PER_RUN``: the most serial windows one backfill run covers."""
    raw = (os.environ.get("PYPI_ASSETS_WINDOWS_PER_RUN") or "").strip()
    if not raw:
        return DEFAULT_WINDOWS_PER_RUN
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_WINDOWS_PER_RUN:
        raise ValueError(
            f"PYPI_ASSETS_WINDOWS_PER_RUN must be a whole number from 1 to {_MAX_WINDOWS_PER_RUN}"
        )
    return int(raw)


def key_for(serial: int, width: int) -> str:
    start = (serial // width) * width
    return f"{start:0{_PAD}d}-{start + width - 1:0{_PAD}d}"


def bounds(key: str) -> tuple[int, int]:
    """``(first, last)`` serial of a window, inclusive."""
    first, _, last = key.partition("-")
    if not (first.isdigit() and last.isdigit()) or int(first) > int(last):
        raise ValueError(f"not a serial-window key: {key!r}")
    return int(first), int(last)


def keys_upto(serial: int, width: int) -> list[str]:
    """Every window from serial 0 to the one holding ``serial``, oldest first."""
    return [key_for(s, width) for s in range(0, serial + 1, width)]


def keys_between(after: int, upto: int, width: int) -> list[str]:
    """The windows that contain any serial in ``(after, upto]``, oldest first."""
    if upto <= after:
        return []
    first = ((after + 1) // width) * width
    return [key_for(s, width) for s in range(first, upto + 1, width)]
