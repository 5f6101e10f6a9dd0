"""Issue 10, defect 8, the store's part: writing a project whose description is 5 MB.

The project is fetched in a fresh interpreter (against the fake upstream served by this
process), then ``store.write_projects([big])`` runs with the kernel's peak-RSS mark reset
just before it (``/proc/self/clear_refs``): the peak over the RSS before the write is what
the write step costs. The bound is twice the largest body the fetch read, for each further byte of body and for
the whole of a 20 MB one. No timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import run_big_description_child

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import asyncio, gc, json, sys
from pypi_assets.pypi import ClientConfig, PyPIClient
from pypi_assets.pypi.fetch import fetch_project
from pypi_assets.store.duckdb_store import MetadataStore

def kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

async def fetch():
    async with PyPIClient(ClientConfig(upstream=sys.argv[1])) as c:
        return (await fetch_project(c, sys.argv[2], None, None),
                await fetch_project(c, "big-description", None, None))

small, big = asyncio.run(fetch())
with MetadataStore(sys.argv[3]) as store:
    store.write_projects([small])  # the schema, the first statements, the allocator warm
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = kb("VmRSS:")
    store.write_projects([big])
    peak = kb("VmHWM:")
    stored = store.query("SELECT count(*) FROM distributions WHERE length(description) > 1000000")
print(json.dumps({"base": base, "peak": peak, "stored": stored[0][0]}))
"""


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _can_reset_peak(), reason="needs /proc/self/clear_refs (Linux)")
def test_writing_a_big_description_stays_within_twice_the_body(tmp_path: Path) -> None:
    """Two sizes, so that DuckDB's own cost of a transaction (a few MB whatever it writes,
    and as noisy) is told apart from what the body costs: each further byte of body costs
    at most 2 bytes of RSS, and the larger write stays within twice its body. Before the
    long texts were stored apart (``store/long_texts.py``) both were about 14x."""
    runs = []
    for size in (5, 20):
        got, text, largest = run_big_description_child(
            CHILD, str(tmp_path / f"m{size}.duckdb"), timeout=300, size=size * 1024 * 1024
        )
        assert got["stored"] >= 1, "the description is stored whole"
        runs.append((got["peak"] - got["base"], largest, len(text)))
    (small, small_body, _), (big, big_body, chars) = runs
    assert chars > 10_000_000
    slope = (big - small) / (big_body - small_body)
    print(f"slope {slope:.2f}, 20 MB: {big / big_body:.2f}x, 5 MB: {small / small_body:.2f}x")
    assert slope <= 2.0, f"each further byte of body cost {slope:.1f} bytes of RSS"
    assert big <= 2.0 * big_body, f"write_projects grew RSS by {big / big_body:.1f}x the body"
