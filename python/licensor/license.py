"""The license context a backend decides on: a license with its product and policy, what it grants, and what a
check asked of it.

The gateway builds these (from its cache on the hot path, or inside a request's transaction); a backend reads
them and answers a :class:`licensor.verdict.Verdict`, starting from :func:`license_terms_verdict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from licensor.model import LICENSE, POLICY, PRODUCT, format_time
from licensor.verdict import Code, Entitlement, Verdict

if TYPE_CHECKING:
    from licensor.store import Row, Store, Transaction


@dataclass(frozen=True)
class LicenseTerms:
    """What a license grants, read once from its row and its policy's: features (code -> quantity) and terms."""

    granted: dict[str, int | None]
    entitlements: tuple[Entitlement, ...]
    terms: dict[str, Any]

    @classmethod
    def of(cls, license: Mapping[str, Any], policy: Mapping[str, Any]) -> LicenseTerms:
        """A license's ``overrides.features`` (code -> quantity) add to or replace its policy's features."""
        granted = {item["code"]: item.get("quantity") for item in POLICY.field("features").column_to_api(policy["features"])}
        override_features = LICENSE.field("overrides").column_to_api(license["overrides"]).get("features")
        if isinstance(override_features, dict):
            granted.update(override_features)
        terms = {
            "expires_at": format_time(license["expires_at"]),
            "maintenance_until": format_time(license["maintenance_until"]),
            "seats": policy["seats"],
        }
        return cls(granted, tuple(Entitlement(code, granted[code]) for code in sorted(granted)), terms)


@dataclass(frozen=True)
class Licensed:
    """A license with the product and policy it belongs to (rows as the store holds them), and the policy's
    backend options parsed (as the policy stores them: read one with :meth:`licensor.Backend.option`, which
    falls back on the backend's defaults)."""

    license: Row
    product: Row
    policy: Row
    options: dict[str, Any]

    @cached_property
    def terms(self) -> LicenseTerms:
        """What the license grants, read once while it stays cached."""
        return LicenseTerms.of(self.license, self.policy)

    @property
    def id(self) -> str:
        return str(self.license["id"])

    @property
    def seats(self) -> int:
        """How many devices or users may hold the license at one time (the policy's seats)."""
        return int(self.policy["seats"])

    @property
    def features(self) -> dict[str, int | None]:
        """The features the license grants: code -> quantity (None: unmetered)."""
        return self.terms.granted


async def licensed_in(tx: Transaction, license: Row) -> Licensed:
    """The context of ``license`` read inside ``tx`` (a backend's own route sees its own writes)."""
    policy = await tx.get(POLICY, license["policy_id"])
    product = await tx.get(PRODUCT, license["product_id"])
    assert policy is not None and product is not None, "a license's product and policy cannot be deleted"
    return Licensed(license, product, policy, POLICY.field("options").column_to_api(policy["options"]))


@dataclass(frozen=True)
class CheckRequest:
    """What the caller asked, and the license it resolved to (rows as the store holds them).

    ``options`` are the policy's backend options (validated by this backend when the policy was created);
    ``subject`` is set when a SaaS backend asked about one of its users or customers; ``fingerprint`` is the
    device's fingerprint (component name -> salted hash) when the software sent one. ``store`` is the gateway's
    store, for a backend whose check reads state of its own (activations, leases).
    """

    tenant_id: str
    license: dict[str, Any]
    policy: dict[str, Any]
    features: tuple[str, ...] = ()
    version: str | None = None
    now_us: int = 0
    product: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    fingerprint: dict[str, str] | None = None
    license_terms: LicenseTerms | None = None  # read once per cached license; None: read from the rows
    store: Store | None = None

    @classmethod
    def of(
        cls,
        tenant_id: str,
        licensed: Licensed,
        now_us: int,
        *,
        features: tuple[str, ...] = (),
        version: str | None = None,
        subject: str | None = None,
        fingerprint: dict[str, str] | None = None,
        store: Store | None = None,
    ) -> CheckRequest:
        """The request to check ``licensed`` at ``now_us`` for what a caller asked (as ``POST /v1/check`` does)."""
        return cls(
            tenant_id,
            licensed.license,
            licensed.policy,
            features,
            version,
            now_us,
            product=licensed.product,
            options=licensed.options,
            subject=subject,
            fingerprint=fingerprint,
            license_terms=licensed.terms,
            store=store,
        )


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
    read = request.license_terms or LicenseTerms.of(lic, request.policy)
    missing = [code for code in request.features if code not in read.granted]
    if missing:
        return Verdict(Code.FEATURE_NOT_ENTITLED, f"not entitled to: {', '.join(missing)}", license_id=lic["id"])
    return Verdict(Code.VALID, license_id=lic["id"], entitlements=read.entitlements, terms=dict(read.terms))
