"""Commands that work on the data directory and the store directly, without a running gateway: ``licensor init``
(and the tenant that ``licensor serve --init-if-empty`` creates), and what they share with ``serve``: the settings
(with the master key loaded), secret files."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import urllib.parse
from dataclasses import replace
from typing import Any

from licensor.cli.config import STORE_SETTINGS, add_setting_options, configuration_of
from licensor.cli.errors import UsageError


def add_parser(commands: Any) -> None:
    """``licensor init``."""
    init = commands.add_parser(
        "init",
        help="create a tenant and its first admin token",
        description="Create a tenant with its signing key and an admin API token. Prints the tenant id and the token "
        "on standard output, once: licensor keeps only the token's hash.",
    )
    add_setting_options(init, STORE_SETTINGS)
    init.add_argument("--name", default="default", help='the tenant\'s name (default "default")')
    init.set_defaults(handler=run_init)


# --- settings and stores ------------------------------------------------------------------------------
def settings_of(args: argparse.Namespace) -> Any:
    """The gateway settings of the command line, the environment and the configuration file, with the master key
    loaded (from LICENSOR_MASTER_KEY, else its file, created when missing), so that every worker uses the same key.

    :raises UsageError: a setting that cannot be used, or a master key that cannot be read, created or decoded."""
    from licensor.central.secrets import load_master_key
    from licensor.errors import LicensorError

    settings = configuration_of(args).settings
    if settings.master_key is not None:
        return settings
    try:
        key = load_master_key(settings.master_key_path)
    except LicensorError as error:
        raise UsageError(error.message) from None
    except OSError as error:
        raise UsageError(f"cannot read or create the master key {settings.master_key_path}: {error.strerror}") from None
    return replace(settings, master_key=key)


def describe_store(url: str) -> str:
    """The store for a log line, without a password."""
    if url.startswith("sqlite:///"):
        return f"SQLite {url[len('sqlite:///') :]}"
    parts = urllib.parse.urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2] or "localhost"  # host:port, or several: h1:p1,h2:p2
    user = f"{parts.username}@" if parts.username else ""
    return f"PostgreSQL {user}{hosts}{parts.path}"


def check_store_url(url: str) -> None:
    """Refuse, before anything starts, a store URL licensor cannot open: an unknown scheme, or PostgreSQL without
    the driver (the extra ``licensor[postgres]``).

    :raises UsageError: what is wrong, and how to mend it."""
    from licensor.store import open_store

    try:
        open_store(url)  # makes the store object only: nothing is opened or connected yet
    except ValueError as error:
        raise UsageError(str(error)) from None


async def open_configured_store(settings: Any) -> Any:
    """The store the settings name, opened (the SQLite file's directory made when missing).

    :raises UsageError: a store URL licensor does not know, or a store that cannot be opened."""
    from licensor.store import open_store

    try:
        store = open_store(settings.store_url)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if store.url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(store.url[len("sqlite:///") :]) or ".", exist_ok=True)
    from licensor.errors import StoreUnavailableError

    try:
        await store.open()
    except (OSError, StoreUnavailableError) as error:  # a file it cannot write, a PostgreSQL it cannot reach
        raise UsageError(f"cannot open the store ({describe_store(settings.store_url)}): {error}") from None
    return store


def refuse_newer_schema(settings: Any) -> None:
    """Open the store once (migrating it, as the gateway would) to refuse one a newer licensor migrated.

    A store that cannot be reached now is left to the gateway, which reports it (and whose workers retry).

    :raises UsageError: the store's schema is newer than this licensor's; the message names both versions."""
    from licensor.errors import SchemaTooNewError, StoreUnavailableError

    async def check() -> None:
        try:
            store = await open_configured_store(settings)
        except UsageError:
            return
        await store.close()

    try:
        asyncio.run(check())
    except SchemaTooNewError as error:
        raise UsageError(f"{describe_store(settings.store_url)}: {error.message}") from None
    except StoreUnavailableError:
        return


async def create_tenant(settings: Any, name: str, *, only_if_empty: bool) -> tuple[str, str] | None:
    """A new tenant (id, admin token); None when ``only_if_empty`` and the store has a tenant already."""
    from licensor.central.secrets import Secrets
    from licensor.central.tenants import create_tenant as create

    store = await open_configured_store(settings)
    try:
        if only_if_empty and await store.list_tenants():
            return None
        created = await create(store, Secrets(settings.master_key), name)
    finally:
        await store.close()
    return created.tenant_id, created.admin_token


def write_secret_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (never readable by others, not even for a moment)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# --- init ---------------------------------------------------------------------------------------------
def run_init(args: argparse.Namespace) -> int:
    """``licensor init``: a new tenant; its id and admin token on standard output, once."""
    settings = settings_of(args)
    created = asyncio.run(create_tenant(settings, args.name, only_if_empty=False))
    assert created is not None
    tenant_id, token = created
    print(f"tenant_id: {tenant_id}")
    print(f"admin_token: {token}")
    print("The admin token is shown only now: licensor keeps just its hash.", file=sys.stderr)
    return 0
