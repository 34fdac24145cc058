"""Idempotency-Key: repeats get the first answer and change nothing, also when they arrive all at once."""

from __future__ import annotations

import asyncio
import uuid

from .conftest import Answer, Tenant, db_execute

CONCURRENT = 50


def idempotent(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def storm(tenant: Tenant, method: str, path: str, body: dict | None, key: str) -> list[Answer]:
    return list(await asyncio.gather(*(tenant.call(method, path, json=body, headers=idempotent(key)) for _ in range(CONCURRENT))))


def assert_one_answer(answers: list[Answer], status: int) -> None:
    assert {answer.status for answer in answers} == {status}, {answer.text for answer in answers}
    assert len({answer.text for answer in answers}) == 1, "every repeat gets the very same answer"
    replayed = [answer.headers.get("Idempotent-Replayed") for answer in answers]
    assert replayed.count(None) == 1 and replayed.count("true") == CONCURRENT - 1, replayed


async def test_fifty_concurrent_identical_creates_with_one_key_create_exactly_one_object(tenant: Tenant) -> None:
    key = str(uuid.uuid4())
    answers = await storm(tenant, "POST", "/v1/admin/products", {"code": "studio", "name": "Studio"}, key)
    assert_one_answer(answers, 201)
    products = (await tenant.ok("GET", "/v1/admin/products"))["data"]
    assert [p["id"] for p in products] == [answers[0].body["id"]]
    created = await tenant.list_all("/v1/admin/events", params={"type": "product.created"})
    assert [e["subject_id"] for e in created] == [answers[0].body["id"]]


async def test_fifty_concurrent_identical_license_creations_create_one_license_with_one_key(tenant: Tenant) -> None:
    product = await tenant.product("studio")
    policy = await tenant.policy(product["id"], duration={"kind": "subscription", "days": 30})
    answers = await storm(tenant, "POST", "/v1/admin/licenses", {"policy_id": policy["id"], "order_ref": "order-1"}, "order-1")
    assert_one_answer(answers, 201)
    licenses = await tenant.list_all("/v1/admin/licenses")
    assert [lic["id"] for lic in licenses] == [answers[0].body["id"]]
    # The replayed answer still holds the key, and it is the key of that license.
    found = await tenant.ok("POST", "/v1/admin/licenses/lookup", json={"key": answers[-1].body["key"]})
    assert found["id"] == licenses[0]["id"]


async def test_fifty_concurrent_identical_actions_change_the_license_once(tenant: Tenant) -> None:
    product = await tenant.product("studio")
    policy = await tenant.policy(product["id"], duration={"kind": "subscription", "days": 30})
    lic = await tenant.license(policy["id"])
    answers = await storm(tenant, "POST", f"/v1/admin/licenses/{lic['id']}/renew", {}, "renew-1")
    assert_one_answer(answers, 200)
    renewals = await tenant.list_all("/v1/admin/events", params={"type": "license.renewed"})
    assert len(renewals) == 1
    assert (await tenant.ok("GET", f"/v1/admin/licenses/{lic['id']}"))["expires_at"] == answers[0].body["expires_at"]


async def test_a_repeat_gets_the_first_answer_marked_as_replayed(tenant: Tenant) -> None:
    first = await tenant.call(
        "POST", "/v1/admin/customers", json={"email": "ada@example.com", "name": "Ada"}, headers=idempotent("k1")
    )
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    again = await tenant.call(
        "POST", "/v1/admin/customers", json={"name": "Ada", "email": "ada@example.com"}, headers=idempotent("k1")
    )
    assert (again.status, again.body, again.headers.get("Idempotent-Replayed")) == (201, first.body, "true")
    # The same body without the key is a new request (and here a conflict).
    fresh = await tenant.call("POST", "/v1/admin/customers", json={"email": "ada@example.com", "name": "Ada"})
    assert (fresh.status, fresh.code) == (409, "CUSTOMER_ALREADY_EXISTS")
    assert len((await tenant.ok("GET", "/v1/admin/customers"))["data"]) == 1


async def test_the_same_key_with_another_request_is_a_422_idempotency_key_reused(tenant: Tenant) -> None:
    first = await tenant.call("POST", "/v1/admin/products", json={"code": "studio", "name": "Studio"}, headers=idempotent("k2"))
    assert first.status == 201
    for method, path, body in (
        ("POST", "/v1/admin/products", {"code": "studio", "name": "Other"}),
        ("POST", "/v1/admin/products", {"code": "studio", "name": "Studio", "description": None}),
        ("POST", "/v1/admin/customers", {"email": "studio@example.com", "name": "Studio"}),
        ("PATCH", f"/v1/admin/products/{first.body['id']}", {"name": "Studio"}),
    ):
        answer = await tenant.call(method, path, json=body, headers=idempotent("k2"))
        assert (answer.status, answer.code) == (422, "IDEMPOTENCY_KEY_REUSED"), (method, path, body)
    assert await tenant.ok("GET", f"/v1/admin/products/{first.body['id']}") == first.body
    assert len((await tenant.ok("GET", "/v1/admin/products"))["data"]) == 1


async def test_concurrent_repeats_with_different_bodies_create_one_object_and_refuse_the_others(tenant: Tenant) -> None:
    bodies = [{"code": "studio", "name": f"Studio {i % 2}"} for i in range(20)]
    answers = await asyncio.gather(
        *(tenant.call("POST", "/v1/admin/products", json=body, headers=idempotent("k3")) for body in bodies)
    )
    winners = [a for a in answers if a.status == 201]
    assert {a.status for a in answers} == {201, 422}
    assert len({a.text for a in winners}) == 1
    assert all(a.code == "IDEMPOTENCY_KEY_REUSED" for a in answers if a.status == 422)
    assert len((await tenant.ok("GET", "/v1/admin/products"))["data"]) == 1


async def test_keys_are_per_tenant(tenant: Tenant) -> None:
    other = await tenant.gateway.tenant("Vendor B")
    mine = await tenant.call(
        "POST", "/v1/admin/products", json={"code": "studio", "name": "Studio"}, headers=idempotent("shared")
    )
    theirs = await other.call(
        "POST", "/v1/admin/products", json={"code": "studio", "name": "Studio"}, headers=idempotent("shared")
    )
    assert mine.status == theirs.status == 201 and mine.body["id"] != theirs.body["id"]
    assert "Idempotent-Replayed" not in theirs.headers
    assert [p["id"] for p in (await other.ok("GET", "/v1/admin/products"))["data"]] == [theirs.body["id"]]


async def test_a_repeated_delete_replays_its_answer_instead_of_a_404(tenant: Tenant) -> None:
    product = await tenant.product("studio")
    first = await tenant.call("DELETE", f"/v1/admin/products/{product['id']}", headers=idempotent("del-1"))
    again = await tenant.call("DELETE", f"/v1/admin/products/{product['id']}", headers=idempotent("del-1"))
    assert (first.status, again.status, again.body, again.headers.get("Idempotent-Replayed")) == (200, 200, first.body, "true")
    assert (await tenant.call("DELETE", f"/v1/admin/products/{product['id']}")).status == 404
    assert len(await tenant.list_all("/v1/admin/events", params={"type": "product.deleted"})) == 1


async def test_a_refused_request_is_not_remembered(tenant: Tenant) -> None:
    """Nothing was done, so there is no answer to replay: the retry with the same key runs again."""
    refused = await tenant.call(
        "POST",
        "/v1/admin/features",
        json={"product_id": "prd_00000000000000000000000000", "code": "x", "name": "X"},
        headers=idempotent("k4"),
    )
    assert (refused.status, refused.code) == (422, "REFERENCE_NOT_FOUND")
    again = await tenant.call(
        "POST",
        "/v1/admin/features",
        json={"product_id": "prd_00000000000000000000000000", "code": "x", "name": "X"},
        headers=idempotent("k4"),
    )
    assert (again.status, again.code, again.headers.get("Idempotent-Replayed")) == (422, "REFERENCE_NOT_FOUND", None)


async def test_secrets_in_remembered_answers_are_not_stored_in_the_clear(tenant: Tenant) -> None:
    """A remembered answer may hold a license key or an API token; the database must not give them away."""
    product = await tenant.product("studio")
    policy = await tenant.policy(product["id"])
    license_answer = await tenant.call("POST", "/v1/admin/licenses", json={"policy_id": policy["id"]}, headers=idempotent("lic"))
    token_answer = await tenant.call(
        "POST", "/v1/admin/tokens", json={"name": "ci", "role": "developer"}, headers=idempotent("tok")
    )
    assert license_answer.status == token_answer.status == 201
    key, token = license_answer.body["key"], token_answer.body["token"]
    stored = await db_execute(tenant.gateway.store_url, "SELECT key, body FROM idempotency_keys WHERE tenant_id = ?", tenant.id)
    assert {row["key"] for row in stored} >= {"lic", "tok"}
    for row in stored:
        text = row["body"] if isinstance(row["body"], str) else bytes(row["body"]).decode("latin-1")
        assert key not in text and key.replace("-", "") not in text
        assert token not in text and token.split(".")[1] not in text
    # ... and the repeats still get the whole first answer.
    assert (
        await tenant.call("POST", "/v1/admin/licenses", json={"policy_id": policy["id"]}, headers=idempotent("lic"))
    ).body == license_answer.body
    assert (
        await tenant.call("POST", "/v1/admin/tokens", json={"name": "ci", "role": "developer"}, headers=idempotent("tok"))
    ).body == token_answer.body
