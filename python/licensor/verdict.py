"""Verdicts: the answer to "may this device, user or tenant use these features now?", with stable codes.

The codes and their descriptions are defined once, in :mod:`licensor_client.codes` (the client acts on them
too), and re-exported here; the OpenAPI document and the docs take them from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from licensor_client.codes import DESCRIPTIONS, Code

__all__ = ["DESCRIPTIONS", "Code", "Entitlement", "Verdict"]


@dataclass(frozen=True)
class Entitlement:
    """A feature the license grants, with its quantity (None: unlimited or not counted)."""

    feature: str
    quantity: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "quantity": self.quantity}


@dataclass(frozen=True)
class Verdict:
    """A backend's answer to a check."""

    code: Code | str
    """One of licensor's codes, or one the answering backend declares (:attr:`licensor.Backend.verdict_codes`)."""
    message: str = ""
    license_id: str | None = None
    entitlements: tuple[Entitlement, ...] = ()
    terms: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.code == Code.VALID

    def as_json(self) -> dict[str, Any]:
        return {
            "code": str(self.code),
            "valid": self.valid,
            "message": self.message or DESCRIPTIONS.get(self.code, str(self.code)),  # type: ignore[arg-type]
            "license_id": self.license_id,
            "entitlements": [e.as_json() for e in self.entitlements],
            "terms": self.terms,
        }
