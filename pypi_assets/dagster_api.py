"""A small client for a running Dagster webserver's GraphQL API: the calls the UI makes to
launch asset runs, add serial windows and start partition backfills. Used by
``pypi-assets backfill`` and the end-to-end tests. No Dagster import, only HTTP."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["DagsterAPI"]

TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")


@dataclass
class DagsterAPI:
    url: str  # e.g. http://127.0.0.1:3000
    location: str = "pypi_assets"
    repository: str = "__repository__"
    timeout: float = 60.0

    @property
    def repo(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": self.repository}

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        r = httpx.post(
            self.url.rstrip("/") + "/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=self.timeout,
            trust_env=False,
        )
        r.raise_for_status()
        body = r.json()
        if "errors" in body:
            raise RuntimeError(f"GraphQL error: {body['errors']}")
        return body["data"]  # type: ignore[no-any-return]

    def locations(self) -> list[tuple[str, str]]:
        entries = self.gql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
        )["workspaceOrError"]["locationEntries"]
        return [(e["name"], e["loadStatus"]) for e in entries]

    def launch_assets(self, *keys: str) -> str:
        data = self.gql(
            """mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) {
                 __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
            {
                "p": {
                    "selector": {
                        **self.repo,
                        "pipelineName": "__ASSET_JOB",
                        "assetSelection": [{"path": [k]} for k in keys],
                    },
                    "mode": "default",
                    "runConfigData": {},
                }
            },
        )
        res = data["launchPipelineExecution"]
        if res["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launch failed: {res}")
        return str(res["run"]["runId"])

    def run_status(self, run_id: str) -> str:
        return str(
            self.gql(
                "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                {"id": run_id},
            )["runOrError"]["status"]
        )

    def wait_run(self, run_id: str, timeout: float = 3600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.run_status(run_id)
            if status in TERMINAL:
                return status
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} did not finish")

    def add_partitions(self, keys: list[str], partitions_def: str = "serial_windows") -> int:
        added = 0
        for key in keys:
            res = self.gql(
                """mutation($r: RepositorySelector!, $d: String!, $k: String!) { addDynamicPartition(repositorySelector: $r,
                     partitionsDefName: $d, partitionKey: $k) { __typename } }""",
                {"r": self.repo, "d": partitions_def, "k": key},
            )["addDynamicPartition"]["__typename"]
            if res == "AddDynamicPartitionSuccess":
                added += 1
            elif res != "DuplicateDynamicPartitionError":
                raise RuntimeError(f"could not add partition {key}: {res}")
        return added

    def backfill(self, asset: str, partitions: list[str]) -> str:
        res = self.gql(
            """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
                 __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {"p": {"assetSelection": [{"path": [asset]}], "partitionNames": partitions}},
        )["launchPartitionBackfill"]
        if res["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill failed to launch: {res}")
        return str(res["backfillId"])

    def backfill_state(self, backfill_id: str) -> tuple[str, list[str]]:
        b = self.gql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
                 status runs(limit: 10000) { status } } } }""",
            {"id": backfill_id},
        )["partitionBackfillOrError"]
        return str(b["status"]), [str(r["status"]) for r in b["runs"]]

    def wait_backfill(self, backfill_id: str, timeout: float = 24 * 3600) -> tuple[str, list[str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, runs = self.backfill_state(backfill_id)
            if status not in ("REQUESTED", "CANCELING") and all(s in TERMINAL for s in runs):
                return status, runs
            time.sleep(1)
        raise TimeoutError("backfill did not finish")
