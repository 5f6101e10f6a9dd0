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
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
REPO = {"repositoryLocationName": "pypi_assets", "repositoryName": "__repository__"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dagster:
    def __init__(self, url: str, home: Path, log: Path) -> None:
        self.url, self.home, self.log = url, home, log

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        r = httpx.post(
            self.url + "/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        r.raise_for_status()
        body = r.json()
        assert "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]

    def launch_assets(self, *keys: str) -> str:
        data = self.gql(
            """mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) {
                 __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
            {
                "p": {
                    "selector": {
                        **REPO,
                        "pipelineName": "__ASSET_JOB",
                        "assetSelection": [{"path": [k]} for k in keys],
                    },
                    "mode": "default",
                    "runConfigData": {},
                }
            },
        )
        res = data["launchPipelineExecution"]
        assert res["__typename"] == "LaunchRunSuccess", res
        return str(res["run"]["runId"])

    def wait_run(self, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.gql(
                "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                {"id": run_id},
            )["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return str(status)
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} did not finish")

    def add_partitions(self, keys: list[str]) -> None:
        for key in keys:
            data = self.gql(
                """mutation($r: RepositorySelector!, $k: String!) { addDynamicPartition(repositorySelector: $r,
                     partitionsDefName: "serial_windows", partitionKey: $k) { __typename } }""",
                {"r": REPO, "k": key},
            )
            assert data["addDynamicPartition"]["__typename"] in (
                "AddDynamicPartitionSuccess",
                "DuplicateDynamicPartitionError",
            )

    def backfill(self, asset: str, partitions: list[str]) -> str:
        data = self.gql(
            """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
                 __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {"p": {"assetSelection": [{"path": [asset]}], "partitionNames": partitions}},
        )
        res = data["launchPartitionBackfill"]
        assert res["__typename"] == "LaunchBackfillSuccess", res
        return str(res["backfillId"])

    def wait_backfill(self, backfill_id: str, timeout: float = 300) -> tuple[str, list[str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            b = self.gql(
                """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
                     status runs(limit: 1000) { runId status } } } }""",
                {"id": backfill_id},
            )["partitionBackfillOrError"]
            runs = [r["status"] for r in b["runs"]]
            if b["status"] not in ("REQUESTED", "CANCELING") and all(
                s in ("SUCCESS", "FAILURE", "CANCELED") for s in runs
            ):
                return str(b["status"]), runs
            time.sleep(1)
        raise TimeoutError("backfill did not finish")


@contextmanager
def dagster_webserver(tmp: Path, env: dict[str, str]) -> Iterator[Dagster]:
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
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
    server = Dagster(f"http://127.0.0.1:{port}", home, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                entries = server.gql(
                    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
                )["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    # The shipped workspace.yaml names the location "pypi_assets"; [tool.dg] alone would not.
                    assert [e["name"] for e in entries] == ["pypi_assets"], entries
                    break
            except (httpx.HTTPError, KeyError, TypeError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dagster did not start:\n" + log.read_text()[-3000:])
            time.sleep(1)
        yield server
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
