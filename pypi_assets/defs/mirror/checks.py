"""Asset checks on release_metadata. Blocking where a failure means bad data: the window run
stops there, and the eager assets downstream wait until the checks pass again."""

from collections.abc import Iterator

import dagster as dg

from ...store.checks import run_checks
from ...sync.selection import expected_selection
from ..resources import MirrorResource
from ..shared import POOL

_ASSET = dg.AssetKey("release_metadata")

_BLOCKING = {
    "no_duplicate_filenames",
    "hashes_well_formed",
    "long_texts_whole",
    "stored_serial_not_ahead_of_upstream",
    "selection_matches_filters",
}
_ALL = (
    "no_duplicate_filenames",
    "hashes_well_formed",
    "long_texts_whole",
    "stored_serial_not_ahead_of_upstream",
    "selection_matches_filters",
    "dependencies_resolve",
    "selected_projects_have_releases",
)


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec(name, asset=_ASSET, blocking=name in _BLOCKING) for name in _ALL],
    pool=POOL,
)
def release_metadata_checks(mirror: MirrorResource) -> Iterator[dg.AssetCheckResult]:
    config = mirror.config()
    with mirror.store() as store:
        outcomes = run_checks(store, expected_selection(store, config))
    for o in outcomes:
        yield dg.AssetCheckResult(
            asset_key=_ASSET,
            check_name=o.name,
            passed=o.passed,
            description=o.description,
            severity=dg.AssetCheckSeverity.ERROR
            if o.name in _BLOCKING
            else dg.AssetCheckSeverity.WARN,
            metadata={
                k: dg.MetadataValue.json(v) if isinstance(v, list) else v
                for k, v in o.metadata.items()
            },
        )
