"""The :class:`Store` written once in portable SQL, over a small driver that each database provides.

SQL here uses ``?`` placeholders; the PostgreSQL driver numbers them. Table and column names come only from
:mod:`licensor.model`, never from a request.
"""

from __future__ import annotations

import builtins
import functools
import hmac
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from typing import Any

from licensor.errors import ConflictError, IdempotencyKeyReusedError, SchemaTooNewError, SchemaTooOldError
from licensor.model import Resource, canonical_json, new_id, now_us
from licensor.store.base import ChangeListener, IdempotentRequest, Page, Row, Store, StoredResponse, Transaction
from licensor.store.chain import GENESIS_HASH, HASHED_COLUMNS, event_hash
from licensor.store.chainer import Chainer

log = logging.getLogger("licensor.store")

CHAIN_BATCH = 500
"""Queued events linked per chaining transaction."""
_EVENT_COLUMNS = (*HASHED_COLUMNS, "prev_hash", "hash")
_QUEUED_COLUMNS = tuple(column for column in HASHED_COLUMNS if column != "seq")  # a queued event has no place yet
_PARAMETERS_PER_INSERT = 999  # SQLite's oldest limit of parameters per statement

SUBJECT_LICENSES_LIMIT = 100
"""The licenses of one product a subject may hold that the license plane considers (the oldest ones)."""


