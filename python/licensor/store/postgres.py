"""The multi-instance store: PostgreSQL through an asyncpg pool.

Several gateway processes and hosts share one database. Writes that must not interleave take locks inside
their transaction: a transaction-scoped advisory lock per Idempotency-Key, so concurrent repeats of one request
wait for the first and replay its answer, and the row locks of what they change. The event chain's head is
locked only with SKIP LOCKED: a writer that finds it taken queues its events for a chainer instead of waiting.

Committed changes are announced to every process with ``NOTIFY licensor_changes, '<tenant id>'`` inside the
changing transaction (PostgreSQL delivers it at commit, never for a rollback); each store keeps one connection
that LISTENs and tells its listeners. While that connection is down, :attr:`announcements_live` is False and
it reconnects at once and then every :data:`RECONNECT_SECONDS`; on reconnecting it tells its listeners that
anything may have changed.

The URL may name several hosts (``postgresql://user@h1:5432,h2:5432/db?target_session_attrs=read-write``):
every new connection, of the pool and of the LISTEN connection, tries them in order and takes the first that
accepts writes, so after a standby is promoted the store finds it by itself. Waits are bounded: connecting takes
at most :data:`CONNECT_TIMEOUT_SECONDS` per host, a statement :data:`STATEMENT_TIMEOUT_SECONDS`, waiting for a
pooled connection :data:`ACQUIRE_TIMEOUT_SECONDS`; a database that cannot be reached, or refuses, is
:class:`~licensor.errors.StoreUnavailableError` (STORE_UNAVAILABLE, 503 with ``Retry-After``), never a hang.

While the database is known to be unreachable (a connection failed and the LISTEN connection cannot reconnect),
:attr:`stale_cache_allowed` lets caches answer from what they hold, for at most :data:`OUTAGE_CACHE_SECONDS`:
no change can be committed through this database that this process could have heard of, and on reconnecting
every cached entry is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
CONNECT_TIMEOUT_SECONDS = 3.0
"""At most this long to connect to one host of the URL (TCP, TLS, authentication, the read-write test)."""
STATEMENT_TIMEOUT_SECONDS = 15.0
"""At most this long for one statement, COMMIT included (a commit waiting for a synchronous standby that is gone
is cut off: the client is told STORE_UNAVAILABLE, the change is not acknowledged)."""
MIGRATION_TIMEOUT_SECONDS = 3600.0
"""At most this long for one statement of a migration (an index built over a large table), or for the wait of a
process starting while another migrates."""
OUTAGE_CACHE_SECONDS = 60.0
"""How long caches may answer from what they hold while the database cannot be reached."""

# What says the database cannot be reached or cannot serve now (a server stopping, starting or in recovery,
# no host accepting writes, too many connections, a connection cut): STORE_UNAVAILABLE, never a 500.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.TargetServerAttributeNotMatched,
)

log = logging.getLogger("licensor.store")


def _one_line_when_unreachable(record: logging.LogRecord) -> bool:
    """asyncpg's pool logs each failed attempt to restore its connection floor with a traceback: while the
    database is away that is expected, so it becomes one line naming the cause."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, (*_UNREACHABLE, TimeoutError)):
        record.msg, record.args, record.exc_info, record.exc_text = f"{record.getMessage()}: {error}", (), None, None
    return True


logging.getLogger("asyncpg.pool").addFilter(_one_line_when_unreachable)


