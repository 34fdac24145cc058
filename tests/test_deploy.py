"""The operator's guide and its example files (docs/operations.md, deploy/): the systemd unit starts a command
``licensor serve`` accepts, hardened, behind a proxy that forwards the client's address and scheme to the port
the unit listens on; every error code of the store commands is documented."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

from licensor.cli import build_parser
from licensor.cli import stores as store_commands
from licensor.gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _unit(name: str = "licensor.service") -> configparser.ConfigParser:
    # systemd repeats keys (SystemCallFilter may); the examples set each once, so a strict parser reads them.
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read_string((DEPLOY / name).read_text())
    return unit


def test_the_unit_runs_licensor_serve_hardened_as_its_own_user_on_the_loopback_address() -> None:
    service = _unit()["Service"]
    command = shlex.split(service["ExecStart"])
    assert Path(command[0]).name == "licensor" and command[1] == "serve"
    args = build_parser(()).parse_args(command[1:])
    assert (args.host, args.data_dir) == ("127.0.0.1", "/var/lib/licensor")
    assert service["User"] == service["Group"] == "licensor"
    assert service["StateDirectory"] == "licensor" and service["StateDirectoryMode"] == "0700"
    assert service["ReadWritePaths"] == "/var/lib/licensor" and service["ProtectSystem"] == "strict"
    assert service["EnvironmentFile"] == "/etc/licensor/licensor.env"
    for setting in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictSUIDSGID"):
        assert service[setting] == "yes", setting
    assert service["CapabilityBoundingSet"] == "" and service["UMask"] == "0077"
    assert service["RestartPreventExitStatus"] == "2"  # a newer schema or a bad setting: restarting cannot help


def test_the_unit_waits_for_the_drain_before_it_kills() -> None:
    """systemd's SIGKILL comes TimeoutStopSec after its SIGTERM: the drain (and the clean-up after it) must end first."""
    service = _unit()["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert Settings().drain_timeout_s + 5 <= float(service["TimeoutStopSec"])


def test_the_daily_backup_backs_up_the_services_store_into_a_directory_it_may_write() -> None:
    served = build_parser(()).parse_args(shlex.split(_unit()["Service"]["ExecStart"])[1:])
    backup = _unit("licensor-backup.service")["Service"]
    shell, option, script = shlex.split(backup["ExecStart"])
    assert (shell, option) == ("/bin/sh", "-c")
    stamp = "$(date -u +%Y%m%dT%H%M%SZ)"  # one word to the shell (it substitutes it), three to shlex
    assert stamp in script.replace("%%", "%")
    command = shlex.split(script.replace("%%", "%").replace(stamp, "STAMP"))
    assert command[0] == "exec" and Path(command[1]).name == "licensor"
    args = build_parser(()).parse_args(command[2:])
    assert args.command == "backup" and args.data_dir == served.data_dir
    assert args.out == "/var/backups/licensor/licensor-STAMP.db"
    assert backup["ReadWritePaths"].split() == [served.data_dir, "/var/backups/licensor"]
    assert backup["User"] == "licensor" and backup["EnvironmentFile"] == "/etc/licensor/licensor.env"
    assert backup["UMask"] == "0077" and backup["ProtectSystem"] == "strict"
    assert _unit("licensor-backup.timer")["Timer"]["Persistent"] == "true"


def test_the_proxies_forward_the_clients_address_and_scheme_to_the_units_port() -> None:
    args = build_parser(()).parse_args(shlex.split(_unit()["Service"]["ExecStart"])[1:])
    upstream = f"{args.host}:{args.port}"
    assert args.trusted_proxies == args.host == "127.0.0.1"  # the proxy on the same host: its X-Forwarded-For is believed
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert f"server {upstream};" in nginx
    assert len(re.findall(r"proxy_set_header X-Forwarded-For \$remote_addr;", nginx)) == nginx.count("proxy_pass ")
    assert len(re.findall(r"proxy_set_header X-Forwarded-Proto \$scheme;", nginx)) == nginx.count("proxy_pass ")
    assert "location = /v1/updates" in nginx and "proxy_buffering off;" in nginx
    caddy = (DEPLOY / "Caddyfile").read_text()
    assert f"reverse_proxy {upstream}" in caddy and "flush_interval -1" in caddy


def test_the_store_commands_and_their_error_codes_are_documented() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    readme = (ROOT / "README.md").read_text()
    codes = set(re.findall(r"\b[A-Z][A-Z_]+_[A-Z]+\b", store_commands.__doc__ or ""))
    assert {"TARGET_NOT_EMPTY", "SCHEMA_TOO_NEW", "MASTER_KEY_MISMATCH", "CHAIN_BROKEN"} <= codes
    for code in codes:
        assert f"`{code}`" in guide and f"`{code}`" in readme, code
    for command in ("licensor backup", "licensor restore", "licensor migrate-store"):
        assert command in guide and command in readme, command
    for example in ("licensor.service", "licensor.env.example", "licensor-backup.service", "licensor-backup.timer"):
        assert (DEPLOY / example).is_file() and f"deploy/{example}" in guide, example
    for example in ("nginx.conf", "Caddyfile"):
        assert (DEPLOY / example).is_file() and f"deploy/{example}" in guide, example
