"""Issue 5 benchmarks: file download throughput against bandersnatch 8.2 (release-files =
true) on the same fake upstream and the same files; peak memory while mirroring a 200 MB
file; and ``verify`` over 100,000 blobs (with 10,000 alongside, to show the time is
proportional to the number of files).

Each tool runs in its own process against one fake upstream process; the fake serves every
project's files, with some sdists made large so that bytes, not only requests, count.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import (
    ROOT,
    FakeProcess,
    ensure_bandersnatch,
    mirror_conf,
    run_timed,
    sync_args,
    table,
    write_result,
)


def _tree_bytes(root: Path) -> tuple[int, int]:
    n = size = 0
    for dirpath, _d, files in os.walk(root):
        for f in files:
            n += 1
            size += os.path.getsize(os.path.join(dirpath, f))
    return n, size


def _baseline(rev: str, tmp: Path) -> list[str]:
    """``pypi-assets`` as of git revision ``rev``, run as a fresh install of it would run:
    its own source, and without the modules its dependency list lacks (pandas)."""
    tree = tmp / f"baseline-{rev}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-f", str(tree), rev],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    hidden = [] if "pandas" in (tree / "pyproject.toml").read_text() else ["pandas"]
    code = (
        f"import sys, runpy; sys.path.insert(0, {str(tree)!r}); "
        f"sys.modules.update(dict.fromkeys({hidden!r})); "
        "sys.argv[0] = 'pypi-assets'; runpy.run_module('pypi_assets.cli', run_name='__main__')"
    )
    return [sys.executable, "-c", code]


def throughput(
    projects: int, large: int, large_size: int, workers: int, baseline: str | None = None
) -> dict[str, Any]:
    exe = ensure_bandersnatch()
    if exe is None:
        raise SystemExit("bandersnatch 8.2 needs a Python >= 3.12 (set BANDERSNATCH_PYTHON)")
    with (
        FakeProcess(projects=projects, large_files=large, large_size=large_size) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        t = Path(tmp)
        (t / "ours.conf").write_text(mirror_conf(t / "unused", fake.url, workers))
        (t / "bs.conf").write_text(
            mirror_conf(
                t / "bs",
                fake.url,
                workers,
                bandersnatch=True,
                release_files=True,
                core_metadata=True,
            )
        )
        env = {**os.environ, "PYPI_ASSETS_BACKOFF": "0.05"}
        args = sync_args(
            t / "ours.conf", t / "ours.duckdb", "--blobs", str(t / "ours"), "--depth", "project"
        )
        before_seconds = None
        if baseline is not None:
            prefix = _baseline(baseline, t)
            old = run_timed(
                [*prefix, *args[3:], "--db", str(t / "old.duckdb"), "--blobs", str(t / "old")],
                env=env,
            )
            if old.returncode != 0:
                raise SystemExit(f"the baseline failed:\n{old.stderr}")
            before_seconds = old.seconds
            subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)
        before = fake.stats()
        ours = run_timed(args, env=env)
        mid = fake.stats()
        theirs = run_timed([str(exe), "-c", str(t / "bs.conf"), "mirror"])
        after = fake.stats()
        if ours.returncode != 0 or theirs.returncode != 0:
            raise SystemExit(f"a mirror failed:\n{ours.stderr}\n{theirs.stderr}")
        o_files = [p for p in (t / "ours" / "packages").rglob("*") if p.is_file()]
        b_files = [p for p in (t / "bs" / "web" / "packages").rglob("*") if p.is_file()]
        o_n, o_bytes = len(o_files), sum(p.stat().st_size for p in o_files)
        b_n, b_bytes = len(b_files), sum(p.stat().st_size for p in b_files)
        same = {p.relative_to(t / "ours").as_posix() for p in o_files} == {
            p.relative_to(t / "bs" / "web").as_posix() for p in b_files
        }
    return {
        "projects": projects,
        "workers": workers,
        "ours": {
            "seconds": ours.seconds,
            "files": o_n,
            "bytes": o_bytes,
            "rss_mb": ours.max_rss_mb,
            "requests": {k: mid.get(k, 0) - before.get(k, 0) for k in mid},
        },
        "bandersnatch": {
            "seconds": theirs.seconds,
            "files": b_n,
            "bytes": b_bytes,
            "rss_mb": theirs.max_rss_mb,
            "requests": {k: after.get(k, 0) - mid.get(k, 0) for k in after},
        },
        "same_paths": same,
        "speedup": theirs.seconds / ours.seconds,
        "baseline": baseline,
        "baseline_seconds": before_seconds,
    }


def big_file_memory(size: int) -> dict[str, Any]:
    """Peak RSS of a sync whose one large file is ``size`` bytes."""
    with (
        FakeProcess(projects=1, large_files=1, large_size=size) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        t = Path(tmp)
        (t / "c.conf").write_text(mirror_conf(t / "unused", fake.url))
        run = run_timed(
            sync_args(t / "c.conf", t / "m.duckdb", "--blobs", str(t / "web")),
            env={**os.environ, "PYPI_ASSETS_BACKOFF": "0.05"},
        )
        if run.returncode != 0:
            raise SystemExit(run.stderr)
        _n, stored = _tree_bytes(t / "web" / "packages")
    return {
        "file_mb": size / 2**20,
        "seconds": run.seconds,
        "rss_mb": run.max_rss_mb,
        "stored_bytes": stored,
    }


def verify_time(n: int, tmp: Path) -> dict[str, Any]:
    """``verify_blobs`` over ``n`` 1 KiB blobs in a local store (sizes only, then sha256)."""
    from pypi_assets.store.blobs import LocalBlobStore, blob_key
    from pypi_assets.sync.files import verify_blobs

    root = tmp / f"store-{n}"
    rng = random.Random(n)
    referenced: dict[str, tuple[str, str, str, int | None, str]] = {}
    for i in range(n):
        data = rng.randbytes(1024)
        sha = hashlib.sha256(data).hexdigest()
        key = blob_key(f"p{i}-1.0.tar.gz", None, sha)
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        referenced[key] = (f"p{i}", f"p{i}-1.0.tar.gz", sha, 1024, "")
    store = LocalBlobStore(root)
    out: dict[str, Any] = {"blobs": n}
    for mode, hashes in (("sizes", False), ("sha256", True)):
        os.sync()  # flush writes so both modes start alike
        t = time.perf_counter()
        report = verify_blobs(store, referenced, check_hashes=hashes)
        out[f"{mode}_seconds"] = time.perf_counter() - t
        assert report.ok and report.stored == n and not report.unreferenced
    shutil.rmtree(root)
    return out


def main(quick: bool = False) -> str:
    projects, large, large_size = (60, 4, 2 << 20) if quick else (400, 24, 8 << 20)
    # BENCH_FILES_BASELINE=<git rev>: that revision runs too, in the same run, as installed
    baseline = os.environ.get("BENCH_FILES_BASELINE") or None
    runs = [
        throughput(projects, large, large_size, w, baseline) for w in ((3,) if quick else (3, 10))
    ]
    mem_small = big_file_memory(2 << 20)
    mem_big = big_file_memory((20 if quick else 200) << 20)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = (2_000, 20_000) if quick else (10_000, 100_000)
        verify = [verify_time(n, Path(tmp)) for n in sizes]
    data = {"throughput": runs, "memory": [mem_small, mem_big], "verify": verify}
    rows = []
    for r in runs:
        o, b = r["ours"], r["bandersnatch"]
        rows.append(
            [
                r["workers"],
                f"{o['files']:,}",
                f"{o['bytes'] / 2**20:.0f} MB",
                f"{b['seconds']:.2f}",
                f"{o['seconds']:.2f}",
                f"{o['bytes'] / 2**20 / o['seconds']:.1f}",
                f"**{r['speedup']:.2f}x**",
                "yes" if r["same_paths"] else "NO",
            ]
            + (
                [f"{r['baseline_seconds']:.2f}", f"{r['baseline_seconds'] / o['seconds']:.2f}x"]
                if baseline
                else []
            )
        )
    md = "\n".join(
        [
            "# Files: download throughput, memory on a large file, verify",
            "",
            f"## Throughput against bandersnatch 8.2 (release-files = true), {projects} projects",
            "",
            "Same fake upstream process, same files (every file of every project; "
            f"{large} sdists of {large_size >> 20} MB each), same concurrency. bandersnatch with "
            "`json = true, core-metadata = true`; pypi-assets `sync --depth project --blobs DIR` "
            "(which also fetches the PEP 658 `.metadata` files and writes the simple index). "
            "Wall time of the whole mirror run, each in its own process, one run each.",
            "",
            table(
                [
                    "workers",
                    "files",
                    "bytes",
                    "bandersnatch s",
                    "pypi-assets s",
                    "pypi-assets MB/s",
                    "ratio (bandersnatch / ours)",
                    "same paths",
                ]
                + ([f"pypi-assets {baseline} s", f"{baseline} / now"] if baseline else []),
                rows,
            ),
            "",
            "## Peak memory while mirroring one large file",
            "",
            table(
                ["file", "peak RSS", "seconds"],
                [
                    [f"{m['file_mb']:.0f} MB", f"{m['rss_mb']:.0f} MB", f"{m['seconds']:.1f}"]
                    for m in (mem_small, mem_big)
                ],
            ),
            "",
            f"Peak RSS grows by {mem_big['rss_mb'] - mem_small['rss_mb']:.0f} MB for a file "
            f"{mem_big['file_mb'] / mem_small['file_mb']:.0f}x larger: the file is streamed in 64 KiB "
            "chunks to disk while it is hashed.",
            "",
            "## verify",
            "",
            table(
                ["blobs", "sizes only (s)", "sha256 of every blob (s)"],
                [
                    [f"{v['blobs']:,}", f"{v['sizes_seconds']:.2f}", f"{v['sha256_seconds']:.2f}"]
                    for v in verify
                ],
            ),
            "",
            f"10x the blobs costs {verify[1]['sizes_seconds'] / verify[0]['sizes_seconds']:.1f}x "
            f"(sizes) and {verify[1]['sha256_seconds'] / verify[0]['sha256_seconds']:.1f}x (sha256): "
            "proportional to the number of files.",
        ]
    )
    write_result("files", md, data)
    return md


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
