"""The conformance suite every backend must pass, through the real gateway on both stores."""

from __future__ import annotations

import datetime
import re
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from licensor.testing.drivers import Gateway, Tenant
from licensor.testing.vendors import Vendor, make_vendor


# --- the conformance suite of backends ----------------------------------------------------------------
def _time(offset_days: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=offset_days)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class MadeLicense(Vendor):
    """What :meth:`BackendConformance.licensed` made: a product with features, a policy and a license."""

    async def check(self, **body: Any) -> dict[str, Any]:
        """The verdict of ``POST /v1/check`` with this license's key (``body`` adds to or replaces fields)."""
        sent = {"tenant": self.tenant.id, "product": self.product["code"], "license_key": self.license["key"], **body}
        answer = await self.tenant.gateway.call("POST", "/v1/check", json=sent)
        assert answer.status == 200, answer.text
        verdict: dict[str, Any] = answer.body["verdict"]
        return verdict


class BackendConformance:
    """What every backend must do, through the real gateway on both stores (``licensor_gateway``).

    Set ``backend`` to the backend's name, ``options`` to valid policy options, ``invalid_options`` to options
    its schema must refuse. A backend with state-changing operations of its own overrides
    :meth:`idempotent_request`. Override ``licensor_plugins`` (a fixture) if the plugin is not installed.
    """

    backend: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    invalid_options: ClassVar[tuple[dict[str, Any], ...]] = ({"no such option, surely": True},)

    async def licensed(
        self, gateway: Gateway, tenant: Tenant | None = None, product_code: str | None = None, **license_fields: Any
    ) -> MadeLicense:
        """A tenant's new product (features ``export`` and ``print``), a policy of this backend granting
        ``export`` and a license of it."""
        return await make_vendor(
            gateway,
            self.backend,
            kind=MadeLicense,
            tenant=tenant,
            name="Conformance",
            product=product_code or f"conformance-{uuid.uuid4().hex[:8]}",
            catalog=("export", "print"),
            features=[{"code": "export"}],
            options=self.options,
            license=license_fields,
        )

    async def idempotent_request(self, made: MadeLicense) -> tuple[str, str, dict[str, Any], str | None] | None:
        """A state-changing request of the backend's own (method, path, JSON body, bearer token or None for a
        request that authenticates itself) for :meth:`test_a_repeated_request_counts_once`, or None when the
        backend has none."""
        return None

    # --- verdict codes --------------------------------------------------------------------------------
    async def test_a_valid_license_is_valid(self, licensor_gateway: Gateway) -> None:
        made = await self.licensed(licensor_gateway)
        verdict = await made.check(features=["export"])
        assert (verdict["code"], verdict["valid"], verdict["license_id"]) == ("VALID", True, made.license["id"])
        assert "export" in {item["feature"] for item in verdict["entitlements"]}

    async def test_refusals_carry_their_codes(self, licensor_gateway: Gateway) -> None:
        from licensor.central import license_keys

        made = await self.licensed(licensor_gateway)
        assert (await made.check(features=["print"]))["code"] == "FEATURE_NOT_ENTITLED"
        assert (await made.check(product="no-such-product"))["code"] == "NOT_FOUND"
        assert (await made.check(license_key=license_keys.generate()))["code"] == "NOT_FOUND"
        lapsed = await self.licensed(licensor_gateway, made.tenant, starts_at=_time(-30), expires_at=_time(-1))
        assert (await lapsed.check())["code"] == "EXPIRED"
        future = await self.licensed(licensor_gateway, made.tenant, starts_at=_time(10))
        assert (await future.check())["code"] == "NOT_YET_VALID"
        path = f"/v1/admin/licenses/{made.license['id']}"
        await made.tenant.ok("POST", f"{path}/suspend")
        assert (await made.check())["code"] == "SUSPENDED"
        await made.tenant.ok("POST", f"{path}/reinstate")
        assert (await made.check())["code"] == "VALID"
        await made.tenant.ok("POST", f"{path}/revoke")
        assert (await made.check())["code"] == "REVOKED"

    async def test_every_verdict_is_one_of_the_documented_codes(self, licensor_gateway: Gateway) -> None:
        from licensor.verdict import DESCRIPTIONS

        made = await self.licensed(licensor_gateway)
        documented = {*DESCRIPTIONS, *licensor_gateway.backend(self.backend).verdict_codes}
        document = (await licensor_gateway.call("GET", "/openapi.json")).body
        answer = document["paths"]["/v1/check"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert documented == set(answer["properties"]["verdict"]["properties"]["code"]["enum"])
        for body in ({}, {"features": ["export"]}, {"features": ["print"]}, {"version": "1.0"}, {"product": "other"}):
            verdict = await made.check(**body)
            assert verdict["code"] in documented and verdict["valid"] is (verdict["code"] == "VALID")
            assert verdict["message"]

    # --- error format ---------------------------------------------------------------------------------
    async def test_bad_requests_get_the_error_format(self, licensor_gateway: Gateway) -> None:
        made = await self.licensed(licensor_gateway)
        base = {"tenant": made.tenant.id, "product": made.product["code"], "license_key": made.license["key"]}
        bad_bodies: list[Any] = [
            b"{",
            b"[]",
            {**base, "features": "export"},
            {**base, "unknown": 1},
            {"product": "x"},
            {**base, "license_key": "not a key"},
            {**base, "tenant": "ten_x"},
        ]
        for body in bad_bodies:
            sent = {"data": body} if isinstance(body, bytes) else {"json": body}
            answer = await licensor_gateway.call("POST", "/v1/check", **sent)  # the call checks the error contract
            assert 400 <= answer.status < 500 and answer.code, (body, answer.text)
        # The backend's own operations refuse a missing token and a malformed body with the same format.
        for operation in self._own_operations(licensor_gateway):
            answer = await licensor_gateway.call(operation.method, operation.path.replace("{id}", "x"))
            assert 400 <= answer.status < 500 and answer.code, (operation.path, answer.text)

    async def test_invalid_policy_options_are_refused_when_the_policy_is_made(self, licensor_gateway: Gateway) -> None:
        tenant = await licensor_gateway.tenant("Conformance")
        product = await tenant.product(code="conformance")
        for options in self.invalid_options:
            answer = await tenant.call(
                "POST",
                "/v1/admin/policies",
                json={"product_id": product["id"], "name": "P", "backend": self.backend, "options": options},
            )
            assert (answer.status, answer.code) == (422, "INVALID_POLICY_OPTIONS"), (options, answer.text)

    # --- tenant isolation -----------------------------------------------------------------------------
    async def test_another_tenant_never_sees_the_license(self, licensor_gateway: Gateway) -> None:
        made = await self.licensed(licensor_gateway)
        other = await licensor_gateway.tenant("Other vendor")
        assert (await made.check(tenant=other.id))["code"] == "NOT_FOUND"
        twin = await self.licensed(licensor_gateway, other, made.product["code"])  # the same product code there
        assert (await twin.check(license_key=made.license["key"]))["code"] == "NOT_FOUND"
        answer = await other.call("GET", f"/v1/admin/licenses/{made.license['id']}")
        assert answer.status == 404

    # --- idempotency ----------------------------------------------------------------------------------
    async def test_a_repeated_request_counts_once(self, licensor_gateway: Gateway) -> None:
        made = await self.licensed(licensor_gateway)
        key = f"conformance-{uuid.uuid4().hex}"
        body = {"policy_id": made.policy["id"]}
        first = await made.tenant.call("POST", "/v1/admin/licenses", json=body, headers={"Idempotency-Key": key})
        again = await made.tenant.call("POST", "/v1/admin/licenses", json=body, headers={"Idempotency-Key": key})
        assert first.status == again.status == 201 and first.body == again.body
        assert again.headers.get("Idempotent-Replayed") == "true"
        request = await self.idempotent_request(made)
        if request is None:
            assert not [op for op in self._own_operations(licensor_gateway) if op.changes_state], (
                "the backend changes state through its own operations: override idempotent_request"
            )
            return
        method, path, json_body, token = request
        key = f"conformance-{uuid.uuid4().hex}"
        first = await licensor_gateway.call(method, path, json=json_body, token=token, headers={"Idempotency-Key": key})
        again = await licensor_gateway.call(method, path, json=json_body, token=token, headers={"Idempotency-Key": key})
        assert 200 <= first.status < 300 and (first.status, first.body) == (again.status, again.body), (first.text, again.text)
        assert again.headers.get("Idempotent-Replayed") == "true"

    # --- the backend's own operations ------------------------------------------------------------------
    async def test_the_backends_own_operations_never_fail_on_the_server(self, licensor_gateway: Gateway) -> None:
        """Each of the backend's own operations, called with input its declaration accepts (the least of each
        required field) and with input it must refuse, answers below 500."""
        made = await self.licensed(licensor_gateway)
        for operation in self._own_operations(licensor_gateway):
            path = _filled_path(operation, made.license["id"])
            token = made.tenant.admin_token if operation.roles else None
            bodies: list[Any] = [None]
            if operation.request_schema is not None:
                bodies += [_least_example(operation.request_schema), {"no such field, surely": 1}, [], "text"]
            queries: list[dict[str, Any]] = [{}, {p.name: _least_example(p.schema) for p in operation.query if p.required}]
            for body in bodies:
                for query in queries:
                    answer = await licensor_gateway.call(
                        operation.method, path, token=token, json=body, params={k: str(v) for k, v in query.items()}
                    )
                    assert answer.status < 500, (operation.operation_id, body, query, answer.status, answer.text)

    def _own_operations(self, gateway: Gateway) -> list[Any]:
        return list(gateway.backend(self.backend).operations())


def _filled_path(operation: Any, license_id: str) -> str:
    """The operation's path with the license's id where a license id fits, else a well-formed id of the kind."""
    path = str(operation.path)
    for name, pattern in operation.path_patterns.items():
        prefix = re.match(r"\^?([a-z]{3})_", pattern)
        value = license_id if re.fullmatch(pattern, license_id) else f"{prefix.group(1) if prefix else 'obj'}_{'0' * 26}"
        path = path.replace("{" + name + "}", value)
    return path


def _least_example(schema: dict[str, Any]) -> Any:
    """The smallest value ``schema`` accepts, as far as a simple reading of it goes (const, enum, the first of
    anyOf/oneOf, required properties, minimum lengths and bounds)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            return _least_example(schema[combined][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {name: _least_example(properties.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return [_least_example(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "integer" or kind == "number":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "a" * max(1, schema.get("minLength", 1))
