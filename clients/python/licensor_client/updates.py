"""License updates (``up1``): a license's state at a generation, signed by its tenant and pushed to its devices.

Every change made in License Central counts a license's generation up (renewal, features or quantities, policy
terms, suspension, revocation, a device withdrawn, a new subscription period, a push by the vendor). A connected
client (``GET /v1/updates``, server-sent events) receives the signed update within moments; a disconnected one
at its next connection, since it asks with the generation it holds. The client applies updates in order and
refuses one of a generation not above the one it holds (:func:`read_update`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from licensor_client._fields import expect_claims, integer, json_object, quantity, text
from licensor_client.errors import TokenError
from licensor_client.tokens import TokenKind, read_document

__all__ = ["UPDATE_KIND", "LicenseUpdate", "UpdateRejectedError", "read_update", "update_document"]

UPDATE_KIND = TokenKind.UPDATE
_STOPPING = frozenset({"suspended", "revoked"})


class UpdateRejectedError(TokenError):
    """A genuine update that is not for this license, or malformed (LICENSE_MISMATCH, TENANT_MISMATCH,
    PRODUCT_MISMATCH, UPDATE_MALFORMED), or older than the generation the device holds (UPDATE_STALE)."""

    code = "UPDATE_REJECTED"


def update_document(
    tenant_id: str,
    product: str,
    license_id: str,
    generation: int,
    state: str,
    expires_at: int | None,
    maintenance_until: int | None,
    features: list[dict[str, Any]],
    issued_at: int,
) -> dict[str, Any]:
    """What the gateway signs as an ``up1`` update (times in seconds since the epoch)."""
    return {
        "tenant": tenant_id,
        "product": product,
        "license": license_id,
        "generation": generation,
        "state": state,
        "exp": expires_at,
        "maintenance_until": maintenance_until,
        "features": features,
        "iat": issued_at,
    }


@dataclass(frozen=True)
class LicenseUpdate:
    tenant: str
    product: str
    license_id: str
    generation: int
    state: str
    """``active``, ``suspended`` or ``revoked``."""
    expires_at: int | None
    maintenance_until: int | None
    features: dict[str, int | None]
    issued_at: int
    token: str

    @property
    def stops(self) -> bool:
        """Whether the license no longer allows use (suspended or revoked): the program stops."""
        return self.state in _STOPPING


def read_update(
    token: str,
    public_keys: Mapping[str, bytes],
    *,
    tenant: str,
    product: str,
    license_id: str | None = None,
    after: int = 0,
) -> LicenseUpdate:
    """The update of ``license_id`` (when given) of ``tenant`` and ``product``, of a generation above ``after``.

    :raises licensor_client.errors.TokenError: malformed, another kind, an unknown key, a bad signature;
        :class:`UpdateRejectedError` for a genuine update of something else, malformed, or stale."""
    document = read_document(token.strip(), UPDATE_KIND, public_keys)
    expect_claims(document, UpdateRejectedError, "update", tenant=tenant, product=product, license=license_id)
    try:
        update = LicenseUpdate(
            tenant,
            product,
            text(document["license"]),
            integer(document["generation"]),
            text(document["state"]),
            None if document["exp"] is None else integer(document["exp"]),
            None if document["maintenance_until"] is None else integer(document["maintenance_until"]),
            {text(item["feature"]): quantity(item["quantity"]) for item in document["features"]},
            integer(document["iat"]),
            token.strip(),
        )
        json_object(document)
    except (KeyError, TypeError, ValueError):
        raise UpdateRejectedError("the update lacks or garbles a field", code="UPDATE_MALFORMED") from None
    if update.generation <= after:
        raise UpdateRejectedError(
            f"the update's generation {update.generation} is not above the {after} this device holds", code="UPDATE_STALE"
        )
    return update
