"""Malformed requests get a 4xx with a stable code, as ``{"error": {"code", "message"}}``, and never a 500.

(Every answer the fixtures receive is also checked against that contract, in every test.)
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import orjson
import pytest
from licensor.model import new_id
from licensor.operations import DEFAULT_BODY_BYTES

from .conftest import Answer, Tenant

PRODUCTS = "/v1/admin/products"


def assert_error(answer: Answer, status: int, code: str, context: Any = None) -> None:
    assert (answer.status, answer.code) == (status, code), (context, answer.text)
    assert answer.headers["Content-Type"].startswith("application/json")
    body = json.loads(answer.text)
    assert list(body) == ["error"] and sorted(body["error"]) == ["code", "message"], answer.text
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def cursor_of(value: Any) -> str:
    """A cursor holding ``value`` (as the API encodes its own), forged by a client."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def nested(depth: int) -> bytes:
    """A product body whose description nests ``depth`` arrays deep."""
    return b'{"code":"deep","name":"Deep","description":' + b"[" * depth + b"]" * depth + b"}"


# --- bodies -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        b'{"code": "a", "name":',
        b"{code: 'a'}",
        b'{"code":"a","name":"b"} trailing',
        b'{"code":"a","name":"\xff"}',
        b'{"code":"a","name":"\\ud800"}',
        b'{"code":"a","name":"b","seats":NaN}',
        b'{"code":"a","name":"b","x":1e400}',
        b"\x00",
    ],
    ids=["truncated", "not-json", "trailing-data", "invalid-utf8", "lone-surrogate", "nan", "infinite-number", "nul-byte"],
)
async def test_a_body_that_is_not_json_is_a_400_malformed_json(tenant: Tenant, raw: bytes) -> None:
    assert_error(
        await tenant.call("POST", PRODUCTS, data=raw, headers={"Content-Type": "application/json"}), 400, "MALFORMED_JSON"
    )
    assert (await tenant.ok("GET", PRODUCTS))["data"] == []


async def test_an_unknown_field_is_a_422_unknown_field(tenant: Tenant) -> None:
    assert_error(await tenant.call("POST", PRODUCTS, json={"code": "a", "name": "A", "colour": "red"}), 422, "UNKNOWN_FIELD")
    product = await tenant.product("a")
    policy = await tenant.call(
        "POST",
        "/v1/admin/policies",
        json={"product_id": product["id"], "name": "P", "backend": "example", "features": [{"code": "x", "qty": 1}]},
    )
    assert_error(policy, 422, "UNKNOWN_FIELD")
    assert_error(
        await tenant.call("PATCH", f"{PRODUCTS}/{product['id']}", json={"name": "B", "id": product["id"]}), 422, "UNKNOWN_FIELD"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"code": "a", "name": 5},
        {"code": ["a"], "name": "A"},
        {"code": "a", "name": "A", "description": {"text": "x"}},
        {"code": "a", "name": None},
    ],
    ids=["number-for-string", "array-for-string", "object-for-string", "null-for-string"],
)
async def test_a_value_of_the_wrong_type_is_a_422_wrong_type(tenant: Tenant, body: dict) -> None:
    assert_error(await tenant.call("POST", PRODUCTS, json=body), 422, "WRONG_TYPE")


async def test_wrong_types_of_numbers_booleans_and_whole_bodies_are_422_wrong_type(tenant: Tenant) -> None:
    product = await tenant.product("a")
    base = {"product_id": product["id"], "name": "P", "backend": "example"}
    for extra in ({"seats": "3"}, {"seats": True}, {"seats": 1.5}, {"options": []}, {"features": {}}):
        assert_error(await tenant.call("POST", "/v1/admin/policies", json={**base, **extra}), 422, "WRONG_TYPE")
    assert_error(
        await tenant.call(
            "POST", "/v1/admin/features", json={"product_id": product["id"], "code": "f", "name": "F", "metered": "yes"}
        ),
        422,
        "WRONG_TYPE",
    )
    for body in ([], "product", 1, None):
        assert_error(
            await tenant.call("POST", PRODUCTS, data=orjson.dumps(body), headers={"Content-Type": "application/json"}),
            422,
            "WRONG_TYPE",
        )


