"""The OpenAPI document at /openapi.json and the page at /docs describe exactly the routes the gateway serves."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from aiohttp import web
from licensor.model import ROLES, new_id

from .conftest import Gateway, Tenant

METHODS = {"get", "post", "put", "patch", "delete"}


async def document_of(gateway: Gateway) -> dict[str, Any]:
    answer = await gateway.call("GET", "/openapi.json")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    return answer.body  # type: ignore[no-any-return]


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, methods in document["paths"].items() for method, op in methods.items()]


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route of the aiohttp router (HEAD is aiohttp's automatic twin of GET), but
    the License Portal's pages (HTML for people, documented in docs/portal.md)."""
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD" or isinstance(route.resource, web.StaticResource):
            continue
        assert route.resource is not None
        if route.resource.canonical.startswith("/portal/"):
            continue
        routes.add((route.method.lower(), route.resource.canonical))
    return routes


async def test_the_document_is_openapi_3_1(gateway: Gateway) -> None:
    document = await document_of(gateway)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "licensor" and document["info"]["version"]
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert set(document["paths"]) and all(path.startswith("/") for path in document["paths"])


async def test_every_served_route_is_documented_and_every_documented_route_is_served(gateway: Gateway) -> None:
    document = await document_of(gateway)
    documented = {(method, path) for path, method, _ in operations(document)}
    served = served_routes(gateway.app)
    assert served - documented == set(), "routes the document does not describe"
    assert documented - served == set(), "documented routes the gateway does not serve"
    assert all(method in METHODS for method, _ in documented)


async def test_every_operation_has_a_unique_id_a_summary_and_its_responses(gateway: Gateway) -> None:
    document = await document_of(gateway)
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z][a-z_]*", i) for i in ids)
    for path, method, op in operations(document):
        name = op["operationId"]
        assert op["summary"] and op["tags"], name
        responses = op["responses"]
        assert any(status.startswith("2") for status in responses), name
        templated = set(re.findall(r"{(\w+)}", path))
        assert {p["name"] for p in op["parameters"] if p["in"] == "path"} == templated, name
        if templated:
            assert "404" in responses, name
        if op["security"]:
            assert op["security"] in ([{"bearer": []}], [{}, {"bearer": []}]), name  # the second: a token is optional
            assert {"401", "403"} <= set(responses), f"{name} is authenticated but does not document 401 and 403"
            assert op["x-roles"] and set(op["x-roles"]) <= set(ROLES), name
        elif op.get("x-authenticated-by") in ("body", "header"):  # a device's signed request; a license key
            assert {"401", "403"} <= set(responses) and "x-roles" not in op, name
        else:
            assert "401" not in responses and "x-roles" not in op, name
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(responses), name
        if any(p["in"] == "query" for p in op["parameters"]):
            assert "400" in responses, name
        for status, response in responses.items():
            assert response["description"], (name, status)
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (name, status)
        changes = any(p["name"] == "Idempotency-Key" for p in op["parameters"] if p["in"] == "header")
        assert not (changes and method == "get"), f"{name}: a GET changes state"


async def test_every_admin_route_is_authenticated(gateway: Gateway) -> None:
    document = await document_of(gateway)
    admin = [(path, method, op) for path, method, op in operations(document) if path.startswith("/v1/admin/")]
    assert len(admin) > 40
    for path, method, op in admin:
        assert op["security"] == [{"bearer": []}], f"{method.upper()} {path}"
        answer = await gateway.call(method.upper(), path.replace("{id}", "x"))
        assert (answer.status, answer.code) == (401, "UNAUTHENTICATED"), f"{method.upper()} {path}"
    public = {op["operationId"] for path, _, op in operations(document) if not op["security"] and "x-authenticated-by" not in op}
    assert public == {"healthz", "readyz", "openapi", "published_keys", "docs"}
    # Device requests are authenticated by their body: the activation backend's by the device's signature, the
    # cloud backend's by the credential (the credential file's id and secret).
    # Releases and updates: the license in the Authorization header (a license key, or its signed file or lease).
    # Orders: the shop's signature header over the raw body.
    # Metrics: the metrics token in the Authorization header when the operator set one (else loopback clients only).
    by_header = {op["operationId"] for _, _, op in operations(document) if op.get("x-authenticated-by") == "header"}
    assert by_header == {"latest_release", "license_updates", "receive_order", "metrics"}
    signed = {op["operationId"] for path, _, op in operations(document) if op.get("x-authenticated-by") == "body"}
    assert signed == {
        "activate",
        "recover_activation",
        "check_in",
        "deactivate",  # the activation backend's
        "check_out_lease",
        "renew_lease",
        "release_lease",
    }  # the cloud backend's
    unknown = {"tenant": new_id("ten"), "credential": f"{new_id('crd')}.{'A' * 43}"}
    a_lease = {"lease": new_id("lse"), "lease_secret": "B" * 43}
    by_credential = {
        "check_out_lease": {**unknown, "device_id": "device-1"},
        "renew_lease": {**unknown, **a_lease},
        "release_lease": {**unknown, **a_lease},
    }
    for path, method, op in operations(document):
        if op["operationId"] in by_credential:
            answer = await gateway.call(method.upper(), path, json=by_credential[op["operationId"]])
            assert (answer.status, answer.code) == (401, "CREDENTIAL_INVALID"), path
        elif op["operationId"] in signed:
            answer = await gateway.call(method.upper(), path, json={"request": "dv1.x.y.z"})
            assert (answer.status, answer.code) == (401, "DEVICE_REQUEST_INVALID"), path
    # /v1/check is authenticated by the license key in its body, or by a product token (with a subject).
    optional = {op["operationId"] for path, _, op in operations(document) if op["security"] == [{}, {"bearer": []}]}
    assert optional == {"check"}


