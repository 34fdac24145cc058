"""Entitlement tokens (``en1``): what a subject of a SaaS may do, signed by the vendor's tenant, verified offline.

A SaaS backend asks the gateway (``POST /v1/entitlements/query``, cloud-lite) what one of its users or
customers (a *subject*) may do and gets, besides the answer, an ``en1`` token valid for a short while (the
policy's ``entitlement_ttl_seconds``). It verifies that token locally with the tenant's public keys
(``GET /v1/keys``) and keeps it in an :class:`EntitlementCache`, so most requests of its own need no call to the
gateway at all.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from licensor_client._fields import expect_claims
from licensor_client.errors import TokenError
from licensor_client.tokens import TokenKind, read_document

ENTITLEMENT_KIND = TokenKind.ENTITLEMENT
CLOCK_SKEW_S = 30
"""How far the SaaS backend's clock may run ahead of the gateway's."""


class EntitlementRejectedError(TokenError):
    """A genuine entitlement token that does not answer this question: another tenant, product or subject, or
    a token past its expiry."""

    code = "ENTITLEMENT_REJECTED"


def entitlement_document(
    tenant_id: str,
    product: str,
    subject: str,
    features: list[dict[str, Any]],
    terms: dict[str, Any],
    license_ids: list[str],
    issued_at: int,
    expires_at: int,
) -> dict[str, Any]:
    """What the gateway signs as an ``en1`` token (times in seconds since the epoch)."""
    return {
        "tenant": tenant_id,
        "product": product,
        "subject": subject,
        "features": features,
        "terms": terms,
        "licenses": license_ids,
        "iat": issued_at,
        "exp": expires_at,
    }


@dataclass(frozen=True)
class Entitlements:
    """A verified entitlement token's content."""

    tenant: str
    product: str
    subject: str
    features: dict[str, int | None]  # feature code -> quantity (None: unlimited or not counted)
    terms: dict[str, Any]
    license_ids: tuple[str, ...]
    issued_at: int
    expires_at: int

    def allows(self, feature: str) -> bool:
        return feature in self.features


def verify_entitlement_token(
    token: str,
    public_keys: Mapping[str, bytes],
    *,
    tenant: str,
    product: str,
    subject: str,
    now: float | None = None,
) -> Entitlements:
    """The entitlements an ``en1`` token grants ``subject`` for ``product`` of ``tenant``.

    :raises licensor_client.errors.TokenError: a malformed token, one of another kind, or one whose signature does
        not verify with the named key; :class:`EntitlementRejectedError` (TENANT_MISMATCH, PRODUCT_MISMATCH,
        SUBJECT_MISMATCH, ENTITLEMENT_EXPIRED, ENTITLEMENT_MALFORMED) for a genuine token that does not answer.
    """
    document = read_document(token, ENTITLEMENT_KIND, public_keys)
    expect_claims(document, EntitlementRejectedError, "token", tenant=tenant, product=product, subject=subject)
    issued_at, expires_at = document.get("iat"), document.get("exp")
    features = document.get("features")
    if not (
        _is_int(issued_at)
        and _is_int(expires_at)
        and isinstance(features, list)
        and isinstance(document.get("terms"), dict)
        and isinstance(document.get("licenses"), list)
    ):
        raise EntitlementRejectedError("the token lacks its times, features or terms", code="ENTITLEMENT_MALFORMED")
    moment = time.time() if now is None else now
    if moment >= expires_at or moment + CLOCK_SKEW_S < issued_at:
        raise EntitlementRejectedError("the entitlement token has expired", code="ENTITLEMENT_EXPIRED")
    granted: dict[str, int | None] = {}
    for item in features:
        if not isinstance(item, dict) or not isinstance(item.get("feature"), str):
            raise EntitlementRejectedError("the token's features are malformed", code="ENTITLEMENT_MALFORMED")
        granted[item["feature"]] = item.get("quantity")
    return Entitlements(tenant, product, subject, granted, document["terms"], tuple(document["licenses"]), issued_at, expires_at)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


Fetch = Callable[[str, str], Awaitable[str]]
"""Asks the gateway for a fresh token of (product, subject): e.g. a POST to /v1/entitlements/query."""


class EntitlementCache:
    """Verified entitlements per (product, subject), kept until their token expires.

    ``fetch`` (None for a cache filled by hand, as :class:`licensor_client.Client` does) gets a new token
    when none is cached or the cached one is about to expire (``refresh_s`` before
    its expiry); every token is verified before it is kept, so a forged or misdirected one is never served.
    """

    def __init__(
        self,
        fetch: Fetch | None,
        public_keys: Mapping[str, bytes],
        *,
        tenant: str,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        max_entries: int = 100_000,
    ) -> None:
        self.fetch = fetch
        self.public_keys = public_keys
        self.tenant = tenant
        self.refresh_s = refresh_s
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], Entitlements] = {}
        self.fetches = 0

    async def get(self, product: str, subject: str) -> Entitlements:
        """The subject's entitlements, from the cache while fresh.

        :raises licensor_client.errors.TokenError: the fetched token does not verify (nothing is cached then).
        """
        now = self.clock()
        cached = self.cached(product, subject, now)
        if cached is not None:
            return cached
        if self.fetch is None:
            raise RuntimeError("this cache was made without fetch: use cached() and keep()")
        self.fetches += 1
        token = await self.fetch(product, subject)
        return self.keep(
            verify_entitlement_token(token, self.public_keys, tenant=self.tenant, product=product, subject=subject, now=now)
        )

    def cached(self, product: str, subject: str, now: float) -> Entitlements | None:
        """The subject's cached entitlements while they are fresh at ``now`` (``refresh_s`` before expiry), else None."""
        cached = self._entries.get((product, subject))
        return cached if cached is not None and now < cached.expires_at - self.refresh_s else None

    def keep(self, entitlements: Entitlements) -> Entitlements:
        """Cache verified entitlements (see :func:`verify_entitlement_token`) until they are due for a refresh."""
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[(entitlements.product, entitlements.subject)] = entitlements
        return entitlements

    def forget(self, product: str, subject: str) -> None:
        """Drop a subject's cached entitlements (e.g. when the SaaS learns they changed)."""
        self._entries.pop((product, subject), None)
