"""Issue 10, the blob store and the index: nothing is lost, nothing is silently wrong.

- two syncs (and any other writer) sharing one blob directory take turns per key;
- a blob that is present but not recorded is hashed before it is recorded (a corrupt one,
  for example one that ``verify`` forgot, is fetched again);
- the index lists only the files that are stored (or fetchable, in lazy mode);
- ``verify --delete-unreferenced`` and the index writer refuse bulk deletions;
- the index writer removes the temporary files of an interrupted write.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import httpx
import pytest

from pypi_assets.cli import main
from pypi_assets.fake import FakeIndex, FakeUpstream, Fault
from pypi_assets.fake.data import FakeFile
from pypi_assets.filters import MirrorConfig
from pypi_assets.pypi import ClientConfig, PyPIClient
from pypi_assets.pypi.simple import JSON_CT
from pypi_assets.store import MetadataStore
from pypi_assets.store.blobs import LocalBlobStore, blob_key
from pypi_assets.sync.files import fetch_blob
from pypi_assets.sync.index import write_index
from pypi_assets.sync.reports import SyncReport
from pypi_assets.sync.run import run_sync
from pypi_assets.sync.settings import Settings

from .helpers import FAST, PYTHON, json_api_path, make_config


def run(
    up: FakeUpstream,
    db: Path,
    blobs: Path,
    config: MirrorConfig | None = None,
    *,
    lazy: bool = False,
    web: Path | None = None,
) -> SyncReport:
    settings = Settings(upstream=up.url, db=db, blobs=str(blobs), web=web)
    return asyncio.run(
        run_sync(settings, config or make_config(), client_overrides=FAST, lazy=lazy)
    )


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeIndex.generate(12)) as u:
        yield u


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("PYPI_ASSETS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("PYPI_ASSETS_BACKOFF", "0.01")


def _files(up: FakeUpstream) -> list[tuple[str, FakeFile]]:
    return [
        (norm, f)
        for norm in sorted(up.index.projects)
        for r in up.index.releases(norm).values()
        for f in r.files
    ]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _key(db: Path, norm: str, filename: str) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "SELECT key FROM selected_blob_keys WHERE project = ? AND filename = ?",
            [norm, filename],
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


def _recorded(db: Path) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        # the files (PEP 740 provenance objects, under integrity/, are not listed by iter_blobs)
        return {
            r[0]
            for r in con.execute("SELECT key FROM blobs WHERE key LIKE 'packages/%'").fetchall()
        }
    finally:
        con.close()


def _conf(tmp_path: Path, up: FakeUpstream, extra: str = "") -> Path:
    conf = tmp_path / "m.conf"
    conf.write_text(
        f"[mirror]\ndirectory = {tmp_path}/unused\nmaster = {up.url}\nallow-non-https = true\n"
        f"release-files = false\n{extra}"
    )
    return conf


# ---------------------------------------------------------------------- defect 6
def test_two_syncs_share_one_blob_directory(
    up: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """Two sync processes with their own databases and one blob directory, at the same time:
    both complete and every file is intact (they used to collide on the partial files)."""
    for i, (norm, f) in enumerate(_files(up)):
        if f.packagetype == "sdist" and i % 2 == 0:
            up.index.set_content(norm, f.filename, os.urandom(256 << 10))
    up.set_latency(0.02)  # the two runs overlap for their whole length
    blobs = tmp_path / "shared"
    conf = _conf(tmp_path, up)
    sync = [PYTHON, "-m", "pypi_assets.cli", "sync", "--config", str(conf), "--json", "-q"]
    procs = [
        subprocess.Popen(
            [*sync, "--db", str(tmp_path / f"{name}.duckdb"), "--blobs", str(blobs), *web],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env,
        )
        for name, web in (("a", []), ("b", ["--web", str(tmp_path / "web-b")]))  # own indexes
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert json.loads(out)["files"]["failed"] == []
    for norm, f in _files(up):
        key = _key(tmp_path / "a.duckdb", norm, f.filename)
        assert _sha(blobs / key) == f.sha256, key
        if f.core_metadata:
            assert _sha(blobs / (key + ".metadata")) == f.metadata_sha256
    for name in ("a", "b"):  # each database recorded every blob
        assert _recorded(tmp_path / f"{name}.duckdb") == {
            k for k, _ in LocalBlobStore(blobs).iter_blobs()
        }
    assert not list((blobs / ".partial").iterdir())


def test_one_key_fetched_twice_at_once_is_downloaded_once(up: FakeUpstream, tmp_path: Path) -> None:
    norm, f = next((n, f) for n, f in _files(up) if f.packagetype == "sdist")
    f = up.index.set_content(norm, f.filename, os.urandom(512 << 10))
    up.set_latency(0.05)
    store = LocalBlobStore(tmp_path / "blobs")
    key = blob_key(f.filename, None, f.sha256)
    row = (norm, f.filename, key, f"{up.url}/{f.path}", f.sha256, len(f.content))

    async def both() -> list[bool]:
        cfg = ClientConfig(upstream=up.url, backoff=0.01, read_timeout=5.0)
        async with PyPIClient(cfg) as client:
            got = await asyncio.gather(*(fetch_blob(client, store, row) for _ in range(3)))
        return [fetched for _stored, fetched in got]

    assert sorted(asyncio.run(both())) == [False, False, True]  # one download, two waited
    assert _sha(tmp_path / "blobs" / key) == f.sha256
    assert not list((tmp_path / "blobs" / ".partial").iterdir())


# ---------------------------------------------------------------------- defect 7
def test_a_forgotten_corrupt_blob_is_fetched_again(
    up: FakeUpstream,
    tmp_path: Path,
    no_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db, blobs = tmp_path / "m.duckdb", tmp_path / "blobs"
    assert run(up, db, blobs).ok
    norm, f = next((n, f) for n, f in _files(up) if f.packagetype == "sdist")
    key = _key(db, norm, f.filename)
    data = (blobs / key).read_bytes()
    (blobs / key).write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, wrong bytes
    conf = _conf(tmp_path, up)
    args = ["verify", "--config", str(conf), "--db", str(db), "--blobs", str(blobs), "--json"]
    assert main(args) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["corrupt"] == 1 and summary["examples"]["corrupt"] == [key]
    assert key not in _recorded(db)  # forgotten, so that the next sync fetches it
    # the next sync (after some upstream change, so that it is not up to date) must not take
    # the blob back because its size is right
    other = sorted(up.index.projects)[-1]
    up.index.add_release(up.index.projects[other].name, "9.0.0")
    report = run(up, db, blobs)
    assert report.ok, report.failures
    assert _sha(blobs / key) == f.sha256
    assert key in _recorded(db)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["corrupt"] == 0


def test_an_unrecorded_blob_is_hashed_before_it_is_recorded(
    up: FakeUpstream, tmp_path: Path
) -> None:
    """A blob already in a (shared, or copied) store but not in this database: an intact one
    is taken as it is, a corrupt one of the right size is replaced."""
    blobs = tmp_path / "blobs"
    assert run(up, tmp_path / "a.duckdb", blobs).ok
    sdists = [(n, f) for n, f in _files(up) if f.packagetype == "sdist"]
    bad_norm, bad = sdists[0]
    bad_key = _key(tmp_path / "a.duckdb", bad_norm, bad.filename)
    data = (blobs / bad_key).read_bytes()
    (blobs / bad_key).write_bytes(bytes(len(data)))
    report = run(up, tmp_path / "b.duckdb", blobs, web=tmp_path / "web-b")  # its own index
    assert report.ok and report.files is not None
    assert report.files.downloaded == 1 and report.files.present == report.files.candidates - 1
    assert _sha(blobs / bad_key) == bad.sha256


# ---------------------------------------------------------------------- defect 10
def _listed(web: Path, norm: str) -> dict[str, set[str]]:
    """The filenames each kind of page lists for a project."""
    simple = json.loads((web / "simple" / norm / "index.v1_json").read_text())
    html = (web / "simple" / norm / "index.html").read_text()
    api = json.loads((web / "pypi" / norm / "json").read_text())
    per_version: set[str] = set()
    for version in api["releases"]:
        p = web / "pypi" / norm / quote(version, safe="") / "json"
        if p.exists():
            per_version |= {u["filename"] for u in json.loads(p.read_text())["urls"]}
    return {
        "json": {f["filename"] for f in simple["files"]},
        "html": set(re.findall(r">([^<>]+)</a><br />", html)),
        "api": {u["filename"] for fs in api["releases"].values() for u in fs},
        "api_version": per_version,
    }


def test_index_lists_only_stored_files(up: FakeUpstream, tmp_path: Path) -> None:
    db, web = tmp_path / "m.duckdb", tmp_path / "web"
    files = _files(up)
    # A wheel whose metadata is its PEP 658 file: only the download asks for the wheel
    # itself (an sdist's PKG-INFO is read from the sdist while the metadata is fetched).
    norm = next(
        n
        for n in sorted(up.index.projects)[3:]
        if sum(1 for m, f in files if m == n) >= 2
        and any(f.core_metadata for m, f in files if m == n)
    )
    mine = [f for n, f in files if n == norm]
    gone = next(f for f in mine if f.core_metadata)
    bad = next(f for f in mine if f is not gone)
    up.add_fault(Fault(path=gone.path + "$", kind="status", status=404, times=1))
    up.add_fault(Fault(path=bad.path + "$", kind="corrupt", times=99))
    first = run(up, db, web)
    assert not first.ok and first.files is not None
    assert sorted(first.files.failed) == sorted(f"{norm}: {f.filename}" for f in (gone, bad))
    every = {f.filename for f in mine}
    for kind, names in _listed(web, norm).items():
        assert names == every - {gone.filename, bad.filename}, kind
    other = sorted(up.index.projects)[4]  # other projects list everything
    assert _listed(web, other)["json"] == {f.filename for n, f in files if n == other}

    with up.state.lock:
        up.state.faults.clear()
    second = run(up, db, web)
    assert second.ok, second.failures
    for kind, names in _listed(web, norm).items():
        assert names == every, kind


def test_index_advertises_only_stored_core_metadata(up: FakeUpstream, tmp_path: Path) -> None:
    """A wheel whose ``.metadata`` file is not stored (``verify`` found it missing, say) is
    listed without ``core-metadata``, so pip downloads the wheel instead of meeting a 404."""
    db, web = tmp_path / "m.duckdb", tmp_path / "web"
    assert run(up, db, web).ok
    norm, wheel = next((n, f) for n, f in _files(up) if f.core_metadata)
    key = _key(db, norm, wheel.filename) + ".metadata"
    (web / key).unlink()
    with MetadataStore(db) as store:
        store.forget_blobs([key])
        report = write_index(store, web)
    assert report.written == [norm]
    page = json.loads((web / "simple" / norm / "index.v1_json").read_text())
    meta = {f["filename"]: f["core-metadata"] for f in page["files"]}
    assert meta[wheel.filename] is False
    others = [f for n, f in _files(up) if n == norm and f.core_metadata and f is not wheel]
    assert others and all(meta[f.filename] for f in others)  # still stored, still advertised
    html = (web / "simple" / norm / "index.html").read_text()
    anchor = next(a for a in html.splitlines() if f">{wheel.filename}</a>" in a)
    assert "core-metadata" not in anchor and "dist-info-metadata" not in anchor


def test_lazy_index_lists_every_selected_file(up: FakeUpstream, tmp_path: Path) -> None:
    files = _files(up)
    web = tmp_path / "web"
    assert run(up, tmp_path / "m.duckdb", web, lazy=True).ok
    assert not (web / "packages").exists()  # nothing downloaded
    for norm in up.index.projects:
        listed = _listed(web, norm)
        assert listed["json"] == listed["html"] == {f.filename for n, f in files if n == norm}


# ---------------------------------------------------------------------- defect 1 (bulk deletions)
def _narrow(conf: Path, keep: list[str]) -> None:
    lines = "".join(f"    {n}\n" for n in keep)
    conf.write_text(
        conf.read_text()
        + f"[plugins]\nenabled =\n    allowlist_project\n[allowlist]\npackages =\n{lines}"
    )


def test_verify_refuses_to_delete_most_of_the_store(
    up: FakeUpstream,
    tmp_path: Path,
    no_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db, blobs = tmp_path / "m.duckdb", tmp_path / "blobs"
    conf = _conf(tmp_path, up)
    common = ["--config", str(conf), "--db", str(db), "--blobs", str(blobs)]
    assert main(["sync", *common, "-q"]) == 0
    stored = {k for k, _ in LocalBlobStore(blobs).iter_blobs()}
    # the selection shrinks to one project (as a faulty listing would empty it)
    _narrow(conf, [sorted(up.index.projects)[0]])
    # the index keeps the other pages (more than the allowed share) and the sync says so
    assert main(["sync", *common, "-q"]) == 1
    assert "kept the pages" in capsys.readouterr().err
    for share in ([], ["--max-delete-share", "5%"], ["--max-delete-share", "0.5"]):
        assert main(["verify", *common, "--delete-unreferenced", *share]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "refusing to delete" in err[0] and "--force" in err[0], err
        assert {k for k, _ in LocalBlobStore(blobs).iter_blobs()} == stored  # nothing deleted
    assert main(["verify", *common, "--delete-unreferenced", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["deleted"] == 0 and "refusing" in summary["delete_refused"]
    assert main(["verify", *common, "--delete-unreferenced", "--max-delete-share", "half"]) == 2
    assert "max-delete-share" in capsys.readouterr().err
    assert main(["verify", *common, "--delete-unreferenced", "--max-delete-share", "100%"]) == 0
    capsys.readouterr()
    left = {k for k, _ in LocalBlobStore(blobs).iter_blobs()}
    assert left and left < stored
    assert main(["verify", *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unreferenced"] == 0


def test_verify_force_deletes_past_the_share(
    up: FakeUpstream,
    tmp_path: Path,
    no_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db, blobs = tmp_path / "m.duckdb", tmp_path / "blobs"
    conf = _conf(tmp_path, up)
    common = ["--config", str(conf), "--db", str(db), "--blobs", str(blobs)]
    assert main(["sync", *common, "-q"]) == 0
    _narrow(conf, [sorted(up.index.projects)[0]])
    assert main(["sync", *common, "-q"]) == 1  # the kept index pages are reported
    capsys.readouterr()
    assert main(["verify", *common, "--delete-unreferenced", "--force", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["deleted"] == summary["unreferenced"] > 0


def test_index_keeps_pages_when_most_projects_disappear(up: FakeUpstream, tmp_path: Path) -> None:
    db, web = tmp_path / "m.duckdb", tmp_path / "web"
    names = sorted(up.index.projects)
    assert run(up, db, web).ok
    keep = "[plugins]\nenabled =\n    allowlist_project\n[allowlist]\npackages =\n    " + names[0]
    report = run(up, db, web, make_config(keep + "\n"))
    assert report.index is not None
    assert report.index.deleted == [] and sorted(report.index.kept) == names[1:]
    assert list(report.failures) == ["(index)"]  # the run says so, and is not complete
    for norm in names:
        assert (web / "simple" / norm / "index.v1_json").exists()
    root = json.loads((web / "simple" / "index.v1_json").read_text())
    assert [p["name"] for p in root["projects"]] == [up.index.projects[names[0]].name]
    # the operator confirms the change: the pages go
    allowed = make_config(keep + "\n[pypi_assets]\nmax_removed_share = 1\n")
    with MetadataStore(db) as store:
        done = write_index(store, web, max_delete_share=allowed.max_removed_share)
    assert sorted(done.deleted) == names[1:] and not done.kept
    assert not any((web / "simple" / n).exists() for n in names[1:])
    assert not any((web / "pypi" / n).exists() for n in names[1:])


# ---------------------------------------------------------------------- defect 2 (index part)
def _plant(directory: Path, *, age: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    p = directory / f".tmp-{os.urandom(8).hex()}"
    p.write_bytes(b"half a page")
    t = time.time() - age
    os.utime(p, (t, t))
    return p


def test_index_write_removes_stale_temporary_files(up: FakeUpstream, tmp_path: Path) -> None:
    db, web = tmp_path / "m.duckdb", tmp_path / "web"
    assert run(up, db, web).ok
    names = sorted(up.index.projects)
    version = next(iter(up.index.releases(names[1])))
    # what a writer killed mid-write leaves: its temporary files, and the mark of a write
    # that never finished
    stale = [
        _plant(web / "simple", age=3600),
        _plant(web / "simple" / names[0], age=3600),
        _plant(web / "pypi" / names[1], age=3600),
        _plant(web / "pypi" / names[1] / quote(version, safe=""), age=3600),
    ]
    live = _plant(web / "simple" / names[2], age=-5)  # another writer's, still being written
    with MetadataStore(db) as store:
        store.set_meta(index_write_started="1")
        report = write_index(store, web)
        marker = store.get_meta("index_write_started")
    assert not any(p.exists() for p in stale)
    assert live.exists()
    assert report.cleaned == len(stale) and marker == ""
    # without that mark, a normal write still cleans the directories it writes
    changed = _plant(web / "simple" / names[3], age=3600)
    untouched = _plant(web / "simple" / names[4], age=3600)
    up.index.add_release(up.index.projects[names[3]].name, "9.0.0")
    report2 = run(up, db, web)
    assert report2.ok and report2.index is not None and report2.index.written == [names[3]]
    assert not changed.exists() and untouched.exists()


def test_an_interrupted_page_write_leaves_the_old_page(
    up: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, web = tmp_path / "m.duckdb", tmp_path / "web"
    assert run(up, db, web).ok
    pages = {p: p.read_bytes() for p in (web / "simple").rglob("index.*")}

    def fail(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    with MetadataStore(db) as store:
        monkeypatch.setattr(os, "replace", fail)
        with pytest.raises(OSError):
            write_index(store, web, everything=True)
        monkeypatch.undo()
    assert {p: p.read_bytes() for p in (web / "simple").rglob("index.*")} == pages
    assert not list(web.rglob(".tmp-*"))


# ---------------------------------------------------------------------- hostile keys
def test_a_project_cannot_overwrite_another_projects_blob(tmp_path: Path) -> None:
    """A project that claims another project's filename and blake2b_256 (so the same blob
    key) with its own bytes and sha256 is refused and named; the victim's blob stays."""
    from . import fault_harness as H

    c = H.write_config(tmp_path / "mirror.conf", "", timeout=3, global_timeout=60)
    with FakeUpstream(FakeIndex.generate(6)) as up:
        names = sorted(up.index.projects)
        vj, ej = H.project_json(up, names[0]), H.project_json(up, names[1])
        vf = next(f for fs in vj["releases"].values() for f in fs)
        ver, ef = next((v, fs[0]) for v, fs in ej["releases"].items() if fs)
        assert ef["digests"]["sha256"] != vf["digests"]["sha256"]
        nf = dict(
            ef,
            filename=vf["filename"],
            digests=dict(ef["digests"], blake2b_256=vf["digests"]["blake2b_256"]),
        )
        ej["releases"][ver] = [nf, *ej["releases"][ver][1:]]
        # files come from the PEP 691 page (the JSON API adds blake2b where the sha256s
        # agree): the page names the victim's file with the attacker's bytes and sha256
        page = httpx.get(
            f"{up.url}/simple/{names[1]}/", headers={"Accept": JSON_CT}, timeout=10
        ).json()
        page["files"] = [
            dict(f, filename=vf["filename"]) if f["filename"] == ef["filename"] else f
            for f in page["files"]
        ]
        for path, body, ctype in (
            (json_api_path(names[1]), ej, "application/json"),
            (rf"^/simple/{names[1]}/?$", page, JSON_CT),
        ):
            up.add_fault(
                Fault(
                    path=path, kind="body", body=json.dumps(body).encode(), ctype=ctype, times=1000
                )
            )
        m = H.Mirror.new(tmp_path, "m")
        b = vf["digests"]["blake2b_256"]
        blob = m.blobs / f"packages/{b[:2]}/{b[2:4]}/{b[4:]}/{vf['filename']}"
        r = H.sync(up, m, c)
        assert r.rc == 1, r.describe()
        assert f"{names[1]}: {vf['filename']}" in r.stdout + r.stderr
        assert _sha(blob) == vf["digests"]["sha256"]
        # the victim's blob is not recorded (as verify --forget would leave it): the
        # attacker's row meets the stored blob and must not replace it
        con = duckdb.connect(str(m.db))
        con.execute("DELETE FROM blobs")
        con.close()
        r = H.sync(up, m, c)
        assert r.rc == 1, r.describe()
        assert _sha(blob) == vf["digests"]["sha256"]


