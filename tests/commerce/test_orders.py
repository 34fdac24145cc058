"""The order intake, through real HTTP on both stores, for every built-in shop: a purchase delivered 5 times at
once makes one license; one period's renewal delivered under 5 event ids extends it once and reaches a connected
device; a tampered body, a wrong secret and a stale signature are refused and recorded; an event older than the
state it would change is ignored; unknown event types are answered 2xx; a FastSpring batch's every event acts.
On PostgreSQL the concurrent deliveries are spread over two gateway processes."""

from __future__ import annotations

import asyncio
import email
import glob
import io
import os
import time
from datetime import datetime
from typing import Any

import aiohttp
import orjson
import pytest
from licensor import hookimpl
from licensor.gateway import keys
from licensor.orders import OrderEvent, OrderEventType, OrderSource, WebhookSignatureError
from licensor.testing import Gateway, GatewayFleet, Tenant
from licensor_client.formats import published_keys
from licensor_client.updates import read_update

from .shops import DAY_S, SHOPS, Delivery, FastSpringShop, PaddleShop, Shop, ShopifyShop, StripeShop, new_event_id

KINDS = sorted(SHOPS)


async def setup(tenant: Tenant, shop: Shop, **source: Any) -> dict[str, Any]:
    """A product with a 30-day subscription policy on the activation backend, the shop as an order source, and
    its item "pro" mapped to the policy: (source, policy, product) in a dict."""
    product = await tenant.product("cad")
    policy = await tenant.policy(
        product["id"], backend="activation", duration={"kind": "subscription", "days": 30}, maintenance_days=30
    )
    body = {"kind": shop.kind, "name": f"{shop.kind} shop", "secrets": [shop.secret], **source}
    created = await tenant.ok("POST", "/v1/admin/order-sources", 201, json=body)
    await tenant.ok(
        "POST", "/v1/admin/order-mappings", 201, json={"source_id": created["id"], "item": "pro", "policy_id": policy["id"]}
    )
    return {"source": created, "policy": policy, "product": product}


async def post(
    gateway: Gateway | str, session: aiohttp.ClientSession | None, source_id: str, delivery: Delivery
) -> tuple[int, Any]:
    if isinstance(gateway, Gateway):
        answer = await gateway.call("POST", f"/v1/orders/{source_id}", data=delivery.body, headers=delivery.headers)
        return answer.status, answer.body
    assert session is not None
    async with session.post(f"{gateway}/v1/orders/{source_id}", data=delivery.body, headers=delivery.headers) as response:
        assert response.status != 500
        return response.status, await response.json()


async def licenses(tenant: Tenant) -> list[dict[str, Any]]:
    return await tenant.list_all("/v1/admin/licenses")


async def events_of(tenant: Tenant, kind: str) -> list[dict[str, Any]]:
    return [e for e in await tenant.list_all("/v1/admin/events") if e["type"] == kind]


def purchase_of(shop: Shop, order: str, email: str, **kwargs: Any) -> Delivery:
    return shop.purchase(order, "pro", email, **kwargs)


def order_number(n: int = 0) -> str:
    return str(int(time.time() * 1000) * 10 + n)  # Shopify's ids are numbers; the others take any text


async def bought(
    gateway: Gateway, tenant: Tenant, shop: Shop, source_id: str, order: str, at: float | None = None
) -> dict[str, Any]:
    """The one license a purchase made."""
    status, body = await post(gateway, None, source_id, purchase_of(shop, order, "ada@example.com", at=at))
    assert status == 200, body
    if isinstance(shop, ShopifyShop):  # its subscription is named by a contract created after the order
        status, body = await post(gateway, None, source_id, shop.contract(order))
        assert status == 200 and body["events"][0]["outcome"] == "applied", body
    (license,) = [lic for lic in await licenses(tenant) if lic["order_ref"] is not None]
    return license


