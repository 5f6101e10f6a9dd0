"""bandersnatch's filter plugins as pure functions over names and records. No I/O."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..pypi.records import Distribution, Release
from .config import MirrorConfig, lines

__all__ = ["ProjectFilter", "ReleaseFileFilter", "project_filter", "release_file_filter"]

PROJECT_PLUGINS = ("allowlist_project", "blocklist_project", "regex_project")
RELEASE_PLUGINS = (
    "allowlist_release",
    "blocklist_release",
    "prerelease_release",
    "regex_release",
    "latest_release",
)
FILE_PLUGINS = ("exclude_platform",)

_SEPARATORS = re.compile(r"[-_.]+")
_PRERELEASE = [
    re.compile(p) for p in (r".+rc\d+$", r".+a(lpha)?\d+$", r".+b(eta)?\d+$", r".+dev\d+$")
]


def _requirements(config: MirrorConfig, section: str) -> list[Requirement]:
    return [Requirement(line) for line in config.requirement_lines(section) if line]


@dataclass(frozen=True)
class ProjectFilter:
    """Project-level plugins. ``keep`` sees upstream display names, like bandersnatch."""

    allow: frozenset[str] | None  # None: allowlist plugin off or empty list
    block: frozenset[str]
    regexes: tuple[re.Pattern[str], ...]

    def keep(self, name: str) -> bool:
        canon = canonicalize_name(name)
        if self.allow is not None and canon not in self.allow:
            return False
        if canon in self.block:
            return False
        return not any(r.match(name) for r in self.regexes)

    def select(self, names: Iterable[str]) -> list[str]:
        """The kept names. The hot loop over ~900k names normalises only when a name list is
        configured, and tries all regexes as one alternation."""
        allow, block = self.allow, self.block
        sub = _SEPARATORS.sub  # PEP 503, as packaging.utils.canonicalize_name
        combined = _any_match(self.regexes)
        need_canon = allow is not None or bool(block)
        out: list[str] = []
        for name in names:
            if need_canon:
                c = sub("-", name).lower()
                if (allow is not None and c not in allow) or c in block:
                    continue
            if combined is not None and combined(name):
                continue
            out.append(name)
        return out


def _any_match(regexes: tuple[re.Pattern[str], ...]) -> Callable[[str], object] | None:
    """One ``match`` for several patterns (re.match semantics for each)."""
    if not regexes:
        return None
    try:
        return re.compile("|".join(f"(?:{r.pattern})" for r in regexes)).match
    except re.error:  # e.g. the same group name in two patterns
        return lambda name: any(r.match(name) for r in regexes)


def project_filter(config: MirrorConfig) -> ProjectFilter:
    allow: frozenset[str] | None = None
    if config.plugin_enabled("allowlist_project"):
        names = frozenset(canonicalize_name(r.name) for r in _requirements(config, "allowlist"))
        allow = names or None
    block: frozenset[str] = frozenset()
    if config.plugin_enabled("blocklist_project"):
        block = frozenset(
            canonicalize_name(r.name) for r in _requirements(config, "blocklist") if not r.specifier
        )
    regexes: tuple[re.Pattern[str], ...] = ()
    if config.plugin_enabled("regex_project"):
        regexes = tuple(re.compile(p) for p in lines(config.get("filter_regex", "packages")))
    return ProjectFilter(allow=allow, block=block, regexes=regexes)


@dataclass(frozen=True)
class ReleaseFileFilter:
    """Release- and file-level plugins applied to stored metadata (no fetching)."""

    allow_specs: dict[str, list[Requirement]] | None
    block_specs: dict[str, list[Requirement]]
    prerelease: bool
    prerelease_only: frozenset[str] | None
    release_regexes: tuple[re.Pattern[str], ...]
    latest_keep: int
    latest_sort: str
    platforms: tuple[str, ...]
    platform_types: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return bool(
            self.allow_specs is not None
            or self.block_specs
            or self.prerelease
            or self.release_regexes
            or self.latest_keep
            or self.platforms
            or self.platform_types
        )

    def select(
        self,
        project: str,
        latest_version: str | None,
        releases: Sequence[Release],
        files: Sequence[Distribution],
    ) -> list[str]:
        """Filenames kept for one project, in bandersnatch's order: file filters first,
        releases left with no files dropped, then the release filters, with latest_release
        ranking only the versions the other release filters kept (docs/filters.md)."""
        by_version: dict[str, list[Distribution]] = {}
        for d in files:
            if self._keep_file(d):
                by_version.setdefault(d.release_version, []).append(d)
        versions = [r.version for r in releases if by_version.get(r.version)]
        versions = [v for v in versions if self._keep_version(project, v)]
        if self.latest_keep > 0:
            versions = self._latest(versions, latest_version, releases)
        return [d.filename for v in versions for d in by_version[v]]

    def _keep_version(self, project: str, version: str) -> bool:
        if self.allow_specs is not None:
            reqs = self.allow_specs.get(project)
            if not reqs or not any(_contains(r, version) for r in reqs):
                return False
        for r in self.block_specs.get(project, ()):
            if _contains(r, version):
                return False
        if (
            self.prerelease
            and (self.prerelease_only is None or project in self.prerelease_only)
            and any(p.match(version) for p in _PRERELEASE)
        ):
            return False
        return not any(r.match(version) for r in self.release_regexes)

    def _latest(
        self, versions: list[str], latest: str | None, releases: Sequence[Release]
    ) -> list[str]:
        if self.latest_sort == "time":
            if self.latest_keep > len(versions):
                return versions
            times = {r.version: r.upload_time for r in releases}
            ordered = sorted(
                versions, key=lambda v: (times.get(v) is not None, times.get(v) or 0), reverse=True
            )
        else:
            parsed: list[tuple[Version, str]] = []
            for v in versions:
                try:
                    parsed.append((Version(v), v))
                except InvalidVersion:
                    continue  # as bandersnatch: a non-PEP 440 version is never among the latest
            ordered = [v for _p, v in sorted(parsed, reverse=True)]
        keep = ordered[: self.latest_keep]
        # upstream's "latest" (info.version) is always kept, in place of the last one
        if latest and latest in versions and latest not in keep:
            if len(keep) < self.latest_keep:
                keep.append(latest)
            else:
                keep[-1] = latest
        return [v for v in versions if v in keep]

    def _keep_file(self, d: Distribution) -> bool:
        if d.packagetype == "sdist":
            return True  # source distributions are never dropped
        if d.packagetype in self.platform_types:
            return False
        return not any(p in d.filename for p in self.platforms)


def _contains(req: Requirement, version: str) -> bool:
    if not req.specifier:
        return True
    try:
        return req.specifier.contains(version, prereleases=True)
    except InvalidVersion:
        return False


_PYTHON_VERSIONS = frozenset(
    {"py2", "py2.4", "py2.5", "py2.6", "py2.7", "py3", *(f"py3.{i}" for i in range(15))}
)
_WINDOWS = (".win32", "-win32", "win_amd64", "win-amd64", "win_arm64", "win-arm64")
_LINUX = (
    "linux-i686",
    "linux-x86_64",
    "linux_armv7l",
    "linux_armv6l",
    "manylinux1_i686",
    "manylinux1_x86_64",
    "manylinux2010_i686",
    "manylinux2010_x86_64",
    "manylinux2014_x86_64",
    "manylinux2014_i686",
    "manylinux2014_aarch64",
    "manylinux2014_armv7l",
    "manylinux2014_ppc64",
    "manylinux2014_ppc64le",
    "manylinux2014_s390x",
    # Not in bandersnatch's list, though PEP 425 names them so: plain linux wheels (docs/filters.md).
    "linux_x86_64",
    "linux_i686",
    "linux_aarch64",
    "-manylinux_",
    "musllinux",
)
# packaging.tags.INTERPRETER_SHORT_NAMES without "py", as bandersnatch's parse_version uses them.
_INTERPRETERS = ("cp", "pp", "ip", "jy")


def _python_patterns(token: str) -> list[str]:
    with_dot = token.removeprefix("py")
    without = with_dot.replace(".", "")
    return [f"-{i}{without}-" for i in _INTERPRETERS] + [f"-py{with_dot}-", f"-py{with_dot}."]


def _platform_rules(config: MirrorConfig) -> tuple[tuple[str, ...], frozenset[str]]:
    """bandersnatch's exclude_platform: filename substrings and packagetypes to drop.
    Tokens are whitespace-separated, case-insensitive; unknown tokens are ignored."""
    patterns: list[str] = []
    types: set[str] = set()
    for token in (config.get("blocklist", "platforms") or "").split():
        t = token.lower()
        if t in ("windows", "win"):
            patterns.extend(_WINDOWS)
            types.update(("bdist_msi", "bdist_wininst"))
        elif t in ("macos", "macosx"):
            patterns.extend(("macosx_", "macosx-"))
            types.add("bdist_dmg")
        elif t == "freebsd":
            patterns.extend((".freebsd", "-freebsd"))
        elif t == "linux":
            patterns.extend(_LINUX)
            types.add("bdist_rpm")
        elif t in _PYTHON_VERSIONS:
            patterns.extend(_python_patterns(t))
        elif t in _WINDOWS or t in _LINUX:
            patterns.append(t)
    return tuple(patterns), frozenset(types)


def release_file_filter(config: MirrorConfig) -> ReleaseFileFilter:
    allow_specs: dict[str, list[Requirement]] | None = None
    if config.plugin_enabled("allowlist_release"):
        allow_specs = {}
        for r in _requirements(config, "allowlist"):
            allow_specs.setdefault(canonicalize_name(r.name), []).append(r)
        if not allow_specs:
            allow_specs = None
    block_specs: dict[str, list[Requirement]] = {}
    if config.plugin_enabled("blocklist_release"):
        for r in _requirements(config, "blocklist"):
            if r.specifier:
                block_specs.setdefault(canonicalize_name(r.name), []).append(r)
    prerelease = config.plugin_enabled("prerelease_release")
    only = config.requirement_lines("filter_prerelease")
    regexes = (
        tuple(re.compile(p) for p in lines(config.get("filter_regex", "releases")))
        if config.plugin_enabled("regex_release")
        else ()
    )
    keep = (
        int(config.get("latest_release", "keep") or 0)
        if config.plugin_enabled("latest_release")
        else 0
    )
    platforms, platform_types = (
        _platform_rules(config) if config.plugin_enabled("exclude_platform") else ((), frozenset())
    )
    return ReleaseFileFilter(
        allow_specs=allow_specs,
        block_specs=block_specs,
        prerelease=prerelease,
        prerelease_only=frozenset(canonicalize_name(x) for x in only) if only else None,
        release_regexes=regexes,
        latest_keep=keep,
        latest_sort=(config.get("latest_release", "sort_by") or "version").strip(),
        platforms=platforms,
        platform_types=platform_types,
    )
