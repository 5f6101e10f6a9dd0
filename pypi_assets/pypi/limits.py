"""The protocol boundary's errors and range checks.

Everything an upstream sends is checked here before it can reach the store: JSON is parsed
without letting ``RecursionError`` or ``MemoryError`` escape, nesting depth is bounded,
integers fit a DuckDB ``BIGINT``, floats are finite and strings are valid Unicode (no lone
surrogates, which no UTF-8 column can hold). A value that fails raises
:class:`InvalidResponse`, an :class:`UpstreamError`, so the caller's per-project handling
names the project and carries on.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import DeadlineExceeded, InvalidResponse, LimitExceeded, UpstreamError

__all__ = [
    "INT64_MAX",
    "MAX_JSON_DEPTH",
    "DeadlineExceeded",
    "InvalidResponse",
    "LimitExceeded",
    "UpstreamError",
    "check_json_tree",
    "check_serial",
    "loads_json",
]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Warehouse's deepest documents (project JSON ``releases[v][i].digests``) nest 4 deep.
MAX_JSON_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def loads_json(body: bytes | bytearray | str, what: str, **kwargs: Any) -> Any:
    """``json.loads`` that raises :class:`InvalidResponse` naming ``what`` for anything it
    cannot parse, including nesting deep enough to exhaust the stack and bodies too large
    for memory; ``NaN`` and ``Infinity`` are refused (no column can hold them)."""
    try:
        return json.loads(body, parse_constant=_reject_constant, **kwargs)
    except (ValueError, RecursionError, MemoryError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        if isinstance(exc, MemoryError):
            reason = "too large to parse"
        raise InvalidResponse(f"{what}: invalid JSON ({reason})") from None


def _path(parts: list[Any]) -> str:
    text = "".join(f"[{p if isinstance(p, int) else str(p)[:100]!r}]" for p in reversed(parts)) or (
        "(top level)"
    )
    return text if len(text) <= 300 else text[:300] + "..."


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.parts: list[Any] = []


def _leaf(value: Any) -> bool:
    """Check a scalar; ``False`` for a container (to be walked)."""
    t = type(value)
    if t is str:
        if not value.isascii() and _SURROGATE.search(value):
            raise _Bad("string is not valid Unicode (lone surrogate)")
    elif t is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise _Bad(f"integer out of range ({str(value)[:40]})")
    elif value is None or t is bool:
        pass
    elif t is float:
        if not math.isfinite(value):
            raise _Bad("number out of range")
    elif t is dict or t is list or t is tuple:
        return False
    else:  # pragma: no cover - json never produces anything else
        raise _Bad(f"unexpected {t.__name__}")
    return True


def _walk(value: Any, depth: int) -> None:
    # Leaves are checked inline (most values are), containers recursively.
    if _leaf(value):
        return
    if depth >= MAX_JSON_DEPTH:
        raise _Bad(f"nested deeper than {MAX_JSON_DEPTH}")
    items = value.items() if type(value) is dict else enumerate(value)
    for k, v in items:
        try:
            if type(k) is str and not k.isascii() and _SURROGATE.search(k):
                raise _Bad("key is not valid Unicode (lone surrogate)")
            if not _leaf(v):
                _walk(v, depth + 1)
        except _Bad as bad:
            bad.parts.append(k)
            raise


def check_json_tree(data: Any, what: str) -> Any:
    """Check every value of a parsed document (see the module docstring); returns it."""
    try:
        _walk(data, 0)
    except _Bad as bad:
        raise InvalidResponse(f"{what}: {_path(bad.parts)}: {bad.reason}") from None
    return data


def as_serial(value: Any) -> int | None:
    """A serial as upstreams send it: an integer, or a string of digits (bandersnatch-made
    mirrors, and the route to pypi.org here, write ``"_last-serial": "42639290"``); ``None``
    for anything else or out of ``BIGINT`` range."""
    if isinstance(value, str) and 0 < len(value) <= 20 and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        return None
    return value


def check_serial(value: Any, what: str) -> int:
    """A serial: a non-negative integer that fits a ``BIGINT``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise InvalidResponse(f"{what}: serial out of range ({str(value)[:40]!r})")
    return value
