"""Fixtures for the benchmarks of the core.

The ``core`` fixture (the repository's conftest.py) runs each benchmark on every core implementation this
process offers; ``benches/ratios.py`` compares the two from the JSON of ``make bench``.

The same files run as plain tests in both ``make test`` passes (``--benchmark-disable``: each benchmark body
runs once, with its correctness asserts).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # pytest-benchmark opens --benchmark-json=PATH without creating its directory; `make bench` writes to
    # .bench/, which `make clean` removes and a fresh clone lacks (it is git-ignored).
    json_path = config.getoption("benchmark_json", default=None)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
