"""The store's license-plane part, on both stores: change announcements (the license cache's invalidation),
committed-event publication, subjects' licenses, usage totals counted atomically against quotas, the activations
holding a license's seats, and the cloud backend's leases (expiry, ending, the usage report's range)."""

from __future__ import annotations

import asyncio
import time

import pytest
from licensor.model import ACTIVATION, CREDENTIAL, LEASE, RESOURCES, new_id, now_us
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
    await asyncio.sleep(0.5)  # PostgreSQL's echo of that commit's notification, late on a busy machine
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
    for _ in range(200):  # the chainer links it (and tells the listeners) just after the commit
        if events:
            break
        await asyncio.sleep(0.01)
    assert tenant not in heard and [row["type"] for row in events[0]] == ["license.checked"]
    assert events[0][0]["seq"] == 1 and len(events[0][0]["hash"]) == 32
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
    product = await store.find_product_by_code(
        tenant, (await store.get(tenant, RESOURCES["products"], mine["product_id"]))["code"]
    )  # type: ignore[index]
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


async def test_license_activations_are_those_holding_seats_and_recent_replacements(
    store: Store, tenant: str, other_tenant: str
) -> None:
    license = await create_in(store, tenant, "licenses")
    now = now_us()
    hour = 3_600_000_000

    def activation(state: str, lapses_at: int, ended_at: int | None = None) -> Row:
        return {
            "id": new_id("act"),
            "license_id": license["id"],
            "state": state,
            "device_key": "k" * 43,
            "device_name": None,
            "fingerprint": "{}",
            "generation": 1,
            "mode": "online",
            "checkpoint_at": lapses_at,
            "lapses_at": lapses_at,
            "last_checkin_at": now,
            "last_request_digest": None,
            "recovery_of": None,
            "flagged": None,
            "ended_at": ended_at,
            "created_at": now,
            "updated_at": now,
        }

    heard: list[str | None] = []
    store.subscribe(heard.append)
    if store.url.startswith("postgresql"):  # the license's own announcement may still be on its way (NOTIFY)
        for _ in range(20):
            if tenant in heard:
                break
            await asyncio.sleep(0.05)
        heard.clear()
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


# --- leases (the cloud backend) --------------------------------------------------------------------------
HOUR = 3_600_000_000


