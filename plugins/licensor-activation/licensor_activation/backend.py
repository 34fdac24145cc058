"""The activation backend: licenses bound to devices by fingerprint and device key, renewed at checkpoints.

Every device request is a ``dv1`` token signed by the device's own key (:mod:`licensor_client.activation`),
verified before any database work (:mod:`licensor_activation.device_requests`), in batches when requests come in
bursts. What activating, checking in and ending does is :mod:`licensor_activation.activations`; the routes are
:mod:`licensor_activation.routes`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from licensor import Backend, CheckRequest, Code, Operation, TokenKind, Verdict, license_terms_verdict
from licensor.batching import SelfKeyedTokenReader
from licensor.fingerprint import COMPONENT_PATTERN, PRESETS
from licensor.model import ACTIVATION, format_time

from licensor_activation import routes
from licensor_activation.activations import MATCHED_STATES, best_match, flag_code, rule_of
from licensor_activation.device_requests import BACKEND, DAY_S
from licensor_activation.presenters import license_file

__all__ = ["ActivationBackend", "license_file"]  # license_file: the SDK's tests sign files with it

MAX_MATCHED = 10_000
"""The active and suspended activations of one license /v1/check matches a fingerprint against."""


class ActivationBackend(Backend):
    name = BACKEND
    default_options: ClassVar[dict[str, Any]] = {
        "match_preset": "medium",
        "checkpoint_interval_seconds": 30 * DAY_S,
        "checkpoint_grace_seconds": 7 * DAY_S,
        "offline_file_lifetime_seconds": 180 * DAY_S,
        "recoveries_per_period": 1,
        "recovery_period_days": 365,
        "on_clone": "refuse",
    }
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "match_preset": {
                "enum": list(PRESETS),
                "description": "Tolerance of fingerprint changes: loose 0.5, medium 0.7, strict 0.9.",
            },
            "match_threshold": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1,
                "description": "The share of the weights that must match (overrides the preset's).",
            },
            "component_weights": {
                "type": "object",
                "maxProperties": 32,
                "propertyNames": {"pattern": COMPONENT_PATTERN},
                "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1000},
                "description": (
                    "Weights of fingerprint components (added to machine_id 4, board 3, cpu 2, disk 2, mac 1, hostname 1)."
                ),
            },
            "checkpoint_interval_seconds": {
                "type": "integer",
                "minimum": 60,
                "maximum": 3650 * DAY_S,
                "description": "How long after a check-in the next checkpoint falls (default 30 days).",
            },
            "checkpoint_grace_seconds": {
                "type": "integer",
                "minimum": 0,
                "maximum": 365 * DAY_S,
                "description": "How long a file stays valid past its checkpoint (default 7 days).",
            },
            "offline_file_lifetime_seconds": {
                "type": "integer",
                "minimum": 60,
                "maximum": 3650 * DAY_S,
                "description": "The checkpoint interval of files issued offline, by request file (default 180 days).",
            },
            "recoveries_per_period": {
                "type": "integer",
                "minimum": 0,
                "maximum": 1000,
                "description": "Recoveries on a new device allowed per period (default 1).",
            },
            "recovery_period_days": {
                "type": "integer",
                "minimum": 1,
                "maximum": 3650,
                "description": "The recovery period (default 365).",
            },
            "on_clone": {
                "enum": ["refuse", "suspend"],
                "description": (
                    "On a detected clone or rollback: refuse the stale copy (default), or suspend the "
                    "activation until the vendor reinstates it."
                ),
            },
        },
        "additionalProperties": False,
    }

    def __init__(self, *, batching: bool = True) -> None:
        self.reader = SelfKeyedTokenReader(TokenKind.DEVICE_REQUEST, batching=batching)

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**self.default_options, **super().validate_options(options)}

    async def check(self, request: CheckRequest) -> Verdict:
        """The license's terms; with a fingerprint, also whether an active activation of this device holds a seat."""
        verdict = license_terms_verdict(request)
        if not verdict.valid or request.fingerprint is None or request.store is None:
            return verdict
        rows = []
        for state in MATCHED_STATES:
            filters = {"license_id": request.license["id"], "state": state}
            rows += (await request.store.list(request.tenant_id, ACTIVATION, filters, None, MAX_MATCHED)).rows
        found = best_match(rows, request.fingerprint, rule_of(self, request.options), MATCHED_STATES)
        if found is None:
            return Verdict(
                Code.FINGERPRINT_MISMATCH, "no active activation of this license matches the device", verdict.license_id
            )
        if found["state"] == "suspended":
            return Verdict(
                flag_code(found), "the device's activation is suspended until the vendor reinstates it", verdict.license_id
            )
        return Verdict(
            Code.VALID,
            verdict.message,
            verdict.license_id,
            verdict.entitlements,
            {**verdict.terms, "activation_id": found["id"], "checkpoint_at": format_time(found["checkpoint_at"])},
        )

    def operations(self) -> list[Operation]:
        return routes.operations(self)
