"""Tenant isolation and roles, walked over every admin operation the OpenAPI document declares.

Tenant A owns one of everything, including an activation-backend license with devices activated through the
device API (one of them withdrawn by the vendor), and a cloud-backend license with credential files and leases
checked out through the device API with them. Every ``/v1/admin/`` operation of ``/openapi.json`` is called
with a concrete, valid request built from the table ``WALK`` (keyed by operationId): with tenant B's admin token,
A's read-only token, a revoked token, no token, and tokens of roles the operation does not allow. None of them may
read or change anything of A's. Finally A's own admin token runs every request, proving that each one was valid (so a
refusal above means isolation, not a malformed request) and that every answer matches its documented schema. No
answer, not even A's own, ever holds a credential's or a lease's secret (only the file of a new credential does).

A route missing from ``WALK`` fails the walk: add it to the table, with what tenant B must get.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from licensor.fingerprint import hash_components, product_salt
from licensor.testing.infrastructure import free_port
from licensor_client.activation import DeviceKey, device_request
from licensor_client.receipts import make_receipt

from tests.commerce.shops import StripeShop

from .conftest import Answer, Gateway, Tenant


@pytest.fixture(autouse=True)
def _local_webhook_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tenant A's webhook endpoint points at 127.0.0.1 (nothing else may be reached from here)."""
    monkeypatch.setenv("LICENSOR_WEBHOOK_ALLOW_PRIVATE", "1")


# What tenant B's admin token gets when it sends the request built for tenant A.
NOT_FOUND = "404: the object is A's"
REFERENCE = "422 REFERENCE_NOT_FOUND: the body names A's objects"
CREATED = "2xx: created in B"
OWN = "2xx: B's own data only"
TENANT_MISMATCH = "403 TENANT_MISMATCH: the device request names A's tenant"

Objects = dict[str, Any]
Body = Callable[[Objects], dict[str, Any]] | None


@dataclass(frozen=True)
class Step:
    target: str | None  # the key in A's objects whose id fills {id}
    body: Body
    for_b: str


