"""Dependency closure: the allowlisted projects plus everything they need, transitively.

Pure: the caller supplies, for a project, the dependency rows of the files the filters keep
(or ``None`` when the project is not stored yet). bandersnatch declined this (its #1472).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .config import MirrorConfig
from .plugins import ProjectFilter, project_filter

__all__ = ["Closure", "DependencyRow", "closure_roots", "dependency_closure", "wanted"]


@dataclass(frozen=True, slots=True)
class DependencyRow:
    """One ``Requires-Dist`` of a kept file, as the ``dependencies`` table stores it."""

    dep_project: str | None
    dep_name: str | None
    specifier: str | None
    extras: Sequence[str]
    marker: str | None
    extra: str | None  # the extra of the requiring project that the marker names


@dataclass
class Closure:
    #: projects in the closure only (not roots) -> the requirements that pulled them in
    requirements: dict[str, list[Requirement]] = field(default_factory=dict)
    #: every project reached -> the extras requested of it
    extras: dict[str, set[str]] = field(default_factory=dict)
    required_by: dict[str, set[str]] = field(default_factory=dict)
    #: reached but not stored: the next round fetches these
    unresolved: set[str] = field(default_factory=set)
    #: required, but the upstream does not list them (set by the caller, which knows)
    unlisted: set[str] = field(default_factory=set)


def wanted(
    row: DependencyRow,
    requested: set[str],
    environments: Sequence[Mapping[str, str]],
    all_extras: bool = False,
) -> bool:
    """Does the requiring project need this dependency?

    An ``extra == "x"`` condition holds only when ``x`` was requested (or ``all_extras``).
    The rest of the marker is evaluated for each target environment (true in any of them
    suffices); with no environments every marker counts as true.
    """
    if row.extra is not None and not all_extras and canonicalize_name(row.extra) not in requested:
        return False
    if not row.marker or not environments:
        return True
    try:
        marker = Marker(row.marker)
    except InvalidMarker:
        return True  # keep what we cannot judge: a mirror with too much still installs
    extra = canonicalize_name(row.extra) if row.extra else ""
    return any(marker.evaluate({**env, "extra": extra}) for env in environments)


def closure_roots(config: MirrorConfig) -> dict[str, set[str]] | None:
    """The allowlisted projects with the extras their lines request, or ``None`` when no
    allowlist restricts the selection (then every project is selected anyway)."""
    roots: dict[str, set[str]] = {}
    lists: list[Iterable[Requirement]] = []
    if config.plugin_enabled("allowlist_project"):
        lists.append(Requirement(x) for x in config.requirement_lines("allowlist") if x)
    if config.plugin_enabled("project_requirements"):
        lists.append(config.file_requirements())
    for reqs in lists:
        for r in reqs:
            roots.setdefault(canonicalize_name(r.name), set()).update(
                canonicalize_name(e) for e in r.extras
            )
    return roots or None


def dependency_closure(
    roots: Mapping[str, set[str]],
    kept_dependencies: Callable[
        [str, Sequence[Requirement] | None], Iterable[DependencyRow] | None
    ],
    config: MirrorConfig,
) -> Closure:
    """Walk dependencies from ``roots`` to a fixed point. A project is walked again when the
    requirements or extras asked of it grow, since that can change which files it keeps."""
    pf = project_filter(config)
    blocked = ProjectFilter(allow=None, block=pf.block, regexes=pf.regexes)
    envs = config.closure_environments
    all_extras = config.closure_all_extras
    out = Closure(extras={name: set(extras) for name, extras in roots.items()})
    seen: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    queue = deque(sorted(roots))
    while queue:
        name = queue.popleft()
        reqs = out.requirements.get(name)
        state = (frozenset(map(str, reqs or ())), frozenset(out.extras.get(name, ())))
        if seen.get(name) == state:
            continue
        seen[name] = state
        rows = kept_dependencies(name, None if name in roots else reqs)
        if rows is None:
            out.unresolved.add(name)
            continue
        requested = out.extras.get(name, set())
        for row in rows:
            dep = row.dep_project
            if not dep or not row.dep_name or not wanted(row, requested, envs, all_extras):
                continue
            extras = {canonicalize_name(e) for e in row.extras}
            if dep not in roots:
                if not blocked.keep(row.dep_name):
                    continue
                try:
                    req = Requirement(f"{row.dep_name}{row.specifier or ''}")
                except InvalidRequirement:
                    continue
                have = out.requirements.setdefault(dep, [])
                if str(req) not in map(str, have):
                    have.append(req)
            if dep != name:
                out.required_by.setdefault(dep, set()).add(name)
            out.extras.setdefault(dep, set()).update(extras)
            queue.append(dep)
    return out
