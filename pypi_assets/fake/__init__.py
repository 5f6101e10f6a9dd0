"""The shipped fake upstream: Warehouse's protocols on loopback, for tests, demo and benchmarks."""

from .data import FakeIndex, fake_name
from .server import FakeUpstream, Fault

__all__ = ["FakeIndex", "FakeUpstream", "Fault", "fake_name"]