WALK: dict[str, Step] = {
    # products
    "create_product": Step(None, lambda o: {"code": "walk", "name": "Walk"}, CREATED),
    "list_products": Step(None, None, OWN),
    "get_product": Step("product", None, NOT_FOUND),
    "update_product": Step("product", lambda o: {"name": "Renamed"}, NOT_FOUND),
    "delete_product": Step("spare_product", None, NOT_FOUND),
    # features
    "create_feature": Step(None, lambda o: {"product_id": o["product"]["id"], "code": "walk", "name": "Walk"}, REFERENCE),
    "list_features": Step(None, None, OWN),
    "get_feature": Step("feature", None, NOT_FOUND),
    "update_feature": Step("feature", lambda o: {"name": "Renamed", "metered": True}, NOT_FOUND),
    "delete_feature": Step("spare_feature", None, NOT_FOUND),
    # releases
    "create_release": Step(
        None, lambda o: {"product_id": o["product"]["id"], "version": "9.9", "required_features": ["export"]}, REFERENCE
    ),
    "list_releases": Step(None, None, OWN),
    "get_release": Step("release", None, NOT_FOUND),
    "update_release": Step("release", lambda o: {"channel": "beta"}, NOT_FOUND),
    "delete_release": Step("spare_release", None, NOT_FOUND),
    # policies
    "create_policy": Step(None, lambda o: {"product_id": o["product"]["id"], "name": "Walk", "backend": "example"}, REFERENCE),
    "list_policies": Step(None, None, OWN),
    "get_policy": Step("policy", None, NOT_FOUND),
    "update_policy": Step("policy", lambda o: {"seats": 9}, NOT_FOUND),
    "delete_policy": Step("spare_policy", None, NOT_FOUND),
    # customers
    "create_customer": Step(None, lambda o: {"email": "walk@example.com", "name": "Walk"}, CREATED),
    "list_customers": Step(None, None, OWN),
    "get_customer": Step("customer", None, NOT_FOUND),
    "update_customer": Step("customer", lambda o: {"name": "Renamed"}, NOT_FOUND),
    "delete_customer": Step("spare_customer", None, NOT_FOUND),
    # licenses
    "create_license": Step(None, lambda o: {"policy_id": o["policy"]["id"], "customer_id": o["customer"]["id"]}, REFERENCE),
    "list_licenses": Step(None, None, OWN),
    "get_license": Step("license", None, NOT_FOUND),
    "update_license": Step("license", lambda o: {"order_ref": "walk", "customer_id": None}, NOT_FOUND),
    "lookup_license": Step(None, lambda o: {"key": o["license"]["key"]}, NOT_FOUND),
    "suspend_license": Step("license_to_suspend", lambda o: {"reason": "walk"}, NOT_FOUND),
    "reinstate_license": Step("suspended_license", lambda o: {}, NOT_FOUND),
    "revoke_license": Step("license_to_revoke", lambda o: {"reason": "walk"}, NOT_FOUND),
    "renew_license": Step("license_to_renew", lambda o: {}, NOT_FOUND),
    "push_license_update": Step("license", lambda o: {"reason": "walk"}, NOT_FOUND),
    "push_product_update": Step("product", lambda o: {}, NOT_FOUND),
    # activations (the activation backend's)
    "answer_activation_request": Step(None, lambda o: {"request": new_device_request(o)}, TENANT_MISMATCH),
    "list_activations": Step("device_license", None, NOT_FOUND),
    "get_activation": Step("activation", None, NOT_FOUND),
    "withdraw_activation": Step("activation_to_withdraw", lambda o: {"reason": "walk"}, NOT_FOUND),
    "reinstate_activation": Step("withdrawn_activation", None, NOT_FOUND),
    "deactivation_receipt": Step(None, lambda o: {"receipt": o["deactivation_receipt"]}, NOT_FOUND),
    # credentials and leases (the cloud backend's)
    "create_credential": Step("cloud_license", lambda o: {"label": "walk"}, NOT_FOUND),
    "list_credentials": Step("cloud_license", None, NOT_FOUND),
    "get_credential": Step("credential", None, NOT_FOUND),
    "label_credential": Step("credential", lambda o: {"label": "Walk"}, NOT_FOUND),
    "revoke_credential": Step("credential_to_revoke", lambda o: {"reason": "walk"}, NOT_FOUND),
    "reissue_credential": Step("credential_to_reissue", lambda o: {"label": "walk"}, NOT_FOUND),
    "list_leases": Step("cloud_license", None, NOT_FOUND),
    "get_lease": Step("lease", None, NOT_FOUND),
    "end_lease": Step("lease_to_end", lambda o: {"reason": "walk"}, NOT_FOUND),
    "lease_usage": Step("cloud_license", None, NOT_FOUND),
    # the example backend's (tests/example_backend.py)
    "get_example_terms": Step("license", None, NOT_FOUND),
    # order intake
    "create_order_source": Step(
        None, lambda o: {"kind": "stripe", "name": "Walk", "secrets": ["whsec_walk_0123456789"]}, CREATED
    ),
    "list_order_sources": Step(None, None, OWN),
    "get_order_source": Step("order_source", None, NOT_FOUND),
    "update_order_source": Step("order_source", lambda o: {"name": "Renamed", "effects": {"refund": "suspend"}}, NOT_FOUND),
    "delete_order_source": Step("spare_order_source", None, NOT_FOUND),
    "create_order_mapping": Step(
        None, lambda o: {"source_id": o["order_source"]["id"], "item": "walk", "policy_id": o["policy"]["id"]}, REFERENCE
    ),
    "list_order_mappings": Step(None, None, OWN),
    "get_order_mapping": Step("order_mapping", None, NOT_FOUND),
    "update_order_mapping": Step("order_mapping", lambda o: {"policy_id": o["policy"]["id"]}, NOT_FOUND),
    "delete_order_mapping": Step("spare_order_mapping", None, NOT_FOUND),
    "list_order_events": Step(None, None, OWN),
    "get_order_event": Step("order_event", None, NOT_FOUND),
    # webhooks out (disabled endpoints: nothing is sent from this test)
    "create_webhook_endpoint": Step(None, lambda o: {"url": "https://hooks.example.com/b", "state": "disabled"}, CREATED),
    "list_webhook_endpoints": Step(None, None, OWN),
    "get_webhook_endpoint": Step("webhook_endpoint", None, NOT_FOUND),
    "update_webhook_endpoint": Step("webhook_endpoint", lambda o: {"description": "Renamed"}, NOT_FOUND),
    "delete_webhook_endpoint": Step("spare_webhook_endpoint", None, NOT_FOUND),
    "list_webhook_deliveries": Step(None, None, OWN),
    "get_webhook_delivery": Step("webhook_delivery", None, NOT_FOUND),
    "retry_webhook_delivery": Step("webhook_delivery", lambda o: {}, NOT_FOUND),
    "list_webhook_attempts": Step(None, None, OWN),
    "get_webhook_attempt": Step("webhook_attempt", None, NOT_FOUND),
    # the portal's branding (one per tenant: B sets its own)
    "get_portal_branding": Step(None, None, OWN),
    "set_portal_branding": Step(None, lambda o: {"name": "Walk Software", "primary_color": "#203040"}, OWN),
    # tokens
    "create_token": Step(None, lambda o: {"name": "walk", "role": "developer"}, CREATED),
    "list_tokens": Step(None, None, OWN),
    "get_token": Step("developer_token", None, NOT_FOUND),
    "revoke_token": Step("spare_token", None, NOT_FOUND),
    # keys, events, tenant
    "list_keys": Step(None, None, OWN),
    "rotate_keys": Step(None, None, OWN),
    "list_events": Step(None, None, OWN),
    "verify_events": Step(None, None, OWN),
    "get_tenant": Step(None, None, OWN),
}

