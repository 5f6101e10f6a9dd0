"""The CLI contract: flags, environment variables, exit codes, SIGKILL recovery."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from pypi_assets.fake import FakeIndex, FakeUpstream, Fault

from .helpers import PYTHON, dump, json_api_path, run_cli

CONF = """\
[mirror]
directory = /tmp/unused
release-files = false
master = http://127.0.0.1
allow-non-https = true
workers = 3
"""


def test_sync_exit_0_and_summary(
    fake: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    db = tmp_path / "x.duckdb"
    p = run_cli(["sync", "--upstream", fake.url, "--config", str(conf), "--db", str(db)], cli_env)
    assert p.returncode == 0, p.stderr
    assert f"refreshed        {len(fake.index.projects)}" in p.stdout
    assert "[fetch]" in p.stderr  # progress is shown
    assert db.exists()


def test_environment_variables_are_the_defaults(
    fake: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    env = {
        **cli_env,
        "PYPI_ASSETS_UPSTREAM": fake.url,
        "PYPI_ASSETS_CONFIG": str(conf),
        "PYPI_ASSETS_DB": str(tmp_path / "env.duckdb"),
    }
    p = run_cli(["sync", "--json", "-q"], env)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "env.duckdb").exists()
    assert f'"upstream": "{fake.url}"' in p.stdout


def test_failed_project_exits_1_and_is_named(
    fake: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    bad = sorted(fake.index.projects)[3]
    fake.add_fault(Fault(path=json_api_path(bad), kind="status", status=500, times=1000))
    p = run_cli(
        ["sync", "--upstream", fake.url, "--config", str(conf), "--db", str(tmp_path / "x.duckdb")],
        cli_env,
    )
    assert p.returncode == 1
    assert f"FAILED {bad}:" in p.stderr
    assert f"error: 1 failed: {bad}" in p.stderr
    assert f"refreshed        {len(fake.index.projects) - 1}" in p.stdout


def test_bad_config_exits_2_names_file_section_key_and_syncs_nothing(
    fake: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(CONF.replace("workers = 3", "workers = 11"))
    db = tmp_path / "x.duckdb"
    p = run_cli(["sync", "--upstream", fake.url, "--config", str(conf), "--db", str(db)], cli_env)
    assert p.returncode == 2
    assert f"{conf}: [mirror] workers:" in p.stderr
    assert not db.exists()
    assert fake.total_requests() == 0


def test_unreachable_upstream_exits_3(tmp_path: Path, cli_env: dict[str, str]) -> None:
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    p = run_cli(
        [
            "sync",
            "--upstream",
            "http://127.0.0.1:9",
            "--config",
            str(conf),
            "--db",
            str(tmp_path / "x.duckdb"),
        ],
        cli_env,
    )
    assert p.returncode == 3
    assert "upstream unreachable" in p.stderr


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    index = FakeIndex.generate(60)
    with FakeUpstream(index, latency=0.02) as up:
        ref = tmp_path / "ref.duckdb"
        assert (
            run_cli(
                ["sync", "--upstream", up.url, "--config", str(conf), "--db", str(ref), "-q"],
                cli_env,
            ).returncode
            == 0
        )
        killed = tmp_path / "killed.duckdb"
        up.reset_counts()
        proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "pypi_assets.cli",
                "sync",
                "--upstream",
                up.url,
                "--config",
                str(conf),
                "--db",
                str(killed),
                "-q",
            ],
            env=cli_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while up.counts["project-json"] < 25 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the sync finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        partial = duckdb.connect(str(killed), read_only=True)
        n_partial = partial.execute("SELECT count(*) FROM projects").fetchone()[0]  # type: ignore[index]
        partial.close()
        assert n_partial < len(index.projects)
        again = run_cli(
            ["sync", "--upstream", up.url, "--config", str(conf), "--db", str(killed), "-q"],
            cli_env,
        )
        assert again.returncode == 0, again.stderr
    assert dump(killed) == dump(ref)


def test_fake_upstream_command_serves(tmp_path: Path, cli_env: dict[str, str]) -> None:
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [PYTHON, "-m", "pypi_assets.cli", "fake-upstream", "--port", str(port), "--projects", "5"],
        env=cli_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        r = httpx.get(
            f"http://127.0.0.1:{port}/simple/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        )
        assert len(r.json()["projects"]) == 5
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert sys.executable


def test_failure_mapping_names_expected_failures_and_leaves_bugs_alone() -> None:
    """One mapping (cli.FAILURES) gives each expected failure its exit code; a bug is not
    dressed up as one, so it keeps its traceback."""
    import errno

    from pypi_assets.cli import classify
    from pypi_assets.pypi import UpstreamError

    full = duckdb.TransactionException(
        'Failed to commit: Could not write file "x.wal": No space left on device'
    )
    assert classify(ExceptionGroup("tasks", [full])) == (
        4,
        'local storage: no space left on device (Failed to commit: Could not write file "x.wal": '
        "No space left on device)",
    )
    assert classify(OSError(errno.ENOSPC, "No space left on device", "/m/b"))[0] == 4  # type: ignore[index]
    assert classify(KeyboardInterrupt()) == (130, "interrupted")
    wrapped = RuntimeError("while listing")
    wrapped.__cause__ = UpstreamError("http://127.0.0.1:9/simple/: refused")
    assert classify(wrapped) == (3, "upstream unreachable: http://127.0.0.1:9/simple/: refused")
    assert classify(TypeError("a bug")) is None
    assert classify(duckdb.ConversionException("a bug too")) is None
    try:
        try:
            raise OSError(errno.EIO, "I/O error")
        except OSError:
            raise TypeError("a bug in an except block") from None
    except TypeError as bug:
        assert classify(bug) is None


def _commands() -> dict[str, argparse.ArgumentParser]:
    from pypi_assets.cli import build_parser

    top = build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return {"pypi-assets": top, **sub.choices}


def test_help_lists_every_exit_code_from_the_failure_mapping() -> None:
    """``sync --help`` lists its exit codes from cli.FAILURES (one source): every code a
    failure can give, with 0 and 1, each once and with its meaning."""
    from pypi_assets.cli import EXIT_MEANINGS, FAILURES

    text = _commands()["sync"].format_help()
    listed = [int(m) for m in re.findall(r"^  (\d+) ", text.split("exit codes:")[1], re.M)]
    assert listed == sorted({0, 1, *(row[2] for row in FAILURES)})
    assert 143 in listed and 130 in listed
    for code in listed:
        assert " ".join(EXIT_MEANINGS[code].split()[:3]) in text


def test_every_option_has_help() -> None:
    for name, parser in _commands().items():
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, (name, action.option_strings)