# --- exactly once --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
async def test_a_purchase_delivered_five_times_at_once_makes_one_license(licensor_fleet: GatewayFleet, kind: str) -> None:
    gateway = licensor_fleet.gateway
    shop = SHOPS[kind]()
    tenant = await gateway.tenant()
    made = await setup(tenant, shop)
    source_id = made["source"]["id"]
    delivery = purchase_of(shop, order_number(), "ada@example.com")
    answers = await asyncio.gather(*(post(licensor_fleet.url(n), licensor_fleet.session, source_id, delivery) for n in range(5)))
    assert [status for status, _ in answers] == [200] * 5, answers
    receipts = [body["events"][0] for _, body in answers]
    assert sorted(r["duplicate"] for r in receipts) == [False, True, True, True, True]
    assert len({r["id"] for r in receipts}) == 1  # one business event
    (license,) = await licenses(tenant)
    assert license["policy_id"] == made["policy"]["id"] and license["state"] == "active"
    (customer,) = await tenant.list_all("/v1/admin/customers")
    assert license["customer_id"] == customer["id"] and customer["email"] == "ada@example.com"
    assert len(await events_of(tenant, "order.applied")) == 1
    assert len(await events_of(tenant, "order.repeated")) == 4
    assert len(await events_of(tenant, "license.created")) == 1


async def test_stripes_checkout_session_and_first_invoice_are_one_purchase(licensor_gateway: Gateway) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    order = order_number()
    for delivery in (shop.purchase(order, "pro", "ada@example.com"), shop.first_invoice(order, "pro", "ada@example.com")):
        status, body = await post(licensor_gateway, None, made["source"]["id"], delivery)
        assert status == 200, body
    assert len(await licenses(tenant)) == 1
    receipts = await tenant.list_all("/v1/admin/order-events")
    assert [(r["type"], r["outcome"]) for r in receipts] == [("purchase", "applied")]


async def test_the_license_key_bought_reaches_the_customer_by_mail_and_checks(licensor_gateway: Gateway, tmp_path: Any) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    license = await bought(licensor_gateway, tenant, shop, made["source"]["id"], order_number())
    (path,) = glob.glob(os.path.join(str(tmp_path), "mail", "*.eml"))
    assert os.stat(path).st_mode & 0o777 == 0o600
    with open(path, "rb") as file:
        message = email.message_from_bytes(file.read())
    assert message["To"] == "ada@example.com"
    text = message.get_payload()
    key = next(word for word in text.split() if word.count("-") == 6)
    assert key.endswith(license["key_hint"])
    found = await tenant.ok("POST", "/v1/admin/licenses/lookup", json={"key": key})
    assert found["id"] == license["id"]
    assert key not in str(await tenant.list_all("/v1/admin/events"))  # the key is in no event


# --- renewals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
async def test_one_periods_renewal_under_five_event_ids_extends_once_and_reaches_the_device(
    licensor_fleet: GatewayFleet, kind: str
) -> None:
    gateway = licensor_fleet.gateway
    shop = SHOPS[kind]()
    tenant = await gateway.tenant()
    made = await setup(tenant, shop)
    order = order_number()
    license = await bought(gateway, tenant, shop, made["source"]["id"], order)
    generation = license["generation"]
    period_start = time.time() + 29 * DAY_S
    period_end = period_start + 30 * DAY_S
    deliveries = [shop.renewal(order, period_start, period_end, event_id=new_event_id(f"e{n}")) for n in range(5)]
    answers = await asyncio.gather(
        *(post(licensor_fleet.url(n), licensor_fleet.session, made["source"]["id"], d) for n, d in enumerate(deliveries))
    )
    assert [status for status, _ in answers] == [200] * 5, answers
    receipts = [body["events"][0] for _, body in answers]
    assert sorted(r["duplicate"] for r in receipts) == [False, True, True, True, True], receipts
    renewed = await tenant.ok("GET", f"/v1/admin/licenses/{license['id']}")
    assert renewed["generation"] == generation + 1  # one change
    before = _seconds(license["expires_at"])
    after = _seconds(renewed["expires_at"])
    if shop.renewal_has_period:
        assert abs(after - period_end) < 1
    else:  # Shopify's billing attempt names no period: the policy's 30 days, once
        assert abs(after - (before + 30 * DAY_S)) < 2
    assert len(await events_of(tenant, "license.renewed")) == 1


