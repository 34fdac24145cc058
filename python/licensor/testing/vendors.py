"""A vendor to test a backend with: a tenant selling one product under one policy of the backend, and a license of
that policy, all made through the admin API of the gateway under test."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from licensor.backend import Backend
from licensor.testing.clocks import ManualClock
from licensor.testing.drivers import Gateway, Tenant


@dataclass
class Vendor:
    """A tenant with a product, a policy naming the backend under test, and a license of that policy. A plugin's
    test kit subclasses it to add what its devices or subjects do (see :func:`make_vendor`'s ``kind``)."""

    gateway: Gateway
    tenant: Tenant
    product: dict[str, Any]
    policy: dict[str, Any]
    license: dict[str, Any]

    @property
    def backend(self) -> Backend:
        """The gateway's backend that the policy names."""
        return self.gateway.backend(self.policy["backend"])

    @property
    def clock(self) -> ManualClock:
        """The gateway's clock, stopped by :meth:`Gateway.freeze_clock` (it fails while the clock runs)."""
        clock = self.gateway.clock
        assert clock is not None, "stop the gateway's clock first: vendor.gateway.freeze_clock()"
        return clock

    @property
    def license_path(self) -> str:
        """The license's admin URL path."""
        return f"/v1/admin/licenses/{self.license['id']}"

    async def public_keys(self) -> dict[str, bytes]:
        """The tenant's published public keys (key id -> raw Ed25519 key), as a device fetches them."""
        published = await self.gateway.call("GET", "/v1/keys", params={"tenant": self.tenant.id})
        return {key["kid"]: b64url_decode(key["public_key"]) for key in published.body["keys"]}

    async def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The tenant's events (of one type, if given), oldest first."""
        return await self.tenant.list_all("/v1/admin/events", params={"type": kind} if kind else {})


V = TypeVar("V", bound=Vendor)


async def make_vendor(
    gateway: Gateway,
    backend: str,
    *,
    kind: type[V] = Vendor,  # type: ignore[assignment]  # the default fits V's bound
    tenant: Tenant | None = None,
    name: str = "Vendor",
    product: str = "app",
    catalog: Mapping[str, Mapping[str, Any]] | Sequence[str] = ("draw", "render"),
    features: Sequence[Mapping[str, Any]] = ({"code": "draw"},),
    seats: int = 1,
    options: Mapping[str, Any] | None = None,
    license: Mapping[str, Any] | None = None,
) -> V:
    """A new tenant ``name`` (or ``tenant``) with product ``product``, its features ``catalog`` (codes, or code -> the feature's
    other fields), a policy of ``backend`` with ``seats`` granting ``features`` with the backend's ``options``,
    and a license of it (with the fields of ``license``), as a ``kind``.

    :raises AssertionError: the admin API refused one of them."""
    tenant = tenant or await gateway.tenant(name)
    made = await tenant.product(code=product)
    fields = catalog if isinstance(catalog, Mapping) else {code: {} for code in catalog}
    for code, extra in fields.items():
        await tenant.feature(made["id"], code, **extra)
    policy = await tenant.policy(made["id"], backend=backend, seats=seats, options=dict(options or {}), features=list(features))
    licensed = await tenant.license(policy["id"], **(license or {}))
    return kind(gateway, tenant, made, policy, licensed)


def b64url_decode(text: str) -> bytes:
    """Bytes from unpadded base64url (as keys, signatures and secrets are written)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
