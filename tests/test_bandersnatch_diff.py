"""Differential test: the same unmodified bandersnatch.conf, the same fake upstream, and
bandersnatch 8.2's simple pages must list exactly our ``selected_distributions``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.filters import loads

from .bandersnatch_ref import bandersnatch, mirror
from .conftest import sync

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
    {n4}
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
    theirs = mirror(EXE, text, tmp_path)
    ours = _ours_db = tmp_path / "ours.duckdb"
    report = sync(upstream, _ours_db, loads(text))
    assert report.ok
    ours = _ours(_ours_db)
    # bandersnatch writes no page for a project whose every file was filtered; compare non-empty sets
    theirs = {p: f for p, f in theirs.items() if f}
    assert ours == theirs
    assert ours, "the config should keep something"