async def test_a_renewal_reaches_a_connected_device_through_the_update_trigger(licensor_gateway: Gateway) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    order = order_number()
    license = await bought(licensor_gateway, tenant, shop, made["source"]["id"], order)
    key = await _key_from_mail(licensor_gateway)
    params = {"tenant": tenant.id, "product": "cad", "after": str(license["generation"]), "wait": "20"}
    headers = {"Authorization": f"License {key}"}
    waiting = asyncio.create_task(licensor_gateway.call("GET", "/v1/updates", params=params, headers=headers))
    await asyncio.sleep(0.3)
    period_end = time.time() + 59 * DAY_S
    status, _ = await post(
        licensor_gateway, None, made["source"]["id"], shop.renewal(order, time.time() + 29 * DAY_S, period_end)
    )
    assert status == 200
    pushed = await asyncio.wait_for(waiting, 10)
    assert pushed.status == 200 and pushed.body["generation"] == license["generation"] + 1
    keys = await _published_keys(licensor_gateway, tenant)
    update = read_update(pushed.body["update"], keys, tenant=tenant.id, product="cad", license_id=license["id"])
    assert update.expires_at is not None and abs(update.expires_at - period_end) < 1


async def test_a_renewal_before_its_purchase_is_deferred_then_applied(licensor_gateway: Gateway) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    order = order_number()
    renewal = shop.renewal(order, time.time() + 29 * DAY_S, time.time() + 59 * DAY_S)
    answer = await licensor_gateway.call("POST", f"/v1/orders/{made['source']['id']}", data=renewal.body, headers=renewal.headers)
    assert (answer.status, answer.code) == (409, "ORDER_NOT_YET_KNOWN")
    assert await tenant.list_all("/v1/admin/order-events") == []  # nothing claimed: the retry will apply it
    await bought(licensor_gateway, tenant, shop, made["source"]["id"], order)
    again = await post(licensor_gateway, None, made["source"]["id"], renewal)
    assert again[0] == 200 and again[1]["events"][0]["outcome"] == "applied"


# --- refusals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
async def test_a_tampered_body_a_wrong_secret_and_a_stale_signature_are_refused_and_recorded(
    licensor_gateway: Gateway, kind: str
) -> None:
    shop = SHOPS[kind]()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    source_id = made["source"]["id"]
    good = purchase_of(shop, order_number(), "ada@example.com")
    tampered = Delivery(good.headers, good.body.replace(b"ada@example.com", b"eve@example.com"))
    wrong_secret = Delivery({**good.headers, **shop.sign(good.body, secret="not-the-shop-secret")}, good.body)
    attempts = {"tampered": tampered, "wrong secret": wrong_secret}
    if shop.signs_time:
        attempts["stale"] = purchase_of(shop, order_number(1), "ada@example.com", at=time.time() - 301)
    unsigned = Delivery({"Content-Type": "application/json"}, good.body)
    attempts["unsigned"] = unsigned
    for name, delivery in attempts.items():
        answer = await licensor_gateway.call("POST", f"/v1/orders/{source_id}", data=delivery.body, headers=delivery.headers)
        expected = {"stale": "SIGNATURE_EXPIRED", "unsigned": "SIGNATURE_MISSING"}.get(name, "SIGNATURE_MISMATCH")
        assert (answer.status, answer.code) == (401, expected), (name, answer.text)
    assert await licenses(tenant) == [] and await tenant.list_all("/v1/admin/customers") == []
    refused = await events_of(tenant, "order.refused")
    assert len(refused) == len(attempts)
    assert all(e["subject_id"] == source_id and e["data"]["code"].startswith("SIGNATURE_") for e in refused)
    status, _ = await post(licensor_gateway, None, source_id, good)  # the genuine delivery still goes through
    assert status == 200 and len(await licenses(tenant)) == 1


