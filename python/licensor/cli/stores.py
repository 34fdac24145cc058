"""Commands that copy a whole store, without a running gateway (see :mod:`licensor.store.transfer`):

``licensor backup --out FILE``          the configured store, read in one snapshot, into a new SQLite file (mode 0600);
``licensor restore --from FILE``        a backup into the configured store, which must be empty;
``licensor migrate-store --from URL --to URL``  one store into another, empty one (SQLite to PostgreSQL).

Each copies every table in one transaction on the target, compares row counts and row digests before it
commits, then verifies every tenant's event chain in the copy. None of them copies the master key: it never
lives in the database. ``restore`` refuses a master key that does not open the backup's signing keys.

Exit codes: 0 copied and verified; 1 refused, nothing written (``error: CODE: message``): TARGET_NOT_EMPTY,
SCHEMA_MISMATCH, SCHEMA_TOO_NEW, SCHEMA_TOO_OLD (backup), MASTER_KEY_MISMATCH, TRANSFER_REFUSED; or copied
faithfully but an event chain does not verify, in the source either (CHAIN_BROKEN: the copy is kept, as
evidence); 2 a usage or environment problem (a file that exists or is missing, a store that cannot be opened).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing, suppress
from dataclasses import dataclass
from typing import Any

from licensor.cli.bootstrap import describe_store
from licensor.cli.config import STORE_SETTINGS, add_setting_options, configuration_of
from licensor.cli.errors import ApiError, UsageError


def add_parsers(commands: Any) -> None:
    """``licensor backup``, ``licensor restore`` and ``licensor migrate-store``."""
    backup = commands.add_parser(
        "backup",
        help="copy the store into a backup file",
        description="Copy every table of the store (read in one consistent snapshot, while the gateway runs) into a "
        "new SQLite file, mode 0600, and verify the copy. The master key is not in it: keep the master key's "
        "copy apart from the backups.",
    )
    add_setting_options(backup, STORE_SETTINGS)
    backup.add_argument("--out", required=True, metavar="FILE", help="the backup file to create (never overwritten)")
    backup.set_defaults(handler=run_backup)

    restore = commands.add_parser(
        "restore",
        help="restore a backup file into an empty store",
        description="Copy a backup made by `licensor backup` into the store, which must hold no data (a new SQLite "
        "file or an empty PostgreSQL database), in one transaction, and verify it. The backup file is not "
        "changed. When the master key (LICENSOR_MASTER_KEY or {data-dir}/master.key) exists, it must open the "
        "backup's signing keys; stop the gateway first.",
    )
    add_setting_options(restore, STORE_SETTINGS)
    restore.add_argument("--from", dest="source", required=True, metavar="FILE", help="the backup file")
    restore.set_defaults(handler=run_restore)

    migrate = commands.add_parser(
        "migrate-store",
        help="copy one store into another, empty one (SQLite to PostgreSQL)",
        description="Copy every table of the store at --from into the empty store at --to (both migrated to this "
        "licensor's schema first) in one transaction on the target, and verify it: row counts, row digests and "
        "every tenant's event chain. Stop the gateway first; keep its master key for the new store.",
    )
    migrate.add_argument("--from", dest="source", required=True, metavar="URL", help="sqlite:///path or postgresql://...")
    migrate.add_argument("--to", dest="target", required=True, metavar="URL", help="sqlite:///path or postgresql://...")
    migrate.set_defaults(handler=run_migrate_store)


# --- commands -------------------------------------------------------------------------------------------
def run_backup(args: argparse.Namespace) -> int:
    """``licensor backup``: the configured store into a new SQLite file."""
    settings = configuration_of(args).settings  # the master key is not made here
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        raise UsageError(f"{args.out} exists: a backup never overwrites a file")
    if not os.path.isdir(os.path.dirname(out)):
        raise UsageError(f"the directory of {args.out} does not exist")
    partial = f"{out}.partial-{os.getpid()}"
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # SQLite keeps the mode it finds
    try:
        copied = asyncio.run(_copy(settings.store_url, f"sqlite:///{partial}", live_source=True))
        with closing(sqlite3.connect(partial)) as db:  # one self-contained file, without -wal and -shm beside it
            db.execute("PRAGMA journal_mode = DELETE").fetchall()
        os.replace(partial, out)  # kept even with a broken chain: evidence of what the store holds
    finally:
        for leftover in (partial, f"{partial}-wal", f"{partial}-shm"):
            with suppress(FileNotFoundError):
                os.unlink(leftover)
    print(f"backed up {describe_store(settings.store_url)} to {args.out}: {copied.summary}")
    print(
        f"The master key is not in the backup: keep a copy of {settings.master_key_path} (or LICENSOR_MASTER_KEY) "
        "apart from it; without it the backup cannot be used.",
        file=sys.stderr,
    )
    _refuse_broken_chains(copied, f"the backup {args.out}")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    """``licensor restore``: a backup into the configured, empty store."""
    settings = configuration_of(args).settings  # the master key is not made here
    _require_backup(args.source)
    master_key = _existing_master_key(settings)
    with tempfile.TemporaryDirectory(prefix="licensor-restore-") as scratch:
        # Opening a store migrates it: work on a copy, so the backup stays as it was made.
        working = os.path.join(scratch, "backup.db")
        shutil.copyfile(args.source, working)
        copied = asyncio.run(_copy(f"sqlite:///{working}", settings.store_url, master_key=master_key))
    print(f"restored {args.source} into {describe_store(settings.store_url)}: {copied.summary}")
    if master_key is None:
        print(
            f"No master key yet: put the master key this backup was made with in {settings.master_key_path} (mode "
            "0600) or LICENSOR_MASTER_KEY before `licensor serve`, which would otherwise make a new one that opens "
            "none of the restored secrets.",
            file=sys.stderr,
        )
    _refuse_broken_chains(copied, "the restored store")
    return 0


def run_migrate_store(args: argparse.Namespace) -> int:
    """``licensor migrate-store``: one store into another, empty one."""
    if args.source == args.target:
        raise UsageError("--from and --to name the same store")
    copied = asyncio.run(_copy(args.source, args.target))
    print(f"copied {describe_store(args.source)} into {describe_store(args.target)}: {copied.summary}")
    _refuse_broken_chains(copied, "the new store")
    return 0


# --- the copy -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Copied:
    """What a copy did, for the command's output."""

    summary: str  # one line: schema version, rows, tables, tenants and what was verified
    broken_chains: list[str]  # "tenant id (where its chain breaks)" of each chain that does not verify


