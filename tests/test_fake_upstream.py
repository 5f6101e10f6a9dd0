"""The fake upstream models Warehouse of 2026 (a cached root that lags, rate-limited XML-RPC,
PEP 792 status, PEP 740 provenance, vulnerabilities and ownership, Index API 1.4, JSON API
redirects to the display name) and falls short as proxies do, on switches."""

from __future__ import annotations

import base64
import json
import time
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from packaging.utils import canonicalize_name

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.fake.data import FakeFile, osv_record, provenance_bundle
from pypi_assets.fake.modes import PROFILES, Switches

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
HTML = {"Accept": "text/html"}


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeIndex.generate(24)) as server:
        yield server


@pytest.fixture
def http(up: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=up.url, follow_redirects=False, trust_env=False) as client:
        yield client


def _rpc(http: httpx.Client, method: str, *params: Any) -> Any:
    r = http.post("/pypi", content=xmlrpc.client.dumps(params, method).encode())
    assert r.status_code == 200, r.text
    return xmlrpc.client.loads(r.content)[0][0]


def _root_names(http: httpx.Client) -> set[str]:
    return {p["name"] for p in http.get("/simple/", headers=JSON).json()["projects"]}


def _changelog(http: httpx.Client, since: int = 0) -> list[list[Any]]:
    return list(_rpc(http, "changelog_since_serial", since))


def _first(up: FakeUpstream, pred: Any) -> tuple[str, FakeFile]:
    for norm in up.index.projects:
        for rel in up.index.releases(norm).values():
            for f in rel.files:
                if pred(f):
                    return norm, f
    raise AssertionError("no such file")


# ---------------------------------------------------------------------- 1. cached root
def test_cached_root_lags_until_purged_while_pages_json_and_xmlrpc_stay_live(
    up: FakeUpstream, http: httpx.Client
) -> None:
    s0 = up.index.serial
    up.configure(cached_root=True)
    up.index.add_project("brand-new")
    up.index.add_release("brand-new", "1.0")
    root = http.get("/simple/", headers=JSON)
    assert root.headers["X-PyPI-Last-Serial"] == str(s0)
    assert root.json()["meta"]["_last-serial"] == s0
    assert "brand-new" not in _root_names(http)
    page = http.get("/simple/")
    assert "brand-new" not in page.text and f"<!--SERIAL {s0}-->" in page.text
    assert http.head("/simple/").headers["X-PyPI-Last-Serial"] == str(s0)
    # project pages, the JSON API and XML-RPC are live
    assert http.get("/simple/brand-new/", headers=JSON).json()["versions"] == ["1.0"]
    assert http.get("/pypi/brand-new/json").status_code == 200
    assert _rpc(http, "changelog_last_serial") == up.index.serial > s0
    assert "brand-new" in _rpc(http, "list_packages_with_serial")
    up.purge_root()
    assert "brand-new" in _root_names(http)
    assert http.head("/simple/").headers["X-PyPI-Last-Serial"] == str(up.index.serial)


def test_cached_root_refreshes_itself_after_its_age(up: FakeUpstream, http: httpx.Client) -> None:
    up.configure(cached_root=True, root_max_age=0.3)
    up.index.add_project("late-comer")
    assert "late-comer" not in _root_names(http)
    time.sleep(0.35)
    assert "late-comer" in _root_names(http)
    up.index.add_project("later-still")  # a fresh copy was just taken: lags again
    assert "later-still" not in _root_names(http)


def test_root_is_the_cdn_copy_by_default(up: FakeUpstream, http: httpx.Client) -> None:
    """Today's Warehouse: the root is cached for about a day from its first request."""
    assert up.switches == Switches()
    assert up.switches.cached_root and up.switches.root_max_age == 86_400
    s0 = up.index.serial
    assert http.head("/simple/").headers["X-PyPI-Last-Serial"] == str(s0)  # the copy is taken
    up.index.add_project("a-day-late")
    assert "a-day-late" not in _root_names(http)
    assert http.head("/simple/").headers["X-PyPI-Last-Serial"] == str(s0)
    assert http.get("/simple/a-day-late/", headers=JSON).status_code == 200  # pages are live
    up.purge_root()
    assert "a-day-late" in _root_names(http)


