"""Shared benchmark plumbing: a fake upstream in its own process, timed subprocesses, tables."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYPI_TSV = Path(os.environ.get("PYPI_NAMES_TSV", "/work/.library/env/packages/pypi.tsv"))
#: bandersnatch 8.2 needs Python >= 3.12; it gets a virtualenv of its own.
BS_PYTHON = os.environ.get(
    "BANDERSNATCH_PYTHON", str(Path.home() / ".pyenv/versions/3.12.1/bin/python3")
)
BS_VENV = Path(os.environ.get("BANDERSNATCH_VENV", str(ROOT / ".bench-venvs" / "bandersnatch")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeProcess:
    """``pypi-assets fake-upstream`` (with ``large_files``: ``bench.fake_upstream``) in a
    separate process, so it never competes for our GIL."""

    def __init__(
        self,
        projects: int = 0,
        latency_ms: float = 0.0,
        names_file: Path | None = None,
        large_files: int = 0,
        large_size: int = 8 << 20,
    ) -> None:
        self.port = free_port()
        self.latency_ms = latency_ms
        # large sdists are a benchmark fixture: bench.fake_upstream, not the command
        command = ["bench.fake_upstream"] if large_files else ["pypi_assets.cli", "fake-upstream"]
        args = [
            sys.executable,
            "-m",
            *command,
            "--port",
            str(self.port),
            "--latency-ms",
            str(latency_ms),
            "--projects",
            str(projects),
        ]
        if names_file is not None:
            if large_files:
                raise ValueError("names_file and large_files do not combine")
            args += ["--names-file", str(names_file)]
        if large_files:
            args += ["--large-files", str(large_files), "--large-size", str(large_size)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        self.banner = self.proc.stdout.readline().strip()
        if "fake upstream" not in self.banner:
            raise RuntimeError(f"fake upstream did not start: {self.banner!r}")

    def cpu_seconds(self) -> float:
        """CPU seconds the fake has used so far."""
        return cpu_seconds(self.proc.pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/_fake/stats") as r:  # loopback only
            return dict(json.loads(r.read()))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def __enter__(self) -> FakeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Timed:
    seconds: float
    max_rss_mb: float
    returncode: int
    stderr: str
    #: CPU seconds (user + system) of the command and the children it waited for
    cpu_seconds: float = 0.0


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hwm_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of a running process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def run_timed(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Timed:
    """Wall time and peak RSS of one command. The peak is the kernel's high-water mark of the
    child (VmHWM, reset at exec, sampled until exit), so the parent's size never leaks in."""
    import threading

    t = time.perf_counter()
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], hwm_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    cpu = usage.ru_utime + usage.ru_stime
    return Timed(time.perf_counter() - t, peak[0], proc.returncode, err[-4000:], cpu)


def ensure_bandersnatch() -> Path | None:
    exe = BS_VENV / "bin" / "bandersnatch"
    if exe.exists():
        return exe
    if not Path(BS_PYTHON).exists():
        return None
    subprocess.run([BS_PYTHON, "-m", "venv", str(BS_VENV)], check=True)
    subprocess.run(
        [str(BS_VENV / "bin" / "pip"), "install", "-q", "bandersnatch==8.2.0"], check=True
    )
    return exe


def table(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def write_result(name: str, markdown: str, data: object) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    md = RESULTS / f"{name}.md"
    md.write_text(markdown + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    return md


def mirror_conf(
    directory: Path | str,
    url: str,
    workers: int = 3,
    *,
    bandersnatch: bool = False,
    release_files: bool = False,
    core_metadata: bool = False,
    tail: str = "",
) -> str:
    """One unmodified-bandersnatch-style config for either tool. ``bandersnatch`` adds the
    options only bandersnatch reads (json, timeouts, index format); ``tail`` appends sections
    such as ``[plugins]``."""
    lines = [
        "[mirror]",
        f"directory = {directory}",
        f"master = {url}",
        "allow-non-https = true",
        f"release-files = {str(release_files).lower()}",
        f"workers = {workers}",
        "timeout = 60",
    ]
    if bandersnatch:
        lines += [
            "json = true",
            f"core-metadata = {str(core_metadata).lower()}",
            "global-timeout = 36000",
            "stop-on-error = false",
            "hash-index = false",
            "simple-format = ALL",
        ]
    return "\n".join(lines) + "\n" + tail


def sync_args(conf: Path, db: Path, *extra: str) -> list[str]:
    """``pypi-assets sync`` in this interpreter, quiet, with ``extra`` flags."""
    return [
        sys.executable,
        "-m",
        "pypi_assets.cli",
        "sync",
        "--config",
        str(conf),
        "--db",
        str(db),
        "-q",
        *extra,
    ]