async def test_a_missing_required_field_is_a_422_missing_field(tenant: Tenant) -> None:
    assert_error(await tenant.call("POST", PRODUCTS, json={"code": "a"}), 422, "MISSING_FIELD")
    assert_error(
        await tenant.call("POST", PRODUCTS, data=b"", headers={"Content-Type": "application/json"}), 422, "MISSING_FIELD"
    )
    assert_error(await tenant.call("POST", "/v1/admin/licenses", json={}), 422, "MISSING_FIELD")
    assert_error(await tenant.call("POST", "/v1/admin/tokens", json={"name": "x"}), 422, "MISSING_FIELD")
    product = await tenant.product("a")
    policy = {"product_id": product["id"], "name": "P", "backend": "example", "features": [{"quantity": 2}]}
    assert_error(await tenant.call("POST", "/v1/admin/policies", json=policy), 422, "MISSING_FIELD")


async def test_a_value_outside_its_rules_is_a_422_invalid_field(tenant: Tenant) -> None:
    for body in (
        {"code": "Upper", "name": "A"},
        {"code": "a", "name": ""},
        {"code": "a", "name": "x" * 201},
        {"code": "a\n", "name": "A"},
        {"code": "a", "name": "A", "description": "d" * 2001},
    ):
        assert_error(await tenant.call("POST", PRODUCTS, json=body), 422, "INVALID_FIELD")
    product = await tenant.product("a")
    for released_at in (
        "2026-02-30T00:00:00Z",
        "2026-01-01T00:00:00",
        "yesterday",
        "9999-12-31T23:59:59-01:00",
        "2026-01-01T25:00:00Z",
    ):
        answer = await tenant.call(
            "POST", "/v1/admin/releases", json={"product_id": product["id"], "version": "1", "released_at": released_at}
        )
        assert_error(answer, 422, "INVALID_FIELD")
    for seats in (b"0", b"-1", b"1000001", b"1000000000000000000000000000000", b"1e30"):
        body = b'{"product_id":"%s","name":"P","backend":"example","seats":%s}' % (product["id"].encode(), seats)
        answer = await tenant.call("POST", "/v1/admin/policies", data=body, headers={"Content-Type": "application/json"})
        assert_error(answer, 422, "INVALID_FIELD", seats)
    assert (await tenant.ok("GET", "/v1/admin/policies"))["data"] == []


async def test_a_nul_character_in_any_string_is_a_422(tenant: Tenant) -> None:
    assert_error(await tenant.call("POST", PRODUCTS, json={"code": "a", "name": "A\x00B"}), 422, "INVALID_CHARACTER")
    product = await tenant.product("a")
    base = {"product_id": product["id"], "name": "P", "backend": "example"}
    assert_error(
        await tenant.call("POST", "/v1/admin/policies", json={**base, "options": {"k\x00": 1}}), 422, "INVALID_CHARACTER"
    )
    assert_error(
        await tenant.call("POST", "/v1/admin/policies", json={**base, "options": {"k": ["v\x00"]}}), 422, "INVALID_CHARACTER"
    )
    assert_error(
        await tenant.call("PATCH", f"{PRODUCTS}/{product['id']}", json={"description": "\x00"}), 422, "INVALID_CHARACTER"
    )
    assert (await tenant.ok("GET", f"{PRODUCTS}/{product['id']}"))["description"] is None


async def test_a_body_over_the_operations_limit_is_a_413_payload_too_large(tenant: Tenant) -> None:
    limit = DEFAULT_BODY_BYTES
    body = orjson.dumps({"code": "big", "name": "Big", "description": "x" * limit})
    assert_error(
        await tenant.call("POST", PRODUCTS, data=io.BytesIO(body), headers={"Content-Type": "application/json"}),  # type: ignore[arg-type]
        413,
        "PAYLOAD_TOO_LARGE",
    )

    async def chunks(count: int) -> AsyncIterator[bytes]:  # no Content-Length: the limit holds for a streamed body too
        for _ in range(count):
            yield b"x" * 10_000

    for count in (7, 200):  # over the operation's limit; over every operation's limit (MAX_BODY_BYTES)
        assert_error(
            await tenant.call("POST", PRODUCTS, data=chunks(count), headers={"Content-Type": "application/json"}),  # type: ignore[arg-type]
            413,
            "PAYLOAD_TOO_LARGE",
        )
    assert (await tenant.ok("GET", PRODUCTS))["data"] == []
    # Just under the limit is read (and refused by the schema, not by its size).
    near = orjson.dumps({"code": "big", "name": "Big", "description": "x" * (limit - 100)})
    assert_error(
        await tenant.call("POST", PRODUCTS, data=io.BytesIO(near), headers={"Content-Type": "application/json"}),  # type: ignore[arg-type]
        422,
        "INVALID_FIELD",
    )