async def test_an_unknown_source_is_not_found_and_a_rotated_secret_still_verifies(licensor_gateway: Gateway) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    source_id = made["source"]["id"]
    delivery = purchase_of(shop, order_number(), "ada@example.com")
    missing = await licensor_gateway.call(
        "POST", "/v1/orders/osr_01ARZ3NDEKTSV4RRFFQ69G5FAV", data=delivery.body, headers=delivery.headers
    )
    assert (missing.status, missing.code) == (404, "ORDER_SOURCE_NOT_FOUND")
    # Rotation: the new secret first, the old one still accepted until the shop has switched.
    rotated = await tenant.ok(
        "PATCH", f"/v1/admin/order-sources/{source_id}", json={"secrets": ["whsec_new_secret_987654", shop.secret]}
    )
    assert "secrets" not in rotated and shop.secret not in str(rotated)
    assert (await post(licensor_gateway, None, source_id, delivery))[0] == 200
    shop.secret = "whsec_new_secret_987654"
    assert (await post(licensor_gateway, None, source_id, purchase_of(shop, order_number(2), "bob@example.com")))[0] == 200
    shown = await tenant.ok("GET", f"/v1/admin/order-sources/{source_id}")
    assert "secrets" not in shown and "whsec_new_secret" not in str(await tenant.list_all("/v1/admin/events"))
    bad_kind = await tenant.call("POST", "/v1/admin/order-sources", json={"kind": "gumroad", "name": "g", "secrets": ["x" * 10]})
    assert (bad_kind.status, bad_kind.code) == (422, "UNKNOWN_ORDER_SOURCE_KIND")


async def test_unreadable_oversized_and_overfull_deliveries_are_refused_with_their_codes(licensor_gateway: Gateway) -> None:
    shop = FastSpringShop()
    tenant = await licensor_gateway.tenant()
    source_id = (await setup(tenant, shop))["source"]["id"]
    path = f"/v1/orders/{source_id}"

    async def send(body: bytes) -> Any:
        return await licensor_gateway.call("POST", path, data=body, headers=shop.sign(body))

    for body in (b"not json", b"[1, 2]", b'{"events": "none"}', b"[" * 10_000 + b"]" * 10_000, b'{"events": [{"id": 1}]}'):
        answer = await send(body)
        assert (answer.status, answer.code) == (400, "ORDER_PAYLOAD_MALFORMED"), (body[:20], answer.text)
    overfull = shop.batch(*(shop.purchase_event(f"o{n}", "pro", "a@example.com") for n in range(101)))
    answer = await licensor_gateway.call("POST", path, data=overfull.body, headers=overfull.headers)
    assert (answer.status, answer.code) == (400, "ORDER_PAYLOAD_MALFORMED")
    huge = b'{"events": [], "pad": "' + b"x" * (1 << 20) + b'"}'
    async with licensor_gateway.client.post(path, data=io.BytesIO(huge), headers=shop.sign(huge)) as response:
        assert response.status == 413 and (await response.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"
    for odd in ("nothing", "osr_" + "x" * 2000, "%00", "osr_01ARZ3NDEKTSV4RRFFQ69G5FA%00"):  # not a source id at all
        answer = await licensor_gateway.call("POST", f"/v1/orders/{odd}", data=b"{}", headers=shop.sign(b"{}"))
        assert (answer.status, answer.code) == (404, "NOT_FOUND"), odd
    assert await licenses(tenant) == []
    assert len(await events_of(tenant, "order.refused")) == 6


# --- effects and their order ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
async def test_failed_payment_suspends_a_renewal_reinstates_and_a_refund_revokes(licensor_gateway: Gateway, kind: str) -> None:
    shop = SHOPS[kind]()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    source_id, order, now = made["source"]["id"], order_number(), time.time()
    license = await bought(licensor_gateway, tenant, shop, source_id, order, at=now - 10)

    receipts = []

    async def state_after(delivery: Delivery) -> str:
        status, body = await post(licensor_gateway, None, source_id, delivery)
        assert status == 200, body
        receipts.append(body["events"][0])
        return str((await tenant.ok("GET", f"/v1/admin/licenses/{license['id']}"))["state"])

    assert await state_after(shop.payment_failed(order, at=now - 8)) == "suspended"
    assert await state_after(shop.renewal(order, now + 29 * DAY_S, now + 59 * DAY_S, at=now - 6)) == "active"
    assert await state_after(shop.refund(order, at=now - 4)) == "revoked"
    # Late: a payment failure older than the refund changes nothing, and is recorded as ignored.
    assert await state_after(shop.payment_failed(order, at=now - 9)) == "revoked"
    assert [(r["type"], r["outcome"], r["duplicate"]) for r in receipts] == [
        ("payment_failed", "applied", False),
        ("renewal", "applied", False),
        ("refund", "applied", False),
        ("payment_failed", "ignored", False),
    ]
    assert "stale" in receipts[-1]["detail"]
    (revoked,) = await events_of(tenant, "license.revoked")
    assert revoked["data"]["reason"].startswith("order: ")


async def test_an_event_older_than_the_state_it_would_change_is_recorded_and_ignored(licensor_gateway: Gateway) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop, effects={"cancellation": "suspend"})
    source_id, order, now = made["source"]["id"], order_number(), time.time()
    license = await bought(licensor_gateway, tenant, shop, source_id, order, at=now - 100)
    await post(licensor_gateway, None, source_id, shop.cancellation(order, at=now - 10))
    # A failed payment from before the cancellation arrives late: the license stays as the cancellation left it.
    status, body = await post(licensor_gateway, None, source_id, shop.payment_failed(order, at=now - 50))
    assert status == 200 and body["events"][0]["outcome"] == "ignored" and "stale" in body["events"][0]["detail"]
    shown = await tenant.ok("GET", f"/v1/admin/licenses/{license['id']}")
    assert shown["state"] == "suspended"
    # A renewal paid before the cancellation does not undo it either (its term may extend; the state stays).
    await post(licensor_gateway, None, source_id, shop.renewal(order, now - 40, now + 20 * DAY_S, at=now - 40))
    assert (await tenant.ok("GET", f"/v1/admin/licenses/{license['id']}"))["state"] == "suspended"


