"""bandersnatch config parsing and filter plugins, as pure functions. No I/O beyond ``load``."""

from .config import ConfigError, MirrorConfig, load, loads
from .plugins import ProjectFilter, ReleaseFileFilter, project_filter, release_file_filter

__all__ = [
    "ConfigError",
    "MirrorConfig",
    "ProjectFilter",
    "ReleaseFileFilter",
    "load",
    "loads",
    "project_filter",
    "release_file_filter",
]
