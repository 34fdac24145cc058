"""The cloud-lite backend: subjects' entitlements for a SaaS backend, and metered usage against quotas."""

from __future__ import annotations

from typing import Any, ClassVar

from licensor import Backend, CheckRequest, Operation, Verdict, license_terms_verdict

from licensor_cloud_lite import routes
from licensor_cloud_lite.usage import PERIODS


class CloudLiteBackend(Backend):
    name = "cloud-lite"
    verdicts_cacheable = True  # a check reads only the license's terms (usage is recorded separately)
    default_options: ClassVar[dict[str, Any]] = {"entitlement_ttl_seconds": 300, "usage_period": "month"}
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "entitlement_ttl_seconds": {
                "type": "integer",
                "minimum": 10,
                "maximum": 86_400,
                "description": "How long an en1 entitlement token is valid (default 300).",
            },
            "usage_period": {
                "enum": list(PERIODS),
                "description": "The period a metered feature's quota covers (default month, UTC).",
            },
        },
        "additionalProperties": False,
    }

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**self.default_options, **super().validate_options(options)}

    async def check(self, request: CheckRequest) -> Verdict:
        verdict = license_terms_verdict(request)
        if verdict.valid:
            terms = {**verdict.terms, "usage_period": self.option(request.options, "usage_period")}
            return Verdict(verdict.code, verdict.message, verdict.license_id, verdict.entitlements, terms)
        return verdict

    def operations(self) -> list[Operation]:
        return routes.operations(self)
