"""The gateway's settings: one declaration per setting (:data:`OPTIONS`), read from a TOML file (``--config``),
``LICENSOR_…`` environment variables and command-line flags, in that order of precedence (a flag beats the
environment, which beats the file, which beats the default), and validated at start with an error naming the
setting and where its value came from (:class:`SettingError`)."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = [
    "OPTIONS",
    "Configuration",
    "Option",
    "RateLimit",
    "SettingError",
    "Settings",
    "load_configuration",
    "parse_duration",
    "shown_value",
]


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` requests per ``period_s`` seconds (spread evenly: a client that used its budget gets one
    more every ``period_s / count`` seconds). Written ``COUNT/PERIOD``: ``600/1m``, ``20/10m``, ``100/1d``."""

    count: int
    period_s: float

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.period_s)}"


@dataclass(frozen=True)
class Settings:
    """Every setting of a gateway process, validated. ``licensor serve`` builds it with
    :func:`load_configuration`; tests build it directly. The defaults are the production defaults."""

    # [server]
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    # The event loop: uvloop when installed ("auto"), "uvloop" (refuse to start without it) or "asyncio".
    loop: str = "auto"
    # On SIGTERM a process stops accepting and lets the requests in flight finish for at most this long, then exits.
    drain_timeout_s: float = 20.0  # under systemd's TimeoutStopSec=30 (deploy/licensor.service)
    public_url: str | None = None  # how clients reach this gateway; default http://{host}:{port}
    # A connection must have sent a request's whole header within idle_timeout_s of opening or of its last answer
    # (else it is closed: a slow or silent client holds no connection longer); a body must come within body_timeout_s.
    idle_timeout_s: float = 75.0
    body_timeout_s: float = 30.0
    # [store]
    data_dir: str = "var"
    database_url: str | None = field(default=None, repr=False)  # default: sqlite:///{data_dir}/licensor.db; may hold a password
    # [security]: the master key from LICENSOR_MASTER_KEY (base64url, 32 bytes), else from master_key_file
    # (default {data_dir}/master.key, created when missing); every gateway sharing a database needs the same key.
    master_key_file: str | None = None
    master_key: bytes | None = field(default=None, repr=False)
    # [log]
    log_format: str = "text"  # text or json (one JSON object per line)
    log_level: str = "info"
    # [metrics]: GET /metrics needs it as a bearer token; None: only clients on the loopback interface may scrape.
    metrics_token: str | None = field(default=None, repr=False)
    # [proxy]: the addresses of reverse proxies whose X-Forwarded-For names the client; nobody else's is believed.
    trusted_proxies: tuple[str, ...] = ()
    # [rate_limits]: None is no limit. With --workers N each worker enforces 1/N of a budget.
    rate_limit_address: RateLimit | None = RateLimit(6000, 60.0)  # every request, per client address
    # Off by default: anyone holding one of a tenant's license keys could spend its budget for all its customers.
    rate_limit_tenant: RateLimit | None = None  # authenticated requests and checks presenting a license, per tenant
    rate_limit_key_failures: RateLimit | None = RateLimit(30, 600.0)  # unknown license keys, per client address
    rate_limit_churn: RateLimit | None = RateLimit(100, 86400.0)  # activations and deactivations, per license
    rate_limit_sign_in: RateLimit | None = RateLimit(10, 300.0)  # portal sign-ins and links used, per address and account
    rate_limit_mail_links: RateLimit | None = RateLimit(5, 900.0)  # portal links to mail, per address and account
    # [webhooks]: private targets (loopback, RFC 1918, ...) only when the operator allows them; the first retry's
    # delay, doubled per attempt up to 6 h; whether this process sends (others on the same database do when not).
    webhook_allow_private: bool = False
    webhook_retry_base_s: float = 5.0
    webhook_sender: bool = True
    # [updates]: a comment line on an idle update stream this often (under the client's 60 s for a dead line).
    updates_keepalive_s: float = 25.0
    # [mail]: how mail to customers leaves: files in {data_dir}/mail for the operator's mailer, or only a log line.
    mail: str = "file"
    # [retention] (docs/retention.md): how long what is no longer needed is kept before the background pruner
    # deletes it; 0 keeps that kind forever.
    idempotency_retention_hours: float = 24.0  # remembered answers of Idempotency-Key requests; at least the longest lease
    lease_retention_days: float = 400.0  # ended leases; the lease usage report (up to 366 days) reads them
    webhook_retention_days: float = 30.0  # delivered and failed webhook deliveries, with their attempts
    retention_interval_s: float = 60.0  # how often this process prunes; 0: never (another process on the database does)

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{os.path.join(self.data_dir, 'licensor.db')}"

    @property
    def master_key_path(self) -> str:
        return self.master_key_file or os.path.join(self.data_dir, "master.key")

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(network, strict=False) for network in self.trusted_proxies)


