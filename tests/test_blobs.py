"""Issue 5: verified downloads into a blob store (local and S3 on a loopback moto server), the
PEP 503/691 index with serials, ``serve`` (full and lazy) for a real pip, a mirror of the
mirror, hostile upstream data, resuming, and ``verify``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream, Fault
from pypi_assets.filters import MirrorConfig
from pypi_assets.pypi import ClientConfig
from pypi_assets.serve import MirrorServer, negotiate
from pypi_assets.store.blobs import LocalBlobStore, open_blob_store
from pypi_assets.sync.reports import SyncReport
from pypi_assets.sync.run import run_sync
from pypi_assets.sync.settings import Settings

from .blobs_helpers import fresh_venv, install_with_hashes, installed, moto_s3, with_dependency
from .helpers import FAST, PYTHON, make_config

pytestmark = pytest.mark.slow


def run(
    up: FakeUpstream | str,
    db: Path,
    blobs: str | None,
    config: MirrorConfig | None = None,
    *,
    lazy: bool = False,
    web: Path | None = None,
) -> SyncReport:
    url = up if isinstance(up, str) else up.url
    settings = Settings(upstream=url, db=db, blobs=blobs, web=web)
    return asyncio.run(
        run_sync(settings, config or make_config(), client_overrides=FAST, lazy=lazy)
    )


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeIndex.generate(12)) as u:
        yield u


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Content that must survive mirroring a mirror (URLs differ by design)."""
    con = duckdb.connect(str(db), read_only=True)
    out = {
        "projects": con.execute(
            "SELECT name, display_name, serial, state, latest_version, info FROM projects ORDER BY name"
        ).fetchall(),
        "releases": con.execute(
            "SELECT project, version, upload_time, yanked, yanked_reason, file_count, summary, "
            "requires_python, info FROM releases ORDER BY project, version"
        ).fetchall(),
        # URLs differ by design: the files' and the provenance objects' (each mirror's own)
        "distributions": con.execute(
            "SELECT * EXCLUDE (url, provenance_url), provenance_url IS NULL FROM distributions "
            "ORDER BY project, filename"
        ).fetchall(),
        "publishers": con.execute(
            "SELECT * FROM publishers ORDER BY project, filename, bundle"
        ).fetchall(),
        "dependencies": con.execute(
            "SELECT * FROM dependencies ORDER BY project, filename, requirement"
        ).fetchall(),
    }
    con.close()
    return out


# ---------------------------------------------------------------------- local store, index
def test_sync_stores_verified_blobs_and_index(up: FakeUpstream, tmp_path: Path) -> None:
    web = tmp_path / "web"
    report = run(up, tmp_path / "m.duckdb", str(web))
    assert report.ok and report.files is not None and report.index is not None
    con = duckdb.connect(str(tmp_path / "m.duckdb"), read_only=True)
    files = con.execute("SELECT key, sha256, size FROM selected_blob_keys").fetchall()
    metas = con.execute(
        "SELECT key || '.metadata', core_metadata_sha256 FROM selected_blob_keys "
        "WHERE core_metadata_sha256 IS NOT NULL"
    ).fetchall()
    con.close()
    assert report.files.downloaded == len(files) + len(metas) > 0
    for key, sha, size in files:
        assert key.startswith("packages/") and (web / key).stat().st_size == size
        assert _sha(web / key) == sha
    for key, sha in metas:
        assert _sha(web / key) == sha  # PEP 658 files beside the files
    assert not list((web / ".partial").iterdir())  # nothing half-written left behind

    root = json.loads((web / "simple" / "index.v1_json").read_text())
    assert root["meta"] == {"api-version": "1.4", "_last-serial": up.index.serial}
    assert {p["name"] for p in root["projects"]} == {p.name for p in up.index.projects.values()}
    assert all(
        isinstance(p["_last-serial"], int) and p["_last-serial"] > 0 for p in root["projects"]
    )
    norm = next(iter(up.index.projects))
    page = json.loads((web / "simple" / norm / "index.v1_json").read_text())
    assert page["meta"]["_last-serial"] == up.index.projects[norm].serial
    assert page["versions"] and page["files"]
    f = page["files"][0]
    assert set(f) >= {
        "filename",
        "url",
        "hashes",
        "requires-python",
        "size",
        "upload-time",
        "yanked",
        "core-metadata",
    }
    html = (web / "simple" / norm / "index.html").read_text()
    assert f"<!--SERIAL {up.index.projects[norm].serial}-->" in html and f["filename"] in html

    # a second sync with no upstream change downloads and rewrites nothing
    again = run(up, tmp_path / "m.duckdb", str(web))
    assert again.up_to_date