# ---------------------------------------------------------------------- shared stores
def test_verify_refuses_to_delete_blobs_of_another_database(
    up: FakeUpstream, tmp_path: Path, no_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two databases share one blob directory (each with its own index): deleting what one
    of them does not reference would delete the other's files; it is refused without
    ``--force``, even under the deletion share."""
    blobs = tmp_path / "blobs"
    names = sorted(up.index.projects)
    mirrors = []
    for i, keep in enumerate((names[:-1], names[-1:])):
        d = tmp_path / f"m{i}"
        d.mkdir()
        conf = _conf(d, up)
        _narrow(conf, keep)
        common = ["--config", str(conf), "--db", str(d / "m.duckdb"), "--blobs", str(blobs)]
        assert main(["sync", *common, "--web", str(d / "web"), "-q"]) == 0
        mirrors.append(common)
    stored = {k for k, _ in LocalBlobStore(blobs).iter_blobs()}
    capsys.readouterr()
    assert main(["verify", *mirrors[0], "--delete-unreferenced"]) == 1
    err = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("[")]
    assert len(err) == 1 and "shared with the database" in err[0] and "--force" in err[0], err
    assert {k for k, _ in LocalBlobStore(blobs).iter_blobs()} == stored
    assert main(["verify", *mirrors[1], "--json"]) == 0  # the other mirror lost nothing
    assert main(["verify", *mirrors[0], "--delete-unreferenced", "--force"]) == 0
    assert {k for k, _ in LocalBlobStore(blobs).iter_blobs()} < stored


def test_a_second_database_does_not_take_over_an_index(
    up: FakeUpstream, tmp_path: Path, no_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    blobs, conf = tmp_path / "blobs", _conf(tmp_path, up)
    a = ["--config", str(conf), "--db", str(tmp_path / "a.duckdb"), "--blobs", str(blobs)]
    b = ["--config", str(conf), "--db", str(tmp_path / "b.duckdb"), "--blobs", str(blobs)]
    assert main(["sync", *a, "-q"]) == 0
    root = (blobs / "simple" / "index.html").read_bytes()
    capsys.readouterr()
    assert main(["sync", *b, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "written by database" in err[0] and "--web" in err[0], err
    assert not (tmp_path / "b.duckdb").exists()  # stopped before doing anything
    assert (blobs / "simple" / "index.html").read_bytes() == root
    assert main(["sync", *b, "--web", str(tmp_path / "web-b"), "-q"]) == 0
    assert (tmp_path / "web-b" / "simple" / "index.html").exists()
    assert main(["sync", *a, "-q"]) == 0  # the owner still writes its own index


# ---------------------------------------------------------------------- deleted pages
def test_deleted_index_pages_are_noticed_and_restored(
    up: FakeUpstream, tmp_path: Path, no_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    blobs, conf = tmp_path / "blobs", _conf(tmp_path, up)
    common = ["--config", str(conf), "--db", str(tmp_path / "m.duckdb"), "--blobs", str(blobs)]
    assert main(["sync", *common, "-q"]) == 0
    p = sorted(up.index.projects)[0]
    page = (blobs / "simple" / p / "index.html").read_bytes()
    import shutil

    shutil.rmtree(blobs / "simple" / p)
    capsys.readouterr()
    assert main(["verify", *common, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["missing_pages"] == 1
    assert main(["verify", *common, "--repair", "--json"]) == 0
    assert (blobs / "simple" / p / "index.html").read_bytes() == page
    assert main(["verify", *common, "--json"]) == 0
    # the root deleted: the next sync is not "up to date", it writes it again
    (blobs / "simple" / "index.v1_json").unlink()
    capsys.readouterr()
    assert main(["sync", *common, "--json"]) == 0
    assert (blobs / "simple" / "index.v1_json").exists()


def test_index_pages_never_written_are_noticed_and_written(
    up: FakeUpstream, tmp_path: Path, no_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A selected project whose pages were never written (no page on disk, none recorded in
    the database: an index write cut off before it reached it) is reported by ``verify``,
    and ``--repair`` writes it."""
    blobs, conf = tmp_path / "blobs", _conf(tmp_path, up)
    db = tmp_path / "m.duckdb"
    common = ["--config", str(conf), "--db", str(db), "--blobs", str(blobs)]
    assert main(["sync", *common, "-q"]) == 0
    p = sorted(up.index.projects)[-1]
    page = (blobs / "simple" / p / "index.html").read_bytes()
    import shutil

    shutil.rmtree(blobs / "simple" / p)
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM simple_pages WHERE project = ?", [p])
    con.close()
    capsys.readouterr()
    assert main(["verify", *common]) == 1
    out, err = capsys.readouterr()
    assert re.search(r"^missing_pages\s+1$", out, re.M), out
    assert f"MISSING-PAGE {p}" in err.splitlines(), err
    assert main(["verify", *common, "--repair", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing_pages"] == 0
    assert (blobs / "simple" / p / "index.html").read_bytes() == page
    assert main(["verify", *common, "--json"]) == 0