class SettingError(Exception):
    """A setting's value cannot be used; the message names the setting and where the value came from."""


# --- value readers: each takes what TOML, the environment or a flag gives and returns the setting's value ----------
Reader = Callable[[Any], Any]


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _optional_text(value: Any) -> str | None:
    if isinstance(value, str) and value == "":
        return None
    return _text(value)


def _integer(low: int, high: int) -> Reader:
    def read(value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return read


def _number(low: float, high: float) -> Reader:
    def read(value: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return float(value)

    return read


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("must be true or false (or 1 / 0)")


def _choice(*choices: str) -> Reader:
    def read(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value.strip().lower()

    return read


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``24h`` or ``30d``.

    :raises ValueError: anything else, or not more than 0."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 90s, 5m, 24h or 30d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := re.fullmatch(r"\s*([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*([smhd]?)\s*", value)):
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    else:
        raise ValueError("must be a duration such as 90s, 5m, 24h or 30d")
    if not 0 < seconds <= 3650 * 86400:
        raise ValueError("must be a duration longer than 0 and at most 3650d")
    return seconds


def format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def _rate_limit(value: Any) -> RateLimit | None:
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "0", "none")):
        return None
    if isinstance(value, str) and (match := re.fullmatch(r"\s*([0-9]{1,9})\s*/\s*(\S+)\s*", value)):
        count = int(match[1])
        if count >= 1:
            return RateLimit(count, parse_duration(match[2]))
    raise ValueError('must be COUNT/PERIOD (such as "600/1m" or "20/10m") or "off"')


def _networks(value: Any) -> tuple[str, ...]:
    items = [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise ValueError("must be a list of addresses or networks (CIDR), such as 127.0.0.1 or 10.0.0.0/8")
    networks = []
    for item in items:
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not an address or network (CIDR)") from None
    return tuple(networks)


def _http_url(value: Any) -> str | None:
    url = _optional_text(value)
    if url is not None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
    return url.rstrip("/") if url else None


def _database_url(value: Any) -> str | None:
    url = _optional_text(value)
    if url is None or url.startswith("sqlite:///"):
        return url
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be postgresql://user@host:port/database or sqlite:///path")
    hosts = urllib.parse.urlsplit(url).netloc.rpartition("@")[2]
    for host in hosts.split(","):  # several hosts: postgresql://user@h1:5432,h2:5432/db?target_session_attrs=...
        try:
            urllib.parse.urlsplit(f"postgresql://{host}").port  # noqa: B018  (reading it checks it)
        except ValueError:
            raise ValueError("names a port that is not a number from 0 to 65535") from None
        if not host or host.startswith(":"):
            raise ValueError("names an empty host: postgresql://user@host1:port1,host2:port2/database")
    attrs = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)).get("target_session_attrs")
    if attrs is not None and attrs not in _SESSION_ATTRS:
        raise ValueError(f"target_session_attrs must be one of {', '.join(_SESSION_ATTRS)}")
    return url


_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
"""The values of a PostgreSQL URL's ``target_session_attrs`` that asyncpg accepts."""


def _master_key(value: Any) -> bytes:
    from licensor.central.secrets import decode_master_key

    return decode_master_key(_text(value))


@dataclass(frozen=True)
class Option:
    """One setting: the :class:`Settings` field ``name``, read from ``[section] key`` of the TOML file, from
    ``LICENSOR_{NAME}`` and from ``--{name}`` (unless ``flag`` is False)."""

    name: str
    section: str
    key: str
    read: Reader
    help: str
    flag: bool = True
    in_file: bool = True
    secret: bool = False

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"LICENSOR_{self.name.upper()}"

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def hidden(self) -> bool:
        """Never shown, not even in part (a secret; the database URL is shown without its password)."""
        return self.secret and self.name != "database_url"


_RATE_HELP = 'COUNT/PERIOD such as "600/1m", or "off"'
OPTIONS: tuple[Option, ...] = (
    Option("host", "server", "host", _text, "the address to listen on"),
    Option("port", "server", "port", _integer(1, 65535), "the port to listen on"),
    Option("workers", "server", "workers", _integer(1, 256), "worker processes sharing the port"),
    Option(
        "loop",
        "server",
        "loop",
        _choice("auto", "uvloop", "asyncio"),
        "the event loop: auto (uvloop when installed), uvloop or asyncio",
    ),
    Option(
        "drain_timeout_s",
        "server",
        "drain_timeout_s",
        _number(0, 3600),
        "seconds a stopping process lets its requests in flight finish before it closes them",
    ),
    Option("public_url", "server", "public_url", _http_url, "how clients reach this gateway"),
    Option(
        "idle_timeout_s",
        "server",
        "idle_timeout_s",
        _number(0.1, 3600),
        "seconds a connection may take to send a request's header after it opened or got its last answer",
    ),
    Option(
        "body_timeout_s",
        "server",
        "body_timeout_s",
        _number(0.1, 3600),
        "seconds a client may take to send a request's body",
    ),
    Option(
        "data_dir",
        "store",
        "data_dir",
        _text,
        "where the SQLite file, the master key and the admin token file live",
    ),
    Option(
        "database_url",
        "store",
        "database_url",
        _database_url,
        "postgresql://user@host:port/db, or several hosts h1:p1,h2:p2 with ?target_session_attrs=read-write "
        "(default: the embedded SQLite store {data_dir}/licensor.db)",
        secret=True,
    ),
    Option(
        "master_key_file",
        "security",
        "master_key_file",
        _optional_text,
        "the master key's file (when LICENSOR_MASTER_KEY is not set)",
    ),
    Option(
        "master_key",
        "security",
        "master_key",
        _master_key,
        "the master key itself, base64url (32 bytes); environment only",
        flag=False,
        in_file=False,
        secret=True,
    ),
    Option(
        "metrics_token",
        "metrics",
        "token",
        _text,
        "the bearer token GET /metrics asks for (default none: loopback clients only); never a flag",
        flag=False,
        secret=True,
    ),
    Option("log_format", "log", "format", _choice("text", "json"), "text or json (one object per line)"),
    Option("log_level", "log", "level", _choice("debug", "info", "warning", "error"), "debug, info, warning or error"),
    Option(
        "trusted_proxies",
        "proxy",
        "trusted_proxies",
        _networks,
        "reverse proxies (addresses or CIDR, comma-separated) whose X-Forwarded-For is believed",
    ),
    Option(
        "rate_limit_address",
        "rate_limits",
        "address",
        _rate_limit,
        f"requests per client address: {_RATE_HELP}",
    ),
    Option("rate_limit_tenant", "rate_limits", "tenant", _rate_limit, f"requests per tenant: {_RATE_HELP}"),
    Option(
        "rate_limit_key_failures",
        "rate_limits",
        "key_failures",
        _rate_limit,
        f"unknown license keys per client address: {_RATE_HELP}",
    ),
    Option(
        "rate_limit_churn",
        "rate_limits",
        "churn",
        _rate_limit,
        f"activations and deactivations per license: {_RATE_HELP}",
    ),
    Option(
        "rate_limit_sign_in",
        "rate_limits",
        "sign_in",
        _rate_limit,
        f"portal sign-ins and mailed links used, per address and per account: {_RATE_HELP}",
    ),
    Option(
        "rate_limit_mail_links",
        "rate_limits",
        "mail_links",
        _rate_limit,
        f"portal links to mail (password, sign-in) per address and per account: {_RATE_HELP}",
    ),
    Option("webhook_allow_private", "webhooks", "allow_private", _boolean, "allow webhook endpoints in private address ranges"),
    Option(
        "webhook_retry_base_s",
        "webhooks",
        "retry_base_s",
        _number(0.01, 3600),
        "the first webhook retry's delay in seconds",
    ),
    Option("webhook_sender", "webhooks", "sender", _boolean, "whether this process sends webhooks"),
    Option(
        "idempotency_retention_hours",
        "retention",
        "idempotency_hours",
        _number(0, 87600),
        "hours an idempotent request's answer is replayed (0: forever)",
    ),
    Option("lease_retention_days", "retention", "lease_days", _number(0, 3650), "days ended leases are kept (0: forever)"),
    Option(
        "webhook_retention_days",
        "retention",
        "webhook_days",
        _number(0, 3650),
        "days finished webhook deliveries are kept, with their attempts (0: forever)",
    ),
    Option(
        "retention_interval_s",
        "retention",
        "interval_s",
        _number(0, 86400),
        "seconds between this process's pruning passes (0: it never prunes; another process does)",
    ),
    Option(
        "updates_keepalive_s",
        "updates",
        "keepalive_s",
        _number(1, 55),
        "seconds between the comment lines that keep an idle update stream (GET /v1/updates) open",
    ),
    Option("mail", "mail", "sender", _choice("file", "log"), "file ({data_dir}/mail) or log"),
)
_BY_NAME = {option.name: option for option in OPTIONS}
_BY_PATH = {option.path: option for option in OPTIONS if option.in_file}


@dataclass(frozen=True)
class Configuration:
    """The effective settings and where each came from (``default``, ``file``, ``LICENSOR_…`` or ``--flag``)."""

    settings: Settings
    sources: Mapping[str, str]
    config_file: str | None

    def show(self) -> str:
        """The effective configuration as TOML, each value with its source; secrets are never shown."""
        lines = [f"# licensor's effective configuration (file: {self.config_file or 'none'})"]
        section = None
        for option in OPTIONS:
            if option.section != section:
                section = option.section
                lines += ["", f"[{section}]"]
            value = getattr(self.settings, option.name)
            shown = shown_value(option, value)
            # A secret's placeholder is commented out: pasted into a file, it must not become the secret.
            key = option.key if option.in_file and not option.hidden else f"# {option.key}"
            lines.append(f"{key} = {shown}  # {self.sources.get(option.name, 'default')}")
        return "\n".join(lines) + "\n"


def shown_value(option: Option, value: Any) -> str:
    """``value`` of ``option`` as TOML, a secret as a placeholder."""
    import json

    if option.hidden:
        return '"(set, not shown)"' if value is not None else '"(not set)"'
    if value is None:
        return '""' if not option.name.startswith("rate_limit_") else '"off"'
    if option.name == "database_url":
        return json.dumps(_without_password(value))
    if isinstance(value, RateLimit | str):
        return json.dumps(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value)


_PASSWORD_PARAMETERS = frozenset({"password", "sslpassword"})


def _without_password(url: str) -> str:
    """``url`` with its password, in the user part or in the query (``?password=``), as ``***``."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = urllib.parse.urlencode(
        [(name, "***" if name.lower() in _PASSWORD_PARAMETERS else value) for name, value in urllib.parse.parse_qsl(parts.query)],
        safe="*",
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise SettingError(f"cannot read the configuration file {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SettingError(f"the configuration file {path} is not valid TOML (UTF-8): {error}") from None
    values: dict[str, Any] = {}
    for section, table in document.items():
        if not isinstance(table, dict):
            raise SettingError(f"{path}: {section} must be a [section] (known: {', '.join(sorted(_sections()))})")
        for key, value in table.items():
            option = _BY_PATH.get(f"{section}.{key}")
            if option is None:
                raise SettingError(f"{path}: unknown setting {section}.{key}")
            values[option.name] = value
    return values


def _sections() -> set[str]:
    return {option.section for option in OPTIONS if option.in_file}


def load_configuration(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    base: Settings | None = None,
) -> Configuration:
    """The settings from ``base`` (default: the defaults), the TOML ``config_file`` (default ``LICENSOR_CONFIG``),
    the ``LICENSOR_…`` variables of ``environ`` (default ``os.environ``) and ``flags`` (setting name → value; None
    is not given), in that order, each later one winning.

    :raises SettingError: a value that cannot be used, or settings that contradict each other."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("LICENSOR_CONFIG") or None
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if config_file:
        layers.append(("file", _read_file(config_file)))
    layers.append(("environment", {option.name: environ[option.env] for option in OPTIONS if option.env in environ}))
    layers.append(("flag", {name: value for name, value in (flags or {}).items() if value is not None and name in _BY_NAME}))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for kind, layer in layers:
        for name, raw in layer.items():
            option = _BY_NAME[name]
            source = {"file": f"{config_file} [{option.section}] {option.key}", "environment": option.env}.get(
                kind, option.flag_name
            )
            try:
                values[name] = option.read(raw)
            except Exception as error:  # ValueError, or the master key's reader refusing the text
                given = "" if option.secret else f", not {raw!r}"
                raise SettingError(f"setting {option.path} ({source}): {getattr(error, 'message', error)}{given}") from None
            sources[name] = source
    settings = replace(base or Settings(), **values)
    if 0 < settings.idempotency_retention_hours < 24:
        raise SettingError(
            f"setting retention.idempotency_hours ({sources.get('idempotency_retention_hours', 'default')}): "
            f"{settings.idempotency_retention_hours:g} h is shorter than the longest lease (24 h): a heartbeat retried "
            "after its answer was forgotten would renew twice; use 24 or more, or 0 (forever)"
        )
    if settings.workers > 1 and not settings.store_url.startswith(("postgresql://", "postgres://")):
        raise SettingError(
            f"setting server.workers ({sources.get('workers', 'default')}): {settings.workers} workers need PostgreSQL "
            "(store.database_url postgresql://...); the embedded SQLite store serves one process"
        )
    for option in OPTIONS:
        budget = getattr(settings, option.name)
        if isinstance(budget, RateLimit) and budget.count < settings.workers:
            raise SettingError(
                f"setting {option.path} ({sources.get(option.name, 'default')}): {budget} cannot be shared by "
                f"{settings.workers} workers (each keeps 1/{settings.workers} of a budget): allow at least {settings.workers}"
            )
    return Configuration(settings, sources, config_file)


assert {f.name for f in fields(Settings)} == set(_BY_NAME), "every field of Settings is an option, and only those"