def test_root_is_live_when_the_cache_is_off(http: httpx.Client) -> None:
    with FakeUpstream(FakeIndex.generate(3), cached_root=False) as live:
        assert http.get(f"{live.url}/simple/").status_code == 200
        live.index.add_project("at-once")
        assert "at-once" in {
            p["name"] for p in http.get(f"{live.url}/simple/", headers=JSON).json()["projects"]
        }
        assert http.head(f"{live.url}/simple/").headers["X-PyPI-Last-Serial"] == str(
            live.index.serial
        )


# ---------------------------------------------------------------------- 2. XML-RPC
def test_xmlrpc_rate_limit_answers_429_with_the_reset_message(
    up: FakeUpstream, http: httpx.Client
) -> None:
    up.configure(xmlrpc_limit=(3, 60))
    for _ in range(3):
        assert _rpc(http, "changelog_last_serial") == up.index.serial
    r = http.post("/pypi", content=xmlrpc.client.dumps((), "changelog_last_serial").encode())
    assert r.status_code == 429
    assert "Limit may reset in " in r.text
    seconds = int(r.text.split("Limit may reset in ")[1].split()[0])
    assert 1 <= seconds <= 60
    assert up.counts["xmlrpc-limited"] == 1 and up.counts["xmlrpc"] == 4


def test_xmlrpc_rate_limit_as_a_fault_and_the_window_resets(
    up: FakeUpstream, http: httpx.Client
) -> None:
    up.configure(xmlrpc_limit=(2, 0.4), xmlrpc_limit_fault=True)
    _rpc(http, "changelog_last_serial")
    _rpc(http, "changelog_last_serial")
    r = http.post("/pypi", content=xmlrpc.client.dumps((), "changelog_last_serial").encode())
    assert r.status_code == 200
    with pytest.raises(xmlrpc.client.Fault, match=r"Limit may reset in \d+ seconds"):
        xmlrpc.client.loads(r.content)
    time.sleep(0.45)
    assert _rpc(http, "changelog_last_serial") == up.index.serial


def test_changelog_is_capped_per_call_and_pages_to_the_end(
    up: FakeUpstream, http: httpx.Client
) -> None:
    up.configure(changelog_cap=5)
    rows, since = [], 0
    while True:
        batch = _changelog(http, since)
        assert len(batch) <= 5
        if not batch:
            break
        rows += batch
        since = batch[-1][4]
    assert len(rows) == 24 and since == up.index.serial == _rpc(http, "changelog_last_serial")
    assert [r[4] for r in rows] == sorted({r[4] for r in rows})


def test_changelog_rows_carry_warehouse_actions(up: FakeUpstream, http: httpx.Client) -> None:
    idx, s0 = up.index, up.index.serial
    idx.add_project("Acts")
    rel = idx.add_release("Acts", "1.0", wheels=1)
    wheel = next(f for f in rel.files if f.filename.endswith(".whl"))
    idx.add_release("Acts", "2.0", wheels=0)
    idx.delete_file("Acts", wheel.filename)
    idx.yank("Acts", "1.0", "broken")
    idx.unyank("Acts", "1.0")
    idx.set_role("Acts", "bob", "Maintainer")
    idx.set_role("Acts", "bob", "Owner")
    idx.set_role("Acts", "bob", None)
    idx.set_status("Acts", "quarantined", "malware report")
    idx.set_status("Acts", "active")
    idx.delete_release("Acts", "2.0")
    idx.delete_project("Acts")
    rows = _changelog(http, s0)
    for name, version, ts, _action, serial in rows:
        assert name == "Acts" and (version is None or isinstance(version, str))
        assert isinstance(ts, int) and isinstance(serial, int) and serial > s0
    actions = [r[3] for r in rows]
    assert actions == [
        "create",
        "new release",
        "add source file acts-1.0.tar.gz",
        f"add py3 file {wheel.filename}",
        "new release",
        "add source file acts-2.0.tar.gz",
        f"remove file {wheel.filename}",
        "yank release",
        "unyank release",
        "add Maintainer bob",
        "change Maintainer bob to Owner",
        "remove Owner bob",
        "project quarantined",
        "project quarantine cleared",
        "remove release",
        "remove project",
    ]
    assert rows[1][1] == "1.0" and rows[0][1] is None


