"""The store's contract, run on both stores (SQLite and PostgreSQL) through the ``store`` fixture.

Real databases only. The PostgreSQL database is shared by the session, so every test works in tenants of its
own (random ids) and never assumes that it is alone in a table. Rows are written straight through
:class:`licensor.store.Transaction`, so what refuses a bad write here is the database's own constraints.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable
from contextlib import closing
from typing import Any

import asyncpg
import orjson
import pytest
from licensor.errors import ConflictError, IdempotencyKeyReusedError, StoreUnavailableError
from licensor.model import RESOURCES, Resource, canonical_json, new_id, now_us
from licensor.store import IdempotentRequest, Row, Store, StoredResponse, open_store
from licensor.store.chain import GENESIS_HASH, event_hash
from licensor.store.sql import SqlStore, placeholders_to_numbered
from licensor.store.sqlite import SqliteStore
from licensor.testing import ThrowawayPostgres

PRODUCTS = RESOURCES["products"]
FEATURES = RESOURCES["features"]
POLICIES = RESOURCES["policies"]
CUSTOMERS = RESOURCES["customers"]
LICENSES = RESOURCES["licenses"]


# --- helpers -----------------------------------------------------------------------------------------------
def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def query(url: str, sql: str, *args: Any) -> list[Row]:
    """Rows read straight from the database behind ``url``, past the store (``?`` placeholders)."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url[len("sqlite:///") :])) as db:
            cursor = db.execute(sql, args)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
    conn = await asyncpg.connect(url)
    try:
        return [dict(row) for row in await conn.fetch(placeholders_to_numbered(sql), *args)]
    finally:
        await conn.close()


async def write_past_the_store(url: str, sql: str, *args: Any) -> None:
    """One statement committed straight into the database behind ``url`` (``?`` placeholders)."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url[len("sqlite:///") :])) as db, db:
            db.execute(sql, args)
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(placeholders_to_numbered(sql), *args)
    finally:
        await conn.close()


async def count(url: str, table: str, tenant_id: str) -> int:
    rows = await query(url, f"SELECT COUNT(*) AS n FROM {table} WHERE tenant_id = ?", tenant_id)
    return int(rows[0]["n"])


async def new_tenant(store: Store) -> str:
    tenant_id = new_id("ten")
    await store.create_tenant(tenant_id, f"Vendor {tenant_id[-6:]}", now_us())
    return tenant_id


def _columns(plural: str) -> dict[str, Any]:
    """The columns (besides references, ids and times) of a new row of each resource."""
    defaults: dict[str, Callable[[], dict[str, Any]]] = {
        "products": lambda: {"code": unique("prd"), "name": "A product", "description": None},
        "features": lambda: {"code": unique("fea"), "name": "A feature", "metered": 0, "unit": None},
        "releases": lambda: {
            "version": unique("1.0"),
            "channel": "stable",
            "released_at": now_us(),
            "required_features": canonical_json([]),
            "yanked": 0,
            "artifacts": canonical_json([]),
        },
        "policies": lambda: {
            "name": "A policy",
            "backend": "example",
            "seats": 3,
            "duration": canonical_json({"kind": "perpetual"}),
            "maintenance_days": None,
            "features": canonical_json([]),
            "options": canonical_json({}),
        },
        "customers": lambda: {
            "email": f"{unique('c')}@example.com",
            "name": "A customer",
            "external_ref": None,
            "password_hash": None,
        },
        "licenses": lambda: {
            "customer_id": None,
            "key_hash": os.urandom(32),
            "key_hint": "ABCD",
            "state": "active",
            "starts_at": now_us(),
            "expires_at": None,
            "maintenance_until": None,
            "overrides": canonical_json({}),
            "order_ref": None,
            "subject": None,
            "generation": 1,
            "order_marks": canonical_json({}),
        },
        "order_sources": lambda: {"kind": "stripe", "name": "A shop", "secrets": "sealed", "effects": canonical_json({})},
        "order_mappings": lambda: {"item": unique("sku")},
        "webhook_endpoints": lambda: {
            "url": "https://hooks.example.com/licensor",
            "description": None,
            "event_types": canonical_json(["*"]),
            "secret": None,
            "state": "enabled",
            "disabled_reason": None,
            "failing_since": None,
            "cursor_seq": 0,
        },
        "webhook_deliveries": lambda: {
            "event_id": unique("evt"),
            "event_seq": int(uuid.uuid4().int % 1_000_000),
            "event_type": "license.created",
            "payload": canonical_json({}),
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now_us(),
            "claimed_until": None,
            "last_status": None,
            "last_error": None,
            "delivered_at": None,
        },
        "webhook_attempts": lambda: {"attempt": 1, "status": 500, "error": "HTTP 500", "duration_ms": 3},
        "order_events": lambda: {
            "business_key": unique("purchase"),
            "type": "purchase",
            "provider_event_id": unique("evt"),
            "provider_type": "checkout.session.completed",
            "outcome": "applied",
            "detail": None,
            "license_ids": canonical_json([]),
            "occurred_at": now_us(),
        },
    }
    return defaults[plural]()


async def create(tx: Any, plural: str, **overrides: Any) -> Row:
    """Insert a new row of ``plural`` (and the rows it must reference) in the transaction's tenant."""
    resource = RESOURCES[plural]
    if plural in ("features", "releases", "policies") and "product_id" not in overrides:
        overrides["product_id"] = (await create(tx, "products"))["id"]
    if plural in ("order_mappings", "order_events") and "source_id" not in overrides:
        overrides["source_id"] = (await create(tx, "order_sources"))["id"]
    if plural == "webhook_deliveries" and "endpoint_id" not in overrides:
        overrides["endpoint_id"] = (await create(tx, "webhook_endpoints"))["id"]
    if plural == "webhook_attempts" and "delivery_id" not in overrides:
        overrides["delivery_id"] = (await create(tx, "webhook_deliveries"))["id"]
    if plural == "order_mappings" and "policy_id" not in overrides:
        overrides["policy_id"] = (await create(tx, "policies"))["id"]
    if plural == "licenses":
        if "policy_id" not in overrides:
            policy = await create(tx, "policies", **{k: v for k, v in overrides.items() if k == "product_id"})
            overrides["policy_id"] = policy["id"]
            overrides.setdefault("product_id", policy["product_id"])
    now = now_us()
    row = {"id": new_id(resource.id_prefix), **_columns(plural), **overrides}
    row.setdefault("created_at", now)
    row.setdefault("updated_at", now)
    return await tx.insert(resource, row)


