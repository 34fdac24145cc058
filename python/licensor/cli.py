"""The ``licensor`` command: run the gateway, create tenants, and call the admin API.

``licensor serve``  runs the gateway (one process, or N workers on one port with PostgreSQL);
``licensor init``   creates a tenant with its signing key and an admin token, shown once;
``licensor admin``  calls the admin API of a running gateway and prints its JSON answers.

Exit codes: 0 success; 1 the API (or the gateway) refused: ``error: CODE: message`` on stderr;
2 a usage or environment problem (bad arguments, no token, gateway unreachable, SQLite with --workers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from typing import Any, NoReturn

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_FILE_NAME = "admin-token"

log = logging.getLogger("licensor.serve")


class UsageError(Exception):
    """A problem of the command line or environment (exit status 2)."""


class ApiError(Exception):
    """The gateway answered with an error (exit status 1)."""


# --- logging ------------------------------------------------------------------------------------------
def _setup_logging(with_pid: bool = False) -> None:
    process = " [%(process)d]" if with_pid else ""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s %(name)s{process}: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def _access_logger_class() -> type:
    from aiohttp.abc import AbstractAccessLogger

    class AccessLogger(AbstractAccessLogger):
        """One line per request: method, path (no query string), status, time, request id.

        Never headers (Authorization), bodies (license keys travel only in bodies) or query strings."""

        def log(self, request: Any, response: Any, time: float) -> None:
            path = request.rel_url.raw_path  # still percent-encoded: no control characters reach the log
            if len(path) > 200:
                path = path[:200] + "..."
            self.logger.info(
                "%s %s %s %d %.1fms rid=%s",
                request.remote,
                request.method,
                path,
                response.status,
                time * 1000,
                response.headers.get("X-Request-Id", "-"),
            )

    return AccessLogger


# --- settings and stores ------------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> Any:
    from licensor.gateway.settings import Settings

    return Settings(
        data_dir=args.data_dir,
        database_url=args.database_url or None,
        host=getattr(args, "host", "127.0.0.1"),
        port=getattr(args, "port", 8080),
        public_url=getattr(args, "public_url", None),
    )


def _with_master_key(settings: Any) -> Any:
    """The settings with the master key loaded (from LICENSOR_MASTER_KEY or {data_dir}/master.key, created
    when missing), so that every worker uses the same key."""
    from licensor.central.secrets import load_master_key
    from licensor.errors import LicensorError

    try:
        key = load_master_key(settings.master_key_path, os.environ.get("LICENSOR_MASTER_KEY"))
    except LicensorError as error:
        raise UsageError(error.message) from None
    except OSError as error:
        raise UsageError(f"cannot read or create the master key {settings.master_key_path}: {error.strerror}") from None
    return replace(settings, master_key=key)


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def _describe_store(url: str) -> str:
    """The store for a log line, without a password."""
    if url.startswith("sqlite:///"):
        return f"SQLite {url[len('sqlite:///') :]}"
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"PostgreSQL {user}{host}{port}{parts.path}"


async def _open_store(settings: Any) -> Any:
    from licensor.store import open_store

    try:
        store = open_store(settings.store_url)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if store.url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(store.url[len("sqlite:///") :]) or ".", exist_ok=True)
    try:
        await store.open()
    except OSError as error:
        raise UsageError(f"cannot open the store ({_describe_store(settings.store_url)}): {error}") from None
    return store


async def _create_tenant(settings: Any, name: str, *, only_if_empty: bool) -> tuple[str, str] | None:
    """A new tenant (id, admin token); None when ``only_if_empty`` and the store has a tenant already."""
    from licensor.central.secrets import Secrets
    from licensor.central.tenants import create_tenant

    store = await _open_store(settings)
    try:
        if only_if_empty and await store.list_tenants():
            return None
        created = await create_tenant(store, Secrets(settings.master_key), name)
    finally:
        await store.close()
    return created.tenant_id, created.admin_token


def _write_secret_file(path: str, text: str) -> None:
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


# --- serve --------------------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    _setup_logging(with_pid=args.workers > 1)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    settings = _settings(args)
    if args.workers > 1 and not _is_postgres(settings.store_url):
        raise UsageError(
            f"--workers {args.workers} needs PostgreSQL (--database-url postgresql://...): the embedded SQLite store "
            "serves one process; run without --workers, or with --workers 1"
        )
    settings = _with_master_key(settings)
    token_path = os.path.join(settings.data_dir, TOKEN_FILE_NAME)
    created = None
    if args.init_if_empty:
        created = asyncio.run(_create_tenant(settings, "default", only_if_empty=True))
        if created is not None:
            _write_secret_file(token_path, created[1] + "\n")
            print(f'licensor: created the tenant "default" ({created[0]})', flush=True)
    if os.path.exists(token_path):
        # Where the token is, never the token itself.
        print(f"licensor: the admin token is in {token_path} (mode 0600): export LICENSOR_TOKEN=$(cat {token_path})", flush=True)
    if args.workers == 1:
        return _run_worker(settings, single=True)
    return _run_workers(settings, args.workers)


def _run_worker(settings: Any, *, single: bool, parent_pid: int | None = None, sock: Any = None, ready: Any = None) -> int:
    """Run one gateway process until SIGTERM or SIGINT; 0 after a graceful stop. A worker of ``--workers N``
    serves on the parent's ``sock`` and tells ``ready`` once it accepts connections."""
    from aiohttp import web

    from licensor import _impl
    from licensor.gateway.app import create_app
    from licensor.gateway.supervisor import READY

    app = create_app(settings)
    app.on_startup.append(_stop_on_signals)
    app.on_startup.append(_freeze_startup_objects)
    if parent_pid is not None:
        app.cleanup_ctx.append(_exit_with_parent(parent_pid))
    url = f"http://{settings.host}:{settings.port}"
    core = _impl.IMPLEMENTATION
    if core != "rust":
        if os.environ.get("LICENSOR_PURE_PYTHON") == "1":
            log.warning("LICENSOR_PURE_PYTHON=1: serving on the pure-Python core (same answers, slower signing and verification)")
        else:
            log.warning(
                "the native core is not built: serving on the pure-Python core (same answers, slower signing "
                "and verification); `make build` builds it"
            )

    def started(_: str) -> None:
        log.info(
            "gateway listening on %s (core %s, store %s)%s",
            url,
            core,
            _describe_store(settings.store_url),
            "" if not single else "; Ctrl-C stops it",
        )
        if ready is not None:
            ready.send_bytes(READY)
            ready.close()

    try:
        web.run_app(
            app,
            **({"sock": sock} if sock is not None else {"host": settings.host, "port": settings.port}),
            access_log_class=_access_logger_class(),
            access_log=logging.getLogger("licensor.access"),
            print=started,
            handle_signals=False,  # _stop_on_signals instead
        )
    except OSError as error:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, error.strerror or error)
        return 1
    log.info("gateway stopped")
    return 0


