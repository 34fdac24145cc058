"""The activation backend passes the conformance suite every backend must pass (licensor.testing)."""

from __future__ import annotations

from typing import Any, ClassVar

from licensor.fingerprint import hash_components, product_salt
from licensor.testing import BackendConformance, MadeLicense
from licensor_client.activation import DeviceKey, device_request


class TestActivationConformance(BackendConformance):
    backend = "activation"
    options: ClassVar[dict[str, Any]] = {"match_preset": "strict", "checkpoint_interval_seconds": 3600, "on_clone": "suspend"}
    invalid_options = (
        {"match_preset": "sloppy"},
        {"match_threshold": 0},
        {"checkpoint_interval_seconds": 5},
        {"component_weights": {"cpu": -1}},
        {"on_clone": "ignore"},
        {"lease_ttl": 600},
    )

    async def idempotent_request(self, made: MadeLicense) -> tuple[str, str, dict[str, Any], str | None] | None:
        tenant, product = made.tenant.id, made.product["code"]
        fingerprint = hash_components({"machine_id": "conformance", "disk": "d"}, product_salt(tenant, product))
        request = device_request(
            DeviceKey.generate(),
            "activate",
            tenant=tenant,
            product=product,
            fingerprint=fingerprint,
            license_key=made.license["key"],
        )
        return "POST", "/v1/activations", {"request": request}, None
