"""bandersnatch config parsing and filter plugins, as pure functions. No I/O beyond ``load``."""

from .closure import Closure, DependencyRow, closure_roots, dependency_closure
from .config import ConfigError, MirrorConfig, load, loads
from .plugins import ProjectFilter, ReleaseFileFilter, project_filter, release_file_filter

__all__ = [
    "Closure",
    "ConfigError",
    "DependencyRow",
    "MirrorConfig",
    "ProjectFilter",
    "ReleaseFileFilter",
    "closure_roots",
    "dependency_closure",
    "load",
    "loads",
    "project_filter",
    "release_file_filter",
]
