"""Dagster wiring only: assets, jobs, schedules, resources. Nothing imports this package."""

from .definitions import defs

__all__ = ["defs"]
