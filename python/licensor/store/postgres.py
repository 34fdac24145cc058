"""The multi-instance store: PostgreSQL through an asyncpg pool.

Several gateway processes and hosts share one database. Writes that must not interleave take locks inside
their transaction: a transaction-scoped advisory lock per Idempotency-Key, so concurrent repeats of one request
wait for the first and replay its answer, and the row locks of what they change. The event chain's head is
locked only with SKIP LOCKED: a writer that finds it taken queues its events for a chainer instead of waiting.

Committed changes are announced to every process with ``NOTIFY licensor_changes, '<tenant id>'`` inside the
changing transaction (PostgreSQL delivers it at commit, never for a rollback); each store keeps one connection
that LISTENs and tells its listeners. While that connection is down, :attr:`announcements_live` is False and
it reconnects; on reconnecting it tells its listeners that anything may have changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg

from licensor.errors import StoreUnavailableError
from licensor.store.sql import Connection, IntegrityViolation, SqlStore, placeholders_to_numbered, strip_comments

# Serialises migrations of processes starting together (an arbitrary constant of this project).
_MIGRATION_LOCK = 0x6C6963656E736F72
CHANNEL = "licensor_changes"
RECONNECT_SECONDS = 0.5
ACQUIRE_TIMEOUT_SECONDS = 10.0  # a pool exhausted that long answers 503 instead of queueing forever

log = logging.getLogger("licensor.store")


class _PostgresConnection(Connection):
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def fetch_all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        try:
            rows = await self.conn.fetch(placeholders_to_numbered(sql), *args)
        except asyncpg.UniqueViolationError as error:
            raise IntegrityViolation("unique", str(error)) from None
        except asyncpg.ForeignKeyViolationError as error:
            raise IntegrityViolation("foreign_key", str(error)) from None
        return [dict(row) for row in rows]

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch_all(sql, *args)

    async def execute_counted(self, sql: str, *args: Any) -> int:
        try:
            status = await self.conn.execute(placeholders_to_numbered(sql), *args)
        except asyncpg.UniqueViolationError as error:
            raise IntegrityViolation("unique", str(error)) from None
        except asyncpg.ForeignKeyViolationError as error:
            raise IntegrityViolation("foreign_key", str(error)) from None
        return int(status.rsplit(" ", 1)[-1])  # "DELETE 250", "UPDATE 3", "INSERT 0 1"


class PostgresStore(SqlStore):
    dialect = "postgresql"
    blob_type = "BYTEA"
    serial_key_type = "BIGSERIAL PRIMARY KEY"

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 20) -> None:
        super().__init__()
        self.url = url
        self._pool: asyncpg.Pool | None = None
        self._sizes = (min_size, max_size)
        self._listener: asyncpg.Connection | None = None
        self._listening = asyncio.Event()
        self._listen_task: asyncio.Task[None] | None = None

    @property
    def announcements_live(self) -> bool:
        return self._listening.is_set()

    async def _announce_before_commit(self, conn: Connection, tenant_id: str) -> None:
        await conn.execute("SELECT pg_notify(?, ?)", CHANNEL, tenant_id)

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._announce(payload)

    def _listener_lost(self, connection: Any) -> None:
        self._listening.clear()
        self._announce(None)

    async def _listen(self) -> None:
        """Keep one LISTENing connection, reconnecting while the store is open."""
        while True:
            if self._listener is None or self._listener.is_closed():
                self._listening.clear()
                try:
                    connection = await asyncpg.connect(self.url)
                    connection.add_termination_listener(self._listener_lost)
                    await connection.add_listener(CHANNEL, self._notified)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    log.warning("cannot listen for changes (caches stay off until it can): %s", error)
                else:
                    self._listener = connection
                    self._listening.set()
                    self._announce(None)  # changes made while nobody listened are unknown
            await asyncio.sleep(RECONNECT_SECONDS)

    async def open(self, migrate: bool = True) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=self._sizes[0], max_size=self._sizes[1])
        except (OSError, asyncpg.PostgresError) as error:
            raise StoreUnavailableError(f"cannot connect to PostgreSQL: {error}") from None
        except (asyncpg.InterfaceError, ValueError):  # a URL it cannot read; its text may quote the password
            raise StoreUnavailableError("cannot connect to PostgreSQL: the URL cannot be read") from None
        async with self._write(None) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(?)", _MIGRATION_LOCK)
            await self._migrate(conn, apply=migrate)
        self._listen_task = asyncio.create_task(self._listen(), name="licensor-store-listen")
        if migrate:  # a store opened only to be read (a backup's source) is not written to
            self._chainer.start()
        with suppress(asyncio.TimeoutError):  # caches simply stay off until it connects
            await asyncio.wait_for(self._listening.wait(), timeout=5)

    async def close(self) -> None:
        await self._chainer.close()
        if self._listen_task is not None:
            self._listen_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._listen_task
            self._listen_task = None
        if self._listener is not None:
            self._listener.remove_termination_listener(self._listener_lost)
            await self._listener.close()
            self._listener = None
            self._listening.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.fetch_all("SELECT 1")

    async def _execute_script(self, conn: Connection, sql: str) -> None:
        assert isinstance(conn, _PostgresConnection)
        await conn.conn.execute(strip_comments(sql))

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailableError("the store is not open")
        return self._pool

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Connection]:
        try:
            async with self._require_pool().acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as conn:
                yield _PostgresConnection(conn)
        except TimeoutError:
            raise StoreUnavailableError("every PostgreSQL connection is busy") from None
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as error:
            raise StoreUnavailableError(f"PostgreSQL is unavailable: {error}") from None

    @asynccontextmanager
    async def _write(self, lock_key: str | None) -> AsyncIterator[Connection]:
        try:
            async with self._require_pool().acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as conn, conn.transaction():
                wrapped = _PostgresConnection(conn)
                if lock_key is not None:
                    await wrapped.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", lock_key)
                yield wrapped
        except TimeoutError:
            raise StoreUnavailableError("every PostgreSQL connection is busy") from None
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as error:
            raise StoreUnavailableError(f"PostgreSQL is unavailable: {error}") from None