async def test_every_schema_in_the_document_is_valid_json_schema(gateway: Gateway) -> None:
    document = await document_of(gateway)
    jsonschema.Draft202012Validator.check_schema(document["components"]["schemas"]["Error"])
    for _, _, op in operations(document):
        schemas = [p["schema"] for p in op["parameters"]]
        if "requestBody" in op:
            schemas.append(op["requestBody"]["content"]["application/json"]["schema"])
        for response in op["responses"].values():
            schemas.extend(content["schema"] for content in response.get("content", {}).values())
        for schema in schemas:
            jsonschema.Draft202012Validator.check_schema(schema)


async def test_the_docs_page_is_html_listing_every_operation(tenant: Tenant) -> None:
    gateway = tenant.gateway
    document = await document_of(gateway)
    async with gateway.client.get("/docs") as response:
        assert response.status == 200 and response.content_type == "text/html"
        page = await response.text()
    assert page.startswith("<!doctype html>") and "<script" not in page
    for path, method, op in operations(document):
        assert f"id='{op['operationId']}'" in page, op["operationId"]
        assert f"{method.upper()} {path}" in page, op["operationId"]


async def test_ops_routes_answer_without_a_token(gateway: Gateway) -> None:
    assert (await gateway.call("GET", "/healthz")).body == {"status": "ok"}
    assert (await gateway.call("GET", "/readyz")).body == {"status": "ready"}
    answer = await gateway.call("GET", "/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-Id"])
    echoed = await gateway.call("GET", "/healthz", headers={"X-Request-Id": "trace-42"})
    assert echoed.headers["X-Request-Id"] == "trace-42"


def _follow(link: dict[str, Any], created: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """The path parameters and body fields a link takes from a created object's answer (``$response.body#/...``)."""

    def value(expression: str) -> Any:
        found: Any = created
        for part in expression.removeprefix("$response.body#/").split("/"):
            found = found[part]
        return found

    path = {name.removeprefix("path."): value(e) for name, e in link.get("parameters", {}).items()}
    return path, {name: value(e) for name, e in link.get("requestBody", {}).items()}


async def test_links_chain_real_objects_from_a_product_to_a_lease_heartbeat(tenant: Tenant) -> None:
    """Following only the document's links (and the fields no link gives), a product leads to a policy, a license, a
    credential, a lease and its heartbeat: each link names values the target operation accepts."""
    document = await document_of(tenant.gateway)
    by_id = {op["operationId"]: (method, path) for path, method, op in operations(document)}
    links = {op["operationId"]: op["responses"].get("201", {}).get("links", {}) for _, _, op in operations(document)}
    chain = [
        ("create_product", {"code": "app", "name": "App"}),
        ("create_policy", {"name": "Cloud", "backend": "cloud", "seats": 1}),
        ("create_license", {}),
        ("create_credential", {}),
        ("check_out_lease", {"device_id": "vm-1"}),
        ("renew_lease", {}),
    ]
    created: dict[str, Any] | None = None
    previous = None
    credential: dict[str, str] = {}
    for operation_id, own_fields in chain:
        path_parameters: dict[str, str] = {}
        body = dict(own_fields)
        if previous is not None:
            assert operation_id in links[previous], f"no link from {previous} to {operation_id}"
            assert created is not None
            path_parameters, linked = _follow(links[previous][operation_id], created)
            body.update(linked)
        if operation_id == "renew_lease":
            body.update(credential)  # (two steps back: a link names what one answer gives)
        method, path = by_id[operation_id]
        for name, value in path_parameters.items():
            path = path.replace("{" + name + "}", value)
        token = None if path.startswith("/v1/leases") else tenant.admin_token
        answer = await tenant.call(method.upper(), path, json=body, token=token)
        assert answer.status in (200, 201), (operation_id, answer.text)
        created, previous = answer.body, operation_id
        if operation_id == "create_credential":
            credential = {name: created["credential_file"][name] for name in ("tenant", "credential")}
