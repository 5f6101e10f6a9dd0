"""Issue 10, the hostile-upstream leftover: a ``.metadata`` blob lives beside the file it
describes (PEP 658's URL), so its key comes from that file's digest. Two projects whose files
claim the same file (name and digests) with different ``.metadata`` files: one claim is false,
and neither may replace the other's blob; ``verify`` keeps judging the stored one by its own
claim."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.fake.data import FakeFile
from pypi_assets.pypi import ClientConfig, PyPIClient
from pypi_assets.store import MetadataStore
from pypi_assets.store.blobs import LocalBlobStore, metadata_key
from pypi_assets.sync.files import verify_blobs
from pypi_assets.sync.run import run_sync, sync_files
from pypi_assets.sync.settings import Settings

from .helpers import FAST, make_config


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeIndex.generate(4)) as u:
        yield u


def _wheels(up: FakeUpstream) -> list[tuple[str, FakeFile]]:
    return [
        (norm, f)
        for norm in sorted(up.index.projects)
        for r in up.index.releases(norm).values()
        for f in r.files
        if f.core_metadata
    ]


def _claim_victims_file(store: MetadataStore, up: FakeUpstream) -> tuple[FakeFile, FakeFile, str]:
    """Make the last project's wheel claim the first project's wheel (its filename and
    digests) while keeping its own URL and ``.metadata`` digest, as a hostile upstream row
    would. Returns the victim's file, the hostile file and the shared ``.metadata`` key."""
    wheels = _wheels(up)
    (vnorm, victim), (hnorm, hostile) = wheels[0], wheels[-1]
    assert vnorm < hnorm and victim.metadata != hostile.metadata
    with store.transaction() as con:
        con.execute(
            "UPDATE distribution_rows SET filename = $1, sha256 = $2, blake2b_256 = $3, size = $4 "
            "WHERE project = $5 AND filename = $6",
            [
                victim.filename,
                victim.sha256,
                victim.blake2b_256,
                len(victim.content),
                hnorm,
                hostile.filename,
            ],
        )
        con.execute(
            "UPDATE selected_files SET filename = $1 WHERE project = $2 AND filename = $3",
            [victim.filename, hnorm, hostile.filename],
        )
    key = store.query(
        "SELECT key FROM selected_blob_keys WHERE project = ? AND filename = ?",
        [vnorm, victim.filename],
    )[0][0]
    return victim, hostile, metadata_key(key)


def _sync(up: FakeUpstream, db: Path, blobs: Path) -> None:
    settings = Settings(upstream=up.url, db=db, blobs=str(blobs))
    assert asyncio.run(run_sync(settings, make_config(), client_overrides=FAST)).ok


async def _fetch_missing(up: FakeUpstream, store: MetadataStore, blobs: LocalBlobStore) -> None:
    async with PyPIClient(ClientConfig(upstream=up.url, **FAST)) as client:
        await sync_files(client, store, blobs)


def test_a_hostile_claim_never_replaces_another_projects_metadata(
    up: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, root = tmp_path / "m.duckdb", tmp_path / "blobs"
    _sync(up, db, root)
    blobs = LocalBlobStore(root)
    with MetadataStore(db) as store:
        _victim, hostile, key = _claim_victims_file(store, up)
        # the .metadata is to be fetched again (verify found it missing, say): both claims
        # meet in one batch
        store.forget_blobs([key])
        (root / key).unlink()
        claims = [r for r in store.missing_blobs() if r[2] == key]
        assert not claims, claims  # neither claim is fetched: one of them is false
        with caplog.at_level(logging.WARNING, "pypi_assets.store"):
            asyncio.run(_fetch_missing(up, store, blobs))
        assert not (root / key).exists()
        assert key in caplog.text and hostile.metadata_sha256 in caplog.text  # named
        assert key in store.metadata_conflicts()


def test_verify_judges_a_stored_metadata_by_the_claim_stored(
    up: FakeUpstream, tmp_path: Path
) -> None:
    db, root = tmp_path / "m.duckdb", tmp_path / "blobs"
    _sync(up, db, root)
    blobs = LocalBlobStore(root)
    with MetadataStore(db) as store:
        victim, _hostile, key = _claim_victims_file(store, up)
        assert hashlib.sha256((root / key).read_bytes()).hexdigest() == victim.metadata_sha256
        referenced = store.referenced_blobs()
        assert referenced[key][2] == victim.metadata_sha256
        assert not [r for r in store.missing_blobs() if r[2] == key]
        asyncio.run(_fetch_missing(up, store, blobs))
    report = verify_blobs(blobs, referenced)
    assert report.corrupt == [] and key not in report.missing
    assert hashlib.sha256((root / key).read_bytes()).hexdigest() == victim.metadata_sha256