@pytest.mark.parametrize("kind", KINDS)
async def test_unknown_event_types_are_answered_2xx_and_recorded(licensor_gateway: Gateway, kind: str) -> None:
    shop = SHOPS[kind]()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    status, body = await post(licensor_gateway, None, made["source"]["id"], shop.unknown())
    assert status == 200 and [(e["type"], e["outcome"]) for e in body["events"]] == [("unknown", "ignored")]
    assert len(await events_of(tenant, "order.ignored")) == 1 and await licenses(tenant) == []


async def test_every_event_of_a_fastspring_batch_acts(licensor_gateway: Gateway) -> None:
    shop = FastSpringShop()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    source_id = made["source"]["id"]
    first = await bought(licensor_gateway, tenant, shop, source_id, "A1")
    batch = shop.batch(
        shop.purchase_event("B2", "pro", "bob@example.com"),
        shop.purchase_event("C3", "pro", "cy@example.com", quantity=2),
        shop.cancellation_event("A1"),
    )
    status, body = await post(licensor_gateway, None, source_id, batch)
    assert status == 200 and [(e["type"], e["outcome"]) for e in body["events"]] == [
        ("purchase", "applied"),
        ("purchase", "applied"),
        ("cancellation", "applied"),
    ]
    states = sorted((lic["order_ref"], lic["state"]) for lic in await licenses(tenant))
    assert states == [("ord_A1", "revoked"), ("ord_B2", "active"), ("ord_C3", "active"), ("ord_C3", "active")]
    assert first["order_ref"] == "ord_A1"
    again = await post(licensor_gateway, None, source_id, batch)  # the whole batch again: nothing more happens
    assert [e["duplicate"] for e in again[1]["events"]] == [True, True, True] and len(await licenses(tenant)) == 4


