"""Fixtures shared by the worker's tests: an in-memory platform and a clock the test moves."""

from __future__ import annotations

import pytest

from tests.fakes import Clock
from tests.fakes import MemoryPlatform


@pytest.fixture
def platform() -> MemoryPlatform:
    return MemoryPlatform()


@pytest.fixture
def clock() -> Clock:
    return Clock()
