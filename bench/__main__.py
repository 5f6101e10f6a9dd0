"""``python -m bench [--quick] [NAME ...]``: run benchmarks, write bench/results/*.md."""

from __future__ import annotations

import argparse

from . import (
    analyst,
    backfill_launches,
    caps,
    description_write,
    faults,
    files,
    filters,
    freshness,
    incremental,
    lake,
    metadata_sources,
    serve_load,
    status_poll,
    sync_throughput,
)

BENCHES = {
    "sync": sync_throughput.main,
    "incremental": incremental.main,
    "analyst": analyst.main,
    "filters": filters.main,
    "files": files.main,
    "serve": serve_load.main,
    "faults": faults.main,
    "caps": caps.main,
    "description_write": description_write.main,
    "metadata_sources": metadata_sources.main,
    "freshness": freshness.main,
    "status_poll": status_poll.main,
    "backfill_launches": backfill_launches.main,
    "lake": lake.main,
}


def main() -> None:
    p = argparse.ArgumentParser(prog="bench")
    p.add_argument("names", nargs="*", default=list(BENCHES), choices=list(BENCHES))
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = p.parse_args()
    for name in args.names:
        print(BENCHES[name](quick=args.quick))


if __name__ == "__main__":
    main()