async def test_a_plan_change_moves_the_license_to_the_mapped_policy(licensor_gateway: Gateway) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    source_id, order = made["source"]["id"], order_number()
    license = await bought(licensor_gateway, tenant, shop, source_id, order)
    bigger = await tenant.policy(made["product"]["id"], name="Team", backend="activation", seats=5)
    await tenant.ok(
        "POST", "/v1/admin/order-mappings", 201, json={"source_id": source_id, "item": "team", "policy_id": bigger["id"]}
    )
    change = shop._event(
        "customer.subscription.updated",
        {"id": f"sub_{order}", "items": {"data": [{"price": {"id": "team"}, "quantity": 1}]}},
        None,
        None,
        previous_attributes={"items": {"data": [{"price": {"id": "pro"}}]}},
    )
    status, body = await post(licensor_gateway, None, source_id, change)
    assert status == 200 and body["events"][0]["outcome"] == "applied", body
    assert (await tenant.ok("GET", f"/v1/admin/licenses/{license['id']}"))["policy_id"] == bigger["id"]


async def test_unmapped_items_license_nothing_and_their_later_events_are_not_waited_for(licensor_gateway: Gateway) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    made = await setup(tenant, shop)
    order = order_number()
    status, body = await post(licensor_gateway, None, made["source"]["id"], shop.purchase(order, "t-shirt", "ada@example.com"))
    assert status == 200 and body["events"][0]["outcome"] == "ignored" and "t-shirt" in body["events"][0]["detail"]
    renewal = shop.renewal(order, time.time(), time.time() + 30 * DAY_S)
    status, body = await post(licensor_gateway, None, made["source"]["id"], renewal)
    assert status == 200 and body["events"][0]["outcome"] == "ignored"  # not 409: nothing will ever be licensed
    assert await licenses(tenant) == []


# --- what the review of real payloads found --------------------------------------------------------------
async def test_a_stripe_session_without_line_items_leaves_the_purchase_to_the_first_invoice(licensor_gateway: Gateway) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    source_id = (await setup(tenant, shop))["source"]["id"]
    order = order_number()
    session = shop.purchase(order, "pro", "ada@example.com")
    bare = orjson.loads(session.body)
    del bare["data"]["object"]["line_items"]  # as Stripe sends it: line items only when expanded
    early = await licensor_gateway.call(
        "POST", f"/v1/orders/{source_id}", data=orjson.dumps(bare), headers=shop.sign(orjson.dumps(bare))
    )
    assert (early.status, early.code) == (409, "ORDER_NOT_YET_KNOWN")  # its invoice has not come yet
    assert (await post(licensor_gateway, None, source_id, shop.first_invoice(order, "pro", "ada@example.com")))[0] == 200
    again = await licensor_gateway.call(
        "POST", f"/v1/orders/{source_id}", data=orjson.dumps(bare), headers=shop.sign(orjson.dumps(bare))
    )
    assert again.status == 200 and again.body["events"][0]["type"] == "link"
    assert len(await licenses(tenant)) == 1


async def test_payment_and_dispute_order_holes_are_closed(licensor_gateway: Gateway) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    source_id = (await setup(tenant, shop))["source"]["id"]
    order, now = order_number(), time.time()
    license = await bought(licensor_gateway, tenant, shop, source_id, order, at=now - 100)

    async def state() -> str:
        return str((await tenant.ok("GET", f"/v1/admin/licenses/{license['id']}"))["state"])

    # A failed payment older than the payment that followed it (delivered late) changes nothing.
    await post(licensor_gateway, None, source_id, shop.renewal(order, now - 50, now + 30 * DAY_S, at=now - 50))
    status, body = await post(licensor_gateway, None, source_id, shop.payment_failed(order, at=now - 60))
    assert status == 200 and "stale" in body["events"][0]["detail"] and await state() == "active"
    # A dispute after a failed payment: the next payment does not lift the dispute's suspension.
    await post(licensor_gateway, None, source_id, shop.payment_failed(order, at=now - 40))
    assert await state() == "suspended"
    dispute = shop._event(
        "charge.dispute.created", {"id": "dp_1", "payment_intent": f"pi_{order}_{int(now - 50)}"}, None, now - 30
    )
    assert (await post(licensor_gateway, None, source_id, dispute))[0] == 200
    await post(licensor_gateway, None, source_id, shop.renewal(order, now - 20, now + 60 * DAY_S, at=now - 20))
    assert await state() == "suspended"