async def create_in(store: Store, tenant_id: str, plural: str, **overrides: Any) -> Row:
    async with store.transaction(tenant_id) as tx:
        return await create(tx, plural, **overrides)


async def all_rows(store: Store, tenant_id: str, resource: Resource, **filters: Any) -> list[Row]:
    return (await store.list(tenant_id, resource, filters, None, 1000)).rows


async def all_events(store: Store, tenant_id: str) -> list[Row]:
    return [event async for event in store.iter_events(tenant_id)]


def assert_chain(events: list[Row]) -> None:
    """Sequence numbers 1..n, each event linked to the one before, each hash the hash of its event."""
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    previous = GENESIS_HASH
    for event in events:
        assert bytes(event["prev_hash"]) == previous
        assert bytes(event["hash"]) == event_hash(event)
        previous = bytes(event["hash"])


@pytest.fixture
async def tenant(store: Store) -> str:
    return await new_tenant(store)


@pytest.fixture
async def other_tenant(store: Store) -> str:
    return await new_tenant(store)


@pytest.fixture(params=("sqlite", "postgresql"))
def fresh_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """A database nobody has opened yet: a new SQLite file, or a new database on the session's server."""
    if request.param == "sqlite":
        return f"sqlite:///{os.path.join(tmp_path, 'fresh.db')}"
    server: ThrowawayPostgres = request.getfixturevalue("postgres")
    return server.create_database()


# --- migrations --------------------------------------------------------------------------------------------
async def test_opening_a_new_database_applies_and_records_every_migration(fresh_url: str) -> None:
    store = open_store(fresh_url)
    await store.open()
    try:
        recorded = await query(fresh_url, "SELECT version FROM schema_migrations ORDER BY version")
        assert [row["version"] for row in recorded] == [version for version, _ in SqlStore.migrations()]
        assert await store.list_tenants() == []
    finally:
        await store.close()


async def test_reopening_a_store_changes_nothing(store: Store) -> None:
    sql = "SELECT version, applied_at FROM schema_migrations ORDER BY version"
    before = await query(store.url, sql)
    assert [row["version"] for row in before] == [version for version, _ in SqlStore.migrations()]
    again = open_store(store.url)
    await again.open()
    await again.close()
    again = open_store(store.url)
    await again.open()
    await again.close()
    assert await query(store.url, sql) == before
    await store.ping()