# Query filters that name an object, and the object of A's they are given in B's lists.
FILTER_TARGETS = {
    "product_id": "product",
    "policy_id": "policy",
    "customer_id": "customer",
    "subject_id": "license",
    "source_id": "order_source",
    "endpoint_id": "webhook_endpoint",
    "delivery_id": "webhook_delivery",
}


@dataclass(frozen=True)
class AdminOperation:
    operation_id: str
    method: str
    path: str
    roles: frozenset[str]
    mutating: bool
    success: str
    document: dict[str, Any]

    def request(self, objects: Objects) -> tuple[str, dict[str, Any] | None]:
        step = WALK[self.operation_id]
        path = self.path
        if "{id}" in path:
            assert step.target is not None, f"{self.operation_id} needs an object for {{id}}"
            path = path.replace("{id}", objects[step.target]["id"])
        else:
            assert step.target is None, self.operation_id
        body = step.body(objects) if step.body is not None else None
        assert (body is not None) == ("requestBody" in self.document), (
            f"{self.operation_id}: the table's body does not fit the document"
        )
        return path, body


def admin_operations(document: dict[str, Any]) -> list[AdminOperation]:
    found = []
    for path, methods in document["paths"].items():
        if not path.startswith("/v1/admin/"):
            continue
        for method, operation in methods.items():
            headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
            success = [status for status in operation["responses"] if status.startswith("2")]
            assert len(success) == 1, operation["operationId"]
            found.append(
                AdminOperation(
                    operation["operationId"],
                    method.upper(),
                    path,
                    frozenset(operation.get("x-roles", ())),
                    "Idempotency-Key" in headers,
                    success[0],
                    operation,
                )
            )
    return found


# --- tenant A's world ------------------------------------------------------------------------------------
def new_device_request(o: Objects, device: DeviceKey | None = None) -> str:
    """A dv1 activate request for A's activation license from a device never seen before (its own key and
    machine), made now: device requests carry their time, and a device activates once."""
    components = {name: uuid.uuid4().hex for name in ("machine_id", "board", "cpu", "disk", "mac", "hostname")}
    tenant_id, product = o["tenant"]["id"], o["device_product"]["code"]
    return device_request(
        device or DeviceKey.generate(),
        "activate",
        tenant=tenant_id,
        product=product,
        fingerprint=hash_components(components, product_salt(tenant_id, product)),
        license_key=o["device_license"]["key"],
    )


