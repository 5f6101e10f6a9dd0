"""bandersnatch configuration as a value.

Parsing follows bandersnatch 8.2: ``ConfigParser`` with ``=`` as the only delimiter,
case-sensitive keys, ``%`` interpolation, whole-line ``#``/``;`` comments only, blank lines
kept inside multi-line values, ``[DEFAULT]`` leaking into every section, and bandersnatch's
defaults read before the user's file. There is no global singleton: a :class:`MirrorConfig` is a
plain value you pass around, and ``to_dict()`` / ``from_dict()`` store it as JSON.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement

__all__ = ["ConfigError", "MirrorConfig", "load", "loads"]

DEFAULTS = """\
[mirror]
directory = /srv/pypi
master = https://pypi.org
json = false
release-files = true
cleanup = false
workers = 3
timeout = 10
global-timeout = 1800
stop-on-error = false
hash-index = false
simple-format = ALL
compare-method = hash
digest_name = sha256
keep_index_versions = 0
"""

#: [mirror] options that change what pypi-assets does.
MAPPED_MIRROR_KEYS = frozenset(
    {
        "master",
        "workers",
        "timeout",
        "global-timeout",
        "release-files",
        "core-metadata",
        "simple-format",
        "root_uri",
        "digest_name",
        "stop-on-error",
        "directory",
        "storage-backend",
        "allow-non-https",
        "json",
    }
)
#: [mirror] options bandersnatch knows that have no counterpart here: accepted, with a warning.
UNMAPPED_MIRROR_KEYS = frozenset(
    {
        "hash-index",
        "compare-method",
        "keep_index_versions",
        "diff-file",
        "diff-append-epoch",
        "download-mirror",
        "download-mirror-no-fallback",
        "cleanup",
        "proxy",
        "verifiers",
        "log-config",
    }
)
KNOWN_SECTIONS = frozenset(
    {
        "mirror",
        "plugins",
        "allowlist",
        "blocklist",
        "filter_regex",
        "filter_prerelease",
        "latest_release",
        "size_project_metadata",
        "versions_count_project_metadata",
        "regex_project_metadata",
        "regex_release_file_metadata",
        "version_range_release_file_metadata",
        "s3",
        "pypi_assets",
    }
)
_BOOL = {
    "1": True,
    "yes": True,
    "true": True,
    "on": True,
    "0": False,
    "no": False,
    "false": False,
    "off": False,
}


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the file, section and key."""

    def __init__(self, source: str, section: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: [{section}] {key}: {problem}")
        self.source, self.section, self.key = source, section, key


def _parser(interpolation: bool) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
        empty_lines_in_values=True,
        interpolation=configparser.BasicInterpolation() if interpolation else None,
        strict=True,
    )
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    return cp


def lines(value: str | None) -> list[str]:
    """A multi-line value as its non-empty, non-comment lines."""
    if not value:
        return []
    out = []
    for line in value.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


