"""A throwaway PostgreSQL cluster on loopback, for the tests that run Dagster on Postgres.

``initdb`` in a fresh temporary directory, as an unprivileged user (as root, the user
``nobody`` owns the directory and runs the server), listening on 127.0.0.1 only on a free
port, with password authentication; ``pg_ctl stop`` and removal of the directory at the end.
The binaries are taken from ``PYPI_ASSETS_PG_BIN``, else ``pg_config --bindir``, else the
newest Debian ``/usr/lib/postgresql/*/bin``, else ``$PATH``. Without them the tests that
need the cluster are skipped with that reason, unless ``PYPI_ASSETS_REQUIRE_POSTGRES=1``
(set by ``.ci/run``), which makes it an error.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

UNPRIVILEGED = "nobody"
DB = "dagster"
USER = "dagster"


@dataclass(frozen=True)
class Cluster:
    host: str
    port: int
    user: str
    password: str
    db: str

    def env(self) -> dict[str, str]:
        """The variables docs/deploy.md's instance config reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db,
        }

    def create_db(self, name: str) -> Cluster:
        """A new, empty database in the cluster (one Dagster instance each)."""
        import psycopg2

        if not name.isidentifier():
            raise ValueError(f"not a database name: {name!r}")
        con = psycopg2.connect(self.dsn())
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()
        return Cluster(self.host, self.port, self.user, self.password, name)

    def dsn(self) -> str:
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"password={self.password} dbname={self.db}"
        )


def pg_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are, or None."""
    candidates: list[Path] = []
    if os.environ.get("PYPI_ASSETS_PG_BIN"):
        candidates.append(Path(os.environ["PYPI_ASSETS_PG_BIN"]))
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    candidates.extend(reversed(debian))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> tuple[int | None, int | None]:
    """(uid, gid) to run the server as: ``nobody`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None, None
    pw = pwd.getpwnam(UNPRIVILEGED)
    return pw.pw_uid, pw.pw_gid


def _run(cmd: list[str], uid: int | None, gid: int | None, **kw: object) -> None:
    p = subprocess.run(  # type: ignore[call-overload]
        cmd,
        user=uid,
        group=gid,
        extra_groups=[] if uid is not None else None,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        **kw,
    )
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({p.returncode}):\n{p.stdout}{p.stderr}")


@contextmanager
def postgres_cluster(bindir: Path) -> Iterator[Cluster]:
    """Start a cluster in a temporary directory; stop it and remove the directory after."""
    uid, gid = _as_user()
    tmp = Path(tempfile.mkdtemp(prefix="pypi-assets-pg-"))
    data, sock, pwfile = tmp / "data", tmp / "sock", tmp / "pw"
    password = secrets.token_hex(16)
    pwfile.write_text(password + "\n")
    sock.mkdir()
    if uid is not None:
        for p in (tmp, sock, pwfile):
            os.chown(p, uid, gid or -1)
    port = _free_port()
    cluster = Cluster("127.0.0.1", port, USER, password, DB)
    started = False
    try:
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ],
            uid,
            gid,
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c max_connections=200 -c fsync=off"
        )
        _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(tmp / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            uid,
            gid,
        )
        started = True
        _run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DB],
            uid,
            gid,
            env={**os.environ, "PGPASSWORD": password},
        )
        yield cluster
    finally:
        if started:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], uid, gid)
        shutil.rmtree(tmp, ignore_errors=True)