# ---------------------------------------------------------------------- 3. PEP 792 status
def _page(http: httpx.Client, norm: str, accept: dict[str, str] = JSON) -> httpx.Response:
    r = http.get(f"/simple/{norm}/", headers=accept)
    assert r.status_code == 200
    return r


@pytest.mark.parametrize("status", ["archived", "deprecated"])
def test_archive_and_deprecate_change_the_page_and_etag_not_the_serial(
    up: FakeUpstream, http: httpx.Client, status: str
) -> None:
    norm = next(iter(up.index.projects))
    before_json, before_html = _page(http, norm), _page(http, norm, HTML)
    assert before_json.json()["project-status"] == {"status": "active"}
    serial, log = up.index.serial, _changelog(http)
    up.index.set_status(norm, status, "no longer maintained")
    after_json, after_html = _page(http, norm), _page(http, norm, HTML)
    assert after_json.json()["project-status"] == {
        "status": status,
        "reason": "no longer maintained",
    }
    assert f'<meta name="pypi:project-status" content="{status}">' in after_html.text
    assert '<meta name="pypi:project-status-reason" content="no longer maintained">' in (
        after_html.text
    )
    for before, after in ((before_json, after_json), (before_html, after_html)):
        assert before.headers["ETag"] != after.headers["ETag"]
        assert after.headers["X-PyPI-Last-Serial"] == before.headers["X-PyPI-Last-Serial"]
        old = http.get(
            f"/simple/{norm}/",
            headers={**before.request.headers, "If-None-Match": before.headers["ETag"]},
        )
        assert old.status_code == 200  # the page changed: the old ETag no longer matches
    assert up.index.serial == serial and _changelog(http) == log
    assert after_json.json()["files"] == before_json.json()["files"]  # files stay listed
    up.index.set_status(norm, "active")  # unarchive: not journaled either
    assert (
        up.index.serial == serial
        and _page(http, norm).headers["ETag"] == before_json.headers["ETag"]
    )


def test_quarantine_hides_empties_404s_and_is_journaled(
    up: FakeUpstream, http: httpx.Client
) -> None:
    norm = next(n for n in up.index.projects if up.index.latest(n) is not None)
    p = up.index.projects[norm]
    version = up.index.latest(norm).version  # type: ignore[union-attr]
    s0 = up.index.serial
    assert p.name in _root_names(http)  # the CDN's copy of the root is taken now
    assert up.index.set_status(norm, "quarantined", "malware")
    up.purge_root()  # this test is about quarantine, not the root's lag: see the live listing
    assert up.index.serial == s0 + 1 == p.serial
    assert _changelog(http, s0) == [
        [p.name, None, _changelog(http, s0)[0][2], "project quarantined", s0 + 1]
    ]
    assert p.name not in _root_names(http) and norm not in http.get("/simple/").text
    page = _page(http, norm).json()
    assert page["files"] == [] and page["versions"] == []
    assert page["project-status"] == {"status": "quarantined", "reason": "malware"}
    assert "<a " not in _page(http, norm, HTML).text
    assert http.get(f"/pypi/{p.name}/json").status_code == 404
    assert http.get(f"/pypi/{p.name}/{version}/json").status_code == 404
    assert p.name not in _rpc(http, "list_packages_with_serial")
    assert not up.index.set_status(norm, "quarantined")  # already: nothing journaled
    assert up.index.set_status(norm, "active")
    assert _changelog(http, s0 + 1)[0][3] == "project quarantine cleared"
    assert up.index.serial == s0 + 2
    up.purge_root()  # this test is about quarantine, not the root's lag: see the live listing
    assert p.name in _root_names(http) and _page(http, norm).json()["files"]
    assert http.get(f"/pypi/{p.name}/json").status_code == 200
    with pytest.raises(ValueError):
        up.index.set_status(norm, "gone")


