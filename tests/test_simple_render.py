"""The Simple API's rendering (pypi/simple.py), pinned byte for byte: the digests below are
of the pages the index writer produced before rendering moved out of store/index.py, so a
change to a written page is a deliberate one. Also the PEP 691 negotiation and the serial
comment that ``serve`` reads back."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pypi_assets.pypi.simple import (
    HTML_CT,
    JSON_CT,
    IndexOptions,
    negotiate,
    parse_project_page_html,
    parse_project_page_json,
    parse_root_html,
    parse_root_json,
    render_project,
    render_root,
    serial_comment,
)


def _file(name: str, key: str, **kw: Any) -> dict[str, Any]:
    base = dict(
        filename=name,
        key=key,
        sha256="a" * 64,
        size=123,
        upload_time=datetime(2024, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
        yanked=False,
        yanked_reason=None,
        file_requires_python=None,
        core_metadata_sha256=None,
        release_version="1.0",
        packagetype="sdist",
        python_version="source",
        md5=None,
        blake2b_256="b" * 64,
    )
    base.update(kw)
    return base


FILES = [
    _file("demo-1.0.tar.gz", "packages/aa/bb/" + "c" * 60 + "/demo-1.0.tar.gz", md5="d" * 32),
    _file(
        "demo-1.0-py3-none-any.whl",
        "packages/11/22/" + "e" * 60 + "/demo-1.0-py3-none-any.whl",
        file_requires_python=">=3.8,<4&'\"",
        core_metadata_sha256="f" * 64,
        packagetype="bdist_wheel",
        upload_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    ),
    _file(
        "demo-2.0rc1.tar.gz",
        "packages/33/44/" + "0" * 60 + "/demo-2.0rc1.tar.gz",
        yanked=True,
        yanked_reason="broken <b>",
        release_version="2.0rc1",
        upload_time=None,
        size=None,
    ),
    _file(
        "demo-0.9.tar.gz",
        "packages/55/66/" + "1" * 60 + "/demo-0.9.tar.gz",
        yanked=True,
        release_version="0.9",
    ),
]
VERSIONS = ["1.0", "2.0rc1", "0.9", "not a version", "1.0", "10.0"]
OPTIONS = {
    "default": IndexOptions(),
    "html": IndexOptions(formats="HTML"),
    "json": IndexOptions(formats="JSON"),
    "md5-rooturi-nocore": IndexOptions(
        root_uri="https://m.example", digest="md5", core_metadata=False
    ),
}
ROOT = [("a-b", "A.B <x>", 5), ("demo", "Demo", 77), ("ü-name", "ü Name", 9)]

PINNED = {
    "project-default": {
        "simple/demo/index.html": "ac82eee43ac05ea0588f2dfee7c2f1c47f48edf4d05e8ba38e9a9e60d09cdd92",
        "simple/demo/index.v1_html": "ac82eee43ac05ea0588f2dfee7c2f1c47f48edf4d05e8ba38e9a9e60d09cdd92",
        "simple/demo/index.v1_json": "46ec0ebece18d15c0242c42fb2f265496f335b5769490f576def532b85cf5449",
    },
    "project-html": {
        "simple/demo/index.html": "ac82eee43ac05ea0588f2dfee7c2f1c47f48edf4d05e8ba38e9a9e60d09cdd92",
        "simple/demo/index.v1_html": "ac82eee43ac05ea0588f2dfee7c2f1c47f48edf4d05e8ba38e9a9e60d09cdd92",
    },
    "project-json": {
        "simple/demo/index.v1_json": "46ec0ebece18d15c0242c42fb2f265496f335b5769490f576def532b85cf5449",
    },
    "project-md5-rooturi-nocore": {
        "simple/demo/index.html": "863e83ab7048e34d00d8f6d8ed2ab046d296fdb2422ab00099c717cf54750b8c",
        "simple/demo/index.v1_html": "863e83ab7048e34d00d8f6d8ed2ab046d296fdb2422ab00099c717cf54750b8c",
        "simple/demo/index.v1_json": "d5f7b5d15e0b54ced4190a2a5e62c7883f4b1ab50f33107d014d3f5ed3eed186",
    },
    "root-ALL": {
        "simple/index.html": "87d33e41c7a2d075238079513b64620673f1e5adb0e28964ccb1c6fba61683d5",
        "simple/index.v1_html": "87d33e41c7a2d075238079513b64620673f1e5adb0e28964ccb1c6fba61683d5",
        "simple/index.v1_json": "4ce054430414864db8c74fc1463955945c3129e8c9475f435e5b8621f463c280",
    },
    "root-HTML": {
        "simple/index.html": "87d33e41c7a2d075238079513b64620673f1e5adb0e28964ccb1c6fba61683d5",
        "simple/index.v1_html": "87d33e41c7a2d075238079513b64620673f1e5adb0e28964ccb1c6fba61683d5",
    },
    "root-JSON": {
        "simple/index.html": "87d33e41c7a2d075238079513b64620673f1e5adb0e28964ccb1c6fba61683d5",
        "simple/index.v1_html": "87d33e41c7a2d075238079513b64620673f1e5adb0e28964ccb1c6fba61683d5",
        "simple/index.v1_json": "4ce054430414864db8c74fc1463955945c3129e8c9475f435e5b8621f463c280",
    },
}


def _digests(pages: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(body).hexdigest() for path, body in pages.items()}


@pytest.mark.parametrize("combo", sorted(OPTIONS))
def test_project_pages_are_byte_identical(combo: str) -> None:
    pages = render_project("demo", "Demo <&>", 77, FILES, VERSIONS, OPTIONS[combo])
    assert _digests(pages) == PINNED[f"project-{combo}"]


@pytest.mark.parametrize("formats", ["ALL", "HTML", "JSON"])
def test_root_pages_are_byte_identical(formats: str) -> None:
    pages = render_root(ROOT, 1234, formats)
    assert _digests(pages) == PINNED[f"root-{formats}"]
    # the writer writes them in this order: the JSON (if any) first, index.html last
    assert list(pages)[-1] == "simple/index.html"


def test_rendered_pages_parse_back() -> None:
    """What the mirror renders, its own parsers (those for an upstream) read back."""
    pages = render_project("demo", "Demo <&>", 77, FILES, VERSIONS)
    page = parse_project_page_json(json.loads(pages["simple/demo/index.v1_json"]))
    html = parse_project_page_html(pages["simple/demo/index.html"].decode(), "demo")
    assert page.serial == html.serial == 77
    assert [f.filename for f in page.files] == [f.filename for f in html.files]
    assert [f.yanked_reason for f in html.files] == [None, None, "broken <b>", None]
    assert page.versions == ["not a version", "0.9", "1.0", "2.0rc1", "10.0"]
    root = render_root(ROOT, 1234)
    assert parse_root_json(json.loads(root["simple/index.v1_json"])) == (
        1234,
        ["A.B <x>", "Demo", "ü Name"],
        [5, 77, 9],
    )
    assert parse_root_html(root["simple/index.html"].decode()) == (
        1234,
        ["A.B <x>", "Demo", "ü Name"],
    )
    assert serial_comment(root["simple/index.html"][-64:]) == "1234"
    assert serial_comment(b"<html></html>") is None


def test_negotiation_follows_pep_691() -> None:
    assert negotiate(JSON_CT) == "json"
    assert negotiate(f"{JSON_CT};q=0.1, text/html") == "html"
    assert negotiate("application/vnd.pypi.simple.latest+json") == "json"
    assert negotiate(f"{HTML_CT}, {JSON_CT};q=0.9") == "html"
    assert negotiate(f"{JSON_CT};q=oops, text/html;q=0.5") == "html"
    assert negotiate("") == "html" and negotiate("*/*") == "html"
    assert negotiate("image/png") == "html"
    assert negotiate("text/html", JSON_CT) == "json"
    assert negotiate(JSON_CT, "text/html") == "html"
