"""Upgrades: a licensor never runs on, nor changes, a database that a newer licensor migrated (docs/operations.md).

Each test gets a store of its own (a new SQLite file, a new PostgreSQL database on the session's server): a
version from the future in the session's shared database would stop every other test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from licensor.errors import SchemaTooNewError
from licensor.store import open_store
from licensor.store.sql import SqlStore
from licensor.testing import ThrowawayPostgres, free_port

pytestmark = pytest.mark.server


@pytest.fixture(params=("sqlite", "postgresql"))
def own_store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A new, empty store of each kind for this test alone."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'licensor.db'}"
    server: ThrowawayPostgres = request.getfixturevalue("licensor_postgres")
    return server.create_database()


async def _versions(store_url: str, newer: int | None = None) -> list[int]:
    """The versions the store's schema_migrations holds (after adding ``newer``, as a newer licensor would)."""
    store = open_store(store_url)
    await store.open()
    try:
        assert isinstance(store, SqlStore)
        async with store._write(None) as conn:
            if newer is not None:
                await conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", newer)
            return [row["version"] for row in await conn.fetch_all("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await store.close()


async def test_a_store_migrated_by_a_newer_licensor_is_refused_naming_both_versions(own_store_url: str, tmp_path: Any) -> None:
    newest = SqlStore.migrations()[-1][0]
    versions = await _versions(own_store_url, newer=newest + 1)
    assert versions[-2:] == [newest, newest + 1]

    for attempt in range(2):  # and again: the refusal changed nothing
        store = open_store(own_store_url)
        with pytest.raises(SchemaTooNewError) as refused:
            await store.open()
        await store.close()
        assert refused.value.code == "SCHEMA_TOO_NEW"
        assert f"at version {newest + 1}, newer than this licensor knows (version {newest};" in refused.value.message, attempt

    port = ("--port", str(free_port()))
    serve = subprocess.run(
        [sys.executable, "-m", "licensor.cli", "serve", "--database-url", own_store_url, "--data-dir", str(tmp_path), *port],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LICENSOR_") or k == "LICENSOR_PURE_PYTHON"},
    )
    kind = "SQLite" if own_store_url.startswith("sqlite") else "PostgreSQL"
    assert serve.returncode == 2, serve.stderr
    assert serve.stderr.startswith(f"error: {kind} "), serve.stderr
    assert f"newer than this licensor knows (version {newest};" in serve.stderr and "Traceback" not in serve.stderr


async def test_a_backup_never_migrates_the_store_it_reads(own_store_url: str, tmp_path: Any) -> None:
    newest = SqlStore.migrations()[-1][0]
    store = open_store(own_store_url)
    await store.open()
    try:
        assert isinstance(store, SqlStore)
        async with store._write(None) as conn:  # as the older licensor that still serves it left it
            await conn.execute("DELETE FROM schema_migrations WHERE version = ?", newest)
    finally:
        await store.close()
    command = ("backup", "--database-url", own_store_url, "--data-dir", str(tmp_path), "--out", str(tmp_path / "backup.db"))
    backup = subprocess.run(
        [sys.executable, "-m", "licensor.cli", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LICENSOR_") or k == "LICENSOR_PURE_PYTHON"},
    )
    assert backup.returncode == 1 and backup.stderr.startswith("error: SCHEMA_TOO_OLD: "), backup.stderr
    assert f"older than this licensor's (version {newest})" in backup.stderr and not (tmp_path / "backup.db").exists()
    assert newest not in await _versions_without_migrating(own_store_url)  # nothing was migrated


async def _versions_without_migrating(store_url: str) -> list[int]:
    if store_url.startswith("sqlite:///"):
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(store_url[len("sqlite:///") :])) as db:
            return [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
    import asyncpg

    connection = await asyncpg.connect(store_url)
    try:
        return [row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")]
    finally:
        await connection.close()
