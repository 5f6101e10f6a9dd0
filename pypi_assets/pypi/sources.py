"""Where each file's metadata came from, and what each source cost: the state a client keeps
for the run (:attr:`PyPIClient.own_metadata`). Pure values; no I/O."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OwnMetadataState", "SourceCosts"]


@dataclass
class SourceCosts:
    """Per source (``core-metadata``, ``unadvertised``, ``range``, ``pkg-info``, ``stored``):
    files read, requests made, bytes received and seconds spent (summed over files)."""

    files: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    failed: Counter[str] = field(default_factory=Counter)

    def add(self, source: str, requests: int, nbytes: int, seconds: float) -> None:
        self.files[source] += 1
        self.requests[source] += requests
        self.bytes[source] += nbytes
        self.seconds[source] = self.seconds.get(source, 0.0) + seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            s: {
                "files": n,
                "requests": self.requests[s],
                "bytes": self.bytes[s],
                "seconds": round(self.seconds.get(s, 0.0), 4),
                "failed": self.failed[s],
            }
            for s, n in sorted(self.files.items())
        }


@dataclass
class OwnMetadataState:
    """What a client learnt about its upstream's metadata sources during the run."""

    #: Whether the upstream serves ``<file>.metadata`` for wheels whose pages do not
    #: advertise it: ``None`` until one wheel has been tried (once per upstream), then the
    #: answer, relied on for the rest of the run (see :func:`.own_metadata._unadvertised`).
    unadvertised: bool | None = None
    #: wheels that answered 404 while ``unadvertised`` was still ``None``
    probe_misses: int = 0
    probe: asyncio.Lock = field(default_factory=asyncio.Lock)
    costs: SourceCosts = field(default_factory=SourceCosts)
    #: sdists whose PKG-INFO was compared with their version JSON, how many differed on at
    #: least one field, and per field how many differed on it
    compared: int = 0
    differing: int = 0
    differences: Counter[str] = field(default_factory=Counter)

    def comparison(self) -> dict[str, Any]:
        """The run's PKG-INFO-versus-version-JSON comparison, for its report."""
        return {
            "compared": self.compared,
            "differing": self.differing,
            "fields": dict(sorted(self.differences.items())),
        }
