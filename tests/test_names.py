from __future__ import annotations

import pytest

from pypi_assets.pypi.names import (
    UnsafeValue,
    canonical,
    check_filename,
    check_project_name,
    check_sha256,
    check_url,
    packagetype_for,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Django", "django"),
        ("zope.interface", "zope-interface"),
        ("Foo__Bar--baz..Qux", "foo-bar-baz-qux"),
        ("A_B.C-D", "a-b-c-d"),
        ("pip", "pip"),
    ],
)
def test_pep503_normalisation(name: str, expected: str) -> None:
    assert canonical(name) == expected


@pytest.mark.parametrize(
    "bad",
    [
        *("", "-foo", "foo-", "a/b", "../x", "foo bar", "x" * 201, "é", None, 3),
        # a final newline ('$' matches before one) and the letters that only match [A-Z]
        # case-insensitively: the Kelvin sign, the long s, the dotless i
        *("foo\n", "a\n", "fla\u212a", "\u017fix", "p\u0131p"),
    ],
)
def test_invalid_project_names_refused(bad: object) -> None:
    with pytest.raises(UnsafeValue):
        check_project_name(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "../evil.whl",
        "a/b.whl",
        "a\\b.whl",
        ".hidden.tar.gz",
        "x..y.whl",
        "",
        "a\x00.whl",
        "a b.whl",
        "a.whl\n",
    ],
)
def test_hostile_filenames_refused(bad: str) -> None:
    with pytest.raises(UnsafeValue):
        check_filename(bad)


def test_names_of_every_valid_length_are_accepted() -> None:
    for name in ("a", "ab", "a.b", "a_-.b", "x" * 200, "A" + "-" * 198 + "Z"):
        assert check_project_name(name) == name


def test_a_sha256_is_matched_whole() -> None:
    assert check_sha256("a" * 64) == "a" * 64
    for bad in ("a" * 64 + "\n", "a" * 63, "A" * 64):
        with pytest.raises(UnsafeValue):
            check_sha256(bad)


def test_good_filename_accepted() -> None:
    assert (
        check_filename("foo_bar-1.0+local-py3-none-any.whl") == "foo_bar-1.0+local-py3-none-any.whl"
    )


def test_urls_only_on_allowed_hosts() -> None:
    hosts = frozenset({"127.0.0.1:8000", "files.example"})
    base = "http://127.0.0.1:8000/"
    assert check_url("/packages/a/b.whl", base, hosts) == "http://127.0.0.1:8000/packages/a/b.whl"
    assert check_url("https://files.example:443/b.whl", base, hosts)
    for bad in (
        "http://127.0.0.1:9999/x.whl",  # same host, another port: another origin
        "http://127.0.0.1/x.whl",
        "http://files.example:8080/x.whl",
        "http://evil.example/x.whl",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1/x",
        "ftp://127.0.0.1/x",
    ):
        with pytest.raises(UnsafeValue):
            check_url(bad, base, hosts)


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        ("a-1.whl", "bdist_wheel"),
        ("a-1.tar.gz", "sdist"),
        ("a-1.zip", "sdist"),
        ("a-1.exe", "bdist_wininst"),
        ("a-1.egg", "bdist_egg"),
    ],
)
def test_packagetype_from_filename(filename: str, kind: str) -> None:
    assert packagetype_for(filename) == kind