@pytest.mark.parametrize("depth", [40, 1000, 4000])  # (more than 4096 levels hold too many values: TOO_MANY_VALUES)
async def test_a_body_nested_too_deep_is_a_400_nesting_too_deep(tenant: Tenant, depth: int) -> None:
    assert_error(
        await tenant.call("POST", PRODUCTS, data=nested(depth), headers={"Content-Type": "application/json"}),
        400,
        "NESTING_TOO_DEEP",
    )
    objects = b'{"a":' * depth + b"1" + b"}" * depth
    assert_error(
        await tenant.call("POST", PRODUCTS, data=objects, headers={"Content-Type": "application/json"}), 400, "NESTING_TOO_DEEP"
    )


async def test_nesting_within_the_limit_is_judged_by_the_schema(tenant: Tenant) -> None:
    assert_error(
        await tenant.call("POST", PRODUCTS, data=nested(20), headers={"Content-Type": "application/json"}), 422, "WRONG_TYPE"
    )


async def test_a_body_on_an_operation_without_one_is_a_400(tenant: Tenant) -> None:
    assert_error(await tenant.call("GET", PRODUCTS, data=b'{"code":"a"}'), 400, "UNEXPECTED_BODY")
    product = await tenant.product("a")
    assert_error(await tenant.call("DELETE", f"{PRODUCTS}/{product['id']}", json={"force": True}), 400, "UNEXPECTED_BODY")
    assert (await tenant.call("GET", f"{PRODUCTS}/{product['id']}")).status == 200


# --- query parameters and cursors ---------------------------------------------------------------------
async def test_an_unknown_or_repeated_query_parameter_is_a_400(tenant: Tenant) -> None:
    assert_error(await tenant.call("GET", PRODUCTS, params={"colour": "red"}), 400, "UNKNOWN_PARAMETER")
    assert_error(await tenant.call("GET", "/v1/admin/tenant", params={"limit": "5"}), 400, "UNKNOWN_PARAMETER")
    assert_error(await tenant.call("GET", PRODUCTS, params=[("limit", "5"), ("limit", "6")]), 400, "DUPLICATE_PARAMETER")
    assert_error(await tenant.call("GET", PRODUCTS, params={"cursor": "\x00"}), 400, "INVALID_CHARACTER")


async def test_a_bad_cursor_is_a_400_invalid_cursor(tenant: Tenant) -> None:
    for _ in range(3):
        await tenant.customer(f"{new_id('cus').lower()}@example.com")
    page = await tenant.ok("GET", "/v1/admin/customers", params={"limit": "1"})
    good = page["next_cursor"]
    assert good
    events = await tenant.ok("GET", "/v1/admin/events", params={"limit": "1"})
    bad = {
        "garbage": "!!!not-a-cursor!!!",
        "not base64 json": base64.urlsafe_b64encode(b"hello").decode(),
        "json, not a pair": cursor_of({"after": "x"}),
        "another list's cursor": cursor_of(["products", page["data"][0]["id"]]),
        "the events' cursor": events["next_cursor"],
        "a number for a list of objects": cursor_of(["customers", 5]),
        "a boolean": cursor_of(["customers", True]),
        "not an id": cursor_of(["customers", "x' OR 1=1 --"]),
        "a NUL in the position": cursor_of(["customers", "cus_\x00"]),
        "truncated": good[:-3],
    }
    for label, cursor in bad.items():
        assert_error(await tenant.call("GET", "/v1/admin/customers", params={"cursor": cursor}), 400, "INVALID_CURSOR", label)
    for label, cursor in {
        "a string for events": cursor_of(["events", "evt"]),
        "a negative sequence": cursor_of(["events", -1]),
        "a sequence beyond 64 bits": cursor_of(["events", 2**63]),
        "a fraction": cursor_of(["events", 1.5]),
        "a list's cursor": good,
    }.items():
        assert_error(await tenant.call("GET", "/v1/admin/events", params={"cursor": cursor}), 400, "INVALID_CURSOR", label)
    for cursor in (cursor_of(["tokens", 5]), good, cursor_of(["tokens", "tok_" + "é" * 26])):
        assert_error(await tenant.call("GET", "/v1/admin/tokens", params={"cursor": cursor}), 400, "INVALID_CURSOR")
    assert_error(await tenant.call("GET", "/v1/admin/customers", params={"cursor": "x" * 513}), 400, "INVALID_PARAMETER")
    # The good cursor still works.
    assert len((await tenant.ok("GET", "/v1/admin/customers", params={"cursor": good}))["data"]) == 2


