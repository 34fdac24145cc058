"""cloud-lite passes the conformance suite every backend must pass (licensor.testing)."""

from __future__ import annotations

from typing import Any, ClassVar

from licensor.testing import BackendConformance, MadeLicense


class TestCloudLiteConformance(BackendConformance):
    backend = "cloud-lite"
    options: ClassVar[dict[str, Any]] = {"entitlement_ttl_seconds": 120, "usage_period": "day"}
    invalid_options = ({"entitlement_ttl_seconds": 5}, {"usage_period": "week"}, {"lease_ttl": 600})

    async def idempotent_request(self, made: MadeLicense) -> tuple[str, str, dict[str, Any], str] | None:
        tenant = made.tenant
        metered = await tenant.feature(made.product["id"], "calls", metered=True, unit="call")
        await tenant.ok(
            "PATCH",
            f"/v1/admin/policies/{made.policy['id']}",
            json={"features": [{"code": "export"}, {"code": metered["code"], "quantity": 10}]},
        )
        await tenant.ok("PATCH", f"/v1/admin/licenses/{made.license['id']}", json={"subject": "user-1"})
        token = await tenant.token("product", made.product["id"])
        body = {"product": made.product["code"], "subject": "user-1", "feature": "calls", "units": 1}
        return "POST", "/v1/entitlements/usage", body, token
