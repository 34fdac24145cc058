"""Fixtures of both suites, tests/ and benches/.

``core`` runs a test or benchmark once per core implementation this process offers (see
``licensor._impl``): both the native ``rust`` and the pure ``python`` one in the first ``make test`` pass, only
``python`` in the ``LICENSOR_PURE_PYTHON=1`` pass.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from licensor import _impl
pytest_plugins = ["licensor.testing"]  # the plugin author kit's fixtures, which the suite uses too


def pytest_sessionstart(session: pytest.Session) -> None:
    from licensor.testing import check_expected_implementation  # imported here: pytest rewrites the plugin's asserts

    try:
        check_expected_implementation()
    except RuntimeError as wrong_core:
        raise pytest.UsageError(str(wrong_core)) from None


@pytest.fixture(params=sorted(_impl.implementations()), ids=lambda name: name)
def core(request: pytest.FixtureRequest) -> ModuleType:
    """One core implementation module (``licensor._core`` or ``licensor._fallback``)."""
    return _impl.implementations()[request.param]


# What needs a server process: a store (SQLite file or PostgreSQL), a gateway, or `licensor serve`. `make check`
# runs everything else, for the quick loop while working.
_SERVER_FIXTURES = frozenset({"licensor_store_url", "licensor_postgres", "licensor_postgres_url", "licensor_gateway",
                              "licensor_fleet", "licensor_second_process"})
_SERVER_MODULES = frozenset({"test_cli.py", "test_schemathesis.py"})  # start servers of their own


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and "postgresql" in callspec.id.split("-")  # a store asked for by name
        if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in _SERVER_MODULES or on_postgres:
            item.add_marker(pytest.mark.server)
