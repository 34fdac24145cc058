"""Fixtures of the License Central tests: the real gateway on a real aiohttp server, on each store.

``gateway`` starts the gateway on 127.0.0.1 with :func:`licensor.testing.running_gateway` (the plugin
author kit's own fixture, shared) over a SQLite file or the session's PostgreSQL database;
``await gateway.tenant()`` creates a tenant the way ``licensor init`` does and gives its admin token, and
``await tenant.token(role)`` issues tokens of the other roles through the admin API. Every answer the helpers
receive is checked for the error contract (an error is exactly ``{"error": {"code", "message"}}``, never a 500).

Every tenant created through these fixtures has its event chain verified when its test ends, and once more
when the session ends (on both stores), so no test leaves a chain that does not verify.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from licensor.central.events import verify_chain
from licensor.store import open_store
from licensor.store.sql import placeholders_to_numbered
from licensor.testing import ROLES, Answer, Gateway, Tenant, check_error_contract, running_gateway

from tests.example_backend import ExamplePlugin

__all__ = ["ROLES", "Answer", "Gateway", "Tenant", "check_error_contract", "db_execute"]


@dataclass
class ChainAudit:
    """Tenants created by the central tests, per store URL, for verifying their chains."""

    tenants: dict[str, set[str]] = field(default_factory=dict)

    def add(self, store_url: str, tenant_id: str) -> None:
        self.tenants.setdefault(store_url, set()).add(tenant_id)


# --- the audit of every chain ------------------------------------------------------------------------
async def _verify_stored_chains(store_url: str, tenant_ids: set[str]) -> dict[str, dict[str, Any]]:
    store = open_store(store_url)
    await store.open()
    try:
        return {tenant_id: await verify_chain(store, tenant_id) for tenant_id in sorted(tenant_ids)}
    finally:
        await store.close()


@pytest.fixture(scope="session")
def chain_audit(postgres_url: str) -> Iterator[ChainAudit]:
    """Every tenant the central tests created; when the session ends, each one's chain must verify (it
    depends on the PostgreSQL database so that it ends before the server stops)."""
    audit = ChainAudit()
    yield audit
    failures = {}
    for store_url, tenant_ids in audit.tenants.items():
        if store_url.startswith("sqlite:///") and not os.path.exists(store_url[len("sqlite:///") :]):
            continue  # pytest removed the temporary directory already
        for tenant_id, verdict in asyncio.run(_verify_stored_chains(store_url, tenant_ids)).items():
            if not verdict["valid"]:
                failures[tenant_id] = verdict
    assert not failures, f"event chains that do not verify after the suite: {failures}"


@pytest.fixture(autouse=True)
def _chains_verify_after_each_test(chain_audit: ChainAudit) -> Iterator[list[dict[str, Any]]]:
    """After every test, every chain of the tenants it created verifies (the gateway fixture reports them)."""
    verdicts: list[dict[str, Any]] = []
    yield verdicts
    broken = [verdict for verdict in verdicts if not verdict["valid"]]
    assert not broken, f"event chains that do not verify after the test: {broken}"


@pytest.fixture
def gateway_plugins() -> tuple[object, ...]:
    """Plugins the gateway loads besides the installed ones (the example backend, which the catalog tests'
    policies name); a test module overrides this to add its own."""
    return (ExamplePlugin(),)


@pytest.fixture
async def gateway(
    store_url: str,
    tmp_path: os.PathLike[str],
    chain_audit: ChainAudit,
    _chains_verify_after_each_test: list[dict[str, Any]],
    gateway_plugins: tuple[object, ...],
) -> AsyncIterator[Gateway]:
    """The real gateway on 127.0.0.1, on a SQLite file or the session's PostgreSQL database."""
    async with running_gateway(store_url, str(tmp_path), gateway_plugins, chain_audit.add) as gateway:
        yield gateway
        verdicts = await gateway.verify_chains()
        _chains_verify_after_each_test.extend({**verdict, "tenant": tenant_id} for tenant_id, verdict in verdicts.items())


@pytest.fixture
async def tenant(gateway: Gateway) -> Tenant:
    return await gateway.tenant("Vendor A")


# --- direct database access (for tampering with stored rows) ------------------------------------------
class Database:
    """A connection of its own to the store's database, beside the gateway's (``?`` placeholders)."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: asyncpg.Connection | None = None

    async def __aenter__(self) -> Database:
        if self.store_url.startswith("sqlite:///"):
            self._sqlite = sqlite3.connect(
                self.store_url[len("sqlite:///") :], timeout=10, isolation_level=None, check_same_thread=False
            )
        else:
            self._postgres = await asyncpg.connect(self.store_url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._postgres is not None:
            await self._postgres.close()

    async def execute(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self._sqlite is not None:
            # In a thread: the gateway under test serves on this event loop, and a statement waiting for its
            # lock must not stop the loop that would let the gateway's own transaction finish.
            return await asyncio.to_thread(self._sqlite_execute, sql, args)
        assert self._postgres is not None
        return [dict(row) for row in await self._postgres.fetch(placeholders_to_numbered(sql), *args)]

    def _sqlite_execute(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        assert self._sqlite is not None
        cursor = self._sqlite.execute(sql, args)
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


async def db_execute(store_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run one statement (``?`` placeholders) directly on the database, outside the store; its rows."""
    async with Database(store_url) as database:
        return await database.execute(sql, *args)
