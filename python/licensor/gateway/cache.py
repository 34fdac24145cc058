"""The license plane's in-process cache: licenses (with their product and policy), products by code, subjects'
licenses, API tokens and each tenant's active signing key.

The hot path reads here and goes to the store only on a miss. The store announces every committed change of a
tenant's License Central objects (:meth:`licensor.store.Store.subscribe`), in this process at once and, on
PostgreSQL, from other processes through LISTEN/NOTIFY; the tenant's entries are then dropped, so the next
check reads the change. A store read that was in flight while a change was announced is answered but not
kept. While the store cannot promise announcements (:attr:`Store.announcements_live` is False: PostgreSQL's
notification connection is down), nothing is kept in the cache and nothing is served from it, except while the
database is known to be unreachable (:attr:`Store.stale_cache_allowed`, bounded in time): then entries already
held answer, so checks keep working through a database restart or failover; the store's reconnection drops them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from licensor.central import license_keys
from licensor.central.keyset import active_signing_key
from licensor.central.secrets import Secrets
from licensor.errors import StoreUnavailableError
from licensor.license import Licensed
from licensor.model import LICENSE, POLICY, PRODUCT
from licensor.store import Row, Store

T = TypeVar("T")

MAX_ENTRIES_PER_TENANT = 50_000
"""Beyond this many entries of one tenant (e.g. a flood of unknown license keys), its entries start afresh."""
MAX_TENANTS = 10_000
"""Beyond this many tenants with entries (e.g. a flood of made-up tenant ids), every entry starts afresh."""


@dataclass
class _TenantEntries:
    licenses: dict[bytes, Licensed | None] = field(default_factory=dict)
    products: dict[str, Row | None] = field(default_factory=dict)
    subjects: dict[tuple[str, str], list[Licensed]] = field(default_factory=dict)
    tokens: dict[str, Row] = field(default_factory=dict)
    signing_key: tuple[str, bytes] | None = None

    def size(self) -> int:
        return len(self.licenses) + len(self.products) + len(self.subjects) + len(self.tokens)


class LicenseCache:
    """The cache of one gateway process over one store."""

    def __init__(self, store: Store, secrets: Secrets) -> None:
        self.store = store
        self.secrets = secrets
        self._tenants: dict[str, _TenantEntries] = {}
        self._token_tenants: dict[str, str] = {}
        self._announced = 0  # counts announcements: a read that saw one in flight is not kept
        self._key_hashes: dict[tuple[str, str], bytes] = {}
        self.hits = 0
        self.misses = 0
        store.subscribe(self.invalidate)

    def invalidate(self, tenant_id: str | None) -> None:
        """Drop the tenant's entries (None: everyone's)."""
        self._announced += 1
        if tenant_id is None:
            self._tenants.clear()
            self._token_tenants.clear()
        else:
            self._tenants.pop(tenant_id, None)

    async def _through(
        self,
        tenant_id: str,
        lookup: Callable[[_TenantEntries], Any],
        keep: Callable[[_TenantEntries, T], None],
        read: Callable[[], Awaitable[T]],
    ) -> T:
        live = self.store.announcements_live
        entries = self._tenants.get(tenant_id)
        if entries is not None and (live or self.store.stale_cache_allowed):
            found = lookup(entries)
            if found is not _MISSING:
                self.hits += 1
                return found
        self.misses += 1
        announced = self._announced
        try:
            value = await read()
        except StoreUnavailableError:
            # The store was found unreachable just now (before the notification connection said so): what this
            # process holds answers, as it will while the outage lasts.
            found = _MISSING if entries is None or not self.store.stale_cache_allowed else lookup(entries)
            if found is _MISSING:
                raise
            return found
        if live and self._may_keep(announced):
            keep(self._entries(tenant_id), value)
        return value

    def _may_keep(self, announced: int) -> bool:
        return self.store.announcements_live and announced == self._announced

    def _entries(self, tenant_id: str) -> _TenantEntries:
        entries = self._tenants.get(tenant_id)
        if entries is None or entries.size() >= MAX_ENTRIES_PER_TENANT:
            if entries is None and len(self._tenants) >= MAX_TENANTS:
                self._tenants.clear()
                self._token_tenants.clear()
            entries = self._tenants[tenant_id] = _TenantEntries()
        return entries

    # --- what the hot path reads -----------------------------------------------------------------------
    def key_hash(self, tenant_id: str, license_key: str) -> bytes:
        """The lookup hash of a license key as the software sent it (normalising and hashing it once).

        :raises licensor.errors.ValidationError: LICENSE_KEY_MALFORMED (a typo: never kept).
        """
        known = self._key_hashes.get((tenant_id, license_key))
        if known is None:
            known = self.secrets.license_key_hash(tenant_id, license_keys.normalize(license_key))
            if len(self._key_hashes) >= MAX_ENTRIES_PER_TENANT:
                self._key_hashes.clear()
            self._key_hashes[(tenant_id, license_key)] = known
        return known

    async def license_by_key_hash(self, tenant_id: str, key_hash: bytes) -> Licensed | None:
        """The tenant's license with this key hash (see :meth:`Secrets.license_key_hash`), or None."""
        entries = self._tenants.get(tenant_id)
        if (
            entries is not None
            and key_hash in entries.licenses
            and (self.store.announcements_live or self.store.stale_cache_allowed)
        ):
            self.hits += 1
            return entries.licenses[key_hash]

        async def read() -> Licensed | None:
            row = await self.store.find_license_by_key_hash(tenant_id, key_hash)
            return None if row is None else await self._licensed(tenant_id, row)

        return await self._through(
            tenant_id, lambda e: e.licenses.get(key_hash, _MISSING), lambda e, v: e.licenses.__setitem__(key_hash, v), read
        )

    async def license_by_id(self, tenant_id: str, license_id: str) -> Licensed | None:
        """The tenant's license with this id, read from the store (asked rarely: not cached)."""
        row = await self.store.get(tenant_id, LICENSE, license_id)
        return None if row is None else await self._licensed(tenant_id, row)

    async def product_by_code(self, tenant_id: str, code: str) -> Row | None:
        return await self._through(
            tenant_id,
            lambda e: e.products.get(code, _MISSING),
            lambda e, v: e.products.__setitem__(code, v),
            lambda: self.store.find_product_by_code(tenant_id, code),
        )

    async def licenses_of_subject(self, tenant_id: str, product_id: str, subject: str) -> list[Licensed]:
        """The licenses of the product assigned to ``subject`` (a SaaS user or customer id), oldest first."""

        async def read() -> list[Licensed]:
            rows = await self.store.licenses_of_subject(tenant_id, product_id, subject)
            return [await self._licensed(tenant_id, row) for row in rows]

        key = (product_id, subject)
        return await self._through(
            tenant_id, lambda e: e.subjects.get(key, _MISSING), lambda e, v: e.subjects.__setitem__(key, v), read
        )

    async def token(self, token_id: str) -> Row | None:
        """An API token's row by its id (whatever its tenant), or None."""
        tenant_id = self._token_tenants.get(token_id)
        if tenant_id is not None and (self.store.announcements_live or self.store.stale_cache_allowed):
            entries = self._tenants.get(tenant_id)
            if entries is not None and token_id in entries.tokens:
                self.hits += 1
                return entries.tokens[token_id]
        self.misses += 1
        announced = self._announced
        row = await self.store.get_token(token_id)
        if row is not None and self._may_keep(announced):
            self._entries(row["tenant_id"]).tokens[token_id] = row
            if len(self._token_tenants) >= MAX_ENTRIES_PER_TENANT:
                self._token_tenants.clear()
            self._token_tenants[token_id] = row["tenant_id"]
        return row

    async def signing_key(self, tenant_id: str) -> tuple[str, bytes]:
        """(key id, seed) of the tenant's active signing key.

        :raises LookupError: the tenant has no active key (no such tenant).
        """
        entries = self._tenants.get(tenant_id)  # the hot path of every signed answer: a kept key, no closures
        if (
            entries is not None
            and entries.signing_key is not None
            and (self.store.announcements_live or self.store.stale_cache_allowed)
        ):
            self.hits += 1
            return entries.signing_key
        return await self._through(
            tenant_id,
            lambda e: e.signing_key if e.signing_key is not None else _MISSING,
            lambda e, v: setattr(e, "signing_key", v),
            lambda: active_signing_key(self.store, self.secrets, tenant_id),
        )

    async def _licensed(self, tenant_id: str, license: Row) -> Licensed:
        product = await self.store.get(tenant_id, PRODUCT, license["product_id"])
        policy = await self.store.get(tenant_id, POLICY, license["policy_id"])
        assert product is not None and policy is not None, "a license's product and policy cannot be deleted"
        return Licensed(license, product, policy, orjson.loads(policy["options"]))


class _Missing:
    pass


_MISSING: Any = _Missing()
