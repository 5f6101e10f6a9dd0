"""The layer rules of the design (pypi → filters, store → application → adapters; nothing
imports defs/; Dagster only in defs/), read from the source with ``ast``; the runtime promise
that a library caller of ``pypi`` and ``filters`` loads neither Dagster nor DuckDB; the rule
that SQL lives only in store/; and the rule that test modules share helpers through
tests/helpers.py only.

Every import counts: top level, inside functions, and under ``if TYPE_CHECKING:``. Each
checker is shown to report a deliberately wrong import (the self-tests below).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import PYTHON

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pypi_assets"

# ------------------------------------------------------------------------------------ layers
PYPI = ("pypi_assets.pypi",)
FILTERS = ("pypi_assets.filters",)
STORE = ("pypi_assets.store",)
#: The use cases that combine the library layers (DESIGN.md's ``sync/``).
APPLICATION = ("pypi_assets.sync",)
DEFS = ("pypi_assets.defs",)
#: The modules Dagster loads the code location from (workspace.yaml, ``[tool.dg]``).
ENTRY_POINTS = ("pypi_assets.definitions",)
#: Thin adapters over the application layer, and test/ops support shipped in the package.
ADAPTERS = ("pypi_assets.cli", "pypi_assets.serve", "pypi_assets.dagster_api", *DEFS, *ENTRY_POINTS)
SUPPORT = ("pypi_assets.fake",)
#: The package root and its version: leaves every layer may use.
NEUTRAL = ("pypi_assets._version",)

DAGSTER = ("dagster", "dagster_*")
ENGINES = ("duckdb", "obstore", "uvicorn")


@dataclass(frozen=True)
class Rule:
    """Modules under ``sources`` (minus ``exempt``) may import, from the package, only what is
    under ``allowed`` (when given), and nothing under ``forbidden``."""

    name: str
    sources: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    allowed: tuple[str, ...] | None = None
    exempt: tuple[str, ...] = ()


RULES = (
    Rule("pypi/ is the bottom layer: it imports only itself", PYPI, allowed=PYPI + NEUTRAL),
    Rule("filters/ imports only pypi/", FILTERS, allowed=FILTERS + PYPI + NEUTRAL),
    Rule("store/ imports only pypi/", STORE, allowed=STORE + PYPI + NEUTRAL),
    Rule(
        "the application layer never imports the adapters or the fake",
        APPLICATION,
        forbidden=ADAPTERS + SUPPORT,
    ),
    Rule(
        "nothing imports defs/ but the Dagster entry points",
        (PACKAGE,),
        forbidden=DEFS,
        exempt=DEFS + ENTRY_POINTS,
    ),
    Rule(
        "only defs/ and the entry points import Dagster",
        (PACKAGE,),
        forbidden=DAGSTER,
        exempt=DEFS + ENTRY_POINTS,
    ),
    Rule(
        "pypi/ and filters/ need no database, blob store or server",
        PYPI + FILTERS,
        forbidden=ENGINES,
    ),
)


def under(name: str, prefixes: Iterable[str]) -> bool:
    """``name`` is one of ``prefixes`` or inside one (``x_*`` matches any name starting ``x_``)."""
    for p in prefixes:
        if p.endswith("*"):
            if name.startswith(p[:-1]):
                return True
        elif name == p or name.startswith(p + "."):
            return True
    return False


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Absolute names of every module ``source`` (the text of ``module``) imports, anywhere in
    it. ``from a import b`` counts as ``a.b`` when that is a module in ``known``, else as ``a``."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return found


def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name → (file, is a package)."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {
        name: imports_of(path.read_text(encoding="utf-8"), name, is_package, known)
        for name, (path, is_package) in mods.items()
    }


def violations(graph: dict[str, set[str]]) -> list[str]:
    """One line per import that breaks a rule."""
    out = []
    for module, imported in sorted(graph.items()):
        for rule in RULES:
            if not under(module, rule.sources) or under(module, rule.exempt):
                continue
            for name in sorted(imported):
                if under(name, rule.forbidden) or (
                    rule.allowed is not None
                    and under(name, (PACKAGE,))
                    and not under(name, rule.allowed)
                ):
                    out.append(f"{module} imports {name}: breaks '{rule.name}'")
    return out


# ------------------------------------------------------------------------------------ the package


def test_the_package_keeps_its_layer_rules() -> None:
    found = violations(import_graph())
    assert not found, "\n".join(found)


def test_the_import_graph_is_read_from_the_real_package() -> None:
    """The checker sees real arrows (so an empty graph cannot pass the rules vacuously)."""
    graph = import_graph()
    assert "pypi_assets.pypi.records" in graph["pypi_assets.filters.plugins"]
    assert "pypi_assets.pypi.records" in graph["pypi_assets.store.duckdb_store"]
    assert "duckdb" in graph["pypi_assets.store.snapshot"]
    assert any(under(name, DAGSTER) for name in graph["pypi_assets.defs.resources"])


def test_every_module_belongs_to_a_layer() -> None:
    """A new module must be placed in a layer here (and so under the rules) before it lands."""
    layers = PYPI + FILTERS + STORE + APPLICATION + ADAPTERS + SUPPORT + NEUTRAL
    unplaced = [m for m in modules() if m != PACKAGE and not under(m, layers)]
    assert unplaced == []


# ------------------------------------------------------------------------------------ self-test


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("pypi_assets.pypi.fetch", "from ..store import duckdb_store", "pypi/ is the bottom"),
        ("pypi_assets.pypi.client", "from pypi_assets.filters import loads", "pypi/ is the bottom"),
        ("pypi_assets.pypi", "from .. import settings", "pypi/ is the bottom"),
        ("pypi_assets.pypi.client", "import duckdb", "no database"),
        ("pypi_assets.filters.plugins", "from ..store.duckdb_store import X", "filters/ imports"),
        ("pypi_assets.filters.config", "def f():\n    import dagster\n", "import Dagster"),
        ("pypi_assets.store.snapshot", "from ..sync.run import run_sync", "store/ imports"),
        (
            "pypi_assets.store.blobs",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pypi_assets.cli import main\n",
            "store/ imports",
        ),
        ("pypi_assets.store", "from ..defs import defs", "store/ imports"),
        ("pypi_assets.sync.run", "from .. import cli", "application layer"),
        ("pypi_assets.sync.files", "from ..fake import FakeUpstream", "application layer"),
        (
            "pypi_assets.sync.run",
            "from ..defs.resources import StoreResource",
            "imports defs/",
        ),
        ("pypi_assets.cli", "from pypi_assets import defs", "imports defs/"),
        ("pypi_assets.serve", "import dagster_webserver", "import Dagster"),
        ("pypi_assets.sync.settings", "from dagster import EnvVar", "import Dagster"),
    ],
)
def test_the_checker_reports_a_wrong_import(module: str, source: str, rule: str) -> None:
    known = set(modules())
    is_package = module in {"pypi_assets.pypi", "pypi_assets.store"}
    found = violations({module: imports_of(source, module, is_package, known)})
    assert found, f"{source!r} in {module} was not reported"
    assert any(rule in line for line in found), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("pypi_assets.filters.plugins", "from ..pypi.records import File\nimport packaging"),
        ("pypi_assets.pypi.client", "from .._version import __version__\nimport httpx"),
        ("pypi_assets.store.blobs", "from ..pypi.names import x\nimport duckdb"),
        (
            "pypi_assets.sync.run",
            "from ..store import DuckDBStore\nfrom ..filters import loads",
        ),
        ("pypi_assets.defs.mirror.assets", "import dagster as dg\nfrom ..resources import R"),
        ("pypi_assets.definitions", "import dagster as dg\nfrom . import defs"),
        ("pypi_assets.cli", "from .serve import serve\nfrom .fake import FakeUpstream"),
    ],
)
def test_the_checker_accepts_an_allowed_import(module: str, source: str) -> None:
    found = violations({module: imports_of(source, module, False, set(modules()))})
    assert found == []


# ------------------------------------------------------------------------------------ SQL

#: the calls that run SQL: a DuckDB connection's, cursor's or module's ``execute``,
#: ``executemany`` and ``sql``, and :meth:`MetadataStore.query`
SQL_CALLS = ("execute", "executemany", "sql", "query")
#: statements in string literals (f-strings' literal parts too); SQL keywords in capitals,
#: as the store writes them, so prose ("select the files from ...") does not count
SQL_TEXT = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+(?:OR\s+\w+\s+)?INTO\b|\bDELETE\s+FROM\b"
    r"|\bUPDATE\s+\S+\s+SET\b|\b(?:CREATE|DROP|ALTER)\s+(?:OR\s+REPLACE\s+)?(?:TABLE|VIEW|INDEX)\b"
)


def sql_in(source: str) -> list[str]:
    """One line per SQL call or SQL statement in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
        ):
            out.append(f"line {node.lineno}: .{node.func.attr}(...)")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL_TEXT.search(node.value)
        ):
            out.append(f"line {node.lineno}: SQL {node.value[:60]!r}")
    return out


