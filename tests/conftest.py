"""Fixtures shared by the whole suite.

``core`` runs a test once per core implementation this process offers (see ``licensor._impl``): both the
native ``rust`` and the pure ``python`` one in the first ``make test`` pass, only ``python`` in the
``LICENSOR_PURE_PYTHON=1`` pass.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from licensor import _impl

VECTORS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "vectors")


def pytest_sessionstart(session: pytest.Session) -> None:
    # `make test` says which core each pass must load; a pass on the wrong one is a failed run, not a skip.
    expected = os.environ.get("LICENSOR_EXPECT_IMPLEMENTATION")
    if expected and expected != _impl.IMPLEMENTATION:
        raise pytest.UsageError(f"expected the {expected} core, but {_impl.IMPLEMENTATION} is loaded")


@pytest.fixture(params=sorted(_impl.implementations()), ids=lambda name: name)
def core(request: pytest.FixtureRequest) -> ModuleType:
    """One core implementation module (``licensor._core`` or ``licensor._fallback``)."""
    return _impl.implementations()[request.param]


# --- stores ------------------------------------------------------------------------------------------------
from collections.abc import AsyncIterator, Iterator  # noqa: E402

from licensor.store import Store, open_store  # noqa: E402
from licensor.testing import ThrowawayPostgres  # noqa: E402

STORES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres]:
    """One real PostgreSQL server for the whole session, removed at the end."""
    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres: ThrowawayPostgres) -> str:
    """A database shared by the session's PostgreSQL tests; each test works in tenants of its own."""
    return postgres.create_database()


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """The URL of a store of each kind: a new SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{os.path.join(tmp_path, 'licensor.db')}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open store of each kind (SQLite and PostgreSQL)."""
    opened = open_store(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
