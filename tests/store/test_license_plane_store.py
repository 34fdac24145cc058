"""The store's license-plane part, on both stores: change announcements (the license cache's invalidation),
committed-event publication, subjects' licenses, and usage totals counted atomically against quotas."""

from __future__ import annotations

import asyncio
import time

import pytest

from licensor.model import RESOURCES
from licensor.store import Row, Store, open_store
from tests.store.test_store import create, create_in, new_tenant, other_tenant, tenant  # noqa: F401 (fixtures)

LICENSES = RESOURCES["licenses"]


async def test_a_committed_change_is_announced_after_the_commit_and_a_rolled_back_one_never(store: Store, tenant: str) -> None:
    heard: list[str | None] = []
    events: list[list[Row]] = []
    store.subscribe(heard.append)
    store.subscribe_events(events.append)
    await create_in(store, tenant, "products")
    assert heard.count(tenant) >= 1 and [row["type"] for batch in events for row in batch] == []
    heard.clear()
    with pytest.raises(RuntimeError):
        async with store.transaction(tenant) as tx:
            await create(tx, "products")
            await tx.append_event("product.created", "product", "prd_x", "test", {})
            raise RuntimeError("roll back")
    await asyncio.sleep(0.2)  # a notification of PostgreSQL, had there been one, would have arrived
    assert tenant not in heard and events == []
    async with store.transaction(tenant) as tx:
        await tx.append_event("license.checked", "tenant", tenant, "test", {"count": 1})  # an event alone changes nothing
    assert tenant not in heard and [row["type"] for row in events[0]] == ["license.checked"]
    assert store.announcements_live


async def test_another_store_on_the_same_postgresql_database_hears_the_change(postgres_url: str) -> None:
    writer, listener = open_store(postgres_url), open_store(postgres_url)
    await writer.open()
    await listener.open()
    try:
        tenant = await new_tenant(writer)
        heard: asyncio.Queue[str | None] = asyncio.Queue()
        listener.subscribe(heard.put_nowait)
        started = time.monotonic()
        await create_in(writer, tenant, "products")
        while (news := await asyncio.wait_for(heard.get(), timeout=5)) != tenant:
            pass
        assert news == tenant and time.monotonic() - started < 1.0
    finally:
        await writer.close()
        await listener.close()
    assert not listener.announcements_live


async def test_subjects_licenses_are_found_within_the_tenant_and_product(store: Store, tenant: str, other_tenant: str) -> None:
    mine = await create_in(store, tenant, "licenses", subject="user-1")
    await create_in(store, tenant, "licenses", subject="user-2")
    elsewhere = await create_in(store, other_tenant, "licenses", subject="user-1")
    found = await store.licenses_of_subject(tenant, mine["product_id"], "user-1")
    assert [row["id"] for row in found] == [mine["id"]]
    assert await store.licenses_of_subject(tenant, elsewhere["product_id"], "user-1") == []
    product = await store.find_product_by_code(tenant, (await store.get(tenant, RESOURCES["products"], mine["product_id"]))["code"])  # type: ignore[index]
    assert product is not None and product["id"] == mine["product_id"]
    assert await store.find_product_by_code(other_tenant, product["code"]) is None


@pytest.mark.parametrize("quota", [None, 50])
async def test_usage_adds_up_atomically_against_the_quota(store: Store, tenant: str, quota: int | None) -> None:
    license = await create_in(store, tenant, "licenses", subject="user-1")

    async def report() -> int | None:
        async with store.transaction(tenant) as tx:
            return await tx.add_usage(license["id"], "user-1", "calls", "2026-11", 1, quota)

    totals = await asyncio.gather(*(report() for _ in range(80)))
    recorded = [total for total in totals if total is not None]
    assert sorted(recorded) == list(range(1, (quota or 80) + 1))
    async with store.transaction(tenant) as tx:
        assert await tx.add_usage(license["id"], "user-1", "calls", "2026-12", 51, 50) is None  # alone too much
    rows = await store.usage_totals(tenant, [license["id"]], "user-1", None)
    assert [(row["period"], row["used"]) for row in rows] == [("2026-11", quota or 80)]  # no zero row for 2026-12
    assert await store.usage_totals(tenant, [license["id"]], "user-2", None) == []
    assert await store.usage_totals(tenant, [], "user-1", None) == []


async def test_license_activations_are_those_holding_seats_and_recent_replacements(store: Store, tenant: str, other_tenant: str) -> None:
    from licensor.model import ACTIVATION, new_id, now_us

    license = await create_in(store, tenant, "licenses")
    now = now_us()
    hour = 3_600_000_000

    def activation(state: str, lapses_at: int, ended_at: int | None = None) -> Row:
        return {"id": new_id("act"), "license_id": license["id"], "state": state, "device_key": "k" * 43, "device_name": None,
                "fingerprint": "{}", "generation": 1, "mode": "online", "checkpoint_at": lapses_at, "lapses_at": lapses_at,
                "last_checkin_at": now, "last_request_digest": None, "recovery_of": None, "flagged": None,
                "ended_at": ended_at, "created_at": now, "updated_at": now}

    heard: list[str | None] = []
    store.subscribe(heard.append)
    rows = {
        "active": activation("active", now - hour),  # its file lapsed: still bound, still a seat
        "suspended": activation("suspended", now + hour),
        "withdrawn, file valid": activation("withdrawn", now + hour, now),
        "withdrawn, file lapsed": activation("withdrawn", now - 1, now - hour),
        "replaced recently": activation("replaced", now + hour, now - hour),
        "replaced long ago": activation("replaced", now + hour, now - 100 * hour),
        "deactivated": activation("deactivated", now + hour, now),
    }
    async with store.transaction(tenant) as tx:
        for row in rows.values():
            await tx.insert(ACTIVATION, row)
    assert tenant not in heard  # a backend's own state is not a License Central change: the caches keep theirs
    async with store.transaction(tenant) as tx:
        found = {row["id"] for row in await tx.license_activations(license["id"], now, now - 2 * hour)}
    expected = ("active", "suspended", "withdrawn, file valid", "replaced recently")
    assert found == {rows[name]["id"] for name in expected}
    async with store.transaction(other_tenant) as tx:
        assert await tx.license_activations(license["id"], now, 0) == []  # another tenant sees none of them
