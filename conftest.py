"""Fixtures of both suites, tests/ and benches/.

``core`` runs a test or benchmark once per core implementation this process offers (see
``licensor._impl``): both the native ``rust`` and the pure ``python`` one in the first ``make test`` pass, only
``python`` in the ``LICENSOR_PURE_PYTHON=1`` pass.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from licensor import _impl


def pytest_sessionstart(session: pytest.Session) -> None:
    # `make test` says which core each pass must load; a pass on the wrong one is a failed run, not a skip.
    expected = os.environ.get("LICENSOR_EXPECT_IMPLEMENTATION")
    if expected and expected != _impl.IMPLEMENTATION:
        raise pytest.UsageError(f"expected the {expected} core, but {_impl.IMPLEMENTATION} is loaded")


@pytest.fixture(params=sorted(_impl.implementations()), ids=lambda name: name)
def core(request: pytest.FixtureRequest) -> ModuleType:
    """One core implementation module (``licensor._core`` or ``licensor._fallback``)."""
    return _impl.implementations()[request.param]
