"""``python -m bench.fake_upstream``: the fake Warehouse with some sdists made large, so that
bytes, not only requests, count (the file benchmarks). Built on :mod:`pypi_assets.fake`; the
``pypi-assets fake-upstream`` command serves the plain fake."""

from __future__ import annotations

import argparse
import random

from pypi_assets.fake import FakeIndex, FakeUpstream


def with_large_sdists(index: FakeIndex, count: int, size: int, seed: int = 7) -> FakeIndex:
    """Give the sdists of the first ``count`` projects ``size`` random bytes each."""
    rng = random.Random(seed)
    for norm in list(index.projects)[:count]:
        sdist = next(
            f for r in index.releases(norm).values() for f in r.files if f.packagetype == "sdist"
        )
        index.set_content(norm, sdist.filename, rng.randbytes(size))
    return index


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.fake_upstream",
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--port", type=int, default=8765, help="port to listen on")
    p.add_argument("--projects", type=int, default=100, help="how many projects to generate")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every response")
    p.add_argument(
        "--large-files", type=int, default=0, help="give the first N projects' sdist large content"
    )
    p.add_argument("--large-size", type=int, default=8 << 20, help="bytes of each large file")
    args = p.parse_args()
    index = with_large_sdists(FakeIndex.generate(args.projects), args.large_files, args.large_size)
    up = FakeUpstream(index, port=args.port, latency=args.latency_ms / 1000.0)
    up.serve_announced()


if __name__ == "__main__":
    main()
