"""Webhooks out, to a real receiver on 127.0.0.1 on both stores: events of the subscribed types arrive in the
Standard Webhooks format, signed with the tenant's Ed25519 key (v1a, checked against /v1/keys) and the endpoint's
HMAC secret (v1, checked with licensor's own Standard Webhooks verifier); a receiver that refuses connections and
then fails gets each event exactly once after retries, across a gateway restart, with 2 workers on PostgreSQL; an
endpoint failing for days is disabled; private targets are refused unless the operator allows them."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from licensor.central.secrets import Secrets
from licensor.central.tenants import create_tenant
from licensor.central.webhooks import is_public_address, next_delay_us, signature_headers, subscribed
from licensor.commerce.signatures import verify_standard_webhooks
from licensor.store import open_store
from licensor.testing import Gateway, Tenant, gateway_process, wait_ready
from licensor.testing.infrastructure import free_port
from licensor_client.formats import published_keys

SECRET = "whsec_" + base64.b64encode(b"endpoint-secret-of-32-bytes-long").decode()
FAST = {"LICENSOR_WEBHOOK_ALLOW_PRIVATE": "1", "LICENSOR_WEBHOOK_RETRY_BASE_S": "0.05"}


@pytest.fixture(autouse=True)
def _private_targets_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receivers here listen on 127.0.0.1: the operator's allowance, and quick retries."""
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)


class Receiver:
    """A webhook receiver on 127.0.0.1: ``answers`` gives the status for the n-th request of a message id."""

    def __init__(self, answers: Callable[[int], int] = lambda n: 200) -> None:
        self.answers = answers
        self.port = free_port()
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/licensor"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = sum(1 for headers, _, _ in self.requests if headers["webhook-id"] == request.headers["webhook-id"])
        status = self.answers(seen)
        self.requests.append((dict(request.headers), body, status))
        return web.Response(status=status, text="ok" if status < 300 else "try again")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/licensor", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def accepted(self) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for headers, body, status in self.requests if 200 <= status < 300]


@asynccontextmanager
async def receiving(answers: Callable[[int], int] = lambda n: 200) -> AsyncIterator[Receiver]:
    receiver = Receiver(answers)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def verify_v1a(headers: dict[str, str], body: bytes, keys: dict[str, bytes]) -> None:
    """The Ed25519 signature a receiver checks: over ``id.timestamp.body``, by the key ``webhook-key-id`` names."""
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    entries = [item.partition(",")[2] for item in headers["webhook-signature"].split() if item.startswith("v1a,")]
    assert len(entries) == 1
    Ed25519PublicKey.from_public_bytes(keys[headers["webhook-key-id"]]).verify(base64.b64decode(entries[0]), signed)


async def wait_for(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s")


# --- formats and rules ---------------------------------------------------------------------------------
def test_the_signature_headers_verify_as_standard_webhooks_v1_and_as_ed25519_v1a() -> None:
    from licensor import _impl

    seed = os.urandom(32)
    body = b'{"type":"license.created"}'
    headers = signature_headers("msg_01ARZ3NDEKTSV4RRFFQ69G5FAV", int(time.time()), body, "k1", seed, [SECRET])
    assert verify_standard_webhooks(headers, body, [SECRET], time.time()) == "msg_01ARZ3NDEKTSV4RRFFQ69G5FAV"
    verify_v1a(headers, body, {"k1": _impl.public_key(seed)})
    with pytest.raises(InvalidSignature):
        verify_v1a(headers, body + b" ", {"k1": _impl.public_key(seed)})
    assert "v1," not in signature_headers("msg_1", 1, body, "k1", seed, [])["webhook-signature"]


def test_subscriptions_backoff_and_address_ranges() -> None:
    assert subscribed(["*"], "license.created") and subscribed(["license.*"], "license.suspended")
    assert subscribed(["order.applied"], "order.applied") and not subscribed(["license.*"], "licenses.x")
    assert not subscribed(["license.created"], "license.revoked")
    for attempt in range(1, 40):
        delay = next_delay_us(attempt, 5.0)
        full = min(6 * 3_600_000_000, 5_000_000 * 2 ** (attempt - 1))
        assert full // 2 <= delay <= full
    for private in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "::1",
        "fd00::1",
        "::ffff:10.0.0.1",
        "0.0.0.0",
        "64:ff9b::a00:5",  # NAT64 of 10.0.0.5
        "2002:a00:5::1",  # 6to4
        "::a00:5",  # IPv4-compatible
        "fec0::1",  # site-local
    ):
        assert not is_public_address(private), private
    assert is_public_address("93.184.216.34") and is_public_address("2606:2800:220:1:248:1893:25c8:1946")


# --- through a gateway ---------------------------------------------------------------------------------
async def endpoint(gateway: Gateway, tenant: Any, url: str, **extra: Any) -> dict[str, Any]:
    created: dict[str, Any] = await tenant.ok(
        "POST", "/v1/admin/webhook-endpoints", 201, json={"url": url, "secret": SECRET, "event_types": ["license.*"], **extra}
    )
    return created


