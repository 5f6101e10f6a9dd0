"""Issue 10, defect 8: what one project's bodies cost in memory.

A release whose description is 5 MB (in the project JSON, the version JSON and the wheel's
METADATA) is fetched in a fresh interpreter, against the fake upstream served by this
process (so the server's own copies are not counted), with ``tracemalloc`` traced from
just before ``fetch_project`` (after a small project has been fetched, so imports and the
connection are not counted). The peak of traced memory is deterministic: no timing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pypi_assets.fake import FakeUpstream

from .helpers import run_big_description_child

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import asyncio, json, sys, tracemalloc
from pypi_assets.pypi import ClientConfig, PyPIClient
from pypi_assets.pypi.fetch import fetch_project

async def main():
    async with PyPIClient(ClientConfig(upstream=sys.argv[1])) as c:
        await fetch_project(c, sys.argv[2], None, None)  # imports, connection
        tracemalloc.start()
        p = await fetch_project(c, "big-description", None, None)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # the big description's copies (the sdist's own PKG-INFO has a short one of its own)
        descs = {id(d.description) for d in p.distributions if len(d.description) > 1000}
        descs |= {id(p.info["description"])}
        descs |= {id(r.info["description"]) for r in p.releases}
        print(json.dumps({"peak": peak, "copies": len(descs), "len": len(p.info["description"]),
                          "sources": sorted(d.metadata_source for d in p.distributions)}))

asyncio.run(main())
"""


def test_big_description_peaks_at_twice_the_largest_body() -> None:
    got, text, largest = run_big_description_child(CHILD)
    assert got["len"] == len(text)
    assert got["sources"] == ["core-metadata", "pkg-info"]  # issue 11: the sdist's own
    assert got["copies"] == 1  # the result holds one copy of the description
    # Parsing one JSON body needs its text and what it parses to (or its bytes and its
    # text) at once: twice the body. Anything else held (another body, a second copy of
    # the description) would show here; the base commit peaked at over 4x.
    assert got["peak"] <= 2 * largest + 1024 * 1024, (got["peak"], largest)


def test_draining_decode_equals_a_whole_decode() -> None:
    """A large body decoded piece by piece (emptied as it goes) gives the text a whole
    decode gives: characters across a piece boundary, invalid bytes (as U+FFFD, flagged)."""
    from pypi_assets.pypi.metadata import decode_core_metadata, decode_draining

    step = 1024 * 1024
    unit = "caf\u00e9 \u20ac \U0001f40d ".encode()
    good = (unit * (3 * step // len(unit) + 7))[: 3 * step + 5]
    good = good[: len(good) - len(good) % len(unit)]  # whole characters only
    # Multi-byte characters straddle every 1 MiB cut; stray bytes sit at and near the cuts.
    bad = bytearray(good)
    for pos in (len(bad) - step, len(bad) - step - 1, len(bad) - 2 * step + 1, 10):
        bad[pos] = 0xFF
    for data in (good, bytes(bad)):
        whole = data.decode("utf-8", "replace")
        assert decode_draining(bytearray(data), "utf-8", "replace") == whole
        buf = bytearray(data)
        assert decode_core_metadata(buf) == (whole, data is not good)
        assert not buf  # emptied as it was decoded
    assert decode_draining(bytearray(good), "utf-8", "surrogatepass") == good.decode()
    with pytest.raises(UnicodeDecodeError):
        decode_draining(bytearray(bad), "utf-8", "strict")


def test_a_batch_with_much_text_is_written_early(
    fake: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fetched projects wait in a batch (64) before one write; a batch whose descriptions
    pass ``BATCH_TEXT`` characters is written at once (here at every project: the threshold
    is one character), so large READMEs are not held 64 at a time."""
    from pypi_assets.store.duckdb_store import MetadataStore
    from pypi_assets.sync import metadata

    from .helpers import sync

    chunks: list[int] = []
    write = MetadataStore.write_projects

    def counting(self: MetadataStore, projects: Any) -> Any:
        chunks.append(len(projects))
        return write(self, projects)

    monkeypatch.setattr(MetadataStore, "write_projects", counting)
    monkeypatch.setattr(metadata, "BATCH_TEXT", 1)
    report = sync(fake, tmp_path / "m.duckdb")
    assert report.ok
    # Each worker flushes after its project; projects other workers fetched while a write
    # ran join the next one, so a write holds at most one project per worker (3 x 4 here),
    # where a batch would have waited for 64.
    assert len(chunks) > 1 and max(chunks) <= 12, chunks
    assert sum(chunks) == len(fake.state.index.projects)