async def test_stores_opening_a_new_database_together_migrate_it_once(fresh_url: str) -> None:
    stores = [open_store(fresh_url) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        recorded = await query(fresh_url, "SELECT version FROM schema_migrations ORDER BY version")
        assert [row["version"] for row in recorded] == [version for version, _ in SqlStore.migrations()]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


# --- tenants -----------------------------------------------------------------------------------------------
async def test_tenants_are_created_read_and_listed(store: Store) -> None:
    first, second = new_id("ten"), new_id("ten")
    await store.create_tenant(first, "First vendor", 1_700_000_000_000_000)
    await store.create_tenant(second, "Second vendor", 1_700_000_000_000_001)
    assert await store.get_tenant(first) == {"id": first, "name": "First vendor", "created_at": 1_700_000_000_000_000}
    assert await store.get_tenant(new_id("ten")) is None
    listed = await store.list_tenants()
    assert [row["id"] for row in listed] == sorted(row["id"] for row in listed)
    assert {"id": second, "name": "Second vendor", "created_at": 1_700_000_000_000_001} in listed
    assert first in {row["id"] for row in listed}


async def test_a_new_tenant_starts_an_empty_event_chain(store: Store, tenant: str) -> None:
    assert await store.event_chain_head(tenant) == {"last_seq": 0, "last_hash": GENESIS_HASH}
    assert await all_events(store, tenant) == []


# --- objects -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("plural", sorted(RESOURCES))
async def test_an_inserted_object_reads_back_unchanged(store: Store, tenant: str, plural: str) -> None:
    resource = RESOURCES[plural]
    row = await create_in(store, tenant, plural)
    assert row["tenant_id"] == tenant
    assert await store.get(tenant, resource, row["id"]) == row
    async with store.transaction(tenant) as tx:
        assert await tx.get(resource, row["id"]) == row
        assert await tx.get(resource, row["id"], for_update=True) == row
    assert await all_rows(store, tenant, resource) == [row]


async def test_list_filters_on_the_declared_columns(store: Store, tenant: str) -> None:
    async with store.transaction(tenant) as tx:
        product = await create(tx, "products")
        other_product = await create(tx, "products")
        customer = await create(tx, "customers")
        held = await create(tx, "licenses", product_id=product["id"], customer_id=customer["id"], order_ref="PO-1")
        suspended = await create(tx, "licenses", product_id=product["id"], state="suspended")
        elsewhere = await create(tx, "licenses", product_id=other_product["id"])
    assert await all_rows(store, tenant, PRODUCTS, code=product["code"]) == [product]
    assert await all_rows(store, tenant, PRODUCTS, code="no-such-code") == []
    assert await all_rows(store, tenant, CUSTOMERS, email=customer["email"]) == [customer]
    assert await all_rows(store, tenant, LICENSES, product_id=product["id"]) == sorted([held, suspended], key=lambda r: r["id"])
    assert await all_rows(store, tenant, LICENSES, product_id=product["id"], state="active") == [held]
    assert await all_rows(store, tenant, LICENSES, state="suspended") == [suspended]
    assert await all_rows(store, tenant, LICENSES, customer_id=customer["id"]) == [held]
    assert await all_rows(store, tenant, LICENSES, order_ref="PO-1") == [held]
    assert await all_rows(store, tenant, LICENSES, product_id=other_product["id"]) == [elsewhere]
    with pytest.raises(KeyError):
        await store.list(tenant, LICENSES, {"key_hash": held["key_hash"]}, None, 10)


@pytest.mark.parametrize(("total", "limit"), [(0, 3), (1, 3), (6, 3), (7, 3), (10, 1), (5, 100)])
async def test_pages_walk_every_object_once_in_id_order(store: Store, tenant: str, total: int, limit: int) -> None:
    async with store.transaction(tenant) as tx:
        ids = [(await create(tx, "customers"))["id"] for _ in range(total)]
    walked: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = await store.list(tenant, CUSTOMERS, {}, after, limit)
        pages += 1
        assert len(page.rows) <= limit
        walked.extend(row["id"] for row in page.rows)
        # has_more is true exactly when objects remain after this page.
        assert page.has_more == (len(walked) < total)
        if not page.has_more:
            break
        assert len(page.rows) == limit
        after = page.rows[-1]["id"]
    assert walked == sorted(ids)
    assert pages == max(1, -(-total // limit))


async def test_a_page_after_the_last_id_is_empty(store: Store, tenant: str) -> None:
    rows = [await create_in(store, tenant, "products") for _ in range(3)]
    last = max(row["id"] for row in rows)
    page = await store.list(tenant, PRODUCTS, {}, last, 10)
    assert page.rows == [] and page.has_more is False
    page = await store.list(tenant, PRODUCTS, {}, None, 2)
    assert len(page.rows) == 2 and page.has_more is True


async def test_update_returns_the_new_row_and_bumps_updated_at(store: Store, tenant: str) -> None:
    long_ago = now_us() - 3_600_000_000
    product = await create_in(store, tenant, "products", created_at=long_ago, updated_at=long_ago)
    before_update = now_us()
    async with store.transaction(tenant) as tx:
        updated = await tx.update(PRODUCTS, product["id"], {"name": "Renamed", "description": "Now described"})
    assert updated is not None
    assert updated["updated_at"] >= before_update > long_ago
    assert updated == {**product, "name": "Renamed", "description": "Now described", "updated_at": updated["updated_at"]}
    assert await store.get(tenant, PRODUCTS, product["id"]) == updated


async def test_update_can_clear_a_column(store: Store, tenant: str) -> None:
    customer = await create_in(store, tenant, "customers", external_ref="crm-1")
    license_ = await create_in(store, tenant, "licenses", customer_id=customer["id"])
    async with store.transaction(tenant) as tx:
        updated = await tx.update(LICENSES, license_["id"], {"customer_id": None, "state": "revoked"})
    assert updated is not None and updated["customer_id"] is None and updated["state"] == "revoked"


async def test_update_of_a_missing_object_returns_none(store: Store, tenant: str) -> None:
    async with store.transaction(tenant) as tx:
        assert await tx.update(PRODUCTS, new_id("prd"), {"name": "Nobody"}) is None


async def test_delete_removes_the_object_once(store: Store, tenant: str) -> None:
    product = await create_in(store, tenant, "products")
    kept = await create_in(store, tenant, "products")
    async with store.transaction(tenant) as tx:
        assert await tx.delete(PRODUCTS, product["id"]) is True
        assert await tx.get(PRODUCTS, product["id"]) is None
    async with store.transaction(tenant) as tx:
        assert await tx.delete(PRODUCTS, product["id"]) is False
    assert await store.get(tenant, PRODUCTS, product["id"]) is None
    assert await all_rows(store, tenant, PRODUCTS) == [kept]


async def test_find_and_count_referencing_look_inside_the_tenant(store: Store, tenant: str) -> None:
    product = await create_in(store, tenant, "products")
    features = [await create_in(store, tenant, "features", product_id=product["id"]) for _ in range(3)]
    async with store.transaction(tenant) as tx:
        assert await tx.find(PRODUCTS, code=product["code"]) == product
        assert await tx.find(FEATURES, product_id=product["id"], code=features[1]["code"]) == features[1]
        assert await tx.find(PRODUCTS, code="no-such-code") is None
        assert await tx.count_referencing("features", "product_id", product["id"]) == 3
        assert await tx.count_referencing("licenses", "product_id", product["id"]) == 0


# --- tenant isolation --------------------------------------------------------------------------------------
@pytest.mark.parametrize("plural", sorted(RESOURCES))
async def test_no_read_or_write_of_one_tenant_reaches_another_tenants_objects(
    store: Store, tenant: str, other_tenant: str, plural: str
) -> None:
    resource = RESOURCES[plural]
    mine = await create_in(store, tenant, plural)
    theirs = await create_in(store, other_tenant, plural)
    findable = {f.name: mine[f.name] for f in resource.filters}

    # Reads through the store.
    assert await store.get(other_tenant, resource, mine["id"]) is None
    assert await all_rows(store, other_tenant, resource) == [theirs]
    for column, value in findable.items():
        assert mine not in await all_rows(store, other_tenant, resource, **{column: value})
    # Reads and writes inside the other tenant's transaction.
    async with store.transaction(other_tenant) as tx:
        assert await tx.get(resource, mine["id"]) is None
        assert await tx.get(resource, mine["id"], for_update=True) is None
        for column, value in findable.items():
            assert await tx.find(resource, **{column: value}) in (None, theirs)
        assert await tx.update(resource, mine["id"], {"created_at": 1}) is None
        assert await tx.delete(resource, mine["id"]) is False
        for table, column in resource.referenced_by:
            assert await tx.count_referencing(table, column, mine["id"]) == 0
    # The object is untouched, and still its own tenant's.
    assert await store.get(tenant, resource, mine["id"]) == mine
    assert await all_rows(store, tenant, resource) == [mine]
    if plural == "licenses":
        assert await store.find_license_by_key_hash(other_tenant, mine["key_hash"]) is None


async def test_events_keys_and_tokens_are_the_tenants_own(store: Store, tenant: str, other_tenant: str) -> None:
    async with store.transaction(tenant) as tx:
        await tx.append_event("product.created", "product", new_id("prd"), "test", {})
        await tx.insert_signing_key("k1", b"p" * 32, b"s" * 48, now_us())
        await tx.insert_token(
            {"id": new_id("tok"), "name": "t", "role": "admin", "secret_hash": b"h" * 32, "created_at": now_us()}
        )
    assert (await store.list_events(other_tenant, {}, None, 10)).rows == []
    assert await all_events(store, other_tenant) == []
    assert await store.event_chain_head(other_tenant) == {"last_seq": 0, "last_hash": GENESIS_HASH}
    assert await store.list_signing_keys(other_tenant) == []
    assert (await store.list_tokens(other_tenant, None, 10)).rows == []
    assert len((await store.list_events(tenant, {}, None, 10)).rows) == 1


# --- constraints -------------------------------------------------------------------------------------------
async def test_a_taken_code_is_refused_by_the_database(store: Store, tenant: str) -> None:
    product = await create_in(store, tenant, "products")
    with pytest.raises(ConflictError) as refused:
        async with store.transaction(tenant) as tx:
            await tx.insert(
                PRODUCTS,
                {
                    "id": new_id("prd"),
                    "code": product["code"],
                    "name": "Twin",
                    "description": None,
                    "created_at": 1,
                    "updated_at": 1,
                },
            )
    assert refused.value.code == "ALREADY_EXISTS"
    assert await all_rows(store, tenant, PRODUCTS) == [product]


async def test_two_rows_with_one_code_in_one_transaction_are_refused_and_neither_is_kept(store: Store, tenant: str) -> None:
    with pytest.raises(ConflictError):
        async with store.transaction(tenant) as tx:
            await create(tx, "products", code="same-code")
            await create(tx, "products", code="same-code")
    assert await all_rows(store, tenant, PRODUCTS) == []
    # The store is still usable after the refused transaction.
    assert (await create_in(store, tenant, "products", code="same-code"))["code"] == "same-code"


async def test_the_same_code_in_two_tenants_is_fine(store: Store, tenant: str, other_tenant: str) -> None:
    mine = await create_in(store, tenant, "products", code="shared-code")
    theirs = await create_in(store, other_tenant, "products", code="shared-code")
    assert await all_rows(store, tenant, PRODUCTS, code="shared-code") == [mine]
    assert await all_rows(store, other_tenant, PRODUCTS, code="shared-code") == [theirs]


async def test_an_update_to_a_taken_value_is_refused(store: Store, tenant: str) -> None:
    first = await create_in(store, tenant, "customers")
    second = await create_in(store, tenant, "customers")
    with pytest.raises(ConflictError):
        async with store.transaction(tenant) as tx:
            await tx.update(CUSTOMERS, second["id"], {"email": first["email"]})
    assert await store.get(tenant, CUSTOMERS, second["id"]) == second


async def test_a_feature_cannot_point_at_another_tenants_product(store: Store, tenant: str, other_tenant: str) -> None:
    theirs = await create_in(store, other_tenant, "products")
    with pytest.raises(ConflictError) as refused:
        async with store.transaction(tenant) as tx:
            await create(tx, "features", product_id=theirs["id"])
    assert refused.value.code == "RESOURCE_IN_USE"  # the foreign key, not a uniqueness check
    assert await all_rows(store, tenant, FEATURES) == []
    assert await all_rows(store, other_tenant, FEATURES) == []


async def test_a_license_cannot_point_at_another_tenants_policy_or_customer(store: Store, tenant: str, other_tenant: str) -> None:
    their_policy = await create_in(store, other_tenant, "policies")
    their_customer = await create_in(store, other_tenant, "customers")
    my_policy = await create_in(store, tenant, "policies")
    with pytest.raises(ConflictError):
        async with store.transaction(tenant) as tx:
            await create(tx, "licenses", product_id=my_policy["product_id"], policy_id=their_policy["id"])
    with pytest.raises(ConflictError):
        async with store.transaction(tenant) as tx:
            await create(
                tx, "licenses", policy_id=my_policy["id"], product_id=my_policy["product_id"], customer_id=their_customer["id"]
            )
    mine = await create_in(store, tenant, "licenses", policy_id=my_policy["id"], product_id=my_policy["product_id"])
    with pytest.raises(ConflictError):
        async with store.transaction(tenant) as tx:
            await tx.update(LICENSES, mine["id"], {"customer_id": their_customer["id"]})
    assert await all_rows(store, tenant, LICENSES) == [mine]


async def test_a_referenced_object_cannot_be_deleted(store: Store, tenant: str) -> None:
    feature = await create_in(store, tenant, "features")
    with pytest.raises(ConflictError) as refused:
        async with store.transaction(tenant) as tx:
            await tx.delete(PRODUCTS, feature["product_id"])
    assert refused.value.code == "RESOURCE_IN_USE"
    assert await store.get(tenant, PRODUCTS, feature["product_id"]) is not None


async def test_a_row_of_an_unknown_tenant_is_refused(store: Store) -> None:
    with pytest.raises(ConflictError):
        async with store.transaction(new_id("ten")) as tx:
            await create(tx, "products")


# --- transactions ------------------------------------------------------------------------------------------
class Boom(Exception):
    pass


async def test_a_transaction_that_raises_leaves_no_trace(store: Store, tenant: str) -> None:
    kept = await create_in(store, tenant, "products")
    async with store.transaction(tenant) as tx:
        await tx.append_event("product.created", "product", kept["id"], "test", {})
    head = await store.event_chain_head(tenant)
    events = await all_events(store, tenant)

    with pytest.raises(Boom):
        async with store.transaction(tenant) as tx:
            product = await create(tx, "products")
            await tx.update(PRODUCTS, kept["id"], {"name": "Changed"})
            await tx.append_event("product.created", "product", product["id"], "test", {"code": product["code"]})
            await tx.insert_signing_key("kid-lost", b"p" * 32, b"s" * 48, now_us())
            await tx.insert_token({"id": new_id("tok"), "name": "t", "role": "admin", "secret_hash": b"h" * 32, "created_at": 1})
            raise Boom

    assert await all_rows(store, tenant, PRODUCTS) == [kept]
    assert await store.event_chain_head(tenant) == head
    assert await all_events(store, tenant) == events
    assert await store.list_signing_keys(tenant) == []
    assert (await store.list_tokens(tenant, None, 10)).rows == []
    # The next transaction continues the chain where the committed one left it.
    async with store.transaction(tenant) as tx:
        await tx.append_event("product.updated", "product", kept["id"], "test", {})
    assert_chain(await all_events(store, tenant))
    assert (await store.event_chain_head(tenant))["last_seq"] == 2


async def test_a_cancelled_transaction_leaves_no_trace(store: Store, tenant: str) -> None:
    inside = asyncio.Event()

    async def interrupted() -> None:
        async with store.transaction(tenant) as tx:
            await create(tx, "products")
            await tx.append_event("product.created", "product", new_id("prd"), "test", {})
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(interrupted())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await all_rows(store, tenant, PRODUCTS) == []
    assert await store.event_chain_head(tenant) == {"last_seq": 0, "last_hash": GENESIS_HASH}
    await create_in(store, tenant, "products")


async def test_a_read_for_update_serialises_concurrent_read_modify_writes(store: Store, tenant: str) -> None:
    policy = await create_in(store, tenant, "policies", seats=1)

    async def add_a_seat() -> None:
        async with store.transaction(tenant) as tx:
            current = await tx.get(POLICIES, policy["id"], for_update=True)
            assert current is not None
            await asyncio.sleep(0.001)  # a lost update would slip in here
            await tx.update(POLICIES, policy["id"], {"seats": current["seats"] + 1})

    await asyncio.gather(*(add_a_seat() for _ in range(25)))
    assert (await store.get(tenant, POLICIES, policy["id"]))["seats"] == 26


# --- the event chain ---------------------------------------------------------------------------------------
async def test_appended_events_form_a_hash_chain(store: Store, tenant: str) -> None:
    appended = []
    for n in range(5):
        async with store.transaction(tenant) as tx:
            appended.append(await tx.append_event("product.updated", "product", "prd_x", "tok_y", {"n": n, "é": [1, None]}))
    async with store.transaction(tenant) as tx:  # several events in one transaction
        appended.append(await tx.append_event("a", "product", "prd_x", "tok_y", {}))
        appended.append(await tx.append_event("b", "product", "prd_z", "tok_y", {}))

    events = await all_events(store, tenant)
    # Linked in the order appended: the same events, now with their place in the chain.
    assert [{c: e[c] for c in appended[0]} for e in events] == appended
    assert_chain(events)
    assert events[0]["data"] == canonical_json({"n": 0, "é": [1, None]})
    assert await store.event_chain_head(tenant) == {"last_seq": 7, "last_hash": events[-1]["hash"]}

    page = await store.list_events(tenant, {}, 3, 2)
    assert [e["seq"] for e in page.rows] == [4, 5] and page.has_more is True
    page = await store.list_events(tenant, {}, 5, 2)
    assert [e["seq"] for e in page.rows] == [6, 7] and page.has_more is False
    assert [e["seq"] for e in (await store.list_events(tenant, {"subject_id": "prd_z"}, None, 10)).rows] == [7]
    assert [e["seq"] for e in (await store.list_events(tenant, {"type": "a"}, None, 10)).rows] == [6]


async def test_a_tenants_transactions_never_wait_for_each_others_commit(postgres_url: str) -> None:
    """The scale issue's first point: appending an event takes no lock a concurrent transaction of the tenant
    holds until its commit, and linking the chain does not wait for open transactions either. (SQLite lets
    one writer in at a time by design, so this holds on PostgreSQL only.)"""
    store = open_store(postgres_url)
    await store.open()
    try:
        tenant_id = await new_tenant(store)
        appended, release = asyncio.Event(), asyncio.Event()

        async def held_open() -> None:
            async with store.transaction(tenant_id) as tx:
                await create(tx, "products")
                await tx.append_event("product.created", "product", "prd_held", "test", {"held": True})
                appended.set()
                await release.wait()  # open until the others are done and linked

        async def quick(n: int) -> None:
            async with store.transaction(tenant_id) as tx:
                await create(tx, "products")
                await tx.append_event("product.created", "product", f"prd_{n}", "test", {"n": n})

        holder = asyncio.create_task(held_open())
        await asyncio.wait_for(appended.wait(), 10)
        # With a lock held to the commit (the old chain head), these would wait for `holder` and time out.
        await asyncio.wait_for(asyncio.gather(*(quick(n) for n in range(10))), 10)
        await asyncio.wait_for(store.chain_events(tenant_id), 10)
        assert (await query(postgres_url, "SELECT last_seq FROM event_chain WHERE tenant_id = ?", tenant_id))[0]["last_seq"] == 10
        release.set()
        await holder
        # Another transaction holding the chain's head through its commit (a writer linking its own events, a
        # chainer): writers do not wait for it either, they queue their events, and a chainer links them after.
        holder_conn = await asyncpg.connect(postgres_url)
        try:
            async with holder_conn.transaction():
                await holder_conn.execute("SELECT 1 FROM event_chain WHERE tenant_id = $1 FOR UPDATE", tenant_id)
                await asyncio.wait_for(asyncio.gather(*(quick(n) for n in range(10, 20))), 10)
                assert await count(postgres_url, "event_queue", tenant_id) == 10
        finally:
            await holder_conn.close()
        started = asyncio.get_running_loop().time()
        while await count(postgres_url, "events", tenant_id) < 21:  # read past the store, which would link them
            assert asyncio.get_running_loop().time() - started < 5, "the queued events were not linked"
            await asyncio.sleep(0.01)
        events = await all_events(store, tenant_id)
        assert_chain(events)
        # Linked in the order committed: the transaction held open comes after the ten that began after it.
        assert len(events) == 21 and events[10]["subject_id"] == "prd_held"
    finally:
        await store.close()


async def test_events_a_killed_process_left_queued_are_linked_by_another_within_the_sweep(store: Store) -> None:
    """A writer that found the chain's head taken queued its events, committed, and was killed before a chainer
    linked them: what it left is written here straight into the queue. A running store links them by itself
    (its sweep), though nobody reads the log and nothing tells it."""
    tenant_id = await new_tenant(store)
    for n in range(3):
        await write_past_the_store(
            store.url,
            "INSERT INTO event_queue (tenant_id, id, type, subject_type, subject_id, actor, data, created_at)"
            " VALUES (?, ?, 'license.checked', 'tenant', ?, 'killed', ?, ?)",
            tenant_id,
            new_id("evt"),
            tenant_id,
            canonical_json({"n": n}),
            now_us(),
        )
    started = asyncio.get_running_loop().time()
    while await count(store.url, "events", tenant_id) < 3:  # read past the store: a read through it would link them
        assert asyncio.get_running_loop().time() - started < 5, "the sweep did not link the dead process's events"
        await asyncio.sleep(0.05)
    assert await count(store.url, "event_queue", tenant_id) == 0
    events = await all_events(store, tenant_id)
    assert_chain(events)
    assert [orjson.loads(e["data"])["n"] for e in events] == [0, 1, 2]


async def test_events_written_by_two_stores_at_once_are_linked_within_a_bounded_wait(store_url: str) -> None:
    """Two store objects (two processes' worth) append to one tenant as fast as they can: every event is
    linked, once, in one gap-free chain, and none waits long outside it (the bound printed is the figure of
    docs/architecture.md)."""
    first, second = open_store(store_url), open_store(store_url)
    waits: list[float] = []
    linked: list[int] = []
    for each in (first, second):
        each.observe_chaining(lambda count, waited: (linked.append(count), waits.append(waited)))
    await first.open()
    await second.open()
    try:
        tenant_id = await new_tenant(first)

        async def write(writer: Store, n: int) -> None:
            async with writer.transaction(tenant_id) as tx:
                await tx.append_event("lease.renewed", "lease", f"lea_{n}", "test", {"n": n})
                await tx.append_event("usage.recorded", "license", f"lic_{n}", "test", {"n": n})

        await asyncio.gather(*(write(first if n % 2 else second, n) for n in range(200)))
        started = asyncio.get_running_loop().time()
        while await count(store_url, "events", tenant_id) < 400:
            assert asyncio.get_running_loop().time() - started < 5, "events stayed queued"
            await asyncio.sleep(0.02)
        events = await all_events(first, tenant_id)
        assert_chain(events)
        assert sorted((e["type"], orjson.loads(e["data"])["n"]) for e in events) == sorted(
            (kind, n) for n in range(200) for kind in ("lease.renewed", "usage.recorded")
        )
        # A transaction's events keep their order (concurrent transactions' events may interleave).
        place = {(e["type"], e["data"]): e["seq"] for e in events}
        assert all(
            place["lease.renewed", canonical_json({"n": n})] < place["usage.recorded", canonical_json({"n": n})]
            for n in range(200)
        )
        assert sum(linked) == 400 and len(linked) < 400  # linked in batches, never one event twice
        waits.sort()
        print(
            f"\n{store_url.split(':')[0]}: 400 events in {len(linked)} linkings; oldest event's wait: "
            f"median {waits[len(waits) // 2] * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms"
        )
        assert waits[-1] < 2.0  # bounded: the figure is milliseconds; a sweep (1 s) is the worst expected
    finally:
        await first.close()
        await second.close()


async def test_a_tampered_event_no_longer_matches_its_hash(store: Store, tenant: str) -> None:
    async with store.transaction(tenant) as tx:
        await tx.append_event("license.created", "license", "lic_1", "tok_1", {"seats": 1})
    [event] = await all_events(store, tenant)
    assert bytes(event["hash"]) == event_hash(event)
    assert bytes(event["hash"]) != event_hash({**event, "data": canonical_json({"seats": 2})})
    assert bytes(event["hash"]) != event_hash({**event, "prev_hash": b"\x01" * 32})


async def test_concurrent_appends_leave_a_gap_free_linked_chain(store: Store, tenant: str, other_tenant: str) -> None:
    async def write(n: int, tenant_id: str) -> None:
        async with store.transaction(tenant_id) as tx:
            product = await create(tx, "products")
            await asyncio.sleep(0)  # let the others interleave before the append
            await tx.append_event("product.created", "product", product["id"], "test", {"n": n})

    await asyncio.gather(*(write(n, tenant) for n in range(40)), *(write(n, other_tenant) for n in range(10)))
    events = await all_events(store, tenant)
    assert len(events) == 40
    assert_chain(events)
    assert sorted(orjson.loads(e["data"])["n"] for e in events) == list(range(40))
    assert await store.event_chain_head(tenant) == {"last_seq": 40, "last_hash": events[-1]["hash"]}
    assert len(await all_rows(store, tenant, PRODUCTS)) == 40
    assert_chain(await all_events(store, other_tenant))
    assert (await store.event_chain_head(other_tenant))["last_seq"] == 10


# --- idempotency -------------------------------------------------------------------------------------------
def request(key: str | None = None, body: bytes = b"create product") -> IdempotentRequest:
    return IdempotentRequest(key or unique("idem"), hashlib.sha256(body).digest())


async def test_a_repeated_request_replays_the_first_answer_and_writes_nothing(store: Store, tenant: str) -> None:
    req = request()
    async with store.transaction(tenant, req) as tx:
        assert tx.replay is None
        product = await create(tx, "products")
        await tx.append_event("product.created", "product", product["id"], "test", {})
        tx.remember(201, json.dumps({"id": product["id"]}))
    head = await store.event_chain_head(tenant)
    stored = await query(store.url, "SELECT * FROM idempotency_keys WHERE tenant_id = ?", tenant)

    async with store.transaction(tenant, req) as tx:
        assert tx.replay == StoredResponse(201, json.dumps({"id": product["id"]}))
        tx.remember(500, "a different answer")  # ignored: the first answer stands
    async with store.transaction(tenant, req) as tx:
        assert tx.replay == StoredResponse(201, json.dumps({"id": product["id"]}))

    assert await all_rows(store, tenant, PRODUCTS) == [product]
    assert await store.event_chain_head(tenant) == head
    assert await query(store.url, "SELECT * FROM idempotency_keys WHERE tenant_id = ?", tenant) == stored
    assert len(stored) == 1


async def test_a_key_reused_for_another_request_is_refused(store: Store, tenant: str) -> None:
    req = request()
    async with store.transaction(tenant, req) as tx:
        await create(tx, "products")
        tx.remember(201, "{}")
    with pytest.raises(IdempotencyKeyReusedError):
        async with store.transaction(tenant, request(req.key, b"another request")) as tx:
            await create(tx, "products")
    assert len(await all_rows(store, tenant, PRODUCTS)) == 1


async def test_idempotency_keys_are_per_tenant(store: Store, tenant: str, other_tenant: str) -> None:
    req = request()
    for tenant_id in (tenant, other_tenant):
        async with store.transaction(tenant_id, req) as tx:
            assert tx.replay is None
            await create(tx, "products")
            tx.remember(201, tenant_id)
    for tenant_id in (tenant, other_tenant):
        async with store.transaction(tenant_id, req) as tx:
            assert tx.replay == StoredResponse(201, tenant_id)
    # A third tenant may use the key for another request: it is not the same key there.
    async with store.transaction(await new_tenant(store), request(req.key, b"another request")) as tx:
        assert tx.replay is None


async def test_a_failed_first_attempt_leaves_the_key_unused(store: Store, tenant: str) -> None:
    req = request()
    with pytest.raises(Boom):
        async with store.transaction(tenant, req) as tx:
            await create(tx, "products")
            tx.remember(201, "lost")
            raise Boom
    async with store.transaction(tenant, req) as tx:
        assert tx.replay is None
        await create(tx, "products")
        tx.remember(201, "kept")
    async with store.transaction(tenant, req) as tx:
        assert tx.replay == StoredResponse(201, "kept")
    assert len(await all_rows(store, tenant, PRODUCTS)) == 1


async def test_concurrent_repeats_of_one_request_write_once(store: Store, tenant: str) -> None:
    req = request()
    outcomes: list[str] = []

    async def attempt() -> None:
        async with store.transaction(tenant, req) as tx:
            if tx.replay is not None:
                assert tx.replay == StoredResponse(201, "created")
                outcomes.append("replay")
                return
            await asyncio.sleep(0.01)  # widen the window a racing repeat would slip through
            product = await create(tx, "products")
            await tx.append_event("product.created", "product", product["id"], "test", {})
            tx.remember(201, "created")
            outcomes.append("insert")

    await asyncio.gather(*(attempt() for _ in range(50)))
    assert sorted(outcomes) == ["insert"] + ["replay"] * 49
    assert await count(store.url, "products", tenant) == 1
    assert len(await all_events(store, tenant)) == 1
    assert await count(store.url, "idempotency_keys", tenant) == 1


# --- licenses, keys and tokens -----------------------------------------------------------------------------
async def test_a_license_is_found_by_its_key_hash(store: Store, tenant: str) -> None:
    license_ = await create_in(store, tenant, "licenses")
    other = await create_in(store, tenant, "licenses")
    assert await store.find_license_by_key_hash(tenant, license_["key_hash"]) == license_
    assert await store.find_license_by_key_hash(tenant, other["key_hash"]) == other
    assert await store.find_license_by_key_hash(tenant, os.urandom(32)) is None


async def test_two_licenses_cannot_share_a_key_hash(store: Store, tenant: str) -> None:
    license_ = await create_in(store, tenant, "licenses")
    with pytest.raises(ConflictError):
        await create_in(store, tenant, "licenses", key_hash=license_["key_hash"])


async def test_a_new_signing_key_retires_the_active_one(store: Store, tenant: str) -> None:
    async with store.transaction(tenant) as tx:
        await tx.insert_signing_key("kid-1", b"\x01" * 32, b"seed-1", 1_000)
    assert await store.list_signing_keys(tenant) == [
        {
            "kid": "kid-1",
            "public_key": b"\x01" * 32,
            "sealed_seed": b"seed-1",
            "state": "active",
            "created_at": 1_000,
            "retired_at": None,
        }
    ]
    async with store.transaction(tenant) as tx:
        await tx.insert_signing_key("kid-2", b"\x02" * 32, b"seed-2", 2_000)
    assert await store.list_signing_keys(tenant) == [
        {
            "kid": "kid-2",
            "public_key": b"\x02" * 32,
            "sealed_seed": b"seed-2",
            "state": "active",
            "created_at": 2_000,
            "retired_at": None,
        },
        {
            "kid": "kid-1",
            "public_key": b"\x01" * 32,
            "sealed_seed": b"seed-1",
            "state": "retired",
            "created_at": 1_000,
            "retired_at": 2_000,
        },
    ]
    async with store.transaction(tenant) as tx:
        await tx.insert_signing_key("kid-3", b"\x03" * 32, b"seed-3", 3_000)
    keys = await store.list_signing_keys(tenant)
    assert [(k["kid"], k["state"], k["retired_at"]) for k in keys] == [
        ("kid-3", "active", None),
        ("kid-2", "retired", 3_000),
        ("kid-1", "retired", 2_000),  # retired once, when it was replaced
    ]


async def test_a_signing_key_id_is_not_reused(store: Store, tenant: str) -> None:
    async with store.transaction(tenant) as tx:
        await tx.insert_signing_key("kid-1", b"\x01" * 32, b"seed-1", 1_000)
    with pytest.raises(ConflictError):
        async with store.transaction(tenant) as tx:
            await tx.insert_signing_key("kid-1", b"\x09" * 32, b"seed-9", 2_000)
    assert [k["state"] for k in await store.list_signing_keys(tenant)] == ["active"]


def token_row(**overrides: Any) -> Row:
    return {
        "id": new_id("tok"),
        "name": "CI token",
        "role": "developer",
        "product_id": None,
        "secret_hash": os.urandom(32),
        "created_at": now_us(),
        "revoked_at": None,
        **overrides,
    }


async def test_tokens_are_stored_read_listed_and_revoked_once(store: Store, tenant: str, other_tenant: str) -> None:
    product = await create_in(store, tenant, "products")
    tokens = [token_row(), token_row(role="product", product_id=product["id"]), token_row(role="admin")]
    async with store.transaction(tenant) as tx:
        for token in tokens:
            await tx.insert_token(token)
    for token in tokens:
        assert await store.get_token(token["id"]) == {"tenant_id": tenant, **token}
    assert await store.get_token(new_id("tok")) is None

    first = await store.list_tokens(tenant, None, 2)
    rest = await store.list_tokens(tenant, first.rows[-1]["id"], 2)
    assert first.has_more is True and rest.has_more is False
    assert [t["id"] for t in first.rows + rest.rows] == sorted(t["id"] for t in tokens)

    target = tokens[0]["id"]
    async with store.transaction(other_tenant) as tx:  # another tenant cannot revoke it
        assert await tx.revoke_token(target, 5) is None
    assert (await store.get_token(target))["revoked_at"] is None
    async with store.transaction(tenant) as tx:
        revoked = await tx.revoke_token(target, 1_000)
    assert revoked is not None and revoked["revoked_at"] == 1_000
    async with store.transaction(tenant) as tx:
        again = await tx.revoke_token(target, 2_000)
    assert again is not None and again["revoked_at"] == 1_000
    assert (await store.get_token(target))["revoked_at"] == 1_000
    assert (await store.get_token(tokens[1]["id"]))["revoked_at"] is None
    async with store.transaction(tenant) as tx:
        assert await tx.revoke_token(new_id("tok"), 3_000) is None


# --- SQLite ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["not a database", "another application's database"])
async def test_a_sqlite_store_that_fails_to_open_leaves_no_connection_behind(tmp_path: os.PathLike[str], content: str) -> None:
    # Each aiosqlite connection runs a non-daemon thread: one left behind keeps the process from exiting.
    path = os.path.join(tmp_path, "unusable.db")
    if content == "not a database":
        with open(path, "wb") as garbage:
            garbage.write(b"this is not an SQLite database\n" * 200)
    else:  # a valid file whose own "tenants" table makes the first migration fail
        with closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE tenants (something_else TEXT)")
            db.commit()
    threads = threading.active_count()
    store = SqliteStore(path)
    with pytest.raises((sqlite3.DatabaseError, StoreUnavailableError)):
        await store.open()
    for _ in range(200):
        if threading.active_count() == threads:
            break
        await asyncio.sleep(0.01)
    assert threading.active_count() == threads


# --- SQLite across processes -------------------------------------------------------------------------------
async def test_two_sqlite_stores_on_one_file_write_concurrently(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "shared.db")
    first, second = SqliteStore(path), SqliteStore(path)
    try:
        await asyncio.gather(first.open(), second.open())
        tenant_id = await new_tenant(first)

        async def write(store: Store, n: int) -> None:
            async with store.transaction(tenant_id) as tx:
                # Read, then write, as the API does (a uniqueness check first): a transaction that began
                # reading and only then wrote could not wait for the other's lock, it would fail at once.
                assert await tx.find(PRODUCTS, code=f"code-{n}") is None
                await asyncio.sleep(0.001)  # let the other store's transactions run meanwhile
                product = await create(tx, "products", code=f"code-{n}")
                await tx.append_event("product.created", "product", product["id"], "test", {"n": n})

        await asyncio.gather(*(write(first if n % 2 else second, n) for n in range(40)))
        for reader in (first, second):
            events = await all_events(reader, tenant_id)
            assert len(events) == 40
            assert_chain(events)
            assert len(await all_rows(reader, tenant_id, PRODUCTS)) == 40
    finally:
        await first.close()
        await second.close()


_OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from licensor.model import new_id, now_us
    from licensor.store.sqlite import SqliteStore
    from licensor.model import RESOURCES

    async def main(path, tenant_id, n):
        store = SqliteStore(path)
        await store.open()
        try:
            for i in range(n):
                async with store.transaction(tenant_id) as tx:
                    await tx.find(RESOURCES["products"], code=f"child-{i}")
                    now = now_us()
                    await tx.insert(RESOURCES["products"], {"id": new_id("prd"), "code": f"child-{i}", "name": "p",
                                                            "description": None, "created_at": now, "updated_at": now})
                    await tx.append_event("product.created", "product", "prd", "child", {"n": i})
        finally:
            await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_a_sqlite_store_and_another_process_write_one_file_concurrently(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "shared.db")
    store = SqliteStore(path)
    await store.open()
    tenant_id = await new_tenant(store)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OTHER_PROCESS, path, tenant_id, "60", stderr=asyncio.subprocess.PIPE
    )
    finished = asyncio.create_task(child.communicate())
    try:
        mine = 0
        # Keep writing until the other process is done (and at least 20 times), so that the two overlap.
        while not finished.done() or mine < 20:
            async with store.transaction(tenant_id) as tx:
                await tx.find(PRODUCTS, code=f"parent-{mine}")
                await create(tx, "products", code=f"parent-{mine}")
                await tx.append_event("product.created", "product", "prd", "parent", {"n": mine})
            mine += 1
            await asyncio.sleep(0.002)
        _, errors = await finished
        assert child.returncode == 0, errors.decode()
        events = await all_events(store, tenant_id)
        assert len(events) == 60 + mine
        assert_chain(events)
        assert await count(store.url, "products", tenant_id) == 60 + mine
    finally:
        if child.returncode is None:
            child.kill()
        await finished
        await store.close()


async def test_a_license_generation_counts_its_changes_and_its_policys(store: Store, tenant: str, other_tenant: str) -> None:
    async with store.transaction(tenant) as tx:
        first = await create(tx, "licenses")
        sibling = await create(tx, "licenses", policy_id=first["policy_id"], product_id=first["product_id"])
        elsewhere = await create(tx, "licenses")
    ids = [first["id"], sibling["id"], elsewhere["id"]]
    assert await store.license_generations(tenant, ids) == dict.fromkeys(ids, 1)
    async with store.transaction(tenant) as tx:
        await tx.update(LICENSES, first["id"], {"order_ref": "PO-9"})  # the license itself
        await tx.update(RESOURCES["policies"], first["policy_id"], {"seats": 4})  # its policy: both its licenses
        await tx.advance_license_generations(product_id=elsewhere["product_id"])  # a push to another product
    assert await store.license_generations(tenant, ids) == {first["id"]: 3, sibling["id"]: 2, elsewhere["id"]: 2}
    assert await store.license_generations(other_tenant, ids) == {}  # another tenant sees none of them
