"""The ``licensor`` command: run the gateway, create tenants, and call the admin API.

``licensor serve``  runs the gateway (one process, or N workers on one port with PostgreSQL): :mod:`.serve`;
``licensor init``   creates a tenant with its signing key and an admin token, shown once: :mod:`.bootstrap`;
``licensor config show`` prints the effective configuration (file, environment, flags), without secrets:
                    :mod:`.config`;
``licensor --version`` prints licensor's version, the core in use and the installed backends: :mod:`.version`;
``licensor admin``  calls the admin API of a running gateway, one command per admin operation of licensor and
                    of the installed backends, generated from their declarations: :mod:`.admin`.
``licensor backup``, ``restore``, ``migrate-store``  copy a whole store (backups, SQLite to PostgreSQL): :mod:`.stores`.

Exit codes: 0 success; 1 the API (or the gateway, or a store command) refused: ``error: CODE: message`` on stderr;
2 a usage or environment problem (bad arguments, no token, gateway unreachable, SQLite with --workers).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from licensor.cli import admin, bootstrap, config, serve, stores
from licensor.cli.admin import AdminCommand, admin_commands, admin_operations
from licensor.cli.errors import ApiError, UsageError
from licensor.cli.version import VersionAction

__all__ = ["AdminCommand", "ApiError", "UsageError", "admin_commands", "admin_operations", "build_parser", "main"]


def build_parser(admin_table: Sequence[AdminCommand] | None = None) -> argparse.ArgumentParser:
    """The parser of every ``licensor`` command; the admin commands are ``admin_table`` (default: one per admin
    operation of the installed plugins' gateway, built now).

    :raises Exception: whatever a plugin raises while it is loaded (``admin_table`` None only)."""
    if admin_table is None:
        admin_table = admin_commands(admin_operations())
    parser = argparse.ArgumentParser(
        prog="licensor",
        description="licensor: a self-hosted software-licensing gateway.",
        epilog="`licensor COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action=VersionAction, help="print the version, the core in use and the installed backends")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(commands)
    bootstrap.add_parser(commands)
    config.add_parser(commands)
    admin.add_parser(commands, admin_table)
    stores.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the command ``argv`` (default: the process's arguments) and exit with its status."""
    argv = sys.argv[1:] if argv is None else argv
    table: Sequence[AdminCommand] | None = None
    if argv[:1] != ["admin"]:
        table = ()  # only `licensor admin` loads the plugins to build its commands
    try:
        parser = build_parser(table)
    except Exception as error:  # a plugin that fails to load (the gateway would not start either)
        print(f"error: cannot build the admin commands: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(2)
    args = parser.parse_args(argv)
    try:
        status = args.handler(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 2
    except ApiError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:  # the reader went away (`licensor admin ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)
