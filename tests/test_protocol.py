"""Parsing Warehouse's protocols: simple JSON and HTML, JSON API, XML-RPC (safely)."""

from __future__ import annotations

import asyncio
import json
import xmlrpc.client

import httpx
import pytest

from pypi_assets.fake import FakeUpstream
from pypi_assets.pypi import ClientConfig, PyPIClient
from pypi_assets.pypi.simple import (
    SimpleParseError,
    loads_root_json,
    parse_project_page_html,
    parse_project_page_json,
    parse_root_html,
    parse_root_json,
)
from pypi_assets.pypi.xmlrpc import XmlRpcError, loads_response


def test_root_json() -> None:
    doc = {
        "meta": {"api-version": "1.4", "_last-serial": 99},
        "projects": [{"name": "Foo_Bar", "_last-serial": 5}, {"name": "baz", "_last-serial": 99}],
    }
    assert parse_root_json(doc) == (99, ["Foo_Bar", "baz"], [5, 99])
    # The compact loader used for the 40 MB listing gives the same answer.
    assert parse_root_json(loads_root_json(json.dumps(doc).encode())) == (
        99,
        ["Foo_Bar", "baz"],
        [5, 99],
    )


def test_root_json_rejects_other_major_version() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        parse_root_json({"meta": {"api-version": "2.0"}, "projects": []})


def test_root_html_with_serial_comment() -> None:
    html = '<html><body><a href="/simple/a/">A</a><a href="/simple/b-c/">b.c</a></body></html>\n<!--SERIAL 42-->'
    assert parse_root_html(html) == (42, ["A", "b.c"])


def test_project_page_json_fields() -> None:
    page = parse_project_page_json(
        {
            "meta": {"api-version": "1.1", "_last-serial": 7},
            "name": "foo",
            "versions": ["1.0"],
            "files": [
                {
                    "filename": "foo-1.0-py3-none-any.whl",
                    "url": "https://files.example/foo-1.0-py3-none-any.whl",
                    "hashes": {"sha256": "a" * 64},
                    "requires-python": ">=3.8",
                    "yanked": "broken",
                    "core-metadata": {"sha256": "b" * 64},
                    "size": 10,
                    "upload-time": "2024-01-01T00:00:00.000000Z",
                },
                {
                    "filename": "foo-1.0.tar.gz",
                    "url": "https://files.example/foo-1.0.tar.gz",
                    "hashes": {"sha256": "c" * 64},
                    "yanked": False,
                    "data-dist-info-metadata": False,
                },
            ],
        }
    )
    whl, sdist = page.files
    assert (page.serial, page.versions) == (7, ["1.0"])
    assert whl.yanked and whl.yanked_reason == "broken"
    assert whl.core_metadata and whl.core_metadata_sha256 == "b" * 64
    assert whl.requires_python == ">=3.8" and whl.size == 10
    assert not sdist.yanked and not sdist.core_metadata


def test_project_page_html_attributes() -> None:
    html = (
        '<a href="https://f.example/foo-1.0-py3-none-any.whl#sha256=' + "a" * 64 + '" '
        'data-requires-python="&gt;=3.8" data-yanked="" data-core-metadata="sha256='
        + "b"
        * 64
        + '">'
        "foo-1.0-py3-none-any.whl</a>\n"
        '<a href="https://f.example/foo-1.0.tar.gz#sha256='
        + "c" * 64
        + '">foo-1.0.tar.gz</a>\n<!--SERIAL 12-->'
    )
    page = parse_project_page_html(html, "foo")
    whl, sdist = page.files
    assert page.serial == 12
    assert whl.url == "https://f.example/foo-1.0-py3-none-any.whl" and whl.sha256 == "a" * 64
    assert whl.requires_python == ">=3.8"
    assert whl.yanked and whl.yanked_reason is None
    assert whl.core_metadata_sha256 == "b" * 64
    assert not sdist.yanked and not sdist.core_metadata


def test_xmlrpc_roundtrip_and_fault() -> None:
    body = xmlrpc.client.dumps(({"a": 1, "B_c": 2},), methodresponse=True).encode()
    assert loads_response(body) == {"a": 1, "B_c": 2}
    fault = xmlrpc.client.dumps(
        xmlrpc.client.Fault(-32601, "disabled"), methodresponse=True
    ).encode()
    with pytest.raises(XmlRpcError, match="disabled"):
        loads_response(fault)


def test_xmlrpc_refuses_entity_expansion() -> None:
    bomb = (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b"<methodResponse><params><param><value><string>&lol3;</string></value></param></params></methodResponse>"
    )
    with pytest.raises(XmlRpcError, match="refused"):
        loads_response(bomb)


def test_xmlrpc_refuses_external_entities() -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<methodResponse><params><param><value><string>&e;</string></value></param></params></methodResponse>"
    )
    with pytest.raises(XmlRpcError):
        loads_response(xxe)


def _client(up: FakeUpstream) -> PyPIClient:
    return PyPIClient(ClientConfig(upstream=up.url, backoff=0.01))


def test_fake_negotiates_simple_format(fake: FakeUpstream) -> None:
    h_json = {"Accept": "application/vnd.pypi.simple.v1+json"}
    r = httpx.get(fake.url + "/simple/", headers=h_json)
    assert r.headers["content-type"] == "application/vnd.pypi.simple.v1+json"
    assert r.headers["vary"] == "Accept"
    assert (
        int(r.headers["x-pypi-last-serial"])
        == r.json()["meta"]["_last-serial"]
        == fake.index.serial
    )
    r = httpx.get(fake.url + "/simple/", headers={"Accept": "text/html"})
    assert r.headers["content-type"] == "application/vnd.pypi.simple.v1+html"
    assert f"<!--SERIAL {fake.index.serial}-->" in r.text
    r = httpx.get(fake.url + "/simple/", headers={"Accept": "application/unknown"})
    assert "html" in r.headers["content-type"]  # no match: HTML, as Warehouse does


