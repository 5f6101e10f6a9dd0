"""The code location: ``workspace.yaml`` and ``[tool.dg.project]`` both load
``pypi_assets.definitions:defs``, everything found under :mod:`pypi_assets.defs`."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