# ---------------------------------------------------------------------- 4. PEP 740
def test_provenance_urls_resolve_to_integrity_objects(up: FakeUpstream, http: httpx.Client) -> None:
    norm, f = _first(up, lambda f: f.has_provenance)
    entry = next(e for e in _page(http, norm).json()["files"] if e["filename"] == f.filename)
    assert entry["provenance"] == f"{up.url}/integrity/{norm}/{f.version}/{f.filename}/provenance"
    assert f'data-provenance="{entry["provenance"]}"' in _page(http, norm, HTML).text
    r = http.get(entry["provenance"])
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/vnd.pypi.integrity.v1+json"
    body = r.json()
    assert body == provenance_bundle(up.index.projects[norm].name, f)
    assert body["version"] == 1
    bundle = body["attestation_bundles"][0]
    assert set(bundle["publisher"]) == {"kind", "repository", "workflow", "environment"}
    assert bundle["publisher"]["kind"] == "GitHub"
    statement = json.loads(base64.b64decode(bundle["attestations"][0]["envelope"]["statement"]))
    assert statement["subject"] == [{"name": f.filename, "digest": {"sha256": f.sha256}}]
    assert r.json() == http.get(entry["provenance"]).json()  # deterministic
    assert (
        http.get(entry["provenance"], headers={"If-None-Match": r.headers["ETag"]}).status_code
        == 304
    )


def test_some_files_have_no_provenance(up: FakeUpstream, http: httpx.Client) -> None:
    norm, f = _first(up, lambda f: not f.has_provenance)
    entry = next(e for e in _page(http, norm).json()["files"] if e["filename"] == f.filename)
    assert entry["provenance"] is None
    url = f"/integrity/{norm}/{f.version}/{f.filename}/provenance"
    assert http.get(url).status_code == 404
    assert http.get("/integrity/nope/1.0/nope-1.0.tar.gz/provenance").status_code == 404


# ---------------------------------------------------------------------- 5. vulnerabilities, ownership
def _project_with_two_releases(up: FakeUpstream) -> tuple[str, str, str]:
    for norm in up.index.projects:
        latest = up.index.latest(norm)
        older = [
            v
            for v, r in up.index.releases(norm).items()
            if r.files and latest and v != latest.version
        ]
        if latest and older:
            return up.index.projects[norm].name, latest.version, older[0]
    raise AssertionError("no project with two releases")


def test_vulnerabilities_per_release_not_journaled(up: FakeUpstream, http: httpx.Client) -> None:
    name, latest, older = _project_with_two_releases(up)
    before = http.get(f"/pypi/{name}/json")
    assert before.json()["vulnerabilities"] == []
    serial = up.index.serial
    vuln = osv_record("PYSEC-2026-1", aliases=["CVE-2026-0001"], fixed_in=[latest], summary="bad")
    up.index.set_vulnerabilities(name, older, [vuln])
    up.index.set_vulnerabilities(name, latest, [{"id": "GHSA-xxxx-yyyy-zzzz"}])
    assert up.index.serial == serial
    after = http.get(f"/pypi/{name}/json")
    assert after.headers["ETag"] != before.headers["ETag"]
    assert after.headers["X-PyPI-Last-Serial"] == before.headers["X-PyPI-Last-Serial"]
    (latest_vuln,) = after.json()["vulnerabilities"]
    assert latest_vuln["id"] == "GHSA-xxxx-yyyy-zzzz"
    keys = {"id", "aliases", "summary", "details", "fixed_in", "link", "source", "withdrawn"}
    assert set(latest_vuln) == keys
    assert http.get(f"/pypi/{name}/{older}/json").json()["vulnerabilities"] == [vuln]
    with pytest.raises(KeyError):
        up.index.set_vulnerabilities(name, "99.99", [vuln])