class IntegrityViolation(Exception):
    """A constraint of the database refused a write (raised by drivers, turned into ConflictError here)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # "unique" or "foreign_key"


class Connection(ABC):
    @abstractmethod
    async def fetch_all(self, sql: str, *args: Any) -> list[Row]: ...

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> None: ...

    @abstractmethod
    async def execute_counted(self, sql: str, *args: Any) -> int:
        """Run an INSERT, UPDATE or DELETE; how many rows it changed. (Cheaper than RETURNING rows to count: on
        SQLite each row returned is a hand-over of Python's GIL between aiosqlite's thread and the event loop.)"""

    async def fetch_one(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch_all(sql, *args)
        return rows[0] if rows else None


class SqlStore(Store):
    """Everything a store does, in SQL; subclasses open connections and transactions."""

    dialect: str
    blob_type: str
    serial_key_type: str
    """The column type of a primary key the database numbers by itself, in insertion order."""

    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []
        self._event_listeners: list[Callable[[list[Row]], None]] = []
        self._chainer = Chainer(self._chain_or_skip, self._queued_tenants)

    # --- change announcements ---------------------------------------------------------------------------
    def subscribe(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def subscribe_events(self, listener: Callable[[list[Row]], None]) -> None:
        self._event_listeners.append(listener)

    def _announce(self, tenant_id: str | None) -> None:
        self._tell(self._listeners, tenant_id)

    @staticmethod
    def _tell(listeners: list[Callable[[Any], None]], news: Any) -> None:
        for listener in listeners:
            try:
                listener(news)
            except Exception:  # a listener's failure must not undo or fail a committed change
                log.exception("a store listener failed")

    async def _announce_before_commit(self, conn: Connection, tenant_id: str) -> None:
        """Announce the change to other processes, delivered when the transaction commits (if it does)."""

    @abstractmethod
    def _read(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for reads of committed data."""

    @abstractmethod
    def _write(self, lock_key: str | None) -> AbstractAsyncContextManager[Connection]:
        """A write transaction; with ``lock_key``, serialised against every other holding the same key."""

    async def _write_one(self, sql: str, *args: Any) -> int:
        """One statement as a write transaction of its own; how many rows it changed."""
        async with self._write(None) as conn:
            return await conn.execute_counted(sql, *args)

    # --- migrations -------------------------------------------------------------------------------------
    @staticmethod
    def migrations() -> list[tuple[int, str]]:
        """(version, SQL) of every migration file, in order."""
        found = []
        for entry in resources.files("licensor.store.migrations").iterdir():
            if entry.name.endswith(".sql"):
                found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
        return sorted(found)

    async def newer_schema(self) -> int | None:
        async with self._read() as conn:
            row = await conn.fetch_one("SELECT max(version) AS version FROM schema_migrations")
        version = None if row is None or row["version"] is None else int(row["version"])
        return version if version is not None and version > _newest_migration() else None

    async def _migrate(self, conn: Connection, apply: bool = True) -> None:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        done = {row["version"] for row in await conn.fetch_all("SELECT version FROM schema_migrations")}
        known = self.migrations()
        unknown = done - {version for version, _ in known}
        if unknown:
            # A newer licensor migrated this database: its code may rely on what these versions changed.
            raise SchemaTooNewError(
                f"the database's schema is at version {max(done)}, newer than this licensor knows (version "
                f"{known[-1][0]}; unknown: {', '.join(map(str, sorted(unknown)))}): upgrade licensor, or restore a "
                "backup made before the upgrade"
            )
        pending = [version for version, _ in known if version not in done]
        if pending and not apply:
            raise SchemaTooOldError(
                f"the database's schema is at version {max(done, default=0)}, older than this licensor's (version "
                f"{known[-1][0]}): back it up with the licensor that serves it, or let the upgraded gateway migrate "
                "it first"
            )
        for version, sql in known:
            if version not in done:
                sql = sql.replace("{blob}", self.blob_type).replace("{serial_key}", self.serial_key_type)
                await self._execute_script(conn, sql)
                await conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", version, now_us())

    @abstractmethod
    async def _execute_script(self, conn: Connection, sql: str) -> None: ...

    # --- transactions -----------------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self, tenant_id: str, idempotency: IdempotentRequest | None = None) -> AsyncIterator[Transaction]:
        # A space separates (tenant ids have none); not NUL, which PostgreSQL text cannot hold.
        lock_key = f"{tenant_id} {idempotency.key}" if idempotency else None
        async with self._timed(self._write(lock_key)) as conn:
            tx = SqlTransaction(self, conn, tenant_id)
            if idempotency is not None:
                earlier = await conn.fetch_one(
                    "SELECT request_hash, status, body FROM idempotency_keys WHERE tenant_id = ? AND key = ?",
                    tenant_id,
                    idempotency.key,
                )
                if earlier is not None:
                    if not hmac.compare_digest(bytes(earlier["request_hash"]), idempotency.request_hash):
                        raise IdempotencyKeyReusedError("this Idempotency-Key was used with another request")
                    tx.replay = StoredResponse(earlier["status"], earlier["body"])
            yield tx
            if idempotency is not None and tx.replay is None and tx.answer is not None:
                await conn.execute(
                    "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, body, created_at) VALUES (?, "
                    "?, ?, ?, ?, ?)",
                    tenant_id,
                    idempotency.key,
                    idempotency.request_hash,
                    tx.answer.status,
                    tx.answer.body,
                    now_us() if idempotency.at is None else idempotency.at,
                )
            if tx.changed:
                await self._announce_before_commit(conn, tenant_id)
            linked = await self._link_or_queue(conn, tenant_id, tx.appended) if tx.appended else None
        if tx.changed:
            self._announce(tenant_id)
        if linked:
            self._linked(linked)
        elif tx.appended:
            self._chainer.soon(tenant_id)

    @asynccontextmanager
    async def _timed(self, write: AbstractAsyncContextManager[Connection]) -> AsyncIterator[Connection]:
        started = time.perf_counter()
        try:
            async with write as conn:
                yield conn
        finally:
            if self._transaction_observer is not None:
                self._transaction_observer(time.perf_counter() - started)

    # --- tenants ----------------------------------------------------------------------------------------
    async def create_tenant(self, tenant_id: str, name: str, created_at: int) -> None:
        async with self._write(None) as conn:
            await conn.execute("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)", tenant_id, name, created_at)
            await conn.execute(
                "INSERT INTO event_chain (tenant_id, last_seq, last_hash) VALUES (?, 0, ?)", tenant_id, GENESIS_HASH
            )

    async def get_tenant(self, tenant_id: str) -> Row | None:
        async with self._read() as conn:
            return await conn.fetch_one("SELECT id, name, created_at FROM tenants WHERE id = ?", tenant_id)

    async def list_tenants(self) -> list[Row]:
        async with self._read() as conn:
            return await conn.fetch_all("SELECT id, name, created_at FROM tenants ORDER BY id")

    # --- objects ----------------------------------------------------------------------------------------
    async def get(self, tenant_id: str, resource: Resource, object_id: str) -> Row | None:
        async with self._read() as conn:
            return await conn.fetch_one(f"SELECT * FROM {resource.table} WHERE tenant_id = ? AND id = ?", tenant_id, object_id)

    async def _page(self, table: str, order: str, where: dict[str, Any], after: Any, limit: int) -> Page:
        """Rows of ``table`` whose columns equal ``where``, after ``after`` in ``order``, at most ``limit``."""
        clauses, args = [f"{column} = ?" for column in where], list(where.values())
        if after is not None:
            clauses.append(f"{order} > ?")
            args.append(after)
        sql = f"SELECT * FROM {table} WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT ?"
        async with self._read() as conn:
            rows = await conn.fetch_all(sql, *args, limit + 1)
        return Page(rows[:limit], len(rows) > limit)

    async def list(self, tenant_id: str, resource: Resource, filters: dict[str, Any], after: str | None, limit: int) -> Page:
        allowed = {f.name for f in resource.filters}
        for column in filters:
            if column not in allowed:
                raise KeyError(column)  # the API validates filters first; this guards the SQL
        return await self._page(resource.table, "id", {"tenant_id": tenant_id, **filters}, after, limit)

    # From here on, a bare `list` in this class's annotations would name the method above: hence builtins.list.
    async def find_license_by_key_hash(self, tenant_id: str, key_hash: bytes) -> Row | None:
        async with self._read() as conn:
            row = await conn.fetch_one("SELECT * FROM licenses WHERE tenant_id = ? AND key_hash = ?", tenant_id, key_hash)
        # The index found the row; compare the hash in constant time all the same.
        if row is not None and hmac.compare_digest(bytes(row["key_hash"]), key_hash):
            return row
        return None

    async def find_product_by_code(self, tenant_id: str, code: str) -> Row | None:
        async with self._read() as conn:
            return await conn.fetch_one("SELECT * FROM products WHERE tenant_id = ? AND code = ?", tenant_id, code)

    async def customer_by_email(self, tenant_id: str, email: str) -> Row | None:
        async with self._read() as conn:
            return await conn.fetch_one(
                "SELECT * FROM customers WHERE tenant_id = ? AND lower(email) = ? ORDER BY id LIMIT 1", tenant_id, email.lower()
            )

    async def license_generations(self, tenant_id: str, license_ids: Collection[str]) -> dict[str, int]:
        ids, found = sorted(license_ids), {}
        async with self._read() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = await conn.fetch_all(
                    f"SELECT id, generation FROM licenses WHERE tenant_id = ? AND id IN ({', '.join('?' for _ in chunk)})",
                    tenant_id,
                    *chunk,
                )
                found.update({row["id"]: int(row["generation"]) for row in rows})
        return found

    async def licenses_of_subject(self, tenant_id: str, product_id: str, subject: str) -> builtins.list[Row]:
        async with self._read() as conn:
            return await conn.fetch_all(
                "SELECT * FROM licenses WHERE tenant_id = ? AND product_id = ? AND subject = ? ORDER BY id LIMIT ?",
                tenant_id,
                product_id,
                subject,
                SUBJECT_LICENSES_LIMIT,
            )

    async def usage_totals(
        self, tenant_id: str, license_ids: builtins.list[str], subject: str, period: str | None
    ) -> builtins.list[Row]:
        if not license_ids:
            return []
        marks = ", ".join("?" for _ in license_ids)
        clauses, args = f"tenant_id = ? AND subject = ? AND license_id IN ({marks})", [tenant_id, subject, *license_ids]
        if period is not None:
            clauses += " AND period = ?"
            args.append(period)
        async with self._read() as conn:
            return await conn.fetch_all(
                "SELECT license_id, feature, period, used, updated_at FROM usage_totals"
                f" WHERE {clauses} ORDER BY period, license_id, feature",
                *args,
            )

    # --- leases -----------------------------------------------------------------------------------------
    async def leases_overlapping(self, tenant_id: str, license_id: str, start: int, end: int, limit: int) -> builtins.list[Row]:
        async with self._read() as conn:
            return await conn.fetch_all(
                "SELECT * FROM leases WHERE tenant_id = ? AND license_id = ? AND created_at < ?"
                " AND COALESCE(ended_at, expires_at) > ? ORDER BY id LIMIT ?",
                tenant_id,
                license_id,
                end,
                start,
                limit,
            )

    # --- keys and tokens --------------------------------------------------------------------------------
    async def list_signing_keys(self, tenant_id: str) -> builtins.list[Row]:
        async with self._read() as conn:
            return await conn.fetch_all(
                "SELECT kid, public_key, sealed_seed, state, created_at, retired_at FROM signing_keys"
                " WHERE tenant_id = ? ORDER BY created_at DESC, kid DESC",
                tenant_id,
            )

    async def get_token(self, token_id: str) -> Row | None:
        async with self._read() as conn:
            return await conn.fetch_one("SELECT * FROM api_tokens WHERE id = ?", token_id)

    async def list_tokens(self, tenant_id: str, after: str | None, limit: int) -> Page:
        return await self._page("api_tokens", "id", {"tenant_id": tenant_id}, after, limit)

    async def enabled_webhook_endpoints(self) -> builtins.list[Row]:
        async with self._read() as conn:
            return await conn.fetch_all("SELECT * FROM webhook_endpoints WHERE state = 'enabled' ORDER BY tenant_id, id")

    async def claim_webhook_deliveries(self, now: int, claimed_until: int, limit: int) -> builtins.list[Row]:
        free = "state = 'pending' AND (claimed_until IS NULL OR claimed_until < ?)"
        # PostgreSQL re-checks the outer condition on rows another worker claimed meanwhile: each row goes to one.
        async with self._write(None) as conn:
            return await conn.fetch_all(
                f"UPDATE webhook_deliveries SET claimed_until = ? WHERE id IN (SELECT d.id FROM webhook_deliveries d"
                f" JOIN webhook_endpoints e ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id WHERE d.{free}"
                " AND d.next_attempt_at <= ? AND e.state = 'enabled' ORDER BY d.next_attempt_at LIMIT ?)"
                f" AND {free} RETURNING *",
                claimed_until,
                now,
                now,
                limit,
                now,
            )

    async def seats_held(self, now: int) -> dict[str, int]:
        by_policy = (
            "JOIN licenses l ON l.tenant_id = s.tenant_id AND l.id = s.license_id"
            " JOIN policies p ON p.tenant_id = l.tenant_id AND p.id = l.policy_id"
        )
        async with self._read() as conn:
            rows = await conn.fetch_all(
                f"SELECT p.backend AS backend, count(*) AS seats FROM activations s {by_policy} WHERE s.state IN ('active',"
                f" 'suspended') OR (s.state = 'withdrawn' AND s.lapses_at > ?) GROUP BY p.backend UNION ALL SELECT p.backend"
                f" AS backend, count(*) AS seats FROM leases s {by_policy} WHERE s.state = 'active' AND s.expires_at > ?"
                " GROUP BY p.backend",
                now,
                now,
            )
        held: dict[str, int] = {}
        for row in rows:
            held[row["backend"]] = held.get(row["backend"], 0) + int(row["seats"])
        return held

    async def webhook_backlog(self) -> int:
        async with self._read() as conn:
            row = await conn.fetch_one("SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'pending'")
            return int(row["n"]) if row is not None else 0

    # --- retention --------------------------------------------------------------------------------------
    @property
    def _skip_locked(self) -> str:
        """What a batch's row selection adds so that pruners in several processes share the rows instead of
        waiting for each other (PostgreSQL; one process writes a SQLite file)."""
        return " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""

    def _delete_found(self, table: str, condition: str) -> str:
        """A statement deleting up to ``?`` rows of ``table`` meeting ``condition`` (its first ``?``), by their physical
        row ids: the rows are found through the index on the condition, then each is fetched straight by its id."""
        if self.dialect == "postgresql":
            return (
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {condition} LIMIT ?"
                f"{self._skip_locked}))"
            )
        return f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {condition} LIMIT ?)"

    async def prune_idempotency_answers(self, before: int, limit: int) -> int:
        return await self._write_one(self._delete_found("idempotency_keys", "created_at < ?"), before, limit)

    async def prune_ended_leases(self, before: int, limit: int) -> int:
        # COALESCE(ended_at, expires_at) is the indexed expression (0010_retention.sql): an ended lease has ended_at,
        # one that ran out unmarked only expires_at (in the past: its seat is not counted any more).
        return await self._write_one(self._delete_found("leases", "COALESCE(ended_at, expires_at) < ?"), before, limit)

    async def prune_expired_portal_sessions(self, before: int, limit: int) -> int:
        return await self._write_one(self._delete_found("portal_sessions", "expires_at < ?"), before, limit)

    async def prune_expired_portal_links(self, before: int, limit: int) -> int:
        return await self._write_one(self._delete_found("portal_tokens", "expires_at < ?"), before, limit)

    async def prune_finished_webhook_deliveries(self, before: int, limit: int) -> int:
        async with self._write(None) as conn:
            finished = await conn.fetch_all(
                "SELECT tenant_id, id FROM webhook_deliveries WHERE state IN ('delivered', 'failed') AND updated_at < ?"
                f" LIMIT ?{self._skip_locked}",
                before,
                limit,
            )
            by_tenant: dict[str, builtins.list[str]] = {}
            for row in finished:
                by_tenant.setdefault(row["tenant_id"], []).append(row["id"])
            # Per tenant, so that the attempts' index (tenant_id, delivery_id) finds them.
            for tenant_id, ids in by_tenant.items():
                marks = ", ".join("?" for _ in ids)
                await conn.execute(
                    f"DELETE FROM webhook_attempts WHERE tenant_id = ? AND delivery_id IN ({marks})", tenant_id, *ids
                )
                await conn.execute(f"DELETE FROM webhook_deliveries WHERE tenant_id = ? AND id IN ({marks})", tenant_id, *ids)
        return len(finished)

    async def get_order_source(self, source_id: str) -> Row | None:
        async with self._read() as conn:
            return await conn.fetch_one("SELECT * FROM order_sources WHERE id = ?", source_id)

    # --- events -----------------------------------------------------------------------------------------
    # Readers of the log link what is queued first, so they see every event committed before they asked.
    async def list_events(self, tenant_id: str, filters: dict[str, Any], after_seq: int | None, limit: int) -> Page:
        await self.chain_events(tenant_id)
        where = {"tenant_id": tenant_id}
        where.update({c: filters[c] for c in ("type", "subject_id", "subject_type") if filters.get(c) is not None})
        return await self._page("events", "seq", where, after_seq, limit)

    async def iter_events(self, tenant_id: str) -> AsyncIterator[Row]:
        await self.chain_events(tenant_id)
        after = 0
        while True:
            async with self._read() as conn:
                rows = await conn.fetch_all(
                    "SELECT * FROM events WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT 500", tenant_id, after
                )
            for row in rows:
                yield row
            if len(rows) < 500:
                return
            after = rows[-1]["seq"]

    async def event_chain_head(self, tenant_id: str) -> Row | None:
        await self.chain_events(tenant_id)
        async with self._read() as conn:
            return await conn.fetch_one("SELECT last_seq, last_hash FROM event_chain WHERE tenant_id = ?", tenant_id)

    async def chain_events(self, tenant_id: str) -> int:
        async with self._read() as conn:
            if await conn.fetch_one("SELECT pos FROM event_queue WHERE tenant_id = ? LIMIT 1", tenant_id) is None:
                return 0
        total = 0
        while True:
            linked = await self._chain_batch(tenant_id, wait=True)
            assert linked is not None  # waited for the chain's head
            total += linked
            if linked < CHAIN_BATCH:
                return total

    async def _chain_or_skip(self, tenant_id: str) -> int | None:
        """The chainer's pass over one tenant: None when another process holds its chain."""
        total = 0
        while True:
            linked = await self._chain_batch(tenant_id, wait=False)
            if linked is None:
                return None if total == 0 else total
            total += linked
            if linked < CHAIN_BATCH:
                return total

    async def _queued_tenants(self) -> builtins.list[str]:
        async with self._read() as conn:
            return [row["tenant_id"] for row in await conn.fetch_all("SELECT DISTINCT tenant_id FROM event_queue")]

    async def _chain_batch(self, tenant_id: str, *, wait: bool) -> int | None:
        """Link up to :data:`CHAIN_BATCH` of the tenant's queued events in a transaction of its own; how many
        (None: ``wait`` is False and another transaction holds the chain's head)."""
        async with self._timed(self._write(None)) as conn:
            linked = await self._link(conn, tenant_id, [], wait=wait)
        if linked:
            self._linked(linked)
        return None if linked is None else len(linked)

    async def _link_or_queue(self, conn: Connection, tenant_id: str, appended: builtins.list[Row]) -> builtins.list[Row] | None:
        """At the end of a writing transaction: link its events itself if the chain's head is free (never waiting
        for it), else queue them for a chainer (None)."""
        linked = await self._link(conn, tenant_id, appended, wait=False)
        if linked is None:
            await _insert_rows(conn, "event_queue", _QUEUED_COLUMNS, appended)
        return linked

    async def _link(
        self, conn: Connection, tenant_id: str, appended: builtins.list[Row], *, wait: bool
    ) -> builtins.list[Row] | None:
        """In the transaction of ``conn``: lock the tenant's chain head (None if another transaction holds it and
        ``wait`` is False), link up to :data:`CHAIN_BATCH` queued events oldest first and then ``appended``, and
        move the head; the events linked, with their ``seq`` and ``hash``."""
        # The head first: a queue read before it could list events another transaction is linking.
        head = await conn.fetch_one(
            "SELECT last_seq, last_hash FROM event_chain WHERE tenant_id = ?" + self._lock_row(wait), tenant_id
        )
        if head is None:
            if wait or await conn.fetch_one("SELECT 1 FROM tenants WHERE id = ?", tenant_id) is None:
                raise LookupError(f"tenant {tenant_id} has no event chain")
            return None
        # Committed events queued before: taken off the queue and read in one statement (in no particular order).
        queued = await conn.fetch_all(
            "DELETE FROM event_queue WHERE pos IN (SELECT pos FROM event_queue WHERE tenant_id = ? ORDER BY pos LIMIT ?)"
            " RETURNING pos, id, type, subject_type, subject_id, actor, data, created_at",
            tenant_id,
            CHAIN_BATCH,
        )
        if appended and len(queued) == CHAIN_BATCH:
            return None  # more are queued: these queue behind them, for the chainer to link in order
        queued.sort(key=lambda row: int(row["pos"]))
        linked: builtins.list[Row] = []
        seq, previous = int(head["last_seq"]), bytes(head["last_hash"])
        for row in (*queued, *appended):
            seq += 1
            event = {
                "tenant_id": tenant_id,
                "seq": seq,
                **{c: row[c] for c in HASHED_COLUMNS if c not in ("tenant_id", "seq")},
                "prev_hash": previous,
            }
            event["hash"] = previous = event_hash(event)
            linked.append(event)
        if not linked:
            return linked
        await _insert_rows(conn, "events", _EVENT_COLUMNS, linked)
        await conn.execute("UPDATE event_chain SET last_seq = ?, last_hash = ? WHERE tenant_id = ?", seq, previous, tenant_id)
        return linked

    def _linked(self, linked: builtins.list[Row]) -> None:
        """After the commit of a linking: measure the wait and tell the listeners."""
        if self._chain_observer is not None:
            waited = max(0.0, (now_us() - min(int(event["created_at"]) for event in linked)) / 1e6)
            self._chain_observer(len(linked), waited)
        self._tell(self._event_listeners, linked)

    def _lock_row(self, wait: bool) -> str:
        """Lock the row read, for this transaction (SQLite's write transaction holds the whole database)."""
        if self.dialect != "postgresql":
            return ""
        return " FOR UPDATE" if wait else " FOR UPDATE SKIP LOCKED"


