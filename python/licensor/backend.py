"""The interface every license backend implements, first-party or third-party.

A backend is named by policies (``policy.backend``). The gateway finds it in the registry by that name, has it
validate the options of a policy that names it, and asks it to :meth:`Backend.check`. A backend keeps its state
through the store interface only.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jsonschema

from licensor.errors import ValidationError
from licensor.model import LICENSE, POLICY, format_time
from licensor.verdict import Code, Entitlement, Verdict

BACKEND_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


@dataclass(frozen=True)
class CheckRequest:
    """What the software asked, and the license it resolved to (rows as the store holds them)."""

    tenant_id: str
    license: dict[str, Any]
    policy: dict[str, Any]
    features: tuple[str, ...] = ()
    version: str | None = None
    now_us: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """A license backend: a name, the schema of its policy options, and its check."""

    name: ClassVar[str]
    options_schema: ClassVar[dict[str, Any]] = {"type": "object", "additionalProperties": False}

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The policy options as this backend will use them.

        :raises ValidationError: INVALID_POLICY_OPTIONS, naming the first offending option.
        """
        validator = jsonschema.Draft202012Validator(self.options_schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(options))
        if error is not None:
            where = ".".join(str(part) for part in error.absolute_path) or "options"
            raise ValidationError(f"{self.name} policy option {where}: {error.message}", code="INVALID_POLICY_OPTIONS")
        return options

    @abstractmethod
    async def check(self, request: CheckRequest) -> Verdict:
        """Answer whether the license allows what was asked now. Refusals are verdicts, never exceptions."""

    async def on_license_changed(self, license: dict[str, Any], change: str) -> None:
        """React to a change made in License Central (``suspended``, ``revoked``, ``renewed``, ...)."""


def license_terms_verdict(request: CheckRequest) -> Verdict:
    """The verdict every backend starts from: the license's state, its term, and the features asked for.

    Refusals come in this order: REVOKED, SUSPENDED, NOT_YET_VALID, EXPIRED, FEATURE_NOT_ENTITLED. A
    license's ``overrides.features`` (code -> quantity) add to or replace its policy's features.
    """
    lic = request.license
    if lic["state"] == "revoked":
        return Verdict(Code.REVOKED, license_id=lic["id"])
    if lic["state"] == "suspended":
        return Verdict(Code.SUSPENDED, license_id=lic["id"])
    if request.now_us < lic["starts_at"]:
        return Verdict(Code.NOT_YET_VALID, license_id=lic["id"])
    if lic["expires_at"] is not None and request.now_us >= lic["expires_at"]:
        return Verdict(Code.EXPIRED, license_id=lic["id"])
    policy_features = POLICY.field("features").column_to_api(request.policy["features"])
    granted = {item["code"]: item.get("quantity") for item in policy_features}
    overrides = LICENSE.field("overrides").column_to_api(lic["overrides"])
    override_features = overrides.get("features")
    if isinstance(override_features, dict):
        granted.update(override_features)
    missing = [code for code in request.features if code not in granted]
    if missing:
        return Verdict(Code.FEATURE_NOT_ENTITLED, f"not entitled to: {', '.join(missing)}", license_id=lic["id"])
    entitlements = tuple(Entitlement(code, granted[code]) for code in sorted(granted))
    terms = {
        "expires_at": format_time(lic["expires_at"]),
        "maintenance_until": format_time(lic["maintenance_until"]),
        "seats": request.policy["seats"],
    }
    return Verdict(Code.VALID, license_id=lic["id"], entitlements=entitlements, terms=terms)