def test_fake_redirects_non_normalised_names(fake: FakeUpstream) -> None:
    display = next(p.name for p in fake.index.projects.values() if p.name != p.name.lower())
    r = httpx.get(f"{fake.url}/simple/{display}/", follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"].endswith(f"/simple/{display.lower().replace('_', '-')}/")
    assert "x-pypi-last-serial" in r.headers


def test_client_lists_via_json_and_xmlrpc(fake: FakeUpstream) -> None:
    async def main() -> None:
        async with _client(fake) as c:
            listing = await c.list_projects()
            assert listing.source == "simple-json"
            assert listing.serial == fake.index.serial
            assert len(listing) == len(fake.index.projects)
            via_rpc = await c.xmlrpc("list_packages_with_serial")
            assert via_rpc == {p.name: p.serial for p in listing.projects}
            assert await c.xmlrpc("changelog_last_serial") == fake.index.serial
            assert await c.last_serial() == fake.index.serial

    asyncio.run(main())


def test_client_falls_back_to_xmlrpc_when_simple_json_fails(fake: FakeUpstream) -> None:
    from pypi_assets.fake import Fault

    fake.add_fault(Fault(path=r"^/simple/$", kind="status", status=500, times=100))

    async def main() -> None:
        async with PyPIClient(ClientConfig(upstream=fake.url, backoff=0.001, retries=1)) as c:
            listing = await c.list_projects()
            assert listing.source == "xmlrpc"
            assert len(listing) == len(fake.index.projects)

    asyncio.run(main())


def test_client_follows_redirect_for_project_page(fake: FakeUpstream) -> None:
    display = next(p.name for p in fake.index.projects.values() if p.name != p.name.lower())

    async def main() -> None:
        async with _client(fake) as c:
            page = await c.simple_page(display)
            assert page.files and page.serial == fake.index.get(display).serial  # type: ignore[union-attr]

    asyncio.run(main())


def test_changelog_loops_past_the_cap(fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    import pypi_assets.fake.server as server

    monkeypatch.setattr(server, "CHANGELOG_CAP", 5)

    async def main() -> None:
        async with PyPIClient(ClientConfig(upstream=fake.url, changelog_page=5)) as c:
            rows = await c.changelog_since(0)
            assert len(rows) == len(fake.index.projects)
            assert [r[4] for r in rows] == sorted(r[4] for r in rows)

    asyncio.run(main())


def test_a_transport_that_answers_with_bytes_works() -> None:
    """Library users test with httpx.MockTransport, whose responses arrive already read."""
    root = {
        "meta": {"api-version": "1.4", "_last-serial": 7},
        "projects": [{"name": "Flask", "_last-serial": 7}, {"name": "idna", "_last-serial": 3}],
    }

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/simple/"
        return httpx.Response(
            200,
            content=json.dumps(root).encode(),
            headers={
                "Content-Type": "application/vnd.pypi.simple.v1+json",
                "X-PyPI-Last-Serial": "7",
            },
        )

    async def main() -> tuple[int, list[str]]:
        config = ClientConfig(upstream="http://127.0.0.1:9")
        async with PyPIClient(config, transport=httpx.MockTransport(answer)) as client:
            listing = await client.list_projects()
            return listing.serial, listing.names

    assert asyncio.run(main()) == (7, ["Flask", "idna"])


def test_serials_written_as_strings_are_read() -> None:
    """bandersnatch-made mirrors, and this machine's route to pypi.org, write
    ``"_last-serial": "41170495"`` in simple JSON."""
    page = parse_project_page_json(
        {"meta": {"api-version": "1.1", "_last-serial": "41170495"}, "name": "idna", "files": []}
    )
    assert page.serial == 41170495
    root = {
        "meta": {"api-version": "1.1", "_last-serial": "7"},
        "projects": [{"name": "idna", "_last-serial": "3"}, {"name": "Flask", "_last-serial": 7}],
    }
    assert parse_root_json(root) == (7, ["idna", "Flask"], [3, 7])
    for bad in ("-1", "1e3", " 7", "99999999999999999999", True):
        with pytest.raises(SimpleParseError):
            parse_project_page_json({"meta": {"api-version": "1.1", "_last-serial": bad}})


def test_a_json_page_file_url_loses_its_hash_fragment() -> None:
    """A mirror's PEP 691 JSON may carry ``#sha256=…`` on file URLs (ours does, as the HTML
    form): the URL the file and its ``.metadata`` are fetched from is the part before it."""
    from pypi_assets.pypi.simple import parse_project_page_json

    digest = "a" * 64
    page = parse_project_page_json(
        {
            "meta": {"api-version": "1.4"},
            "name": "p",
            "files": [
                {
                    "filename": "p-1.0-py3-none-any.whl",
                    "url": f"../../packages/p-1.0-py3-none-any.whl#sha256={digest}",
                    "hashes": {"sha256": digest},
                    "core-metadata": {"sha256": digest},
                }
            ],
        }
    )
    assert page.files[0].url == "../../packages/p-1.0-py3-none-any.whl"