async def test_subscribed_events_arrive_signed_with_their_sequence(licensor_gateway: Gateway) -> None:
    tenant = await licensor_gateway.tenant()
    async with receiving() as receiver:
        made = await endpoint(licensor_gateway, tenant, receiver.url)
        assert "secret" not in made and SECRET not in str(made) and made["state"] == "enabled"
        product = await tenant.product("cad")
        policy = await tenant.policy(product["id"], backend="activation")
        license = await tenant.license(policy["id"])
        await tenant.ok("POST", f"/v1/admin/licenses/{license['id']}/suspend", json={})
        await tenant.ok("POST", f"/v1/admin/licenses/{license['id']}/reinstate", json={})
        await wait_for(lambda: _at_least(receiver, 3))
        # The receiver has answered; the sender records each delivery just after, so wait for that too.
        await wait_for(lambda: _all_delivered(tenant, 3))
    keys = dict(published_keys((await licensor_gateway.call("GET", "/v1/keys", params={"tenant": tenant.id})).body))
    payloads = []
    for headers, body in receiver.accepted():
        verify_v1a(headers, body, keys)
        verify_standard_webhooks(headers, body, [SECRET], time.time())
        payloads.append(orjson.loads(body))
    # Only the subscribed types (product.created and policy.created were not), each with its subject's sequence.
    assert sorted(p["type"] for p in payloads) == ["license.created", "license.reinstated", "license.suspended"]
    assert all(p["subject"] == {"type": "license", "id": license["id"]} for p in payloads)
    by_sequence = sorted(payloads, key=lambda p: p["sequence"])
    assert [p["type"] for p in by_sequence] == ["license.created", "license.suspended", "license.reinstated"]
    assert by_sequence[-1]["data"]["state"] == "active" and "key" not in by_sequence[0]["data"]
    deliveries = await tenant.list_all("/v1/admin/webhook-deliveries")
    assert {d["state"] for d in deliveries} == {"delivered"} and len(deliveries) == 3
    assert {d["id"] for d in deliveries} == {h["webhook-id"] for h, _ in receiver.accepted()}


async def _at_least(receiver: Receiver, count: int) -> bool:
    return len(receiver.accepted()) >= count


async def _all_delivered(tenant: Tenant, count: int) -> bool:
    deliveries = await tenant.list_all("/v1/admin/webhook-deliveries")
    return len(deliveries) == count and all(d["state"] == "delivered" for d in deliveries)