async def _stop_on_signals(app: Any) -> None:
    """The first SIGTERM or SIGINT stops the gateway gracefully; later ones are ignored.

    (aiohttp's own handlers raise again on a second signal, which interrupts the clean-up half-way and can
    leave the process hanging on the store's thread; `make` forwards SIGTERM to its child, so a second one is
    common.)"""
    from aiohttp.web_runner import GracefulExit

    loop = asyncio.get_running_loop()
    stopping = False

    def stop(name: str) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        # Ignored from now on, at the process level: run_app closes the loop before the process exits, and
        # closing it would put the default disposition back, under which a late second SIGTERM kills us.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)
        log.info("%s: stopping gracefully", name)
        raise GracefulExit()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signal.Signals(signum).name)


async def _freeze_startup_objects(app: Any) -> None:
    """Keep what start-up made (modules, schemas, compiled validators) out of the garbage collector's full
    collections: they live as long as the process, and a full collection that walks them all costs tens of
    milliseconds in whichever request happens to trigger it."""
    import gc

    gc.collect()
    gc.freeze()


def _exit_with_parent(parent_pid: int) -> Any:
    """A cleanup context that stops the worker (gracefully) once the parent ``parent_pid`` is gone."""

    async def context(app: Any) -> Any:
        async def watch() -> None:
            while os.getppid() == parent_pid:
                await asyncio.sleep(1.0)
            log.warning("the parent process %d is gone: stopping", parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)

        task = asyncio.create_task(watch())
        yield
        task.cancel()

    return context


