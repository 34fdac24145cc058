"""The interface every license backend implements, first-party or third-party.

A backend is named by policies (``policy.backend``). The gateway finds it in the registry by that name, has it
validate the options of a policy that names it, and asks it to :meth:`Backend.check`. A backend keeps its state
through the store interface only.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from licensor.errors import ValidationError
from licensor.model import LICENSE, POLICY, format_time
from licensor.schema import compiled
from licensor.verdict import Code, Entitlement, Verdict

if TYPE_CHECKING:
    from licensor.gateway.api import Operation
    from licensor.store import Store, Transaction

BACKEND_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


@dataclass(frozen=True)
class LicenseTerms:
    """What a license grants, read once from its row and its policy's: features (code -> quantity) and terms."""

    granted: dict[str, int | None]
    entitlements: tuple[Entitlement, ...]
    terms: dict[str, Any]

    @classmethod
    def of(cls, license: dict[str, Any], policy: dict[str, Any]) -> LicenseTerms:
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


class Backend(ABC):
    """A license backend: a name, the schema of its policy options, its check, its routes, and its reactions
    to changes made in License Central."""

    name: ClassVar[str]
    options_schema: ClassVar[dict[str, Any]] = {"type": "object", "additionalProperties": False}
    verdicts_cacheable: ClassVar[bool] = False
    """True when :meth:`check` depends only on the request, the license, its policy and product, and on the time
    only through the license's start and expiry (as :func:`license_terms_verdict`): the gateway may then answer
    a repeated identical check from memory, until anything of the tenant changes (and for at most a few
    seconds). A backend that keeps state of its own (seats, activations, usage) leaves it False."""

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The policy options as this backend will use them.

        :raises ValidationError: INVALID_POLICY_OPTIONS, naming the first offending option.
        """
        problem = compiled(self.options_schema).problem(options)
        if problem is not None:
            where = "options" if problem.location == "(body)" else problem.location
            raise ValidationError(f"{self.name} policy option {where}: {problem.message}", code="INVALID_POLICY_OPTIONS")
        return options

    @abstractmethod
    async def check(self, request: CheckRequest) -> Verdict:
        """Answer whether the license allows what was asked now. Refusals are verdicts, never exceptions."""

    def operations(self) -> Iterable[Operation]:
        """The backend's own routes (license-plane operations), added to the gateway and its OpenAPI document."""
        return ()

    # Not abstract: a backend overrides it only when it reacts to changes (the default does nothing).
    async def on_license_changed(self, tx: Transaction, license: dict[str, Any], change: str) -> None:  # noqa: B027
        """React to a change of one of this backend's licenses made in License Central (``suspended``,
        ``reinstated``, ``revoked``, ``renewed``), inside the changing transaction: what the backend writes
        through ``tx`` commits with the change, and an error aborts it. Checks see the change at once anyway
        (the license cache drops the license when the change commits)."""


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