class SqlTransaction(Transaction):
    def __init__(self, store: SqlStore, conn: Connection, tenant_id: str) -> None:
        self.store = store
        self.conn = conn
        self.tenant_id = tenant_id
        self.replay: StoredResponse | None = None
        self.answer: StoredResponse | None = None
        self.changed = False  # License Central objects were written: announce it after the commit
        self.appended: list[Row] = []

    def remember(self, status: int, body: str) -> None:
        self.answer = StoredResponse(status, body)

    async def get(self, resource: Resource, object_id: str, *, for_update: bool = False) -> Row | None:
        lock = " FOR UPDATE" if for_update and self.store.dialect == "postgresql" else ""
        return await self.conn.fetch_one(
            f"SELECT * FROM {resource.table} WHERE tenant_id = ? AND id = ?{lock}", self.tenant_id, object_id
        )

    async def find(self, resource: Resource, **columns: Any) -> Row | None:
        clauses = " AND ".join(f"{resource.field(c).name} = ?" for c in columns)
        return await self.conn.fetch_one(
            f"SELECT * FROM {resource.table} WHERE tenant_id = ? AND {clauses} LIMIT 1", self.tenant_id, *columns.values()
        )

    async def select(self, resource: Resource, limit: int = 100, **columns: Any) -> list[Row]:
        clauses = "".join(f" AND {resource.field(c).name} = ?" for c in columns)
        return await self.conn.fetch_all(
            f"SELECT * FROM {resource.table} WHERE tenant_id = ?{clauses} ORDER BY id LIMIT ?",
            self.tenant_id,
            *columns.values(),
            limit,
        )

    async def count_referencing(self, table: str, column: str, object_id: str) -> int:
        row = await self.conn.fetch_one(
            f"SELECT COUNT(*) AS n FROM {table} WHERE tenant_id = ? AND {column} = ?", self.tenant_id, object_id
        )
        return int(row["n"]) if row else 0

    async def _write(self, sql: str, *args: Any, announced: bool = True, returning: bool = False) -> list[Row]:
        """Run a change; with ``returning``, the rows its RETURNING clause returns."""
        self.changed = self.changed or announced
        try:
            if returning:
                return await self.conn.fetch_all(sql, *args)
            await self.conn.execute(sql, *args)
            return []
        except IntegrityViolation as violation:
            if violation.kind == "unique":
                raise ConflictError("an object with these values exists already", code="ALREADY_EXISTS") from None
            raise ConflictError(
                "the object is referenced by others or references a missing one", code="RESOURCE_IN_USE"
            ) from None

    async def insert(self, resource: Resource, row: Row) -> Row:
        full = {"tenant_id": self.tenant_id, **row}
        columns = ", ".join(full)
        await self._write(
            f"INSERT INTO {resource.table} ({columns}) VALUES ({', '.join('?' for _ in full)})",
            *full.values(),
            announced=resource.announced,
        )
        return full

    async def insert_new(self, resource: Resource, row: Row) -> Row | None:
        full = {"tenant_id": self.tenant_id, **row}
        self.changed = self.changed or resource.announced
        # ON CONFLICT DO NOTHING waits for a concurrent insert of the same key and then does nothing if it committed.
        inserted = await self.conn.fetch_one(
            f"INSERT INTO {resource.table} ({', '.join(full)}) VALUES ({', '.join('?' for _ in full)})"
            " ON CONFLICT DO NOTHING RETURNING id",
            *full.values(),
        )
        return full if inserted is not None else None

    async def update(self, resource: Resource, object_id: str, changes: Row) -> Row | None:
        changes = {**changes, "updated_at": now_us()}
        assignments = ", ".join(f"{column} = ?" for column in changes)
        # Every change of a license counts up its generation, and a change of a policy those of its licenses:
        # what devices are pushed (GET /v1/updates), whoever made the change (the admin API, a backend).
        if resource.name == "license":
            assignments += ", generation = generation + 1"
        elif resource.name == "policy":
            await self.advance_license_generations(policy_id=object_id)
        updated = await self._write(
            f"UPDATE {resource.table} SET {assignments} WHERE tenant_id = ? AND id = ? RETURNING *",
            *changes.values(),
            self.tenant_id,
            object_id,
            announced=resource.announced,
            returning=True,
        )
        return updated[0] if updated else None

    async def advance_license_generations(self, *, policy_id: str | None = None, product_id: str | None = None) -> None:
        column, value = ("policy_id", policy_id) if policy_id is not None else ("product_id", product_id)
        assert value is not None, "name the policy or the product"
        await self._write(
            f"UPDATE licenses SET generation = generation + 1, updated_at = ? WHERE tenant_id = ? AND {column} = ?",
            now_us(),
            self.tenant_id,
            value,
        )

    async def delete(self, resource: Resource, object_id: str) -> bool:
        if await self.get(resource, object_id) is None:
            return False
        await self._write(
            f"DELETE FROM {resource.table} WHERE tenant_id = ? AND id = ?",
            self.tenant_id,
            object_id,
            announced=resource.announced,
        )
        return True

    async def append_event(self, event_type: str, subject_type: str, subject_id: str, actor: str, data: dict[str, Any]) -> Row:
        # Kept until the end of the transaction, which links it or, when another transaction holds the chain's
        # head, queues it: never waiting for another transaction (docs/architecture.md#the-event-chain).
        event = {
            "tenant_id": self.tenant_id,
            "id": new_id("evt"),
            "type": event_type,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "actor": actor,
            "data": canonical_json(data),
            "created_at": now_us(),
        }
        self.appended.append(event)
        return event

    async def events_after(self, after_seq: int, limit: int) -> list[Row]:
        return await self.conn.fetch_all(
            "SELECT * FROM events WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?", self.tenant_id, after_seq, limit
        )

    async def add_usage(
        self, license_id: str, subject: str, feature: str, period: str, units: int, quota: int | None
    ) -> int | None:
        if quota is not None and units > quota:
            return None
        # One upsert: a first report inserts the total; later ones add to it only while the quota holds. The
        # conflicting row's lock makes concurrent reports wait, and each re-checks the quota on the newest total.
        limit = "" if quota is None else " WHERE usage_totals.used + excluded.used <= ?"
        row = await self.conn.fetch_one(
            "INSERT INTO usage_totals (tenant_id, license_id, feature, period, subject, used, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, license_id, feature, period)"
            " DO UPDATE SET used = usage_totals.used + excluded.used, updated_at = excluded.updated_at"
            f"{limit} RETURNING used",
            self.tenant_id,
            license_id,
            feature,
            period,
            subject,
            units,
            now_us(),
            *(() if quota is None else (quota,)),
        )
        return None if row is None else int(row["used"])

    async def license_activations(self, license_id: str, now: int, replaced_since: int) -> list[Row]:
        return await self.conn.fetch_all(
            "SELECT * FROM activations WHERE tenant_id = ? AND license_id = ? AND (state IN ('active', 'suspended')"
            " OR (state = 'withdrawn' AND lapses_at > ?) OR (state = 'replaced' AND ended_at >= ?)) ORDER BY id",
            self.tenant_id,
            license_id,
            now,
            replaced_since,
        )

    async def expire_leases(self, license_id: str, now: int) -> list[Row]:
        await self.conn.execute(
            "UPDATE leases SET state = 'expired', ended_at = expires_at, updated_at = ? WHERE tenant_id = ? AND license_id = ?"
            " AND state = 'active' AND expires_at <= ?",
            now_us(),
            self.tenant_id,
            license_id,
            now,
        )
        return await self.conn.fetch_all(
            "SELECT * FROM leases WHERE tenant_id = ? AND license_id = ? AND state = 'active' ORDER BY id",
            self.tenant_id,
            license_id,
        )

    async def end_leases(
        self, now: int, state: str, *, license_id: str | None = None, credential_id: str | None = None
    ) -> list[Row]:
        if (license_id is None) == (credential_id is None):
            raise ValueError("end the leases of a license or of a credential")
        column, value = ("license_id", license_id) if license_id is not None else ("credential_id", credential_id)
        where = f"tenant_id = ? AND {column} = ? AND state = 'active'"
        await self.conn.execute(
            f"UPDATE leases SET state = 'expired', ended_at = expires_at, updated_at = ? WHERE {where} AND expires_at <= ?",
            now_us(),
            self.tenant_id,
            value,
            now,
        )
        ended = await self.conn.fetch_all(
            f"UPDATE leases SET state = ?, ended_at = ?, updated_at = ? WHERE {where} RETURNING *",
            state,
            now,
            now_us(),
            self.tenant_id,
            value,
        )
        return sorted(ended, key=lambda row: str(row["id"]))

    async def insert_signing_key(self, kid: str, public_key: bytes, sealed_seed: bytes, created_at: int) -> None:
        self.changed = True
        await self.conn.execute(
            "UPDATE signing_keys SET state = 'retired', retired_at = ? WHERE tenant_id = ? AND state = 'active'",
            created_at,
            self.tenant_id,
        )
        await self._write(
            "INSERT INTO signing_keys (tenant_id, kid, public_key, sealed_seed, state, created_at) VALUES (?, ?, ?, ?, "
            "'active', ?)",
            self.tenant_id,
            kid,
            public_key,
            sealed_seed,
            created_at,
        )

    async def insert_token(self, row: Row) -> None:
        full = {"tenant_id": self.tenant_id, **row}
        await self._write(f"INSERT INTO api_tokens ({', '.join(full)}) VALUES ({', '.join('?' for _ in full)})", *full.values())

    async def revoke_token(self, token_id: str, revoked_at: int) -> Row | None:
        self.changed = True
        await self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL",
            revoked_at,
            self.tenant_id,
            token_id,
        )
        return await self.conn.fetch_one("SELECT * FROM api_tokens WHERE tenant_id = ? AND id = ?", self.tenant_id, token_id)


async def _insert_rows(conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
    """Insert ``rows`` (their ``columns``) with as few statements as the parameter limit allows."""
    per_statement = _PARAMETERS_PER_INSERT // len(columns)
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        values = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * len(chunk))
        await conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}", *(row[c] for row in chunk for c in columns)
        )


def placeholders_to_numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (the SQL here has no ``?`` inside literals)."""
    parts = sql.split("?")
    numbered = [parts[0]]
    for index, part in enumerate(parts[1:], start=1):
        numbered.append(f"${index}{part}")
    return "".join(numbered)


@functools.cache
def _newest_migration() -> int:
    """The newest schema version this code knows."""
    return SqlStore.migrations()[-1][0]


def strip_comments(sql: str) -> str:
    """The SQL of a migration file without its ``--`` comment lines."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def rows_as_dicts(rows: Sequence[Any]) -> list[Row]:
    return [dict(row) for row in rows]
