"""The PostgreSQL store when its database goes away: a primary stopped hard whose standby is promoted, found through a
multi-host URL. PostgreSQL only: SQLite is a file in the process. (A single server stopped and restarted: the
gateway under load, tests/gateway/test_failover.py.)

While the database cannot be reached, every operation fails quickly with STORE_UNAVAILABLE (never asyncpg's own
errors, never a hang), and the store says caches may answer from what they hold (``stale_cache_allowed``); when
it is back, the LISTEN connection reconnects by itself and announces that anything may have changed (caches drop
everything), and operations work again. The gateway under load: tests/gateway/test_failover.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from licensor.errors import StoreUnavailableError
from licensor.model import RESOURCES
from licensor.store import Store, open_store
from licensor.store.postgres import CONNECT_TIMEOUT_SECONDS
from licensor.testing import ReplicatedPostgres

from tests.store.test_store import create_in, new_tenant

BACK_WITHIN_S = 5.0


async def _until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {within_s} s"
        await asyncio.sleep(0.02)


async def _refused_quickly(operation: Callable[[], Awaitable[object]]) -> str:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as refused:
        await operation()
    assert time.monotonic() - started < 2 * CONNECT_TIMEOUT_SECONDS
    assert refused.value.code == "STORE_UNAVAILABLE"
    return refused.value.message


async def _away_and_back(store: Store, go_away: Callable[[], None], come_back: Callable[[], None]) -> None:
    tenant = await new_tenant(store)
    product = await create_in(store, tenant, "products")
    heard: list[str | None] = []
    store.subscribe(heard.append)
    assert store.announcements_live and not store.stale_cache_allowed

    go_away()
    await _refused_quickly(store.ping)
    await _refused_quickly(lambda: create_in(store, tenant, "products"))
    await _until(lambda: store.stale_cache_allowed and not store.announcements_live, 2.0, "known unreachable")
    assert None not in heard  # caches keep what they hold while the database is away

    come_back()
    await _until(lambda: store.announcements_live, BACK_WITHIN_S, "listening again")
    assert None in heard and not store.stale_cache_allowed  # everything cached is dropped on reconnecting
    await store.ping()
    assert await store.get(tenant, RESOURCES["products"], product["id"]) is not None  # written before, still there
    await create_in(store, tenant, "products")


async def test_a_multi_host_url_writes_to_the_primary_wherever_listed_and_finds_the_promoted_standby() -> None:
    with ReplicatedPostgres() as pair:
        standby_first = f"postgresql://postgres@127.0.0.1:{pair.standby.port},127.0.0.1:{pair.primary.port}/postgres"
        store = open_store(standby_first + "?target_session_attrs=read-write")
        await store.open()  # migrating writes: it found the primary, though the standby is listed first
        try:
            assert pair.primary.sql("SELECT count(*) > 0 FROM pg_tables WHERE tablename = 'tenants'") == "t"
            await _away_and_back(store, pair.crash_primary, pair.promote)
        finally:
            await store.close()
