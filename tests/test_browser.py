"""The Dagster UI in headless Chromium: find the asset graph, click Materialize, see success."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream

from .webserver import Dagster, dagster_webserver

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CONF = "[mirror]\ndirectory = /tmp/x\nrelease-files = false\nmaster = http://127.0.0.1\nallow-non-https = true\n"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dagster]:
    tmp = tmp_path_factory.mktemp("ui")
    conf = tmp / "b.conf"
    conf.write_text(CONF)
    with FakeUpstream(FakeIndex.generate(8)) as up:
        env = {
            "PYPI_ASSETS_UPSTREAM": up.url,
            "PYPI_ASSETS_CONFIG": str(conf),
            "PYPI_ASSETS_DB": str(tmp / "ui.duckdb"),
        }
        with dagster_webserver(tmp, env) as s:
            yield s


def _runs_for(server: Dagster, asset: str) -> list[tuple[str, str]]:
    data = server.gql(
        """query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { ... on Asset {
             assetMaterializations(limit: 5) { runId } } } }""",
        {"k": {"path": [asset]}},
    )
    mats = (data["assetOrError"] or {}).get("assetMaterializations") or []
    runs = server.gql("{ runsOrError(limit: 20) { ... on Runs { results { runId status } } } }")[
        "runsOrError"
    ]["results"]
    ids = {m["runId"] for m in mats}
    return [(r["runId"], r["status"]) for r in runs if r["runId"] in ids]


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (./dev test installs it as root)"
)
def test_ui_materialise_upstream_projects(server: Dagster) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"{server.url}/asset-groups", wait_until="domcontentloaded")
            page.goto(
                f"{server.url}/locations/pypi_assets/asset-groups/pypi_mirror",
                wait_until="domcontentloaded",
            )
            # The asset graph shows all three assets of the group.
            for name in ("upstream_projects", "filtered_projects", "release_metadata"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "asset-graph.png"))
            page.goto(f"{server.url}/assets/upstream_projects", wait_until="domcontentloaded")
            page.get_by_text("Latest materialization").first.wait_for(timeout=60_000)
            skip = page.get_by_role(
                "button", name="Skip"
            )  # first-visit "join the community" dialog
            try:
                skip.wait_for(timeout=5_000)
                skip.click()
            except PlaywrightTimeout:
                pass
            button = page.get_by_role("button", name="Materialize").first
            button.wait_for(timeout=60_000)
            button.click()
            deadline = time.monotonic() + 180
            runs: list[tuple[str, str]] = []
            while time.monotonic() < deadline:
                all_runs = server.gql(
                    "{ runsOrError(limit: 5) { ... on Runs { results { runId status } } } }"
                )["runsOrError"]["results"]
                if all_runs and all_runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                    runs = [(r["runId"], r["status"]) for r in all_runs]
                    break
                time.sleep(1)
            assert runs and runs[0][1] == "SUCCESS", runs
            assert _runs_for(server, "upstream_projects")[0] == runs[0]
            page.goto(f"{server.url}/runs/{runs[0][0]}", wait_until="domcontentloaded")
            page.get_by_text("Success", exact=False).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "materialize-upstream_projects.png"))
        finally:
            page.screenshot(path=str(ARTIFACTS / "last.png"))
            browser.close()
