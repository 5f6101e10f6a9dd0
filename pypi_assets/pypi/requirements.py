"""``Requires-Dist`` parsed with :mod:`packaging` into dependency rows."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

__all__ = ["Dependency", "marker_extras", "parse_dependency"]


@dataclass(slots=True)
class Dependency:
    requirement: str
    dep_name: str | None  # as written
    dep_project: str | None  # normalised, joins projects.name
    specifier: str | None
    extras: list[str]
    marker: str | None
    optional: bool  # only needed for an extra
    extra: str | None  # the extra that pulls it in, when the marker names one
    parse_error: str | None


def marker_extras(marker: Marker | None) -> list[str]:
    """The extras a marker mentions (``extra == "x"``)."""
    if marker is None:
        return []
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, tuple) and len(node) == 3:
            lhs, _op, rhs = node
            if getattr(lhs, "value", None) == "extra":
                found.append(str(getattr(rhs, "value", rhs)))
            elif getattr(rhs, "value", None) == "extra":
                found.append(str(getattr(lhs, "value", lhs)))

    walk(marker._markers)
    return found


def parse_dependency(text: str) -> Dependency:
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        return Dependency(text, None, None, None, [], None, False, None, str(exc))
    extras_in_marker = marker_extras(req.marker)
    return Dependency(
        requirement=text,
        dep_name=req.name,
        dep_project=canonicalize_name(req.name),
        specifier=str(req.specifier) or None,
        extras=sorted(req.extras),
        marker=str(req.marker) if req.marker else None,
        optional=bool(extras_in_marker),
        extra=extras_in_marker[0] if extras_in_marker else None,
        parse_error=None,
    )
