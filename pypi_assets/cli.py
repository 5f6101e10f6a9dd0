"""``pypi-assets``: the command line for cron users and scripts.

Exit codes: :data:`EXIT_MEANINGS`, listed by ``--help`` for the codes :data:`FAILURES` gives.
A failure prints one line (with ``--json``: one JSON object on stdout), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import signal
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import duckdb
import httpx

from ._version import __version__
from .filters import MirrorConfig
from .pypi import ClientConfig, ConfigurationError, UpstreamError
from .pypi.fetch import Depth
from .store.duckdb_store import is_storage_error
from .store.snapshot import SnapshotNotFound, export_snapshot
from .sync.listing import UpstreamFault
from .sync.reports import Progress, SyncReport
from .sync.run import run_sync
from .sync.settings import Settings, SettingsError, analyst_db, client_config
from .sync.verify import MirrorVerifyReport, VerifyOptions, verify_mirror

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_STORAGE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports it

#: What each exit code means; ``--help`` lists those :data:`FAILURES` can give, with 0 and 1.
EXIT_MEANINGS: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "some projects or files failed (each is named)",
    EXIT_CONFIG: "bad usage or configuration (nothing is synced)",
    EXIT_UNREACHABLE: "the upstream (or the Dagster webserver) is unreachable or faulty",
    EXIT_STORAGE: "local storage failure: the database or blob store cannot be opened or "
    "written, the disk is full, or another process holds the database's lock",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_TERMINATED: "terminated (SIGTERM); like an interrupt, the next run converges",
}


class Terminated(Exception):
    """The run stopped on SIGTERM, as it stops on Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the run as Ctrl-C does (the same cleanup), then reports ``terminated``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    terminated = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        terminated.set()
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except BaseException as exc:
        found = classify(exc)
        if terminated.is_set() and found is not None and found[0] == EXIT_INTERRUPTED:
            raise Terminated() from exc
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Display:
    """A rich progress bar on a terminal, plain periodic lines otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}
        self._last = 0.0

    def __enter__(self) -> _Display:
        if self.tty:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[detail]}"),
                transient=False,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def __call__(self, phase: str, done: int, total: int, detail: str) -> None:
        if self.quiet:
            return
        counted = phase in _BARS and total > 0
        if self._bar is not None:
            if counted:
                task = self._tasks.get(phase)
                if task is None:
                    task = self._tasks[phase] = self._bar.add_task(
                        _BARS[phase], total=total, detail=""
                    )
                self._bar.update(task, completed=done, total=total, detail=detail[:40])
            elif detail:
                self._bar.console.print(f"{phase}: {detail}")
            return
        now = time.monotonic()
        if not counted or done in (0, total) or now - self._last > 2.0:
            self._last = now
            frac = f" {done}/{total}" if counted else ""
            print(f"[{phase}]{frac} {detail}".rstrip(), file=sys.stderr, flush=True)


#: progress phases shown as bars (others are one-line messages)
_BARS = {"fetch": "fetching projects", "files": "fetching files", "verify": "verifying blobs"}


def _names(names: Sequence[str], shown: int = 20) -> str:
    """``: a, b, c`` (the first ``shown`` of them), or nothing."""
    if not names:
        return ""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ": " + ", ".join(sorted(names)[:shown]) + more


def _print_rate_limits(requests: dict[str, Any]) -> None:
    """Upstream's rate limits met during the run, and the seconds waited for them."""
    if requests.get("rate_limited"):
        print(
            f"rate limited     {requests['rate_limited']} times, waited "
            f"{requests.get('rate_wait_seconds', 0.0):g} s"
        )


def _print_pkg_info_comparison(compared: dict[str, Any]) -> None:
    """Sdists whose own PKG-INFO differs from their release's version JSON, by field."""
    if compared.get("compared"):
        fields = ", ".join(f"{k} {v}" for k, v in compared.get("fields", {}).items())
        print(
            f"PKG-INFO vs JSON {compared['compared']} sdists compared, "
            f"{compared.get('differing', 0)} differ{f' ({fields})' if fields else ''}"
        )


