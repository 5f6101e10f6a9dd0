"""Differential test: the same unmodified bandersnatch.conf, the same fake upstream, and
bandersnatch 8.2's simple pages must list exactly our ``selected_distributions``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.filters import MirrorConfig, loads
from pypi_assets.store import MetadataStore
from pypi_assets.sync.selection import expected_selection

from .bandersnatch_ref import bandersnatch, mirror
from .helpers import sync

EXE = bandersnatch()
pytestmark = pytest.mark.skipif(EXE is None, reason="needs a Python >= 3.12 for bandersnatch 8.2")

BASE = """[mirror]
directory = {dir}/mirror
master = {url}
allow-non-https = true
json = true
release-files = false
workers = 3
timeout = 30
stop-on-error = false
hash-index = false
simple-format = ALL
"""

CONFIGS = {
    "allowlist": """[plugins]
enabled =
    allowlist_project
[allowlist]
packages =
    {n0}
    {n3_upper}
    {n5}
""",
    "allowlist_release_specifiers": """[plugins]
enabled =
    allowlist_project
    allowlist_release
[allowlist]
packages =
    {n1}>=0.2
    {n2}<0.3,!=0.1.0
    {n4}
""",
    "blocklist_and_regex": """[plugins]
enabled =
    blocklist_project
    regex_project
    blocklist_release
[blocklist]
packages =
    {n0}
    {n6}>=0.2
[filter_regex]
packages =
    .*-bravo-.*
""",
    "latest_by_version": """[plugins]
enabled =
    latest_release
[latest_release]
keep = 2
""",
    "prerelease_on_some_projects": """[plugins]
enabled =
    prerelease_release
[filter_prerelease]
packages =
    {n2}
    {n13}
""",
    "latest_by_time": """[plugins]
enabled =
    latest_release
[latest_release]
keep = 1
sort_by = time
""",
    "platforms": """[plugins]
enabled =
    exclude_platform
    regex_release
[blocklist]
platforms =
    windows
    py3.11
[filter_regex]
releases =
    .*rc\\d+$
""",
    "all_plugins_listed_one_per_line": """[plugins]
enabled =
    allowlist_project
    exclude_platform
[allowlist]
packages =
    {n7}
    {n8}
    {n9}
[blocklist]
platforms =
    linux
""",
    "requirements_files_and_pins": """[plugins]
enabled =
    project_requirements
    project_requirements_pinned
    prerelease_release
[allowlist]
requirements_path = {dir}/reqs
requirements =
    base.txt
    extra-*.txt  # a glob, with an inline comment
""",
    "size_and_version_count_with_allowlist_bypass": """[plugins]
enabled =
    size_project_metadata
    versions_count_project_metadata
[allowlist]
packages =
    {n2}
[size_project_metadata]
max_package_size = 14K
[versions_count_project_metadata]
min_versions = 2
max_versions = 5
""",
    "regex_metadata": """[plugins]
enabled =
    regex_project_metadata
    regex_release_file_metadata
[regex_project_metadata]
not-null:info.requires_python =
    >=3\\.8
none:info.keywords =
    .*xenon
[regex_release_file_metadata]
any:release_file.packagetype =
    sdist
    bdist_wheel
all:release_file.filename =
    .*\\.(tar\\.gz|whl)$
    [a-z]
""",
    "version_range": """[plugins]
enabled =
    version_range_release_file_metadata
    exclude_platform
[blocklist]
platforms =
    macos
[version_range_release_file_metadata]
release_file.requires_python =
    3.7
""",
    "enabled_all": """[plugins]
enabled =
    all
[allowlist]
packages =
    {n5}
    {n6}>=0.2
    {n7}
requirements_path = {dir}/reqs
requirements =
    base.txt
[latest_release]
keep = 3
[blocklist]
platforms =
    windows
""",
}

#: requirements files the configs above name (formatted like the configs)
FILES = {
    "reqs/base.txt": "# base requirements\n{n1}==0.2.0\n{n5}\n-r extra-1.txt\n{n6}  # inline\n",
    "reqs/extra-1.txt": "{n3_upper}>=0.2\n--index-url http://example.invalid\n",
    "reqs/extra-2.txt": "{n7}[docs]\n",
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeIndex.generate(30)) as up:
        yield up


def _ours(db: Path) -> dict[str, set[str]]:
    con = duckdb.connect(str(db), read_only=True)
    out: dict[str, set[str]] = {}
    for project, filename in con.execute(
        "SELECT project, filename FROM selected_distributions"
    ).fetchall():
        out.setdefault(project, set()).add(filename)
    con.close()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_files_as_bandersnatch(upstream: FakeUpstream, tmp_path: Path, name: str) -> None:
    assert EXE is not None
    names = [p.name for p in upstream.index.projects.values()]
    values = {f"n{i}": n for i, n in enumerate(names)}
    values["n3_upper"] = names[3].upper()
    text = (BASE + CONFIGS[name]).format(dir=tmp_path, url=upstream.url, **values)
    for rel, content in FILES.items():
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text(content.format(**values))
    theirs = mirror(EXE, text, tmp_path)
    ours = _ours_db = tmp_path / "ours.duckdb"
    config = loads(text)
    report = sync(upstream, _ours_db, config)
    assert report.ok
    # round trip: the config rebuilt from its JSON selects exactly the same files
    again = MirrorConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with MetadataStore(_ours_db) as store:
        assert expected_selection(store, again) == expected_selection(store, config)
    ours = _ours(_ours_db)
    # bandersnatch writes no page for a project whose every file was filtered; compare non-empty sets
    theirs = {p: f for p, f in theirs.items() if f}
    assert ours == theirs
    assert ours, "the config should keep something"
    everything = {
        norm: {f.filename for r in upstream.index.releases(norm).values() for f in r.files}
        for norm in upstream.index.projects
    }
    everything = {p: f for p, f in everything.items() if f}
    assert ours != everything, "the config should drop something"