@dataclass(frozen=True)
class MirrorConfig:
    """A parsed, validated bandersnatch config. Behaviour depends only on ``sections``."""

    sections: dict[str, dict[str, str]]
    source: str = "<string>"
    warnings: tuple[str, ...] = field(default=(), compare=False)

    # -------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MirrorConfig:
        if data.get("format") != 1 or not isinstance(data.get("sections"), dict):
            raise ValueError("not a pypi-assets MirrorConfig dict (format 1)")
        sections = {
            str(s): {str(k): str(v) for k, v in kv.items()} for s, kv in data["sections"].items()
        }
        return _validated(sections, str(data.get("source", "<dict>")))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (resolved values, interpolation already applied)."""
        return {
            "format": 1,
            "source": self.source,
            "sections": {s: dict(kv) for s, kv in self.sections.items()},
        }

    # -------------------------------------------------------------- access
    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        return self.sections.get(section, {}).get(key, default)

    def getbool(self, section: str, key: str, default: bool = False) -> bool:
        value = self.get(section, key)
        if value is None:
            return default
        return _BOOL[value.strip().lower()]

    @property
    def master(self) -> str:
        return (self.get("mirror", "master") or "https://pypi.org").rstrip("/")

    @property
    def workers(self) -> int:
        return int(self.get("mirror", "workers") or 3)

    @property
    def timeout(self) -> float:
        return float(self.get("mirror", "timeout") or 10)

    @property
    def global_timeout(self) -> float:
        return float(self.get("mirror", "global-timeout") or 1800)

    @property
    def release_files(self) -> bool:
        return self.getbool("mirror", "release-files", True)

    @property
    def core_metadata(self) -> bool:
        return self.getbool("mirror", "core-metadata", True)

    @property
    def stop_on_error(self) -> bool:
        return self.getbool("mirror", "stop-on-error", False)

    @property
    def simple_format(self) -> str:
        return (self.get("mirror", "simple-format") or "ALL").upper()

    @property
    def directory(self) -> str | None:
        return self.get("mirror", "directory")

    @property
    def enabled_plugins(self) -> tuple[str, ...]:
        """One name per line; ``all`` enables every plugin. A comma-separated single line
        enables nothing in bandersnatch; we accept it and warn (docs/filters.md)."""
        names: list[str] = []
        for line in lines(self.get("plugins", "enabled")):
            names.extend(part.strip() for part in line.split(",") if part.strip())
        return tuple(names)

    def plugin_enabled(self, name: str) -> bool:
        enabled = self.enabled_plugins
        return "all" in enabled or name in enabled

    def requirement_lines(self, section: str, key: str = "packages") -> list[str]:
        return [strip_inline_comment(x) for x in lines(self.get(section, key))]


def strip_inline_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


def _validated(
    sections: dict[str, dict[str, str]], source: str, user_keys: dict[str, set[str]] | None = None
) -> MirrorConfig:
    """Check values; warnings name only what the user's file itself set."""
    warnings: list[str] = []
    for section in sections:
        if section not in KNOWN_SECTIONS and section != "DEFAULT":
            warnings.append(f"{source}: unknown section [{section}] ignored")
    mirror = sections.get("mirror", {})
    mine = user_keys.get("mirror", set()) if user_keys is not None else set(mirror)
    unmapped = sorted(k for k in mirror if k in UNMAPPED_MIRROR_KEYS and k in mine)
    unknown = sorted(
        k for k in mirror if k not in MAPPED_MIRROR_KEYS | UNMAPPED_MIRROR_KEYS and k in mine
    )
    if unmapped:
        warnings.append(
            f"{source}: [mirror] options with no pypi-assets counterpart, accepted: {', '.join(unmapped)}"
        )
    for key in unknown:
        warnings.append(f"{source}: unknown key [mirror] {key} ignored")

    enabled = sections.get("plugins", {}).get("enabled", "")
    if any("," in line for line in lines(enabled)):
        warnings.append(
            f"{source}: [plugins] enabled: a comma-separated line enables nothing in bandersnatch; "
            "pypi-assets enables every plugin it names (docs/filters.md)"
        )

    def err(section: str, key: str, problem: str) -> ConfigError:
        return ConfigError(source, section, key, problem)

    for key in (
        "json",
        "release-files",
        "core-metadata",
        "stop-on-error",
        "allow-non-https",
        "cleanup",
        "hash-index",
    ):
        if key in mirror and mirror[key].strip().lower() not in _BOOL:
            raise err("mirror", key, f"not a boolean: {mirror[key]!r}")
    try:
        workers = int(mirror.get("workers", "3"))
    except ValueError:
        raise err("mirror", "workers", f"not an integer: {mirror.get('workers')!r}") from None
    if not 1 <= workers <= 10:
        raise err("mirror", "workers", f"must be between 1 and 10, got {workers}")
    for key in ("timeout", "global-timeout"):
        if key in mirror:
            try:
                if float(mirror[key]) <= 0:
                    raise ValueError
            except ValueError:
                raise err("mirror", key, f"not a positive number: {mirror[key]!r}") from None
    master = mirror.get("master", "https://pypi.org")
    parts = urlsplit(master)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise err("mirror", "master", f"not an http(s) URL: {master!r}")
    allow_http = mirror.get("allow-non-https", "false").strip().lower() in (
        "1",
        "yes",
        "true",
        "on",
    )
    if parts.scheme != "https" and not allow_http:
        raise err(
            "mirror", "master", f"{master!r} is not https; set allow-non-https = true to permit it"
        )
    fmt = mirror.get("simple-format", "ALL").strip().upper()
    if fmt not in ("ALL", "HTML", "JSON"):
        raise err(
            "mirror",
            "simple-format",
            f"must be ALL, HTML or JSON, got {mirror.get('simple-format')!r}",
        )
    backend = mirror.get("storage-backend", "filesystem").strip()
    if backend not in ("filesystem", "s3"):
        raise err("mirror", "storage-backend", f"must be filesystem or s3, got {backend!r}")
    # Requirement lines and regexes are checked eagerly so a bad config syncs nothing.
    for section in ("allowlist", "blocklist"):
        for line in lines(sections.get(section, {}).get("packages")):
            text = strip_inline_comment(line)
            if not text:
                continue
            try:
                Requirement(text)
            except InvalidRequirement as exc:
                raise err(section, "packages", f"bad requirement line {line!r}: {exc}") from None
    for section, keys in (("filter_regex", ("packages", "releases")),):
        for key in keys:
            for line in lines(sections.get(section, {}).get(key)):
                try:
                    re.compile(line)
                except re.error as exc:
                    raise err(section, key, f"bad regex {line!r}: {exc}") from None
    return MirrorConfig(sections=sections, source=source, warnings=tuple(warnings))


def _sections(cp: configparser.ConfigParser, source: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for section in cp.sections():
        try:
            out[section] = {k: v for k, v in cp.items(section)}
        except configparser.InterpolationError as exc:
            raise ConfigError(
                source, section, getattr(exc, "option", "?"), f"bad % interpolation: {exc}"
            ) from None
    return out


def loads(text: str, source: str = "<string>") -> MirrorConfig:
    cp = _parser(interpolation=True)
    try:
        cp.read_string(DEFAULTS, source="<bandersnatch defaults>")
        cp.read_string(text, source=source)
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(source, exc.section, exc.option, "given twice") from None
    except configparser.Error as exc:
        raise ConfigError(source, "?", "?", f"malformed config: {exc}") from None
    user = _parser(interpolation=False)
    user.read_string(text, source=source)
    user_keys = {s: set(user[s].keys()) for s in user.sections()}
    return _validated(_sections(cp, source), source, user_keys)


def load(path: str | Path) -> MirrorConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), "-", "-", f"cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(p), "-", "-", f"config is not UTF-8: {exc}") from None
    return loads(text, source=str(p))
