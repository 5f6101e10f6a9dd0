"""bandersnatch's filter plugins as pure functions over names and records. No I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..pypi.records import Distribution, Release
from ..pypi.warehouse import warehouse_file
from .config import MirrorConfig, lines, metadata_keys, parse_size

__all__ = [
    "MetadataFilter",
    "MetadataRules",
    "ProjectFilter",
    "ReleaseFileFilter",
    "project_filter",
    "release_file_filter",
]

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
    #: project_requirements: the names in the requirements files (None: off or no names).
    #: A separate plugin, so a project must pass it *and* allowlist_project, as in bandersnatch.
    allow_files: frozenset[str] | None = None

    def keep(self, name: str) -> bool:
        canon = canonicalize_name(name)
        if self.allow is not None and canon not in self.allow:
            return False
        if self.allow_files is not None and canon not in self.allow_files:
            return False
        if canon in self.block:
            return False
        return not any(r.match(name) for r in self.regexes)

    def select(self, names: Iterable[str]) -> list[str]:
        """The kept names. The hot loop over ~900k names normalises only when a name list is
        configured, and tries all regexes as one alternation."""
        allow, block = self.allow, self.block
        if self.allow_files is not None:
            allow = self.allow_files if allow is None else allow & self.allow_files
        sub = _SEPARATORS.sub  # PEP 503, as packaging.utils.canonicalize_name
        combined = _any_match(self.regexes)
        need_canon = allow is not None or bool(block)
        out: list[str] = []
        for name in names:
            if need_canon:
                if "_" in name or "." in name or "--" in name:
                    c = sub("-", name).lower()
                else:
                    c = name.lower()
                if (allow is not None and c not in allow) or c in block:
                    continue
            if combined is not None and combined(name):
                continue
            out.append(name)
        return out


def _any_match(regexes: tuple[re.Pattern[str], ...]) -> Callable[[str], object] | None:
    """Whether any pattern ``re.match``-es a name (a single-line string), in at most two
    regex calls: patterns that start with ``.*`` become one ``search`` without it, the others
    one ``match``. Falls back to one call per pattern when they cannot be combined."""
    if not regexes:
        return None
    if any(_BACKREF.search(r.pattern) for r in regexes):
        return lambda name: any(r.match(name) for r in regexes)  # group numbers would shift
    searched: list[str] = []
    matched: list[str] = []
    for r in regexes:
        m = _GLOBAL_FLAGS.match(r.pattern)
        flags, body = (m.group(1), r.pattern[m.end() :]) if m else ("", r.pattern)
        # match(".*R") finds R anywhere in a string without newlines: search("R") does too
        if (
            body.startswith(".*")
            and body[2:3] not in ("*", "+", "?", "{")
            and not set(flags) & {"s", "x"}
        ):
            searched.append(f"(?{flags}:{body[2:]})")
        else:
            matched.append(f"(?{flags}:{body})")
    try:
        s = re.compile("|".join(searched)).search if searched else None
        mt = re.compile("|".join(matched)).match if matched else None
    except re.error:  # e.g. the same group name in two patterns
        return lambda name: any(r.match(name) for r in regexes)
    if s is None:
        return mt
    if mt is None:
        return s
    return lambda name: s(name) or mt(name)


_GLOBAL_FLAGS = re.compile(r"^\(\?([imsx]+)\)")
_BACKREF = re.compile(r"\\[1-9]|\(\?P=")


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
    allow_files: frozenset[str] | None = None
    if config.plugin_enabled("project_requirements"):
        allow_files = frozenset(canonicalize_name(r.name) for r in config.file_requirements())
        allow_files = allow_files or None
    return ProjectFilter(allow=allow, block=block, regexes=regexes, allow_files=allow_files)


# ---------------------------------------------------------------------- metadata level
def _scalar(value: Any) -> str:
    """A JSON value as the text a regex sees (bandersnatch would raise on non-strings)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _at_path(path: str, data: Mapping[str, Any]) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or node.get(part) is None:
            return None
        node = node[part]
    return node


@dataclass(frozen=True)
class MetadataRules:
    """bandersnatch's ``regex_*_metadata`` rules: every key must match. A key is
    ``[any|all|none|match-null|not-null:]dotted.path``; its value is one regex per line."""

    rules: tuple[tuple[str, bool, str, tuple[re.Pattern[str], ...]], ...]  # mode, nulls, path
    search: bool = False

    @classmethod
    def from_section(cls, section: Mapping[str, str]) -> MetadataRules | None:
        rules = tuple(
            (*_tag_modes(tags), path, tuple(re.compile(x) for x in lines(section[key])))
            for key, tags, path in metadata_keys(dict(section))
        )
        search = section.get("search", "false").strip().lower() in ("1", "yes", "true", "on")
        return cls(rules=rules, search=search) if rules else None

    def keep(self, metadata: Mapping[str, Any]) -> bool:
        return all(self._rule(*rule, metadata) for rule in self.rules)

    def _rule(
        self,
        mode: str,
        nulls_match: bool,
        path: str,
        patterns: tuple[re.Pattern[str], ...],
        metadata: Mapping[str, Any],
    ) -> bool:
        node = _at_path(path, metadata)
        values = (
            []
            if node is None
            else [_scalar(v) for v in (node if isinstance(node, list) else [node])]
        )

        def hit(p: re.Pattern[str]) -> bool:
            return any((p.search if self.search else p.match)(v) for v in values)

        if not values:  # a null counts as a match unless not-null
            if mode == "all":
                return nulls_match or not patterns
            matched = nulls_match and bool(patterns)
            return not matched if mode == "none" else matched
        if mode == "all":
            return all(hit(p) for p in patterns)
        matched = any(hit(p) for p in patterns)
        return not matched if mode == "none" else matched