async def _copy(source_url: str, target_url: str, *, master_key: bytes | None = None, live_source: bool = False) -> Copied:
    """Copy, then verify every tenant's event chain in the target. A ``live_source`` (the store a gateway serves,
    backed up) is read as it is, never migrated.

    :raises ApiError: the copy was refused (nothing was written).
    :raises UsageError: a store cannot be opened."""
    from licensor.central.events import verify_chain
    from licensor.errors import SchemaTooNewError
    from licensor.store.transfer import TransferError, transfer

    async with _opened(source_url, migrate=not live_source) as source, _opened(target_url) as target:
        if master_key is not None:
            await _require_master_key(source, master_key)
        try:
            report = await transfer(source, target)
        except (TransferError, SchemaTooNewError) as error:
            raise ApiError(f"{error.code}: {error.message}") from None
        tenants = [row["id"] for row in await target.list_tenants()]
        broken = []
        for tenant_id in tenants:
            verdict = await verify_chain(target, tenant_id)
            if not verdict["valid"]:
                where = verdict["broken"]
                broken.append(f"{tenant_id} (at event {where['seq']}: {where['reason']})")
    counted = f"{len(tenants)} tenant{'' if len(tenants) == 1 else 's'}"
    summary = f"schema version {report.schema_version}, {report.total_rows} rows in {len(report.rows)} tables, {counted}; "
    summary += "row counts and digests match, " + ("every event chain verifies" if not broken else "event chains broken")
    return Copied(summary, broken)