async def test_shopify_renewals_out_of_order_both_count_and_renewal_orders_buy_nothing(licensor_gateway: Gateway) -> None:
    shop = ShopifyShop()
    tenant = await licensor_gateway.tenant()
    source_id = (await setup(tenant, shop))["source"]["id"]
    order, now = order_number(), time.time()
    license = await bought(licensor_gateway, tenant, shop, source_id, order, at=now - 100)
    later = shop.renewal(order, now + 60 * DAY_S, 0, at=now - 10)
    earlier = shop.renewal(order, now + 30 * DAY_S, 0, at=now - 20)
    for delivery in (later, earlier):
        assert (await post(licensor_gateway, None, source_id, delivery))[0] == 200
    renewed = await tenant.ok("GET", f"/v1/admin/licenses/{license['id']}")
    assert abs(_seconds(renewed["expires_at"]) - (_seconds(license["expires_at"]) + 60 * DAY_S)) < 2  # two periods
    renewal_order = orjson.loads(shop.purchase(order_number(1), "pro", "ada@example.com").body)
    renewal_order["source_name"] = "subscription_contract_checkout_one"
    stamp = {"X-Shopify-Triggered-At": "2026-12-06T05:00:00Z"}
    delivery = shop.deliver(renewal_order, headers={"X-Shopify-Topic": "orders/paid", "X-Shopify-Webhook-Id": "w-1", **stamp})
    status, body = await post(licensor_gateway, None, source_id, delivery)
    assert status == 200 and body["events"][0]["outcome"] == "ignored" and len(await licenses(tenant)) == 1
    # A refund of another line (shipping, a T-shirt) leaves the license; no line at all refunds nothing.
    other_line = shop.deliver(
        {"id": 7, "order_id": int(order), "refund_line_items": [{"line_item_id": 1}]},
        headers={"X-Shopify-Topic": "refunds/create", "X-Shopify-Webhook-Id": "w-2", **stamp},
    )
    assert (await post(licensor_gateway, None, source_id, other_line))[0] == 200
    assert (await tenant.ok("GET", f"/v1/admin/licenses/{license['id']}"))["state"] == "active"


async def test_events_of_orders_never_received_are_ignored_not_retried(licensor_gateway: Gateway) -> None:
    shop = StripeShop()
    tenant = await licensor_gateway.tenant()
    source_id = (await setup(tenant, shop))["source"]["id"]
    for delivery in (shop.payment_failed("never"), shop.cancellation("never"), shop.refund("never")):
        status, body = await post(licensor_gateway, None, source_id, delivery)
        assert status == 200 and body["events"][0]["outcome"] == "ignored", (status, body)
    old_renewal = shop.renewal("never", time.time() - 10 * DAY_S, time.time() + 20 * DAY_S, at=time.time() - 4 * DAY_S)
    resent_now = shop.deliver(orjson.loads(old_renewal.body))  # created 4 days ago, delivered (signed) now
    assert (await post(licensor_gateway, None, source_id, resent_now))[0] == 200  # too old to wait for its purchase


async def test_hostile_signature_headers_and_secrets_are_refused_not_500(licensor_gateway: Gateway) -> None:
    tenant = await licensor_gateway.tenant()
    stripe_source = (await setup(tenant, StripeShop()))["source"]["id"]
    for header in ("t=\u00b2,v1=00", "t=12a,v1=00", "t=,v1=", "garbage", "t=1,t=2,v1=00"):
        value = header.encode().decode("unicode_escape")
        answer = await licensor_gateway.call(
            "POST", f"/v1/orders/{stripe_source}", data=b"{}", headers={"Stripe-Signature": value}
        )
        assert (answer.status, answer.code) == (401, "SIGNATURE_MALFORMED"), header
    body = {"kind": "standard-webhooks", "name": "s", "secrets": ["whsec_!!!notbase64!!!"]}
    refused = await tenant.call("POST", "/v1/admin/order-sources", json=body)
    assert (refused.status, refused.code) == (422, "INVALID_FIELD") and "whsec_!!!" not in refused.text
    shop = StripeShop()
    odd = orjson.loads(shop.purchase(order_number(), "pro", "ada@example.com").body)
    odd["data"]["object"]["metadata"] = "x"
    odd["data"]["object"]["customer_details"] = ["not", "an", "object"]
    odd["data"]["object"]["line_items"] = {"data": [{"price": {"id": "T-Shirt Größe M"}, "quantity": 10**9}]}
    status, body = await post(licensor_gateway, None, stripe_source, shop.deliver(odd))
    assert status == 200 and "T-Shirt Größe M" in body["events"][0]["detail"]  # unmapped, not refused
    far = shop.renewal(order_number(1), time.time(), 400_000_000_000)  # a period ending after the year 9999
    answer = await licensor_gateway.call("POST", f"/v1/orders/{stripe_source}", data=far.body, headers=far.headers)
    assert (answer.status, answer.code) == (400, "ORDER_PAYLOAD_MALFORMED")