def _tag_modes(tags: Sequence[str]) -> tuple[str, bool]:
    """Tags read left to right, the last one of each kind winning (as bandersnatch)."""
    mode, nulls_match = "any", True
    for tag in tags:
        if tag in ("any", "all", "none"):
            mode = tag
        elif tag in ("match-null", "not-null"):
            nulls_match = tag == "match-null"
    return mode, nulls_match


@dataclass(frozen=True)
class MetadataFilter:
    """Metadata-level plugins over a project's stored JSON: total size, version count and
    regexes. Names in ``[allowlist] packages`` bypass the size and count limits."""

    max_size: int = 0
    min_versions: int = 0
    max_versions: int = 0
    bypass: frozenset[str] = frozenset()
    rules: MetadataRules | None = None

    def keep(
        self,
        project: str,
        info: Mapping[str, Any] | None,
        serial: int,
        releases: Sequence[Release],
        files: Sequence[Distribution],
    ) -> bool:
        limited = not (self.bypass and project in self.bypass)
        if limited and self.max_size > 0 and sum(d.size for d in files) > self.max_size:
            return False
        if limited and (self.min_versions or self.max_versions):
            count = len(releases)
            if self.min_versions and count < self.min_versions:
                return False
            if self.max_versions and count > self.max_versions:
                return False
        if self.rules is not None:
            return self.rules.keep({"info": dict(info or {}), "last_serial": serial})
        return True


def metadata_filter(config: MirrorConfig) -> MetadataFilter | None:
    allow = frozenset(canonicalize_name(r.name) for r in _requirements(config, "allowlist"))
    size = 0
    if config.plugin_enabled("size_project_metadata"):
        size = parse_size(config.get("size_project_metadata", "max_package_size") or "0")
    lo = hi = 0
    if config.plugin_enabled("versions_count_project_metadata"):
        lo = int(config.get("versions_count_project_metadata", "min_versions") or 0)
        hi = int(config.get("versions_count_project_metadata", "max_versions") or 0)
    rules = None
    if config.plugin_enabled("regex_project_metadata"):
        rules = MetadataRules.from_section(config.sections.get("regex_project_metadata", {}))
    if not (size or lo or hi or rules):
        return None
    return MetadataFilter(
        max_size=size, min_versions=lo, max_versions=hi, bypass=allow, rules=rules
    )


def file_json(d: Distribution) -> dict[str, Any]:
    """A stored file as the project JSON's ``releases[v][i]`` object."""
    return warehouse_file(
        filename=d.filename,
        packagetype=d.packagetype,
        python_version=d.python_version,
        requires_python=d.file_requires_python,
        size=d.size,
        upload_time=d.upload_time,
        url=d.url,
        sha256=d.sha256,
        md5=d.md5,
        blake2b_256=d.blake2b_256,
        yanked=d.yanked,
        yanked_reason=d.yanked_reason,
    )


