"""Fixtures shared by the whole suite.

The ``core`` fixture lives in the repository's conftest.py (shared with benches/); here are the stores: each
test that asks for ``store_url`` or ``store`` runs on SQLite and on a real throwaway PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from licensor.store import Store, open_store
from licensor.testing import ThrowawayPostgres

VECTORS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "vectors")


# --- stores ------------------------------------------------------------------------------------------------

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
