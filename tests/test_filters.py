"""Conformance of the bandersnatch config parser and filter plugins (no I/O, no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pypi_assets.filters import (
    ConfigError,
    MirrorConfig,
    load,
    loads,
    project_filter,
    release_file_filter,
)
from pypi_assets.pypi.records import Distribution, Release

HEAD = "[mirror]\ndirectory = /srv/pypi\n"


def cfg(text: str) -> MirrorConfig:
    return loads(HEAD + text)


def _files(versions: dict[str, list[str]]) -> tuple[list[Release], list[Distribution]]:
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    rels, files = [], []
    for i, (v, names) in enumerate(versions.items()):
        rels.append(
            Release(
                name="p",
                version=v,
                info=None,
                upload_time=t0 + timedelta(days=i),
                file_count=len(names),
            )
        )
        for fn in names:
            kind = "sdist" if fn.endswith((".tar.gz", ".zip")) else "bdist_wheel"
            for suffix, pt in (
                (".exe", "bdist_wininst"),
                (".msi", "bdist_msi"),
                (".dmg", "bdist_dmg"),
                (".rpm", "bdist_rpm"),
            ):
                if fn.endswith(suffix):
                    kind = pt
            files.append(
                Distribution(
                    filename=fn,
                    packagetype=kind,
                    name="p",
                    version=v,
                    project="p",
                    release_version=v,
                )
            )
    return rels, files


def _kept_versions(c: MirrorConfig, versions: list[str], latest: str | None = None) -> list[str]:
    rels, files = _files({v: [f"p-{v}.tar.gz"] for v in versions})
    kept = release_file_filter(c).select("p", latest, rels, files)
    return [f.removeprefix("p-").removesuffix(".tar.gz") for f in kept]


# ---------------------------------------------------------------------- parsing rules
def test_parsing_rules() -> None:
    c = cfg(
        "[DEFAULT]\nshared = yes\n"
        "[allowlist]\npackages =\n    foo  # stays part of the value, no inline comments\n\n    Bar\n"
        "# a whole-line comment\n"
        "[filter_regex]\nreleases =\n    .*%%dev\n"
        "[pypi_assets]\nCaseSensitive = 1\n"
    )
    assert c.get("allowlist", "shared") == "yes"  # [DEFAULT] leaks into every section
    assert (
        c.get("allowlist", "packages")
        == "\nfoo  # stays part of the value, no inline comments\n\nBar"
    )
    assert c.get("filter_regex", "releases") == "\n.*%dev"  # % interpolation: %% is a literal %
    assert (
        c.get("pypi_assets", "CaseSensitive") == "1"
        and c.get("pypi_assets", "casesensitive") is None
    )
    assert c.get("mirror", "workers") == "3"  # bandersnatch's defaults are read first


def test_colon_is_not_a_delimiter() -> None:
    with pytest.raises(ConfigError):
        cfg("[plugins]\nenabled: all\n")  # a line with no '=' is malformed


@pytest.mark.parametrize(
    ("text", "section", "key"),
    [
        ("[mirror]\nworkers = 11\n", "mirror", "workers"),
        ("[mirror]\nmaster = http://example.org\n", "mirror", "master"),
        ("[mirror]\nsimple-format = XML\n", "mirror", "simple-format"),
        ("[filter_regex]\npackages =\n    (unclosed\n", "filter_regex", "packages"),
        ("[allowlist]\npackages =\n    foo>=>1\n", "allowlist", "packages"),
        ("[mirror]\nrelease-files = maybe\n", "mirror", "release-files"),
    ],
)
def test_bad_values_name_file_section_and_key(
    tmp_path: Path, text: str, section: str, key: str
) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(
        "[mirror]\ndirectory = /srv\n" + text.replace("[mirror]\n", "", 1)
        if text.startswith("[mirror]")
        else "[mirror]\ndirectory = /srv\n" + text
    )
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert (exc.value.source, exc.value.section, exc.value.key) == (str(path), section, key)
    assert str(path) in str(exc.value) and f"[{section}] {key}" in str(exc.value)


def test_non_https_master_allowed_when_asked() -> None:
    assert (
        cfg("allow-non-https = true\nmaster = http://127.0.0.1:8080\n").master
        == "http://127.0.0.1:8080"
    )


def test_warnings_for_unmapped_and_unknown_options() -> None:
    c = cfg("hash-index = true\ndiff-file = /tmp/d\nfrobnicate = 1\n[weird_section]\nx = 1\n")
    text = "\n".join(c.warnings)
    assert "no pypi-assets counterpart, accepted: diff-file, hash-index" in text
    assert "unknown key [mirror] frobnicate" in text
    assert "unknown section [weird_section]" in text
    assert not cfg("").warnings  # bandersnatch's own defaults are not the user's doing


def test_round_trip_is_identical() -> None:
    c = cfg("[plugins]\nenabled =\n    allowlist_project\n[allowlist]\npackages =\n    Foo>=1\n")
    d = json.loads(json.dumps(c.to_dict()))
    again = MirrorConfig.from_dict(d)
    assert again.sections == c.sections
    names = ["foo", "bar", "Foo"]
    assert project_filter(again).select(names) == project_filter(c).select(names) == ["foo", "Foo"]


# ---------------------------------------------------------------------- project level
def test_allowlist_normalises_and_takes_names_from_requirements() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    allowlist_project\n[allowlist]\npackages =\n    Foo_Bar>=1.0\n    zope.interface  # comment\n"
    )
    assert project_filter(c).select(
        ["foo-bar", "FOO.BAR", "zope-interface", "Zope_Interface", "other"]
    ) == ["foo-bar", "FOO.BAR", "zope-interface", "Zope_Interface"]


def test_empty_allowlist_lets_everything_through() -> None:
    c = cfg("[plugins]\nenabled =\n    allowlist_project\n[allowlist]\npackages =\n")
    assert project_filter(c).select(["a", "b"]) == ["a", "b"]


def test_blocklist_blocks_bare_names_only() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    blocklist_project\n[blocklist]\npackages =\n    Foo\n    bar>=2\n"
    )
    assert project_filter(c).select(["foo", "FOO", "bar", "baz"]) == ["bar", "baz"]


def test_regex_project_is_re_match_on_the_raw_name() -> None:
    c = cfg("[plugins]\nenabled =\n    regex_project\n[filter_regex]\npackages =\n    foo.*\n")
    assert project_filter(c).select(["foobar", "Foobar", "xfoo"]) == ["Foobar", "xfoo"]


def test_enabled_all_and_comma_lines() -> None:
    c = cfg("[plugins]\nenabled = all\n[blocklist]\npackages =\n    foo\n")
    assert project_filter(c).select(["foo", "bar"]) == ["bar"]
    comma = cfg(
        "[plugins]\nenabled = blocklist_project, regex_project\n[blocklist]\npackages =\n    foo\n"
    )
    assert project_filter(comma).select(["foo", "bar"]) == [
        "bar"
    ]  # intent, not bandersnatch's no-op
    assert any("comma-separated" in w for w in comma.warnings)
    none = cfg("[blocklist]\npackages =\n    foo\n")  # no [plugins]: nothing enabled
    assert project_filter(none).select(["foo"]) == ["foo"]


# ---------------------------------------------------------------------- release level
def test_prerelease_regex_is_not_pep440() -> None:
    c = cfg("[plugins]\nenabled =\n    prerelease_release\n")
    versions = [
        "1.0",
        "1.0rc1",
        "1.0a1",
        "1.0alpha2",
        "1.0b3",
        "1.0beta4",
        "1.0.dev5",
        "1.0.post1",
        "1.0c1",
        "1.0rc",
    ]
    # 1.0c1 is a PEP 440 pre-release, but not one of the patterns; "1.0rc" has no number.
    assert _kept_versions(c, versions) == ["1.0", "1.0.post1", "1.0c1", "1.0rc"]


def test_prerelease_limited_to_some_projects_is_normalised() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    prerelease_release\n[filter_prerelease]\npackages =\n    P\n"
    )
    assert _kept_versions(c, ["1.0", "2.0rc1"]) == ["1.0"]
    other = cfg(
        "[plugins]\nenabled =\n    prerelease_release\n[filter_prerelease]\npackages =\n    q\n"
    )
    assert _kept_versions(other, ["1.0", "2.0rc1"]) == ["1.0", "2.0rc1"]


def test_allowlist_release_specifiers_include_prereleases() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    allowlist_release\n[allowlist]\npackages =\n    p>=2.0,<3\n    p==1.0\n"
    )
    assert _kept_versions(c, ["1.0", "1.5", "2.0", "2.1rc1", "3.0"]) == ["1.0", "2.0", "2.1rc1"]


def test_blocklist_release_and_regex_release() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    blocklist_release\n    regex_release\n"
        "[blocklist]\npackages =\n    p<1.5\n[filter_regex]\nreleases =\n    .*\\.9$\n"
    )
    assert _kept_versions(c, ["1.0", "1.5", "1.9", "2.0"]) == ["1.5", "2.0"]


@pytest.mark.parametrize(
    ("sort_by", "latest", "expected"),
    [
        ("version", "3.0", ["2.0", "3.0"]),
        ("version", "1.0", ["1.0", "3.0"]),
        ("time", "3.0", ["2.0", "3.0"]),
    ],
)
def test_latest_release_keep_and_sort(sort_by: str, latest: str, expected: list[str]) -> None:
    c = cfg(
        f"[plugins]\nenabled =\n    latest_release\n[latest_release]\nkeep = 2\nsort_by = {sort_by}\n"
    )
    # uploaded in this order; by time the newest are 2.0 and 3.0 too
    assert _kept_versions(c, ["1.0", "1.5", "2.0", "3.0"], latest=latest) == expected


def test_latest_release_after_prerelease_filter() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    prerelease_release\n    latest_release\n[latest_release]\nkeep = 2\n"
    )
    # The newest two *after* pre-releases are gone (bandersnatch's order-dependent result differs).
    assert _kept_versions(c, ["1.0", "2.0", "3.0rc1", "3.0", "4.0a1"], latest="3.0") == [
        "2.0",
        "3.0",
    ]


# ---------------------------------------------------------------------- release-file level
FILES = {
    "1.0": [
        "p-1.0.tar.gz",
        "p-1.0-py3-none-any.whl",
        "p-1.0-cp311-cp311-win_amd64.whl",
        "p-1.0-cp311-cp311-win32.whl",
        "p-1.0.win32.exe",
        "p-1.0-cp311-cp311-macosx_11_0_arm64.whl",
        "p-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "p-1.0-cp311-cp311-musllinux_1_1_x86_64.whl",
        "p-1.0-cp310-cp310-linux_x86_64.whl",
        "p-1.0-py2.7-none-any.whl",
        "p-1.0-cp27-cp27m-manylinux1_x86_64.whl",
        "p-1.0.freebsd-13.tar.gz.whl",
        "p-1.0.dmg",
        "p-1.0.rpm",
    ]
}


@pytest.mark.parametrize(
    ("tokens", "dropped"),
    [
        (
            "windows",
            {"p-1.0-cp311-cp311-win_amd64.whl", "p-1.0-cp311-cp311-win32.whl", "p-1.0.win32.exe"},
        ),
        (
            "win",
            {"p-1.0-cp311-cp311-win_amd64.whl", "p-1.0-cp311-cp311-win32.whl", "p-1.0.win32.exe"},
        ),
        ("macos", {"p-1.0-cp311-cp311-macosx_11_0_arm64.whl", "p-1.0.dmg"}),
        ("macosx", {"p-1.0-cp311-cp311-macosx_11_0_arm64.whl", "p-1.0.dmg"}),
        (
            "linux",
            {
                "p-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                "p-1.0-cp311-cp311-musllinux_1_1_x86_64.whl",
                "p-1.0-cp310-cp310-linux_x86_64.whl",
                "p-1.0-cp27-cp27m-manylinux1_x86_64.whl",
                "p-1.0.rpm",
            },
        ),
        ("freebsd", {"p-1.0.freebsd-13.tar.gz.whl"}),
        ("py2.7", {"p-1.0-py2.7-none-any.whl", "p-1.0-cp27-cp27m-manylinux1_x86_64.whl"}),
        (
            "py3.11",
            {
                "p-1.0-cp311-cp311-win_amd64.whl",
                "p-1.0-cp311-cp311-win32.whl",
                "p-1.0-cp311-cp311-macosx_11_0_arm64.whl",
                "p-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                "p-1.0-cp311-cp311-musllinux_1_1_x86_64.whl",
            },
        ),
        ("win_amd64", {"p-1.0-cp311-cp311-win_amd64.whl"}),
        ("musllinux", {"p-1.0-cp311-cp311-musllinux_1_1_x86_64.whl"}),
        ("unknown-token", set()),
    ],
)
def test_exclude_platform_tokens(tokens: str, dropped: set[str]) -> None:
    c = cfg(f"[plugins]\nenabled =\n    exclude_platform\n[blocklist]\nplatforms =\n    {tokens}\n")
    rels, files = _files(FILES)
    kept = set(release_file_filter(c).select("p", "1.0", rels, files))
    assert set(FILES["1.0"]) - kept == dropped
    assert "p-1.0.tar.gz" in kept  # sdists are never dropped


def test_release_left_without_files_is_dropped_before_latest() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    exclude_platform\n    latest_release\n[latest_release]\nkeep = 1\n"
        "[blocklist]\nplatforms =\n    windows\n"
    )
    rels, files = _files({"1.0": ["p-1.0.tar.gz"], "2.0": ["p-2.0-cp311-cp311-win_amd64.whl"]})
    assert release_file_filter(c).select("p", None, rels, files) == ["p-1.0.tar.gz"]


def test_regexes_with_clashing_group_names_still_work() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    regex_project\n[filter_regex]\npackages =\n    (?P<x>foo)\n    (?P<x>bar)\n"
    )
    assert project_filter(c).select(["foo1", "bar1", "baz"]) == ["baz"]


def test_regexes_with_global_flags_combine_like_separate_matches() -> None:
    patterns = ["(?i).*django.*", "^zz", "(?x) a b c $"]
    c = cfg(
        "[plugins]\nenabled =\n    regex_project\n[filter_regex]\npackages =\n"
        + "".join(f"    {p}\n" for p in patterns)
    )
    names = ["Django-x", "my-DJANGO", "zzz", "azz", "abc", "ab c", "abcd", "ok"]
    import re

    expected = [n for n in names if not any(re.match(p, n) for p in patterns)]
    assert project_filter(c).select(names) == expected == ["azz", "ab c", "abcd", "ok"]


@pytest.mark.parametrize(
    "patterns",
    [
        [".*-?test-?.*", "^[0-9].*", "(?i).*tensorflow.*", ".+-nightly$", r".*\.dev$"],
        [
            ".*?x",
            ".*(y)",
            "(?s).*z",
            "(?x) .* q",
            r"(a)\1.*",
            "(?P<n>b)(?P=n)",
        ],
        [".*", "foo"],
        [".*^foo"],
    ],
)
def test_combined_regexes_equal_one_match_per_pattern(patterns: list[str]) -> None:
    import re

    c = cfg(
        "[plugins]\nenabled =\n    regex_project\n[filter_regex]\npackages =\n"
        + "".join(f"    {p}\n" for p in patterns)
    )
    names = [
        "my-test",
        "test",
        "9lives",
        "TensorFlow-gpu",
        "x-nightly",
        "a.dev",
        "ax",
        "aay",
        "ok",
        "z",
        "q",
        "aa",
        "bb",
        "foo",
        "xfoo",
        "Foo_Bar",
        "",
        "-",
    ]
    expected = [n for n in names if not any(re.match(p, n) for p in patterns)]
    assert project_filter(c).select(names) == expected
    assert [n for n in names if project_filter(c).keep(n)] == expected