@dataclass(frozen=True)
class VersionRanges:
    """``version_range_release_file_metadata``: the specifier at each path (for example
    ``release_file.requires_python``) must contain one of the listed versions."""

    rules: tuple[tuple[bool, str, tuple[Version, ...]], ...]  # nulls_match, path, versions

    def keep(self, metadata: Mapping[str, Any]) -> bool:
        for nulls_match, path, versions in self.rules:
            node = _at_path(path, metadata)
            try:
                spec = SpecifierSet(node) if isinstance(node, str) and node.strip() else None
            except InvalidSpecifier:
                spec = None  # as pip: an unparseable requires-python is treated as absent
            if spec is None:
                if not nulls_match:
                    return False
                continue
            if not any(spec.contains(v, prereleases=True) for v in versions):
                return False
        return True


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
    metadata: MetadataFilter | None = None
    #: project_requirements_pinned: requirements of the requirements files, by project
    pinned: dict[str, list[Requirement]] | None = None
    file_rules: MetadataRules | None = None
    version_ranges: VersionRanges | None = None

    @property
    def active(self) -> bool:
        return bool(
            self.metadata is not None
            or self.pinned is not None
            or self.file_rules is not None
            or self.version_ranges is not None
            or self.allow_specs is not None
            or self.block_specs
            or self.prerelease
            or self.release_regexes
            or self.latest_keep
            or self.platforms
            or self.platform_types
        )

    @property
    def reads_info(self) -> bool:
        """Whether a rule reads the project JSON's ``info`` (its description among it)."""
        return (
            self.metadata is not None
            or self.file_rules is not None
            or self.version_ranges is not None
        )

    def select(
        self,
        project: str,
        latest_version: str | None,
        releases: Sequence[Release],
        files: Sequence[Distribution],
        info: Mapping[str, Any] | None = None,
        serial: int = 0,
        closure: Sequence[Requirement] | None = None,
    ) -> list[str]:
        """Filenames kept for one project, in bandersnatch's order: the metadata filters on
        the whole project, then the file filters, releases left with no files dropped, then the
        release filters, with latest_release ranking only the versions the other release
        filters kept (docs/filters.md).

        ``closure``: the project is in the selection only as a dependency; these requirements
        (those that pulled it in) stand in for the allowlists' specifiers."""
        if self.metadata is not None and not self.metadata.keep(
            project, info, serial, releases, files
        ):
            return []
        by_version: dict[str, list[Distribution]] = {}
        for d in files:
            if self._keep_file(d, info):
                by_version.setdefault(d.release_version, []).append(d)
        versions = [r.version for r in releases if by_version.get(r.version)]
        pins = self.pinned.get(project) if self.pinned is not None and closure is None else None
        if pins and any(r.specifier for r in pins):
            # bandersnatch: a project pinned in the requirements files gets only its pins;
            # the other release filters do not run for it.
            versions = [v for v in versions if _allowed(pins, v)]
        else:
            versions = [v for v in versions if self._keep_version(project, v, closure)]
            if self.latest_keep > 0:
                versions = self._latest(versions, latest_version, releases)
        return [d.filename for v in versions for d in by_version[v]]

    def _keep_version(
        self, project: str, version: str, closure: Sequence[Requirement] | None = None
    ) -> bool:
        for lists in (self.allow_specs, self.pinned):
            if lists is not None:
                reqs = closure if closure is not None else lists.get(project)
                if not reqs or not _allowed(reqs, version):
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

    def _keep_file(self, d: Distribution, info: Mapping[str, Any] | None = None) -> bool:
        if self.file_rules is not None or self.version_ranges is not None:
            meta = {
                "info": dict(info or {}),
                "release": d.release_version,
                "release_file": file_json(d),
            }
            if self.file_rules is not None and not self.file_rules.keep(meta):
                return False
            if self.version_ranges is not None and not self.version_ranges.keep(meta):
                return False
        if d.packagetype == "sdist":
            return True  # source distributions are never dropped by exclude_platform
        if d.packagetype in self.platform_types:
            return False
        return not any(p in d.filename for p in self.platforms)


def _allowed(reqs: Sequence[Requirement], version: str) -> bool:
    """allowlist_release / project_requirements_pinned: a valid version in any specifier."""
    try:
        v = Version(version)
    except InvalidVersion:
        return False  # as bandersnatch: an invalid version is never allowlisted
    return any(r.specifier.contains(v, prereleases=True) for r in reqs)


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


def _by_project(reqs: Iterable[Requirement]) -> dict[str, list[Requirement]]:
    out: dict[str, list[Requirement]] = {}
    for r in reqs:
        out.setdefault(canonicalize_name(r.name), []).append(r)
    return out


def _allow_specs(config: MirrorConfig) -> dict[str, list[Requirement]] | None:
    """``allowlist_release``: the allowed specifiers per project (``None``: no restriction)."""
    if not config.plugin_enabled("allowlist_release"):
        return None
    return _by_project(_requirements(config, "allowlist")) or None


def _block_specs(config: MirrorConfig) -> dict[str, list[Requirement]]:
    if not config.plugin_enabled("blocklist_release"):
        return {}
    return _by_project(r for r in _requirements(config, "blocklist") if r.specifier)


def _pinned(config: MirrorConfig) -> dict[str, list[Requirement]] | None:
    if not config.plugin_enabled("project_requirements_pinned"):
        return None
    return _by_project(config.file_requirements()) or None


def _file_rules(config: MirrorConfig) -> MetadataRules | None:
    if not config.plugin_enabled("regex_release_file_metadata"):
        return None
    return MetadataRules.from_section(config.sections.get("regex_release_file_metadata", {}))


def _version_ranges(config: MirrorConfig) -> VersionRanges | None:
    if not config.plugin_enabled("version_range_release_file_metadata"):
        return None
    section = config.sections.get("version_range_release_file_metadata", {})
    rules = tuple(
        (_tag_modes(tags)[1], path, tuple(Version(x) for x in lines(section[key])))
        for key, tags, path in metadata_keys(section)
    )
    return VersionRanges(rules) if rules else None


def release_file_filter(config: MirrorConfig) -> ReleaseFileFilter:
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
        metadata=metadata_filter(config),
        pinned=_pinned(config),
        file_rules=_file_rules(config),
        version_ranges=_version_ranges(config),
        allow_specs=_allow_specs(config),
        block_specs=_block_specs(config),
        prerelease=config.plugin_enabled("prerelease_release"),
        prerelease_only=frozenset(canonicalize_name(x) for x in only) if only else None,
        release_regexes=regexes,
        latest_keep=keep,
        latest_sort=(config.get("latest_release", "sort_by") or "version").strip(),
        platforms=platforms,
        platform_types=platform_types,
    )