def _worker_main(sock: Any, ready: Any, argument: tuple[Any, int]) -> None:
    """A worker of ``licensor serve --workers N`` (see :mod:`licensor.gateway.supervisor`)."""
    settings, parent_pid = argument
    os.setpgrp()  # the parent forwards SIGINT and SIGTERM; a terminal's Ctrl-C reaches only the parent
    _setup_logging(with_pid=True)
    if os.getppid() != parent_pid:
        sys.exit(1)
    sys.exit(_run_worker(settings, single=False, parent_pid=parent_pid, sock=sock, ready=ready))


def _run_workers(settings: Any, count: int) -> int:
    """N supervised worker processes on one listening socket (see :mod:`licensor.gateway.supervisor`)."""
    from licensor.gateway.supervisor import listening_socket, supervise

    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as error:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, error.strerror or error)
        return 1
    return supervise(_worker_main, (settings, os.getpid()), sock, count)


# --- init ---------------------------------------------------------------------------------------------
def _init(args: argparse.Namespace) -> int:
    settings = _with_master_key(_settings(args))
    created = asyncio.run(_create_tenant(settings, args.name, only_if_empty=False))
    assert created is not None
    tenant_id, token = created
    print(f"tenant_id: {tenant_id}")
    print(f"admin_token: {token}")
    print("The admin token is shown only now: licensor keeps just its hash.", file=sys.stderr)
    return 0


# --- admin client -------------------------------------------------------------------------------------
def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as error:
            raise UsageError(f"cannot read the token file {args.token_file}: {error.strerror}") from None
        if not token:
            raise UsageError(f"the token file {args.token_file} is empty")
        return token
    token = os.environ.get("LICENSOR_TOKEN", "").strip()
    if not token:
        raise UsageError("no API token: pass --token-file PATH (make serve writes var/admin-token) or set LICENSOR_TOKEN")
    return token


def _request(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, Any] | None = None
) -> Any:
    base = args.url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"--url must start with http:// or https://, not {args.url!r}")
    params = {k: v for k, v in (query or {}).items() if v is not None}
    url = base + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
    headers = {"Authorization": f"Bearer {_token(args)}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            detail = json.loads(raw)["error"]
            raise ApiError(f"{detail['code']}: {detail['message']}") from None
        except (ValueError, KeyError, TypeError):
            text = raw.decode(errors="replace").strip()[:200]
            raise ApiError(f"HTTP {error.code} from {base}: {text or error.reason}") from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, ConnectionRefusedError):
            raise UsageError(
                f"cannot connect to {base}: connection refused (is the gateway running? `make serve` "
                "or `licensor serve` starts it)"
            ) from None
        raise UsageError(f"cannot reach {base}: {reason}") from None
    except TimeoutError:
        raise UsageError(f"no answer from {base} within {args.timeout:g} s") from None
    except OSError as error:
        raise UsageError(f"cannot reach {base}: {error}") from None
    return json.loads(raw) if raw.strip() else None


