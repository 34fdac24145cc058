"""The auto-update trigger on the real gateway, on both stores: license generations counted by every change made
in License Central, GET /v1/updates as a stream (server-sent events) and as a long poll, signed updates in order,
a device that was away catching up, and connections ended at shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from licensor.testing import Gateway, make_vendor
from licensor.testing.vendors import Vendor
from licensor_client.updates import UpdateRejectedError, read_update


async def generation(vendor: Vendor) -> int:
    return int((await vendor.tenant.ok("GET", vendor.license_path))["generation"])


async def test_every_change_in_license_central_counts_the_generation_up(licensor_gateway: Gateway) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad", seats=2)
    other = await vendor.tenant.license(vendor.policy["id"])
    seen = [await generation(vendor)]
    changes: list[tuple[str, str, dict[str, Any]]] = [
        ("PATCH", vendor.license_path, {"order_ref": "PO-7"}),
        ("POST", f"{vendor.license_path}/suspend", {}),
        ("POST", f"{vendor.license_path}/reinstate", {}),
        ("POST", f"{vendor.license_path}/renew", {"expires_at": "2099-01-01T00:00:00Z"}),
        ("PATCH", f"/v1/admin/policies/{vendor.policy['id']}", {"seats": 3}),  # the policy: its licenses
        ("POST", f"{vendor.license_path}/push-update", {}),
        ("POST", f"/v1/admin/products/{vendor.product['id']}/push-update", {}),
    ]
    for method, path, body in changes:
        await vendor.tenant.ok(method, path, json=body)
        seen.append(await generation(vendor))
    assert seen == list(range(1, len(changes) + 2))
    # The policy change and the product push reached the other license of the product too.
    assert (await vendor.tenant.ok("GET", f"/v1/admin/licenses/{other['id']}"))["generation"] == 3
    events = {e["type"] for e in await vendor.events()}
    assert {"license.update_pushed", "product.update_pushed"} <= events


async def stream(gateway: Gateway, vendor: Vendor, after: int = 0) -> AsyncIterator[str]:
    """The up1 tokens of a GET /v1/updates stream, as they come."""
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
        http.stream(
            "GET",
            "/v1/updates",
            params={"tenant": vendor.tenant.id, "product": vendor.product["code"], "after": str(after)},
            headers={"Accept": "text/event-stream", "Authorization": f"License {vendor.license['key']}"},
        ) as response,
    ):
        assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                yield line.removeprefix("data: ")


async def test_a_connected_device_receives_each_change_signed_and_in_order(licensor_gateway: Gateway) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    keys = await vendor.public_keys()
    expected = {"tenant": vendor.tenant.id, "product": "cad", "license_id": vendor.license["id"]}
    received: asyncio.Queue[tuple[float, str]] = asyncio.Queue()

    async def listen() -> None:
        async for token in stream(licensor_gateway, vendor):
            received.put_nowait((time.monotonic(), token))

    listener = asyncio.create_task(listen())
    _, first = await asyncio.wait_for(received.get(), 10)
    held = read_update(first, keys, **expected)  # a device that knew nothing gets the current state at once
    assert (held.generation, held.state) == (1, "active")
    delays = []
    for _ in range(5):
        started = time.monotonic()
        await vendor.tenant.ok(
            "POST", f"{vendor.license_path}/renew", json={"expires_at": f"20{50 + held.generation}-01-01T00:00:00Z"}
        )
        at, token = await asyncio.wait_for(received.get(), 10)
        delays.append(at - started)
        update = read_update(token, keys, **expected, after=held.generation)
        assert update.generation == held.generation + 1 and update.expires_at is not None
        with pytest.raises(UpdateRejectedError) as stale:  # applied in order: an old one again is refused
            read_update(first, keys, **expected, after=update.generation)
        assert stale.value.code == "UPDATE_STALE"
        held = update
    await vendor.tenant.ok("POST", f"{vendor.license_path}/revoke", json={"reason": "refund"})
    _, token = await asyncio.wait_for(received.get(), 10)
    revoked = read_update(token, keys, **expected, after=held.generation)
    assert revoked.state == "revoked" and revoked.stops
    listener.cancel()
    assert max(delays) < 2.0, delays


async def test_a_device_that_was_away_catches_up_and_a_long_poll_waits(licensor_gateway: Gateway) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    for _ in range(3):
        await vendor.tenant.ok("POST", f"{vendor.license_path}/push-update", json={})
    headers = {"Authorization": f"License {vendor.license['key']}"}
    params = {"tenant": vendor.tenant.id, "product": "cad"}
    caught_up = await licensor_gateway.call("GET", "/v1/updates", params={**params, "after": "1", "wait": "0"}, headers=headers)
    assert caught_up.status == 200 and caught_up.body["generation"] == 4 and caught_up.body["update"].startswith("up1.")
    current = await licensor_gateway.call("GET", "/v1/updates", params={**params, "after": "4", "wait": "0"}, headers=headers)
    assert (current.status, current.body["generation"], current.body["update"]) == (200, 4, None)

    async def push_soon() -> None:
        await asyncio.sleep(0.3)
        await vendor.tenant.ok("POST", f"{vendor.license_path}/push-update", json={})

    pusher = asyncio.create_task(push_soon())
    started = time.monotonic()
    waited = await licensor_gateway.call("GET", "/v1/updates", params={**params, "after": "4", "wait": "20"}, headers=headers)
    await pusher
    assert waited.body["generation"] == 5 and 0.2 < time.monotonic() - started < 5


async def test_only_the_license_holder_listens(licensor_gateway: Gateway) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    other = await make_vendor(licensor_gateway, "activation", name="Other", product="cad")
    params = {"tenant": vendor.tenant.id, "product": "cad", "wait": "0"}
    nothing = await licensor_gateway.call("GET", "/v1/updates", params=params)
    assert (nothing.status, nothing.code) == (401, "LICENSE_REQUIRED")
    foreign = await licensor_gateway.call(
        "GET", "/v1/updates", params=params, headers={"Authorization": f"License {other.license['key']}"}
    )
    assert (foreign.status, foreign.code) == (401, "LICENSE_INVALID")
    wrong = await licensor_gateway.call(
        "GET", "/v1/updates", params={**params, "product": "other"}, headers={"Authorization": f"License {vendor.license['key']}"}
    )
    assert (wrong.status, wrong.code) == (404, "PRODUCT_MISMATCH")
