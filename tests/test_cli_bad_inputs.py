"""The CLI's bad-input battery: every config mistake and every local or upstream failure an
operator can cause gets one line naming the problem and the documented exit code (2 usage or
configuration, 3 unreachable or faulty upstream, 4 local storage, 130 interrupt), or one JSON
object on stdout with ``--json``, and never a traceback. Each case runs the real command line
in its own process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_assets.fake import FakeIndex, FakeUpstream
from pypi_assets.store import MetadataStore

from .helpers import PYTHON, run_cli

CONF = """\
[mirror]
directory = /tmp/unused
release-files = false
master = http://127.0.0.1
allow-non-https = true
workers = 3
"""
#: nothing listens here: any request would fail (and a case that must not reach the
#: upstream would show it as exit 3, not the code it expects)
DEAD = "http://127.0.0.1:9"


def _one_line(p: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The process failed with ``code`` and said so in one line naming the problem."""
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert p.returncode == code, (p.returncode, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _one_json(p: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert p.returncode == code, (p.returncode, p.stderr)
    obj = json.loads(p.stdout)  # exactly one JSON document on stdout
    assert obj["exit_code"] == code
    assert "\n" not in obj["error"]
    for w in words:
        assert w in obj["error"], (w, obj["error"])
    return str(obj["error"])


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "b.conf"
    path.write_text(CONF)
    return path


# ----------------------------------------------------------------- defect 12: configs
BAD_CONFIGS = {
    # a misspelt plugin would turn the allowlist off: the whole index
    "misspelt-plugin": (
        CONF + "[plugins]\nenabled =\n    allowlist_projetc\n[allowlist]\npackages =\n    foo\n",
        ["[plugins] enabled", "allowlist_projetc", "did you mean allowlist_project", "known"],
    ),
    "unknown-plugin": (
        CONF + "[plugins]\nenabled =\n    frobnicator\n",
        ["[plugins] enabled", "frobnicator", "known plugins are", "exclude_platform"],
    ),
    # a misspelt [mirror] would fall back to every default: pypi.org into /srv/pypi
    "misspelt-mirror-section": (
        CONF.replace("[mirror]", "[mirorr]"),
        ["[mirorr]", "did you mean [mirror]"],
    ),
    "no-mirror-section": (
        "[plugins]\nenabled =\n    allowlist_project\n",
        ["no [mirror] section"],
    ),
    "misspelt-mirror-key": (
        CONF.replace("release-files", "relase-files"),
        ["[mirror] relase-files", "did you mean release-files"],
    ),
    "misspelt-key-case": (
        CONF.replace("workers", "Workers"),
        ["[mirror] Workers", "did you mean workers"],
    ),
    "misspelt-pypi-assets-key": (
        CONF + "[pypi_assets]\nmax_version_per_project = 10\n",
        ["[pypi_assets] max_version_per_project", "did you mean max_versions_per_project"],
    ),
    "misspelt-filter-section": (
        CONF + "[blocklistt]\npackages =\n    foo\n",
        ["[blocklistt]", "did you mean [blocklist]"],
    ),
    "misspelt-filter-key": (
        CONF + "[allowlist]\npackage =\n    foo\n",
        ["[allowlist] package", "did you mean packages"],
    ),
    "bad-value": (CONF.replace("workers = 3", "workers = 11"), ["[mirror] workers"]),
    "not-ini": ("just some text\n", ["not an INI config"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_mistakes_exit_2_with_one_line(
    case: str, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    text, words = BAD_CONFIGS[case]
    path = tmp_path / "b.conf"
    path.write_text(text)
    db = tmp_path / "x.duckdb"
    args = ["sync", "--upstream", DEAD, "--config", str(path), "--db", str(db)]
    _one_line(run_cli(args, cli_env), 2, str(path), *words)
    assert not db.exists()  # nothing was synced, not even an empty database
    _one_json(run_cli([*args, "--json"], cli_env), 2, str(path), *words)


def test_config_errors_never_echo_file_content(tmp_path: Path, cli_env: dict[str, str]) -> None:
    secret = "root:x:0:0:s3cr3t-line:/root:/bin/bash"
    cases = {
        "passwd": f"{secret}\n",  # configparser quotes this line in its own message
        "bad-line": f"[mirror]\ndirectory = /x\n{secret}\n",
        "interpolation": f"[mirror]\ndirectory = /x\nproxy = %{secret}\n",
        "value": f"[mirror]\ndirectory = /x\nworkers = {secret}\n",
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.conf"
        path.write_text(text)
        p = run_cli(["sync", "--upstream", DEAD, "--config", str(path)], cli_env)
        line = _one_line(p, 2, str(path))
        assert "s3cr3t" not in line, (name, line)
    if Path("/etc/passwd").is_file():
        p = run_cli(["sync", "--config", "/etc/passwd"], cli_env)
        line = _one_line(p, 2, "/etc/passwd", "not an INI config")
        assert "root" not in line.replace("/root", "")


def test_unknown_names_that_are_no_near_miss_only_warn(
    fake: FakeUpstream, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """bandersnatch ignores what it does not know; so do we, with a warning."""
    path = tmp_path / "b.conf"
    path.write_text(CONF + "frobnicate = 1\n[my_own_tool]\nanything = goes\n")
    p = run_cli(
        ["sync", "-q", "--upstream", fake.url, "--config", str(path), "--db", str(tmp_path / "x")],
        cli_env,
    )
    assert p.returncode == 0, p.stderr
    assert "unknown key [mirror] frobnicate ignored" in p.stderr
    assert "unknown section [my_own_tool] ignored" in p.stderr


# ----------------------------------------------------------------- defect 13: flags
@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--upstream", "not-a-url"], ["upstream", "not an http(s) URL"]),
        (["--upstream", "ftp://example.org"], ["upstream", "not an http(s) URL"]),
        (["--concurrency", "0"], ["concurrency", "between 1 and 10", "got 0"]),
        (["--concurrency", "50"], ["concurrency", "between 1 and 10", "got 50"]),
        (["--concurrency", "many"], ["--concurrency", "invalid int value"]),
        (["--lock-timeout", "-1"], ["lock timeout"]),
        (["--depth", "deep"], ["--depth", "invalid choice"]),
        (["--no-such-flag"], ["unrecognized arguments", "--no-such-flag"]),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    flags: list[str], words: list[str], conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    db = tmp_path / "x.duckdb"
    args = ["sync", "--config", str(conf), "--db", str(db), *flags]
    if "--upstream" not in flags:
        args += ["--upstream", DEAD]
    _one_line(run_cli(args, cli_env), 2, *words)
    assert not db.exists()
    _one_json(run_cli([*args, "--json"], cli_env), 2, *words)


def test_bad_environment_variable_exits_2(
    conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    env = {**cli_env, "PYPI_ASSETS_CONCURRENCY": "lots"}
    _one_line(
        run_cli(["sync", "--config", str(conf), "--db", str(tmp_path / "x")], env),
        2,
        "PYPI_ASSETS_CONCURRENCY",
    )


# ----------------------------------------------------------------- defect 13: local storage
def _truncated_db(tmp_path: Path, keep: int | None = None) -> Path:
    good = tmp_path / "good.duckdb"
    MetadataStore(good).close()
    data = good.read_bytes()
    bad = tmp_path / "truncated.duckdb"
    bad.write_bytes(data[: len(data) // 2 if keep is None else keep])
    return bad


@pytest.mark.parametrize(
    "kind", ["text-file", "directory", "truncated", "truncated-after-header", "under-a-file"]
)
def test_unusable_database_exits_4(
    kind: str, conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    if kind == "text-file":
        db = tmp_path / "notes.txt"
        db.write_text("not a database\n")
    elif kind == "directory":
        db = tmp_path / "dir.duckdb"
        db.mkdir()
    elif kind == "truncated":
        db = _truncated_db(tmp_path)
    elif kind == "truncated-after-header":
        # its read error was once taken for a lock ("block"): a 900 s wait, then a traceback
        db = _truncated_db(tmp_path, keep=12288)
    else:
        (tmp_path / "afile").write_text("x")
        db = tmp_path / "afile" / "x.duckdb"
    before = db.read_bytes() if db.is_file() else None
    args = ["sync", "--upstream", DEAD, "--config", str(conf), "--db", str(db)]
    _one_line(run_cli(args, cli_env), 4, "local storage", str(db.parent))
    _one_json(run_cli([*args, "--json"], cli_env), 4, "local storage")
    if before is not None:
        assert db.read_bytes() == before  # the file is left as it was


def test_blob_store_that_is_a_file_exits_4(
    conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    blobs = tmp_path / "blobs"
    blobs.write_text("a file, not a directory\n")
    db = tmp_path / "x.duckdb"
    args = ["sync", "--upstream", DEAD, "--config", str(conf), "--db", str(db)]
    _one_line(run_cli([*args, "--blobs", str(blobs)], cli_env), 4, str(blobs), "not a directory")
    _one_json(run_cli([*args, "--blobs", str(blobs), "--json"], cli_env), 4, "not a directory")
    assert not db.exists()


def test_other_commands_share_the_mapping(
    conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    p = run_cli(
        ["verify", "--config", str(conf), "--db", str(text), "--blobs", str(tmp_path / "b")],
        cli_env,
    )
    _one_line(p, 4, "local storage", str(text))
    p = run_cli(["verify", "--config", str(tmp_path / "missing.conf")], cli_env)
    _one_line(p, 2, "missing.conf", "cannot read config")


def test_lock_wait_says_so_then_exits_4(
    conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    db = tmp_path / "x.duckdb"
    holder = MetadataStore(db)  # another writer holds the database
    try:
        args = ["sync", "--upstream", DEAD, "--config", str(conf), "--db", str(db)]
        p = run_cli([*args, "--lock-timeout", "1"], cli_env)
        assert "Traceback" not in p.stderr and p.returncode == 4, p.stderr
        waiting, error = p.stderr.splitlines()
        assert "locked by another process" in waiting and "waiting" in waiting
        assert error.startswith("error: ") and "another process holds its lock" in error
        assert str(db) in error
        env = {**cli_env, "PYPI_ASSETS_LOCK_TIMEOUT": "0.5"}
        _one_json(run_cli([*args, "--json"], env), 4, "another process holds its lock")
    finally:
        holder.close()


def test_sync_waiting_for_the_lock_says_so_and_goes_on_when_it_is_free(
    fake: FakeUpstream, conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    db = tmp_path / "x.duckdb"
    holder = MetadataStore(db)
    args = ["sync", "-q", "--upstream", fake.url, "--config", str(conf), "--db", str(db)]
    proc = subprocess.Popen(
        [PYTHON, "-m", "pypi_assets.cli", *args, "--lock-timeout", "120"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # said as soon as it starts waiting
        assert "locked by another process" in first and "waiting up to 120 s" in first
        assert fake.total_requests() == 0  # it waits before any work
    finally:
        holder.close()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and not err.strip()
    assert f"refreshed        {len(fake.index.projects)}" in out


def test_plugin_names_come_from_one_registry() -> None:
    """The config check names exactly the registry's plugins, the plugins refuse a name that
    is not registered, and docs/filters.md documents each one."""
    from pypi_assets.filters import ConfigError, loads, project_filter, release_file_filter
    from pypi_assets.filters.registry import PLUGINS

    with pytest.raises(ConfigError) as exc:
        loads(CONF + "[plugins]\nenabled =\n    nope\n")
    listed = str(exc.value).split("known plugins are ", 1)[1].split(", ")
    assert listed == ["all", *sorted(PLUGINS)]
    every = loads(CONF + "[plugins]\nenabled =\n" + "".join(f"    {n}\n" for n in PLUGINS))
    project_filter(every)
    release_file_filter(every)  # every plugin asks for a registered name
    with pytest.raises(KeyError):
        every.plugin_enabled("allowlist_projetc")
    docs = (Path(__file__).resolve().parents[1] / "docs" / "filters.md").read_text()
    assert all(f"`{name}`" in docs for name in PLUGINS)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only): a disk that fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_exits_4(small_tmpfs: Path, conf: Path, cli_env: dict[str, str]) -> None:
    with FakeUpstream(FakeIndex.generate(300)) as up:
        args = ["sync", "-q", "--upstream", up.url, "--config", str(conf)]
        p = run_cli([*args, "--db", str(small_tmpfs / "x.duckdb")], cli_env)
        _one_line(p, 4, "no space left on device")
        for f in small_tmpfs.iterdir():
            f.unlink()
        p = run_cli([*args, "--json", "--db", str(small_tmpfs / "y.duckdb")], cli_env)
        _one_json(p, 4, "no space left on device")


# ----------------------------------------------------------------- defect 13: upstream
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_upstream_exits_3(conf: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    args = ["sync", "--upstream", DEAD, "--config", str(conf), "--db", str(tmp_path / "x")]
    _one_line(run_cli([*args, "-q"], cli_env), 3, "upstream unreachable", DEAD)
    _one_json(run_cli([*args, "--json"], cli_env), 3, "upstream unreachable")


def test_backfill_with_the_webserver_down_exits_3(cli_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    p = run_cli(["backfill", "--upto", "100", "--webserver", url], cli_env)
    _one_line(p, 3, "cannot reach", url)


# ----------------------------------------------------------------- defect 13: Ctrl-C
def _signalled_mid_sync(
    up: FakeUpstream, args: list[str], cli_env: dict[str, str], sig: signal.Signals
) -> subprocess.CompletedProcess[str]:
    """Run ``pypi-assets ARGS`` and send it ``sig`` once it has fetched a few projects."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "pypi_assets.cli", *args],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while up.counts["project-json"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the sync finished before it could get {sig.name}"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_exits_130_with_one_line(
    as_json: bool, conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    with FakeUpstream(FakeIndex.generate(200), latency=0.05) as up:
        args = ["sync", "-q", "--upstream", up.url, "--config", str(conf)]
        args += ["--db", str(tmp_path / "x.duckdb"), *(["--json"] if as_json else [])]
        p = _signalled_mid_sync(up, args, cli_env, signal.SIGINT)
    if as_json:
        _one_json(p, 130, "interrupted")
    else:
        _one_line(p, 130, "interrupted")


def test_sync_help_lists_the_exit_codes(cli_env: dict[str, str]) -> None:
    p = run_cli(["sync", "--help"], cli_env)
    assert p.returncode == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130 "):
        assert f"\n  {code}" in p.stdout, code
    assert "--lock-timeout" in p.stdout


# ----------------------------------------------------------------- serve: bad numbers
@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--port", "99999"], ["--port", "between 0 and 65535", "99999"]),
        (["--port", "-1"], ["--port", "between 0 and 65535"]),
        (["--port", "http"], ["--port", "not a port number"]),
        (["--keepalive-timeout", "nan"], ["--keepalive-timeout", "finite", "nan"]),
        (["--keepalive-timeout", "0"], ["--keepalive-timeout", "above 0"]),
        (["--header-timeout", "inf"], ["--header-timeout", "finite"]),
        (["--shutdown-timeout", "-1"], ["--shutdown-timeout", "0 or more"]),
        (["--lazy", "--upstream", "http://u:p@127.0.0.1:1/"], ["upstream", "credentials"]),
        (["--lazy", "--upstream", "http://127.0.0.1:99999/"], ["upstream", "Port out of range"]),
    ],
)
def test_serve_bad_numbers_and_lazy_upstream_exit_2_before_serving(
    flags: list[str], words: list[str], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """``serve`` used to take these and listen anyway: --port 99999 on another port (it
    wrapped), a nan timeout that hung every connection, a negative shutdown timeout, and a
    lazy upstream that only failed at the first fetch."""
    (tmp_path / "web").mkdir()
    args = ["serve", "--blobs", str(tmp_path / "web"), "--db", str(tmp_path / "x.duckdb")]
    p = run_cli([*args, "--port", "0", *flags], cli_env, timeout=60)
    _one_line(p, 2, *words)
    assert "mirror on" not in p.stdout  # it never announced serving


# ------------------------------------------ attack: URLs, numbers, blob specs, SIGTERM
BAD_SYNC_INPUTS = {
    "ipv6-unclosed": (["--upstream", "http://[::1"], {}, "", "upstream", "not a valid URL"),
    "port-out-of-range": (
        ["--upstream", "http://127.0.0.1:99999"],
        {},
        "",
        "upstream",
        "not a valid URL",
    ),
    "newline": (["--upstream", "http://127.0.0.1:1/\n"], {}, "", "upstream", "malformed URL"),
    "credentials": (
        ["--upstream", "http://user:pw@127.0.0.1:1/"],
        {},
        "",
        "upstream",
        "credentials",
    ),
    "query": (["--upstream", "http://h:1?x=1"], {}, "", "upstream", "query or fragment"),
    "fragment": (["--upstream", "http://h:1/#x"], {}, "", "upstream", "query or fragment"),
    "env-port": ([], {"PYPI_ASSETS_UPSTREAM": "http://127.0.0.1:99999"}, "", "upstream", "Port"),
    "env-credentials": (
        [],
        {"PYPI_ASSETS_UPSTREAM": "http://u:p@127.0.0.1:1"},
        "",
        "upstream",
        "credentials",
    ),
    "master-ipv6": ([], {}, "master = http://[::1\n", "[mirror] master", "not a valid URL"),
    "master-query": ([], {}, "master = http://h:1?x=1\n", "[mirror] master", "query"),
    "master-credentials": ([], {}, "master = http://u:p@h:1\n", "[mirror] master", "credentials"),
    "global-timeout-nan": ([], {}, "global-timeout = nan\n", "[mirror] global-timeout", "finite"),
    "global-timeout-inf": ([], {}, "global-timeout = inf\n", "[mirror] global-timeout", "finite"),
    "timeout-nan": ([], {}, "timeout = nan\n", "[mirror] timeout", "finite"),
    "timeout-inf": ([], {}, "timeout = inf\n", "[mirror] timeout", "finite"),
    "timeout-negative": ([], {}, "timeout = -1\n", "[mirror] timeout", "positive"),
    "timeout-zero": ([], {}, "timeout = 0\n", "[mirror] timeout", "positive"),
    "blobs-no-bucket": (["--blobs", "s3://"], {}, "", "blobs", "bucket"),
    "blobs-dotdot": (["--blobs", "s3://bucket/../x"], {}, "", "blobs", "prefix"),
    "env-blobs-no-bucket": ([], {"PYPI_ASSETS_BLOBS": "s3://"}, "", "blobs", "bucket"),
}


@pytest.mark.parametrize("case", sorted(BAD_SYNC_INPUTS))
def test_bad_upstream_urls_numbers_and_blob_specs_exit_2_in_one_line(
    case: str, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """Each of these gave a traceback (exit 1), or built a request URL from a query."""
    args, env, extra, *words = BAD_SYNC_INPUTS[case]
    conf = tmp_path / "a.conf"
    # master is replaced (not repeated) when the case sets it
    base = CONF if "master" not in extra else CONF.replace("master = http://127.0.0.1\n", "")
    conf.write_text(base.replace("[mirror]\n", "[mirror]\n" + extra))
    db = tmp_path / "x.duckdb"
    p = run_cli(["sync", "--config", str(conf), "--db", str(db), *args], {**cli_env, **env})
    _one_line(p, 2, *words)
    assert not db.exists()


@pytest.mark.parametrize("command", ["verify", "serve"])
def test_bad_upstream_url_through_verify_and_serve_lazy_exits_2(
    command: str, conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    extra = ["--lazy"] if command == "serve" else []
    args = [command, *extra, "--upstream", "http://u:p@127.0.0.1:1", "--config", str(conf)]
    p = run_cli([*args, "--db", str(tmp_path / "x.duckdb")], cli_env, timeout=60)
    _one_line(p, 2, "upstream", "credentials")


@pytest.mark.parametrize("as_json", [False, True])
def test_sigterm_exits_143_with_one_line_and_the_next_run_converges(
    as_json: bool, conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    db = tmp_path / "x.duckdb"
    with FakeUpstream(FakeIndex.generate(200), latency=0.05) as up:
        args = ["sync", "-q", "--upstream", up.url, "--config", str(conf), "--db", str(db)]
        p = _signalled_mid_sync(
            up, [*args, *(["--json"] if as_json else [])], cli_env, signal.SIGTERM
        )
        if as_json:
            _one_json(p, 143, "terminated")
        else:
            _one_line(p, 143, "terminated")
        up.set_latency(0.0)
        again = run_cli([*args, "--json"], cli_env)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["failed"] == [] and summary["selected"] == 200


def test_unreachable_upstream_leaves_no_new_database(
    conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """An 800 KB empty database was created before the upstream answered, and stayed."""
    db = tmp_path / "new" / "x.duckdb"
    p = run_cli(["sync", "--upstream", DEAD, "--config", str(conf), "--db", str(db)], cli_env)
    _one_line(p, 3, "upstream unreachable")
    assert not db.exists()
    assert not db.parent.exists()


def test_unreachable_upstream_keeps_an_existing_database(
    conf: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    db = tmp_path / "x.duckdb"
    with FakeUpstream(FakeIndex.generate(5)) as up:
        first = run_cli(
            ["sync", "-q", "--upstream", up.url, "--config", str(conf), "--db", str(db)], cli_env
        )
    assert first.returncode == 0, first.stderr
    p = run_cli(["sync", "--upstream", DEAD, "--config", str(conf), "--db", str(db)], cli_env)
    _one_line(p, 3, "upstream unreachable")
    with MetadataStore(db) as store:
        assert store.counts(views=False)["projects"] == 5