async def cloud_license(store: Store, tenant_id: str, credentials: int = 1) -> tuple[Row, list[Row]]:
    """A license and its credentials, written as the cloud backend writes them."""
    license = await create_in(store, tenant_id, "licenses")
    now = now_us()
    async with store.transaction(tenant_id) as tx:
        made = [
            await tx.insert(
                CREDENTIAL,
                {
                    "id": new_id("crd"),
                    "license_id": license["id"],
                    "label": None,
                    "state": "active",
                    "secret_hash": "0" * 64,
                    "reissue_of": None,
                    "revoked_at": None,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            for _ in range(credentials)
        ]
    return license, made


def lease_row(credential: Row, state: str, created_at: int, expires_at: int, ended_at: int | None = None) -> Row:
    """A lease's columns as :meth:`CloudBackend.check_out` writes them (its id is given by :func:`insert_leases`)."""
    return {
        "license_id": credential["license_id"],
        "credential_id": credential["id"],
        "device_id": f"device-{created_at}",
        "device_name": None,
        "features": LEASE.field("features").api_to_column([]),
        "state": state,
        "secret_hash": "1" * 64,
        "expires_at": expires_at,
        "renewed_at": None,
        "renewals": 0,
        "ended_at": ended_at,
        "taken_over_by": None,
        "created_at": created_at,
        "updated_at": created_at,
    }


async def insert_leases(store: Store, tenant_id: str, leases: dict[str, Row]) -> dict[str, Row]:
    """Insert the leases, newest first; their ids sort as their created_at does (ids sort by creation time)."""
    by_age = sorted(leases.values(), key=lambda row: row["created_at"])
    for lease_id, row in zip(sorted(new_id("lse") for _ in by_age), by_age):
        row["id"] = lease_id
    async with store.transaction(tenant_id) as tx:
        for row in reversed(by_age):  # not in the order the store answers them
            await tx.insert(LEASE, row)
    return leases


async def lease_states(store: Store, tenant_id: str, leases: dict[str, Row]) -> dict[str, tuple[str, int | None]]:
    found = {name: await store.get(tenant_id, LEASE, row["id"]) for name, row in leases.items()}
    return {name: (row["state"], row["ended_at"]) for name, row in found.items() if row is not None}


async def test_expire_leases_marks_only_the_licenses_run_out_leases_and_returns_the_held_ones_oldest_first(
    store: Store, tenant: str, other_tenant: str
) -> None:
    license, (credential,) = await cloud_license(store, tenant)
    _, (neighbour,) = await cloud_license(store, tenant)  # another license of the same tenant
    _, (foreign,) = await cloud_license(store, other_tenant)
    now = now_us()
    mine = await insert_leases(
        store,
        tenant,
        {
            "held, newer": lease_row(credential, "active", now - HOUR, now + 1),
            "held, oldest": lease_row(credential, "active", now - 3 * HOUR, now + HOUR),
            "ran out": lease_row(credential, "active", now - 2 * HOUR, now - 1),
            "ran out just now": lease_row(credential, "active", now - 2 * HOUR + 1, now),
            "released": lease_row(credential, "released", now - 2 * HOUR + 2, now + HOUR, now - HOUR),
            "taken over": lease_row(credential, "taken_over", now - 2 * HOUR + 3, now - 1, now - HOUR),
        },
    )
    neighbours = await insert_leases(store, tenant, {"ran out": lease_row(neighbour, "active", now - HOUR, now - 1)})
    foreigners = await insert_leases(store, other_tenant, {"ran out": lease_row(foreign, "active", now - HOUR, now - 1)})
    before = await lease_states(store, tenant, mine)

    async with store.transaction(other_tenant) as tx:  # another tenant neither sees nor marks the license's leases
        assert await tx.expire_leases(license["id"], now) == []
    assert await lease_states(store, tenant, mine) == before

    async with store.transaction(tenant) as tx:
        held = await tx.expire_leases(license["id"], now)
    assert [row["id"] for row in held] == [mine["held, oldest"]["id"], mine["held, newer"]["id"]]
    assert all(row["state"] == "active" and row["tenant_id"] == tenant for row in held)
    assert await lease_states(store, tenant, mine) == {
        **before,
        "ran out": ("expired", now - 1),  # it ended when it ran out, not when it was noticed
        "ran out just now": ("expired", now),
    }
    assert await lease_states(store, tenant, neighbours) == {"ran out": ("active", None)}
    assert await lease_states(store, other_tenant, foreigners) == {"ran out": ("active", None)}
    async with store.transaction(tenant) as tx:  # nothing more to mark
        assert [row["id"] for row in await tx.expire_leases(license["id"], now)] == [row["id"] for row in held]


async def test_end_leases_ends_a_credentials_or_a_licenses_held_leases_and_returns_them(
    store: Store, tenant: str, other_tenant: str
) -> None:
    license, (first, second) = await cloud_license(store, tenant, credentials=2)
    _, (neighbour,) = await cloud_license(store, tenant)
    now = now_us()
    leases = await insert_leases(
        store,
        tenant,
        {
            "first's": lease_row(first, "active", now - 3 * HOUR, now + HOUR),
            "first's other": lease_row(first, "active", now - 2 * HOUR, now + HOUR),
            "first's ran out": lease_row(first, "active", now - 2 * HOUR + 1, now - 5),
            "first's released": lease_row(first, "released", now - 2 * HOUR + 2, now + HOUR, now - HOUR),
            "second's": lease_row(second, "active", now - HOUR, now + HOUR),
            "neighbour's": lease_row(neighbour, "active", now - HOUR + 1, now + HOUR),
        },
    )
    before = await lease_states(store, tenant, leases)

    async with store.transaction(other_tenant) as tx:  # another tenant's ids reach nothing
        assert await tx.end_leases(now, "revoked", credential_id=first["id"]) == []
        assert await tx.end_leases(now, "revoked", license_id=license["id"]) == []
    assert await lease_states(store, tenant, leases) == before

    async with store.transaction(tenant) as tx:
        ended_rows = await tx.end_leases(now, "revoked", credential_id=first["id"])
    assert [row["id"] for row in ended_rows] == [leases["first's"]["id"], leases["first's other"]["id"]]
    assert all((row["state"], row["ended_at"], row["tenant_id"]) == ("revoked", now, tenant) for row in ended_rows)
    ended = {**before, "first's": ("revoked", now), "first's other": ("revoked", now), "first's ran out": ("expired", now - 5)}
    assert await lease_states(store, tenant, leases) == ended

    async with store.transaction(tenant) as tx:
        assert [row["id"] for row in await tx.end_leases(now + 1, "taken_over", license_id=license["id"])] == [
            leases["second's"]["id"]
        ]
        assert await tx.end_leases(now + 1, "taken_over", license_id=license["id"]) == []  # none held any more
        assert await tx.end_leases(now + 1, "revoked", credential_id=first["id"]) == []
    assert await lease_states(store, tenant, leases) == {**ended, "second's": ("taken_over", now + 1)}

    for ids in ({"license_id": license["id"], "credential_id": first["id"]}, {}):
        with pytest.raises(ValueError):
            async with store.transaction(tenant) as tx:
                await tx.end_leases(now, "revoked", **ids)
    assert (await lease_states(store, tenant, leases))["neighbour's"] == ("active", None)


async def test_leases_overlapping_are_those_held_at_some_time_in_the_range(store: Store, tenant: str, other_tenant: str) -> None:
    license, (credential,) = await cloud_license(store, tenant)
    _, (neighbour,) = await cloud_license(store, tenant)
    start = now_us() - 48 * HOUR
    end = start + 24 * HOUR
    leases = await insert_leases(
        store,
        tenant,
        {
            # held in [start, end)
            "across the start": lease_row(credential, "active", start - HOUR, end + HOUR),
            "expired in it": lease_row(credential, "expired", start - HOUR + 1, start + 1, start + 1),
            "released in it": lease_row(credential, "released", start + 1, end + HOUR, end - 1),
            "ran out in it, not marked": lease_row(credential, "active", start + 2, start + HOUR),
            "started just before the end": lease_row(credential, "active", end - 1, end + HOUR),
            "taken over after it": lease_row(credential, "taken_over", start + 3, end + 2 * HOUR, end + HOUR),
            # not held in it
            "ended before it": lease_row(credential, "released", start - 3 * HOUR, start + HOUR, start - HOUR),
            "ended at its start": lease_row(credential, "revoked", start - 3 * HOUR + 1, end, start),
            "ran out at its start": lease_row(credential, "active", start - 3 * HOUR + 2, start),
            "expired before it": lease_row(credential, "expired", start - 3 * HOUR + 3, start - 1, start - 1),
            "started at its end": lease_row(credential, "active", end, end + HOUR),
            "started after it": lease_row(credential, "active", end + 1, end + HOUR),
        },
    )
    await insert_leases(store, tenant, {"neighbour's": lease_row(neighbour, "active", start - HOUR, end + HOUR)})
    held = [
        "across the start",
        "expired in it",
        "released in it",
        "ran out in it, not marked",
        "taken over after it",
        "started just before the end",
    ]  # oldest first
    assert sorted(held, key=lambda name: leases[name]["created_at"]) == held

    found = await store.leases_overlapping(tenant, license["id"], start, end, 100)
    assert [row["id"] for row in found] == [leases[name]["id"] for name in held]
    assert found[0] == {**leases["across the start"], "tenant_id": tenant}
    limited = await store.leases_overlapping(tenant, license["id"], start, end, 2)
    assert [row["id"] for row in limited] == [leases[name]["id"] for name in held[:2]]
    assert await store.leases_overlapping(other_tenant, license["id"], start, end, 100) == []
    assert await store.leases_overlapping(tenant, license["id"], end + 3 * HOUR, end + 4 * HOUR, 100) == []
