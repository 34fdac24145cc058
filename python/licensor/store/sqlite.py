"""The embedded default store: one SQLite file in WAL mode.

Writes take ``BEGIN IMMEDIATE`` so that concurrent writers (other processes included) wait for the write
lock, up to the busy timeout, instead of failing halfway; in this process they queue on one writer
connection. Reads use a second connection and see committed data only.

Checkpoints (copying the WAL back into the database file, with its fsyncs) run on a third connection of their own,
every :data:`CHECKPOINT_SECONDS`, never inside a writer's commit: SQLite's automatic checkpoint would make the
commit that crosses its threshold, and every writer queued behind it, wait for the disk (tens of milliseconds,
more on a busy disk; the retention pruner's deletes cross it often).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiosqlite

from licensor.errors import StoreFullError, StoreUnavailableError
from licensor.store.sql import Connection, IntegrityViolation, SqlStore, strip_comments

BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_SECONDS = 0.5

log = logging.getLogger("licensor.store")


class _SqliteConnection(Connection):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def fetch_all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        try:
            async with self.db.execute(sql, args) as cursor:
                rows = await cursor.fetchall()
                names = [column[0] for column in cursor.description or ()]
        except sqlite3.IntegrityError as error:
            raise _violation(error) from None
        except sqlite3.OperationalError as error:
            raise _unavailable(error) from None
        return [dict(zip(names, row)) for row in rows]

    async def execute(self, sql: str, *args: Any) -> None:
        await self.execute_counted(sql, *args)

    async def execute_counted(self, sql: str, *args: Any) -> int:
        try:
            async with self.db.execute(sql, args) as cursor:
                return cursor.rowcount
        except sqlite3.IntegrityError as error:
            raise _violation(error) from None
        except sqlite3.OperationalError as error:
            raise _unavailable(error) from None


async def _pragma(db: aiosqlite.Connection, sql: str) -> None:
    # Read the answer to the end: a statement left pending (``journal_mode`` answers a row) holds a read
    # transaction on an old WAL snapshot, and BEGIN IMMEDIATE on that connection then fails at once with
    # "database is locked", without waiting, if another connection has written since.
    async with db.execute(sql) as cursor:
        await cursor.fetchall()


async def _wal_mode(db: aiosqlite.Connection) -> None:
    """Switch the file to WAL. The switch does not wait in the busy handler: while another process or
    connection holds a lock on a new file (opening it together, migrating it), it fails at once with
    "database is locked", so it is retried up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await _pragma(db, "PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise StoreUnavailableError(f"the database is unavailable: {error}") from None
            await asyncio.sleep(0.02)


def _unavailable(error: sqlite3.OperationalError) -> StoreUnavailableError:
    """STORE_FULL when the disk is full (SQLITE_FULL), else STORE_UNAVAILABLE (locked beyond the busy timeout, an I/O
    error): both 503s that may be retried."""
    if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return StoreFullError("the database's disk is full: nothing was written; retry once space is freed")
    return StoreUnavailableError(f"the database is unavailable: {error}")


def _violation(error: sqlite3.IntegrityError) -> IntegrityViolation:
    text = str(error)
    return IntegrityViolation("unique" if "UNIQUE" in text else "foreign_key", text)


class SqliteStore(SqlStore):
    dialect = "sqlite"
    blob_type = "BLOB"
    serial_key_type = "INTEGER PRIMARY KEY"  # the rowid: one more than the largest in the table

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.url = f"sqlite:///{path}"
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self.checkpoints = 0
        """Checkpoints run by this store's own connection."""

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.path, isolation_level=None)  # autocommit: transactions are explicit
        try:
            await _pragma(db, f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await _pragma(db, "PRAGMA foreign_keys = ON")
            await _pragma(db, "PRAGMA synchronous = NORMAL")
        except BaseException:
            await db.close()  # see open()
            raise
        return db

    async def open(self, migrate: bool = True) -> None:
        self._writer = await self._connect()
        try:
            await _wal_mode(self._writer)
            async with self._write(None) as conn:
                await self._migrate(conn, apply=migrate)
            await _pragma(self._writer, "PRAGMA wal_autocheckpoint = 0")  # see the module's description
            self._reader = await self._connect()
            self._checkpointer = await self._connect()
            self._checkpoint_task = asyncio.create_task(self._checkpoints(), name="licensor-sqlite-checkpoints")
            if migrate:  # a store opened only to be read (a backup's source) is not written to
                self._chainer.start()
        except BaseException:
            # Each aiosqlite connection runs a non-daemon thread: left open, it would keep the process alive.
            await self.close()
            raise

    async def close(self) -> None:
        await self._chainer.close()
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._checkpoint_task
            self._checkpoint_task = None
        for db in (self._checkpointer, self._reader, self._writer):
            if db is not None:
                await db.close()
        self._checkpointer = self._reader = self._writer = None

    async def _checkpoints(self) -> None:
        """Copy the WAL into the database file now and then, beside the writers (PASSIVE: it waits for nobody,
        and nobody waits for it); the last connection to close checkpoints what is left."""
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            if self._checkpointer is None:
                return
            try:
                await _pragma(self._checkpointer, "PRAGMA wal_checkpoint(PASSIVE)")
                self.checkpoints += 1
            except sqlite3.Error as error:  # another process's checkpoint, a full disk: the next one tries again
                log.warning("sqlite: a checkpoint failed (%s); trying again", error)

    @property
    def announcements_live(self) -> bool:
        # One process serves a SQLite store (``serve --workers`` needs PostgreSQL), and its own changes are
        # announced as they commit.
        return True

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.fetch_all("SELECT 1")

    async def _execute_script(self, conn: Connection, sql: str) -> None:
        # Statements one by one (executescript would commit the open transaction).
        for statement in strip_comments(sql).split(";"):
            if statement.strip():
                await conn.execute(statement)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Connection]:
        if self._reader is None:
            raise StoreUnavailableError("the store is not open")
        yield _SqliteConnection(self._reader)

    async def _write_one(self, sql: str, *args: Any) -> int:
        # The statement alone is a transaction (autocommit): one call into aiosqlite's thread instead of three, each
        # a wait for the event loop and the thread to take turns while this process holds the write lock.
        if self._writer is None:
            raise StoreUnavailableError("the store is not open")
        async with self._write_lock:
            return await _SqliteConnection(self._writer).execute_counted(sql, *args)

    @asynccontextmanager
    async def _write(self, lock_key: str | None) -> AsyncIterator[Connection]:
        # BEGIN IMMEDIATE already serialises every writer, so lock_key needs nothing more here.
        if self._writer is None:
            raise StoreUnavailableError("the store is not open")
        async with self._write_lock:
            conn = _SqliteConnection(self._writer)
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if self._writer.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
                    await self._writer.execute("ROLLBACK")
                raise
            try:
                await conn.execute("COMMIT")
            except BaseException:
                # A COMMIT refused (a full disk) may leave the transaction open: the next BEGIN would then fail
                # forever ("cannot start a transaction within a transaction"). Nothing of it is kept.
                if self._writer.in_transaction:
                    await self._writer.execute("ROLLBACK")
                raise