def test_sql_lives_only_in_store() -> None:
    """Queries are named methods of the store (DESIGN: SQL only in store/), so a schema
    change is one layer's business."""
    found = [
        f"{module} {line}"
        for module, (path, _pkg) in modules().items()
        if not under(module, STORE)
        for line in sql_in(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_sql_checker_reads_the_real_store() -> None:
    """The checker finds the store's own SQL (so an empty result cannot pass vacuously)."""
    mods = modules()
    found = sql_in(mods["pypi_assets.store.duckdb_store"][0].read_text(encoding="utf-8"))
    assert any(".query(" in line for line in found)
    assert any("SELECT" in line for line in found)
    assert any("INSERT" in line for line in found)


@pytest.mark.parametrize(
    "source",
    [
        "con.execute('SELECT 1')",
        "def f(store, q):\n    return store.query(q)",
        "cur.executemany(statement, rows)",
        "duckdb.sql(text)",
        "Q = 'SELECT name, serial FROM projects WHERE status = ?'",
        "q = f'SELECT count(*) FROM {table}'",
        "q = ('SELECT project '\n     'FROM simple_pages')",
        "q = 'INSERT OR REPLACE INTO simple_pages VALUES (?, ?, ?)'",
        "q = f'DELETE FROM {table} WHERE project = ?'",
        "q = 'UPDATE projects SET serial = 0'",
        "q = 'CREATE TABLE t (x INT)'",
    ],
)
def test_the_checker_reports_sql_outside_the_store(source: str) -> None:
    assert sql_in(source) != [], source


@pytest.mark.parametrize(
    "source",
    [
        "store.written_pages()",
        "loop.run_in_executor(pool, body.read)",
        '"""Select the files from the listing, then update the pages."""',
        "headers = {'X-PyPI-Last-Serial': '1'}",
    ],
)
def test_the_sql_checker_accepts_plain_code(source: str) -> None:
    assert sql_in(source) == []


# ------------------------------------------------------------------------------------ at runtime

_PROBE = """
import json, sys
import {imports}
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after(*imports: str) -> set[str]:
    """The modules a fresh interpreter has loaded after importing ``imports``."""
    out = subprocess.run(
        [PYTHON, "-c", _PROBE.format(imports=", ".join(imports))],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    ).stdout
    return set(json.loads(out))


def heavy(loaded: set[str]) -> set[str]:
    return {m for m in loaded if under(m, (*DAGSTER, "duckdb"))}


def test_pypi_and_filters_load_neither_dagster_nor_duckdb() -> None:
    loaded = loaded_after("pypi_assets.pypi", "pypi_assets.filters")
    assert heavy(loaded) == set()
    ours = {m for m in loaded if under(m, (PACKAGE,))}
    assert "pypi_assets.pypi.client" in ours
    assert {m for m in ours if m != PACKAGE and not under(m, PYPI + FILTERS + NEUTRAL)} == set()


def test_the_runtime_probe_sees_a_heavy_import() -> None:
    """The same probe reports DuckDB once a layer that needs it is imported."""
    assert "duckdb" in heavy(loaded_after("pypi_assets.store"))


# ------------------------------------------------------------------------------------ tests/


def offences_in(module: str, source: str, known: set[str]) -> list[str]:
    """Imports by the test-side ``module`` of conftest or of a test module."""
    out = []
    for name in sorted(imports_of(source, f"tests.{module}", False, known)):
        leaf = name.removeprefix("tests.") if name.startswith("tests.") else ""
        if leaf.split(".")[0] == "conftest" or leaf.startswith("test_"):
            out.append(f"tests/{module}.py imports {name}")
    return out


def suite_modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted((ROOT / "tests").glob("*.py"))}


def test_helpers_come_from_helpers_not_conftest_or_test_modules() -> None:
    mods = suite_modules()
    known = {f"tests.{m}" for m in mods}
    offences = [
        line
        for module, path in mods.items()
        for line in offences_in(module, path.read_text(encoding="utf-8"), known)
    ]
    assert offences == []


@pytest.mark.parametrize(
    "source",
    [
        "from .conftest import sync",
        "from .test_sync import dump",
        "from . import conftest",
        "from tests.test_cli import CONF",
        "def f():\n    from .conftest import PYTHON\n",
    ],
)
def test_the_checker_reports_a_helper_taken_from_the_wrong_place(source: str) -> None:
    known = {f"tests.{m}" for m in suite_modules()}
    assert offences_in("test_example", source, known) != []


def test_the_checker_accepts_helpers_and_helper_modules() -> None:
    known = {f"tests.{m}" for m in suite_modules()}
    source = "from .helpers import sync\nfrom .fault_harness import x\nfrom . import helpers"
    assert offences_in("test_example", source, known) == []


# ---------------------------------------------------------------------- function length
#: No function is longer than this many lines (issue: cut the long functions along their
#: seams). Argparse construction is exempt: it is one flat list of declarations.
MAX_FUNCTION_LINES = 60
ARGPARSE_BUILDERS = ("build_parser",)


def long_functions(source: str, where: str) -> list[str]:
    """``where:line name (n lines)`` for every function in ``source`` over the limit."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.name in ARGPARSE_BUILDERS:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        length = (node.end_lineno or node.lineno) - first + 1
        if length > MAX_FUNCTION_LINES:
            out.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_no_function_is_longer_than_the_limit() -> None:
    found = [
        line
        for name, (path, _pkg) in modules().items()
        for line in long_functions(path.read_text(encoding="utf-8"), name)
    ]
    assert found == []


def test_the_length_check_reports_a_long_function() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    found = long_functions(f"async def too_long():\n{body}", "pypi_assets.example")
    assert found == [f"pypi_assets.example:1 too_long ({MAX_FUNCTION_LINES + 1} lines)"]
    assert long_functions(f"def short():\n{body[: -len('    x59 = 59') - 1]}", "m") == []
