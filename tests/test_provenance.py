"""Issue 11, items 5 and 7: PEP 740 provenance mirrored and served (``/integrity/...`` and the
pages' ``provenance``), the ``publishers`` table, api-version 1.4; hostile provenance URLs
and bodies fail that file's provenance alone. Against the fake upstream on loopback."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import duckdb
import httpx
import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.fake.data import FakeFile
from pypi_assets.pypi import InvalidResponse, UnsafeValue
from pypi_assets.pypi.provenance import (
    INTEGRITY_CT,
    MAX_PROVENANCE_BYTES,
    check_provenance_url,
    parse_provenance,
    provenance_value,
)
from pypi_assets.pypi.simple import (
    API_VERSION,
    JSON_CT,
    IndexOptions,
    parse_project_page_html,
    parse_project_page_json,
    render_project,
)
from pypi_assets.serve import MirrorServer
from pypi_assets.store.blobs import LocalBlobStore, check_key, provenance_key
from pypi_assets.sync.reports import SyncReport
from pypi_assets.sync.run import run_sync
from pypi_assets.sync.settings import Settings

from .helpers import FAST, make_config

JSON = {"Accept": JSON_CT}
HOSTS = frozenset({"127.0.0.1:8000"})
BASE = "http://127.0.0.1:8000/"


def _sync(up: FakeUpstream, tmp: Path) -> SyncReport:
    settings = Settings(upstream=up.url, db=tmp / "m.duckdb", blobs=str(tmp / "web"))
    return asyncio.run(run_sync(settings, make_config(), client_overrides=FAST))


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeIndex.generate(6)) as u:
        yield u


def _files(up: FakeUpstream) -> Iterator[tuple[str, FakeFile]]:
    for norm in up.index.projects:
        for rel in up.index.releases(norm).values():
            for f in rel.files:
                yield norm, f


def _publishers(db: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    con = duckdb.connect(str(db), read_only=True)
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for project, filename, _bundle, kind, repo, workflow, env in con.execute(
        "SELECT * FROM publishers ORDER BY project, filename, bundle"
    ).fetchall():
        row = {"kind": kind, "repository": repo, "workflow": workflow, "environment": env}
        out.setdefault((project, filename), []).append(row)
    con.close()
    return out


def _html_provenance(text: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for attrs, name in re.findall(r"<a ([^>]*)>([^<]*)</a>", text):
        m = re.search(r'data-provenance="([^"]*)"', attrs)
        out[html.unescape(name)] = html.unescape(m.group(1)) if m else None
    return out


# ---------------------------------------------------------------------- parsing, pure
def test_pages_parse_provenance_in_json_and_html() -> None:
    url = "https://pypi.org/integrity/a/1.0/a-1.0.tar.gz/provenance"
    page = parse_project_page_json(
        {
            "meta": {"api-version": "1.4"},
            "name": "a",
            "files": [
                {"filename": "a-1.0.tar.gz", "url": "u", "hashes": {}, "provenance": url},
                {"filename": "a-1.0-py3-none-any.whl", "url": "u", "hashes": {}},
                {"filename": "a-0.9.tar.gz", "url": "u", "hashes": {}, "provenance": None},
            ],
        }
    )
    assert [f.provenance for f in page.files] == [url, None, None]
    text = f'<a href="u" data-provenance="{url}">a-1.0.tar.gz</a><a href="v">a-0.9.tar.gz</a>'
    assert [f.provenance for f in parse_project_page_html(text, "a").files] == [url, None]


def test_provenance_urls_are_checked_before_any_request() -> None:
    good = "http://127.0.0.1:8000/integrity/a/1.0/a-1.0.tar.gz/provenance"
    assert check_provenance_url(good, BASE, HOSTS) == good
    assert provenance_value("/integrity/a/1.0/a-1.0.tar.gz/provenance", BASE) == good
    for bad in (
        "http://evil.example/integrity/a/1.0/a-1.0.tar.gz/provenance",  # another host
        "http://127.0.0.1:8001/integrity/a/1.0/a-1.0.tar.gz/provenance",  # another port
        "http://127.0.0.1:8000/integrity/../../pypi/a/json",  # traversal
        "http://127.0.0.1:8000/integrity/%2e%2e/%2E%2E/etc/passwd",  # encoded traversal
        "http://127.0.0.1:8000/integrity/a%2f..%2fb/provenance",  # an encoded separator
        "file:///etc/passwd",
        "http://127.0.0.1:8000/integrity/a/1.0/a-1.0.tar.gz/provenance?x=1",
    ):
        with pytest.raises(UnsafeValue):
            check_provenance_url(bad, BASE, HOSTS)
    # a relative URL resolves against the page, as another mirror's pages have them
    rel = provenance_value("../../integrity/a/1.0/a-1.0.tar.gz/provenance", BASE + "simple/a/")
    assert rel == good and check_provenance_url(rel, BASE, HOSTS) == good
    # an absolute URL keeps its dot segments (urljoin leaves them), and is refused
    kept = provenance_value(BASE + "integrity/../../etc/passwd", BASE + "simple/a/")
    with pytest.raises(UnsafeValue):
        check_provenance_url(kept, BASE, HOSTS)
    assert provenance_value(None, BASE) is None and provenance_value(3, BASE) is None


def test_provenance_objects_are_checked() -> None:
    good = {
        "version": 1,
        "attestation_bundles": [
            {"publisher": {"kind": "GitHub", "repository": "o/r"}, "attestations": []}
        ],
    }
    pubs = parse_provenance(json.dumps(good).encode(), "x")
    assert [(p.bundle, p.kind, p.repository, p.workflow) for p in pubs] == [
        (0, "GitHub", "o/r", None)
    ]
    bad: list[bytes] = [
        b"garbage",
        b"[]",
        json.dumps({**good, "version": 2}).encode(),
        json.dumps({"version": 1, "attestation_bundles": []}).encode(),
        json.dumps({"version": 1, "attestation_bundles": [{"attestations": []}]}).encode(),
        json.dumps(
            {"version": 1, "attestation_bundles": [{"publisher": {"kind": 3}, "attestations": []}]}
        ).encode(),
        b" " * (MAX_PROVENANCE_BYTES + 1),
    ]
    for body in bad:
        with pytest.raises(InvalidResponse):
            parse_provenance(body, "x")


def test_provenance_keys_are_validated() -> None:
    key = provenance_key("a-b", "1.0+local", "a_b-1.0-py3-none-any.whl")
    assert key == "integrity/a-b/1.0+local/a_b-1.0-py3-none-any.whl/provenance"
    assert check_key(key) == key
    for args in (
        ("A_B", "1.0", "a-1.0.tar.gz"),  # not normalised
        ("a", "..", "a-1.0.tar.gz"),
        ("a", "1.0/../x", "a-1.0.tar.gz"),
        ("a", "1.0", "../a-1.0.tar.gz"),
        ("a", "1 0", "a-1.0.tar.gz"),
    ):
        with pytest.raises(UnsafeValue):
            provenance_key(*args)
    for bad in ("integrity/a/../x/provenance", "integrity/A/1.0/a.tar.gz/provenance"):
        with pytest.raises(UnsafeValue):
            check_key(bad)


# ---------------------------------------------------------------------- end to end
def test_served_provenance_equals_upstream(up: FakeUpstream, tmp_path: Path) -> None:
    """Same presence per file in the JSON and HTML pages, URLs on the mirror's /integrity/
    route, objects JSON-equal to upstream's, publishers rows equal to the bundles'."""
    report = _sync(up, tmp_path)
    assert report.ok, report.failures
    assert report.files is not None and report.files.provenance > 0
    web = tmp_path / "web"
    bundles: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with (
        MirrorServer(web=web, blobs=LocalBlobStore(web)) as srv,
        httpx.Client(base_url=up.url, follow_redirects=True) as upstream,
        httpx.Client(base_url=srv.url) as mirror,
    ):
        for norm in up.index.projects:
            theirs = upstream.get(f"/simple/{norm}/", headers=JSON).json()
            page_url = f"{srv.url}/simple/{norm}/"
            ours = mirror.get(page_url, headers=JSON).json()
            assert ours["meta"]["api-version"] == API_VERSION == "1.4"
            mine = {f["filename"]: f["provenance"] for f in ours["files"]}
            upstream_files = {f["filename"]: f["provenance"] for f in theirs["files"]}
            assert {k: v is None for k, v in mine.items()} == {
                k: v is None for k, v in upstream_files.items()
            }
            served_html = _html_provenance(mirror.get(page_url).text)
            assert {k: v is None for k, v in served_html.items()} == {
                k: v is None for k, v in mine.items()
            }
            for filename, href in mine.items():
                if href is None:
                    continue
                absolute = urljoin(page_url, href)
                assert absolute == urljoin(page_url, served_html[filename] or "")
                assert urlsplit(absolute).netloc == urlsplit(srv.url).netloc
                assert urlsplit(absolute).path.startswith(f"/integrity/{norm}/")
                got = mirror.get(absolute)
                assert got.status_code == 200
                assert got.headers["content-type"] == INTEGRITY_CT
                want = upstream.get(upstream_files[filename]).json()
                assert got.json() == want
                bundles[(norm, filename)] = [b["publisher"] for b in want["attestation_bundles"]]
            # the JSON API: no provenance key, as upstream's
            for doc in (upstream.get(f"/pypi/{norm}/json"), mirror.get(f"/pypi/{norm}/json")):
                assert not any(
                    "provenance" in f for fs in doc.json()["releases"].values() for f in fs
                )
    assert bundles and _publishers(tmp_path / "m.duckdb") == bundles
    # the static layout: where nginx serves /integrity/ from
    assert all((web / provenance_key(n, *_vf(up, n, fn))).is_file() for n, fn in bundles)


def _vf(up: FakeUpstream, norm: str, filename: str) -> tuple[str, str]:
    f = next(f for n, f in _files(up) if n == norm and f.filename == filename)
    return f.version, f.filename


def test_hostile_provenance_fails_that_file_alone(up: FakeUpstream, tmp_path: Path) -> None:
    norm = next(iter(up.index.projects))
    files = [f for n, f in _files(up) if n == norm][:5]
    assert len(files) == 5
    for f in files:
        f.provenance = True
    evil, traversal, big, garbage, fine = files
    evil.provenance_url = f"http://evil.example/integrity/{norm}/{evil.version}/x/provenance"
    traversal.provenance_url = f"{up.url}/integrity/../../pypi/{norm}/json"
    big.provenance_body = b"{" + b" " * (MAX_PROVENANCE_BYTES + 10) + b"}"
    garbage.provenance_body = b"<html>not a provenance object</html>"
    report = _sync(up, tmp_path)
    assert report.files is not None
    failed = {k: v for k, v in report.failures.items() if "(provenance)" in k}
    assert set(failed) == {
        f"{norm}: {f.filename} (provenance)" for f in (evil, traversal, big, garbage)
    }
    assert set(report.failures) == set(failed)  # nothing else failed
    assert all("\n" not in why and why for why in failed.values())
    assert "host that is not allowed" in failed[f"{norm}: {evil.filename} (provenance)"]
    assert "traversal" in failed[f"{norm}: {traversal.filename} (provenance)"]
    assert "larger than" in failed[f"{norm}: {big.filename} (provenance)"]
    assert "invalid JSON" in failed[f"{norm}: {garbage.filename} (provenance)"]
    # nothing else lost: every file stored, their metadata, the good file's provenance
    con = duckdb.connect(str(tmp_path / "m.duckdb"), read_only=True)
    missing = con.execute(
        "SELECT count(*) FROM selected_blob_keys k WHERE NOT EXISTS "
        "(SELECT 1 FROM blobs b WHERE b.key = k.key)"
    ).fetchone()
    none = con.execute(
        "SELECT count(*) FROM selected_distributions WHERE metadata_source = 'none'"
    ).fetchone()
    con.close()
    assert missing == (0,) and none == (0,)
    publishers = _publishers(tmp_path / "m.duckdb")
    assert (norm, fine.filename) in publishers
    assert not {(norm, f.filename) for f in (evil, traversal, big, garbage)} & set(publishers)
    page = json.loads((tmp_path / "web" / "simple" / norm / "index.v1_json").read_text())
    served = {f["filename"]: f["provenance"] for f in page["files"]}
    assert served[fine.filename] and not any(
        served[f.filename] for f in (evil, traversal, big, garbage)
    )
    assert not (tmp_path / "web" / "etc").exists()


def test_pages_render_provenance_beside_the_files() -> None:
    """The page's provenance points at the mirror's /integrity/ route: relative to the page
    (HTML always, JSON without root_uri), root_uri-absolute in the JSON with one."""
    key = provenance_key("demo", "1.0+local", "demo-1.0.tar.gz")
    f = {
        "filename": "demo-1.0.tar.gz",
        "key": "packages/aa/bb/" + "c" * 60 + "/demo-1.0.tar.gz",
        "sha256": "a" * 64,
        "size": 1,
        "upload_time": None,
        "yanked": False,
        "yanked_reason": None,
        "file_requires_python": None,
        "core_metadata_sha256": None,
        "release_version": "1.0+local",
        "provenance_key": key,
    }
    href = "../../integrity/demo/1.0%2Blocal/demo-1.0.tar.gz/provenance"
    for root_uri, want in (("", href), ("https://m.example", "https://m.example/" + href[6:])):
        pages = render_project("demo", "Demo", 7, [f], ["1.0+local"], IndexOptions(root_uri))
        page = json.loads(pages["simple/demo/index.v1_json"])
        assert page["files"][0]["provenance"] == want
        assert page["meta"]["api-version"] == "1.4"
        assert _html_provenance(pages["simple/demo/index.html"].decode()) == {f["filename"]: href}
        assert (
            b'<meta name="pypi:repository-version" content="1.4">'
            in pages["simple/demo/index.html"]
        )
        assert parse_project_page_json(page).files[0].provenance == want
    none = render_project("demo", "Demo", 7, [{**f, "provenance_key": None}], ["1.0"])
    assert json.loads(none["simple/demo/index.v1_json"])["files"][0]["provenance"] is None
    assert b"data-provenance" not in none["simple/demo/index.html"]


def test_verify_checks_repairs_and_forgets_provenance_objects(
    up: FakeUpstream, tmp_path: Path
) -> None:
    """``verify`` checks the provenance objects as it checks files: present, and equal to
    what was recorded; ``--repair`` fetches them again; what stays broken is forgotten, so
    the next sync fetches it; its report counts them."""
    from pypi_assets.sync.verify import VerifyOptions, verify_mirror

    assert _sync(up, tmp_path).ok
    web, db = tmp_path / "web", tmp_path / "m.duckdb"
    settings = Settings(upstream=up.url, db=db, blobs=str(web))
    store = LocalBlobStore(web)
    keys = sorted(k for k, _s in store.iter_blobs("integrity/"))
    assert len(keys) >= 3
    clean = verify_mirror(settings, make_config(), store)
    assert clean.ok and clean.blobs.summary()["provenance"] == {
        "referenced": len(keys),
        "stored": len(keys),
        "missing": 0,
        "corrupt": 0,
        "repaired": 0,
    }
    gone, bad, third = keys[0], keys[1], keys[2]
    original = {k: (web / k).read_bytes() for k in (gone, bad, third)}
    (web / gone).unlink()
    data = original[bad]
    (web / bad).write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, wrong bytes
    found = verify_mirror(settings, make_config(), store)
    assert not found.ok
    assert found.blobs.missing == [gone] and found.blobs.corrupt == [bad]
    assert found.blobs.summary()["provenance"]["stored"] == len(keys) - 1
    # not repaired: forgotten, so the next sync fetches them again
    con = duckdb.connect(str(db), read_only=True)
    recorded = {r[0] for r in con.execute("SELECT key FROM blobs").fetchall()}
    con.close()
    assert gone not in recorded and bad not in recorded
    assert _sync(up, tmp_path).ok
    assert (web / gone).read_bytes() == original[gone]
    assert (web / bad).read_bytes() == original[bad]
    # repaired: fetched again, checked and recorded
    (web / third).unlink()
    fixed = verify_mirror(settings, make_config(), store, VerifyOptions(repair=True))
    assert fixed.ok and fixed.blobs.repaired == [third]
    assert fixed.blobs.summary()["provenance"]["repaired"] == 1
    assert (web / third).read_bytes() == original[third]
    assert verify_mirror(settings, make_config(), store).ok


def test_lazy_mode_serves_provenance_fetched_once(up: FakeUpstream, tmp_path: Path) -> None:
    """``serve --lazy``: the lazy pages point at the mirror's ``/integrity/...`` route for
    every file with provenance upstream; the first request fetches the object (checked),
    stores it and serves it, JSON-equal to upstream's; later requests are local."""
    from pypi_assets.pypi import ClientConfig

    web, db = tmp_path / "web", tmp_path / "m.duckdb"
    settings = Settings(upstream=up.url, db=db, blobs=str(web))
    report = asyncio.run(run_sync(settings, make_config(), client_overrides=FAST, lazy=True))
    assert report.ok and not (web / "integrity").exists()
    norm, f = next((n, f) for n, f in _files(up) if f.has_provenance)
    page = json.loads((web / "simple" / norm / "index.v1_json").read_bytes())
    href = {x["filename"]: x["provenance"] for x in page["files"]}[f.filename]
    assert href is not None
    cfg = ClientConfig(upstream=up.url, **FAST)  # type: ignore[arg-type]
    with (
        MirrorServer(
            web=web, blobs=LocalBlobStore(web), db=db, lazy=True, client_config=cfg
        ) as srv,
        httpx.Client(base_url=up.url, follow_redirects=True) as upstream,
    ):
        url = urljoin(f"{srv.url}/simple/{norm}/", href)
        before = up.counts["integrity"]
        got = httpx.get(url)
        assert got.status_code == 200 and got.headers["content-type"] == INTEGRITY_CT
        want = upstream.get(
            f"/integrity/{norm}/{_vf(up, norm, f.filename)[0]}/{f.filename}/provenance"
        )
        assert got.json() == want.json()
        assert up.counts["integrity"] == before + 2  # ours, then the test's own
        again = httpx.get(url)
        assert again.status_code == 200 and again.content == got.content
        assert up.counts["integrity"] == before + 2  # served from the store
        key = urlsplit(url).path.lstrip("/")
        assert srv.fetched == [key] and (web / key).is_file()
        # a file the selection does not list: nothing fetched
        other = key.replace(f.filename, "nope-1.0.tar.gz")
        assert httpx.get(f"{srv.url}/{other}").status_code == 404
        assert up.counts["integrity"] == before + 2


