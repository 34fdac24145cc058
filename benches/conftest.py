"""Fixtures for the benchmarks of the core.

``core`` runs a benchmark once per core implementation this process offers (see ``licensor._impl``): the
native ``rust`` one and the pure ``python`` one when the native module is loaded, only ``python`` otherwise
(``LICENSOR_PURE_PYTHON=1``). ``benches/ratios.py`` compares the two from the JSON of ``make bench``.

The same files run as plain tests in both ``make test`` passes (``--benchmark-disable``: each benchmark body
runs once, with its correctness asserts).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

from licensor import _impl


def pytest_configure(config: pytest.Config) -> None:
    # pytest-benchmark opens --benchmark-json=PATH without creating its directory; `make bench` writes to
    # .bench/, which `make clean` removes and a fresh clone lacks (it is git-ignored).
    json_path = config.getoption("benchmark_json", default=None)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    # As in tests/conftest.py: a pass that was told which core to load fails if another one is loaded, also
    # when the benchmarks run on their own.
    expected = os.environ.get("LICENSOR_EXPECT_IMPLEMENTATION")
    if expected and expected != _impl.IMPLEMENTATION:
        raise pytest.UsageError(f"expected the {expected} core, but {_impl.IMPLEMENTATION} is loaded")


@pytest.fixture(params=sorted(_impl.implementations()), ids=lambda name: name)
def core(request: pytest.FixtureRequest) -> ModuleType:
    """One core implementation module (``licensor._core`` or ``licensor._fallback``)."""
    return _impl.implementations()[request.param]