def test_ownership_roles_are_journaled_organization_is_not(
    up: FakeUpstream, http: httpx.Client
) -> None:
    name = next(p.name for p in up.index.projects.values() if p.name == canonicalize_name(p.name))
    first = http.get(f"/pypi/{name}/json")
    ownership = first.json()["ownership"]
    assert ownership["organization"] is None
    assert [r["role"] for r in ownership["roles"]] == ["Owner"]
    s0 = up.index.serial
    up.index.set_organization(name, "example-org")
    assert up.index.serial == s0
    up.index.set_role(name, "carol", "Maintainer")
    assert up.index.serial == s0 + 1 and _changelog(http, s0)[0][3] == "add Maintainer carol"
    second = http.get(f"/pypi/{name}/json")
    assert second.json()["ownership"] == {
        "organization": "example-org",
        "roles": [*ownership["roles"], {"role": "Maintainer", "user": "carol"}],
    }
    assert second.headers["ETag"] != first.headers["ETag"]
    version = second.json()["info"]["version"]
    assert (
        http.get(f"/pypi/{name}/{version}/json").json()["ownership"] == second.json()["ownership"]
    )


# ---------------------------------------------------------------------- 6. Index API 1.4
def test_index_api_1_4_fields(up: FakeUpstream, http: httpx.Client) -> None:
    assert http.get("/simple/", headers=JSON).json()["meta"]["api-version"] == "1.4"
    assert '<meta name="pypi:repository-version" content="1.4">' in http.get("/simple/").text
    norm = next(n for n in up.index.projects if up.index.latest(n) is not None)
    page = _page(http, norm).json()
    assert page["meta"] == {"api-version": "1.4", "_last-serial": up.index.projects[norm].serial}
    assert page["versions"] == list(up.index.releases(norm))
    for entry in page["files"]:
        assert {"size", "upload-time", "provenance", "core-metadata"} <= set(entry)
        assert isinstance(entry["size"], int) and entry["upload-time"].endswith("Z")


# ---------------------------------------------------------------------- 7. redirects
def test_json_api_redirects_to_the_display_name(up: FakeUpstream, http: httpx.Client) -> None:
    up.configure(json_redirects=True)
    p = next(p for p in up.index.projects.values() if p.name != canonicalize_name(p.name))
    norm = canonicalize_name(p.name)
    version = up.index.latest(norm).version  # type: ignore[union-attr]
    r = http.get(f"/pypi/{norm}/json")
    assert r.status_code == 301 and r.headers["Location"] == f"/pypi/{p.name}/json"
    r = http.get(f"/pypi/{norm}/{version}/json")
    assert r.status_code == 301 and r.headers["Location"] == f"/pypi/{p.name}/{version}/json"
    assert http.get(f"/pypi/{p.name}/json").status_code == 200  # the display name: no hop
    assert http.get(f"/pypi/{p.name.upper()}/json").status_code == 301
    assert http.get(f"/pypi/{norm}/json", follow_redirects=True).json()["info"]["name"] == p.name
    assert up.counts["redirect:project-json"] == 3 and up.counts["redirect:version-json"] == 1
    assert up.counts["project-json"] == 5  # each hop is a request
    # the Simple API redirects to the normalised name instead
    r = http.get(f"/simple/{p.name}/")
    assert r.status_code == 301 and r.headers["Location"] == f"/simple/{norm}/"
    assert up.counts["redirect:simple-project"] == 1
    assert up.counts["redirect"] == 5


def test_json_redirects_off_serves_the_normalised_name(
    up: FakeUpstream, http: httpx.Client
) -> None:
    up.configure(json_redirects=False)
    p = next(p for p in up.index.projects.values() if p.name != canonicalize_name(p.name))
    assert http.get(f"/pypi/{canonicalize_name(p.name)}/json").status_code == 200
    r = http.get(f"/pypi/{p.name}/json")
    assert (
        r.status_code == 301 and r.headers["Location"] == f"/pypi/{canonicalize_name(p.name)}/json"
    )


# ---------------------------------------------------------------------- 8. falling short
def test_no_releases_key(up: FakeUpstream, http: httpx.Client) -> None:
    name = next(iter(up.index.projects.values())).name
    assert "releases" in http.get(f"/pypi/{name}/json").json()
    up.configure(releases_key=False)
    data = http.get(f"/pypi/{name}/json").json()
    assert "releases" not in data and {"info", "urls", "last_serial"} <= set(data)


