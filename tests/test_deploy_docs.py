"""docs/deploy.md's config blocks validate against Dagster's own schemas."""

from __future__ import annotations

import re
from typing import Any

import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config_schema

from .helpers import DEPLOY_DOC as DOC


def _blocks() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for body in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S):
        m = re.match(r"# validate: (\w+)\n", body)
        assert m, f"every yaml block in deploy.md names its schema:\n{body}"
        out[m.group(1)] = yaml.safe_load(body)
    return out


def test_every_block_is_validated() -> None:
    assert set(_blocks()) == {"instance", "run_launcher", "k8s_job_executor"}


def test_instance_block() -> None:
    from dagster import Shape

    block = _blocks()["instance"]
    result = validate_config(Shape(dagster_instance_config_schema()), block)
    assert result.success, [e.message for e in result.errors or []]
    from dagster_postgres import PostgresEventLogStorage

    pg = validate_config(PostgresEventLogStorage.config_type(), block["storage"]["postgres"])
    assert pg.success, [e.message for e in pg.errors or []]
    # Postgres for every storage, queued runs, more than one at a time
    assert block["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert block["concurrency"]["runs"]["max_concurrent_runs"] > 1
    assert block["concurrency"]["pools"]["default_limit"] == 1


def test_run_launcher_block_extends_the_instance_block() -> None:
    from dagster import Shape
    from dagster_k8s import K8sRunLauncher

    blocks = _blocks()
    merged = {**blocks["instance"], **blocks["run_launcher"]}
    result = validate_config(Shape(dagster_instance_config_schema()), merged)
    assert result.success, [e.message for e in result.errors or []]
    config = blocks["run_launcher"]["run_launcher"]["config"]
    launcher = validate_config(K8sRunLauncher.config_type(), config)
    assert launcher.success, [e.message for e in launcher.errors or []]


def test_k8s_executor_block() -> None:
    from dagster_k8s import k8s_job_executor

    block = _blocks()["k8s_job_executor"]
    result = validate_config(k8s_job_executor.config_schema.config_type, block)
    assert result.success, [e.message for e in result.errors or []]


def test_a_wrong_block_is_rejected() -> None:
    from dagster import Shape

    bad = dict(_blocks()["instance"])
    bad["concurrency"] = {"pools": {"default_limit": "one"}}
    assert not validate_config(Shape(dagster_instance_config_schema()), bad).success


def test_embedded_dagster_yaml_validates() -> None:
    from dagster import Shape

    block = yaml.safe_load((DOC.parents[1] / "dagster.yaml").read_text())
    assert block["concurrency"]["pools"]["default_limit"] == 1
    assert "free_slots_after_run_end_seconds" in block["run_monitoring"]
    assert validate_config(Shape(dagster_instance_config_schema()), block).success
