"""Which files the selection keeps: the release-file filters over stored rows, and the
dependency closure of an allowlist. No fetching."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from packaging.requirements import Requirement

from ..filters import (
    DependencyRow,
    MirrorConfig,
    ReleaseFileFilter,
    closure_roots,
    dependency_closure,
    release_file_filter,
)
from ..filters.closure import Closure
from ..pypi.records import StoredText
from ..store import MetadataStore
from .settings import config_hash

__all__ = ["apply_closure", "expected_selection", "recompute_selected_files"]


def _kept(
    store: MetadataStore, rff: ReleaseFileFilter, name: str, closure: Sequence[Requirement] | None
) -> list[str] | None:
    """Filenames the filters keep for one stored project (``None`` if not stored as ok)."""
    stored = store.load_stored(name)
    if stored is None:
        return None
    info = stored.info
    named = (info or {}).get("description")
    if info is not None and isinstance(named, StoredText) and rff.reads_info:
        # a rule may match the project's description: the one long text the filters read
        info = {**info, "description": store.long_texts([named.digest])[named.digest]}
    return rff.select(
        name,
        stored.latest_version,
        list(stored.releases.values()),
        list(stored.distributions.values()),
        info=info,
        serial=stored.serial,
        closure=closure,
    )


def _closure_requirements(store: MetadataStore) -> dict[str, list[Requirement]]:
    return {n: [Requirement(r) for r in reqs] for n, reqs in store.closure_requirements().items()}


def _kept_files(
    store: MetadataStore, rff: ReleaseFileFilter, names: Iterable[str]
) -> list[tuple[str, str]]:
    """``(project, filename)`` that the filters keep, from stored rows of the given
    (selected) projects; projects not stored as ``ok`` keep nothing. Projects selected only
    through the dependency closure are filtered with the requirements that pulled them in."""
    via = _closure_requirements(store)
    rows: list[tuple[str, str]] = []
    for name in sorted(names):
        rows.extend((name, fn) for fn in _kept(store, rff, name, via.get(name)) or ())
    return rows


def apply_closure(store: MetadataStore, config: MirrorConfig) -> Closure | None:
    """Compute the dependency closure of the allowlist from stored metadata and record it
    (``closure_projects``, added to ``selected_projects``). ``unresolved`` names what is not
    stored yet."""
    roots = closure_roots(config)
    if not config.dependency_closure or roots is None:
        store.replace_closure([])
        return None
    rff = release_file_filter(config)
    selected = store.selected_projects()
    roots = {n: e for n, e in roots.items() if n in selected}

    def deps(name: str, reqs: Sequence[Requirement] | None) -> list[DependencyRow] | None:
        kept = _kept(store, rff, name, reqs)
        if kept is None:
            return None
        return [DependencyRow(*r) for r in store.kept_dependencies(name, kept)]

    closure = dependency_closure(roots, deps, config)
    _todo, unlisted = store.refresh_candidates(sorted(closure.requirements))
    for name in unlisted:  # required, but upstream has no such project: nothing to select
        del closure.requirements[name]
        closure.unresolved.discard(name)
    closure.unlisted = unlisted
    store.replace_closure(
        [
            (
                name,
                [str(r) for r in reqs],
                sorted(closure.extras.get(name, ())),
                sorted(closure.required_by.get(name, ())),
            )
            for name, reqs in sorted(closure.requirements.items())
        ]
    )
    return closure


def expected_selection(store: MetadataStore, config: MirrorConfig) -> set[tuple[str, str]]:
    """``(project, filename)`` the current filters keep, computed afresh from stored rows."""
    return set(_kept_files(store, release_file_filter(config), store.selected_projects()))


def recompute_selected_files(
    store: MetadataStore, config: MirrorConfig, projects: Iterable[str] | None = None
) -> int:
    """``selected_files`` from stored metadata and the current filters. No fetching.

    With ``projects`` (those a run just changed) only their rows are recomputed, so an
    incremental run costs the same whatever the mirror's size; a changed config (or no
    ``projects``) recomputes everything.
    """
    rff = release_file_filter(config)
    chash = config_hash(config)
    full = (
        projects is None
        or config.dependency_closure  # a change can move the closure anywhere
        or store.get_meta("selection_config_hash") != chash
    )
    scope = None if full else sorted(set(projects or ()))
    if scope == []:
        return 0
    if not rff.active:
        store.select_all_files_of_selected_projects(scope)
    else:
        selected = (
            store.selected_projects() if scope is None else store.selected_projects_among(scope)
        )
        store.replace_selected_files(_kept_files(store, rff, selected), scope)
    if full:
        store.set_meta(selection_config_hash=chash)
    return len(scope) if scope is not None else store.selected_file_count()
