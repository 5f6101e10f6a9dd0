"""The README's library example: filtered metadata and download URLs, with no disk writes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pypi_assets.fake import FakeUpstream
from pypi_assets.filters import loads
from pypi_assets.pypi import ClientConfig, PyPIClient
from pypi_assets.sync.library import filtered_projects


def test_library_use_touches_no_disk(
    fake: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: pytest.fail("library use opened DuckDB"))
    # Two projects that do have Windows wheels, so the platform filter has something to drop.
    names = [
        p.name
        for n, p in sorted(fake.index.projects.items())
        if any("win_amd64" in f.filename for r in fake.index.releases(n).values() for f in r.files)
    ]
    assert len(names) >= 2
    config = loads(
        "[mirror]\nmaster = http://127.0.0.1\nallow-non-https = true\n"
        "[plugins]\nenabled =\n    allowlist_project\n    exclude_platform\n"
        f"[allowlist]\npackages =\n    {names[0]}\n    {names[1]}\n"
        "[blocklist]\nplatforms =\n    windows\n"
    )

    async def main() -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        async with PyPIClient(ClientConfig(upstream=fake.url)) as client:
            async for project in filtered_projects(client, config):
                out[project.name] = [(d.filename, d.url) for d in project.distributions]
        return out

    got = asyncio.run(main())
    assert sorted(got) == sorted(
        fake.index.get(n).name.lower().replace("_", "-").replace(".", "-") for n in names[:2]
    )  # type: ignore[union-attr]
    files = [f for fs in got.values() for f in fs]
    assert files and all(url.startswith(fake.url + "/packages/") for _f, url in files)
    assert not any("win_amd64" in f for f, _u in files)
    assert os.listdir(tmp_path) == []
