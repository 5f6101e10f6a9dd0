"""The upstream listing: list (guarded against a listing that drops too much), catch up
through the changelog, and select projects with the config's project filters."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from ..filters import MirrorConfig, project_filter
from ..pypi import NotFound, PyPIClient, UpstreamError, canonical
from ..pypi.names import is_valid_project_name
from ..pypi.records import UpstreamListing
from ..store import MetadataStore
from ..store.duckdb_store import ListingShrank
from .selection import apply_closure
from .settings import config_hash

__all__ = ["UpstreamFault", "apply_changelog", "list_upstream", "select_projects"]

log = logging.getLogger("pypi_assets")


class UpstreamFault(UpstreamError):
    """The upstream answered, but with something a mirror must not act on (a listing that
    is empty or drops too many projects). Nothing was changed."""


async def list_upstream(
    client: PyPIClient, store: MetadataStore, config: MirrorConfig
) -> UpstreamListing:
    """Store the upstream project list; names that are not valid project names are dropped.

    A listing that is empty, or that drops more than ``[pypi_assets] max_removed_share`` of
    the stored projects, raises :class:`UpstreamFault` and changes nothing. A listing that
    drops a few projects (at most ``CONFIRMABLE_DROPS``) is taken only once each of them is
    confirmed gone: its project JSON answers 404 (as a quarantined project's does)."""
    listing = await client.list_projects()
    keep = [i for i, n in enumerate(listing.names) if is_valid_project_name(n)]
    if len(keep) != len(listing.names):
        log.warning(
            "ignoring %d invalid project names in the upstream listing",
            len(listing.names) - len(keep),
        )
        listing.names = [listing.names[i] for i in keep]
        listing.serials = [listing.serials[i] for i in keep]
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
    return listing


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
    client: PyPIClient, store: MetadataStore, config: MirrorConfig
) -> int | None:
    """Bring ``upstream_projects`` forward with XML-RPC ``changelog_since_serial``: a cost
    proportional to the changes, not to the index. Returns the serial reached, or ``None``
    when the upstream offers no changelog (the caller then re-lists)."""
    since = store.known_serial()
    try:
        rows = await client.changelog_since(since)
    except UpstreamError:
        return None
    latest: dict[str, tuple[str, int, str]] = {}
    top = since
    for row in rows:
        try:
            name, _version, _ts, action, serial = row[0], row[1], row[2], str(row[3]), int(row[4])
        except (IndexError, TypeError, ValueError):
            continue
        if not isinstance(name, str) or not is_valid_project_name(name):
            continue
        top = max(top, serial)
        norm = canonical(name)
        if norm not in latest or latest[norm][1] <= serial:
            latest[norm] = (name, serial, action)
    removed = [n for n, (_d, _s, action) in latest.items() if action == "remove project"]
    changed = [(n, d, s) for n, (d, s, action) in latest.items() if action != "remove project"]
    store.upsert_listing(changed)
    store.remove_from_listing(removed)
    pf = project_filter(config)
    store.add_selected([canonical(d) for d in pf.select(d for _n, d, _s in changed)])
    if removed:
        store.mark_removed(top)
    store.set_meta(changelog_serial=str(top))
    return top
