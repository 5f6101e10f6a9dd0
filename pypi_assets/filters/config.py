"""bandersnatch configuration as a value.

Parsing follows bandersnatch 8.2: ``ConfigParser`` with ``=`` as the only delimiter,
case-sensitive keys, ``%`` interpolation, whole-line ``#``/``;`` comments only, blank lines
kept inside multi-line values, ``[DEFAULT]`` leaking into every section, and bandersnatch's
defaults read before the user's file. There is no global singleton: a :class:`MirrorConfig` is a
plain value you pass around, and ``to_dict()`` / ``from_dict()`` store it as JSON.
"""

from __future__ import annotations

import codecs
import configparser
import difflib
import math
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from ..pypi.errors import ConfigurationError
from ..pypi.names import upstream_url_problem
from .registry import ALL, PLUGINS

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
#: The keys each section knows (bandersnatch 8.2's and ours). ``None``: the keys are free-form
#: (dotted metadata paths). An unknown name that is a near-miss of a known one is an error
#: ("did you mean"); any other unknown name is a warning, as bandersnatch compatibility needs.
KNOWN_KEYS: dict[str, frozenset[str] | None] = {
    "mirror": MAPPED_MIRROR_KEYS | UNMAPPED_MIRROR_KEYS,
    "plugins": frozenset({"enabled"}),
    "allowlist": frozenset({"packages", "requirements", "requirements_path"}),
    "blocklist": frozenset({"packages", "platforms"}),
    "filter_regex": frozenset({"packages", "releases"}),
    "filter_prerelease": frozenset({"packages"}),
    "latest_release": frozenset({"keep", "sort_by"}),
    "size_project_metadata": frozenset({"max_package_size"}),
    "versions_count_project_metadata": frozenset({"min_versions", "max_versions"}),
    "regex_project_metadata": None,
    "regex_release_file_metadata": None,
    "version_range_release_file_metadata": None,
    "s3": frozenset(
        {
            "endpoint_url",
            "region_name",
            "aws_access_key_id",
            "aws_secret_access_key",
            "signature_version",
        }
    ),
    "pypi_assets": frozenset(
        {
            "dependency_closure",
            "closure_environments",
            "closure_extras",
            "max_versions_per_project",
            "max_files_per_release",
            "max_body_size",
            "max_pkg_info_scan",
            "max_removed_share",
            "run_timeout",
            "status_poll_interval",
            "xmlrpc_calls_per_hour",
            "reconcile_interval",
            "blob_retention",
            "max_rate_wait",
        }
    ),
}
KNOWN_SECTIONS = frozenset(KNOWN_KEYS)
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
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


