"""Test helpers for licensor and for authors of backend plugins (a pytest plugin; tests only).

Use it from a plugin's tests with ``pytest_plugins = ["licensor.testing"]`` in their ``conftest.py``. It gives:

- :class:`ThrowawayPostgres`: a real, private PostgreSQL server (initdb + pg_ctl in a temporary directory, a
  free port on 127.0.0.1), removed afterwards. As root, the server runs as the ``postgres`` user.
- Fixtures: ``licensor_postgres`` (one server per session), ``licensor_store_url`` (each test runs on a new
  SQLite file and on the session's PostgreSQL database), ``licensor_plugins`` (override it to return your
  plugin objects; installed plugins load through their entry points anyway) and ``licensor_gateway``: the real
  gateway with those plugins on that store, served by aiohttp on 127.0.0.1, as a :class:`Gateway`; and
  ``licensor_fleet``: that gateway plus, on PostgreSQL, a second gateway process on the same database
  (:class:`GatewayFleet`), for tests of concurrent requests, which :func:`send_at_once` sends at once.
  :class:`ManualClock` moves a backend's clock.
- :class:`Gateway` / :class:`Tenant`: ``await gateway.tenant()`` creates a tenant and gives its admin token;
  ``tenant.product()``, ``.feature()``, ``.policy()``, ``.license()``, ``.token(role)`` go through the admin API;
  every answer is checked against the error contract (:func:`check_error_contract`).
- :class:`BackendConformance`: the suite every backend must pass (verdict codes, error format, tenant
  isolation, idempotency, policy options). Subclass it in a test module as ``TestMyBackendConformance``,
  setting ``backend`` (and ``options``, ``invalid_options``); override :meth:`BackendConformance.idempotent_request`
  when the backend has state-changing operations of its own.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import glob
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from licensor import _impl
from licensor.central.events import verify_chain
from licensor.central.tenants import create_tenant
from licensor.gateway import keys
from licensor.store import Store


def check_expected_implementation() -> None:
    """Refuse a test run on the wrong core: ``LICENSOR_EXPECT_IMPLEMENTATION`` (set by ``make test`` for each
    pass) must name the loaded one. A pass on the wrong core is a failed run, never a skip.

    :raises RuntimeError: another core is loaded than the one expected.
    """
    expected = os.environ.get("LICENSOR_EXPECT_IMPLEMENTATION")
    if expected and expected != _impl.IMPLEMENTATION:
        raise RuntimeError(f"expected the {expected} core, but {_impl.IMPLEMENTATION} is loaded")


def postgres_bin_dir() -> str:
    """The directory of PostgreSQL's server binaries (Debian's layout, newest version first)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]), reverse=True)
    if not found:
        raise RuntimeError("PostgreSQL's server is not installed: `make test` installs it (apt-get install postgresql)")
    return os.path.dirname(found[0])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayPostgres:
    """A private PostgreSQL server for tests: ``with ThrowawayPostgres() as pg: pg.url``."""

    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="licensor-pg-")
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *command: str) -> None:
        subprocess.run([*self._as_postgres, *command], check=True, capture_output=True, cwd=self.directory)

    def start(self) -> ThrowawayPostgres:
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        data = os.path.join(self.directory, "data")
        self._run(os.path.join(self.bin_dir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        self._run(
            os.path.join(self.bin_dir, "pg_ctl"),
            "-D",
            data,
            "-l",
            os.path.join(self.directory, "server.log"),
            "-w",
            "start",
            "-o",
            options,
        )
        return self

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._run(os.path.join(self.bin_dir, "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.database_url(name)

    def stop(self) -> None:
        try:
            self._run(os.path.join(self.bin_dir, "pg_ctl"), "-D", os.path.join(self.directory, "data"), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # never started, or already gone
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()


# --- a gateway on a throwaway store, and helpers to drive it -----------------------------------------
ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")
ROLES = ("admin", "developer", "support", "read-only")


@dataclass
class Answer:
    """One HTTP answer: status, parsed JSON body (None when empty), headers and raw text."""

    status: int
    body: Any
    headers: Any
    text: str

    @property
    def code(self) -> str | None:
        """The error code of an error answer."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            code: str | None = self.body["error"].get("code")
            return code
        return None


def check_error_contract(answer: Answer) -> None:
    """Every error is JSON of exactly ``{"error": {"code", "message"}}`` with a 4xx/5xx status; never a 500."""
    assert answer.status != 500, f"500 Internal Server Error: {answer.text}"
    if answer.status >= 400:
        assert answer.headers.get("Content-Type", "").startswith("application/json"), answer.headers
        assert isinstance(answer.body, dict) and set(answer.body) == {"error"}, answer.text
        assert set(answer.body["error"]) == {"code", "message"}, answer.text
        assert ERROR_CODE.fullmatch(answer.body["error"]["code"]), answer.text
        assert isinstance(answer.body["error"]["message"], str) and answer.body["error"]["message"], answer.text


@dataclass
class Tenant:
    gateway: Gateway
    id: str
    admin_token: str

    async def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        """A request with this tenant's admin token (or ``token=`` another one, or ``token=None`` for none)."""
        kwargs.setdefault("token", self.admin_token)
        return await self.gateway.call(method, path, **kwargs)

    async def ok(self, method: str, path: str, status: int | None = None, **kwargs: Any) -> Any:
        """The body of a request that must succeed (with ``status`` if given)."""
        answer = await self.call(method, path, **kwargs)
        assert 200 <= answer.status < 300, f"{method} {path}: {answer.status} {answer.text}"
        if status is not None:
            assert answer.status == status, f"{method} {path}: {answer.status} {answer.text}"
        return answer.body

    async def token(self, role: str, product_id: str | None = None, name: str | None = None) -> str:
        """A new API token of ``role`` issued by this tenant's admin token."""
        body: dict[str, Any] = {"name": name or f"{role} token", "role": role}
        if product_id is not None:
            body["product_id"] = product_id
        created = await self.ok("POST", "/v1/admin/tokens", 201, json=body)
        assert created["role"] == role
        token: str = created["token"]
        return token

    async def tokens(self) -> dict[str, str]:
        """One token of every admin-API role (the admin one is the tenant's first token)."""
        tokens = {"admin": self.admin_token}
        for role in ROLES[1:]:
            tokens[role] = await self.token(role)
        return tokens

    # --- catalog shortcuts ---------------------------------------------------------------------------
    async def product(self, code: str = "app", **extra: Any) -> dict[str, Any]:
        product: dict[str, Any] = await self.ok(
            "POST", "/v1/admin/products", 201, json={"code": code, "name": code.title(), **extra}
        )
        return product

    async def feature(self, product_id: str, code: str, **extra: Any) -> dict[str, Any]:
        body = {"product_id": product_id, "code": code, "name": code.title(), **extra}
        feature: dict[str, Any] = await self.ok("POST", "/v1/admin/features", 201, json=body)
        return feature

    async def policy(self, product_id: str, **extra: Any) -> dict[str, Any]:
        body = {"product_id": product_id, "name": "Standard", "backend": "example", **extra}
        policy: dict[str, Any] = await self.ok("POST", "/v1/admin/policies", 201, json=body)
        return policy

    async def customer(self, email: str, **extra: Any) -> dict[str, Any]:
        body = {"email": email, "name": email.split("@")[0], **extra}
        customer: dict[str, Any] = await self.ok("POST", "/v1/admin/customers", 201, json=body)
        return customer

    async def license(self, policy_id: str, **extra: Any) -> dict[str, Any]:
        license: dict[str, Any] = await self.ok("POST", "/v1/admin/licenses", 201, json={"policy_id": policy_id, **extra})
        return license

    async def list_all(self, path: str, limit: int = 200, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a list, following next_cursor."""
        items: list[dict[str, Any]] = []
        params = {**kwargs.pop("params", {}), "limit": str(limit)}
        while True:
            page = await self.ok("GET", path, params=params, **kwargs)
            items.extend(page["data"])
            if not page["has_more"]:
                assert page["next_cursor"] is None
                return items
            params = {**params, "cursor": page["next_cursor"]}


@dataclass
class Gateway:
    app: web.Application
    client: TestClient[web.Request, web.Application]
    store_url: str
    on_tenant: Callable[[str, str], None] | None = None  # told (store URL, tenant id) of each tenant made
    tenants: list[Tenant] = field(default_factory=list)

    @property
    def store(self) -> Store:
        return self.app[keys.STORE]

    async def tenant(self, name: str = "Vendor") -> Tenant:
        created = await create_tenant(self.app[keys.STORE], self.app[keys.SECRETS], name)
        tenant = Tenant(self, created.tenant_id, created.admin_token)
        self.tenants.append(tenant)
        if self.on_tenant is not None:
            self.on_tenant(self.store_url, created.tenant_id)
        return tenant

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        params: Any = None,
    ) -> Answer:
        """One request; the answer is checked against the error contract."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if json is not None:
            data = orjson.dumps(json)
            sent.setdefault("Content-Type", "application/json")
        async with self.client.request(method, path, data=data, headers=sent, params=params) as response:
            text = await response.text()
            body = None
            if text and response.content_type == "application/json":
                body = orjson.loads(text)
            answer = Answer(response.status, body, response.headers, text)
        check_error_contract(answer)
        return answer

    async def verify_chains(self) -> dict[str, dict[str, Any]]:
        return {tenant.id: await verify_chain(self.store, tenant.id) for tenant in self.tenants}


@asynccontextmanager
async def running_gateway(
    store_url: str,
    data_dir: str,
    plugins: tuple[object, ...] = (),
    on_tenant: Callable[[str, str], None] | None = None,
    master_key: bytes | None = None,
) -> AsyncIterator[Gateway]:
    """The real gateway with ``plugins`` (and the installed ones) on ``store_url``, served on 127.0.0.1 (with a
    new master key unless given one: gateways sharing a database need the same)."""
    from licensor.gateway.app import create_app
    from licensor.gateway.settings import Settings
    from licensor.store import open_store

    settings = Settings(data_dir=data_dir, master_key=master_key or os.urandom(32))
    app = create_app(settings, store=open_store(store_url), plugins=plugins)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Gateway(app, client, store_url, on_tenant)
    finally:
        await client.close()


@contextmanager
def gateway_process(store_url: str, data_dir: str, master_key: bytes) -> Iterator[str]:
    """Another gateway process (``licensor serve``) on ``store_url`` sharing ``master_key``, on a free port of
    127.0.0.1: its base URL (see :func:`wait_ready`). Its output goes to ``data_dir/gateway.log``; it is
    stopped (SIGTERM, then SIGKILL) when the block ends."""
    port = free_port()
    env = {**os.environ, "LICENSOR_MASTER_KEY": base64.urlsafe_b64encode(master_key).decode().rstrip("=")}
    with open(os.path.join(data_dir, "gateway.log"), "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "licensor.cli",
                "serve",
                "--database-url",
                store_url,
                "--data-dir",
                data_dir,
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    """Wait until the gateway at ``url`` answers ``/readyz`` (it reaches its database).

    :raises AssertionError: not within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{url}/readyz") as answer:
                    if answer.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the gateway at {url} was not ready within {timeout_s:g} s")


STORES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def licensor_postgres() -> Iterator[ThrowawayPostgres]:
    """One real PostgreSQL server for the whole session, removed at the end."""
    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def licensor_postgres_url(licensor_postgres: ThrowawayPostgres) -> str:
    """A database shared by the session's PostgreSQL tests; each test works in tenants of its own."""
    return licensor_postgres.create_database()


@pytest.fixture(params=STORES)
def licensor_store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """The URL of a store of each kind: a new SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{os.path.join(tmp_path, 'licensor.db')}"
    return str(request.getfixturevalue("licensor_postgres_url"))


@pytest.fixture
def licensor_plugins() -> tuple[object, ...]:
    """The plugins the gateway loads besides the installed ones; override it to register yours."""
    return ()


@pytest.fixture
async def licensor_gateway(
    licensor_store_url: str, tmp_path: os.PathLike[str], licensor_plugins: tuple[object, ...]
) -> AsyncIterator[Gateway]:
    """The real gateway with ``licensor_plugins`` on each store, on 127.0.0.1."""
    async with running_gateway(licensor_store_url, str(tmp_path), licensor_plugins) as gateway:
        yield gateway


class ManualClock:
    """A clock to move by hand (microseconds since the epoch), for a backend's ``clock`` and the SDK's verdicts."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    @property
    def seconds(self) -> int:
        """The time in whole seconds, as signed documents carry it."""
        return self.now // 1_000_000

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)

    def set(self, moment: datetime.datetime) -> None:
        """Move to ``moment`` (an aware datetime)."""
        self.now = int(moment.timestamp()) * 1_000_000 + moment.microsecond


@dataclass
class GatewayFleet:
    """The gateways of one store (``licensor_fleet``): ``gateway`` runs in this process (admin calls and store
    reads go there); ``urls`` are the base URLs requests are spread over (one on SQLite, two processes on
    PostgreSQL); ``session`` is an aiohttp client session for requests."""

    gateway: Gateway
    urls: list[str]
    session: aiohttp.ClientSession
    store: str

    def url(self, n: int) -> str:
        """The gateway request ``n`` goes to (round robin)."""
        return self.urls[n % len(self.urls)]


@pytest.fixture
def licensor_second_process(licensor_store_url: str, tmp_path: os.PathLike[str]) -> Iterator[tuple[str | None, bytes]]:
    """On PostgreSQL, another gateway process (``licensor serve``) on the same database: (its URL, the master
    key both gateways share). On SQLite, which one process serves, none: (None, a master key)."""
    master_key = os.urandom(32)
    if not licensor_store_url.startswith("postgresql"):
        yield None, master_key
        return
    data_dir = os.path.join(tmp_path, "second")
    os.makedirs(data_dir)
    with gateway_process(licensor_store_url, data_dir, master_key) as url:
        yield url, master_key


@pytest.fixture
async def licensor_fleet(
    licensor_store_url: str, tmp_path: os.PathLike[str], licensor_second_process: tuple[str | None, bytes]
) -> AsyncIterator[GatewayFleet]:
    """The gateway of :func:`licensor_gateway` and, on PostgreSQL, a second gateway process on its database,
    for tests of concurrent requests; afterwards every tenant's event chain must verify."""
    other_url, master_key = licensor_second_process
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    async with (
        running_gateway(licensor_store_url, str(tmp_path), master_key=master_key) as gateway,
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        urls = [str(gateway.client.make_url("")).rstrip("/")]
        if other_url is not None:
            await wait_ready(other_url)
            urls.append(other_url)
        yield GatewayFleet(gateway, urls, session, "postgresql" if other_url else "sqlite")
        # Events appended concurrently (by two processes on PostgreSQL) still form one unbroken chain.
        for tenant_id, verdict in (await gateway.verify_chains()).items():
            assert verdict["valid"], (tenant_id, verdict)


# --- requests sent at once, for concurrency tests --------------------------------------------------------
@dataclass
class Sent:
    """One request of :func:`post_json` or :func:`send_at_once`: what it was (``action``), where it went, its
    answer, and when it left and was answered (``time.monotonic()``)."""

    action: str
    url: str
    answer: Answer
    started: float
    done: float

    @property
    def seconds(self) -> float:
        return self.done - self.started


async def post_json(
    session: aiohttp.ClientSession, url: str, path: str, body: Any, *, action: str = "", idempotent: bool = False
) -> Sent:
    """POST ``body`` as JSON (with an Idempotency-Key of its own if ``idempotent``, as the SDK sends them); a
    transport failure is an answer of status 0 (reported, never raised)."""
    started = time.monotonic()
    headers = {"Content-Type": "application/json"}
    if idempotent:
        headers["Idempotency-Key"] = f"test-{secrets.token_urlsafe(18)}"
    try:
        async with session.post(url + path, data=orjson.dumps(body), headers=headers) as response:
            text = await response.text()
            parsed = orjson.loads(text) if text and response.content_type == "application/json" else None
            answer = Answer(response.status, parsed, response.headers, text)
    except (TimeoutError, aiohttp.ClientError) as error:
        answer = Answer(0, None, {}, f"{type(error).__name__}: {error}")
    return Sent(action or path, url, answer, started, time.monotonic())


def open_client(connections: int) -> aiohttp.ClientSession:
    """A client session allowing ``connections`` requests in flight at once (aiohttp's default is 100 in all)."""
    connector = aiohttp.TCPConnector(limit=connections + 16, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60, connect=10))


async def send_at_once(jobs: list[tuple[str, str, Any]], *, idempotent: bool = False) -> tuple[list[Sent], float]:
    """POST every (url, path, JSON body) at once: the answers in order, and the wall time of the burst.

    The client runs in a thread with an event loop of its own: sharing an in-process gateway's loop, it would
    starve that gateway, which would then answer only after another process had served the whole race. Its
    connections are opened first (one per request, on ``/healthz``), so the requests leave together."""

    async def send() -> tuple[list[Sent], float]:
        async with open_client(len(jobs)) as session:

            async def open_connection(url: str) -> None:
                async with session.get(f"{url}/healthz") as answer:
                    await answer.read()
                    assert answer.status == 200

            await asyncio.gather(*(open_connection(url) for url, _, _ in jobs))
            started = time.monotonic()
            sent = await asyncio.gather(*(post_json(session, url, path, body, idempotent=idempotent) for url, path, body in jobs))
            return list(sent), time.monotonic() - started

    return await asyncio.to_thread(asyncio.run, send())


def no_server_errors(sent: list[Sent]) -> None:
    """No 5xx and no transport failure (listed precisely), and every error in the error format."""
    failed = [
        (s.action, s.url, s.answer.status, s.answer.text[:300]) for s in sent if s.answer.status >= 500 or s.answer.status == 0
    ]
    assert not failed, f"{len(failed)} of {len(sent)} requests failed on the server or the wire, e.g. {failed[:5]}"
    for s in sent:
        check_error_contract(s.answer)


# --- the conformance suite of backends ----------------------------------------------------------------
def _time(offset_days: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=offset_days)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class MadeLicense:
    """What :meth:`BackendConformance.licensed` made: a product with features, a policy and a license."""

    tenant: Tenant
    product: dict[str, Any]
    policy: dict[str, Any]
    license: dict[str, Any]

    async def check(self, **body: Any) -> dict[str, Any]:
        """The verdict of ``POST /v1/check`` with this license's key (``body`` adds to or replaces fields)."""
        sent = {"tenant": self.tenant.id, "product": self.product["code"], "license_key": self.license["key"], **body}
        answer = await self.tenant.gateway.call("POST", "/v1/check", json=sent)
        assert answer.status == 200, answer.text
        verdict: dict[str, Any] = answer.body["verdict"]
        return verdict


class BackendConformance:
    """What every backend must do, through the real gateway on both stores (``licensor_gateway``).

    Set ``backend`` to the backend's name, ``options`` to valid policy options, ``invalid_options`` to options
    its schema must refuse. A backend with state-changing operations of its own overrides
    :meth:`idempotent_request`. Override ``licensor_plugins`` (a fixture) if the plugin is not installed.
    """

    backend: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    invalid_options: ClassVar[tuple[dict[str, Any], ...]] = ({"no such option, surely": True},)

    async def licensed(
        self, gateway: Gateway, tenant: Tenant | None = None, product_code: str | None = None, **license_fields: Any
    ) -> MadeLicense:
        """A tenant's new product (features ``export`` and ``print``), a policy of this backend granting
        ``export`` and a license of it."""
        tenant = tenant or await gateway.tenant("Conformance")
        product = await tenant.product(code=product_code or f"conformance-{uuid.uuid4().hex[:8]}")
        for code in ("export", "print"):
            await tenant.feature(product["id"], code)
        policy = await tenant.policy(product["id"], backend=self.backend, options=self.options, features=[{"code": "export"}])
        license = await tenant.license(policy["id"], **license_fields)
        return MadeLicense(tenant, product, policy, license)

    async def idempotent_request(self, made: MadeLicense) -> tuple[str, str, dict[str, Any], str | None] | None:
        """A state-changing request of the backend's own (method, path, JSON body, bearer token or None for a
        request that authenticates itself) for :meth:`test_a_repeated_request_counts_once`, or None when the
        backend has none."""
        return None

    # --- verdict codes --------------------------------------------------------------------------------
    async def test_a_valid_license_is_valid(self, licensor_gateway: Gateway) -> None:
        made = await self.licensed(licensor_gateway)
        verdict = await made.check(features=["export"])
        assert (verdict["code"], verdict["valid"], verdict["license_id"]) == ("VALID", True, made.license["id"])
        assert "export" in {item["feature"] for item in verdict["entitlements"]}

    async def test_refusals_carry_their_codes(self, licensor_gateway: Gateway) -> None:
        from licensor.central import license_keys

        made = await self.licensed(licensor_gateway)
        assert (await made.check(features=["print"]))["code"] == "FEATURE_NOT_ENTITLED"
        assert (await made.check(product="no-such-product"))["code"] == "NOT_FOUND"
        assert (await made.check(license_key=license_keys.generate()))["code"] == "NOT_FOUND"
        lapsed = await self.licensed(licensor_gateway, made.tenant, starts_at=_time(-30), expires_at=_time(-1))
        assert (await lapsed.check())["code"] == "EXPIRED"
        future = await self.licensed(licensor_gateway, made.tenant, starts_at=_time(10))
        assert (await future.check())["code"] == "NOT_YET_VALID"
        path = f"/v1/admin/licenses/{made.license['id']}"
        await made.tenant.ok("POST", f"{path}/suspend")
        assert (await made.check())["code"] == "SUSPENDED"
        await made.tenant.ok("POST", f"{path}/reinstate")
        assert (await made.check())["code"] == "VALID"
        await made.tenant.ok("POST", f"{path}/revoke")
        assert (await made.check())["code"] == "REVOKED"

    async def test_every_verdict_is_one_of_the_documented_codes(self, licensor_gateway: Gateway) -> None:
        from licensor.verdict import DESCRIPTIONS, Code

        made = await self.licensed(licensor_gateway)
        for body in ({}, {"features": ["export"]}, {"features": ["print"]}, {"version": "1.0"}, {"product": "other"}):
            verdict = await made.check(**body)
            assert Code(verdict["code"]) in DESCRIPTIONS and verdict["valid"] is (verdict["code"] == "VALID")
            assert verdict["message"]

    # --- error format ---------------------------------------------------------------------------------
    async def test_bad_requests_get_the_error_format(self, licensor_gateway: Gateway) -> None:
        made = await self.licensed(licensor_gateway)
        base = {"tenant": made.tenant.id, "product": made.product["code"], "license_key": made.license["key"]}
        bad_bodies: list[Any] = [
            b"{",
            b"[]",
            {**base, "features": "export"},
            {**base, "unknown": 1},
            {"product": "x"},
            {**base, "license_key": "not a key"},
            {**base, "tenant": "ten_x"},
        ]
        for body in bad_bodies:
            sent = {"data": body} if isinstance(body, bytes) else {"json": body}
            answer = await licensor_gateway.call("POST", "/v1/check", **sent)  # the call checks the error contract
            assert 400 <= answer.status < 500 and answer.code, (body, answer.text)
        # The backend's own operations refuse a missing token and a malformed body with the same format.
        for operation in self._own_operations(licensor_gateway):
            answer = await licensor_gateway.call(operation.method, operation.path.replace("{id}", "x"))
            assert 400 <= answer.status < 500 and answer.code, (operation.path, answer.text)

    async def test_invalid_policy_options_are_refused_when_the_policy_is_made(self, licensor_gateway: Gateway) -> None:
        tenant = await licensor_gateway.tenant("Conformance")
        product = await tenant.product(code="conformance")
        for options in self.invalid_options:
            answer = await tenant.call(
                "POST",
                "/v1/admin/policies",
                json={"product_id": product["id"], "name": "P", "backend": self.backend, "options": options},
            )
            assert (answer.status, answer.code) == (422, "INVALID_POLICY_OPTIONS"), (options, answer.text)

    # --- tenant isolation -----------------------------------------------------------------------------
    async def test_another_tenant_never_sees_the_license(self, licensor_gateway: Gateway) -> None:
        made = await self.licensed(licensor_gateway)
        other = await licensor_gateway.tenant("Other vendor")
        assert (await made.check(tenant=other.id))["code"] == "NOT_FOUND"
        twin = await self.licensed(licensor_gateway, other, made.product["code"])  # the same product code there
        assert (await twin.check(license_key=made.license["key"]))["code"] == "NOT_FOUND"
        answer = await other.call("GET", f"/v1/admin/licenses/{made.license['id']}")
        assert answer.status == 404

    # --- idempotency ----------------------------------------------------------------------------------
    async def test_a_repeated_request_counts_once(self, licensor_gateway: Gateway) -> None:
        made = await self.licensed(licensor_gateway)
        key = f"conformance-{uuid.uuid4().hex}"
        body = {"policy_id": made.policy["id"]}
        first = await made.tenant.call("POST", "/v1/admin/licenses", json=body, headers={"Idempotency-Key": key})
        again = await made.tenant.call("POST", "/v1/admin/licenses", json=body, headers={"Idempotency-Key": key})
        assert first.status == again.status == 201 and first.body == again.body
        assert again.headers.get("Idempotent-Replayed") == "true"
        request = await self.idempotent_request(made)
        if request is None:
            assert not [op for op in self._own_operations(licensor_gateway) if op.changes_state], (
                "the backend changes state through its own operations: override idempotent_request"
            )
            return
        method, path, json_body, token = request
        key = f"conformance-{uuid.uuid4().hex}"
        first = await licensor_gateway.call(method, path, json=json_body, token=token, headers={"Idempotency-Key": key})
        again = await licensor_gateway.call(method, path, json=json_body, token=token, headers={"Idempotency-Key": key})
        assert 200 <= first.status < 300 and (first.status, first.body) == (again.status, again.body), (first.text, again.text)
        assert again.headers.get("Idempotent-Replayed") == "true"

    def _own_operations(self, gateway: Gateway) -> list[Any]:
        from licensor.gateway import keys

        backend = gateway.app[keys.BACKENDS].get(self.backend)
        assert backend is not None, f"the gateway has no {self.backend!r} backend"
        return list(backend.operations())