def test_only_changed_projects_are_rewritten(up: FakeUpstream, tmp_path: Path) -> None:
    web = tmp_path / "web"
    # one project of 12 leaves: above the default 5% that may go in one run
    config = make_config("[pypi_assets]\nmax_removed_share = 0.1\n")
    assert run(up, tmp_path / "m.duckdb", str(web), config).ok
    names = sorted(up.index.projects)
    changed, gone = names[0], names[1]
    untouched = web / "simple" / names[2] / "index.v1_json"
    before = untouched.stat().st_mtime_ns
    up.index.add_release(up.index.projects[changed].name, "9.0.0")
    up.index.delete_project(up.index.projects[gone].name)
    report = run(up, tmp_path / "m.duckdb", str(web), config)
    assert report.ok and report.index is not None
    assert report.index.written == [changed]
    assert report.index.deleted == [gone] and not (web / "simple" / gone).exists()
    assert report.index.unchanged == len(names) - 2
    assert untouched.stat().st_mtime_ns == before
    page = json.loads((web / "simple" / changed / "index.v1_json").read_text())
    assert "9.0.0" in page["versions"]


def test_resume_after_a_cut_off_download(up: FakeUpstream, tmp_path: Path) -> None:
    norm = next(iter(up.index.projects))
    sdist = next(
        f for r in up.index.releases(norm).values() for f in r.files if f.packagetype == "sdist"
    )
    big = up.index.set_content(norm, sdist.filename, os.urandom(4 << 20))
    # three cut-off bodies: the first while its PKG-INFO is read (found in the first half),
    # then two while it is downloaded
    up.add_fault(Fault(path=big.path + "$", kind="truncate", times=3))
    report = run(up, tmp_path / "m.duckdb", str(tmp_path / "web"))
    assert report.ok, report.failures
    ranges = [r for p, r in up.state.ranges if p.endswith(big.filename)]
    assert len(ranges) == 2  # each cut-off body was resumed where it stopped, not restarted
    starts = [int(r.removeprefix("bytes=").rstrip("-")) for r in ranges]
    assert 0 < starts[0] < starts[1] < len(big.content)
    assert _sha(tmp_path / "web" / big.path) == big.sha256


# ---------------------------------------------------------------------- serve and pip
def test_negotiation() -> None:
    assert negotiate("application/vnd.pypi.simple.v1+json") == "json"
    assert negotiate("application/vnd.pypi.simple.v1+json;q=0.1, text/html") == "html"
    assert negotiate("") == "html" and negotiate("*/*") == "html"
    assert negotiate("text/html", "application/vnd.pypi.simple.v1+json") == "json"


