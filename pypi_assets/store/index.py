"""Warehouse's JSON API pages (``pypi/<project>/json``, ``pypi/<project>/<version>/json``),
rendered from the stored rows. The simple pages are rendered by :mod:`pypi_assets.pypi.simple`
and both are written by the index writer, :mod:`pypi_assets.sync.index`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from ..pypi.records import warehouse_file
from ..pypi.simple import version_key as _version_key

__all__ = ["render_json_api"]


def _file_json(f: dict[str, Any], root_uri: str) -> dict[str, Any]:
    return warehouse_file(
        filename=f["filename"],
        packagetype=f["packagetype"],
        python_version=f["python_version"],
        requires_python=f["file_requires_python"],
        size=f["size"],
        upload_time=f["upload_time"],
        url=f"{root_uri}/{f['key']}",
        sha256=f["sha256"],
        md5=f["md5"],
        blake2b_256=f["blake2b_256"],
        yanked=f["yanked"],
        yanked_reason=f["yanked_reason"],
    )


def render_json_api(
    name: str,
    serial: int,
    info: dict[str, Any] | None,
    latest: str | None,
    releases: dict[str, dict[str, Any] | None],
    files: list[dict[str, Any]],
    *,
    root_uri: str = "",
) -> dict[str, bytes]:
    """``pypi/<name>/json`` and ``pypi/<name>/<version>/json`` in Warehouse's shapes, listing
    the selected files. ``releases``: version -> that version's stored ``info``."""
    by_version: dict[str, list[dict[str, Any]]] = {v: [] for v in releases}
    for f in files:
        by_version.setdefault(f["release_version"], []).append(_file_json(f, root_uri))
    kept = {v: fs for v, fs in by_version.items() if fs}
    out: dict[str, bytes] = {}
    project_info = dict(info or {})
    project = {
        "info": project_info,
        "last_serial": serial,
        # every stored release, as PyPI lists releases with no files too
        "releases": dict(sorted(by_version.items(), key=lambda kv: _version_key(kv[0]))),
        "urls": kept.get(latest or "", []),
        "vulnerabilities": [],
    }
    out[f"pypi/{name}/json"] = json.dumps(project, sort_keys=True).encode()
    for version, fs in kept.items():
        vinfo = releases.get(version) or (project_info if version == latest else None)
        if vinfo is None:
            continue
        doc = {"info": vinfo, "last_serial": serial, "urls": fs, "vulnerabilities": []}
        out[f"pypi/{name}/{quote(version, safe='')}/json"] = json.dumps(
            doc, sort_keys=True
        ).encode()
    return out
