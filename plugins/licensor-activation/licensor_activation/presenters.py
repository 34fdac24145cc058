"""Activations as the API shows them, and as a device gets them: the ``lf1`` license file."""

from __future__ import annotations

from typing import Any

from licensor import Licensed, Reply, TokenKind
from licensor.fingerprint import MatchRule
from licensor.model import ACTIVATION
from licensor.store import Row
from licensor.tokens import sign_document

UNSHOWN_FIELDS = ("last_request_digest",)
"""Stored to recognise a retried device request; no part of an activation as the API shows it."""


def _activation_schema() -> dict[str, Any]:
    schema = ACTIVATION.response_schema()
    properties = {name: field for name, field in schema["properties"].items() if name not in UNSHOWN_FIELDS}
    return {**schema, "properties": properties, "required": list(properties)}


ACTIVATION_SCHEMA = _activation_schema()
ISSUED_SCHEMA = {
    "type": "object",
    "properties": {"object": {"const": "license_file"}, "activation": ACTIVATION_SCHEMA, "license_file": {"type": "string"}},
    "required": ["object", "activation", "license_file"],
    "additionalProperties": False,
}
ENDED_SCHEMA = {
    "type": "object",
    "properties": {"object": {"const": "activation"}, "activation": ACTIVATION_SCHEMA},
    "required": ["object", "activation"],
    "additionalProperties": False,
}


def shown(row: Row) -> dict[str, Any]:
    """An activation as the API shows it."""
    activation = ACTIVATION.to_api(row)
    for name in UNSHOWN_FIELDS:
        del activation[name]
    return activation


def ended(row: Row) -> Reply:
    """The answer to a deactivation."""
    return Reply(200, {"object": "activation", "activation": shown(row)})


def issued(status: int, row: Row, file: str) -> Reply:
    """The answer that gives a device its activation and the license file of it."""
    return Reply(status, {"object": "license_file", "activation": shown(row), "license_file": file})


def license_file(kid: str, seed: bytes, tenant_id: str, licensed: Licensed, row: Row, rule: MatchRule, now: int) -> str:
    """The ``lf1`` license file of an activation as it stands (times in seconds)."""
    terms = licensed.terms
    expires, maintenance = licensed.license["expires_at"], licensed.license["maintenance_until"]
    return sign_document(
        TokenKind.LICENSE_FILE,
        kid,
        seed,
        {
            "tenant": tenant_id,
            "product": licensed.product["code"],
            "license": licensed.license["id"],
            "activation": row["id"],
            "device_key": row["device_key"],
            "fingerprint": ACTIVATION.field("fingerprint").column_to_api(row["fingerprint"]),
            "match": rule.as_json(),
            "features": [e.as_json() for e in terms.entitlements],
            "terms": terms.terms,
            "generation": row["generation"],
            "iat": now // 1_000_000,
            "checkpoint_at": row["checkpoint_at"] // 1_000_000,
            "lapses_at": row["lapses_at"] // 1_000_000,
            "exp": None if expires is None else expires // 1_000_000,
            "maintenance_until": None if maintenance is None else maintenance // 1_000_000,
            "license_generation": licensed.license["generation"],
            "mode": row["mode"],
        },
    )