def test_version_json_404(up: FakeUpstream, http: httpx.Client) -> None:
    name, latest, _ = _project_with_two_releases(up)
    assert http.get(f"/pypi/{name}/{latest}/json").status_code == 200
    up.configure(version_json_404=True)
    assert http.get(f"/pypi/{name}/{latest}/json").status_code == 404
    assert http.get(f"/pypi/{name}/json").status_code == 200


@pytest.mark.parametrize("mode", ["advertised", "unadvertised", "absent"])
def test_pep658_modes(up: FakeUpstream, http: httpx.Client, mode: str) -> None:
    up.configure(pep658=mode)
    norm, f = _first(up, lambda f: f.core_metadata)
    entry = next(e for e in _page(http, norm).json()["files"] if e["filename"] == f.filename)
    html = _page(http, norm, HTML).text
    meta = http.get(f"/{f.path}.metadata")
    if mode == "advertised":
        assert entry["core-metadata"] == {"sha256": f.metadata_sha256}
        assert f'data-core-metadata="sha256={f.metadata_sha256}"' in html
    else:
        assert entry["core-metadata"] is False and entry["data-dist-info-metadata"] is False
        assert "data-core-metadata" not in html and "data-dist-info-metadata" not in html
    assert (meta.status_code, meta.content if meta.status_code == 200 else None) == (
        (200, f.metadata) if mode != "absent" else (404, None)
    )
    with pytest.raises(ValueError):
        up.configure(pep658="sometimes")


def test_no_serial_headers(up: FakeUpstream, http: httpx.Client) -> None:
    up.configure(serial_headers=False)
    norm = next(iter(up.index.projects))
    name = up.index.projects[norm].name
    responses = [
        http.get("/simple/", headers=JSON),
        http.get("/simple/"),
        http.head("/simple/"),
        _page(http, norm),
        _page(http, norm, HTML),
        http.get(f"/pypi/{name}/json"),
        http.post("/pypi", content=xmlrpc.client.dumps((), "changelog_last_serial").encode()),
    ]
    assert all("X-PyPI-Last-Serial" not in r.headers for r in responses)
    root, _, _, page, page_html = (r for r in responses[:5])
    assert root.json()["meta"] == {"api-version": "1.4"}
    assert all(set(p) == {"name"} for p in root.json()["projects"])
    assert "_last-serial" not in page.json()["meta"]
    assert "SERIAL" not in responses[1].text and "SERIAL" not in page_html.text


def test_no_xmlrpc(up: FakeUpstream, http: httpx.Client) -> None:
    up.configure(xmlrpc=False)
    r = http.post("/pypi", content=xmlrpc.client.dumps((), "changelog_last_serial").encode())
    assert r.status_code == 405
    assert http.get("/simple/", headers=JSON).status_code == 200  # the rest still answers


def test_html_only_root(up: FakeUpstream, http: httpx.Client) -> None:
    up.configure(html_only_root=True)
    r = http.get("/simple/", headers=JSON)
    assert r.headers["Content-Type"] == "application/vnd.pypi.simple.v1+html"
    assert r.text.startswith("<!DOCTYPE html>")
    norm = next(iter(up.index.projects))
    assert _page(http, norm).headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"


