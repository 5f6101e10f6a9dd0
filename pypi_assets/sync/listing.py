"""The upstream listing: list (guarded against a listing that drops too much), catch up
through the changelog, and select projects with the config's project filters.

Where changes come from (:func:`update_listing`): on an upstream with XML-RPC, the changelog
(``changelog_since_serial``, live where PyPI's ``/simple/`` root is CDN-cached for a day);
the root listing only for the first sync and a periodic reconciliation
(``[pypi_assets] reconcile_interval``). Without XML-RPC, the listing every run, and without
serials too, a conditional re-check of every selected project. An allowlist-only selection
never reads the listing: it asks for its projects directly."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..filters import MirrorConfig, project_filter
from ..pypi import NotFound, PyPIClient, RateLimited, UpstreamError, canonical
from ..pypi.names import is_valid_project_name
from ..pypi.records import UpstreamListing
from ..store import MetadataStore
from ..store.duckdb_store import ListingShrank
from .selection import apply_closure
from .settings import config_hash

__all__ = [
    "CHANGES_CHANGELOG",
    "CHANGES_CONDITIONAL",
    "CHANGES_LISTING",
    "ListingStep",
    "UpstreamFault",
    "allowlist_only",
    "apply_changelog",
    "list_upstream",
    "reconciliation_due",
    "select_projects",
    "update_listing",
]

log = logging.getLogger("pypi_assets")

#: How a run learns what changed upstream (``SyncReport.changes``, the CLI's ``changes`` line).
CHANGES_CHANGELOG = "changelog"
CHANGES_LISTING = "listing serials (no XML-RPC)"
CHANGES_CONDITIONAL = "conditional re-check (no XML-RPC)"
#: ``meta`` key: when the root listing was last read in full (ISO 8601, UTC).
RECONCILED_AT = "listing_reconciled_at"


@dataclass
class ListingStep:
    """What the listing step of a run did."""

    serial: int  # the serial the stored listing has reached (0: unknown)
    changes: str  # one of the CHANGES_* values
    listing: str  # which listing was read, and why ("none": the changelog alone)
    listed: int = 0  # projects in that listing
    #: the changelog is followed: listed serials still unknown (0) take the stored ones
    resolve: bool = False


class UpstreamFault(UpstreamError):
    """The upstream answered, but with something a mirror must not act on (a listing that
    is empty or drops too many projects). Nothing was changed."""


def allowlist_only(config: MirrorConfig) -> list[str] | None:
    """The allowlisted names (normalised) when the project filters can only select among
    them, so no listing is needed: ``allowlist_project`` and/or ``project_requirements``
    name the projects, ``blocklist_project`` may remove some, and neither ``regex_project``
    (it matches display names, which only a listing gives) nor the dependency closure (it
    resolves requirements against the listing) is on. ``None`` otherwise."""
    if config.dependency_closure:
        return None
    pf = project_filter(config)
    if pf.regexes:
        return None
    allow = pf.allow
    if pf.allow_files is not None:
        allow = pf.allow_files if allow is None else allow & pf.allow_files
    return None if allow is None else sorted(n for n in allow if n not in pf.block)


def reconciliation_due(store: MetadataStore, config: MirrorConfig) -> bool:
    """Whether the full listing was last read ``reconcile_interval`` or more ago (or never)."""
    last = store.get_meta(RECONCILED_AT)
    try:
        at = datetime.fromisoformat(last) if last else None
    except ValueError:
        at = None
    age = (datetime.now(UTC) - at).total_seconds() if at is not None else None
    return age is None or age >= config.reconcile_interval


def _reconciled(store: MetadataStore) -> None:
    store.set_meta(**{RECONCILED_AT: datetime.now(UTC).isoformat(timespec="seconds")})


def _valid_names_only(listing: UpstreamListing) -> None:
    keep = [i for i, n in enumerate(listing.names) if is_valid_project_name(n)]
    if len(keep) != len(listing.names):
        log.warning(
            "ignoring %d invalid project names in the upstream listing",
            len(listing.names) - len(keep),
        )
        listing.names = [listing.names[i] for i in keep]
        listing.serials = [listing.serials[i] for i in keep]


def _keep_newer(store: MetadataStore, listing: UpstreamListing) -> None:
    """A listing older than what the changelog has told (a root the CDN cached): add the
    listed projects it cannot know yet, those the changelog listed after its serial, so it
    drops nothing it should not. The changelog since its serial is applied after it."""
    if not 0 < listing.serial < store.known_serial():
        return
    have = {canonical(n) for n in listing.names}
    newer = [(d, s) for n, d, s in store.upstream_listing() if s > listing.serial]
    for display, serial in newer:
        if canonical(display) not in have:
            listing.names.append(display)
            listing.serials.append(serial)


async def list_upstream(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    *,
    serial: int | None = None,
) -> UpstreamListing:
    """Store the upstream project list; names that are not valid project names are dropped.
    An allowlist-only selection (:func:`allowlist_only`) reads no listing: its projects are
    listed as they are named (``serial``: the upstream's, when the caller has it).

    A listing that is empty, or that drops more than ``[pypi_assets] max_removed_share`` of
    the stored projects, raises :class:`UpstreamFault` and changes nothing. A listing that
    drops a few projects (at most ``CONFIRMABLE_DROPS``) is taken only once each of them is
    confirmed gone: its project JSON answers 404 (as a quarantined project's does)."""
    names = allowlist_only(config)
    if names is not None:
        return await _allowlist_listing(client, store, config, names, serial)
    listing = await client.list_projects()
    _valid_names_only(listing)
    _keep_newer(store, listing)
    await _store_listing(client, store, config, listing)
    _reconciled(store)
    return listing


async def _store_listing(
    client: PyPIClient, store: MetadataStore, config: MirrorConfig, listing: UpstreamListing
) -> None:
    """Replace the stored listing, under the guards of :func:`list_upstream`."""
    share = config.max_removed_share
    try:
        await asyncio.to_thread(
            store.replace_upstream_listing,
            listing,
            canonical,
            max_removed_share=share,
            confirm_drops=True,
        )
    except ListingShrank as exc:
        if not exc.names:
            raise UpstreamFault(str(exc)) from None
        if not await _confirmed_gone(client, exc.names):
            raise UpstreamFault(
                f"the upstream listing drops {exc.dropped} stored projects that still answer "
                f"upstream (first: {exc.names[0]}): treated as an upstream fault, nothing removed"
            ) from None
        log.info("the %d projects the listing drops are gone upstream", len(exc.names))
        await asyncio.to_thread(
            store.replace_upstream_listing, listing, canonical, max_removed_share=1.0
        )


async def _allowlist_listing(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    names: list[str],
    serial: int | None,
) -> UpstreamListing:
    """List the allowlisted projects without reading the upstream listing. Those not listed
    yet are listed with serial 0 (unknown), so the refresh asks each for its project JSON
    (a 404 marks it missing). The first time, and at each reconciliation, every one is set
    to 0: each is re-checked with a conditional request (an unchanged one answers 304)."""
    if serial is None:
        serial = await client.last_serial()
    first = store.get_meta("listing_source") != "allowlist"
    if first or reconciliation_due(store, config):
        store.remove_from_listing(names)
        _reconciled(store)
    listed = {n for n, _d, _s in store.upstream_listing()}
    store.upsert_listing([(n, n, 0) for n in names if n not in listed])
    meta = {"listing_source": "allowlist"}
    if serial and (first or store.known_serial() <= 0):
        meta.update(upstream_serial=str(serial), changelog_serial=str(serial))
    store.set_meta(**meta)
    return UpstreamListing(serial or 0, list(names), [0] * len(names), "allowlist")


async def _confirmed_gone(client: PyPIClient, names: Sequence[str]) -> bool:
    """Whether every one of ``names`` answers 404 in the JSON API."""
    for name in names:
        try:
            await client.project_json(name)
        except NotFound:
            continue
        except UpstreamError:
            return False
        return False
    return True


def select_projects(store: MetadataStore, config: MirrorConfig) -> list[str]:
    """Apply project-level filters to the stored upstream listing; returns kept names."""
    pf = project_filter(config)
    names: list[str] = []
    for chunk in store.iter_upstream_display_names():
        names.extend(canonical(n) for n in pf.select(chunk))
    store.replace_selected_projects(names)
    store.set_meta(config_hash=config_hash(config), config=json.dumps(config.to_dict()))
    apply_closure(store, config)  # from stored metadata (or cleared); rounds fetch what is missing
    return names


async def apply_changelog(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    *,
    until: int | None = None,
    mark: bool = True,
) -> int | None:
    """Bring ``upstream_projects`` forward with XML-RPC ``changelog_since_serial``: a cost
    proportional to the changes, not to the index. New projects are listed (and selected
    when the filters keep them), removed ones unlisted. ``until``: the upstream's serial,
    when known (paging stops there; nothing is asked when the listing has reached it).
    Stored projects removed upstream are marked ``removed`` (unless not ``mark``: the
    caller does it). Returns the serial reached, or ``None`` when the upstream offers no
    changelog or the stored listing has no serial to start from (the caller then re-lists).
    Over the rate limit for longer than the run may wait, raises :class:`RateLimited`
    before anything is changed."""
    since = store.known_serial()
    if client.xmlrpc_missing is not None or since <= 0:
        return None  # no changelog; or no serial to start from (not the whole journal)
    if until is not None and 0 < until <= since:
        return since
    try:
        rows = await client.changelog_since(since, until=until)
    except RateLimited:
        raise
    except UpstreamError:
        return None
    latest, top = _latest_actions(rows, since, allowlist_only(config))
    removed = [n for n, (_d, _s, action) in latest.items() if action == "remove project"]
    changed = [(n, d, s) for n, (d, s, action) in latest.items() if action != "remove project"]
    store.upsert_listing(changed)
    store.remove_from_listing(removed)
    pf = project_filter(config)
    store.add_selected([canonical(d) for d in pf.select(d for _n, d, _s in changed)])
    if removed and mark:
        store.mark_removed(top)
    store.set_meta(changelog_serial=str(top))
    return top


def _latest_actions(
    rows: list[list[object]], since: int, only: list[str] | None
) -> tuple[dict[str, tuple[str, int, str]], int]:
    """Per normalised name, its last changelog row as ``(display name, serial, action)``
    (only the names of ``only``, when given); and the highest serial seen."""
    wanted = set(only) if only is not None else None
    latest: dict[str, tuple[str, int, str]] = {}
    top = since
    for row in rows:
        try:
            name, action, serial = row[0], str(row[3]), int(row[4])  # type: ignore[call-overload]
        except (IndexError, TypeError, ValueError):
            continue
        if not isinstance(name, str) or not is_valid_project_name(name):
            continue
        top = max(top, serial)
        norm = canonical(name)
        if wanted is not None and norm not in wanted:
            continue
        if norm not in latest or latest[norm][1] <= serial:
            latest[norm] = (name, serial, action)
    return latest, top


async def update_listing(
    client: PyPIClient, store: MetadataStore, config: MirrorConfig, serial: int | None
) -> ListingStep:
    """The listing step of a run (``serial``: the upstream's, from :meth:`last_serial`).

    An allowlist-only selection lists its projects as named. Otherwise the root listing is
    read for the first sync, when a reconciliation is due, or when the upstream offers no
    changelog; between those the changelog alone says what changed (new projects
    included). After a listing, the changelog since the listing's serial catches up what
    a cached root does not show yet. The selection is re-applied after a listing and when
    the config changed."""
    names = allowlist_only(config)
    if names is not None:
        listing = await list_upstream(client, store, config, serial=serial)
        select_projects(store, config)
        reached = await apply_changelog(client, store, config, until=serial, mark=False)
        what = f"allowlist ({len(names)} projects asked directly)"
        if reached is None:
            return ListingStep(listing.serial, CHANGES_CONDITIONAL, what, len(names))
        return ListingStep(reached, CHANGES_CHANGELOG, what, len(names), resolve=True)
    source = store.get_meta("listing_source")
    if source in (None, "allowlist") or store.upstream_count() == 0:
        why = "first sync"
    elif reconciliation_due(store, config):
        why = "reconciliation"
    else:
        reached = await apply_changelog(client, store, config, until=serial, mark=False)
        if reached is not None:
            if store.get_meta("config_hash") != config_hash(config):
                select_projects(store, config)
            return ListingStep(reached, CHANGES_CHANGELOG, "none", resolve=True)
        why = "no changelog"
    return await _full_listing(client, store, config, serial, why)


async def _full_listing(
    client: PyPIClient, store: MetadataStore, config: MirrorConfig, serial: int | None, why: str
) -> ListingStep:
    """Read the root listing, select, then catch up through the changelog if there is one."""
    listing = await list_upstream(client, store, config)
    serials_known = listing.source != "simple-html" and listing.serial > 0
    listed = len(listing)
    del listing.names, listing.serials  # stored; free ~100 MB at PyPI's scale
    select_projects(store, config)
    what = f"full ({why})"
    reached = await apply_changelog(client, store, config, until=serial, mark=False)
    if reached is not None:
        return ListingStep(reached, CHANGES_CHANGELOG, what, listed, resolve=True)
    changes = CHANGES_LISTING if serials_known else CHANGES_CONDITIONAL
    return ListingStep(listing.serial, changes, what, listed)
