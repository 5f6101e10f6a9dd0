"""Conformance of the requirements-file, metadata-level and release-file metadata plugins."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pypi_assets.filters import ConfigError, MirrorConfig, load, loads, project_filter
from pypi_assets.filters import release_file_filter as rff
from pypi_assets.filters.config import decode_requirements, parse_size
from pypi_assets.pypi.records import Distribution, Release

HEAD = "[mirror]\ndirectory = /srv/pypi\n"


def cfg(text: str) -> MirrorConfig:
    return loads(HEAD + text)


def project(
    versions: dict[str, list[tuple[str, int, str | None]]],
) -> tuple[list[Release], list[Distribution]]:
    """Releases and files: ``{version: [(filename, size, requires_python), ...]}``."""
    rels, files = [], []
    for v, fs in versions.items():
        rels.append(Release(name="p", version=v, info=None, file_count=len(fs)))
        for fn, size, rp in fs:
            files.append(
                Distribution(
                    filename=fn,
                    packagetype="sdist" if fn.endswith(".tar.gz") else "bdist_wheel",
                    name="p",
                    version=v,
                    project="p",
                    release_version=v,
                    size=size,
                    file_requires_python=rp,
                    upload_time=datetime(2024, 1, 1, tzinfo=UTC),
                    sha256="ab" * 32,
                )
            )
    return rels, files


def kept(c: MirrorConfig, versions: dict, info: dict | None = None, name: str = "p") -> set[str]:
    rels, files = project(versions)
    return set(rff(c).select(name, None, rels, files, info=info, serial=7))


# ---------------------------------------------------------------------- requirements files
def _reqdir(tmp_path: Path) -> Path:
    d = tmp_path / "reqs"
    d.mkdir()
    (d / "a.txt").write_text("# comment\nFoo_Bar==1.0  # pinned\n-r b.txt\n-e ./local\nbaz\n")
    (d / "b-utf16.txt").write_bytes("quux>=2\n".encode("utf-16"))
    (d / "c-latin1.txt").write_bytes(
        "# -*- coding: latin-1 -*-\n# caf\xe9\nzed\n".encode("latin-1")
    )
    (d / "ignored.cfg").write_text("never\n")
    return d


def _reqconf(d: Path, plugins: str) -> str:
    return (
        f"[plugins]\nenabled =\n{plugins}\n[allowlist]\nrequirements_path = {d}\n"
        "requirements =\n    a.txt\n    b-*.txt\n    c-*.txt  # globbed\n"
    )


def test_requirements_files_globs_encodings_and_skipped_lines(tmp_path: Path) -> None:
    c = cfg(_reqconf(_reqdir(tmp_path), "    project_requirements"))
    names = ["foo-bar", "Foo.Bar", "baz", "QUUX", "zed", "never", "b.txt", "local"]
    assert project_filter(c).select(names) == ["foo-bar", "Foo.Bar", "baz", "QUUX", "zed"]


def test_requirement_file_decoding() -> None:
    assert decode_requirements(b"\xef\xbb\xbfa\n") == "a\n"
    assert decode_requirements("b\n".encode("utf-16-le").join([b"\xff\xfe", b""])) == "b\n"
    assert (
        decode_requirements("# coding: cp1252\n\u20ac\n".encode("cp1252"))
        == "# coding: cp1252\n\u20ac\n"
    )
    assert "# coding: cp1252\n\u20ac\n".encode("cp1252")[-2:] == b"\x80\n"  # not UTF-8
    assert decode_requirements("ü\n".encode()) == "ü\n"


def test_project_requirements_and_allowlist_are_separate_plugins(tmp_path: Path) -> None:
    d = _reqdir(tmp_path)
    c = cfg(
        _reqconf(d, "    project_requirements\n    allowlist_project").replace(
            "[allowlist]\n", "[allowlist]\npackages =\n    baz\n    other\n"
        )
    )
    # bandersnatch: a project must pass every enabled project plugin, so both lists
    assert project_filter(c).select(["baz", "other", "zed"]) == ["baz"]


def test_requirements_files_errors_name_file_section_and_key(tmp_path: Path) -> None:
    d = tmp_path / "r"
    d.mkdir()
    (d / "bad.txt").write_text("ok\nnot a requirement!!\n")
    conf = tmp_path / "b.conf"
    conf.write_text(HEAD + _reqconf(d, "    project_requirements").replace("a.txt", "bad.txt"))
    with pytest.raises(ConfigError) as exc:
        load(conf)
    assert (exc.value.section, exc.value.key) == ("allowlist", "requirements")
    assert str(conf) in str(exc.value) and "bad.txt:2" in str(exc.value)
    (d / "bad.txt").unlink()
    with pytest.raises(ConfigError, match=r"cannot read .*bad\.txt"):
        load(conf)


def test_requirements_files_are_read_once_and_kept_in_the_value(tmp_path: Path) -> None:
    d = _reqdir(tmp_path)
    c = cfg(_reqconf(d, "    project_requirements\n    project_requirements_pinned"))
    data = json.loads(json.dumps(c.to_dict()))
    for f in d.iterdir():
        f.unlink()  # from_dict must not need the files any more
    again = MirrorConfig.from_dict(data)
    assert again == c
    names = ["foo-bar", "baz", "zed", "nope"]
    assert project_filter(again).select(names) == project_filter(c).select(names)
    # requirements files are not read when no plugin uses them
    assert cfg(_reqconf(tmp_path / "missing", "    allowlist_project")).requirement_files == ()


def test_project_requirements_pinned(tmp_path: Path) -> None:
    d = _reqdir(tmp_path)
    c = cfg(
        _reqconf(d, "    project_requirements_pinned\n    prerelease_release\n    latest_release")
        + "[latest_release]\nkeep = 1\n"
    )
    versions = {v: [(f"p-{v}.tar.gz", 1, None)] for v in ("0.9", "1.0", "1.1rc1", "2.0", "x.y")}
    strip = lambda s: {f.removeprefix("p-").removesuffix(".tar.gz") for f in s}  # noqa: E731
    # pinned: only the pins, and the other release filters do not run (bandersnatch)
    assert strip(kept(c, versions, name="foo-bar")) == {"1.0"}
    # listed without a pin: every valid version passes the pinned plugin; the rest still run
    assert strip(kept(c, versions, name="baz")) == {"2.0"}
    assert (
        strip(kept(c, {"1.1rc1": versions["1.1rc1"], "x.y": versions["x.y"]}, name="zed")) == set()
    )
    # not listed: no release passes
    assert kept(c, versions, name="other") == set()


# ---------------------------------------------------------------------- metadata level
@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("10K", 10240),
        ("10 KB", 10240),
        ("10KiB", 10240),
        ("1.5 MB", 1572864),
        ("2g", 2 * 1024**3),
        ("7 bytes", 7),
    ],
)
def test_human_sizes_are_binary(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_size_limit_sums_every_file_and_allowlist_bypasses() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    size_project_metadata\n    exclude_platform\n"
        "[blocklist]\nplatforms =\n    windows\n"
        "[allowlist]\npackages =\n    big-but-listed\n"
        "[size_project_metadata]\nmax_package_size = 1K\n"
    )
    files = {"1.0": [("p-1.0.tar.gz", 600, None), ("p-1.0-py3-none-win_amd64.whl", 500, None)]}
    # 1100 bytes > 1 KiB, counted before exclude_platform drops the wheel
    assert kept(c, files) == set()
    assert kept(c, files, name="big-but-listed") == {"p-1.0.tar.gz"}
    assert kept(c, {"1.0": [("p-1.0.tar.gz", 1024, None)]}) == {"p-1.0.tar.gz"}


def test_versions_count_limits_count_releases_without_files() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    versions_count_project_metadata\n"
        "[allowlist]\npackages =\n    listed\n"
        "[versions_count_project_metadata]\nmin_versions = 2\nmax_versions = 3\n"
    )
    one = {"1.0": [("p-1.0.tar.gz", 1, None)]}
    two = {**one, "0.1": []}  # a release with no files still counts
    four = {**two, "2.0": [("p-2.0.tar.gz", 1, None)], "3.0": [("p-3.0.tar.gz", 1, None)]}
    assert kept(c, one) == set()
    assert kept(c, two) == {"p-1.0.tar.gz"}
    assert kept(c, four) == set()
    assert kept(c, one, name="listed") == {"p-1.0.tar.gz"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[size_project_metadata]\nmax_package_size = lots\n", "max_package_size"),
        ("[versions_count_project_metadata]\nmin_versions = x\n", "min_versions"),
        ("[versions_count_project_metadata]\nmin_versions = 5\nmax_versions = 2\n", "min_versions"),
        ("[regex_project_metadata]\ninfo.name =\n    (open\n", "info.name"),
        (
            "[version_range_release_file_metadata]\nrelease_file.requires_python =\n    three\n",
            "release_file.requires_python",
        ),
        ("[pypi_assets]\ndependency_closure = perhaps\n", "dependency_closure"),
        ("[pypi_assets]\nclosure_environments =\n    python_version\n", "closure_environments"),
        ("[pypi_assets]\nclosure_environments =\n    colour=red\n", "closure_environments"),
    ],
)
def test_bad_plugin_values_are_errors(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        cfg(text)
    assert exc.value.key == key and exc.value.section in text


INFO = {
    "name": "p",
    "classifiers": ["License :: OSI Approved :: MIT License", "Framework :: Django"],
    "license": None,
    "keywords": "web,tools",
    "yanked": False,
}


@pytest.mark.parametrize(
    ("key", "patterns", "expected"),
    [
        ("info.classifiers", ["Framework :: Flask", "Framework :: Django"], True),  # any
        ("any:info.classifiers", ["Framework :: Flask"], False),
        ("all:info.classifiers", ["License ::", "Framework ::"], True),
        ("all:info.classifiers", ["License ::", "Framework :: Flask"], False),
        ("none:info.classifiers", ["Framework :: Flask"], True),
        ("none:info.classifiers", ["Framework :: Django"], False),
        ("info.license", ["MIT"], True),  # a null matches by default
        ("match-null:info.license", ["MIT"], True),
        ("not-null:info.license", ["MIT"], False),
        ("not-null:info.keywords", ["web"], True),
        ("info.missing.deeper", ["x"], True),
        ("not-null:info.missing.deeper", ["x"], False),
        (
            "none:not-null:info.license",
            ["MIT"],
            True,
        ),  # no value, nothing matched (docs/filters.md)
        ("all:none:info.classifiers", ["Framework :: Django"], False),  # the last tag wins
        ("info.yanked", ["false"], True),  # non-strings are matched as JSON text
        ("info.keywords", ["tools"], False),  # re.match, anchored at the start
        ("last_serial", ["7"], True),
    ],
)
def test_regex_project_metadata_tags(key: str, patterns: list[str], expected: bool) -> None:
    body = "\n".join(f"    {p}" for p in patterns)
    c = cfg(
        f"[plugins]\nenabled =\n    regex_project_metadata\n[regex_project_metadata]\n{key} =\n{body}\n"
    )
    files = {"1.0": [("p-1.0.tar.gz", 1, None)]}
    assert kept(c, files, info=INFO) == ({"p-1.0.tar.gz"} if expected else set())


def test_regex_metadata_search_option() -> None:
    text = "[plugins]\nenabled =\n    regex_project_metadata\n[regex_project_metadata]\n{search}info.keywords =\n    tools\n"
    files = {"1.0": [("p-1.0.tar.gz", 1, None)]}
    assert kept(cfg(text.format(search="")), files, info=INFO) == set()
    assert kept(cfg(text.format(search="search = true\n")), files, info=INFO) == {"p-1.0.tar.gz"}


def test_regex_release_file_metadata_sees_the_file_json() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    regex_release_file_metadata\n"
        "[regex_release_file_metadata]\nrelease_file.packagetype =\n    bdist_wheel\n"
        "release =\n    1\\.\n"
        "not-null:release_file.digests.sha256 =\n    [0-9a-f]{64}\n"
        "release_file.upload_time =\n    2024-01-01T00:00:00$\n"
    )
    files = {
        "1.0": [("p-1.0.tar.gz", 1, None), ("p-1.0-py3-none-any.whl", 1, None)],
        "2.0": [("p-2.0-py3-none-any.whl", 1, None)],
    }
    # sdists get no exemption here: only exclude_platform spares them
    assert kept(c, files) == {"p-1.0-py3-none-any.whl"}


def test_version_range_release_file_metadata() -> None:
    c = cfg(
        "[plugins]\nenabled =\n    version_range_release_file_metadata\n"
        "[version_range_release_file_metadata]\nrelease_file.requires_python =\n    3.7\n    3.13\n"
    )
    files = {
        "1.0": [
            ("a-1.0.tar.gz", 1, ">=3.8"),  # contains 3.13
            ("b-1.0.tar.gz", 1, "<3.7"),  # contains neither
            ("c-1.0.tar.gz", 1, None),  # null matches
            ("d-1.0.tar.gz", 1, ">=3.6.*"),  # unparseable: treated as absent, as pip does
            ("e-1.0.tar.gz", 1, "==3.7.*"),
        ]
    }
    assert kept(c, files) == {"a-1.0.tar.gz", "c-1.0.tar.gz", "d-1.0.tar.gz", "e-1.0.tar.gz"}
    strict = cfg(
        "[plugins]\nenabled =\n    version_range_release_file_metadata\n"
        "[version_range_release_file_metadata]\nnot-null:release_file.requires_python =\n    3.7\n"
    )
    assert kept(strict, files) == {"e-1.0.tar.gz"}


def test_enabled_all_runs_every_plugin(tmp_path: Path) -> None:
    d = _reqdir(tmp_path)
    c = cfg(
        _reqconf(d, "    all").replace(
            "[allowlist]\n", "[allowlist]\npackages =\n    baz>=1\n    zed\n"
        )
        + "[size_project_metadata]\nmax_package_size = 10K\n"
        "[regex_release_file_metadata]\nrelease_file.packagetype =\n    sdist\n"
    )
    assert project_filter(c).select(["baz", "zed", "foo-bar"]) == ["baz", "zed"]
    files = {
        "0.5": [("p-0.5.tar.gz", 1, None)],
        "1.0": [("p-1.0.tar.gz", 1, None), ("p-1.0-py3-none-any.whl", 1, None)],
        "1.1rc1": [("p-1.1rc1.tar.gz", 1, None)],
    }
    # allowlist_release (>=1), prerelease_release, and the file regex, all at once
    assert kept(c, files, name="baz") == {"p-1.0.tar.gz"}
    # allowlisted names bypass the size limit; an unlisted big one would not get this far
    big = {"1.0": [("p-1.0.tar.gz", 20_000, None)]}
    assert kept(c, big, name="baz") == {"p-1.0.tar.gz"}


def test_file_regex_sees_the_warehouse_file_object() -> None:
    """The same object Warehouse's JSON API has: ISO time with microseconds, has_sig, and
    the constant fields, as bandersnatch would see them upstream."""
    c = cfg(
        "[plugins]\nenabled =\n    regex_release_file_metadata\n"
        "[regex_release_file_metadata]\n"
        "not-null:release_file.upload_time_iso_8601 =\n    2024-01-01T00:00:00\\.000000Z$\n"
        "not-null:release_file.has_sig =\n    false\n"
        "not-null:release_file.downloads =\n    -1\n"
    )
    assert kept(c, {"1.0": [("p-1.0.tar.gz", 1, None)]}) == {"p-1.0.tar.gz"}