def _refuse_broken_chains(copied: Copied, copy: str) -> None:
    """:raises ApiError: an event chain of the copy does not verify (the copy is faithful: neither does the source's)."""
    if copied.broken_chains:
        raise ApiError(
            f"CHAIN_BROKEN: {copy} is a faithful copy, but the event chain of tenant {'; '.join(copied.broken_chains)} "
            "does not verify, in the source either: its event log was altered (`licensor admin events verify`)"
        )


@asynccontextmanager
async def _opened(url: str, *, migrate: bool = True) -> AsyncIterator[Any]:
    """The store at ``url``, opened (migrated to this licensor's schema; a source, never: it is refused unless it is
    at that schema already, since migrating it would change the store a running gateway serves) and closed
    afterwards.

    :raises ApiError: its schema is newer than this licensor's, or older and ``migrate`` is False.
    :raises UsageError: it cannot be opened."""
    from licensor.errors import SchemaTooNewError, SchemaTooOldError, StoreUnavailableError
    from licensor.store import open_store

    try:
        store = open_store(url)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(url[len("sqlite:///") :]) or ".", exist_ok=True)
    try:
        await store.open(migrate=migrate)
    except (SchemaTooNewError, SchemaTooOldError) as error:
        raise ApiError(f"{error.code}: {describe_store(url)}: {error.message}") from None
    except (StoreUnavailableError, OSError, sqlite3.Error) as error:
        raise UsageError(f"cannot open {describe_store(url)}: {error}") from None
    try:
        yield store
    finally:
        await store.close()


def _require_backup(path: str) -> None:
    """:raises UsageError: ``path`` is missing or not a backup made by ``licensor backup``."""
    if not os.path.isfile(path):
        raise UsageError(f"{path} does not exist")
    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
        if header != b"SQLite format 3\x00":
            raise sqlite3.DatabaseError("not a SQLite file")
        # immutable: read without locks, so nothing (no -shm file) is left beside a backup of a WAL database.
        with closing(sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro&immutable=1", uri=True)) as db:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
        if found is None:
            raise sqlite3.DatabaseError("no schema_migrations table")
    except (OSError, sqlite3.DatabaseError):
        raise UsageError(f"{path} is not a backup made by `licensor backup`") from None


def _existing_master_key(settings: Any) -> bytes | None:
    """The master key the settings give (LICENSOR_MASTER_KEY), else its file's if it exists (never a new one),
    else None.

    :raises UsageError: the file cannot be read or holds no key."""
    from licensor.central.secrets import load_master_key
    from licensor.errors import LicensorError

    if settings.master_key is not None:
        return bytes(settings.master_key)
    if not os.path.exists(settings.master_key_path):
        return None
    try:
        return load_master_key(settings.master_key_path)
    except LicensorError as error:
        raise UsageError(error.message) from None
    except OSError as error:
        raise UsageError(f"cannot read the master key {settings.master_key_path}: {error.strerror}") from None


async def _require_master_key(source: Any, master_key: bytes) -> None:
    """:raises ApiError: ``master_key`` does not open a signing key of the backup."""
    from cryptography.exceptions import InvalidTag

    from licensor.central.secrets import Secrets

    secrets = Secrets(master_key)
    for tenant in await source.list_tenants():
        for key in await source.list_signing_keys(tenant["id"]):
            try:
                secrets.open_seed(tenant["id"], key["kid"], bytes(key["sealed_seed"]))
            except InvalidTag:
                raise ApiError(
                    "MASTER_KEY_MISMATCH: the master key (LICENSOR_MASTER_KEY or {data-dir}/master.key) does not open "
                    "the backup's signing keys: restore with the master key the backup was made with"
                ) from None
