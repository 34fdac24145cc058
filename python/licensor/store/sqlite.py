"""The embedded default store: one SQLite file in WAL mode.

Writes take ``BEGIN IMMEDIATE`` so that concurrent writers (other processes included) wait for the write
lock, up to the busy timeout, instead of failing halfway; in this process they queue on one writer
connection. Reads use a second connection and see committed data only.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from licensor.errors import StoreUnavailableError
from licensor.store.sql import Connection, IntegrityViolation, SqlStore, strip_comments

BUSY_TIMEOUT_MS = 10_000


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
            raise StoreUnavailableError(f"the database is unavailable: {error}") from None
        return [dict(zip(names, row)) for row in rows]

    async def execute(self, sql: str, *args: Any) -> None:
        try:
            await self.db.execute(sql, args)
        except sqlite3.IntegrityError as error:
            raise _violation(error) from None
        except sqlite3.OperationalError as error:
            raise StoreUnavailableError(f"the database is unavailable: {error}") from None


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


def _violation(error: sqlite3.IntegrityError) -> IntegrityViolation:
    text = str(error)
    return IntegrityViolation("unique" if "UNIQUE" in text else "foreign_key", text)


class SqliteStore(SqlStore):
    dialect = "sqlite"
    blob_type = "BLOB"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.url = f"sqlite:///{path}"
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

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

    async def open(self) -> None:
        self._writer = await self._connect()
        try:
            await _wal_mode(self._writer)
            async with self._write(None) as conn:
                await self._migrate(conn)
            self._reader = await self._connect()
        except BaseException:
            # Each aiosqlite connection runs a non-daemon thread: left open, it would keep the process alive.
            await self.close()
            raise

    async def close(self) -> None:
        for db in (self._reader, self._writer):
            if db is not None:
                await db.close()
        self._reader = self._writer = None

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
                await self._writer.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")