def test_proxy_profile_is_the_route_to_pypi_org() -> None:
    expected = Switches(
        html_only_root=True,
        serial_headers=False,
        xmlrpc=False,
        version_json_404=True,
        pep658="unadvertised",
    )
    with FakeUpstream(FakeIndex.generate(6), profile="proxy") as proxy:
        assert proxy.switches == expected
        with httpx.Client(base_url=proxy.url, trust_env=False) as http:
            root = http.get("/simple/", headers=JSON)
            assert (
                root.text.startswith("<!DOCTYPE html>") and "X-PyPI-Last-Serial" not in root.headers
            )
            rpc = http.post(
                "/pypi", content=xmlrpc.client.dumps((), "changelog_last_serial").encode()
            )
            assert rpc.status_code == 405
            norm, f = _first(proxy, lambda f: f.core_metadata)
            assert http.get(f"/pypi/{norm}/{f.version}/json").status_code == 404
            assert http.get(f"/{f.path}.metadata").content == f.metadata
            assert "data-core-metadata" not in http.get(f"/simple/{norm}/").text
    with FakeUpstream(FakeIndex.generate(2)) as other:
        other.emulate_proxy()
        assert other.switches == expected
    with FakeUpstream(FakeIndex.generate(2), profile="proxy", xmlrpc=True) as mixed:
        assert mixed.switches.xmlrpc and not mixed.switches.serial_headers
    with pytest.raises(ValueError):
        FakeUpstream(FakeIndex.generate(1), profile="squid")
    with pytest.raises(ValueError):
        FakeUpstream(FakeIndex.generate(1), no_such_switch=True)
    assert set(PROFILES["proxy"]) <= {f for f in Switches.__dataclass_fields__}


# ---------------------------------------------------------------------- 9. conditional requests
def test_conditional_requests_on_pages_and_json_api(up: FakeUpstream, http: httpx.Client) -> None:
    name, latest, _ = _project_with_two_releases(up)
    norm = canonicalize_name(name)
    for path, headers in (
        (f"/simple/{norm}/", JSON),
        (f"/simple/{norm}/", HTML),
        (f"/pypi/{name}/json", {}),
        (f"/pypi/{name}/{latest}/json", {}),
    ):
        first = http.get(path, headers=headers)
        etag = first.headers["ETag"]
        again = http.get(path, headers={**headers, "If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["ETag"] == etag
    seen = up.counts["not-modified"]
    assert seen == 4
    etag = http.get(f"/pypi/{name}/json").headers["ETag"]
    up.index.set_role(name, "dave", "Owner")
    assert http.get(f"/pypi/{name}/json", headers={"If-None-Match": etag}).status_code == 200


# ---------------------------------------------------------------------- control actions
def test_control_actions_for_out_of_process_users(up: FakeUpstream, http: httpx.Client) -> None:
    name, latest, _ = _project_with_two_releases(up)
    norm = canonicalize_name(name)

    def control(action: str, **args: Any) -> httpx.Response:
        return http.post(f"/_fake/{action}", json=args)

    assert control("configure", cached_root=True, xmlrpc_limit=[1, 60]).status_code == 200
    assert up.switches.cached_root and up.switches.xmlrpc_limit == (1, 60.0)
    assert control("project", project="via-control").json()["serial"] == up.index.serial
    assert "via-control" not in _root_names(http)
    assert control("purge-root").status_code == 200
    assert "via-control" in _root_names(http)
    assert control("status", project=name, status="archived", reason="done").status_code == 200
    assert _page(http, norm).json()["project-status"] == {"status": "archived", "reason": "done"}
    assert (
        control(
            "vulnerabilities", project=name, version=latest, vulnerabilities=[{"id": "X-1"}]
        ).status_code
        == 200
    )
    assert http.get(f"/pypi/{name}/json").json()["vulnerabilities"][0]["id"] == "X-1"
    assert control("role", project=name, user="erin", role="Maintainer").status_code == 200
    assert control("status", project=name, status="bogus").status_code == 400
    assert control("configure", nope=1).status_code == 400
    assert control("emulate-proxy").status_code == 200
    assert not up.switches.xmlrpc and up.switches.pep658 == "unadvertised"
    assert control("no-such-action").status_code == 404


def test_tallies_do_not_inflate_total_requests(up: FakeUpstream, http: httpx.Client) -> None:
    up.configure(json_redirects=True, xmlrpc_limit=(1, 60))
    p = next(p for p in up.index.projects.values() if p.name != canonicalize_name(p.name))
    http.get(f"/pypi/{canonicalize_name(p.name)}/json", follow_redirects=True)
    for _ in range(2):
        http.post("/pypi", content=xmlrpc.client.dumps((), "changelog_last_serial").encode())
    assert up.counts["redirect"] == 1 and up.counts["xmlrpc-limited"] == 1
    assert up.total_requests() == 4
