"""Run ``pypi-assets`` for the fault-injection suite, with test hooks.

    python tests/fault_runner.py sync --upstream URL --db PATH ...

- ``PYPI_ASSETS_BACKOFF`` (seconds): the retry backoff base, so retried faults cost
  milliseconds (the retry semantics, counts and ``Retry-After`` are unchanged).
- ``FAULT_KILL=<point>`` (with ``FAULT_KILL_NTH=n``, default 1): SIGKILL this process at the
  n-th time the run reaches ``<point>``, one of :data:`POINTS`. A requested point that is
  never reached exits 99 with a message, so a hook that no longer matches the code fails the
  test instead of silently testing nothing.
- ``FAULT_RSS_FILE=<path>``: write the peak RSS (bytes) there when the command returns.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: kill points, in the order a sync reaches them (pypi_assets/sync/run.py run_sync)
POINTS = (
    "listed",  # the upstream listing is stored; nothing fetched yet
    "metadata-batch",  # the first of several metadata batches is committed
    "metadata-txn",  # inside a metadata write transaction (projects inserted, files not)
    "metadata-done",  # metadata stored, before any file is downloaded
    "files",  # some blobs stored, others not (and not all recorded)
    "provenance-stored",  # a provenance object stored, none recorded (nor its publishers)
    "files-done",  # every file stored, before the index is written
    "index",  # some index pages written, not recorded, root not written
    "marked-synced",  # right after the run recorded its synced serial
    "publish-start",  # before the lake snapshot is committed
    "publish-rows",  # inside the lake transaction: rows and history written, not committed
    "publish-committed",  # the lake snapshot is committed, the dirty set not yet cleared
    "published",  # right after publication
)

#: kill points a fresh mirror's run never reaches (see test_fault_suite.py's scenarios)
LATER_POINTS = (
    "status-poll",  # the status poll's requests answered, before their first batch is recorded
)


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Hooks:
    def __init__(self, point: str, nth: int) -> None:
        self.point, self.nth, self.seen = point, nth, 0

    def hit(self) -> bool:
        self.seen += 1
        return self.seen == self.nth

    def wrap(
        self, owner: Any, name: str, *, after: bool = False, when: Callable[..., bool] | None = None
    ) -> None:
        """Kill before (or after) ``owner.name`` runs, counting only calls where ``when``."""
        orig = getattr(owner, name)
        hooks = self

        def matches(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
            return when is None or when(*args, **kwargs)

        if inspect.iscoroutinefunction(orig):

            @functools.wraps(orig)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                m = matches(args, kwargs)
                if m and not after and hooks.hit():
                    _die()
                result = await orig(*args, **kwargs)
                if m and after and hooks.hit():
                    _die()
                return result

            setattr(owner, name, awrapper)
            return

        @functools.wraps(orig)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            m = matches(args, kwargs)
            if m and not after and hooks.hit():
                _die()
            result = orig(*args, **kwargs)
            if m and after and hooks.hit():
                _die()
            return result

        setattr(owner, name, wrapper)


def _install_upstream_inputs(hooks: _Hooks, point: str) -> None:
    """The kill points of what PEP 740 and PEP 792 added: provenance objects, the poll."""
    from pypi_assets.store.blobs import LocalBlobStore
    from pypi_assets.sync import status

    if point == "provenance-stored":
        hooks.wrap(
            LocalBlobStore,
            "put_file",
            after=True,
            when=lambda _self, key, *_a, **_k: key.startswith("integrity/"),
        )
    else:  # status-poll
        hooks.wrap(status, "record_polls", when=lambda _store, polls: bool(polls))


def install(point: str, nth: int) -> _Hooks:
    from pypi_assets.store import duckdb_store, lake
    from pypi_assets.store.blobs import LocalBlobStore
    from pypi_assets.sync import index, listing, run

    hooks = _Hooks(point, nth)
    if point == "listed":
        hooks.wrap(listing, "list_upstream", after=True)
    elif point == "metadata-batch":
        orig = run.refresh_metadata

        def small_batches(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("batch", 3)
            return orig(*args, **kwargs)

        run.refresh_metadata = small_batches  # type: ignore[assignment]
        hooks.wrap(duckdb_store.MetadataStore, "write_projects", after=True)
    elif point == "metadata-txn":
        hooks.wrap(
            duckdb_store,
            "_insert",
            when=lambda _con, table, *_a, **_k: (
                getattr(table, "name", table) == "distribution_rows"
            ),
        )
    elif point == "metadata-done":
        hooks.wrap(run, "sync_files")
    elif point == "files":
        hooks.wrap(LocalBlobStore, "put_file", after=True)
    elif point in ("provenance-stored", *LATER_POINTS):
        _install_upstream_inputs(hooks, point)
    elif point == "files-done":
        hooks.wrap(run, "write_index")
    elif point == "index":
        hooks.wrap(index, "_write_pages", after=True)
    elif point == "marked-synced":
        hooks.wrap(
            duckdb_store.MetadataStore,
            "set_meta",
            after=True,
            when=lambda *_a, **kw: bool(kw.get("synced_serial")),
        )
    elif point == "publish-start":
        hooks.wrap(run, "publish")
    elif point == "publish-rows":
        hooks.wrap(lake, "_replace_meta", after=True)
    elif point == "publish-committed":
        hooks.wrap(lake, "_clear_dirty")
    elif point == "published":
        hooks.wrap(run, "publish", after=True)
    else:
        raise SystemExit(
            f"fault_runner: unknown kill point {point!r}; known: {', '.join(POINTS + LATER_POINTS)}"
        )
    return hooks


def fast_backoff() -> None:
    """``PYPI_ASSETS_BACKOFF`` as the CLI's retry backoff (as tests/conftest.py's FAST)."""
    raw = os.environ.get("PYPI_ASSETS_BACKOFF")
    if not raw:
        return
    from pypi_assets.sync import settings

    cls = settings.Settings
    orig = cls.from_env.__func__  # type: ignore[attr-defined]

    def from_env(klass: type, *args: Any, **kwargs: Any) -> Any:
        s = orig(klass, *args, **kwargs)
        return dataclasses.replace(s, backoff=s.backoff if s.backoff is not None else float(raw))

    cls.from_env = classmethod(from_env)  # type: ignore[method-assign,assignment]


def main(argv: list[str]) -> int:
    fast_backoff()
    hooks = None
    if os.environ.get("FAULT_KILL"):
        hooks = install(os.environ["FAULT_KILL"], int(os.environ.get("FAULT_KILL_NTH") or 1))
    from pypi_assets.cli import main as cli_main

    try:
        rc = cli_main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    finally:
        rss_file = os.environ.get("FAULT_RSS_FILE")
        if rss_file:
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            Path(rss_file).write_text(str(peak_kib * 1024))
    if hooks is not None:
        print(
            f"fault_runner: kill point {hooks.point!r} reached {hooks.seen} times, "
            f"never the {hooks.nth}th: the hook no longer matches the code",
            file=sys.stderr,
        )
        return 99
    return int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
