"""The Simple API's rendering (pypi/simple.py), pinned byte for byte: the digests below are
of the pages the index writer produced before rendering moved out of store/index.py, so a
change to a written page is a deliberate one (issue 11: api-version 1.1 became 1.4, and each
JSON file gained ``"provenance": null``; nothing else changed). Also the PEP 691 negotiation and the serial
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
        "simple/demo/index.html": "95ca87995a30efe5728d843605642b5ce6b1f98214d7d428f213dc3361f5a55e",
        "simple/demo/index.v1_html": "95ca87995a30efe5728d843605642b5ce6b1f98214d7d428f213dc3361f5a55e",
        "simple/demo/index.v1_json": "f3c61c87edf2b33813786204219f5f0294615c5cdf047cfda98db49e790b80c5",
    },
    "project-html": {
        "simple/demo/index.html": "95ca87995a30efe5728d843605642b5ce6b1f98214d7d428f213dc3361f5a55e",
        "simple/demo/index.v1_html": "95ca87995a30efe5728d843605642b5ce6b1f98214d7d428f213dc3361f5a55e",
    },
    "project-json": {
        "simple/demo/index.v1_json": "f3c61c87edf2b33813786204219f5f0294615c5cdf047cfda98db49e790b80c5",
    },
    "project-md5-rooturi-nocore": {
        "simple/demo/index.html": "0ed083ed6cdd97cdc85f01a69586579c799baa511c5de2a87faf4b1781375bd3",
        "simple/demo/index.v1_html": "0ed083ed6cdd97cdc85f01a69586579c799baa511c5de2a87faf4b1781375bd3",
        "simple/demo/index.v1_json": "c5f2ba4f36747058b5ead94a2858f03b177037b7ceae2ed26221b624d0397e45",
    },
    "root-ALL": {
        "simple/index.html": "b0d8fb5de9ec54ad4636caafc914d8effa48c44d6281585ed86f837d98ea1b7a",
        "simple/index.v1_html": "b0d8fb5de9ec54ad4636caafc914d8effa48c44d6281585ed86f837d98ea1b7a",
        "simple/index.v1_json": "5b848d991c9be2d384456e01105ef927797c482cd7bcb0960eb4dca5123acd8c",
    },
    "root-HTML": {
        "simple/index.html": "b0d8fb5de9ec54ad4636caafc914d8effa48c44d6281585ed86f837d98ea1b7a",
        "simple/index.v1_html": "b0d8fb5de9ec54ad4636caafc914d8effa48c44d6281585ed86f837d98ea1b7a",
    },
    "root-JSON": {
        "simple/index.html": "b0d8fb5de9ec54ad4636caafc914d8effa48c44d6281585ed86f837d98ea1b7a",
        "simple/index.v1_html": "b0d8fb5de9ec54ad4636caafc914d8effa48c44d6281585ed86f837d98ea1b7a",
        "simple/index.v1_json": "5b848d991c9be2d384456e01105ef927797c482cd7bcb0960eb4dca5123acd8c",
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