async def build_world(tenant: Tenant) -> Objects:
    """One of everything for tenant A (and spares for the operations that delete or change state)."""
    o: Objects = {"tenant": await tenant.ok("GET", "/v1/admin/tenant")}
    o["product"] = await tenant.product("studio", description="A's product")
    o["feature"] = await tenant.feature(o["product"]["id"], "export")
    o["release"] = await tenant.ok("POST", "/v1/admin/releases", 201, json={"product_id": o["product"]["id"], "version": "1.0"})
    o["policy"] = await tenant.policy(
        o["product"]["id"], duration={"kind": "subscription", "days": 30}, features=[{"code": "export"}]
    )
    o["customer"] = await tenant.customer("ada@example.com")
    o["license"] = await tenant.license(o["policy"]["id"], customer_id=o["customer"]["id"])
    o["spare_product"] = await tenant.product("spare")
    o["spare_feature"] = await tenant.feature(o["product"]["id"], "spare")
    o["spare_release"] = await tenant.ok(
        "POST", "/v1/admin/releases", 201, json={"product_id": o["product"]["id"], "version": "0.9"}
    )
    o["spare_policy"] = await tenant.policy(o["product"]["id"], name="Spare")
    o["spare_customer"] = await tenant.customer("spare@example.com")
    for name in ("license_to_suspend", "suspended_license", "license_to_revoke", "license_to_renew"):
        o[name] = await tenant.license(o["policy"]["id"])
    await tenant.ok("POST", f"/v1/admin/licenses/{o['suspended_license']['id']}/suspend", json={})
    # Devices activate through the device API (no API token); the vendor withdraws one, for reinstating.
    o["device_product"] = await tenant.product("cad")
    o["device_policy"] = await tenant.policy(o["device_product"]["id"], name="Devices", backend="activation", seats=10)
    o["device_license"] = await tenant.license(o["device_policy"]["id"])
    for name in ("activation", "activation_to_withdraw", "withdrawn_activation"):
        issued = await tenant.ok("POST", "/v1/activations", 201, json={"request": new_device_request(o)}, token=None)
        o[name] = issued["activation"]
    await tenant.ok("POST", f"/v1/admin/activations/{o['withdrawn_activation']['id']}/withdraw", json={})
    # An offline device's deactivation receipt, signed with its key.
    offline_device = DeviceKey.generate()
    offline = await tenant.ok("POST", "/v1/activations", 201, json={"request": new_device_request(o, offline_device)}, token=None)
    o["deactivation_receipt"] = make_receipt(offline_device.seed, o["tenant"]["id"], offline["activation"]["id"], 1)
    # Credential files of a cloud license, and leases checked out with them through the device API (no API token).
    o["cloud_product"] = await tenant.product("render")
    o["cloud_policy"] = await tenant.policy(o["cloud_product"]["id"], name="Floating", backend="cloud", seats=10)
    o["cloud_license"] = await tenant.license(o["cloud_policy"]["id"])
    o["device_secrets"] = []  # credential and lease secrets: no admin answer may hold one
    for name, leases in (
        ("credential", ("lease", "lease_to_end")),
        ("credential_to_revoke", ("revoked_lease",)),
        ("credential_to_reissue", ("reissued_lease",)),
    ):
        made = await tenant.ok("POST", f"/v1/admin/licenses/{o['cloud_license']['id']}/credentials", 201, json={"label": name})
        o[name] = made["credential"]
        credential = made["credential_file"]["credential"]
        o["device_secrets"].append(credential.partition(".")[2])
        for lease in leases:
            body = {"tenant": o["tenant"]["id"], "credential": credential, "device_id": f"walk-{uuid.uuid4().hex}"}
            granted = await tenant.ok("POST", "/v1/leases", 201, json=body, token=None)
            o[lease] = granted["lease"]
            o["device_secrets"].append(granted["lease_secret"])
    # An order source with a mapping, and an order received from it (signed the way Stripe signs).
    shop = StripeShop()
    for name in ("order_source", "spare_order_source"):
        o[name] = await tenant.ok(
            "POST", "/v1/admin/order-sources", 201, json={"kind": "stripe", "name": name, "secrets": [shop.secret]}
        )
    for name, item in (("order_mapping", "pro"), ("spare_order_mapping", "spare")):
        body = {"source_id": o["order_source"]["id"], "item": item, "policy_id": o["policy"]["id"]}
        o[name] = await tenant.ok("POST", "/v1/admin/order-mappings", 201, json=body)
    order = shop.purchase(uuid.uuid4().hex, "pro", "buyer@example.com")
    received = await tenant.gateway.call("POST", f"/v1/orders/{o['order_source']['id']}", data=order.body, headers=order.headers)
    assert received.status == 200, received.text
    o["order_event"] = received.body["events"][0]
    # A webhook endpoint with a delivery and an attempt (failed, to a closed port; then disabled, so nothing more
    # is sent while the walk runs).
    port = free_port()
    for name in ("webhook_endpoint", "spare_webhook_endpoint"):
        body = {"url": f"http://127.0.0.1:{port}/hooks", "event_types": ["customer.*"]}
        o[name] = await tenant.ok("POST", "/v1/admin/webhook-endpoints", 201, json=body)
    await tenant.ok("PATCH", f"/v1/admin/webhook-endpoints/{o['spare_webhook_endpoint']['id']}", json={"state": "disabled"})
    await tenant.customer("webhook@example.com")
    o["webhook_attempt"] = await eventually(tenant, "/v1/admin/webhook-attempts")
    o["webhook_delivery"] = await tenant.ok("GET", f"/v1/admin/webhook-deliveries/{o['webhook_attempt']['delivery_id']}")
    await tenant.ok("PATCH", f"/v1/admin/webhook-endpoints/{o['webhook_endpoint']['id']}", json={"state": "disabled"})
    for name, role in (("developer_token", "developer"), ("spare_token", "support")):
        token = await tenant.token(role)
        o[name] = {"id": token.split(".")[0], "token": token}
    return o