def _print_report(report: SyncReport, as_json: bool) -> None:
    summary = report.summary()
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    r = report.refresh
    print(f"upstream         {report.upstream} (serial {report.upstream_serial})")
    if report.up_to_date:
        print("status           already up to date; nothing fetched")
    if report.changes:
        print(f"changes          {report.changes}; listing read: {report.listing}")
    print(f"projects listed  {report.listed}")
    print(f"selected         {report.selected}")
    if report.upstream_serial <= 0 and not report.up_to_date:
        print(
            "mode             the upstream reports no serials: every selected project "
            f"re-checked with a conditional request ({len(r.unchanged)} unchanged)"
        )
    print(f"refreshed        {len(r.refreshed)}")
    print(f"missing (404)    {len(r.missing)}{_names(r.missing)}")
    print(f"removed upstream {len(r.removed)}{_names(r.removed)}")
    if report.metadata_sources:
        sources = ", ".join(f"{k} {v}" for k, v in sorted(report.metadata_sources.items()))
        print(f"metadata from    {sources}")
    _print_pkg_info_comparison(report.pkg_info_vs_version_json)
    print(f"failed           {len(r.failed)}")
    if report.statuses is not None and report.statuses.polled:
        st = report.statuses
        print(
            f"statuses polled  {st.polled} projects: {st.requests} requests, "
            f"{st.not_modified} answered 304, {len(st.changed)} changed"
        )
    print(
        f"requests         {report.requests.get('total_requests', 0)} {report.requests.get('requests', {})}"
    )
    _print_rate_limits(report.requests)
    for table, n in report.counts.items():
        print(f"rows {table:<20} {n}")
    if report.files is not None:
        f = report.files
        print(
            f"files            {f.downloaded} downloaded ({f.bytes} bytes), {f.present} present, "
            f"{len(f.failed)} failed"
        )
    if report.index is not None:
        print(
            f"simple index     {len(report.index.written)} projects written, "
            f"{report.index.unchanged} unchanged, {len(report.index.deleted)} removed"
        )
    if report.snapshot:
        print(f"snapshot         {report.snapshot}")
    print(f"seconds          {report.seconds:.2f}")
    for name, err in sorted(report.failures.items()):
        print(f"FAILED {name}: {err}", file=sys.stderr)


def _sync(
    settings: Settings,
    *,
    quiet: bool,
    as_json: bool,
    demo_label: str | None = None,
    client_overrides: dict[str, Any] | None = None,
    depth: Depth = "full",
    lazy: bool = False,
    refresh_statuses: bool = False,
) -> int:
    with _sigterm_as_interrupt():
        return _sync_run(
            settings,
            quiet=quiet,
            as_json=as_json,
            demo_label=demo_label,
            client_overrides=client_overrides,
            depth=depth,
            lazy=lazy,
            refresh_statuses=refresh_statuses,
        )


def _sync_run(
    settings: Settings,
    *,
    quiet: bool,
    as_json: bool,
    demo_label: str | None,
    client_overrides: dict[str, Any] | None,
    depth: Depth,
    lazy: bool,
    refresh_statuses: bool = False,
) -> int:
    config = settings.load_config()
    for w in config.warnings:
        print(f"warning: {w}", file=sys.stderr)
    settings.check_paths(config)
    db_dir_created = not settings.db.parent.exists()
    db_created = not settings.db.exists()
    try:
        return _sync_report(
            settings,
            config,
            quiet=quiet,
            as_json=as_json,
            demo_label=demo_label,
            client_overrides=client_overrides,
            depth=depth,
            lazy=lazy,
            refresh_statuses=refresh_statuses,
        )
    except BaseException as exc:
        found = classify(exc)
        if db_created and found is not None and found[0] == EXIT_UNREACHABLE:
            _remove_if_empty(settings.db, remove_dir=db_dir_created)
        raise


