"""Helpers for the blob-store tests: a pip in a fresh virtualenv, a moto S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True)
    return path / "bin" / "python"


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    return env


def pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", *args],
        capture_output=True,
        text=True,
        env=pip_env(),
        timeout=300,
    )


def installed(python: Path) -> dict[str, str]:
    p = pip(python, "list", "--format", "json")
    assert p.returncode == 0, p.stderr
    return {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(p.stdout)}


def with_dependency(db: Path) -> tuple[str, str, str]:
    """A selected ``(project, version, dependency)`` whose dependency is mirrored too."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "SELECT d.project, d.release_version, d.dep_project FROM dependencies d "
            "JOIN selected_distributions s ON s.project = d.project AND s.filename = d.filename "
            "WHERE d.marker IS NULL AND d.dep_project IN (SELECT project FROM selected_distributions) "
            "ORDER BY d.project DESC, d.release_version LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return row[0], row[1], row[2]


def install_with_hashes(python: Path, index: str, requirement: str, db: Path, tmp: Path) -> None:
    """Resolve with a dry run, then install with ``--require-hashes``: every pinned version
    with the sha256 of each of its files, taken from DuckDB."""
    report = tmp / "report.json"
    p = pip(
        python, "install", "--dry-run", "--report", str(report), "--index-url", index, requirement
    )
    assert p.returncode == 0, p.stdout + p.stderr
    picked = [
        (i["metadata"]["name"], i["metadata"]["version"])
        for i in json.loads(report.read_text())["install"]
    ]
    con = duckdb.connect(str(db), read_only=True)
    lines = []
    for name, version in picked:
        hashes = [
            r[0]
            for r in con.execute(
                "SELECT sha256 FROM distributions WHERE project = lower(regexp_replace(?, '[-_.]+', '-', 'g')) "
                "AND release_version = ?",
                [name, version],
            ).fetchall()
        ]
        assert hashes, (name, version)
        lines.append(f"{name}=={version} " + " ".join(f"--hash=sha256:{h}" for h in hashes))
    con.close()
    req = tmp / "requirements.txt"
    req.write_text("\n".join(lines) + "\n")
    p = pip(python, "install", "--require-hashes", "--index-url", index, "-r", str(req))
    assert p.returncode == 0, p.stdout + p.stderr


@contextmanager
def moto_s3(bucket: str) -> Iterator[dict[str, str]]:
    """A real S3 API on loopback (moto in server mode) with one bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds).create_bucket(
        Bucket=bucket
    )
    try:
        yield {"endpoint_url": endpoint, "region_name": "us-east-1", **creds}
    finally:
        server.stop()
