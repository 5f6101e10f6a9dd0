"""How the fake upstream behaves: Warehouse of 2026 (a cached root that lags, rate-limited
XML-RPC, JSON API redirects to the display name) and the ways proxies fall short of it.
The defaults are today's Warehouse: the ``/simple/`` root is the CDN's copy (taken at its
first request, kept a day, or until :meth:`FakeUpstream.purge_root`); project pages, the JSON
API and XML-RPC are live. The switches for falling short are off by default."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["PROFILES", "RateLimit", "RootSnapshot", "Switches"]

_PEP658 = ("advertised", "unadvertised", "absent")


@dataclass
class Switches:
    """The fake's behaviour. Set them with :meth:`FakeUpstream.configure`."""

    #: the ``/simple/`` root (both forms, and its serial) is a frozen copy, as behind the CDN:
    #: taken at the root's first request (or when this is set to ``True``), lagging after it;
    #: ``False``: a live root (an idealised upstream)
    cached_root: bool = True
    #: with ``cached_root``, the copy refreshes by itself after this many seconds (about a
    #: day on pypi.org); ``None``: only :meth:`FakeUpstream.purge_root` refreshes it
    root_max_age: float | None = 86_400.0
    #: XML-RPC calls allowed per window: ``(calls, seconds)``; ``None``: unlimited
    xmlrpc_limit: tuple[int, float] | None = None
    #: over the limit, answer an XML-RPC fault inside a 200 instead of HTTP 429
    xmlrpc_limit_fault: bool = False
    #: requests allowed per window on the JSON API and the simple pages (root included):
    #: ``(calls, seconds)``, then HTTP 429 until the window resets; ``None``: unlimited
    api_limit: tuple[int, float] | None = None
    #: the ``api_limit`` 429 says its wait in ``Retry-After``; off: only in the body, as
    #: Warehouse's "Limit may reset in N seconds"
    api_limit_retry_after: bool = True
    #: rows per ``changelog_since_serial`` reply (Warehouse: 50,000)
    changelog_cap: int = 50_000
    #: the JSON API redirects every name but the display name to it, as Warehouse does
    #: (``/pypi/flask/json`` -> ``/pypi/Flask/json``); off: only non-normalised names, to
    #: the normalised one (an idealised upstream)
    json_redirects: bool = True
    # ---- falling short, as proxies do (all off by default)
    #: the project JSON has its deprecated ``releases`` key
    releases_key: bool = True
    #: ``/pypi/<name>/<version>/json`` answers 404
    version_json_404: bool = False
    #: PEP 658: ``advertised``; ``unadvertised`` (the ``.metadata`` files exist, pages do
    #: not say so); ``absent`` (neither)
    pep658: str = "advertised"
    #: ``X-PyPI-Last-Serial`` headers, ``_last-serial`` in simple JSON, ``<!--SERIAL n-->``
    serial_headers: bool = True
    #: XML-RPC at ``/pypi``; off: 405
    xmlrpc: bool = True
    #: the root ignores the JSON ``Accept`` and answers HTML
    html_only_root: bool = False

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown fake upstream switch {key!r}")
            if key in ("xmlrpc_limit", "api_limit") and value is not None:
                calls, seconds = value
                value = (int(calls), float(seconds))
            setattr(self, key, value)
        if self.pep658 not in _PEP658:
            raise ValueError(f"pep658 must be one of {_PEP658}, not {self.pep658!r}")


#: Presets. ``proxy``: the route to pypi.org on our machines (REFERENCE.md): an HTML-only
#: root, no serial headers, no XML-RPC (405), version JSON answering 404, and PEP 658 files
#: that exist but are not advertised.
PROFILES: dict[str, dict[str, Any]] = {
    "warehouse": {},
    "proxy": {
        "html_only_root": True,
        "serial_headers": False,
        "xmlrpc": False,
        "version_json_404": True,
        "pep658": "unadvertised",
    },
}


@dataclass
class RootSnapshot:
    """The root listing as the CDN holds it: the global serial and ``(name, serial)`` pairs."""

    serial: int
    projects: list[tuple[str, int]] | None  # None: the live listing
    taken: float


@dataclass
class RateLimit:
    """A fixed window of ``calls`` per ``seconds``, starting at the first call in it."""

    calls: int
    seconds: float
    start: float = -math.inf
    used: int = 0

    def take(self, now: float) -> int | None:
        """``None`` when a call is allowed (and counted); else the seconds until reset."""
        if now - self.start >= self.seconds:
            self.start, self.used = now, 0
        if self.used < self.calls:
            self.used += 1
            return None
        return max(1, math.ceil(self.start + self.seconds - now))