# --- routes, methods, credentials -----------------------------------------------------------------------
async def test_an_unknown_route_is_a_json_404_route_not_found(tenant: Tenant) -> None:
    for path in ("/nope", "/v1/admin/widgets", "/v1/admin/products/x/y", "/v1/admin/licenses/lic_x/explode"):
        assert_error(await tenant.call("GET", path), 404, "ROUTE_NOT_FOUND")
    assert_error(await tenant.gateway.call("POST", "/v1/admin/widgets", json={}), 404, "ROUTE_NOT_FOUND")


async def test_a_method_a_route_does_not_have_is_a_json_405(tenant: Tenant) -> None:
    product = await tenant.product("a")
    for method, path in (
        ("PUT", PRODUCTS),
        ("DELETE", PRODUCTS),
        ("PUT", f"{PRODUCTS}/{product['id']}"),
        ("POST", f"{PRODUCTS}/{product['id']}"),
        ("PATCH", "/v1/admin/events"),
        ("DELETE", "/v1/keys"),
    ):
        assert_error(await tenant.call(method, path, json={}), 405, "METHOD_NOT_ALLOWED")


async def test_missing_malformed_unknown_and_revoked_tokens_are_401(tenant: Tenant) -> None:
    gateway = tenant.gateway
    assert_error(await gateway.call("GET", PRODUCTS), 401, "UNAUTHENTICATED")
    assert_error(await gateway.call("GET", PRODUCTS, headers={"Authorization": "Basic YTpi"}), 401, "UNAUTHENTICATED")
    assert_error(await gateway.call("GET", PRODUCTS, headers={"Authorization": "Bearer"}), 401, "UNAUTHENTICATED")
    assert_error(await gateway.call("GET", PRODUCTS, token="not-a-token"), 401, "TOKEN_MALFORMED")
    token_id, secret = tenant.admin_token.split(".")
    assert_error(await gateway.call("GET", PRODUCTS, token=f"{token_id}.{'A' * 43}"), 401, "TOKEN_INVALID")
    assert_error(await gateway.call("GET", PRODUCTS, token=f"{new_id('tok')}.{secret}"), 401, "TOKEN_INVALID")
    other = await tenant.token("developer")
    other_id = other.split(".")[0]
    await tenant.ok("DELETE", f"/v1/admin/tokens/{other_id}")
    assert_error(await gateway.call("GET", PRODUCTS, token=other), 401, "TOKEN_REVOKED")
    # The token never appears in an answer.
    answer = await gateway.call("GET", PRODUCTS, token=f"{token_id}.{'A' * 43}")
    assert "A" * 43 not in answer.text and token_id not in answer.text


async def test_an_invalid_idempotency_key_is_a_400(tenant: Tenant) -> None:
    for key in ("has space", "", "é", "k" * 256):
        answer = await tenant.call("POST", PRODUCTS, json={"code": "a", "name": "A"}, headers={"Idempotency-Key": key})
        assert_error(answer, 400, "INVALID_IDEMPOTENCY_KEY")
    assert (await tenant.ok("GET", PRODUCTS))["data"] == []


async def test_every_error_body_is_exactly_code_and_message(tenant: Tenant) -> None:
    """One of each kind of failure, checked against the documented Error schema."""
    document = await tenant.ok("GET", "/openapi.json", token=None)
    schema = document["components"]["schemas"]["Error"]
    answers = [
        await tenant.call("POST", PRODUCTS, data=b"{", headers={"Content-Type": "application/json"}),
        await tenant.call("POST", PRODUCTS, json={"code": "a", "name": "A", "x": 1}),
        await tenant.call("GET", f"{PRODUCTS}/{new_id('prd')}"),
        await tenant.call("GET", "/nowhere"),
        await tenant.call("PUT", PRODUCTS),
        await tenant.gateway.call("GET", PRODUCTS),
        await tenant.call("GET", PRODUCTS, params={"cursor": "x"}),
        await tenant.call("POST", PRODUCTS, data=nested(40), headers={"Content-Type": "application/json"}),
    ]
    for answer in answers:
        assert answer.status >= 400
        jsonschema.validate(json.loads(answer.text), schema)