def _remove_if_empty(db: Path, *, remove_dir: bool) -> None:
    """Remove the database this run created when the upstream never answered and it holds
    nothing (no listing, no project): an unreachable upstream leaves no 800 KB empty file.
    Anything unexpected (another process has it open, a table missing) leaves it alone."""
    from .store.readers import holds_nothing

    try:
        if not holds_nothing(db):
            return
        db.unlink()
        Path(f"{db}.wal").unlink(missing_ok=True)
        if remove_dir:
            with contextlib.suppress(OSError):
                db.parent.rmdir()  # only when empty
    except (duckdb.Error, OSError):
        return


def _sync_report(
    settings: Settings,
    config: MirrorConfig,
    *,
    quiet: bool,
    as_json: bool,
    demo_label: str | None,
    client_overrides: dict[str, Any] | None,
    depth: Depth,
    lazy: bool,
    refresh_statuses: bool = False,
) -> int:
    if demo_label:
        print(demo_label, file=sys.stderr)
    with _Display(quiet or as_json) as display:
        progress: Progress = display
        report = asyncio.run(
            run_sync(
                settings,
                config,
                progress=progress,
                client_overrides=client_overrides,
                depth=depth,
                lazy=lazy,
                refresh_statuses=refresh_statuses,
            )
        )
    _print_report(report, as_json)
    if not report.ok:
        failed = report.failures
        print(f"error: {len(failed)} failed: {', '.join(sorted(failed))}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    settings = Settings.from_env(
        upstream=args.upstream,
        config_path=args.config,
        db=args.db,
        blobs=args.blobs,
        web=args.web,
        concurrency=args.concurrency,
        lock_timeout=args.lock_timeout,
    )
    return _sync(
        settings,
        quiet=args.quiet,
        as_json=args.json,
        depth=args.depth,
        lazy=args.lazy,
        refresh_statuses=args.refresh_statuses,
    )


DEMO_CONFIG = """\
# Demo config: mirror every project of the shipped fake upstream.
[mirror]
directory = data/demo-mirror
release-files = false
master = http://127.0.0.1
allow-non-https = true
workers = 3
"""


def cmd_demo(args: argparse.Namespace) -> int:
    from .fake import FakeIndex, FakeUpstream

    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeUpstream(FakeIndex.generate(args.projects)) as up,
    ):
        conf = Path(tmp) / "demo.conf"
        conf.write_text(DEMO_CONFIG)
        settings = Settings(upstream=up.url, config_path=str(conf), db=Path(args.db))
        label = (
            f"DEMO DATA: syncing {args.projects} generated projects from the shipped fake upstream "
            f"at {up.url} into {args.db} (not real PyPI data)"
        )
        return _sync(settings, quiet=args.quiet, as_json=args.json, demo_label=label)


def _reachable(url: str) -> bool:
    import httpx

    from .pypi.client import ssl_context

    try:
        r = httpx.head(
            url.rstrip("/") + "/simple/",
            timeout=5.0,
            follow_redirects=False,
            trust_env=False,
            verify=ssl_context(),
        )
        return r.status_code < 500
    except httpx.HTTPError:
        return False


def cmd_quickstart(args: argparse.Namespace) -> int:
    """The README's run command: the embedded default allowlist from the upstream, or, with no
    network, clearly labelled demo data from the shipped fake upstream."""
    settings = Settings.from_env(db=args.db)
    config = settings.load_config()
    upstream = settings.upstream_for(config)
    if _reachable(upstream):
        print(f"syncing the default allowlist from {upstream} into {settings.db}", file=sys.stderr)
        return _sync(settings, quiet=args.quiet, as_json=args.json)
    print(f"{upstream} is not reachable: falling back to demo data", file=sys.stderr)
    args.db = str(Path(settings.db).with_name("demo.duckdb"))
    return cmd_demo(args)


def cmd_fake_upstream(args: argparse.Namespace) -> int:
    from .fake import FakeIndex, FakeUpstream

    names = None
    if args.names_file:
        names = [
            line.split("\t")[0].strip()
            for line in Path(args.names_file).read_text().splitlines()[1:]
            if line.strip()
        ]
    n = args.projects if names is None else min(args.projects or len(names), len(names))
    index = FakeIndex.generate(n, names=names)
    up = FakeUpstream(index, port=args.port, latency=args.latency_ms / 1000.0)
    up.serve_announced()
    return EXIT_OK


