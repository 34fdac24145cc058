"""The license cache: checks read from it, and a change made through the admin API is seen by the next check,
in the same process and, on PostgreSQL, in another gateway process (LISTEN/NOTIFY) within a second."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from licensor.gateway import keys
from licensor.testing import gateway_process, running_gateway, wait_ready

from tests.central.conftest import Gateway, Tenant, db_execute
from tests.example_backend import ExamplePlugin

PROPAGATION_LIMIT_S = 1.0


def _days_from_now(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _licensed(tenant: Tenant) -> dict[str, Any]:
    product = await tenant.product(code="cad")
    await tenant.feature(product["id"], "export")
    policy = await tenant.policy(product["id"], features=[{"code": "export"}])
    license = await tenant.license(policy["id"], starts_at=_days_from_now(-10))
    return {
        "product": product,
        "policy": policy,
        "license": license,
        "check": {"tenant": tenant.id, "product": "cad", "license_key": license["key"], "features": ["export"]},
    }


async def test_checks_are_answered_from_the_cache(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    answers = gateway.app[keys.ANSWERS]  # an identical repeat is answered from the remembered answers
    for _ in range(3):
        assert (await gateway.call("POST", "/v1/check", json=made["check"])).body["verdict"]["code"] == "VALID"
    hits = answers.hits
    # A change behind the store's back (no announcement) is not seen: the answer really comes from memory.
    await db_execute(gateway.store_url, "UPDATE licenses SET state = 'suspended' WHERE id = ?", made["license"]["id"])
    assert (await gateway.call("POST", "/v1/check", json=made["check"])).body["verdict"]["code"] == "VALID"
    assert answers.hits > hits
    # The same change through the admin API (here: reinstating, then revoking) is seen by the very next check.
    await db_execute(gateway.store_url, "UPDATE licenses SET state = 'active' WHERE id = ?", made["license"]["id"])
    await tenant.ok("POST", f"/v1/admin/licenses/{made['license']['id']}/revoke")
    assert (await gateway.call("POST", "/v1/check", json=made["check"])).body["verdict"]["code"] == "REVOKED"


async def test_every_kind_of_change_is_seen_by_the_next_check(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    check = made["check"]

    async def code(**changes: Any) -> str:
        return (await gateway.call("POST", "/v1/check", json={**check, **changes})).body["verdict"]["code"]  # type: ignore[no-any-return]

    assert await code() == "VALID"
    await tenant.ok("PATCH", f"/v1/admin/policies/{made['policy']['id']}", json={"features": []})
    assert await code() == "FEATURE_NOT_ENTITLED"
    await tenant.ok("PATCH", f"/v1/admin/licenses/{made['license']['id']}", json={"overrides": {"features": {"export": 3}}})
    assert await code() == "VALID"
    await tenant.ok("PATCH", f"/v1/admin/licenses/{made['license']['id']}", json={"expires_at": _days_from_now(-1)})
    assert await code() == "EXPIRED"
    await tenant.ok("PATCH", f"/v1/admin/licenses/{made['license']['id']}", json={"expires_at": None})
    assert await code() == "VALID"
    await tenant.ok("POST", f"/v1/admin/licenses/{made['license']['id']}/suspend")
    assert await code() == "SUSPENDED"


async def test_a_revoked_token_is_refused_at_once(gateway: Gateway, tenant: Tenant) -> None:
    token = await tenant.token("developer")
    assert (await gateway.call("GET", "/v1/admin/products", token=token)).status == 200  # now cached
    listed = await tenant.ok("GET", "/v1/admin/tokens", params={"limit": "200"})
    token_id = next(item["id"] for item in listed["data"] if item["role"] == "developer")
    await tenant.ok("DELETE", f"/v1/admin/tokens/{token_id}")
    answer = await gateway.call("GET", "/v1/admin/products", token=token)
    assert (answer.status, answer.code) == (401, "TOKEN_REVOKED")


async def test_check_outcomes_reach_the_event_log(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    for _ in range(3):
        await gateway.call("POST", "/v1/check", json=made["check"])
    await gateway.call("POST", "/v1/check", json={**made["check"], "features": ["print"]})
    await gateway.app[keys.OUTCOMES].flush()  # as the background task does about once a second
    events = await tenant.ok("GET", "/v1/admin/events", params={"type": "license.checked", "subject_id": made["license"]["id"]})
    counts = {event["data"]["code"]: event["data"]["count"] for event in events["data"]}
    assert counts == {"VALID": 3, "FEATURE_NOT_ENTITLED": 1}


# --- two gateway processes on one PostgreSQL ----------------------------------------------------------
@pytest.fixture
def second_gateway(postgres_url: str, tmp_path: os.PathLike[str]) -> Iterator[tuple[str, bytes]]:
    """Another gateway process (``licensor serve``) on the session's PostgreSQL database: (its URL, the master
    key both gateways share)."""
    master_key = os.urandom(32)
    with gateway_process(postgres_url, str(tmp_path), master_key) as url:
        yield url, master_key


async def test_a_change_reaches_another_gateway_process_within_a_second(
    postgres_url: str, tmp_path: os.PathLike[str], second_gateway: tuple[str, bytes]
) -> None:
    other_url, master_key = second_gateway
    async with (
        running_gateway(postgres_url, str(tmp_path), (ExamplePlugin(),), master_key=master_key) as gateway,
        aiohttp.ClientSession() as session,
    ):
        await wait_ready(other_url)
        tenant = await gateway.tenant("Two processes")
        # The second process has no example backend: a backend of its own (installed: cloud-lite) serves.
        product = await tenant.product(code="cad")
        await tenant.feature(product["id"], "export")
        policy = await tenant.policy(product["id"], backend="cloud-lite", features=[{"code": "export"}])
        license = await tenant.license(policy["id"])
        check = {"tenant": tenant.id, "product": "cad", "license_key": license["key"], "features": ["export"]}

        async def code_there() -> str:
            async with session.post(f"{other_url}/v1/check", json=check) as answer:
                assert answer.status == 200, await answer.text()
                return (await answer.json())["verdict"]["code"]  # type: ignore[no-any-return]

        async def seen_within(expected: str) -> float:
            started = time.monotonic()
            while time.monotonic() - started < 5:
                if await code_there() == expected:
                    return time.monotonic() - started
                await asyncio.sleep(0.01)
            raise AssertionError(f"the other process never answered {expected}")

        assert await code_there() == "VALID"
        assert await code_there() == "VALID"  # cached there now
        delays = {}
        await tenant.ok("POST", f"/v1/admin/licenses/{license['id']}/suspend")
        delays["suspend"] = await seen_within("SUSPENDED")
        await tenant.ok("POST", f"/v1/admin/licenses/{license['id']}/reinstate")
        delays["reinstate"] = await seen_within("VALID")
        await tenant.ok("PATCH", f"/v1/admin/policies/{policy['id']}", json={"features": []})
        delays["feature removed"] = await seen_within("FEATURE_NOT_ENTITLED")
        await tenant.ok("POST", f"/v1/admin/licenses/{license['id']}/revoke")
        delays["revoke"] = await seen_within("REVOKED")
        print(f"propagation to the other process (s): {delays}")
        assert all(delay < PROPAGATION_LIMIT_S for delay in delays.values()), delays


async def test_a_kept_answer_never_outlives_the_license_term(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    expiry = datetime.now(UTC) + timedelta(seconds=3)
    await tenant.ok("PATCH", f"/v1/admin/licenses/{made['license']['id']}", json={"expires_at": expiry.isoformat()})
    first = await gateway.call("POST", "/v1/check", json=made["check"])
    again = await gateway.call("POST", "/v1/check", json=made["check"])  # an identical repeat: the kept answer
    assert first.body == again.body and first.body["verdict"]["code"] == "VALID"
    assert first.headers["X-Request-Id"] != again.headers["X-Request-Id"]
    await asyncio.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.05)
    assert (await gateway.call("POST", "/v1/check", json=made["check"])).body["verdict"]["code"] == "EXPIRED"


async def test_signed_checks_are_never_answered_from_memory(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    signed = {**made["check"], "nonce": "n" * 16}
    answers = [(await gateway.call("POST", "/v1/check", json=signed)).body["signed_answer"] for _ in range(2)]
    assert answers[0] and answers[1]
    assert len(gateway.app[keys.ANSWERS]) == 0
