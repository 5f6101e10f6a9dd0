"""Issue 3 benchmark: project-level filtering of PyPI's ~886k project names with a config that
enables 10 plugins, pypi-assets against bandersnatch 8.2's own plugin objects, in one run.

Both sides run in their own process on the same name list and the same unmodified config
file, and time only the filtering (after loading names and config). bandersnatch's side is
what its ``Mirror._filter_packages`` does: every project plugin's ``filter({"info": {"name":
n}})`` for every name. The kept names must be identical (compared by digest), else the run
fails. Repetitions alternate between the two; the median is reported.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import BS_VENV, PYPI_TSV, ensure_bandersnatch, table, write_result

PLUGINS = [
    "blocklist_project",
    "regex_project",
    "size_project_metadata",
    "versions_count_project_metadata",
    "regex_project_metadata",
    "blocklist_release",
    "prerelease_release",
    "regex_release",
    "latest_release",
    "exclude_platform",
]

CONF = """\
[mirror]
directory = {dir}
# never contacted: only the filters run; loopback so nothing could reach a real index
master = http://127.0.0.1:9
allow-non-https = true
[plugins]
enabled =
{plugins}
[blocklist]
packages =
{blocked}
    numpy<1.20
platforms =
    windows
    macos
[filter_regex]
packages =
    .*-?test-?.*
    ^[0-9].*
    .*[Dd]jango.*
    (?i).*tensorflow.*
    .+-nightly$
    .*\\.dev$
    ^zz.*
    .*pyqt.*
releases =
    .*\\.post\\d+$
[latest_release]
keep = 5
[size_project_metadata]
max_package_size = 1G
[versions_count_project_metadata]
max_versions = 500
[regex_project_metadata]
not-null:info.classifiers =
    .*Python :: 3.*
"""

#: run in bandersnatch's own virtualenv (Python 3.12+)
THEIRS = r"""
import hashlib, json, sys, time
from pathlib import Path
from bandersnatch.configuration import BandersnatchConfig
from bandersnatch.filter import LoadedFilters
names = Path(sys.argv[2]).read_text().split("\n")
BandersnatchConfig(config_file=Path(sys.argv[1]))
plugins = LoadedFilters(load_all=True).filter_project_plugins()
t = time.perf_counter()
kept = [n for n in names if all(p.filter({"info": {"name": n}}) for p in plugins if p)]
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "kept": len(kept), "plugins": sorted(p.name for p in plugins),
                  "digest": hashlib.sha256("\n".join(kept).encode()).hexdigest()}))
"""

OURS = r"""
import hashlib, json, sys, time
from pathlib import Path
from pypi_assets.filters import load, project_filter
names = Path(sys.argv[2]).read_text().split("\n")
t0 = time.perf_counter()
pf = project_filter(load(sys.argv[1]))
t = time.perf_counter()
kept = pf.select(names)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "setup_seconds": t - t0, "kept": len(kept),
                  "digest": hashlib.sha256("\n".join(kept).encode()).hexdigest()}))
"""


def _names() -> list[str]:
    lines = PYPI_TSV.read_text().splitlines()[1:]
    return [line.split("\t", 1)[0] for line in lines if line]


def _run(python: str, script: str, conf: Path, names: Path) -> dict[str, Any]:
    out = subprocess.run(
        [python, "-c", script, str(conf), str(names)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(quick: bool = False) -> str:
    exe = ensure_bandersnatch()
    if exe is None:
        raise SystemExit("bandersnatch 8.2 needs a Python >= 3.12 (set BANDERSNATCH_PYTHON)")
    names = _names()
    if quick:
        names = names[:100_000]
    rng = random.Random(3)
    blocked = rng.sample(names, 1000)
    reps = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "bandersnatch.conf"
        conf.write_text(
            CONF.format(
                dir=tmp,
                plugins="\n".join(f"    {p}" for p in PLUGINS),
                blocked="\n".join(f"    {b}" for b in blocked),
            )
        )
        names_file = Path(tmp) / "names.txt"
        names_file.write_text("\n".join(names))
        ours, theirs = [], []
        for _ in range(reps):
            theirs.append(_run(str(BS_VENV / "bin" / "python"), THEIRS, conf, names_file))
            ours.append(_run(sys.executable, OURS, conf, names_file))
    if {r["digest"] for r in ours} != {r["digest"] for r in theirs}:
        raise SystemExit(
            f"kept names differ: ours {ours[0]['kept']}, bandersnatch {theirs[0]['kept']}"
        )
    o = statistics.median(r["seconds"] for r in ours)
    t = statistics.median(r["seconds"] for r in theirs)
    data = {
        "names": len(names),
        "blocked_names": len(blocked),
        "plugins_enabled": PLUGINS,
        "project_plugins_bandersnatch_loaded": theirs[0]["plugins"],
        "kept": ours[0]["kept"],
        "ours_seconds": ours,
        "bandersnatch_seconds": theirs,
        "ours_median": o,
        "bandersnatch_median": t,
        "speedup": t / o,
    }
    md = "\n".join(
        [
            "# Project-level filtering: pypi-assets vs bandersnatch 8.2 plugin objects",
            "",
            f"{len(names):,} real PyPI names (`env/packages/pypi.tsv`), one unmodified config with "
            f"{len(PLUGINS)} plugins enabled ({', '.join(PLUGINS)}): a 1,000-name blocklist and 8 "
            "project regexes act on names. Each side in its own process, filtering timed alone, "
            f"median of {reps} alternating runs. Kept names identical on both sides "
            f"({ours[0]['kept']:,} kept; digests equal).",
            "",
            table(
                ["", "seconds (median)", "names/s"],
                [
                    ["bandersnatch 8.2 plugins", f"{t:.3f}", f"{len(names) / t:,.0f}"],
                    ["pypi-assets `ProjectFilter.select`", f"{o:.3f}", f"{len(names) / o:,.0f}"],
                ],
            ),
            "",
            f"**pypi-assets is {t / o:.1f}x faster** (ratio of medians). Config parsing and "
            f"plugin setup are not in either figure (ours: {ours[0]['setup_seconds'] * 1000:.0f} ms).",
        ]
    )
    write_result("filters", md, data)
    return md


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