def _mirror_settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        upstream=args.upstream,
        config_path=args.config,
        db=args.db,
        blobs=args.blobs,
        web=args.web,
    )


def _port(text: str) -> int:
    """``serve --port``: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text[:40]!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {port}")
    return port


def _seconds(positive: bool) -> Callable[[str], float]:
    """A finite number of seconds, above 0 (``positive``) or 0 and more."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text[:40]!r}") from None
        if not (0 < value < float("inf") if positive else 0 <= value < float("inf")):
            kind = "above 0" if positive else "0 or more"
            raise argparse.ArgumentTypeError(
                f"must be a finite number of seconds {kind}, got {text[:40]}"
            )
        return value

    return parse


def _lazy_client_config(settings: Settings, config: MirrorConfig) -> ClientConfig:
    """The upstream client for ``serve --lazy``, checked before anything is announced: an
    upstream that every on-demand fetch would refuse is a configuration error now, not a
    502 at the first request."""
    from urllib.parse import urlsplit

    from .pypi.names import UnsafeValue, check_url

    try:
        cc = client_config(settings, config)
        parts = urlsplit(cc.base)
        credentials = bool(parts.username or parts.password)
        if not credentials:
            check_url(f"{cc.base}/simple/", cc.base + "/", cc.allowed_hosts)
    except (ValueError, UnsafeValue) as exc:
        raise SettingsError(f"upstream: {exc}") from None
    if credentials:  # named without echoing the password
        raise SettingsError(f"upstream: a URL with credentials is not supported: {parts.hostname}")
    return cc


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import MirrorServer, ServeError, serve
    from .sync.run import index_options

    settings = _mirror_settings(args)
    config = settings.load_config()
    cc = _lazy_client_config(settings, config) if args.lazy else None
    blobs = settings.blob_store(config)
    web = settings.web_root(config)
    if blobs is None or web is None:
        print(
            "error: no blob store: pass --blobs DIR|s3://… (or set release-files and "
            "directory in the config)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    server = MirrorServer(
        web=web,
        blobs=blobs,
        db=settings.db,
        lazy=args.lazy,
        client_config=cc,
        host=args.host,
        port=args.port,
        keepalive_timeout=args.keepalive_timeout,
        header_timeout=args.header_timeout,
        shutdown_timeout=args.shutdown_timeout,
        options=index_options(config),
    )
    try:
        # SIGTERM and SIGINT stop it gracefully: the listener closes, responses complete
        serve(server, announce=lambda line: print(line, flush=True))
    except ServeError as exc:
        print(f"pypi-assets: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _share(text: str) -> float:
    """``--max-delete-share``: ``0.05`` or ``5%``."""
    from .filters.config import _parse_share

    try:
        return _parse_share("max-delete-share", text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a share between 0 and 1: use 0.05 or 5%"
        ) from None


def cmd_verify(args: argparse.Namespace) -> int:
    settings = _mirror_settings(args)
    config = settings.load_config()
    blobs = settings.blob_store(config)
    if blobs is None:
        print("error: no blob store: pass --blobs DIR|s3://…", file=sys.stderr)
        return EXIT_CONFIG
    options = VerifyOptions(
        repair=args.repair,
        delete_unreferenced=args.delete_unreferenced,
        max_delete_share=args.max_delete_share,
        force=args.force,
        sizes_only=args.sizes_only,
    )
    with _Display(args.json) as display:
        try:
            report = verify_mirror(settings, config, blobs, options, progress=display)
        except UpstreamError as exc:
            print(f"error: upstream unreachable: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
    _print_verify(report, args.json)
    if report.delete_refused is not None:
        print(f"error: {report.delete_refused}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED


def _print_verify(report: MirrorVerifyReport, as_json: bool) -> None:
    summary = report.summary()
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for k in (
        "referenced",
        "stored",
        "missing",
        "corrupt",
        "unreferenced",
        "repaired",
        "deleted",
        "missing_pages",
    ):
        print(f"{k:<13} {summary[k]}")
    for name in report.missing_pages[:20]:
        print(f"MISSING-PAGE {name}", file=sys.stderr)
    provenance = summary["provenance"]
    assert isinstance(provenance, dict)
    print("provenance    " + ", ".join(f"{k} {v}" for k, v in provenance.items()))
    print(f"seconds       {summary['seconds']}")
    for kind in ("missing", "corrupt"):
        for key in getattr(report.blobs, kind)[:20]:
            print(f"{kind.upper()} {key}", file=sys.stderr)
    for name, err in sorted(report.blobs.failed.items()):
        print(f"FAILED {name}: {err}", file=sys.stderr)


def cmd_backfill(args: argparse.Namespace) -> int:
    """The initial full sync as a Dagster backfill over every serial window, through a running
    webserver's API (the same calls the UI makes)."""
    from .dagster_api import DagsterAPI
    from .pypi import PyPIClient
    from .sync.windows import keys_upto, width_from_env

    settings = Settings.from_env()
    config = settings.load_config()

    async def serial() -> int | None:
        async with PyPIClient(client_config(settings, config)) as client:
            return await client.last_serial()

    upto = args.upto or asyncio.run(serial())
    if not upto:
        print("error: the upstream reports no serial; pass --upto", file=sys.stderr)
        return EXIT_CONFIG
    api = DagsterAPI(args.webserver)
    keys = keys_upto(upto, width_from_env())
    listing = api.launch_assets("upstream_projects", "filtered_projects")
    print(
        f"listing upstream (upstream_projects, filtered_projects): run {listing} "
        f"via {args.webserver}",
        file=sys.stderr,
    )
    if api.wait_run(listing) != "SUCCESS":
        print(f"error: listing run {listing} failed; see the Dagster UI", file=sys.stderr)
        return EXIT_FAILED
    added = api.add_partitions(keys)
    backfill = api.backfill("release_metadata", keys)
    print(f"backfill {backfill}: {len(keys)} serial windows ({added} new) up to serial {upto}")
    print(f"follow it at {args.webserver.rstrip('/')}/overview/backfills/{backfill}")
    if not args.wait:
        return EXIT_OK
    status, runs = api.wait_backfill(backfill)
    failed = sum(1 for r in runs if r != "SUCCESS")
    print(f"backfill {backfill} {status}: {len(runs) - failed} runs succeeded, {failed} did not")
    return EXIT_OK if failed == 0 else EXIT_FAILED


# ---------------------------------------------------------------------------- the parser
class _Formatter(argparse.RawDescriptionHelpFormatter):
    """The epilog as written, and each option's default after its help unless the help
    already names it (or there is none to name: a flag, or a value looked up elsewhere)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def exit_codes_epilog() -> str:
    """The exit codes ``--help`` lists: success, some failed, and every code of
    :data:`FAILURES`, each with its meaning from :data:`EXIT_MEANINGS`."""
    codes = {EXIT_OK, EXIT_FAILED} | {code for _kind, _test, code, _message in FAILURES}
    lines = ["exit codes:"]
    for code in sorted(codes):
        lines += textwrap.wrap(
            EXIT_MEANINGS[code],
            width=79,
            initial_indent=f"  {code:<4} ",
            subsequent_indent=" " * 7,
        )
    return "\n".join(lines) + "\n"


def _command(
    sub: Any, name: str, help: str, parents: Sequence[argparse.ArgumentParser] = (), **kw: Any
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, parents=list(parents), formatter_class=_Formatter, **kw
    )
    return p


def _flags() -> argparse.ArgumentParser:
    """A parent parser (``parents=``) to hold flags shared by several subcommands."""
    return _Parser(add_help=False)


def _mirror_flags() -> argparse.ArgumentParser:
    """Where the mirror is: shared by sync, serve and verify."""
    m = _flags()
    m.add_argument(
        "--config",
        help="bandersnatch config (env PYPI_ASSETS_CONFIG; default: the embedded allowlist)",
    )
    m.add_argument(
        "--upstream",
        help="upstream URL, for serve --lazy and verify --repair too "
        "(env PYPI_ASSETS_UPSTREAM; default: the config's master)",
    )
    m.add_argument(
        "--db",
        help="working DuckDB path; serve --lazy reads its published snapshot "
        "(env PYPI_ASSETS_DB; default: data/pypi.duckdb)",
    )
    m.add_argument(
        "--blobs",
        help="blob store DIR or s3://bucket/prefix (env PYPI_ASSETS_BLOBS; default: the "
        "config's directory/web with release-files = true, else none: metadata only)",
    )
    m.add_argument(
        "--web",
        help="where the simple index is written (env PYPI_ASSETS_WEB; default: the blob DIR, "
        "or web/ beside the database for s3)",
    )
    return m


def _json_flag() -> argparse.ArgumentParser:
    j = _flags()
    j.add_argument("--json", action="store_true", help="print the summary as JSON")
    return j


def _quiet_flag() -> argparse.ArgumentParser:
    q = _flags()
    q.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    return q


def _demo_flags() -> argparse.ArgumentParser:
    d = _flags()
    d.add_argument("--projects", type=int, default=40, help="how many demo projects to generate")
    return d


def build_parser() -> argparse.ArgumentParser:
    epilog = exit_codes_epilog()
    p = _Parser(
        prog="pypi-assets",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=epilog,
        formatter_class=_Formatter,
    )
    p.add_argument("--version", action="version", version=f"pypi-assets {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)
    mirror, as_json, quiet, demo = _mirror_flags(), _json_flag(), _quiet_flag(), _demo_flags()
    _add_sync(sub, [mirror, as_json, quiet], epilog)
    _add_demo(sub, [demo, as_json, quiet])
    _add_backfill(sub)
    _add_serve(sub, [mirror])
    _add_verify(sub, [mirror, as_json])
    _add_export(sub, [as_json])
    _add_fake_upstream(sub)
    return p


def _add_sync(sub: Any, parents: Sequence[argparse.ArgumentParser], epilog: str) -> None:
    s = _command(
        sub,
        "sync",
        "sync metadata to the upstream's current serial",
        parents,
        description="Sync metadata (and, with --blobs, files) to the upstream's current serial.",
        epilog=epilog,
    )
    s.add_argument(
        "--concurrency", type=int, help="parallel requests, 1-10 (default: the config's workers)"
    )
    s.add_argument(
        "--lock-timeout",
        type=float,
        metavar="SECONDS",
        help="wait this long for another process's lock on the database, then exit 4 "
        "(env PYPI_ASSETS_LOCK_TIMEOUT; default: 900)",
    )
    s.add_argument(
        "--depth",
        choices=("full", "project"),
        default="full",
        help="full: per-version JSON and per-wheel core metadata; "
        "project: one request per project, files and hashes only",
    )
    s.add_argument(
        "--lazy",
        action="store_true",
        help="with --blobs: write the index but leave downloads to `serve --lazy`",
    )
    s.add_argument(
        "--refresh-statuses",
        action="store_true",
        help="poll every selected project's PEP 792 status, ownership and vulnerabilities "
        "now, whatever [pypi_assets] status_poll_interval says",
    )
    s.set_defaults(func=cmd_sync)


def _add_demo(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    d = _command(
        sub, "demo", "sync clearly labelled demo data from the shipped fake upstream", parents
    )
    d.add_argument("--db", default="data/demo.duckdb", help="the demo database")
    d.set_defaults(func=cmd_demo)
    q = _command(sub, "quickstart", "the default allowlist, or demo data when offline", parents)
    q.add_argument(
        "--db",
        default=None,
        help="working DuckDB path (env PYPI_ASSETS_DB; default: data/pypi.duckdb; "
        "offline: demo.duckdb beside it)",
    )
    q.set_defaults(func=cmd_quickstart)


def _add_backfill(sub: Any) -> None:
    b = _command(sub, "backfill", "first full sync as a Dagster backfill of every serial window")
    b.add_argument(
        "--webserver",
        default="http://127.0.0.1:3000",
        help="a running Dagster webserver (./dev ui)",
    )
    b.add_argument(
        "--upto", type=int, help="last serial to cover (default: the upstream's current serial)"
    )
    b.add_argument(
        "--wait",
        action="store_true",
        help="wait for the backfill and exit non-zero if a run failed",
    )
    b.set_defaults(func=cmd_backfill)


def _add_serve(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    sv = _command(
        sub, "serve", "serve the mirror (simple index, JSON API, files) over HTTP", parents
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=_port, default=8080, help="0-65535, 0: any free port")
    sv.add_argument(
        "--keepalive-timeout",
        type=_seconds(positive=True),
        default=5.0,
        metavar="SECONDS",
        help="close idle keep-alive connections after this long",
    )
    sv.add_argument(
        "--header-timeout",
        type=_seconds(positive=True),
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose request headers are not complete after this long",
    )
    sv.add_argument(
        "--shutdown-timeout",
        type=_seconds(positive=False),
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, wait this long for responses in flight",
    )
    sv.add_argument(
        "--lazy", action="store_true", help="fetch a selected file from upstream on first request"
    )
    sv.set_defaults(func=cmd_serve)


def _add_verify(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    v = _command(
        sub,
        "verify",
        "compare the blob store and the index with DuckDB: missing, corrupt, unreferenced",
        parents,
    )
    v.add_argument(
        "--repair",
        action="store_true",
        help="fetch missing and corrupt files again, and write missing index pages again",
    )
    v.add_argument(
        "--delete-unreferenced",
        action="store_true",
        help="delete blobs that the current selection does not reference",
    )
    v.add_argument(
        "--max-delete-share",
        type=_share,
        default=0.05,
        metavar="SHARE",
        help="with --delete-unreferenced: refuse (exit 1, nothing deleted) to delete more than "
        "this share of the stored blobs, as 0.05 or 5%% (default: 5%%)",
    )
    v.add_argument(
        "--force",
        action="store_true",
        help="with --delete-unreferenced: delete whatever the share",
    )
    v.add_argument(
        "--sizes-only", action="store_true", help="compare sizes, not sha256 (no blob is read)"
    )
    v.set_defaults(func=cmd_verify)


def as_of_point(text: str) -> int | datetime:
    """``--as-of``: an upstream serial, or an RFC 3339 time (with its offset)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a serial nor an RFC 3339 time such as 2026-11-30T12:00:00Z"
        )
    return when


def _add_export(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    e = _command(
        sub,
        "export",
        "write one snapshot as a plain DuckDB file (and Parquet), for one-file users",
        parents,
    )
    e.add_argument(
        "--db", help="working DuckDB path (env PYPI_ASSETS_DB; default: data/pypi.duckdb)"
    )
    e.add_argument("--out", required=True, help="the DuckDB file to write (replaced atomically)")
    e.add_argument("--parquet", help="also write one Parquet file per table and view here")
    e.add_argument(
        "--as-of",
        type=as_of_point,
        metavar="SERIAL|TIME",
        help="the snapshot current at this upstream serial or RFC 3339 time (default: newest)",
    )
    e.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    db = Path(args.db) if args.db else analyst_db()
    try:
        counts = export_snapshot(
            db,
            Path(args.out),
            as_of=args.as_of,
            parquet=Path(args.parquet) if args.parquet else None,
        )
    except SnapshotNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        print(json.dumps({"out": args.out, "rows": counts}, indent=2))
    else:
        for name, n in counts.items():
            print(f"{name:<22} {n}")
        print(f"wrote {args.out}")
    return EXIT_OK


def _add_fake_upstream(sub: Any) -> None:
    f = _command(sub, "fake-upstream", "serve the fake Warehouse on 127.0.0.1")
    f.add_argument("--port", type=int, default=8765, help="port to listen on")
    f.add_argument("--projects", type=int, default=100, help="how many projects to generate")
    f.add_argument(
        "--names-file",
        help="TSV whose first column lists project names (header skipped; default: generated "
        "names)",
    )
    f.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every response")
    f.set_defaults(func=cmd_fake_upstream)


# ---------------------------------------------------------------------------- failures
class UsageError(ConfigurationError):
    """A bad command line: reported as one line (exit 2), not argparse's usage block."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _os_message(exc: BaseException) -> str:
    assert isinstance(exc, OSError)
    what = exc.strerror or _first_line(exc)
    if exc.errno == errno.ENOSPC:
        what = "no space left on device"
    return f"local storage: {exc.filename}: {what}" if exc.filename else f"local storage: {what}"


def _db_message(exc: BaseException) -> str:
    text = _first_line(exc)
    for prefix in ("IO Error: ", "TransactionContext Error: "):
        text = text.removeprefix(prefix)
    if "No space left on device" in text:
        return f"local storage: no space left on device ({text})"
    return f"local storage: {text}"


def _http_message(exc: BaseException) -> str:
    assert isinstance(exc, httpx.HTTPError)
    try:
        url = str(exc.request.url)
    except RuntimeError:
        url = "?"
    return f"cannot reach {url}: {_first_line(exc)}"


#: The one mapping from what went wrong to the exit code and the one line that says so.
#: The first row whose type (and test) matches wins; exceptions inside exception groups and
#: their explicit causes are searched too. Anything else is a bug and keeps its traceback.
FAILURES: tuple[
    tuple[
        type[BaseException], Callable[[BaseException], bool], int, Callable[[BaseException], str]
    ],
    ...,
] = (
    (Terminated, lambda e: True, EXIT_TERMINATED, lambda e: "terminated"),
    (KeyboardInterrupt, lambda e: True, EXIT_INTERRUPTED, lambda e: "interrupted"),
    (duckdb.InterruptException, lambda e: True, EXIT_INTERRUPTED, lambda e: "interrupted"),
    (ConfigurationError, lambda e: True, EXIT_CONFIG, str),
    (UpstreamFault, lambda e: True, EXIT_UNREACHABLE, lambda e: f"upstream fault: {e}"),
    (UpstreamError, lambda e: True, EXIT_UNREACHABLE, lambda e: f"upstream unreachable: {e}"),
    (httpx.HTTPError, lambda e: True, EXIT_UNREACHABLE, _http_message),
    (ConnectionError, lambda e: True, EXIT_UNREACHABLE, lambda e: f"cannot connect: {e}"),
    (duckdb.Error, is_storage_error, EXIT_STORAGE, _db_message),
    (OSError, lambda e: not isinstance(e, TimeoutError), EXIT_STORAGE, _os_message),
)


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exception, the members of a group (depth first), and each one's explicit cause
    (``raise ... from``). An error raised while handling another is not excused by it: a
    bug in an ``except`` block keeps its traceback."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, BaseExceptionGroup):
            todo[:0] = list(e.exceptions)
            continue
        yield e
        if e.__cause__ is not None:
            todo.append(e.__cause__)
        elif isinstance(e.__context__, KeyboardInterrupt):
            todo.append(e.__context__)  # an interrupt that broke the cleanup after it


def classify(exc: BaseException) -> tuple[int, str] | None:
    """``(exit code, message)`` for an expected failure, ``None`` for a bug."""
    for leaf in _leaves(exc):
        for kind, test, code, message in FAILURES:
            if isinstance(leaf, kind) and test(leaf):
                return code, message(leaf)
    return None


def _report(message: str, code: int, as_json: bool) -> None:
    line = " ".join(message.split())  # one line, whatever the exception's text holds
    if as_json:
        print(json.dumps({"error": line, "exit_code": code}), flush=True)
    else:
        print(f"error: {line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in words
    try:
        args = build_parser().parse_args(words)
        as_json = bool(getattr(args, "json", False))
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(levelname)s %(message)s",
        )
        return int(args.func(args))
    except SystemExit:
        raise
    except BaseException as exc:
        found = classify(exc)
        if found is None:
            raise
        code, message = found
        _report(message, code, as_json)
        return code


if __name__ == "__main__":
    sys.exit(main())
