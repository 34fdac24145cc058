"""Retention's part of the store, on both stores: the remembered answers of idempotent requests, ended leases and
finished webhook deliveries are deleted once older than a cutoff, in batches of a bounded size, and nothing else is.

The PostgreSQL database is shared by the session and pruning works across tenants, so the rows here are dated
a thousand days back (other tests' rows are newer than any cutoff used here), and each test looks only at its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing

from licensor.model import LEASE, RESOURCES, now_us
from licensor.store import IdempotentRequest, Row, Store, StoredResponse, open_store
from licensor.store.sqlite import SqliteStore

from tests.store.test_license_plane_store import cloud_license, insert_leases, lease_row
from tests.store.test_store import create, new_tenant, other_tenant, query, tenant, unique  # noqa: F401 (fixtures)

DAY = 86_400_000_000
LONG_AGO = now_us() - 1000 * DAY
CUTOFF = LONG_AGO + DAY
"""Rows dated before it are old; LONG_AGO + 2 days is recent."""
RECENT = LONG_AGO + 2 * DAY
DELIVERIES = RESOURCES["webhook_deliveries"]
ATTEMPTS = RESOURCES["webhook_attempts"]

Prune = Callable[[int, int], Awaitable[int]]


async def prune_all(prune: Prune, limit: int) -> list[int]:
    """What each batch deleted, until one deleted fewer than ``limit`` (bounded: a runaway loop fails)."""
    batches = []
    for _ in range(1000):
        batches.append(await prune(CUTOFF, limit))
        if batches[-1] < limit:
            return batches
    raise AssertionError("pruning never ended")


def answer_of(key: str) -> IdempotentRequest:
    return IdempotentRequest(key, hashlib.sha256(key.encode()).digest(), at=LONG_AGO if key.startswith("old") else RECENT)


async def remember(store: Store, tenant_id: str, key: str) -> None:
    async with store.transaction(tenant_id, answer_of(key)) as tx:
        assert tx.replay is None
        tx.remember(200, f"answer {key}")


async def test_answers_remembered_before_the_cutoff_are_forgotten_in_batches(
    store: Store, tenant: str, other_tenant: str
) -> None:
    keys = {tenant: [f"old-{n}" for n in range(15)] + ["recent-1", "recent-2"], other_tenant: ["old-a", "recent-a"]}
    for tenant_id, names in keys.items():
        for key in names:
            await remember(store, tenant_id, key)
    stored = await query(store.url, "SELECT created_at FROM idempotency_keys WHERE tenant_id = ? ORDER BY created_at", tenant)
    assert [row["created_at"] for row in stored] == [LONG_AGO] * 15 + [RECENT] * 2  # remembered at the request's time

    batches = await prune_all(store.prune_idempotency_answers, 7)
    assert all(deleted <= 7 for deleted in batches) and sum(batches) >= 16 and batches[-1] < 7

    for tenant_id, names in keys.items():
        left = await query(store.url, "SELECT key FROM idempotency_keys WHERE tenant_id = ? ORDER BY key", tenant_id)
        assert [row["key"] for row in left] == sorted(key for key in names if key.startswith("recent"))
    # A recent key still replays its answer; a forgotten one is a new request.
    async with store.transaction(tenant, answer_of("recent-1")) as tx:
        assert tx.replay == StoredResponse(200, "answer recent-1")
    async with store.transaction(tenant, answer_of("old-3")) as tx:
        assert tx.replay is None
    assert await store.prune_idempotency_answers(CUTOFF, 7) == 0


async def test_leases_that_stopped_holding_a_seat_before_the_cutoff_are_deleted_and_no_other(store: Store, tenant: str) -> None:
    _, (credential,) = await cloud_license(store, tenant)
    now = now_us()
    leases = await insert_leases(
        store,
        tenant,
        {
            "released long ago": lease_row(credential, "released", LONG_AGO, LONG_AGO + 60, LONG_AGO + 30),
            "expired long ago": lease_row(credential, "expired", LONG_AGO, LONG_AGO + 60, LONG_AGO + 60),
            "taken over long ago": lease_row(credential, "taken_over", LONG_AGO, LONG_AGO + 60, LONG_AGO + 10),
            "revoked long ago": lease_row(credential, "revoked", LONG_AGO, LONG_AGO + 60, LONG_AGO + 20),
            "ran out long ago, unmarked": lease_row(credential, "active", LONG_AGO, LONG_AGO + 60),
            "started long ago, released recently": lease_row(credential, "released", LONG_AGO, RECENT + 60, RECENT),
            "started long ago, ran out recently": lease_row(credential, "active", LONG_AGO, RECENT),
            "held now": lease_row(credential, "active", LONG_AGO, now + DAY),
        },
    )
    batches = await prune_all(store.prune_ended_leases, 2)
    assert all(deleted <= 2 for deleted in batches) and sum(batches) >= 5

    left = {name for name, row in leases.items() if await store.get(tenant, LEASE, row["id"]) is not None}
    assert left == {"started long ago, released recently", "started long ago, ran out recently", "held now"}


async def delivery(store: Store, tenant_id: str, endpoint: Row, state: str, changed_at: int, attempts: int) -> Row:
    async with store.transaction(tenant_id) as tx:
        row = await create(tx, "webhook_deliveries", endpoint_id=endpoint["id"], state=state, created_at=LONG_AGO)
        row = await tx.update(DELIVERIES, row["id"], {"attempts": attempts})
        assert row is not None
        for attempt in range(1, attempts + 1):
            await create(tx, "webhook_attempts", delivery_id=row["id"], attempt=attempt)
    # update() dates the change now: the change's time is set past it, as it would have been written then.
    async with store.transaction(tenant_id) as tx:
        await tx.conn.execute("UPDATE webhook_deliveries SET updated_at = ? WHERE id = ?", changed_at, row["id"])  # type: ignore[attr-defined]
    return row


async def test_finished_deliveries_changed_before_the_cutoff_go_with_their_attempts(store: Store, tenant: str) -> None:
    async with store.transaction(tenant) as tx:
        endpoint = await create(tx, "webhook_endpoints")
    made = {
        "delivered long ago": await delivery(store, tenant, endpoint, "delivered", LONG_AGO, 2),
        "failed long ago": await delivery(store, tenant, endpoint, "failed", LONG_AGO, 3),
        "still pending, from long ago": await delivery(store, tenant, endpoint, "pending", LONG_AGO, 1),
        "delivered recently": await delivery(store, tenant, endpoint, "delivered", RECENT, 1),
        "failed recently": await delivery(store, tenant, endpoint, "failed", RECENT, 2),
    }
    batches = await prune_all(store.prune_finished_webhook_deliveries, 1)
    assert all(deleted <= 1 for deleted in batches) and sum(batches) >= 2

    left = {name for name, row in made.items() if await store.get(tenant, DELIVERIES, row["id"]) is not None}
    assert left == {"still pending, from long ago", "delivered recently", "failed recently"}
    attempts = await query(
        store.url, "SELECT delivery_id, COUNT(*) AS n FROM webhook_attempts WHERE tenant_id = ? GROUP BY delivery_id", tenant
    )
    assert {row["delivery_id"]: row["n"] for row in attempts} == {
        made["still pending, from long ago"]["id"]: 1,
        made["delivered recently"]["id"]: 1,
        made["failed recently"]["id"]: 2,
    }


async def test_pruners_of_two_processes_share_the_rows_and_count_each_once(store: Store, tenant: str) -> None:
    async with store.transaction(tenant) as tx:
        # One statement per 500 rows: quicker than a transaction per answer.
        for start in range(0, 3000, 500):
            rows = [(tenant, unique(f"old-{n}"), b"h" * 32, 200, "{}", LONG_AGO) for n in range(start, start + 500)]
            await tx.conn.execute(  # type: ignore[attr-defined]
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, body, created_at) VALUES "
                + ", ".join("(?, ?, ?, ?, ?, ?)" for _ in rows),
                *(value for row in rows for value in row),
            )
    old = await query(store.url, "SELECT COUNT(*) AS n FROM idempotency_keys WHERE created_at < ?", CUTOFF)
    other = open_store(store.url)  # another process's store on the same database
    await other.open()
    try:
        counts = await asyncio.gather(
            prune_all(store.prune_idempotency_answers, 100), prune_all(other.prune_idempotency_answers, 100)
        )
    finally:
        await other.close()
    assert sum(map(sum, counts)) == old[0]["n"] >= 3000 and all(batch <= 100 for batches in counts for batch in batches)
    assert await query(store.url, "SELECT key FROM idempotency_keys WHERE tenant_id = ?", tenant) == []


async def test_sqlite_checkpoints_run_on_a_connection_of_their_own_and_leave_commits_alone(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "checkpoints.db")
    store = SqliteStore(path)
    await store.open()
    try:
        async with store._write(None) as conn:
            # The writer never checkpoints by itself: a commit never waits for the disk's fsyncs of a checkpoint.
            assert await conn.fetch_all("PRAGMA wal_autocheckpoint") == [{"wal_autocheckpoint": 0}]
        tenant_id = await new_tenant(store)
        for _ in range(20):
            await remember(store, tenant_id, unique("recent"))
        before = store.checkpoints
        for _ in range(60):  # up to 3 s: a checkpoint comes every half second
            if store.checkpoints > before:
                break
            await asyncio.sleep(0.05)
        assert store.checkpoints > before
        # Everything written is in the database file now: the WAL's frames were all copied back.
        with closing(sqlite3.connect(path)) as db:
            busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and frames == copied
    finally:
        await store.close()
    assert store._checkpoint_task is None


async def test_portal_sessions_and_links_expired_before_the_cutoff_are_deleted(store: Store, tenant: str) -> None:
    async with store.transaction(tenant) as tx:
        customer = await create(tx, "customers")
        conn = tx.conn  # type: ignore[attr-defined]  # straight SQL: rows as the portal writes them
        for name, expires_at in (("old", LONG_AGO), ("recent", RECENT)):
            await conn.execute(
                "INSERT INTO portal_sessions (id, tenant_id, secret_hash, customer_id, license_id, expires_at, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, NULL, ?, ?, ?)",
                unique(f"pss-{name}"),
                tenant,
                b"s" * 32,
                customer["id"],
                expires_at,
                LONG_AGO,
                LONG_AGO,
            )
            for used_at in (None, LONG_AGO):
                await conn.execute(
                    "INSERT INTO portal_tokens (id, tenant_id, customer_id, purpose, secret_hash, expires_at, used_at,"
                    " created_at, updated_at) VALUES (?, ?, ?, 'sign_in', ?, ?, ?, ?, ?)",
                    unique(f"ptk-{name}"),
                    tenant,
                    customer["id"],
                    b"t" * 32,
                    expires_at,
                    used_at,
                    LONG_AGO,
                    LONG_AGO,
                )
    assert sum(await prune_all(store.prune_expired_portal_sessions, 1)) >= 1
    assert sum(await prune_all(store.prune_expired_portal_links, 1)) >= 2
    for table in ("portal_sessions", "portal_tokens"):
        left = await query(store.url, f"SELECT id, expires_at FROM {table} WHERE tenant_id = ?", tenant)
        assert left and {row["expires_at"] for row in left} == {RECENT} and all("recent" in row["id"] for row in left)