def _compact(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _admin(args: argparse.Namespace) -> int:
    answer = args.call(args)
    print(json.dumps(answer, indent=2))
    return 0


def _page(args: argparse.Namespace) -> dict[str, Any]:
    return {"limit": args.limit, "cursor": args.cursor}


def _feature_item(text: str) -> dict[str, Any]:
    code, _, quantity = text.partition("=")
    if not quantity:
        return {"code": code}
    try:
        return {"code": code, "quantity": int(quantity)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"--feature {text!r}: the quantity must be an integer") from None


def _option_item(text: str) -> tuple[str, Any]:
    """``NAME=VALUE``: the value as JSON when it reads as JSON (600, true, ["a"]), else as a string (take_over)."""
    name, equals, value = text.partition("=")
    if not name or not equals:
        raise argparse.ArgumentTypeError(f"--option {text!r}: give NAME=VALUE")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _policy_body(args: argparse.Namespace) -> dict[str, Any]:
    duration = None
    if args.duration_kind is not None or args.duration_days is not None:
        duration = _compact(kind=args.duration_kind or "subscription", days=args.duration_days)
    return _compact(
        product_id=args.product_id,
        name=args.name,
        backend=args.backend,
        seats=args.seats,
        duration=duration,
        maintenance_days=args.maintenance_days,
        features=args.feature or None,
        options=dict(args.option) if args.option else None,
    )


_OUT_HELP = (
    "write the credential file here: a new file, mode 0600, never overwritten; the printed answer then leaves "
    "it out (default: print the whole answer, secret included)"
)


def _add_admin_parser(commands: Any) -> None:
    admin = commands.add_parser(
        "admin",
        help="call the admin API of a running gateway",
        description="Call the admin API of a running gateway and print its JSON answer. On an API error it prints "
        "`error: CODE: message` and exits 1; when the gateway cannot be reached, or no token is given, it "
        "exits 2.",
    )
    admin.add_argument(
        "--url",
        default=os.environ.get("LICENSOR_URL", DEFAULT_URL),
        help=f"the gateway's address (default: $LICENSOR_URL or {DEFAULT_URL})",
    )
    admin.add_argument(
        "--token-file",
        metavar="PATH",
        help="a file holding an API token (make serve writes var/admin-token); default: $LICENSOR_TOKEN",
    )
    admin.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer (default 30)")
    resources = admin.add_subparsers(dest="resource", required=True, metavar="RESOURCE")

    def command(group: Any, name: str, help_text: str, call: Any) -> Any:
        parser = group.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        parser.set_defaults(handler=_admin, call=call)
        return parser

    def listing(parser: Any) -> Any:
        parser.add_argument("--limit", type=int, help="page size (1-200, default 50)")
        parser.add_argument("--cursor", help="the next_cursor of the previous page")
        return parser

    # products
    products = resources.add_parser("products", help="products", description="Products: create, list, get.")
    actions = products.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = command(
        actions,
        "create",
        "create a product",
        lambda a: _request(a, "POST", "/v1/admin/products", _compact(code=a.code, name=a.name, description=a.description)),
    )
    p.add_argument("--code", required=True, help="a short unique code: lower-case letters, digits, . _ -")
    p.add_argument("--name", required=True, help="the product's name")
    p.add_argument("--description", help="a longer description")
    listing(
        command(
            actions,
            "list",
            "list products",
            lambda a: _request(a, "GET", "/v1/admin/products", query={**_page(a), "code": a.code}),
        )
    ).add_argument("--code", help="only this code")
    command(
        actions, "get", "get a product", lambda a: _request(a, "GET", f"/v1/admin/products/{urllib.parse.quote(a.id, safe='')}")
    ).add_argument("id", metavar="ID", help="prd_...")

    # features
    features = resources.add_parser("features", help="features of products", description="Features: create, list.")
    actions = features.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = command(
        actions,
        "create",
        "create a feature of a product",
        lambda a: _request(
            a,
            "POST",
            "/v1/admin/features",
            _compact(product_id=a.product_id, code=a.code, name=a.name, metered=True if a.metered else None, unit=a.unit),
        ),
    )
    p.add_argument("--product-id", required=True, help="prd_...")
    p.add_argument("--code", required=True, help="a code unique within the product")
    p.add_argument("--name", required=True, help="the feature's name")
    p.add_argument("--metered", action="store_true", help="usage of the feature is counted")
    p.add_argument("--unit", help="the unit of a metered feature")
    listing(
        command(
            actions,
            "list",
            "list features",
            lambda a: _request(a, "GET", "/v1/admin/features", query={**_page(a), "product_id": a.product_id}),
        )
    ).add_argument("--product-id", help="only this product's features")

    # policies
    policies = resources.add_parser("policies", help="policies (license templates)", description="Policies: create, list.")
    actions = policies.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = command(actions, "create", "create a policy", lambda a: _request(a, "POST", "/v1/admin/policies", _policy_body(a)))
    p.add_argument("--product-id", required=True, help="prd_...")
    p.add_argument("--name", required=True, help="the policy's name")
    p.add_argument("--backend", required=True, help="cloud, cloud-lite, activation, or a plugin's backend")
    p.add_argument("--seats", type=int, help="seats per license (default 1)")
    p.add_argument("--duration-kind", choices=("perpetual", "subscription", "trial"), help="default perpetual")
    p.add_argument("--duration-days", type=int, help="days of a subscription or trial")
    p.add_argument("--maintenance-days", type=int, help="days of update entitlement from the start")
    p.add_argument(
        "--feature",
        action="append",
        type=_feature_item,
        metavar="CODE[=QUANTITY]",
        help="a feature the policy entitles (repeatable)",
    )
    p.add_argument(
        "--option",
        action="append",
        type=_option_item,
        metavar="NAME=VALUE",
        help="a backend option, e.g. lease_ttl_seconds=600 or on_seat_limit=take_over (repeatable; "
        "the value is read as JSON when it is JSON)",
    )
    p = listing(
        command(
            actions,
            "list",
            "list policies",
            lambda a: _request(
                a, "GET", "/v1/admin/policies", query={**_page(a), "product_id": a.product_id, "backend": a.backend}
            ),
        )
    )
    p.add_argument("--product-id", help="only this product's policies")
    p.add_argument("--backend", help="only policies of this backend")

    # licenses
    licenses = resources.add_parser(
        "licenses", help="licenses", description="Licenses: create, list, get, lookup, suspend, reinstate, revoke, renew."
    )
    actions = licenses.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = command(
        actions,
        "create",
        "create a license (its key is in this answer only)",
        lambda a: _request(
            a, "POST", "/v1/admin/licenses", _compact(policy_id=a.policy_id, customer_id=a.customer_id, order_ref=a.order_ref)
        ),
    )
    p.add_argument("--policy-id", required=True, help="pol_...")
    p.add_argument("--customer-id", help="cus_...")
    p.add_argument("--order-ref", help="an order reference of your shop")
    p = listing(
        command(
            actions,
            "list",
            "list licenses",
            lambda a: _request(
                a,
                "GET",
                "/v1/admin/licenses",
                query={**_page(a), "state": a.state, "policy_id": a.policy_id, "product_id": a.product_id},
            ),
        )
    )
    p.add_argument("--state", choices=("active", "suspended", "revoked"), help="only licenses in this state")
    p.add_argument("--policy-id", help="only licenses of this policy")
    p.add_argument("--product-id", help="only licenses of this product")
    command(
        actions, "get", "get a license", lambda a: _request(a, "GET", f"/v1/admin/licenses/{urllib.parse.quote(a.id, safe='')}")
    ).add_argument("id", metavar="ID", help="lic_...")
    p = command(
        actions,
        "lookup",
        "find a license by its key (read from standard input, so it stays out of the process list)",
        lambda a: _request(a, "POST", "/v1/admin/licenses/lookup", {"key": sys.stdin.readline().strip()}),
    )
    for action, text in (
        ("suspend", "suspend a license"),
        ("reinstate", "reinstate a suspended license"),
        ("revoke", "revoke a license (final)"),
        ("renew", "renew a license by the policy's period, or to --expires-at"),
    ):
        p = command(
            actions,
            action,
            text,
            (
                lambda verb: (
                    lambda a: _request(
                        a,
                        "POST",
                        f"/v1/admin/licenses/{urllib.parse.quote(a.id, safe='')}/{verb}",
                        _compact(reason=a.reason, expires_at=getattr(a, "expires_at", None)),
                    )
                )
            )(action),
        )
        p.add_argument("id", metavar="ID", help="lic_...")
        p.add_argument("--reason", help="why, for the event log")
        if action == "renew":
            p.add_argument("--expires-at", help="the new expiry, RFC 3339 (e.g. 2027-01-31T00:00:00Z)")

    # activations (the activation backend's routes)
    activations = resources.add_parser(
        "activations",
        help="devices bound to licenses (activation backend)",
        description="Activations of the activation backend: list, get, withdraw, reinstate, and answer an offline "
        "device's activation request file.",
    )
    actions = activations.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = listing(
        command(
            actions,
            "list",
            "list a license's activations",
            lambda a: _request(
                a,
                "GET",
                f"/v1/admin/licenses/{urllib.parse.quote(a.license_id, safe='')}/activations",
                query={**_page(a), "state": a.state},
            ),
        )
    )
    p.add_argument("--license-id", required=True, help="lic_...")
    p.add_argument(
        "--state", choices=("active", "suspended", "withdrawn", "replaced", "deactivated"), help="only activations in this state"
    )
    command(
        actions,
        "get",
        "get an activation",
        lambda a: _request(a, "GET", f"/v1/admin/activations/{urllib.parse.quote(a.id, safe='')}"),
    ).add_argument("id", metavar="ID", help="act_...")
    p = command(
        actions,
        "withdraw",
        "remove a device: told WITHDRAWN at its next check-in, its seat back when its file lapses",
        lambda a: _request(
            a, "POST", f"/v1/admin/activations/{urllib.parse.quote(a.id, safe='')}/withdraw", _compact(reason=a.reason)
        ),
    )
    p.add_argument("id", metavar="ID", help="act_...")
    p.add_argument("--reason", help="why, for the event log")
    command(
        actions,
        "reinstate",
        "reinstate an activation suspended after a clone or rollback, or removed",
        lambda a: _request(a, "POST", f"/v1/admin/activations/{urllib.parse.quote(a.id, safe='')}/reinstate"),
    ).add_argument("id", metavar="ID", help="act_...")
    p = command(
        actions, "answer", "answer an offline device's activation request file with its license file", _answer_request_file
    )
    p.add_argument("--request-file", required=True, help="the device's request file ('-': standard input)")
    p.add_argument("--out", help="write the license file here (default: print the whole answer)")

    # credentials (the cloud backend's routes)
    credentials = resources.add_parser(
        "credentials",
        help="credentials of licenses (cloud backend)",
        description="Credentials of the cloud backend: create (the credential file, whose secret is shown once), list, "
        "get, label, revoke, reissue.",
    )
    actions = credentials.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = command(
        actions,
        "create",
        "create a credential for a cloud license: its secret is shown once, in this answer or only in the --out file",
        lambda a: _credential_file_answer(a, f"/v1/admin/licenses/{urllib.parse.quote(a.license_id, safe='')}/credentials"),
    )
    p.add_argument("--license-id", required=True, help="lic_... (a license of the cloud backend)")
    p.add_argument("--label", help="a label, e.g. the customer's machine or CI job")
    p.add_argument("--out", metavar="FILE", help=_OUT_HELP)
    p = listing(
        command(
            actions,
            "list",
            "list a license's credentials",
            lambda a: _request(
                a,
                "GET",
                f"/v1/admin/licenses/{urllib.parse.quote(a.license_id, safe='')}/credentials",
                query={**_page(a), "state": a.state},
            ),
        )
    )
    p.add_argument("--license-id", required=True, help="lic_...")
    p.add_argument("--state", choices=("active", "revoked"), help="only credentials in this state")
    command(
        actions,
        "get",
        "get a credential (never its secret)",
        lambda a: _request(a, "GET", f"/v1/admin/credentials/{urllib.parse.quote(a.id, safe='')}"),
    ).add_argument("id", metavar="ID", help="crd_...")
    p = command(
        actions,
        "label",
        "set or clear a credential's label",
        lambda a: _request(
            a, "PATCH", f"/v1/admin/credentials/{urllib.parse.quote(a.id, safe='')}", {"label": None if a.clear else a.label}
        ),
    )
    p.add_argument("id", metavar="ID", help="crd_...")
    label = p.add_mutually_exclusive_group(required=True)
    label.add_argument("--label", help="the new label")
    label.add_argument("--clear", action="store_true", help="remove the label")
    p = command(
        actions,
        "revoke",
        "revoke a credential (final): its leases end at once",
        lambda a: _request(
            a, "POST", f"/v1/admin/credentials/{urllib.parse.quote(a.id, safe='')}/revoke", _compact(reason=a.reason)
        ),
    )
    p.add_argument("id", metavar="ID", help="crd_...")
    p.add_argument("--reason", help="why, for the event log")
    p = command(
        actions,
        "reissue",
        "replace a credential by a new one (the old one is revoked and its leases end): the "
        "new secret is shown once, in this answer or only in the --out file",
        lambda a: _credential_file_answer(a, f"/v1/admin/credentials/{urllib.parse.quote(a.id, safe='')}/reissue"),
    )
    p.add_argument("id", metavar="ID", help="crd_... (the credential to replace)")
    p.add_argument("--label", help="the new credential's label")
    p.add_argument("--out", metavar="FILE", help=_OUT_HELP)

    # leases (the cloud backend's routes)
    leases = resources.add_parser(
        "leases",
        help="seats held by devices (cloud backend)",
        description="Leases of the cloud backend: list, get, release (free a seat), and a license's daily usage.",
    )
    actions = leases.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = listing(
        command(
            actions,
            "list",
            "list a license's leases",
            lambda a: _request(
                a,
                "GET",
                f"/v1/admin/licenses/{urllib.parse.quote(a.license_id, safe='')}/leases",
                query={**_page(a), "state": a.state},
            ),
        )
    )
    p.add_argument("--license-id", required=True, help="lic_...")
    p.add_argument(
        "--state", choices=("active", "released", "expired", "taken_over", "revoked"), help="only leases in this state"
    )
    command(
        actions, "get", "get a lease", lambda a: _request(a, "GET", f"/v1/admin/leases/{urllib.parse.quote(a.id, safe='')}")
    ).add_argument("id", metavar="ID", help="lse_...")
    p = command(
        actions,
        "release",
        "end a lease and free its seat (its device is told at its next heartbeat)",
        lambda a: _request(a, "POST", f"/v1/admin/leases/{urllib.parse.quote(a.id, safe='')}/release", _compact(reason=a.reason)),
    )
    p.add_argument("id", metavar="ID", help="lse_...")
    p.add_argument("--reason", help="why, for the event log")
    p = command(
        actions,
        "usage",
        "a license's seats in use per UTC day: the peak of leases held at once, and check-outs",
        lambda a: _request(
            a,
            "GET",
            f"/v1/admin/licenses/{urllib.parse.quote(a.license_id, safe='')}/lease-usage",
            query={"from": a.from_date, "to": a.to_date},
        ),
    )
    p.add_argument("--license-id", required=True, help="lic_...")
    p.add_argument("--from", dest="from_date", metavar="YYYY-MM-DD", help="the first day (default: the last 30 days)")
    p.add_argument(
        "--to", dest="to_date", metavar="YYYY-MM-DD", help="the last day, included (default: today; at most 366 days in all)"
    )


def _credential_file_answer(args: argparse.Namespace, path: str) -> Any:
    """POST ``path`` {"label"?}, whose answer carries a credential file (create, reissue).

    With ``--out`` the file is created first (mode 0600, refused when anything is there already, before the
    gateway is asked, so no secret is made that cannot be saved), the credential file is written to it, and the
    answer is returned without it: the secret is never printed."""
    body = _compact(label=args.label)
    if not args.out:
        return _request(args, "POST", path, body)
    descriptor = _create_secret_file(args.out)
    try:
        answer = _request(args, "POST", path, body)
    except BaseException:
        os.close(descriptor)
        os.unlink(args.out)
        raise
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(answer["credential_file"], indent=2) + "\n")
    except OSError as error:
        os.unlink(args.out)
        raise UsageError(
            f"cannot write the credential file {args.out}: {error.strerror}; the credential "
            f"{answer['credential']['id']} was created but its secret is lost: reissue it"
        ) from None
    shown = {key: value for key, value in answer.items() if key != "credential_file"}
    return {**shown, "credential_file_written_to": args.out}


