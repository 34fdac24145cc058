"""Copy every row of one store into another, empty one: backups, restores and moving from SQLite to PostgreSQL.

The copy reads the source in one consistent snapshot and writes the target in one transaction, table by table
(parents before the tables whose foreign keys name them), every column as it is: ids, the event chain's
hashes, sealed secrets, JSON text and times in microseconds. Both stores are opened first, so both are
migrated to this licensor's schema; the copy refuses stores at different schema versions, tables or columns
one side lacks, and a target that holds any row. On PostgreSQL, sequences behind serial or identity columns are
moved past the values copied. Before it commits, it reads the target back and compares
each table's row count and a digest of its rows with the source's, so a commit means a faithful copy.

Tables and columns come from the databases' catalogs, never from a request: a table a later migration adds is
copied without a change here.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from licensor.errors import LicensorError
from licensor.store.base import Row
from licensor.store.sql import Connection, SqlStore

BATCH_ROWS = 1_000
"""Rows read from the source per query (keyset pages along the primary key)."""
MAX_PARAMETERS = 900
"""Values per INSERT statement (below SQLite's oldest limit of 999 parameters)."""
BOOKKEEPING_TABLES = frozenset({"schema_migrations"})
"""Tables each store fills by itself when it is opened (its migrations): compared, not copied."""
DIGEST_MODULUS = 2**256


class TransferError(LicensorError):
    """The copy was refused or failed; nothing was written to the target. The message names tables and
    columns, never values."""

    code = "TRANSFER_REFUSED"
    http_status = 409


@dataclass(frozen=True)
class Table:
    """A table of the source as its catalog describes it."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # the primary key's columns, in order: the copy pages along it (none: read at once)
    parents: frozenset[str]  # the tables its foreign keys reference


@dataclass
class TransferReport:
    """What a copy did: rows per table (equal on both sides, and equal digests), in the order copied."""

    schema_version: int
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


async def transfer(source: SqlStore, target: SqlStore, *, batch_rows: int = BATCH_ROWS) -> TransferReport:
    """Copy every row of the open ``source`` into the open, empty ``target``, in one transaction on the target.

    :raises TransferError: the stores are at different schema versions or have different tables or columns,
        the target holds a row, a value does not fit the target's column, or the copy read back differs.
    :raises StoreUnavailableError: a database failed meanwhile (nothing was committed).
    """
    async with _snapshot(source) as reading:
        source_version = await _schema_version(reading)
        tables = _in_dependency_order(await _describe(reading, source.dialect))
        async with target._write(None) as writing:
            target_version = await _schema_version(writing)
            if target_version != source_version:
                raise TransferError(
                    f"the source's schema is at version {source_version} and the target's at {target_version}: "
                    "open both with the same licensor first",
                    code="SCHEMA_MISMATCH",
                )
            await _refuse_differences(tables, await _describe(writing, target.dialect))
            occupied = [table.name for table in tables if await writing.fetch_one(f"SELECT 1 AS found FROM {table.name} LIMIT 1")]
            if occupied:
                raise TransferError(
                    f"the target already holds data (in {', '.join(occupied)}): copy only into an empty database",
                    code="TARGET_NOT_EMPTY",
                )
            report = TransferReport(source_version)
            for table in tables:
                count, digest = 0, 0
                async for rows in _pages(reading, table, batch_rows):
                    await _insert(writing, table, rows)
                    count += len(rows)
                    digest = (digest + _digest(table, rows)) % DIGEST_MODULUS
                copied, copied_digest = await _read_back(writing, table, batch_rows)
                if (copied, copied_digest) != (count, digest):
                    raise TransferError(
                        f"{table.name} reads back differently from the target ({copied} rows of {count}, or other "
                        "values): the target's types do not keep them"
                    )
                report.rows[table.name] = count
            if target.dialect == "postgresql":
                await _advance_sequences(writing)
    return report


# --- reading ------------------------------------------------------------------------------------------------
@asynccontextmanager
async def _snapshot(store: SqlStore) -> AsyncIterator[Connection]:
    """A connection reading ``store`` in one consistent snapshot (writers may go on meanwhile)."""
    begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if store.dialect == "postgresql" else "BEGIN"
    async with store._read() as conn:
        await conn.execute(begin)
        try:
            yield conn
        finally:
            await conn.execute("ROLLBACK")  # it only read


async def _schema_version(conn: Connection) -> int:
    row = await conn.fetch_one("SELECT MAX(version) AS version FROM schema_migrations")
    return int(row["version"]) if row is not None and row["version"] is not None else 0


async def _describe(conn: Connection, dialect: str) -> dict[str, Table]:
    """The store's tables (but its bookkeeping), from its catalog."""
    if dialect == "postgresql":
        return await _describe_postgres(conn)
    names = [row["name"] for row in await conn.fetch_all("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    tables = {}
    for name in names:
        if name.startswith("sqlite_") or name in BOOKKEEPING_TABLES:
            continue
        info = await conn.fetch_all(f"PRAGMA table_info({name})")
        key = tuple(row["name"] for row in sorted((row for row in info if row["pk"]), key=lambda row: row["pk"]))
        parents = {row["table"] for row in await conn.fetch_all(f"PRAGMA foreign_key_list({name})")}
        tables[name] = Table(name, tuple(row["name"] for row in info), key, frozenset(parents - {name}))
    return tables


async def _describe_postgres(conn: Connection) -> dict[str, Table]:
    columns = await conn.fetch_all(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c JOIN information_schema.tables t "
        "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, c.ordinal_position"
    )
    keys = await conn.fetch_all(
        "SELECT cl.relname AS table_name, a.attname AS column_name FROM pg_index i "
        "JOIN pg_class cl ON cl.oid = i.indrelid JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indisprimary AND cl.relnamespace = current_schema()::regnamespace "
        "ORDER BY cl.relname, array_position(i.indkey::int2[], a.attnum)"
    )
    references = await conn.fetch_all(
        "SELECT child.relname AS child, parent.relname AS parent FROM pg_constraint f "
        "JOIN pg_class child ON child.oid = f.conrelid JOIN pg_class parent ON parent.oid = f.confrelid "
        "WHERE f.contype = 'f' AND child.relnamespace = current_schema()::regnamespace"
    )
    names: dict[str, list[str]] = {}
    for row in columns:
        names.setdefault(row["table_name"], []).append(row["column_name"])
    tables = {}
    for name, table_columns in names.items():
        if name in BOOKKEEPING_TABLES:
            continue
        key = tuple(row["column_name"] for row in keys if row["table_name"] == name)
        parents = {row["parent"] for row in references if row["child"] == name} - {name}
        tables[name] = Table(name, tuple(table_columns), key, frozenset(parents))
    return tables


async def _refuse_differences(tables: Sequence[Table], target: dict[str, Table]) -> None:
    source_names = {table.name for table in tables}
    if source_names != set(target):
        missing, extra = sorted(source_names - set(target)), sorted(set(target) - source_names)
        raise TransferError(
            f"the stores' tables differ (only in the source: {missing}; only in the target: {extra})", code="SCHEMA_MISMATCH"
        )
    for table in tables:
        if set(table.columns) != set(target[table.name].columns):
            raise TransferError(f"the stores' columns of {table.name} differ", code="SCHEMA_MISMATCH")


def _in_dependency_order(tables: dict[str, Table]) -> list[Table]:
    """The tables, each after every table its foreign keys reference (then by name, so the order is stable)."""
    ordered: list[Table] = []
    placed: set[str] = set()
    waiting = sorted(tables)
    while waiting:
        ready = [name for name in waiting if tables[name].parents <= placed]
        if not ready:
            raise TransferError(f"the foreign keys of {', '.join(waiting)} reference each other or a table not copied")
        for name in ready:
            ordered.append(tables[name])
            placed.add(name)
        waiting = [name for name in waiting if name not in placed]
    return ordered


async def _pages(conn: Connection, table: Table, batch_rows: int) -> AsyncIterator[list[Row]]:
    """The table's rows in pages along its primary key (each page starts after the last key of the one before)."""
    columns = ", ".join(table.columns)
    if not table.key:  # nothing to page by (licensor's own tables all have a key): the table in one read
        rows = await conn.fetch_all(f"SELECT {columns} FROM {table.name}")
        if rows:
            yield rows
        return
    order = ", ".join(table.key)
    after: tuple[Any, ...] | None = None
    while True:
        if after is None:
            rows = await conn.fetch_all(f"SELECT {columns} FROM {table.name} ORDER BY {order} LIMIT ?", batch_rows)
        else:
            bound = ", ".join("?" for _ in table.key)
            rows = await conn.fetch_all(
                f"SELECT {columns} FROM {table.name} WHERE ({order}) > ({bound}) ORDER BY {order} LIMIT ?",
                *after,
                batch_rows,
            )
        if not rows:
            return
        yield rows
        if len(rows) < batch_rows:
            return
        after = tuple(rows[-1][column] for column in table.key)


async def _read_back(conn: Connection, table: Table, batch_rows: int) -> tuple[int, int]:
    """(rows, digest) of the table as the target now holds it, in the copying transaction."""
    count, digest = 0, 0
    async for rows in _pages(conn, table, batch_rows):
        count += len(rows)
        digest = (digest + _digest(table, rows)) % DIGEST_MODULUS
    return count, digest


# --- writing --------------------------------------------------------------------------------------------
async def _insert(conn: Connection, table: Table, rows: list[Row]) -> None:
    per_statement = max(1, MAX_PARAMETERS // len(table.columns))
    one_row = "(" + ", ".join("?" for _ in table.columns) + ")"
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        values = [_portable(row[column]) for row in chunk for column in table.columns]
        sql = f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES {', '.join([one_row] * len(chunk))}"
        try:
            await conn.execute(sql, *values)
        except LicensorError:
            raise
        except Exception as error:  # a value the target's column type refuses; the message names no value
            raise TransferError(f"the target refused a row of {table.name}: {type(error).__name__}") from None


async def _advance_sequences(conn: Connection) -> None:
    """Move each sequence behind a serial or identity column past the largest value copied, so that rows the
    gateway adds later do not collide with copied ones (the copy wrote the column's values itself)."""
    owned = await conn.fetch_all(
        "SELECT c.relname AS table_name, a.attname AS column_name, "
        "pg_get_serial_sequence(quote_ident(c.relname), a.attname) AS sequence FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = current_schema()::regnamespace "
        "AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped "
        "AND pg_get_serial_sequence(quote_ident(c.relname), a.attname) IS NOT NULL"
    )
    for row in owned:
        await conn.execute(
            f"SELECT setval(?, COALESCE((SELECT MAX({row['column_name']}) FROM {row['table_name']}), 0) + 1, false)",
            row["sequence"],
        )


def _portable(value: Any) -> Any:
    """A value as both drivers take it (bytes for BLOB and BYTEA, int for integers)."""
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _digest(table: Table, rows: list[Row]) -> int:
    """The sum of the rows' hashes (independent of order: the stores sort text differently)."""
    total = 0
    for row in rows:
        canonical = orjson.dumps([_comparable(row[column]) for column in table.columns])
        total += int.from_bytes(hashlib.sha256(canonical).digest(), "big")
    return total % DIGEST_MODULUS


def _comparable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": bytes(value).hex()}
    return _portable(value)
