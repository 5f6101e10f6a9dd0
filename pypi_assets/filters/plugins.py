"""bandersnatch's filter plugins as pure functions over names and records. No I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..pypi.records import Distribution, Release
from .config import MirrorConfig

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
        """The kept names; the hot loop for ~900k names avoids per-name function calls."""
        allow, block, regexes = self.allow, self.block, self.regexes
        canon = canonicalize_name
        out: list[str] = []
        for name in names:
            c = canon(name)
            if allow is not None and c not in allow:
                continue
            if c in block:
                continue
            if regexes and any(r.match(name) for r in regexes):
                continue
            out.append(name)
        return out


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
        from .config import lines

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

    @property
    def active(self) -> bool:
        return bool(
            self.allow_specs is not None
            or self.block_specs
            or self.prerelease
            or self.release_regexes
            or self.latest_keep
            or self.platforms
        )

    def select(
        self,
        project: str,
        latest_version: str | None,
        releases: Sequence[Release],
        files: Sequence[Distribution],
    ) -> list[str]:
        """Filenames kept for one project."""
        by_version: dict[str, list[Distribution]] = {}
        for d in files:
            by_version.setdefault(d.release_version, []).append(d)
        # Releases left with no files are dropped before the release filters run.
        versions = [r.version for r in releases if by_version.get(r.version)]
        versions = [v for v in versions if self._keep_version(project, v)]
        if self.latest_keep > 0 and len(versions) > self.latest_keep:
            versions = self._latest(versions, latest_version, releases)
        kept: list[str] = []
        for v in versions:
            for d in by_version[v]:
                if self._keep_file(d):
                    kept.append(d.filename)
        return kept

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
            times = {r.version: r.upload_time for r in releases}
            ordered = sorted(
                versions, key=lambda v: (times.get(v) is not None, times.get(v) or 0), reverse=True
            )
        else:

            def key(v: str) -> tuple[int, Version | str]:
                try:
                    return (1, Version(v))
                except InvalidVersion:
                    return (0, v)

            ordered = sorted(versions, key=key, reverse=True)
        keep = ordered[: self.latest_keep]
        if latest and latest in versions and latest not in keep:
            keep.append(latest)
        return [v for v in versions if v in keep]

    def _keep_file(self, d: Distribution) -> bool:
        if not self.platforms or d.packagetype == "sdist":
            return True
        low = d.filename.lower()
        for token in self.platforms:
            if token.startswith("bdist_"):
                if d.packagetype == token:
                    return False
            elif token in low:
                return False
        return True


def _contains(req: Requirement, version: str) -> bool:
    if not req.specifier:
        return True
    try:
        return req.specifier.contains(version, prereleases=True)
    except InvalidVersion:
        return False


_PLATFORM_TOKENS: dict[str, tuple[str, ...]] = {
    "windows": ("win32", "win_amd64", "win_arm64", ".exe", ".msi", "bdist_wininst", "bdist_msi"),
    "win": ("win32", "win_amd64", "win_arm64", ".exe", ".msi", "bdist_wininst", "bdist_msi"),
    "macos": ("macosx_", "macosx-", ".dmg", "bdist_dmg"),
    "macosx": ("macosx_", "macosx-", ".dmg", "bdist_dmg"),
    "freebsd": ("freebsd",),
    "linux": (
        "linux-i686",
        "linux-x86_64",
        "linux_armv7l",
        "linux_i686",
        "linux_x86_64",
        "manylinux",
        "musllinux",
        ".rpm",
        "bdist_rpm",
    ),
    "py2": ("-py2.", "-py2-", "-cp2"),
    "py3": ("-py3.", "-py3-", "-cp3"),
}


def _platform_tokens(config: MirrorConfig) -> tuple[str, ...]:
    out: list[str] = []
    for line in config.requirement_lines("blocklist", "platforms"):
        token = line.lower()
        if token in _PLATFORM_TOKENS:
            out.extend(_PLATFORM_TOKENS[token])
        elif re.fullmatch(r"py3\.\d+", token):
            digits = token[2:].replace(".", "")
            out.extend((f"-py{token[2:]}-", f"-cp{digits}-"))
        else:
            out.append(token)
    return tuple(out)


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
    from .config import lines

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
    return ReleaseFileFilter(
        allow_specs=allow_specs,
        block_specs=block_specs,
        prerelease=prerelease,
        prerelease_only=frozenset(canonicalize_name(x) for x in only) if only else None,
        release_regexes=regexes,
        latest_keep=keep,
        latest_sort=(config.get("latest_release", "sort_by") or "version").strip(),
        platforms=_platform_tokens(config) if config.plugin_enabled("exclude_platform") else (),
    )