def _create_secret_file(path: str) -> int:
    """A new file at ``path``, mode 0600, open for writing; a UsageError when anything exists there."""
    try:
        return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise UsageError(
            f"{path} exists already: a credential file is never overwritten (choose another --out, or remove it)"
        ) from None
    except OSError as error:
        raise UsageError(f"cannot create the credential file {path}: {error.strerror}") from None


def _answer_request_file(args: argparse.Namespace) -> Any:
    """POST /v1/admin/activations/offline with the request file's token; the license file to --out if given."""
    if args.request_file == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(args.request_file, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read the request file {args.request_file}: {error}") from None
    if not text.strip():
        raise UsageError("the request file is empty")
    answer = _request(args, "POST", "/v1/admin/activations/offline", {"request": text.strip()})
    if args.out:
        try:
            with open(args.out, "w", encoding="utf-8") as handle:
                handle.write(answer["license_file"] + "\n")
        except OSError as error:
            raise UsageError(f"cannot write the license file {args.out}: {error.strerror}") from None
        return {"activation": answer["activation"], "license_file_written_to": args.out}
    return answer


# --- the parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="licensor",
        description="licensor: a self-hosted software-licensing gateway.",
        epilog="`licensor COMMAND --help` describes each command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def store_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--data-dir",
            default=os.environ.get("LICENSOR_DATA_DIR", "var"),
            help="where the SQLite file, the master key and the admin token file live (default: $LICENSOR_DATA_DIR or var)",
        )
        sub.add_argument(
            "--database-url",
            default=os.environ.get("LICENSOR_DATABASE_URL"),
            help="postgresql://user@host:port/db (default: $LICENSOR_DATABASE_URL, else the embedded "
            "SQLite store {data-dir}/licensor.db)",
        )

    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway until SIGTERM or Ctrl-C. With --workers N (PostgreSQL only) N processes share "
        "one listening socket; a worker that dies is started again (in-flight requests on it are lost; "
        "clients retry them with their Idempotency-Key). Logs one line per request to stderr: method, path, status, "
        "time and request id, never "
        "headers, bodies or query strings.",
    )
    store_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="the port to listen on (default 8080)")
    serve.add_argument("--public-url", help="how clients reach this gateway (default http://HOST:PORT)")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the port (default 1; more than 1 needs PostgreSQL)"
    )
    serve.add_argument(
        "--init-if-empty",
        action="store_true",
        help='when the store has no tenant yet, create the tenant "default" and write its admin token '
        f"to {{data-dir}}/{TOKEN_FILE_NAME} (mode 0600)",
    )
    serve.set_defaults(handler=_serve)

    init = commands.add_parser(
        "init",
        help="create a tenant and its first admin token",
        description="Create a tenant with its signing key and an admin API token. Prints the tenant id and the token "
        "on standard output, once: licensor keeps only the token's hash.",
    )
    store_options(init)
    init.add_argument("--name", default="default", help='the tenant\'s name (default "default")')
    init.set_defaults(handler=_init)

    _add_admin_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> NoReturn:
    parser = build_parser()
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


if __name__ == "__main__":
    main()
