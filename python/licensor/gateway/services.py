"""The gateway's :class:`licensor.operations.Services`: what operations and backends reach it through."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from licensor.central.keyset import public_keys
from licensor.gateway import keys as app_keys
from licensor.license import Licensed
from licensor.model import now_us
from licensor.operations import Services
from licensor.store import Row, Store


class GatewayServices(Services):
    """The services of one gateway application (its store and cache exist once it has started)."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self.clock: Callable[[], int] = now_us
        """What :meth:`now_us` reads: the system's clock, unless a test stops it (``licensor.testing``)."""

    @property
    def store(self) -> Store:
        return self._app[app_keys.STORE]

    @property
    def public_url(self) -> str | None:
        return self._app[app_keys.SETTINGS].public_url

    async def signing_key(self, tenant_id: str) -> tuple[str, bytes]:
        return await self._app[app_keys.CACHE].signing_key(tenant_id)

    async def public_keys(self, tenant_id: str) -> dict[str, bytes]:
        return await public_keys(self.store, tenant_id)

    async def license_by_key(self, tenant_id: str, license_key: str) -> Licensed | None:
        limits, cache = self._app[app_keys.LIMITS], self._app[app_keys.CACHE]
        key_hash = cache.key_hash(tenant_id, license_key)  # a malformed key (a typo) is refused before it counts
        counted = limits.before_key_lookup()
        try:
            licensed = await cache.license_by_key_hash(tenant_id, key_hash)
        except BaseException:  # the store away, the client gone: no guess was made
            limits.after_key_lookup(counted, found=True)
            raise
        limits.after_key_lookup(counted, found=licensed is not None)
        return licensed

    async def license_by_id(self, tenant_id: str, license_id: str) -> Licensed | None:
        return await self._app[app_keys.CACHE].license_by_id(tenant_id, license_id)

    async def product_by_code(self, tenant_id: str, code: str) -> Row | None:
        return await self._app[app_keys.CACHE].product_by_code(tenant_id, code)

    async def licenses_of_subject(self, tenant_id: str, product_id: str, subject: str) -> list[Licensed]:
        return await self._app[app_keys.CACHE].licenses_of_subject(tenant_id, product_id, subject)

    def record_outcome(self, tenant_id: str, license_id: str | None, code: str) -> None:
        self._app[app_keys.OUTCOMES].record(tenant_id, license_id, code)

    def now_us(self) -> int:
        return self.clock()

    def count_churn(self, tenant_id: str, license_id: str) -> None:
        if (budget := self._app[app_keys.LIMITS].churn) is not None:
            budget.take(f"{tenant_id} {license_id}", "activations and deactivations of this license")
