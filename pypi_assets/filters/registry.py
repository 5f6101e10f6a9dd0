"""The one registry of filter plugin names.

The config check (an unknown name in ``[plugins] enabled`` is an error naming these) and the
plugins themselves (``MirrorConfig.plugin_enabled`` refuses a name that is not here) both read
this mapping, so a plugin cannot exist without being known to the check, nor the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["ALL", "PLUGINS"]

#: ``[plugins] enabled = all`` enables every plugin.
ALL = "all"

#: Plugin name -> the level it filters at (bandersnatch 8.2's names; docs/filters.md).
PLUGINS: Mapping[str, str] = MappingProxyType(
    {
        "allowlist_project": "project",
        "project_requirements": "project",
        "blocklist_project": "project",
        "regex_project": "project",
        "size_project_metadata": "metadata",
        "versions_count_project_metadata": "metadata",
        "regex_project_metadata": "metadata",
        "allowlist_release": "release",
        "blocklist_release": "release",
        "prerelease_release": "release",
        "regex_release": "release",
        "latest_release": "release",
        "project_requirements_pinned": "release",
        "exclude_platform": "release-file",
        "regex_release_file_metadata": "release-file",
        "version_range_release_file_metadata": "release-file",
    }
)
