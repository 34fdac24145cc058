"""The cloud backend: credentials, and leases of a license's seats counted on the server.

The backend holds what its routes and its check share: the options its policies take (and their defaults) and
the gateway's clock (:attr:`licensor.Backend.clock`). The logic lives below it: :mod:`licensor_cloud.credentials`
(credential files, device authentication), :mod:`licensor_cloud.leases` (check-out, renewal, release, usage);
:mod:`licensor_cloud.routes` declares the routes over them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from licensor import Backend, CheckRequest, Operation, ValidationError, Verdict, license_terms_verdict
from licensor.store import Transaction

from licensor_cloud import leases, routes
from licensor_cloud.credentials import NAME


class CloudBackend(Backend):
    name = NAME
    verdicts_cacheable = True  # /v1/check answers the license's terms; seats are proven by leases
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "lease_ttl_seconds": {
                "type": "integer",
                "minimum": 2,
                "maximum": 86_400,
                "description": "How long a lease lives after its check-out or last heartbeat (default 900).",
            },
            "heartbeat_interval_seconds": {
                "type": "integer",
                "minimum": 1,
                "maximum": 43_200,
                "description": "How often a device renews its lease (default 300); less than the TTL.",
            },
            "on_seat_limit": {
                "enum": ["refuse", "take_over"],
                "description": "When every seat is held and another device asks: refuse it (default), or "
                "let it take over the seat renewed longest ago (single-user licenses moving "
                "between office and home).",
            },
        },
        "additionalProperties": False,
    }
    default_options: ClassVar[dict[str, Any]] = {
        "lease_ttl_seconds": 900,
        "heartbeat_interval_seconds": 300,
        "on_seat_limit": "refuse",
    }

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.default_options, **super().validate_options(options)}
        if merged["heartbeat_interval_seconds"] >= merged["lease_ttl_seconds"]:
            raise ValidationError(
                "cloud policy option heartbeat_interval_seconds must be less than lease_ttl_seconds "
                f"({merged['lease_ttl_seconds']})",
                code="INVALID_POLICY_OPTIONS",
            )
        return merged

    async def check(self, request: CheckRequest) -> Verdict:
        """The license's terms: a device proves the seat it holds by its lease token and heartbeats."""
        return license_terms_verdict(request)

    def operations(self) -> list[Operation]:
        return routes.operations(self)

    async def on_license_changed(self, tx: Transaction, license: dict[str, Any], change: str) -> None:
        """A revoked license's leases end with it; a suspended one's are refused at their next heartbeat."""
        if change == "revoked":
            await leases.end_license_leases(tx, license["id"], self.clock())