def test_quarantine_hides_provenance_objects_until_cleared(
    up: FakeUpstream, tmp_path: Path
) -> None:
    """A quarantined project's files leave its pages; its provenance objects answer 404
    too, and come back when the quarantine is cleared."""
    assert _sync(up, tmp_path).ok
    web = tmp_path / "web"
    norm, f = next((n, f) for n, f in _files(up) if f.has_provenance)
    path = "/" + provenance_key(norm, *_vf(up, norm, f.filename))
    other = next(
        "/" + provenance_key(n, *_vf(up, n, g.filename))
        for n, g in _files(up)
        if g.has_provenance and n != norm
    )
    with MirrorServer(web=web, blobs=LocalBlobStore(web)) as srv, httpx.Client() as c:
        assert c.get(srv.url + path).status_code == 200
        assert up.index.set_status(norm, "quarantined", "malware report")
        assert _sync(up, tmp_path).ok
        assert (web / path.lstrip("/")).is_file()  # kept, only hidden
        assert c.get(srv.url + path).status_code == 404
        assert c.head(srv.url + path).status_code == 404
        assert c.get(srv.url + other).status_code == 200  # other projects' are served
        assert up.index.set_status(norm, "active")
        assert _sync(up, tmp_path).ok
        back = c.get(srv.url + path)
        assert back.status_code == 200 and back.headers["content-type"] == INTEGRITY_CT
