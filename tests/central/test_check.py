"""POST /v1/check through the real gateway, with a third-party-style backend registered as a plugin."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson
import pytest
from licensor.backend import CheckRequest
from licensor.central import license_keys
from licensor.errors import BadSignatureError
from licensor.model import LICENSE, POLICY, now_us
from licensor.verdict import Code
from licensor_client.answers import verify_answer

from tests.central.conftest import Gateway, Tenant, db_execute
from tests.example_backend import ExampleBackend, ExamplePlugin


@pytest.fixture
def gateway_plugins() -> tuple[object, ...]:
    return (ExamplePlugin(),)


async def _licensed(tenant: Tenant, backend: str = "example") -> dict[str, Any]:
    product = await tenant.product(code="cad")
    await tenant.feature(product["id"], "export")
    await tenant.feature(product["id"], "print")
    policy = await tenant.policy(product["id"], backend=backend, features=[{"code": "export"}])
    license = await tenant.license(policy["id"])
    return {"product": product, "policy": policy, "license": license}


async def _check(gateway: Gateway, **body: Any) -> Any:
    answer = await gateway.call("POST", "/v1/check", json=body)
    assert answer.status == 200, answer.body
    return answer.body


async def test_a_valid_license_is_answered_valid_with_its_entitlements(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    body = await _check(gateway, tenant=tenant.id, product="cad", license_key=made["license"]["key"], features=["export"])
    assert body["verdict"]["code"] == "VALID" and body["verdict"]["valid"] is True
    assert body["verdict"]["license_id"] == made["license"]["id"]
    assert body["verdict"]["entitlements"] == [{"feature": "export", "quantity": None}]
    assert body["signed_answer"] is None


async def test_refusals_are_verdicts_with_stable_codes(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    key = made["license"]["key"]
    assert (await _check(gateway, tenant=tenant.id, product="cad", license_key=key, features=["print"]))["verdict"][
        "code"
    ] == "FEATURE_NOT_ENTITLED"
    assert (await _check(gateway, tenant=tenant.id, product="other", license_key=key))["verdict"]["code"] == "NOT_FOUND"
    assert (await _check(gateway, tenant=tenant.id, product="cad", license_key=license_keys.generate()))["verdict"][
        "code"
    ] == "NOT_FOUND"
    await tenant.ok("POST", f"/v1/admin/licenses/{made['license']['id']}/suspend")
    assert (await _check(gateway, tenant=tenant.id, product="cad", license_key=key))["verdict"]["code"] == "SUSPENDED"
    await tenant.ok("POST", f"/v1/admin/licenses/{made['license']['id']}/revoke")
    assert (await _check(gateway, tenant=tenant.id, product="cad", license_key=key))["verdict"]["code"] == "REVOKED"


async def test_another_tenants_key_is_not_found_in_this_tenant(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    other = await gateway.tenant("Vendor B")
    body = await _check(gateway, tenant=other.id, product="cad", license_key=made["license"]["key"])
    assert body["verdict"]["code"] == "NOT_FOUND" and body["verdict"]["license_id"] is None


async def test_a_mistyped_key_is_a_422_not_a_verdict(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    key = made["license"]["key"]
    typo = key[:-1] + ("0" if key[-1] != "0" else "1")
    answer = await gateway.call("POST", "/v1/check", json={"tenant": tenant.id, "product": "cad", "license_key": typo})
    assert answer.status == 422 and answer.code == "LICENSE_KEY_MALFORMED"


async def test_a_policy_whose_backend_is_not_installed_is_a_503(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    # The plugin was uninstalled after the policy was made (a new policy could not name it: see below).
    await db_execute(gateway.store_url, "UPDATE policies SET backend = 'not-installed' WHERE id = ?", made["policy"]["id"])
    answer = await gateway.call(
        "POST", "/v1/check", json={"tenant": tenant.id, "product": "cad", "license_key": made["license"]["key"]}
    )
    assert answer.status == 503 and answer.code == "BACKEND_UNAVAILABLE"


async def test_with_a_nonce_the_answer_is_signed_and_verifies_offline(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    nonce = uuid.uuid4().hex
    body = await _check(
        gateway, tenant=tenant.id, product="cad", license_key=made["license"]["key"], features=["export"], nonce=nonce
    )
    published = await gateway.call("GET", f"/v1/keys?tenant={tenant.id}")
    keys = {key["kid"]: core_public_key(key["public_key"]) for key in published.body["keys"]}
    assert verify_answer(body["signed_answer"], keys, nonce=nonce, path="/v1/check") == body["verdict"]
    other = await gateway.call("GET", f"/v1/keys?tenant={(await gateway.tenant('Vendor B')).id}")
    other_keys = {key["kid"]: core_public_key(key["public_key"]) for key in other.body["keys"]}
    forged = {kid: next(iter(other_keys.values())) for kid in keys}  # the same key ids, another tenant's key
    with pytest.raises(BadSignatureError):
        verify_answer(body["signed_answer"], forged, nonce=nonce, path="/v1/check")


def core_public_key(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    assert len(raw) == 32
    return raw


@pytest.mark.parametrize(("version", "code"), [("3.1", Code.VALID), ("4.0", Code.VERSION_NOT_ENTITLED)])
async def test_the_backend_is_given_the_version_asked_for(gateway: Gateway, tenant: Tenant, version: str, code: Code) -> None:
    made = await _licensed(tenant)
    license_row = await gateway.store.get(tenant.id, LICENSE, made["license"]["id"])
    policy_row = await gateway.store.get(tenant.id, POLICY, made["policy"]["id"])
    assert license_row is not None and policy_row is not None
    request = CheckRequest(tenant.id, license_row, policy_row, ("export",), version, now_us(), options={"max_major_version": 3})
    assert (await ExampleBackend().check(request)).code is code


async def test_a_policy_is_checked_by_its_backend_when_created(tenant: Tenant) -> None:
    product = await tenant.product(code="cad")
    base = {"product_id": product["id"], "name": "P"}
    unknown = await tenant.call("POST", "/v1/admin/policies", json={**base, "backend": "not-installed"})
    assert unknown.status == 422 and unknown.code == "UNKNOWN_BACKEND"
    for options in ({"max_major_version": -1}, {"max_major_version": "3"}, {"unknown_option": 1}):
        refused = await tenant.call("POST", "/v1/admin/policies", json={**base, "backend": "example", "options": options})
        assert refused.status == 422 and refused.code == "INVALID_POLICY_OPTIONS", options
    policy = await tenant.policy(product["id"], options={"max_major_version": 3})
    changed = await tenant.call("PATCH", f"/v1/admin/policies/{policy['id']}", json={"options": {"max_major_version": "x"}})
    assert changed.status == 422 and changed.code == "INVALID_POLICY_OPTIONS"
    assert (await tenant.ok("GET", f"/v1/admin/policies/{policy['id']}"))["options"] == {"max_major_version": 3}


async def test_a_clock_a_test_moves_is_the_one_verdicts_and_signed_answers_see(gateway: Gateway, tenant: Tenant) -> None:
    product = await tenant.product(code="cad")
    policy = await tenant.policy(product["id"], backend="example", duration={"kind": "subscription", "days": 30})
    license = await tenant.license(policy["id"])
    check = {"tenant": tenant.id, "product": "cad", "license_key": license["key"]}
    assert (await _check(gateway, **check))["verdict"]["code"] == "VALID"  # and remembered for identical repeats
    clock = gateway.freeze_clock()
    clock.advance(31 * 86_400)
    assert gateway.backend("example").clock() == clock.now
    assert (await _check(gateway, **check))["verdict"]["code"] == "EXPIRED"  # not the remembered VALID
    signed = await _check(gateway, **check, nonce="n" * 16)
    payload = signed["signed_answer"].split(".")[2]
    document = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert document["iat"] == clock.seconds and document["verdict"]["code"] == "EXPIRED"
    clock.advance(-31 * 86_400)
    assert (await _check(gateway, **check))["verdict"]["code"] == "VALID"


async def test_a_check_presents_a_license_key_with_its_tenant_or_a_subject(gateway: Gateway, tenant: Tenant) -> None:
    made = await _licensed(tenant)
    key = made["license"]["key"]
    for body, code, message in (
        ({"product": "cad"}, "MISSING_FIELD", "send license_key (with tenant), or subject with a product token"),
        ({"product": "cad", "license_key": key}, "MISSING_FIELD", "field tenant: is required"),
        ({"product": "cad", "license_key": key, "tenant": tenant.id, "subject": "u-1"}, "INVALID_FIELD", "field subject"),
    ):
        answer = await gateway.call("POST", "/v1/check", json=body)
        assert (answer.status, answer.code) == (422, code) and message in answer.body["error"]["message"], answer.text