async def test_one_new_customer_ordering_four_times_at_once_is_one_customer(licensor_fleet: GatewayFleet) -> None:
    shop = PaddleShop()
    tenant = await licensor_fleet.gateway.tenant()
    source_id = (await setup(tenant, shop))["source"]["id"]
    deliveries = [purchase_of(shop, order_number(n), "new@example.com") for n in range(4)]
    answers = await asyncio.gather(
        *(post(licensor_fleet.url(n), licensor_fleet.session, source_id, d) for n, d in enumerate(deliveries))
    )
    assert [status for status, _ in answers] == [200] * 4, answers
    assert len(await licenses(tenant)) == 4 and len(await tenant.list_all("/v1/admin/customers")) == 1


# --- the hook ------------------------------------------------------------------------------------------
class PlainSource(OrderSource):
    """A third party's shop format: a shared token header, one purchase per body."""

    kind = "plain"

    def verify(self, headers: Any, body: bytes, secrets: Any, now: float) -> None:
        if headers.get("X-Plain-Token") not in secrets:
            raise WebhookSignatureError("wrong token", code="SIGNATURE_MISMATCH")

    def events(self, headers: Any, body: bytes) -> list[OrderEvent]:
        order = body.decode().partition(":")[0]
        return [OrderEvent(OrderEventType.PURCHASE, f"purchase:{order}", order, "sale", int(time.time() * 1e6), (order,))]


class PlainPlugin:
    @hookimpl
    def licensor_register_order_sources(self, register: Any) -> None:
        register(PlainSource())


@pytest.fixture
def licensor_plugins() -> tuple[object, ...]:
    return (PlainPlugin(),)


async def test_a_plugins_order_source_takes_orders_through_the_hook(licensor_gateway: Gateway) -> None:
    tenant = await licensor_gateway.tenant()
    body = {"kind": "plain", "name": "p", "secrets": ["token-123456"]}
    path = f"/v1/orders/{(await tenant.ok('POST', '/v1/admin/order-sources', 201, json=body))['id']}"
    sent = await licensor_gateway.call("POST", path, data=b"o-1:pro", headers={"X-Plain-Token": "token-123456"})
    assert sent.status == 200 and sent.body["events"][0]["outcome"] == "ignored"  # no item: nothing mapped
    refused = await licensor_gateway.call("POST", path, data=b"o-2:pro", headers={"X-Plain-Token": "nope"})
    assert (refused.status, refused.code) == (401, "SIGNATURE_MISMATCH")


# --- helpers -------------------------------------------------------------------------------------------
def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _key_from_mail(gateway: Gateway) -> str:
    data_dir = gateway.app[keys.SETTINGS].data_dir
    (path,) = glob.glob(os.path.join(data_dir, "mail", "*.eml"))
    with open(path, "rb") as file:
        text = email.message_from_bytes(file.read()).get_payload()
    return next(word for word in str(text).split() if word.count("-") == 6)


async def _published_keys(gateway: Gateway, tenant: Tenant) -> dict[str, bytes]:
    answer = await gateway.call("GET", "/v1/keys", params={"tenant": tenant.id})
    return dict(published_keys(answer.body))
