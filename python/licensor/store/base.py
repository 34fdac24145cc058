"""The one storage interface: the gateway, License Central and every backend reach the database only here.

Reads go through :class:`Store`; every change goes through a :class:`Transaction`, which writes the change,
its event (hash-chained per tenant) and, for a request with an ``Idempotency-Key``, the answer to replay, all
in one database transaction. Every method takes or is bound to a tenant: nothing here can read or write
another tenant's rows.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from licensor.model import Resource

Row = dict[str, Any]


@dataclass(frozen=True)
class IdempotentRequest:
    """A mutating request that carried an ``Idempotency-Key``: the key and a hash of what was asked."""

    key: str
    request_hash: bytes
    at: int | None = None
    """When the request came, on the gateway's clock (µs): its answer is remembered from then. None: now."""


@dataclass(frozen=True)
class StoredResponse:
    """The first answer to an idempotent request, replayed to every repeat of it."""

    status: int
    body: str


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    has_more: bool


class Transaction(ABC):
    """One write transaction of one tenant. Committed when its ``async with`` block ends without an error,
    rolled back otherwise."""

    tenant_id: str
    replay: StoredResponse | None
    """Set when the request is a repeat of an idempotent one: answer this and change nothing."""
    appended: list[Row]
    """The events appended so far (queued, not yet linked: no ``seq`` or ``hash``)."""

    @abstractmethod
    async def get(self, resource: Resource, object_id: str, *, for_update: bool = False) -> Row | None:
        """The tenant's object, read inside this transaction (locked against other writers if asked)."""

    @abstractmethod
    async def find(self, resource: Resource, **columns: Any) -> Row | None:
        """The tenant's first object whose columns equal ``columns`` (used for uniqueness checks)."""

    @abstractmethod
    async def select(self, resource: Resource, limit: int = 100, **columns: Any) -> list[Row]:
        """The tenant's objects whose columns equal ``columns``, oldest first, at most ``limit`` of them.

        Reads inside a transaction go through it, never through :class:`Store`: a handler holding a
        transaction must not wait for a second database connection (a pool exhausted by such handlers
        would wait forever)."""

    @abstractmethod
    async def count_referencing(self, table: str, column: str, object_id: str) -> int:
        """How many of the tenant's rows of ``table`` point at ``object_id`` through ``column``."""

    @abstractmethod
    async def insert(self, resource: Resource, row: Row) -> Row:
        """Insert a row (``id``, ``created_at`` and ``updated_at`` included) and return it."""

    @abstractmethod
    async def insert_new(self, resource: Resource, row: Row) -> Row | None:
        """Insert a row unless one with the same unique columns exists; the row, or None when one existed (a
        concurrent transaction inserting the same is waited for). Claims what must happen once (an order event)."""

    @abstractmethod
    async def update(self, resource: Resource, object_id: str, changes: Row) -> Row | None:
        """Apply ``changes`` (and a new ``updated_at``); the updated row, or None if there is no such object."""

    @abstractmethod
    async def advance_license_generations(self, *, policy_id: str | None = None, product_id: str | None = None) -> None:
        """Count up the generation of every license of the policy or the product (a change they all see).
        :meth:`update` of a license counts its own up, and of a policy those of its licenses, by itself."""

    @abstractmethod
    async def delete(self, resource: Resource, object_id: str) -> bool:
        """Delete the object; False if there was none."""

    @abstractmethod
    async def append_event(self, event_type: str, subject_type: str, subject_id: str, actor: str, data: dict[str, Any]) -> Row:
        """Record an event in this transaction: committed with it, or never. At the end of the transaction it is
        linked into the tenant's hash chain (which gives it its ``seq`` and ``hash``), or, when another
        transaction holds the chain's head, queued and linked soon after the commit; readers of the log
        (:meth:`Store.list_events`, :meth:`Store.event_chain_head`) link what is queued first. The returned row
        has no ``seq`` or ``hash`` yet."""

    @abstractmethod
    async def events_after(self, after_seq: int, limit: int) -> list[Row]:
        """The tenant's events after ``after_seq`` in chain order, at most ``limit`` (the webhook outbox's source)."""

    @abstractmethod
    async def add_usage(
        self, license_id: str, subject: str, feature: str, period: str, units: int, quota: int | None
    ) -> int | None:
        """Add ``units`` to the license's usage of ``feature`` in ``period``, atomically against ``quota``
        (None: no quota). The new total, or None when it would exceed the quota (nothing is added then)."""

    @abstractmethod
    async def license_activations(self, license_id: str, now: int, replaced_since: int) -> list[Row]:
        """The license's activations that hold a seat at ``now`` (active, suspended, and withdrawn ones whose last
        file lapses after ``now``) and those replaced by a recovery since ``replaced_since``, oldest first. Call it
        holding the license's row lock (``get(LICENSE, id, for_update=True)``) to count seats."""

    @abstractmethod
    async def expire_leases(self, license_id: str, now: int) -> list[Row]:
        """Mark the license's active leases that ran out by ``now`` as expired (their seats return), then return
        the ones still held, oldest first. Call it holding the license's row lock to count seats: expiry needs no
        background job, and nothing races the check-out that counts."""

    @abstractmethod
    async def end_leases(
        self, now: int, state: str, *, license_id: str | None = None, credential_id: str | None = None
    ) -> list[Row]:
        """End the license's or the credential's (exactly one of the two) leases held at ``now``, giving them
        ``state``; the leases ended, oldest first. Leases that ran out already are marked expired instead."""

    @abstractmethod
    def remember(self, status: int, body: str) -> None:
        """The answer to store for replay with the request's ``Idempotency-Key`` (if it had one)."""

    # --- keys and tokens -------------------------------------------------------------------------------
    @abstractmethod
    async def insert_signing_key(self, kid: str, public_key: bytes, sealed_seed: bytes, created_at: int) -> None:
        """Add the tenant's new active signing key, retiring the one that was active."""

    @abstractmethod
    async def insert_token(self, row: Row) -> None:
        """Store an API token (its secret only as a hash)."""

    @abstractmethod
    async def revoke_token(self, token_id: str, revoked_at: int) -> Row | None:
        """Mark the tenant's token revoked; the row, or None if there is no such token."""


