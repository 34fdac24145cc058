"""The cloud backend passes the conformance suite every backend must pass (licensor.testing)."""

from __future__ import annotations

from typing import Any, ClassVar

from licensor.testing import BackendConformance, MadeLicense


class TestCloudConformance(BackendConformance):
    backend = "cloud"
    options: ClassVar[dict[str, Any]] = {"lease_ttl_seconds": 600, "heartbeat_interval_seconds": 120, "on_seat_limit": "refuse"}
    invalid_options = (
        {"lease_ttl_seconds": 300, "heartbeat_interval_seconds": 300},  # a heartbeat must come before the lease runs out
        {"heartbeat_interval_seconds": 900},  # not less than the default TTL (900)
        {"lease_ttl": 600},  # unknown option
        {"on_seat_limit": "evict"},
        {"lease_ttl_seconds": 1},
        {"lease_ttl_seconds": "900"},
        {"heartbeat_interval_seconds": 0},
    )

    async def idempotent_request(self, made: MadeLicense) -> tuple[str, str, dict[str, Any], str | None] | None:
        created = await made.tenant.ok("POST", f"/v1/admin/licenses/{made.license['id']}/credentials", 201, json={})
        body = {
            "tenant": made.tenant.id,
            "credential": created["credential_file"]["credential"],
            "device_id": "conformance",
            "features": ["export"],
        }
        return "POST", "/v1/leases", body, None
