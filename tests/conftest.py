"""Fixtures shared by the whole suite.

The ``core`` fixture lives in the repository's conftest.py (shared with benches/); here are the stores: each
test that asks for ``store_url`` or ``store`` runs on SQLite and on a real throwaway PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from licensor.store import Store, open_store
from licensor.testing import ThrowawayPostgres

VECTORS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "vectors")


# --- stores: the plugin author kit's fixtures (licensor.testing), under the suite's shorter names ------------


@pytest.fixture(scope="session")
def postgres(licensor_postgres: ThrowawayPostgres) -> ThrowawayPostgres:
    """One real PostgreSQL server for the whole session, removed at the end."""
    return licensor_postgres


@pytest.fixture(scope="session")
def postgres_url(licensor_postgres_url: str) -> str:
    """A database shared by the session's PostgreSQL tests; each test works in tenants of its own."""
    return licensor_postgres_url


@pytest.fixture
def store_url(licensor_store_url: str) -> str:
    """The URL of a store of each kind: a new SQLite file, or the session's PostgreSQL database."""
    return licensor_store_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open store of each kind (SQLite and PostgreSQL)."""
    opened = open_store(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
