"""The client's side of the auto-update trigger, against the real gateway on both stores: a renewal, a revocation
and a device withdrawn reach a connected program (synchronous and asynchronous), a program that was away catches
up when it connects, updates are applied in order, and the delay is measured (on PostgreSQL across two gateway
processes: the change made on one, the device connected to the other)."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from licensor.testing import Gateway, GatewayFleet, make_vendor
from licensor.testing.vendors import Vendor
from licensor_client import AsyncClient, Client, RefusedError, RetryPolicy
from licensor_client.machine import Environment, MachineReading
from licensor_client.updates import LicenseUpdate, UpdateRejectedError

FAST = RetryPolicy(attempts=3, base_s=0.05, cap_s=0.2)


def machine() -> MachineReading:
    return MachineReading({"machine_id": "d" * 32, "cpu": "CPU", "disk": "D"}, {}, Environment("physical"))


async def device(url: str, vendor: Vendor, state: Path, flavour: type[Client] | type[AsyncClient] = AsyncClient) -> Any:
    keys = await vendor.public_keys()
    return flavour(url, vendor.tenant.id, vendor.product["code"], state_dir=state, public_keys=keys, machine=machine, retry=FAST)


async def renew(vendor: Vendor, year: int) -> None:
    await vendor.tenant.ok("POST", f"{vendor.license_path}/renew", json={"expires_at": f"{year}-01-01T00:00:00Z"})


async def test_a_connected_program_is_told_of_a_renewal_a_revocation_and_stops(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    app = await device(licensor_gateway.url, vendor, tmp_path / "state")
    await app.activate(vendor.license["key"])
    received: asyncio.Queue[LicenseUpdate] = asyncio.Queue()

    async def listen() -> None:
        async for update in app.updates():
            received.put_nowait(update)

    listener = asyncio.create_task(listen())  # the file reflects generation 1: nothing is sent until a change
    await renew(vendor, 2090)
    renewed = await asyncio.wait_for(received.get(), 10)
    assert renewed.generation == 2 and renewed.expires_at is not None
    file = app.license_file()
    assert file is not None and file.generation == 2 and file.expires_at == renewed.expires_at  # the file renewed with it
    assert app.check("draw").valid
    await vendor.tenant.ok("POST", f"{vendor.license_path}/suspend", json={"reason": "unpaid"})
    assert (await asyncio.wait_for(received.get(), 10)).state == "suspended"
    assert app.check("draw").code == "SUSPENDED"
    await vendor.tenant.ok("POST", f"{vendor.license_path}/reinstate", json={})
    assert (await asyncio.wait_for(received.get(), 10)).state == "active"
    assert app.check("draw").valid
    await vendor.tenant.ok("POST", f"{vendor.license_path}/revoke", json={"reason": "refund"})
    revoked = await asyncio.wait_for(received.get(), 10)
    assert revoked.stops and app.check("draw").code == "REVOKED"
    with pytest.raises(UpdateRejectedError) as stale:  # in order: nothing older is taken again
        app.apply_update(renewed.token)
    assert stale.value.code == "UPDATE_STALE"
    listener.cancel()
    await app.aclose()


async def test_a_device_withdrawn_by_the_vendor_stops_at_once(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    app = await device(licensor_gateway.url, vendor, tmp_path / "state")
    file = await app.activate(vendor.license["key"])
    received: asyncio.Queue[LicenseUpdate] = asyncio.Queue()

    async def listen() -> None:
        async for update in app.updates():
            received.put_nowait(update)

    listener = asyncio.create_task(listen())
    await vendor.tenant.ok("POST", f"/v1/admin/activations/{file.activation_id}/withdraw", json={"reason": "stolen laptop"})
    await asyncio.wait_for(received.get(), 10)
    assert app.check("draw").code == "WITHDRAWN"  # the check-in the update led to was answered WITHDRAWN
    listener.cancel()
    await app.aclose()


async def test_a_program_that_was_away_catches_up_when_it_connects(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    app = await device(licensor_gateway.url, vendor, tmp_path / "state")
    await app.activate(vendor.license["key"])
    for year in (2070, 2080):  # two renewals while the program is not running
        await renew(vendor, year)
    await app.aclose()
    app = await device(licensor_gateway.url, vendor, tmp_path / "state")  # the next start
    updates = app.updates()
    caught_up = await asyncio.wait_for(anext(updates), 10)
    assert caught_up.generation == 3 and app.license_file().expires_at == caught_up.expires_at  # type: ignore[union-attr]
    await updates.aclose()
    await app.aclose()


async def test_a_program_that_never_listens_gets_the_change_at_its_next_check_in(
    licensor_gateway: Gateway, tmp_path: Path
) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    app = await device(licensor_gateway.url, vendor, tmp_path / "state")
    await app.activate(vendor.license["key"])
    await renew(vendor, 2088)
    renewed = await app.check_in()
    assert renewed.license_generation == 2 and renewed.expires_at == 3723753600  # 2088-01-01
    await vendor.tenant.ok("POST", f"{vendor.license_path}/revoke", json={"reason": "refund"})
    with pytest.raises(RefusedError) as refused:
        await app.check_in()
    assert refused.value.code == "REVOKED" and app.check("draw").code == "REVOKED"  # the answer is kept
    await app.aclose()


async def test_a_synchronous_program_watches_in_a_thread(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    app = await device(licensor_gateway.url, vendor, tmp_path / "state", Client)
    await asyncio.to_thread(app.activate, vendor.license["key"])
    seen: list[int] = []
    arrived = threading.Event()

    def on_update(update: LicenseUpdate) -> None:
        seen.append(update.generation)
        arrived.set()

    watcher = app.watch(on_update)
    await renew(vendor, 2075)
    assert await asyncio.to_thread(arrived.wait, 10)
    await asyncio.to_thread(watcher.stop)
    assert seen == [2] and not watcher.running and watcher.error is None  # not the generation the file held already
    app.close()


async def test_a_cloud_program_listens_with_its_lease(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "cloud", product="cad")
    made = await vendor.tenant.ok("POST", f"{vendor.license_path}/credentials", 201, json={})
    (tmp_path / "credential").write_bytes(orjson.dumps(made["credential_file"]))
    app = AsyncClient.from_credential_file(tmp_path / "credential", state_dir=tmp_path / "state", retry=FAST)
    async with app.lease("draw"):
        updates = app.updates()
        assert (await asyncio.wait_for(anext(updates), 10)).generation == 1
        await vendor.tenant.ok("POST", f"{vendor.license_path}/revoke", json={"reason": "refund"})
        assert (await asyncio.wait_for(anext(updates), 10)).state == "revoked"
        assert app.check("draw").code == "REVOKED"
        await updates.aclose()
    await app.aclose()


@pytest.mark.alone
async def test_a_renewal_reaches_a_connected_program_within_two_seconds(licensor_fleet: GatewayFleet, tmp_path: Path) -> None:
    """20 renewals: the delay from the admin API's answer to the program's applied update (its file renewed too).
    On PostgreSQL the program is connected to the other gateway process than the one the renewal goes to."""
    gateway = licensor_fleet.gateway
    vendor = await make_vendor(gateway, "activation", product="cad")
    app = await device(licensor_fleet.urls[-1], vendor, tmp_path / "state")
    await app.activate(vendor.license["key"])
    received: asyncio.Queue[tuple[float, LicenseUpdate]] = asyncio.Queue()

    async def listen() -> None:
        async for update in app.updates():
            received.put_nowait((time.monotonic(), update))

    listener = asyncio.create_task(listen())
    await renew(vendor, 2099)  # the first, unmeasured: the connection is made meanwhile
    await asyncio.wait_for(received.get(), 10)
    delays = []
    for n in range(20):
        started = time.monotonic()
        await renew(vendor, 2100 + n)
        at, update = await asyncio.wait_for(received.get(), 10)
        assert update.generation == n + 3
        delays.append(at - started)
    listener.cancel()
    await app.aclose()
    print(
        f"\nupdate delay on {licensor_fleet.store} ({len(licensor_fleet.urls)} gateway process(es)): "
        f"median {statistics.median(delays) * 1000:.1f} ms, worst {max(delays) * 1000:.1f} ms of {len(delays)}"
    )
    assert max(delays) < 2.0
