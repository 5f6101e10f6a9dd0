"""Dagster wiring only: assets, checks, jobs, sensors, schedules and resources.

``pypi_assets.definitions`` loads this folder with ``dg.load_from_defs_folder``: every module
under it is imported and whatever Dagster definitions it holds at module level join the code
location, so a new file here needs no list edited. Nothing else imports this package's
definitions, and this ``__init__`` stays empty of them.
"""