async def eventually(tenant: Tenant, path: str, timeout_s: float = 20.0) -> dict[str, Any]:
    """The first item of a list that the gateway fills in the background."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        items = await tenant.list_all(path)
        if items:
            return items[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} stayed empty")


async def snapshot(tenant: Tenant, objects: Objects) -> dict[str, Any]:
    """Everything tenant A's admin can see."""
    seen: dict[str, Any] = {}
    for plural in ("products", "features", "releases", "policies", "customers", "licenses", "tokens", "events"):
        seen[plural] = await tenant.list_all(f"/v1/admin/{plural}")
    for plural in (
        "order-sources",
        "order-mappings",
        "order-events",
        "webhook-endpoints",
        "webhook-deliveries",
        "webhook-attempts",
    ):
        seen[plural] = await tenant.list_all(f"/v1/admin/{plural}")
    seen["activations"] = await tenant.list_all(f"/v1/admin/licenses/{objects['device_license']['id']}/activations")
    seen["credentials"] = await tenant.list_all(f"/v1/admin/licenses/{objects['cloud_license']['id']}/credentials")
    seen["leases"] = await tenant.list_all(f"/v1/admin/licenses/{objects['cloud_license']['id']}/leases")
    seen["keys"] = await tenant.ok("GET", "/v1/admin/keys")
    seen["tenant"] = await tenant.ok("GET", "/v1/admin/tenant")
    seen["chain"] = await tenant.ok("GET", "/v1/admin/events/verify")
    return seen


def secrets_of(tenant: Tenant, seen: dict[str, Any], objects: Objects) -> set[str]:
    """Strings of tenant A that no answer to tenant B may contain."""
    found = {
        tenant.id,
        tenant.admin_token.split(".")[0],
        objects["license"]["key"],
        objects["device_license"]["key"],
        objects["cloud_license"]["key"],
        *objects["device_secrets"],
    }
    for plural in (
        "products",
        "features",
        "releases",
        "policies",
        "customers",
        "licenses",
        "tokens",
        "events",
        "activations",
        "credentials",
        "leases",
    ):
        found |= {item["id"] for item in seen[plural]}
    found |= {activation["device_key"] for activation in seen["activations"]}
    found |= {lease["device_id"] for lease in seen["leases"]}
    found |= {key["kid"] for key in seen["keys"]["data"]} | {key["public_key"] for key in seen["keys"]["data"]}
    found |= {event["hash"] for event in seen["events"]}
    return found


def leaked_device_secrets(objects: Objects, text: str) -> list[str]:
    """The credentials' and leases' secrets (or any stored hash of a secret) that ``text`` holds."""
    return [secret for secret in objects["device_secrets"] if secret in text] + (["secret_hash"] if "secret_hash" in text else [])