async def test_private_targets_are_refused_unless_the_operator_allows_them(
    licensor_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from licensor.gateway import keys

    tenant = await licensor_gateway.tenant()
    settings = licensor_gateway.app[keys.SETTINGS]
    object.__setattr__(settings, "webhook_allow_private", False)
    try:
        for url in (
            "http://127.0.0.1:9/x",
            "http://10.0.0.8/x",
            "http://169.254.169.254/latest",
            "http://[::1]/x",
            "http://localhost/x",
        ):
            answer = await tenant.call("POST", "/v1/admin/webhook-endpoints", json={"url": url})
            assert (answer.status, answer.code) == (422, "WEBHOOK_URL_NOT_ALLOWED"), url
    finally:
        object.__setattr__(settings, "webhook_allow_private", True)
    bad = await tenant.call("POST", "/v1/admin/webhook-endpoints", json={"url": "ftp://example.com/x"})
    assert (bad.status, bad.code) == (422, "INVALID_FIELD")


async def test_a_failing_endpoint_is_disabled_after_days_and_a_delivery_can_be_retried(licensor_gateway: Gateway) -> None:
    tenant = await licensor_gateway.tenant()
    clock = licensor_gateway.freeze_clock()
    closed = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens: every attempt is refused
    made = await endpoint(licensor_gateway, tenant, closed, event_types=["product.*"])
    await tenant.product("cad")

    async def first_failure() -> Any:
        shown = await tenant.ok("GET", f"/v1/admin/webhook-endpoints/{made['id']}")
        return shown if shown["failing_since"] is not None else None

    await wait_for(first_failure)
    (delivery,) = await tenant.list_all("/v1/admin/webhook-deliveries")
    attempts = await tenant.list_all("/v1/admin/webhook-attempts", params={"delivery_id": delivery["id"]})
    assert attempts and attempts[0]["status"] is None and "Connect" in attempts[0]["error"]
    clock.advance(5 * 86_400 + 1)  # five days later, still failing

    async def disabled() -> Any:
        shown = await tenant.ok("GET", f"/v1/admin/webhook-endpoints/{made['id']}")
        return shown if shown["state"] == "disabled" else None

    shown = await wait_for(disabled)
    assert "failed since" in shown["disabled_reason"]
    told = [e for e in await tenant.list_all("/v1/admin/events") if e["type"] == "webhook_endpoint.disabled"]
    assert len(told) == 1 and told[0]["subject_id"] == made["id"]
    # The vendor fixes the receiver, enables the endpoint again and retries the delivery: it arrives.
    async with receiving() as receiver:
        await tenant.ok("PATCH", f"/v1/admin/webhook-endpoints/{made['id']}", json={"url": receiver.url, "state": "enabled"})
        retried = await tenant.ok("POST", f"/v1/admin/webhook-deliveries/{delivery['id']}/retry", json={})
        assert retried["state"] == "pending"
        await wait_for(lambda: _at_least(receiver, 1))
        await wait_for(lambda: _all_delivered(tenant, 1))
    again = await tenant.call("POST", f"/v1/admin/webhook-deliveries/{delivery['id']}/retry", json={})
    assert (again.status, again.code) == (409, "INVALID_STATE")


# --- the acceptance: refused, failing, a restart, two workers -------------------------------------------
@pytest.fixture
def master_key() -> bytes:
    return os.urandom(32)


@asynccontextmanager
async def admin_session(url: str, token: str) -> AsyncIterator[Callable[..., Any]]:
    async with aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {token}"}) as session:

        async def call(method: str, path: str, **kwargs: Any) -> Any:
            async with session.request(method, path, **kwargs) as response:
                assert response.status < 300, await response.text()
                return await response.json()

        yield call


async def test_each_event_arrives_once_after_refusals_failures_and_a_restart(
    licensor_store_url: str, tmp_path: Any, master_key: bytes
) -> None:
    workers = 2 if licensor_store_url.startswith("postgresql") else 1  # SQLite serves one process
    store = open_store(licensor_store_url)
    await store.open()
    try:
        tenant = await create_tenant(store, Secrets(master_key), "Webhook vendor")
    finally:
        await store.close()
    receiver = Receiver(lambda n: 500 if n < 2 else 200)  # not listening yet: connections are refused
    port = free_port()

    @asynccontextmanager
    async def serving() -> AsyncIterator[str]:
        with gateway_process(licensor_store_url, str(tmp_path), master_key, workers=workers, environment=FAST, port=port) as url:
            await wait_ready(url)
            yield url

    def attempts_by_delivery(attempts: list[dict[str, Any]]) -> Counter[str]:
        return Counter(a["delivery_id"] for a in attempts)

    async with serving() as url, admin_session(url, tenant.admin_token) as call:
        await call(
            "POST", "/v1/admin/webhook-endpoints", json={"url": receiver.url, "secret": SECRET, "event_types": ["license.*"]}
        )
        product = await call("POST", "/v1/admin/products", json={"code": "cad", "name": "CAD"})
        policy = await call(
            "POST", "/v1/admin/policies", json={"product_id": product["id"], "name": "P", "backend": "activation"}
        )
        license = await call("POST", "/v1/admin/licenses", json={"policy_id": policy["id"]})
        await call("POST", f"/v1/admin/licenses/{license['id']}/suspend", json={})
        await call("POST", f"/v1/admin/licenses/{license['id']}/revoke", json={})

        async def three_refusals_each() -> bool:
            deliveries = (await call("GET", "/v1/admin/webhook-deliveries"))["data"]
            attempts = (await call("GET", "/v1/admin/webhook-attempts", params={"limit": "200"}))["data"]
            counted = attempts_by_delivery(attempts)
            return len(deliveries) == 3 and all(counted[d["id"]] >= 3 for d in deliveries)

        await wait_for(three_refusals_each, 60)
    # The gateway is down; the receiver comes up (answering 500 twice per message, then 200); the gateway restarts.
    await receiver.start()
    try:
        async with serving() as url, admin_session(url, tenant.admin_token) as call:

            async def all_delivered() -> Any:
                deliveries = (await call("GET", "/v1/admin/webhook-deliveries"))["data"]
                return deliveries if {d["state"] for d in deliveries} == {"delivered"} else None

            deliveries = await wait_for(all_delivered, 60)
            attempts = (await call("GET", "/v1/admin/webhook-attempts", params={"limit": "200"}))["data"]
            keys = dict(published_keys(await call("GET", "/v1/keys", params={"tenant": tenant.tenant_id})))
    finally:
        await receiver.stop()
    accepted = receiver.accepted()
    assert sorted(h["webhook-id"] for h, _ in accepted) == sorted(d["id"] for d in deliveries)  # each exactly once
    assert Counter(h["webhook-id"] for h, _, _ in receiver.requests) == {d["id"]: 3 for d in deliveries}
    for headers, body, _ in receiver.requests:
        verify_v1a(headers, body, keys)
    counted = attempts_by_delivery(attempts)
    for delivery in deliveries:
        mine = sorted((a for a in attempts if a["delivery_id"] == delivery["id"]), key=lambda a: a["attempt"])
        assert [a["attempt"] for a in mine] == list(range(1, counted[delivery["id"]] + 1))  # no attempt twice
        assert all(a["status"] is None for a in mine[:-3]) and [a["status"] for a in mine[-3:]] == [500, 500, 200]
    print(f"\nwebhooks, {workers} worker(s): {len(deliveries)} events, attempts per event {sorted(counted.values())}")
