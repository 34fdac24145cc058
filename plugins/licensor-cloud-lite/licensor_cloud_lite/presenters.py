"""How cloud-lite's answers look in the API, each beside the schema it answers (no model resource declares
them: usage totals and entitlements are not License Central objects)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from licensor import Code
from licensor.model import format_time

if TYPE_CHECKING:
    from licensor.store import Row

_CODE = {"enum": [code.value for code in Code]}
_QUANTITY = {"anyOf": [{"type": "integer"}, {"type": "null"}]}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """The schema of an object with exactly these properties."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def entitlements_json(
    product: str,
    subject: str,
    code: str,
    features: list[dict[str, Any]],
    terms: dict[str, Any],
    license_codes: list[tuple[str, str]],
    token: str,
    expires_at: int,
) -> dict[str, Any]:
    """A subject's entitlements: ``license_codes`` is each license's id and verdict code, ``expires_at`` the
    token's expiry (µs)."""
    return {
        "object": "entitlements",
        "product": product,
        "subject": subject,
        "code": code,
        "valid": code == Code.VALID,
        "features": features,
        "terms": terms,
        "licenses": [{"license_id": license_id, "code": verdict_code} for license_id, verdict_code in license_codes],
        "token": token,
        "expires_at": format_time(expires_at),
    }


ENTITLEMENTS_SCHEMA = _object(
    {
        "object": {"const": "entitlements"},
        "product": {"type": "string"},
        "subject": {"type": "string"},
        "code": _CODE,
        "valid": {"type": "boolean"},
        "features": {"type": "array", "items": _object({"feature": {"type": "string"}, "quantity": _QUANTITY})},
        "terms": {"type": "object"},
        "licenses": {"type": "array", "items": _object({"license_id": {"type": "string"}, "code": _CODE})},
        "token": {"type": "string"},
        "expires_at": {"type": "string"},
    }
)


def usage_json(
    license_id: str, subject: str, feature: str, units: int, period: str, used: int, quota: int | None
) -> dict[str, Any]:
    """A recorded usage, as answered and as its ``usage.recorded`` event carries it."""
    return {
        "object": "usage",
        "license_id": license_id,
        "subject": subject,
        "feature": feature,
        "units": units,
        "period": period,
        "used": used,
        "quota": quota,
    }


USAGE_SCHEMA = _object(
    {
        "object": {"const": "usage"},
        "license_id": {"type": "string"},
        "subject": {"type": "string"},
        "feature": {"type": "string"},
        "units": {"type": "integer"},
        "period": {"type": "string"},
        "used": {"type": "integer"},
        "quota": _QUANTITY,
    }
)


def usage_totals_json(product: str, subject: str, rows: list[Row]) -> dict[str, Any]:
    totals = [
        {
            "license_id": row["license_id"],
            "feature": row["feature"],
            "period": row["period"],
            "used": row["used"],
            "updated_at": format_time(row["updated_at"]),
        }
        for row in rows
    ]
    return {"object": "usage_totals", "product": product, "subject": subject, "totals": totals}


USAGE_TOTALS_SCHEMA = _object(
    {
        "object": {"const": "usage_totals"},
        "product": {"type": "string"},
        "subject": {"type": "string"},
        "totals": {
            "type": "array",
            "items": _object(
                {
                    "license_id": {"type": "string"},
                    "feature": {"type": "string"},
                    "period": {"type": "string"},
                    "used": {"type": "integer"},
                    "updated_at": {"type": "string"},
                }
            ),
        },
    }
)