class ConfigError(ConfigurationError):
    """A config value that cannot be used; the message names the file, section and key."""

    def __init__(self, source: str, section: str, key: str, problem: str) -> None:
        where = "".join(
            (f" [{section}]" if section != "-" else "", f" {key}" if key != "-" else "")
        )
        super().__init__(f"{source}:{where}: {problem}" if where else f"{source}: {problem}")
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
    #: ``[allowlist] requirements`` files, read once at load time: ``(path, decoded text)``.
    #: Kept in the value so ``to_dict()`` is self-contained and filtering never reads files.
    requirement_files: tuple[tuple[str, str], ...] = ()

    # -------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MirrorConfig:
        if data.get("format") != 1 or not isinstance(data.get("sections"), dict):
            raise ValueError("not a pypi-assets MirrorConfig dict (format 1)")
        sections = {
            str(s): {str(k): str(v) for k, v in kv.items()} for s, kv in data["sections"].items()
        }
        files = data.get("requirement_files", {})
        if not isinstance(files, dict):
            raise ValueError("requirement_files must be an object of path -> text")
        return _validated(
            sections,
            str(data.get("source", "<dict>")),
            files=tuple((str(k), str(v)) for k, v in files.items()),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (resolved values, interpolation already applied)."""
        return {
            "format": 1,
            "source": self.source,
            "sections": {s: dict(kv) for s, kv in self.sections.items()},
            "requirement_files": dict(self.requirement_files),
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
        if name not in PLUGINS:  # every plugin is in the one registry the config check uses
            raise KeyError(f"{name!r} is not a registered filter plugin")
        enabled = self.enabled_plugins
        return ALL in enabled or name in enabled

    def requirement_lines(self, section: str, key: str = "packages") -> list[str]:
        return [strip_inline_comment(x) for x in lines(self.get(section, key))]

    def file_requirements(self) -> list[Requirement]:
        """The requirements of every ``[allowlist] requirements`` file, in file order."""
        out: list[Requirement] = []
        for _path, text in self.requirement_files:
            out.extend(r for _n, _line, r in _requirement_file_lines(text))
        return out

    # -------------------------------------------------------------- [pypi_assets]
    @property
    def dependency_closure(self) -> bool:
        return self.getbool("pypi_assets", "dependency_closure", False)

    @property
    def closure_environments(self) -> tuple[dict[str, str], ...]:
        """Target environments for markers; empty means every marker counts as true."""
        return tuple(
            _environment(line) for line in lines(self.get("pypi_assets", "closure_environments"))
        )

    @property
    def closure_all_extras(self) -> bool:
        return (self.get("pypi_assets", "closure_extras") or "requested").strip() == "all"

    # Limits on what the upstream can make a run do, and guards against upstream faults.
    # Each is ``[pypi_assets] <key>``; the defaults are in :data:`LIMIT_DEFAULTS`.
    def _limit(self, key: str) -> int:
        raw = self.get("pypi_assets", key)
        return LIMIT_DEFAULTS[key] if raw is None else _parse_limit(key, raw)

    @property
    def max_versions_per_project(self) -> int:
        """A project with more releases than this fails alone (and is named)."""
        return self._limit("max_versions_per_project")

    @property
    def max_files_per_release(self) -> int:
        """A project with a release of more files than this fails alone."""
        return self._limit("max_files_per_release")

    @property
    def max_body_size(self) -> int:
        """Bytes, after decompression, of one upstream response that is read into memory
        (listings, JSON, pages, metadata files; not release files, which are streamed)."""
        return self._limit("max_body_size")

    @property
    def max_pkg_info_scan(self) -> int:
        """Compressed bytes of an sdist read from upstream while looking for its PKG-INFO
        (binary units, as ``16M``); past them the file's metadata falls back to its version
        JSON."""
        return self._limit("max_pkg_info_scan")

    @property
    def run_timeout(self) -> float | None:
        """Seconds a whole run may take (``[pypi_assets] run_timeout``), unset: no bound.
        ``[mirror] global-timeout`` is each request's overall deadline, as in bandersnatch."""
        raw = self.get("pypi_assets", "run_timeout")
        return None if raw is None or not raw.strip() else _parse_seconds(raw)

    @property
    def max_removed_share(self) -> float:
        """A listing that drops more than this share of the stored projects in one run is
        an upstream fault: nothing is removed and the run exits 3."""
        return _parse_share("max_removed_share", self.get("pypi_assets", "max_removed_share"))

    @property
    def xmlrpc_calls_per_hour(self) -> int:
        """XML-RPC calls a run makes per hour at most (PyPI allows 3,600 per client)."""
        raw = self.get("pypi_assets", "xmlrpc_calls_per_hour")
        return DEFAULT_XMLRPC_CALLS_PER_HOUR if raw is None else _parse_limit("", raw)

    @property
    def max_rate_wait(self) -> float:
        """Seconds one wait for upstream's rate limit (HTTP 429 on any request, or an
        XML-RPC fault saying so) may last; a longer one stops the run (exit 3). Every wait
        also ends within the request's ``global-timeout`` and the run's ``run_timeout``."""
        raw = self.get("pypi_assets", "max_rate_wait")
        return DEFAULT_MAX_RATE_WAIT if raw is None else parse_duration(raw)

    @property
    def reconcile_interval(self) -> float:
        """Seconds between two reconciliations with the full root listing (which catch what
        the changelog cannot say); between them, changes come from the changelog alone."""
        raw = self.get("pypi_assets", "reconcile_interval")
        return DEFAULT_RECONCILE_INTERVAL if raw is None else parse_duration(raw)

    @property
    def blob_retention(self) -> float | None:
        """Seconds that a file upstream removed stays in the blob store, counted from the
        first snapshot that no longer lists it (``[pypi_assets] blob_retention``, as
        ``reconcile_interval``); ``None`` (unset, empty or ``unlimited``, the default): for
        ever, so every snapshot keeps its files."""
        raw = self.get("pypi_assets", "blob_retention")
        if raw is None or raw.strip().lower() in ("", "unlimited"):
            return None
        return parse_duration(raw)

    @property
    def status_poll_interval(self) -> float:
        """Seconds between two polls of every selected project's PEP 792 status, ownership
        and vulnerabilities, which no serial announces (``[pypi_assets]
        status_poll_interval``, as ``reconcile_interval``, default a day; 0: only ``sync
        --refresh-statuses``, projects never polled and quarantined ones; ``off``: as 0,
        and projects never polled are not polled either, :attr:`polls_new_statuses`)."""
        raw = self.get("pypi_assets", "status_poll_interval")
        if raw is None or not raw.strip():
            return DEFAULT_STATUS_POLL_INTERVAL
        if _is_off(raw):
            return 0.0
        return _parse_interval(raw)

    @property
    def polls_new_statuses(self) -> bool:
        """Whether a run polls the projects it stores that its fetch did not read in full
        (at ``--depth project``, each one's page: one more request per new project).
        ``status_poll_interval = off``: no; a project's status, and at full depth an unread
        release's vulnerabilities, then wait for ``sync --refresh-statuses`` (or the fetch of
        a later change). Quarantine is still followed: a project that answers 404 or leaves
        the listing has its page read, and a quarantined one is polled on each run."""
        raw = self.get("pypi_assets", "status_poll_interval")
        return raw is None or not _is_off(raw)


#: ``[pypi_assets]`` limits (integers; ``max_body_size`` and ``max_pkg_info_scan`` take binary
#: units, as ``10M``).
LIMIT_DEFAULTS: dict[str, int] = {
    "max_versions_per_project": 20_000,
    "max_files_per_release": 2_000,
    "max_body_size": 256 * 1024**2,
    "max_pkg_info_scan": 16 * 1024**2,
}
DEFAULT_MAX_REMOVED_SHARE = 0.05
DEFAULT_XMLRPC_CALLS_PER_HOUR = 600
DEFAULT_RECONCILE_INTERVAL = 86_400.0  # daily
DEFAULT_MAX_RATE_WAIT = 300.0  # one wait for upstream's rate limit, at most
#: ``[pypi_assets] status_poll_interval``'s default: a day
DEFAULT_STATUS_POLL_INTERVAL = 86_400.0
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def _parse_limit(key: str, raw: str) -> int:
    sized = key in ("max_body_size", "max_pkg_info_scan")
    value = parse_size(raw) if sized else int(raw.strip())
    if value <= 0:
        raise ValueError(f"must be positive, got {raw.strip()!r}")
    return value


def _parse_seconds(raw: str) -> float:
    value = float(raw.strip())
    if not value > 0 or value == float("inf"):
        raise ValueError(f"must be a positive number of seconds, got {raw.strip()!r}")
    return value


def parse_duration(raw: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``24h`` or ``1d``; positive."""
    text = raw.strip().lower()
    unit = text[-1:] if text[-1:] in _DURATION_UNITS else ""
    value = float(text[: len(text) - len(unit)]) * _DURATION_UNITS[unit]
    if not value > 0 or value == float("inf"):
        raise ValueError(f"must be a positive duration (as 3600, 60m, 24h or 1d), got {raw!r}")
    return value


def _parse_interval(raw: str) -> float:
    """A duration as :func:`parse_duration` reads it, or 0 (none)."""
    text = raw.strip().lower()
    if text.rstrip("smhd") in ("0", "0.0"):
        return 0.0
    return parse_duration(raw)


def _parse_share(key: str, raw: str | None) -> float:
    """``0.05`` or ``5%``; between 0 and 1."""
    if raw is None:
        return DEFAULT_MAX_REMOVED_SHARE
    text = raw.strip()
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a share between 0 and 1 (or 0% and 100%), got {text!r}")
    return value


def strip_inline_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


def _validated(
    sections: dict[str, dict[str, str]],
    source: str,
    user_keys: dict[str, set[str]] | None = None,
    files: tuple[tuple[str, str], ...] | None = None,
) -> MirrorConfig:
    """Check names and values; warnings name only what the user's file itself set.

    ``user_keys`` (the keys the user's file itself set, ``[DEFAULT]`` aside) is given when the
    config comes from a file or text: then a near-miss of a known section or key is an error,
    and a config with no ``[mirror]`` section is one too. ``from_dict`` (a config that was
    checked when it was loaded) passes ``None``: unknown names only warn."""
    warnings: list[str] = []
    mine = user_keys if user_keys is not None else {s: set(kv) for s, kv in sections.items()}
    _check_names(mine, source, warnings, strict=user_keys is not None)
    if user_keys is not None and "mirror" not in user_keys:
        raise ConfigError(
            source,
            "mirror",
            "-",
            "no [mirror] section: this is not a bandersnatch config "
            "(without it every default applies, the whole of pypi.org among them)",
        )
    unmapped = sorted(k for k in mine.get("mirror", ()) if k in UNMAPPED_MIRROR_KEYS)
    if unmapped:
        warnings.append(
            f"{source}: [mirror] options with no pypi-assets counterpart, accepted: {', '.join(unmapped)}"
        )

    enabled = sections.get("plugins", {}).get("enabled", "")
    if any("," in line for line in lines(enabled)):
        warnings.append(
            f"{source}: [plugins] enabled: a comma-separated line enables nothing in bandersnatch; "
            "pypi-assets enables every plugin it names (docs/filters.md)"
        )
    _check_plugins(enabled, source)
    _check_values(sections, source)  # eagerly, so that a bad config syncs nothing
    warnings += _unknown_tag_warnings(sections)

    def err(section: str, key: str, problem: str) -> ConfigError:
        return ConfigError(source, section, key, problem)

    if files is None:
        files = _read_requirement_files(sections, err)
    for path, text in files:
        _requirement_file_lines(text, path, err)  # a bad line is an error naming file and line
    return MirrorConfig(
        sections=sections, source=source, warnings=tuple(warnings), requirement_files=files
    )


# ------------------------------------------------------------------ value validators
Sections = dict[str, dict[str, str]]
#: A value's validator: the problem (the message's end), or ``None`` when the value is fine.
#: ``sections`` is there for the checks that read a neighbouring key.
Validator = Callable[[str, Sections], "str | None"]


def _boolean(problem: str) -> Validator:
    def check(value: str, sections: Sections) -> str | None:
        return None if value.strip().lower() in _BOOL else problem

    return check


def _one_of(choices: tuple[str, ...], problem: str, *, upper: bool = False) -> Validator:
    def check(value: str, sections: Sections) -> str | None:
        text = value.strip().upper() if upper else value.strip()
        return None if text in choices else problem

    return check


def _workers(value: str, sections: Sections) -> str | None:
    try:
        workers = int(value)
    except ValueError:
        return "not an integer"
    return None if 1 <= workers <= 10 else f"must be between 1 and 10, got {workers}"


def _timeout(value: str, sections: Sections) -> str | None:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if math.isfinite(seconds) and seconds > 0:
        return None
    return "not a positive (finite) number of seconds"


def _master(value: str, sections: Sections) -> str | None:
    problem = upstream_url_problem(value)
    if problem is not None:
        return problem
    allow = sections.get("mirror", {}).get("allow-non-https", "false").strip().lower()
    if urlsplit(value).scheme != "https" and allow not in ("1", "yes", "true", "on"):
        return "not https; set allow-non-https = true to permit it"
    return None


def _entries(check_line: Callable[[str], str | None]) -> Validator:
    """A multi-line value whose every line must pass ``check_line``; the first bad one is
    named by its number."""

    def check(value: str, sections: Sections) -> str | None:
        for n, line in enumerate(lines(value), 1):
            problem = check_line(line)
            if problem is not None:
                return f"entry {n}: {problem}"
        return None

    return check


def _requirement_line(line: str) -> str | None:
    text = strip_inline_comment(line)
    if not text:
        return None
    try:
        Requirement(text)
    except InvalidRequirement:
        return "not a PEP 508 requirement"
    return None


def _regex_line(line: str) -> str | None:
    try:
        re.compile(line)
    except re.error as exc:
        return f"bad regex ({exc.msg})"
    return None


def _version_line(line: str) -> str | None:
    try:
        Version(line)
    except InvalidVersion:
        return "not a version"
    return None


def _environment_line(line: str) -> str | None:
    try:
        _environment(line)
    except ValueError:
        return "not key=value pairs of PEP 508 marker variables"
    return None


def _size(value: str, sections: Sections) -> str | None:
    try:
        parse_size(value)
    except ValueError:
        return "not a size (such as 10M or 1.5 GB)"
    return None


def _count(value: str, sections: Sections) -> str | None:
    try:
        count = int(value)
    except ValueError:
        return "not an integer"
    return "must not be negative" if count < 0 else None


def _min_not_above_max(value: str, sections: Sections) -> str | None:
    """``min_versions`` (both bounds already checked) against ``max_versions`` (0: none)."""
    most = int(sections.get("versions_count_project_metadata", {}).get("max_versions", "0"))
    return "greater than max_versions" if 0 < most < int(value) else None


def _limit(key: str) -> Validator:
    def check(value: str, sections: Sections) -> str | None:
        try:
            _parse_limit(key, value)
        except ValueError:
            return "not a positive integer (or size)"
        return None

    return check


def _run_timeout(value: str, sections: Sections) -> str | None:
    if not value.strip():
        return None  # empty: no timeout
    try:
        _parse_seconds(value)
    except ValueError as exc:
        return str(exc)
    return None


def _is_off(value: str) -> bool:
    """Whether a setting that can be switched off says ``off`` (any case, spaces aside)."""
    return value.strip().lower() == "off"


def _interval(value: str, sections: Sections) -> str | None:
    if not value.strip() or _is_off(value):
        return None  # empty: the default
    try:
        _parse_interval(value)
    except ValueError:
        return "must be off, 0 or a positive duration (as 3600, 60m, 24h or 1d)"
    return None


def _removed_share(value: str, sections: Sections) -> str | None:
    try:
        _parse_share("max_removed_share", value)
    except ValueError:
        return "must be a share between 0 and 1 (or 0% and 100%)"
    return None


def _duration(value: str, sections: Sections) -> str | None:
    try:
        parse_duration(value)
    except ValueError:
        return "must be a positive duration (as 3600, 60m, 24h or 1d)"
    return None


def _retention(value: str, sections: Sections) -> str | None:
    if value.strip().lower() in ("", "unlimited"):
        return None
    try:
        parse_duration(value)
    except ValueError:
        return "must be unlimited or a positive duration (as 3600, 60m, 24h or 30d)"
    return None


#: ``"*"`` stands for every key of the section that no other row names.
ANY_KEY = "*"
_MIRROR_BOOL = _boolean("not a boolean (true/false, yes/no, on/off, 1/0)")
_REGEXES = _entries(_regex_line)

#: Every checked value: ``(section, key, validator)``, run in this order for the keys that are
#: set, the first problem raised as a :class:`ConfigError` naming the section and key.
VALIDATORS: tuple[tuple[str, str, Validator], ...] = (
    *(
        ("mirror", key, _MIRROR_BOOL)
        for key in (
            "json",
            "release-files",
            "core-metadata",
            "stop-on-error",
            "allow-non-https",
            "cleanup",
            "hash-index",
        )
    ),
    ("mirror", "workers", _workers),
    ("mirror", "timeout", _timeout),
    ("mirror", "global-timeout", _timeout),
    ("mirror", "master", _master),
    (
        "mirror",
        "simple-format",
        _one_of(("ALL", "HTML", "JSON"), "must be ALL, HTML or JSON", upper=True),
    ),
    ("mirror", "storage-backend", _one_of(("filesystem", "s3"), "must be filesystem or s3")),
    ("allowlist", "packages", _entries(_requirement_line)),
    ("blocklist", "packages", _entries(_requirement_line)),
    ("filter_regex", "packages", _REGEXES),
    ("filter_regex", "releases", _REGEXES),
    ("size_project_metadata", "max_package_size", _size),
    ("versions_count_project_metadata", "min_versions", _count),
    ("versions_count_project_metadata", "max_versions", _count),
    ("versions_count_project_metadata", "min_versions", _min_not_above_max),
    *(
        row
        for section in ("regex_project_metadata", "regex_release_file_metadata")
        for row in ((section, "search", _boolean("not a boolean")), (section, ANY_KEY, _REGEXES))
    ),
    ("version_range_release_file_metadata", ANY_KEY, _entries(_version_line)),
    ("pypi_assets", "dependency_closure", _boolean("not a boolean")),
    ("pypi_assets", "closure_environments", _entries(_environment_line)),
    ("pypi_assets", "closure_extras", _one_of(("requested", "all"), "must be requested or all")),
    *(("pypi_assets", key, _limit(key)) for key in LIMIT_DEFAULTS),
    ("pypi_assets", "run_timeout", _run_timeout),
    ("pypi_assets", "max_removed_share", _removed_share),
    ("pypi_assets", "status_poll_interval", _interval),
    ("pypi_assets", "xmlrpc_calls_per_hour", _limit("xmlrpc_calls_per_hour")),
    ("pypi_assets", "reconcile_interval", _duration),
    ("pypi_assets", "blob_retention", _retention),
    ("pypi_assets", "max_rate_wait", _duration),
)
_NAMED = {(section, key) for section, key, _check in VALIDATORS if key != ANY_KEY}


def _check_values(sections: Sections, source: str) -> None:
    """Run :data:`VALIDATORS` over the values that are set; raise the first problem."""
    for section, key, check in VALIDATORS:
        values = sections.get(section, {})
        if key == ANY_KEY:
            keys = [k for k in values if (section, k) not in _NAMED]
        else:
            keys = [key] if key in values else []
        for k in keys:
            problem = check(values[k], sections)
            if problem is not None:
                raise ConfigError(source, section, k, problem)


def _unknown_tag_warnings(sections: Sections) -> list[str]:
    """``[regex_*_metadata]`` keys with tags other than :data:`REGEX_TAGS` (ignored)."""
    out = []
    for section in REGEX_METADATA_SECTIONS:
        for key, tags, _path in metadata_keys(sections.get(section, {})):
            unknown = set(tags) - REGEX_TAGS
            if unknown:
                out.append(f"[{section}] {key}: unknown tags ignored: {sorted(unknown)}")
    return out


def _shown(name: str) -> str:
    """A section, key or plugin name for a message: as written when it looks like a name, else
    only its length (a message never echoes arbitrary file content)."""
    return name if _NAME.match(name) else f"<a name of {len(name)} characters>"


def _near(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` is most likely a misspelling of, if any."""
    found = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    if not found:
        lowered = {k.lower(): k for k in known}
        return lowered.get(name.lower())  # keys are case-sensitive: "Workers" is not "workers"
    return found[0]


def _check_names(
    user_keys: dict[str, set[str]], source: str, warnings: list[str], *, strict: bool
) -> None:
    """Unknown sections and keys: a near-miss of a known name is an error with "did you mean"
    (``strict``), anything else a warning, as bandersnatch ignores what it does not know."""
    for section in sorted(user_keys):
        if section == "DEFAULT":
            continue
        if section not in KNOWN_SECTIONS:
            guess = _near(section, KNOWN_SECTIONS)
            if strict and guess is not None:
                raise ConfigError(
                    source,
                    _shown(section),
                    "-",
                    f"unknown section, did you mean [{guess}]? (it would be ignored)",
                )
            warnings.append(f"{source}: unknown section [{_shown(section)}] ignored")
            continue
        known = KNOWN_KEYS[section]
        if known is None:
            continue
        for key in sorted(user_keys[section]):
            if key in known:
                continue
            guess = _near(key, known)
            if strict and guess is not None:
                raise ConfigError(
                    source,
                    section,
                    _shown(key),
                    f"unknown key, did you mean {guess}? (it would be ignored)",
                )
            warnings.append(f"{source}: unknown key [{section}] {_shown(key)} ignored")


def _check_plugins(enabled: str, source: str) -> None:
    """Every name in ``[plugins] enabled`` must be a known plugin: a misspelt one would
    silently turn that filter off (for an allowlist: mirror the whole index)."""
    known = ", ".join([ALL, *sorted(PLUGINS)])
    for line in lines(enabled):
        for name in (part.strip() for part in line.split(",")):
            if name and name != ALL and name not in PLUGINS:
                guess = _near(name, PLUGINS)
                hint = f"did you mean {guess}? " if guess else ""
                raise ConfigError(
                    source,
                    "plugins",
                    "enabled",
                    f"unknown plugin {_shown(name)}: {hint}known plugins are {known}",
                )


# ------------------------------------------------------------------ plugin sections
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6, "z": 7, "y": 8}
REGEX_TAGS = frozenset({"any", "all", "none", "match-null", "not-null"})
REGEX_METADATA_SECTIONS = ("regex_project_metadata", "regex_release_file_metadata")


def parse_size(text: str) -> int:
    """A human size with binary units, as bandersnatch's ``parse_size(binary=True)``:
    ``1024``, ``10K``, ``10 KB``, ``10KiB``, ``1.5 GB`` (K = 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    unit = m.group(2).lower()
    if unit.endswith("ib"):
        unit = unit[:-2]
    elif len(unit) == 2 and unit.endswith("b"):
        unit = unit[:-1]
    elif unit in ("bytes", "byte"):
        unit = ""
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit in {text!r}")
    return int(float(m.group(1)) * 1024 ** _SIZE_UNITS[unit])


def metadata_keys(section: dict[str, str]) -> list[tuple[str, tuple[str, ...], str]]:
    """``[any|all|none|match-null|not-null:]dotted.path`` keys: ``(key, tags, path)``.
    ``search`` is bandersnatch 8.2's switch from ``re.match`` to ``re.search``."""
    out = []
    for key in section:
        if key == "search":
            continue
        *tags, path = key.split(":")
        out.append((key, tuple(tags), path))
    return out


# ------------------------------------------------------------------ [pypi_assets]
_ENV_KEYS = frozenset(default_environment())


def _environment(line: str) -> dict[str, str]:
    """``python_version=3.12 sys_platform=win32`` as a complete marker environment. Keys
    not given are derived from the ones that are (never from the running interpreter)."""
    given: dict[str, str] = {}
    for part in line.split():
        key, sep, value = part.partition("=")
        if not sep or key not in _ENV_KEYS:
            raise ValueError(f"{part!r} is not key=value with a PEP 508 marker variable")
        given[key] = value
    pyver = given.get("python_version", "3.12")
    plat = given.get("sys_platform", "linux")
    system, osname = {"win32": ("Windows", "nt"), "darwin": ("Darwin", "posix")}.get(
        plat, ("Linux", "posix")
    )
    full = given.get("python_full_version", f"{pyver}.0")
    env = {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": osname,
        "platform_machine": "x86_64",
        "platform_release": "",
        "platform_system": system,
        "platform_version": "",
        "python_full_version": full,
        "platform_python_implementation": "CPython",
        "python_version": pyver,
        "sys_platform": plat,
    }
    env.update(given)
    return env


# ------------------------------------------------------------------ requirements files
_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
_CODING = re.compile(rb"coding[:=]\s*([-\w.]+)")


def decode_requirements(data: bytes) -> str:
    """pip's and bandersnatch's rule: a BOM, else a PEP 263 coding line in the first two
    lines, else UTF-8 (bandersnatch falls back to the locale's encoding; docs/filters.md)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding)
    for line in data.split(b"\n")[:2]:
        m = _CODING.search(line) if line.startswith(b"#") else None
        if m:
            return data.decode(m.group(1).decode("ascii"))
    return data.decode("utf-8")


def _requirement_file_lines(
    text: str, path: str = "", err: Any = None
) -> list[tuple[int, str, Requirement]]:
    """Requirement lines of one file: ``#`` and ``-`` lines (pip options) are skipped,
    inline comments are stripped."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "-")):
            continue
        line = strip_inline_comment(line)
        try:
            out.append((number, line, Requirement(line)))
        except InvalidRequirement:
            if err is None:
                raise
            raise err(
                "allowlist",
                "requirements",
                f"{path}:{number}: not a PEP 508 requirement",
            ) from None
    return out


def _read_requirement_files(
    sections: dict[str, dict[str, str]], err: Any
) -> tuple[tuple[str, str], ...]:
    """bandersnatch's ``get_requirement_files``: names under ``requirements_path`` (the current
    directory by default), ``*`` globs expanded in sorted order. Read only when a plugin that
    uses them is enabled."""
    allow = sections.get("allowlist", {})
    enabled = lines(sections.get("plugins", {}).get("enabled"))
    names = {part.strip() for line in enabled for part in line.split(",")}
    if not names & {"all", "project_requirements", "project_requirements_pinned"}:
        return ()
    base = Path(allow.get("requirements_path", "").strip() or ".")
    files: list[Path] = []
    for line in lines(allow.get("requirements")):
        pattern = strip_inline_comment(line)
        if not pattern:
            continue
        if "*" in pattern:
            files.extend(sorted(base.glob(pattern)))
        else:
            files.append(base / pattern)
    out = []
    for f in files:
        try:
            text = decode_requirements(f.read_bytes())
        except OSError as exc:
            raise err("allowlist", "requirements", f"cannot read {f}: {exc.strerror}") from None
        except (UnicodeDecodeError, LookupError):
            raise err("allowlist", "requirements", f"cannot decode {f}") from None
        out.append((str(f), text))
    return tuple(out)


def _sections(cp: configparser.ConfigParser, source: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for section in cp.sections():
        try:
            out[section] = {k: v for k, v in cp.items(section)}
        except configparser.InterpolationError as exc:
            raise ConfigError(
                source,
                section,
                _shown(getattr(exc, "option", "?")),
                "bad % interpolation (write %% for a literal %)",
            ) from None
    return out


def _parse_error(source: str, exc: configparser.Error) -> ConfigError:
    """configparser's messages quote the offending line: name its number instead."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return ConfigError(
            source, "-", "-", f"not an INI config: line {exc.lineno} comes before any [section]"
        )
    if isinstance(exc, configparser.DuplicateOptionError):
        return ConfigError(source, _shown(exc.section), _shown(exc.option), "given twice")
    if isinstance(exc, configparser.DuplicateSectionError):
        return ConfigError(source, _shown(exc.section), "-", "section given twice")
    if isinstance(exc, configparser.ParsingError):
        numbers = ", ".join(str(n) for n, _line in exc.errors[:5])
        return ConfigError(
            source, "-", "-", f"malformed line {numbers}: not [section], key = value or a comment"
        )
    return ConfigError(source, "-", "-", f"malformed config ({type(exc).__name__})")


def loads(text: str, source: str = "<string>") -> MirrorConfig:
    cp = _parser(interpolation=True)
    try:
        cp.read_string(DEFAULTS, source="<bandersnatch defaults>")
        cp.read_string(text, source=source)
    except configparser.Error as exc:
        raise _parse_error(source, exc) from None
    user = _parser(interpolation=False)
    user.read_string(text, source=source)
    defaults = set(user.defaults())
    user_keys = {s: set(user[s].keys()) - defaults for s in user.sections()}
    return _validated(_sections(cp, source), source, user_keys)


#: A config larger than this is not a config (``--config /dev/zero``, a database).
MAX_CONFIG_BYTES = 16 * 1024**2


def load(path: str | Path) -> MirrorConfig:
    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ConfigError(str(p), "-", "-", f"cannot read config: {kind}")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(str(p), "-", "-", f"not a config: {st.st_size} bytes")
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), "-", "-", f"cannot read config: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(p), "-", "-", f"not UTF-8 (byte {exc.start})") from None
    return loads(text, source=str(p))