ChangeListener = Callable[[str | None], None]
"""Told a tenant id after a committed change of that tenant's License Central objects (licenses, policies,
products, features, customers, tokens, keys), or None when changes may have been missed (everything may have
changed)."""


class Store(ABC):
    """A database holding any number of tenants. Open it before use; close it at shutdown.

    A store announces committed changes to its listeners (:meth:`subscribe`): the gateway's caches drop what
    changed. Changes made through this store object are announced right after their commit; a store shared by
    several processes (PostgreSQL) also announces the other processes' changes, as they commit.
    """

    url: str

    @abstractmethod
    def subscribe(self, listener: ChangeListener) -> None:
        """Call ``listener`` on every announced change (see :data:`ChangeListener`)."""

    @abstractmethod
    def subscribe_events(self, listener: Callable[[list[Row]], None]) -> None:
        """Call ``listener`` with events as this store object links them into their chain (with ``seq`` and
        ``hash``), after the linking committed, each batch in chain order. A process links its own
        transactions' events, at their commit or within milliseconds after it; on PostgreSQL another process
        may link some of them first (then it tells its own listeners): every event is told once, by the
        process that linked it."""

    @property
    @abstractmethod
    def announcements_live(self) -> bool:
        """True while every committed change, by any process, is announced; a cache must not serve
        entries while this is False (PostgreSQL: the notification connection is down)."""

    @property
    def stale_cache_allowed(self) -> bool:
        """True while the database is known to be unreachable, for a bounded time (PostgreSQL:
        :data:`licensor.store.postgres.OUTAGE_CACHE_SECONDS`): a cache may answer from the entries it holds,
        keeping nothing new; they are all dropped when the store is reachable again. False by default."""
        return False

    @abstractmethod
    async def open(self, migrate: bool = True) -> None:
        """Connect and bring the schema to the newest migration (with ``migrate`` False: refuse, with
        :class:`licensor.errors.SchemaTooOldError`, a schema that is not the newest already)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`licensor.errors.StoreUnavailableError` unless the database answers."""

    async def newer_schema(self) -> int | None:
        """The database's schema version when it is newer than this code knows (a newer gateway on the same
        database has migrated it), else None."""
        return None

    @abstractmethod
    def transaction(
        self, tenant_id: str, idempotency: IdempotentRequest | None = None
    ) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction of ``tenant_id``. With ``idempotency``, repeats of the same key are serialised
        and see the first answer as :attr:`Transaction.replay`; the same key with another request raises
        :class:`licensor.errors.IdempotencyKeyReusedError`."""

    _transaction_observer: Callable[[float], None] | None = None

    def time_transactions(self, observer: Callable[[float], None] | None) -> None:
        """Tell ``observer`` how many seconds each write transaction took, from its start to its commit or
        rollback (None: stop telling)."""
        self._transaction_observer = observer

    _chain_observer: Callable[[int, float], None] | None = None

    def observe_chaining(self, observer: Callable[[int, float], None] | None) -> None:
        """Tell ``observer``, at each linking of queued events into a chain, how many were linked and how many
        seconds the oldest of them waited since it was appended (None: stop telling)."""
        self._chain_observer = observer

    # --- tenants ----------------------------------------------------------------------------------------
    @abstractmethod
    async def create_tenant(self, tenant_id: str, name: str, created_at: int) -> None:
        """Create a tenant and the head of its event chain."""

    @abstractmethod
    async def get_tenant(self, tenant_id: str) -> Row | None: ...

    @abstractmethod
    async def list_tenants(self) -> list[Row]: ...

    # --- License Central objects ------------------------------------------------------------------------
    @abstractmethod
    async def get(self, tenant_id: str, resource: Resource, object_id: str) -> Row | None: ...

    @abstractmethod
    async def list(self, tenant_id: str, resource: Resource, filters: dict[str, Any], after: str | None, limit: int) -> Page:
        """The tenant's objects in id (creation) order after the id ``after``, at most ``limit`` of them."""

    # From here on, a bare `list` in this class's annotations would name the method above: hence builtins.list.
    @abstractmethod
    async def find_license_by_key_hash(self, tenant_id: str, key_hash: bytes) -> Row | None: ...

    @abstractmethod
    async def find_product_by_code(self, tenant_id: str, code: str) -> Row | None: ...

    @abstractmethod
    async def customer_by_email(self, tenant_id: str, email: str) -> Row | None:
        """The tenant's customer whose e-mail address is ``email`` (lower case) in any casing (the portal's sign-in)."""

    @abstractmethod
    async def license_generations(self, tenant_id: str, license_ids: Collection[str]) -> dict[str, int]:
        """The generation of each of the tenant's licenses named (those that exist)."""

    @abstractmethod
    async def licenses_of_subject(self, tenant_id: str, product_id: str, subject: str) -> builtins.list[Row]:
        """The licenses of ``product_id`` assigned to ``subject``, oldest first (at most 100)."""

    # --- usage ------------------------------------------------------------------------------------------
    @abstractmethod
    async def usage_totals(
        self, tenant_id: str, license_ids: builtins.list[str], subject: str, period: str | None
    ) -> builtins.list[Row]:
        """The subject's usage totals (``license_id``, ``feature``, ``period``, ``used``, ``updated_at``) on
        these licenses, of one period or of all, ordered by period, license and feature."""

    # --- leases -----------------------------------------------------------------------------------------
    @abstractmethod
    async def leases_overlapping(self, tenant_id: str, license_id: str, start: int, end: int, limit: int) -> builtins.list[Row]:
        """The license's leases held at some time in [``start``, ``end``): started before ``end`` and not ended
        (nor run out) by ``start``, oldest first, at most ``limit`` of them (for the usage report)."""

    # --- keys and tokens --------------------------------------------------------------------------------
    @abstractmethod
    async def list_signing_keys(self, tenant_id: str) -> builtins.list[Row]:
        """The tenant's signing keys, newest first (the active one and the retired ones still published)."""

    @abstractmethod
    async def get_token(self, token_id: str) -> Row | None:
        """A token by its id, whatever its tenant: authentication learns the tenant from it."""

    @abstractmethod
    async def list_tokens(self, tenant_id: str, after: str | None, limit: int) -> Page: ...

    # --- webhooks (the background sender's; across tenants) -------------------------------------------------
    @abstractmethod
    async def enabled_webhook_endpoints(self) -> builtins.list[Row]:
        """Every enabled webhook endpoint of every tenant (what the sender fills deliveries for)."""

    @abstractmethod
    async def claim_webhook_deliveries(self, now: int, claimed_until: int, limit: int) -> builtins.list[Row]:
        """Claim up to ``limit`` pending deliveries of enabled endpoints that are due at ``now`` and not claimed
        by another worker, until ``claimed_until``; the claimed rows. A claim that ran out (its worker died) is
        taken over, so every delivery is attempted by one worker at a time."""

    @abstractmethod
    async def seats_held(self, now: int) -> dict[str, int]:
        """Seats held at ``now`` across every tenant, by the backend its license's policy names: activations
        holding one (active, suspended, or withdrawn until their file lapses) and leases not ended or expired."""

    @abstractmethod
    async def webhook_backlog(self) -> int:
        """How many webhook deliveries of every tenant wait to be delivered (the outbox's length)."""

    # --- retention (the background pruner's; across tenants, in batches: see docs/retention.md) -----------------
    @abstractmethod
    async def prune_idempotency_answers(self, before: int, limit: int) -> int:
        """Forget up to ``limit`` remembered answers of idempotent requests remembered before ``before``, in one short
        transaction; how many were forgotten (fewer than ``limit``: none older is left)."""

    @abstractmethod
    async def prune_ended_leases(self, before: int, limit: int) -> int:
        """Delete up to ``limit`` leases that stopped holding their seat before ``before`` (ended, or ran out without
        being marked), in one short transaction; how many were deleted. Active leases are never touched."""

    @abstractmethod
    async def prune_finished_webhook_deliveries(self, before: int, limit: int) -> int:
        """Delete up to ``limit`` webhook deliveries that were finished (delivered, or failed for good) and last
        changed before ``before``, with their attempts, in one short transaction; how many deliveries were deleted.
        Pending deliveries are never touched."""

    @abstractmethod
    async def prune_expired_portal_sessions(self, before: int, limit: int) -> int:
        """Delete up to ``limit`` portal sessions that expired before ``before``, in one short transaction; how many."""

    @abstractmethod
    async def prune_expired_portal_links(self, before: int, limit: int) -> int:
        """Delete up to ``limit`` single-use portal links (used or not) that expired before ``before``, in one short
        transaction; how many."""

    # --- order sources ----------------------------------------------------------------------------------
    @abstractmethod
    async def get_order_source(self, source_id: str) -> Row | None:
        """An order source by its id, whatever its tenant: the order intake learns the tenant from it (the shop's
        signature then proves the request)."""

    # --- events -----------------------------------------------------------------------------------------
    @abstractmethod
    async def list_events(self, tenant_id: str, filters: dict[str, Any], after_seq: int | None, limit: int) -> Page:
        """A page of the tenant's events in chain order, after linking what is queued (:meth:`chain_events`)."""

    @abstractmethod
    def iter_events(self, tenant_id: str) -> AsyncIterator[Row]:
        """Every event of the tenant in chain order (for verifying the chain), after linking what is queued."""

    @abstractmethod
    async def event_chain_head(self, tenant_id: str) -> Row | None:
        """``last_seq`` and ``last_hash`` of the tenant's chain, after linking what is queued (:meth:`chain_events`)."""

    @abstractmethod
    async def chain_events(self, tenant_id: str) -> int:
        """Link the tenant's queued events into its chain now, waiting for a chainer of another process that
        holds it; how many this call linked. Every event committed before the call is linked when it returns."""
