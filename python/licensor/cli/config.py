"""The settings on the command line: ``--config FILE`` and one flag per setting (generated from
:data:`licensor.gateway.settings.OPTIONS`), and ``licensor config show``, the effective configuration without
secrets."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from licensor.cli.errors import UsageError
from licensor.gateway.settings import OPTIONS, Configuration, SettingError, Settings, load_configuration, shown_value

STORE_SETTINGS = ("data_dir", "database_url", "master_key_file")
"""What the commands that open the store without serving (``init``) take."""


def add_setting_options(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """``--config`` and a flag per setting (all, or those ``names``), each defaulting to "not given" so that the
    environment and the file below it show through."""
    wanted = None if names is None else set(names)
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML configuration file (default: $LICENSOR_CONFIG); flags beat LICENSOR_* variables, which beat the file",
    )
    group = parser.add_argument_group("settings (each also LICENSOR_<NAME> and [section] key in the file)")
    defaults = Settings()
    for option in OPTIONS:
        if option.flag and (wanted is None or option.name in wanted):
            default = shown_value(option, getattr(defaults, option.name))
            help = f"{option.help} (default {default}; [{option.section}] {option.key}, {option.env})"
            group.add_argument(option.flag_name, dest=option.name, default=None, metavar="VALUE", help=help.replace("%", "%%"))


def configuration_of(args: argparse.Namespace) -> Configuration:
    """The effective configuration of a command's arguments, the environment and the configuration file.

    :raises UsageError: a setting that cannot be used (the message names it and where its value came from)."""
    flags = {option.name: getattr(args, option.name, None) for option in OPTIONS}
    try:
        return load_configuration(flags, config_file=getattr(args, "config", None))
    except SettingError as error:
        raise UsageError(str(error)) from None


def add_parser(commands: Any) -> None:
    """``licensor config show``."""
    config = commands.add_parser(
        "config",
        help="show the effective configuration",
        description="Show the settings licensor serve would use (defaults, the --config file, LICENSOR_* variables and "
        "flags), each with where it came from. Secrets (the master key, a database password) are never shown.",
    )
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the effective configuration as TOML")
    add_setting_options(show)
    show.set_defaults(handler=run_show)


def run_show(args: argparse.Namespace) -> int:
    print(configuration_of(args).show(), end="")
    return 0
