"""The event log's growth under checks, measured on both stores (docs/retention.md: the log is never pruned, so an
operator sizes the disk by it).

Which checks write events, and how many: a cloud heartbeat appends one ``lease.renewed`` event, always; a
``/v1/check`` is counted in memory and written as one ``license.checked`` event per license and verdict code per
flush of the outcomes (about a second), so a burst of checks of one license within a flush is one event, and
checks in separate flushes are one event each. The bytes are what the ``events`` table and its indexes grew by on
disk (SQLite: its pages, from ``dbstat``; PostgreSQL: ``pg_total_relation_size``), divided by the events added.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing

import asyncpg
from cloud_kit import vendor
from licensor.gateway import keys
from licensor.testing import Gateway

HEARTBEATS = 300
CHECKS = 300
DEVICES = 10


async def events_bytes(gateway: Gateway) -> int:
    """The bytes the event log takes on disk: the table and its indexes (every tenant's)."""
    url = gateway.store_url
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url[len("sqlite:///") :])) as db:
            row = db.execute(
                "SELECT SUM(pgsize) FROM dbstat WHERE name IN (SELECT name FROM sqlite_schema WHERE tbl_name = 'events')"
            ).fetchone()
        return int(row[0])
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT pg_total_relation_size('events')"))
    finally:
        await conn.close()


async def tenant_events(gateway: Gateway, tenant_id: str) -> list[tuple[str, str]]:
    """(type, data) of the tenant's events, oldest first."""
    return [(event["type"], event["data"]) async for event in gateway.store.iter_events(tenant_id)]


async def test_a_heartbeat_writes_one_event_and_checks_one_per_license_and_flush(licensor_gateway: Gateway) -> None:
    gateway = licensor_gateway
    shop = await vendor(gateway, seats=DEVICES, lease_ttl_seconds=3_600, heartbeat_interval_seconds=600)
    credential = await shop.credential("fleet")
    devices = [shop.device(credential) for _ in range(DEVICES)]
    for device in devices:
        assert (await device.check_out()).status == 201
    outcomes = gateway.app[keys.OUTCOMES]
    await outcomes.stop()  # flushed by hand from here on, so that a test's second is not a flush's
    check = {"tenant": shop.tenant.id, "product": "cad", "license_key": shop.license["key"]}

    async def measured(action: Callable[[], Awaitable[None]]) -> tuple[int, int, list[tuple[str, str]]]:
        """(events added, bytes added, the events) by ``action`` and a flush of the outcomes."""
        before, size = len(await tenant_events(gateway, shop.tenant.id)), await events_bytes(gateway)
        await action()
        await outcomes.flush()
        after = await tenant_events(gateway, shop.tenant.id)
        return len(after) - before, await events_bytes(gateway) - size, after[before:]

    async def heartbeats() -> None:
        for n in range(HEARTBEATS):
            assert (await devices[n % DEVICES].heartbeat()).status == 200

    async def checks_each_flushed() -> None:
        for _ in range(CHECKS):
            assert (await gateway.call("POST", "/v1/check", json=check)).body["verdict"]["code"] == "VALID"
            await outcomes.flush()

    async def burst() -> None:
        for n in range(CHECKS):
            answer = await gateway.call("POST", "/v1/check", json={**check, "nonce": f"burst-{n:06d}"})
            assert answer.body["verdict"]["code"] == "VALID"

    beats, beat_bytes, beat_events = await measured(heartbeats)
    assert beats == HEARTBEATS and {kind for kind, _ in beat_events} == {"lease.renewed"}
    checked, check_bytes, check_events = await measured(checks_each_flushed)
    assert checked == CHECKS and {kind for kind, _ in check_events} == {"license.checked"}
    bursts, _, burst_events = await measured(burst)
    assert bursts == 1 and '"count":300' in burst_events[0][1]

    store = gateway.store_url.split(":")[0]
    per_beat, per_check = beat_bytes / beats, check_bytes / checked
    data_beat = sum(len(data) for _, data in beat_events) / beats
    data_check = sum(len(data) for _, data in check_events) / checked
    print(
        f"\n[{store}] lease.renewed: {per_beat:.0f} bytes per event on disk ({data_beat:.0f} of JSON data),"
        f" {per_beat:.0f} MB per million heartbeats; license.checked: {per_check:.0f} bytes per event"
        f" ({data_check:.0f} of JSON data), at most {per_check:.0f} MB per million checks (one per check in"
        f" separate seconds); a burst of {CHECKS} checks of one license in a second: {bursts} event"
    )
    # What an operator's disk plan rests on: bounds that fail if an event grows (a key, a body) or a check starts
    # writing more than its aggregate.
    assert 150 < per_beat < 2_500 and 150 < per_check < 1_500
