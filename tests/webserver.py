"""A real Dagster webserver (``dg dev -w workspace.yaml``) on loopback, for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pypi_assets.dagster_api import DagsterAPI

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dagster(DagsterAPI):
    def __init__(self, url: str, home: Path, log: Path, env: dict[str, str]) -> None:
        super().__init__(url)
        self.home, self.log, self.env = home, log, env

    def launch_partition(self, asset: str, partition: str) -> str:
        """Submit one run of ``asset`` for ``partition`` (queued by the run coordinator)."""
        data = self.gql(
            """mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) {
                 __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
            {
                "p": {
                    "selector": {
                        **self.repo,
                        "pipelineName": "__ASSET_JOB",
                        "assetSelection": [{"path": [asset]}],
                    },
                    "mode": "default",
                    "runConfigData": {},
                    "executionMetadata": {
                        "tags": [{"key": "dagster/partition", "value": partition}]
                    },
                }
            },
        )["launchPipelineExecution"]
        if data["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launch failed: {data}")
        return str(data["run"]["runId"])


@contextmanager
def dagster_webserver(
    tmp: Path, env: dict[str, str], instance_yaml: str | None = None
) -> Iterator[Dagster]:
    """``dg dev`` (webserver and daemon) with the shipped dagster.yaml, or ``instance_yaml``."""
    home = tmp / "dagster_home"
    home.mkdir()
    if instance_yaml is None:
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(instance_yaml)
    port = free_port()
    log = tmp / "dagster.log"
    dg = Path(sys.executable).with_name("dg")
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(dg), "dev", "-w", "workspace.yaml", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Dagster(f"http://127.0.0.1:{port}", home, log, env)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                entries = server.gql(
                    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
                )["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    # The shipped workspace.yaml names the location "pypi_assets", as
                    # [tool.dg.project] does, and the CLI's backfill addresses it by that name.
                    assert [e["name"] for e in entries] == ["pypi_assets"], entries
                    break
            except (httpx.HTTPError, KeyError, TypeError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dagster did not start:\n" + log.read_text()[-3000:])
            time.sleep(1)
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL after 30 s (it may be gone already)."""
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