class _PostgresConnection(Connection):
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.timeout: float | None = None  # None: STATEMENT_TIMEOUT_SECONDS (the pool's command_timeout)

    async def fetch_all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        try:
            rows = await self.conn.fetch(placeholders_to_numbered(sql), *args, timeout=self.timeout)
        except asyncpg.UniqueViolationError as error:
            raise IntegrityViolation("unique", str(error)) from None
        except asyncpg.ForeignKeyViolationError as error:
            raise IntegrityViolation("foreign_key", str(error)) from None
        return [dict(row) for row in rows]

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch_all(sql, *args)

    async def execute_counted(self, sql: str, *args: Any) -> int:
        try:
            status = await self.conn.execute(placeholders_to_numbered(sql), *args, timeout=self.timeout)
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
        self._listener_down = asyncio.Event()  # wakes the LISTEN loop at once when its connection is lost
        self._unreachable_since: float | None = None
        self._listen_failing = False

    @property
    def announcements_live(self) -> bool:
        return self._listening.is_set()

    @property
    def stale_cache_allowed(self) -> bool:
        since = self._unreachable_since
        return since is not None and not self._listening.is_set() and time.monotonic() - since < OUTAGE_CACHE_SECONDS

    def _unreachable(self, error: BaseException) -> StoreUnavailableError:
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
        if isinstance(error, TimeoutError):
            return StoreUnavailableError("PostgreSQL did not answer in time")
        return StoreUnavailableError(f"PostgreSQL is unavailable: {error}")

    async def _announce_before_commit(self, conn: Connection, tenant_id: str) -> None:
        await conn.execute("SELECT pg_notify(?, ?)", CHANNEL, tenant_id)

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._announce(payload)

    def _listener_lost(self, connection: Any) -> None:
        # Caches stop serving at once (announcements_live is False) but keep their entries: if the database
        # turns out to be unreachable they may answer from them for a while (stale_cache_allowed); the
        # reconnection drops them all.
        self._listening.clear()
        self._unreachable_since = None  # stale answers only once a failure after this loss says the database is away
        self._listener_down.set()

    async def _listen(self) -> None:
        """Keep one LISTENing connection, reconnecting while the store is open: at once when it is lost, then
        every :data:`RECONNECT_SECONDS`."""
        while True:
            if self._listener is None or self._listener.is_closed():
                self._listening.clear()
                self._listener_down.clear()
                try:
                    connection = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_SECONDS)
                    try:
                        connection.add_termination_listener(self._listener_lost)
                        await connection.add_listener(CHANNEL, self._notified)
                    except BaseException:
                        connection.terminate()
                        raise
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # the loop must outlive any error: it is the caches' only way back
                    if isinstance(error, (*_UNREACHABLE, TimeoutError)) and self._unreachable_since is None:
                        self._unreachable_since = time.monotonic()
                    if not self._listen_failing:  # once per outage, not every attempt
                        log.warning("cannot listen for changes (caches answer only what they hold until it can): %s", error)
                    self._listen_failing = True
                else:
                    if self._listen_failing:
                        log.info("listening for changes again: every cached entry dropped")
                    self._listen_failing = False
                    if self._listener is not None:
                        self._listener.remove_termination_listener(self._listener_lost)
                    self._listener = connection
                    self._unreachable_since = None
                    self._listening.set()
                    self._announce(None)  # changes made while nobody listened are unknown
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._listener_down.wait(), timeout=RECONNECT_SECONDS)

    async def open(self, migrate: bool = True) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                timeout=CONNECT_TIMEOUT_SECONDS,
                command_timeout=STATEMENT_TIMEOUT_SECONDS,
            )
        except (asyncpg.InterfaceError, ValueError):  # a URL it cannot read; its text may quote the password
            raise StoreUnavailableError("cannot connect to PostgreSQL: the URL cannot be read") from None
        except (*_UNREACHABLE, TimeoutError, asyncpg.PostgresError) as error:
            raise StoreUnavailableError(f"cannot connect to PostgreSQL: {error}") from None
        async with self._write(None) as conn:
            assert isinstance(conn, _PostgresConnection)
            conn.timeout = MIGRATION_TIMEOUT_SECONDS  # a migration of a large database, or waiting for another's
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
        await conn.conn.execute(strip_comments(sql), timeout=conn.timeout)

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailableError("the store is not open")
        return self._pool

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Connection]:
        try:
            async with self._require_pool().acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as conn:
                yield _PostgresConnection(conn)
        except TimeoutError as error:  # the pool exhausted, or a statement cut off
            raise self._unreachable(error) if self._unreachable_since is not None else _busy() from None
        except _UNREACHABLE as error:
            raise self._unreachable(error) from None
        self._unreachable_since = None

    @asynccontextmanager
    async def _write(self, lock_key: str | None) -> AsyncIterator[Connection]:
        try:
            async with self._require_pool().acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as conn, conn.transaction():
                wrapped = _PostgresConnection(conn)
                if lock_key is not None:
                    await wrapped.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", lock_key)
                yield wrapped
        except TimeoutError as error:
            raise self._unreachable(error) if self._unreachable_since is not None else _busy() from None
        except _UNREACHABLE as error:
            raise self._unreachable(error) from None
        self._unreachable_since = None


def _busy() -> StoreUnavailableError:
    return StoreUnavailableError(
        f"PostgreSQL did not answer within {STATEMENT_TIMEOUT_SECONDS:g} s, or every connection stayed busy "
        f"for {ACQUIRE_TIMEOUT_SECONDS:g} s"
    )