def test_serve_headers_redirects_and_refusals(up: FakeUpstream, tmp_path: Path) -> None:
    web = tmp_path / "web"
    assert run(up, tmp_path / "m.duckdb", str(web)).ok
    norm, name = next((n, p) for n, p in up.index.projects.items() if p.name != n)  # Delta_Alpha_3
    with MirrorServer(web=web, blobs=LocalBlobStore(web)) as srv:
        r = httpx.head(f"{srv.url}/simple/")
        assert r.status_code == 200 and r.headers["X-PyPI-Last-Serial"] == str(up.index.serial)
        r = httpx.get(
            f"{srv.url}/simple/{name.name}/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        )
        assert r.status_code == 301
        r = httpx.get(
            f"{srv.url}/simple/{name.name}/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
            follow_redirects=True,
        )
        assert r.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
        assert r.headers["X-PyPI-Last-Serial"] == str(name.serial) and r.headers["Vary"] == "Accept"
        r = httpx.get(f"{srv.url}/simple/{name.name}/?format=text/html", follow_redirects=True)
        assert r.headers["Content-Type"] == "application/vnd.pypi.simple.v1+html"
        for bad in (
            "/packages/../m.duckdb",
            "/simple/..%2F..%2Fetc/",
            "/pypi/x/..%2F..%2Fjson",
            "/packages/aa/bb/cc/x.whl",
        ):
            assert httpx.get(srv.url + bad).status_code == 404, bad
        r = httpx.get(f"{srv.url}/pypi/{name.name}/json", follow_redirects=True)
        assert r.status_code == 200 and r.headers["X-PyPI-Last-Serial"] == str(name.serial)
        urls = r.json()["urls"]
        assert urls, "the latest release has files"
        got = httpx.get(srv.url + urls[0]["url"])
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == urls[0]["digests"]["sha256"]
        assert got.headers["Content-Length"] == str(urls[0]["size"])
        assert httpx.head(srv.url + urls[0]["url"]).headers["Content-Length"] == str(
            urls[0]["size"]
        )
    assert norm != name.name


def test_pip_installs_from_the_full_mirror_with_hashes(up: FakeUpstream, tmp_path: Path) -> None:
    web, db = tmp_path / "web", tmp_path / "m.duckdb"
    assert run(up, db, str(web)).ok
    project, version, dep = with_dependency(db)
    python = fresh_venv(tmp_path / "venv")
    before = up.counts["file"]
    with MirrorServer(web=web, blobs=LocalBlobStore(web)) as srv:
        install_with_hashes(python, f"{srv.url}/simple/", f"{project}=={version}", db, tmp_path)
    have = installed(python)
    assert have[project] == version and dep in have
    assert up.counts["file"] == before  # every byte came from the mirror


def test_pip_installs_through_lazy_mode(up: FakeUpstream, tmp_path: Path) -> None:
    web, db = tmp_path / "web", tmp_path / "m.duckdb"
    report = run(up, db, str(web), lazy=True)
    assert report.ok and report.files is None and (web / "simple" / "index.v1_json").exists()
    assert not (web / "packages").exists()  # nothing downloaded up front
    project, version, dep = with_dependency(db)
    python = fresh_venv(tmp_path / "venv")
    blobs = LocalBlobStore(web)
    cfg = ClientConfig(upstream=up.url, **FAST)
    with MirrorServer(web=web, blobs=blobs, db=db, lazy=True, client_config=cfg) as srv:
        install_with_hashes(python, f"{srv.url}/simple/", f"{project}=={version}", db, tmp_path)
        fetched = list(srv.fetched)
        # a second client gets the stored copies: the upstream is not asked again
        files_before = up.counts["file"] + up.counts["core-metadata"]
        python2 = fresh_venv(tmp_path / "venv2")
        install_with_hashes(python2, f"{srv.url}/simple/", f"{project}=={version}", db, tmp_path)
        assert up.counts["file"] + up.counts["core-metadata"] == files_before
        # a key the selection does not list is never fetched
        assert (
            httpx.get(
                f"{srv.url}/packages/{'ab' * 2}/{'cd'}/{'e' * 60}/nope-1.0.tar.gz"
            ).status_code
            == 404
        )
    assert installed(python)[project] == version and dep in installed(python)
    stored = {k for k, _s in blobs.iter_blobs()}
    assert stored == set(fetched) and any(
        k.endswith(".whl") or k.endswith(".tar.gz") for k in stored
    )


def test_s3_sync_then_pip_through_serve(up: FakeUpstream, tmp_path: Path) -> None:
    with moto_s3("mirror") as s3:
        section = "".join(f"{k} = {v}\n" for k, v in s3.items())
        config = make_config(f"[s3]\n{section}")
        db, web = tmp_path / "m.duckdb", tmp_path / "web"
        report = run(up, db, "s3://mirror/pypi", config, web=web)
        assert report.ok and report.files is not None and report.files.downloaded > 0
        store = open_blob_store("s3://mirror/pypi", s3=config.sections["s3"])
        keys = dict(store.iter_blobs())
        con = duckdb.connect(str(db), read_only=True)
        want = dict(con.execute("SELECT key, size FROM selected_blob_keys").fetchall())
        con.close()
        assert {k: v for k, v in keys.items() if not k.endswith(".metadata")} == want
        assert not (web / "packages").exists()  # files live only in the bucket
        project, version, dep = with_dependency(db)
        python = fresh_venv(tmp_path / "venv")
        with MirrorServer(web=web, blobs=store) as srv:
            install_with_hashes(python, f"{srv.url}/simple/", f"{project}=={version}", db, tmp_path)
        assert installed(python)[project] == version and dep in installed(python)


def test_mirror_of_a_mirror_has_the_same_content(up: FakeUpstream, tmp_path: Path) -> None:
    a_db, a_web = tmp_path / "a.duckdb", tmp_path / "a-web"
    assert run(up, a_db, str(a_web)).ok
    with MirrorServer(web=a_web, blobs=LocalBlobStore(a_web)) as srv:
        b_db, b_web = tmp_path / "b.duckdb", tmp_path / "b-web"
        report = run(srv.url, b_db, str(b_web))
        assert report.ok, report.failures
        assert report.upstream_serial == up.index.serial
        # the second mirror is incremental against the first too
        assert run(srv.url, b_db, str(b_web)).up_to_date
    assert _tables(b_db) == _tables(a_db)
    a_keys = {k: s for k, s in LocalBlobStore(a_web).iter_blobs()}
    assert {k: s for k, s in LocalBlobStore(b_web).iter_blobs()} == a_keys


# ---------------------------------------------------------------------- hostile upstream
def test_hostile_upstream_data_is_refused(up: FakeUpstream, tmp_path: Path) -> None:
    names = [p.name for p in up.index.projects.values()]
    norms = list(up.index.projects)
    files = {n: [f for r in up.index.releases(n).values() for f in r.files] for n in norms}
    bad_names = {norms[0]: "../escape.whl", norms[1]: "a/b-1.0.tar.gz", norms[2]: "a\\b-1.0.tar.gz"}
    for norm, fname in bad_names.items():
        files[norm][0].overrides["filename"] = fname
    with FakeUpstream(FakeIndex.generate(2, seed=9)) as other:
        files[norms[3]][0].overrides["url"] = f"{other.url}/packages/aa/bb/{'c' * 60}/evil.whl"
        corrupt, oversize = files[norms[4]][0], files[norms[5]][0]
        up.add_fault(Fault(path=corrupt.path + "$", kind="corrupt", times=99))
        up.add_fault(Fault(path=oversize.path + "$", kind="oversize", times=99))
        web = tmp_path / "store" / "web"
        report = run(up, tmp_path / "store" / "m.duckdb", str(web))
        assert other.total_requests() == 0  # the foreign host was never contacted
    failed = report.failures
    for norm in bad_names:
        assert "unsafe filename" in failed[norm]
    assert "not an allowed host" in failed[norms[3]] or "host" in failed[norms[3]]
    assert "sha256" in failed[f"{norms[4]}: {corrupt.filename}"]
    assert "larger than the advertised" in failed[f"{norms[5]}: {oversize.filename}"]
    assert len(failed) == 6 and not report.ok
    # the rest completed: every other project has its pages and its files
    assert (web / "simple" / norms[6] / "index.v1_json").exists()
    for norm in norms[6:]:
        for f in files[norm]:
            assert (web / f.path).exists()
    # nothing outside the store, nothing with a hostile name, nothing bad stored
    assert {p.name for p in (tmp_path / "store").iterdir()} <= {
        "m.duckdb",
        "m.duckdb.wal",
        "m.lake",
        "web",
    }
    assert set(os.listdir(tmp_path)) == {"store"}
    every = [p for p in web.rglob("*")]
    assert not any(p.name in ("escape.whl", "b-1.0.tar.gz", "evil.whl") for p in every)
    assert not (web / corrupt.path).exists() and not (web / oversize.path).exists()
    assert not list((web / ".partial").iterdir())
    with MirrorServer(web=web, blobs=LocalBlobStore(web)) as srv:
        assert httpx.get(f"{srv.url}/{corrupt.path}").status_code == 404
        assert httpx.get(f"{srv.url}/simple/{norms[0]}/").status_code == 404
    assert names  # the fixture had projects


# ---------------------------------------------------------------------- verify
def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "pypi_assets.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_verify_finds_repairs_and_collects(
    up: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    web, db = tmp_path / "web", tmp_path / "m.duckdb"
    conf = tmp_path / "b.conf"
    conf.write_text(
        f"[mirror]\ndirectory = {tmp_path}/bs\nmaster = {up.url}\nallow-non-https = true\nrelease-files = false\n"
    )
    common = ["--config", str(conf), "--db", str(db), "--blobs", str(web)]
    assert _cli("sync", *common, "-q", env=cli_env).returncode == 0
    clean = _cli("verify", *common, "--json", env=cli_env)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["missing"] == 0
    keys = sorted(k for k, _s in LocalBlobStore(web).iter_blobs() if not k.endswith(".metadata"))
    missing, corrupt = keys[0], keys[1]
    (web / missing).unlink()
    data = (web / corrupt).read_bytes()
    (web / corrupt).write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, wrong bytes
    # narrow the filters: older releases leave the selection, their blobs become unreferenced
    conf.write_text(
        conf.read_text() + "[plugins]\nenabled =\n    latest_release\n[latest_release]\nkeep = 1\n"
    )
    assert _cli("sync", *common, "-q", env=cli_env).returncode == 0
    found = _cli("verify", *common, "--json", env=cli_env)
    summary = json.loads(found.stdout)
    assert found.returncode == 1
    con = duckdb.connect(str(db), read_only=True)
    still = {r[0] for r in con.execute("SELECT key FROM selected_blob_keys").fetchall()}
    con.close()
    assert summary["missing"] == int(missing in still) and summary["corrupt"] == int(
        corrupt in still
    )
    assert summary["unreferenced"] > 0
    sizes_only = json.loads(_cli("verify", *common, "--json", "--sizes-only", env=cli_env).stdout)
    assert sizes_only["corrupt"] == 0  # same size: only hashing finds it
    # more than 5% of the stored blobs would go: refused without --force, nothing deleted
    stored = {k for k, _s in LocalBlobStore(web).iter_blobs()}
    refused = _cli("verify", *common, "--delete-unreferenced", env=cli_env)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert {k for k, _s in LocalBlobStore(web).iter_blobs()} == stored
    fixed = _cli(
        "verify", *common, "--repair", "--delete-unreferenced", "--force", "--json", env=cli_env
    )
    assert fixed.returncode == 0, fixed.stderr
    after = json.loads(_cli("verify", *common, "--json", env=cli_env).stdout)
    assert after["missing"] == after["corrupt"] == after["unreferenced"] == 0
    assert {k for k, _s in LocalBlobStore(web).iter_blobs()} == {k for k in still} | {
        k + ".metadata" for k in still if (web / (k + ".metadata")).exists()
    }


def test_bandersnatch_mirrors_our_mirror(up: FakeUpstream, tmp_path: Path) -> None:
    """bandersnatch 8.2 cannot offer a mirror to mirror from (its #2098); ours it can mirror."""
    from .bandersnatch_ref import bandersnatch

    exe = bandersnatch()
    if exe is None:
        pytest.skip("needs a Python >= 3.12 for bandersnatch 8.2")
    web, db = tmp_path / "web", tmp_path / "m.duckdb"
    assert run(up, db, str(web)).ok
    conf = tmp_path / "bandersnatch.conf"
    with MirrorServer(web=web, blobs=LocalBlobStore(web)) as srv:
        conf.write_text(
            f"[mirror]\ndirectory = {tmp_path}/bs\nmaster = {srv.url}\nallow-non-https = true\n"
            "json = true\nrelease-files = true\nworkers = 3\ntimeout = 30\nstop-on-error = true\n"
        )
        p = subprocess.run(
            [str(exe), "-c", str(conf), "mirror"], capture_output=True, text=True, timeout=600
        )
    assert p.returncode == 0, p.stderr[-3000:]
    theirs = tmp_path / "bs" / "web"
    ours = {
        k: _sha(web / k)
        for k, _s in LocalBlobStore(web).iter_blobs()
        if not k.endswith(".metadata")
    }
    assert {k: _sha(theirs / k) for k in ours} == ours  # every file, byte for byte, same paths
    assert (tmp_path / "bs" / "generation").exists()
    assert int((tmp_path / "bs" / "status").read_text()) == up.index.serial


def test_bandersnatch_index_options(up: FakeUpstream, tmp_path: Path) -> None:
    """simple-format, digest_name and core-metadata from [mirror] take effect."""
    web = tmp_path / "web"
    config = make_config("simple-format = HTML\ndigest_name = md5\ncore-metadata = false\n")
    assert run(up, tmp_path / "m.duckdb", str(web), config).ok
    norm = next(iter(up.index.projects))
    assert not (web / "simple" / norm / "index.v1_json").exists()
    page = (web / "simple" / norm / "index.html").read_text()
    assert "#md5=" in page and "#sha256=" not in page and "data-core-metadata" not in page
    assert not [k for k, _s in LocalBlobStore(web).iter_blobs() if k.endswith(".metadata")]
    with MirrorServer(web=web, blobs=LocalBlobStore(web)) as srv:
        r = httpx.get(
            f"{srv.url}/simple/{norm}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        assert r.headers["Content-Type"] == "application/vnd.pypi.simple.v1+html"
        assert r.headers["X-PyPI-Last-Serial"] == str(up.index.projects[norm].serial)


def _nginx_block() -> str:
    text = (Path(__file__).resolve().parents[1] / "docs" / "mirror.md").read_text()
    return text.split("```nginx\n", 1)[1].split("```", 1)[0]


def test_documented_nginx_config_serves_pip(up: FakeUpstream, tmp_path: Path) -> None:
    """The nginx config in docs/mirror.md, run as written (port and root substituted)."""
    import shutil
    import socket
    import time

    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed (./dev test installs Debian's nginx when it can)")
    web, db = tmp_path / "web", tmp_path / "m.duckdb"
    assert run(up, db, str(web)).ok
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    block = _nginx_block().replace("listen 8080;", f"listen 127.0.0.1:{port};")
    block = block.replace("root /srv/pypi/web;", f"root {web};")
    assert f"root {web};" in block and f":{port};" in block
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the test's tmp dir
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{\naccess_log off;\nclient_body_temp_path {tmp_path}/body;\n"
        f"proxy_temp_path {tmp_path}/proxy;\nfastcgi_temp_path {tmp_path}/fcgi;\n"
        f"uwsgi_temp_path {tmp_path}/uwsgi;\nscgi_temp_path {tmp_path}/scgi;\n{block}\n}}\n"
    )
    check = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/simple/")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        norm = next(iter(up.index.projects))
        r = httpx.get(
            f"{base}/simple/{norm}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        assert (
            r.status_code == 200
            and r.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
        )
        assert r.json()["meta"]["_last-serial"] == up.index.projects[norm].serial
        assert r.headers["Vary"] == "Accept"
        r = httpx.get(f"{base}/simple/{norm}/")
        assert r.headers["Content-Type"].startswith("text/html") and "<!--SERIAL" in r.text
        r = httpx.get(
            f"{base}/simple/{norm}/", headers={"Accept": "application/vnd.pypi.simple.v1+html"}
        )
        assert r.headers["Content-Type"] == "application/vnd.pypi.simple.v1+html"
        assert httpx.get(f"{base}/pypi/{norm}/json").headers["Content-Type"] == "application/json"
        # what a writer leaves while it works (or when killed) is never served
        for hidden in (
            web / "simple" / norm / ".tmp-0123456789abcdef",
            web / ".partial" / "x.part",
        ):
            hidden.parent.mkdir(exist_ok=True)
            hidden.write_bytes(b"half")
            rel = hidden.relative_to(web).as_posix()
            assert httpx.get(f"{base}/{rel}").status_code == 404, rel
        project, version, dep = with_dependency(db)
        python = fresh_venv(tmp_path / "venv")
        install_with_hashes(python, f"{base}/simple/", f"{project}=={version}", db, tmp_path)
        assert installed(python)[project] == version and dep in installed(python)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