async def send(gateway: Gateway, op: AdminOperation, objects: Objects, token: str | None, **kwargs: Any) -> Answer:
    path, body = op.request(objects)
    return await gateway.call(op.method, path, token=token, json=body, **kwargs)


# --- the walk ------------------------------------------------------------------------------------------
async def test_the_walk_covers_every_admin_operation_of_the_document(tenant: Tenant) -> None:
    document = await tenant.ok("GET", "/openapi.json", token=None)
    declared = {op.operation_id for op in admin_operations(document)}
    assert set(WALK) == declared, (
        f"admin operations missing from the isolation walk: {sorted(declared - set(WALK))}; "
        f"in the walk but not in the document: {sorted(set(WALK) - declared)}"
    )
    assert len(declared) == len(admin_operations(document)), "operationIds are unique"


async def test_no_token_reaches_another_tenants_data_or_does_more_than_its_role(gateway: Gateway) -> None:
    a = await gateway.tenant("Vendor A")
    b = await gateway.tenant("Vendor B")
    document = await a.ok("GET", "/openapi.json", token=None)
    operations = admin_operations(document)
    assert {op.operation_id for op in operations} == set(WALK), "every admin operation is in the walk (see the test above)"
    objects = await build_world(a)
    a_tokens = await a.tokens()
    revoked = await a.token("admin", name="to be revoked")
    await a.ok("DELETE", f"/v1/admin/tokens/{revoked.split('.')[0]}")
    product_token = await a.token("product", product_id=objects["product"]["id"])
    before = await snapshot(a, objects)
    assert {item["id"] for item in before["credentials"]} == {
        objects[name]["id"] for name in ("credential", "credential_to_revoke", "credential_to_reissue")
    }
    assert len(before["leases"]) == 4 and {lease["state"] for lease in before["leases"]} == {"active"}
    assert not leaked_device_secrets(objects, str(before)), "a list shows a credential's or a lease's secret"
    a_secrets = secrets_of(a, before, objects)
    # B has objects of its own, so B's lists are not trivially empty.
    b_product = await b.product("studio")
    b_customer = await b.customer("ada@example.com")

    # 1. Tenant B's admin token.
    b_created: list[tuple[str, dict[str, Any]]] = []
    for op in operations:
        step = WALK[op.operation_id]
        answer = await send(gateway, op, objects, b.admin_token)
        leaked = [secret for secret in a_secrets if secret in answer.text]
        assert not leaked, f"{op.operation_id}: tenant B's answer holds tenant A's {leaked}"
        if step.for_b == NOT_FOUND:
            assert answer.status == 404, f"{op.operation_id}: {answer.status} {answer.text}"
        elif step.for_b == REFERENCE:
            assert (answer.status, answer.code) == (422, "REFERENCE_NOT_FOUND"), f"{op.operation_id}: {answer.text}"
        elif step.for_b == TENANT_MISMATCH:
            assert (answer.status, answer.code) == (403, "TENANT_MISMATCH"), f"{op.operation_id}: {answer.text}"
        else:
            assert str(answer.status) == op.success, f"{op.operation_id}: {answer.status} {answer.text}"
            if step.for_b == CREATED:
                b_created.append((op.operation_id, answer.body))
        if op.operation_id.startswith("list_"):
            for param in op.document["parameters"]:
                if param["name"] in FILTER_TARGETS:
                    filtered = await gateway.call(
                        "GET", op.path, token=b.admin_token, params={param["name"]: objects[FILTER_TARGETS[param["name"]]]["id"]}
                    )
                    assert (filtered.status, filtered.body["data"]) == (200, []), f"{op.operation_id}?{param['name']}"
    assert {name for name, _ in b_created} == {
        "create_product",
        "create_customer",
        "create_token",
        "create_order_source",
        "create_webhook_endpoint",
    }
    for name, created in b_created:
        if name == "create_token":  # the new token is B's
            assert (await gateway.call("GET", "/v1/admin/tenant", token=created["token"])).body["id"] == b.id
        else:
            plural = {
                "create_product": "products",
                "create_customer": "customers",
                "create_order_source": "order-sources",
                "create_webhook_endpoint": "webhook-endpoints",
            }[name]
            assert (await b.ok("GET", f"/v1/admin/{plural}/{created['id']}")) == created
            assert (await a.call("GET", f"/v1/admin/{plural}/{created['id']}")).status == 404
    assert {p["id"] for p in await b.list_all("/v1/admin/products")} == {b_product["id"], dict(b_created)["create_product"]["id"]}
    assert (await b.ok("GET", f"/v1/admin/customers/{b_customer['id']}")) == b_customer
    assert (await b.ok("GET", "/v1/admin/events/verify"))["valid"] is True

    # 2. A's own read-only token: reads succeed, changes are forbidden. 3. A revoked token, no token.
    for op in operations:
        assert not (op.mutating and "read-only" in op.roles), f"{op.operation_id}: the read-only role may change data"
        answer = await send(gateway, op, objects, a_tokens["read-only"])
        if op.mutating or "read-only" not in op.roles:
            assert (answer.status, answer.code) == (403, "FORBIDDEN"), f"{op.operation_id}: {answer.status} {answer.text}"
        else:
            assert str(answer.status) == op.success, f"{op.operation_id}: {answer.status} {answer.text}"
        answer = await send(gateway, op, objects, revoked)
        assert (answer.status, answer.code) == (401, "TOKEN_REVOKED"), op.operation_id
        answer = await send(gateway, op, objects, None)
        assert (answer.status, answer.code) == (401, "UNAUTHENTICATED"), op.operation_id
        # 4. Every role the operation does not list is refused before anything happens.
        for role, token in (("developer", a_tokens["developer"]), ("support", a_tokens["support"]), ("product", product_token)):
            if role not in op.roles:
                answer = await send(gateway, op, objects, token)
                assert (answer.status, answer.code) == (403, "FORBIDDEN"), f"{op.operation_id} as {role}: {answer.text}"

    assert await snapshot(a, objects) == before, "nothing of tenant A's changed"

    # 5. A's admin runs every request: each was valid, and each answer matches the document.
    for op in sorted(operations, key=lambda op: op.method == "DELETE"):
        answer = await send(gateway, op, objects, a.admin_token)
        assert str(answer.status) == op.success, f"{op.operation_id}: {answer.status} {answer.text}"
        content = op.document["responses"][op.success].get("content", {}).get("application/json")
        if content is not None:
            jsonschema.validate(answer.body, content["schema"], cls=jsonschema.Draft202012Validator)
        assert not leaked_device_secrets(objects, answer.text), f"{op.operation_id} shows a credential's or a lease's secret"
    after = await snapshot(a, objects)
    assert not leaked_device_secrets(objects, str(after))
    assert {lease["id"]: lease["state"] for lease in after["leases"]} == {
        objects["lease"]["id"]: "active",
        objects["lease_to_end"]["id"]: "revoked",  # ended by the vendor
        objects["revoked_lease"]["id"]: "revoked",
        objects["reissued_lease"]["id"]: "revoked",  # ended with their credential
    }
    assert len(after["events"]) > len(before["events"]) and after["chain"]["valid"] is True
    # ... and none of that reached B.
    assert {p["id"] for p in await b.list_all("/v1/admin/products")} == {b_product["id"], dict(b_created)["create_product"]["id"]}
    b_events = await b.list_all("/v1/admin/events")
    assert all(a.id not in str(event) for event in b_events)


@pytest.mark.parametrize("role", ["developer", "support"])
async def test_each_role_may_call_exactly_the_operations_the_document_lists_for_it(gateway: Gateway, role: str) -> None:
    a = await gateway.tenant("Vendor A")
    document = await a.ok("GET", "/openapi.json", token=None)
    objects = await build_world(a)
    token = await a.token(role)
    for op in sorted(admin_operations(document), key=lambda op: op.method == "DELETE"):
        answer = await send(gateway, op, objects, token)
        if role in op.roles:
            assert str(answer.status) == op.success, f"{op.operation_id} as {role}: {answer.status} {answer.text}"
        else:
            assert (answer.status, answer.code) == (403, "FORBIDDEN"), f"{op.operation_id} as {role}: {answer.text}"
