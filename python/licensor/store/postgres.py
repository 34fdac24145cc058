"""The multi-instance store: PostgreSQL through an asyncpg pool.

Several gateway processes and hosts share one database. Writes that must not interleave take locks inside
their transaction: the event chain head's row lock, and a transaction-scoped advisory lock per
Idempotency-Key, so concurrent repeats of one request wait for the first and replay its answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from licensor.errors import StoreUnavailableError
from licensor.store.sql import Connection, IntegrityViolation, SqlStore, placeholders_to_numbered, strip_comments

# Serialises migrations of processes starting together (an arbitrary constant of this project).
_MIGRATION_LOCK = 0x6C6963656E736F72


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


class PostgresStore(SqlStore):
    dialect = "postgresql"
    blob_type = "BYTEA"

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 20) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None
        self._sizes = (min_size, max_size)

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=self._sizes[0], max_size=self._sizes[1])
        except (OSError, asyncpg.PostgresError) as error:
            raise StoreUnavailableError(f"cannot connect to PostgreSQL: {error}") from None
        async with self._write(None) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(?)", _MIGRATION_LOCK)
            await self._migrate(conn)

    async def close(self) -> None:
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
            async with self._require_pool().acquire() as conn:
                yield _PostgresConnection(conn)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as error:
            raise StoreUnavailableError(f"PostgreSQL is unavailable: {error}") from None

    @asynccontextmanager
    async def _write(self, lock_key: str | None) -> AsyncIterator[Connection]:
        try:
            async with self._require_pool().acquire() as conn, conn.transaction():
                wrapped = _PostgresConnection(conn)
                if lock_key is not None:
                    await wrapped.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", lock_key)
                yield wrapped
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as error:
            raise StoreUnavailableError(f"PostgreSQL is unavailable: {error}") from None
