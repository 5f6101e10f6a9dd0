"""Data-health checks over the working database, as plain functions (the asset checks call them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .duckdb_store import MetadataStore
from .long_texts import REFERENCES, WHOLE

__all__ = ["CheckOutcome", "run_checks"]


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _scalar(store: MetadataStore, sql: str) -> int:
    return int(store.query(sql)[0][0])


def _check_duplicates(store: MetadataStore) -> CheckOutcome:
    dups = store.query(
        "SELECT filename, count(*) FROM distributions GROUP BY filename HAVING count(*) > 1 ORDER BY 2 DESC LIMIT 20"
    )
    return CheckOutcome(
        "no_duplicate_filenames",
        not dups,
        "every filename appears once",
        {"duplicates": len(dups), "sample": [r[0] for r in dups]},
    )


def _check_hashes(store: MetadataStore) -> CheckOutcome:
    bad_hash = store.query(
        "SELECT filename FROM distributions WHERE NOT regexp_full_match(sha256, '[0-9a-f]{64}') "
        "OR (md5 IS NOT NULL AND NOT regexp_full_match(md5, '[0-9a-f]{32}')) "
        "OR (blake2b_256 IS NOT NULL AND NOT regexp_full_match(blake2b_256, '[0-9a-f]{64}')) LIMIT 20"
    )
    return CheckOutcome(
        "hashes_well_formed",
        not bad_hash,
        "sha256/md5/blake2b_256 are lowercase hex of the right length",
        {"bad": len(bad_hash), "sample": [r[0] for r in bad_hash]},
    )


def _check_serials(store: MetadataStore) -> CheckOutcome:
    upstream = store.known_serial()
    ahead = store.query(
        "SELECT p.name, p.serial, u.serial FROM projects p JOIN upstream_projects u ON u.name = p.name "
        "WHERE p.state = 'ok' AND u.serial > 0 AND p.serial > u.serial LIMIT 20"
    )
    top = _scalar(store, "SELECT coalesce(max(serial), 0) FROM projects")
    ok = not ahead and (upstream == 0 or top <= upstream)
    return CheckOutcome(
        "stored_serial_not_ahead_of_upstream",
        ok,
        "no stored project serial is newer than upstream lists it",
        {"ahead": len(ahead), "max_stored_serial": top, "upstream_serial": upstream},
    )


def _check_selection(store: MetadataStore, expected: set[tuple[str, str]]) -> CheckOutcome:
    actual = {(r[0], r[1]) for r in store.query("SELECT project, filename FROM selected_files")}
    missing, extra = expected - actual, actual - expected
    return CheckOutcome(
        "selection_matches_filters",
        not missing and not extra,
        "selected_distributions equals the current filters' output",
        {
            "missing": len(missing),
            "extra": len(extra),
            "sample": sorted(f for _p, f in (missing | extra))[:20],
        },
    )


def _check_dependencies(store: MetadataStore) -> CheckOutcome:
    external = _scalar(
        store,
        "SELECT count(DISTINCT dep_project) FROM dependencies d WHERE dep_project IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM projects p WHERE p.name = d.dep_project) AND NOT EXISTS "
        "(SELECT 1 FROM upstream_projects u WHERE u.name = d.dep_project)",
    )
    unparsed = _scalar(store, "SELECT count(*) FROM dependencies WHERE parse_error IS NOT NULL")
    mirrored = _scalar(
        store,
        "SELECT count(DISTINCT dep_project) FROM dependencies d WHERE EXISTS (SELECT 1 FROM projects p WHERE p.name = d.dep_project)",
    )
    return CheckOutcome(
        "dependencies_resolve",
        True,
        "dependencies reference mirrored or upstream-listed projects; the rest are flagged external",
        {"mirrored_targets": mirrored, "external_targets": external, "unparseable": unparsed},
    )


def _check_releases(store: MetadataStore) -> CheckOutcome:
    lacking = store.query(
        "SELECT s.name FROM selected_projects s JOIN upstream_projects u ON u.name = s.name "
        "LEFT JOIN projects p ON p.name = s.name "
        "WHERE p.name IS NULL OR (p.state = 'ok' AND NOT EXISTS (SELECT 1 FROM releases r WHERE r.project = s.name)) "
        "ORDER BY 1 LIMIT 20"
    )
    return CheckOutcome(
        "selected_projects_have_releases",
        not lacking,
        "every selected, listed, non-removed project is stored with its releases",
        {"lacking": len(lacking), "sample": [r[0] for r in lacking]},
    )


def _check_long_texts(store: MetadataStore) -> CheckOutcome:
    named = " UNION ".join(
        f"SELECT {col} AS digest, {key} AS project FROM {table} WHERE {col} IS NOT NULL"
        for table, col, key in REFERENCES
    )
    broken = store.query(
        f"SELECT DISTINCT n.project FROM ({named}) n WHERE NOT EXISTS (SELECT 1 FROM "
        f"long_texts t WHERE t.digest = n.digest GROUP BY t.digest HAVING {WHOLE}) "
        "ORDER BY 1 LIMIT 20"
    )
    return CheckOutcome(
        "long_texts_whole",
        not broken,
        "every long description a row names is stored, with each of its pieces",
        {"projects": len(broken), "sample": [r[0] for r in broken]},
    )


def run_checks(
    store: MetadataStore, expected_selection: set[tuple[str, str]] | None
) -> list[CheckOutcome]:
    """Every check, in a fixed order (the selection check only with an expected selection)."""
    out = [
        _check_duplicates(store),
        _check_hashes(store),
        _check_long_texts(store),
        _check_serials(store),
    ]
    if expected_selection is not None:
        out.append(_check_selection(store, expected_selection))
    out.extend([_check_dependencies(store), _check_releases(store)])
    return out
