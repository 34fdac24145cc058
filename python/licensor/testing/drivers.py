"""Drivers of a gateway under test: the real gateway on a throwaway store, its tenants, and the error contract
every answer is checked against."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from licensor.backend import Backend
from licensor.central.events import verify_chain
from licensor.central.tenants import create_tenant
from licensor.gateway import keys
from licensor.gateway.services import GatewayServices
from licensor.gateway.settings import OPTIONS, RateLimit, Settings, load_configuration
from licensor.store import Store
from licensor.testing.clocks import ManualClock
from licensor.testing.infrastructure import free_port

# --- a gateway on a throwaway store, and helpers to drive it -----------------------------------------
ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")

_RATE_LIMITS = tuple(option for option in OPTIONS if option.name.startswith("rate_limit_"))
TESTING_ENVIRONMENT = {option.env: "100000000/1s" for option in _RATE_LIMITS}
"""The rate limits of test gateways: a budget no test exhausts, so the limits' code runs on every request while
tests send bursts from one address; a test of the limits sets its own budgets."""


def fixture_settings(**values: Any) -> Settings:
    """:class:`Settings` with ``values`` and the rate limits of :data:`TESTING_ENVIRONMENT`."""
    unlimited: dict[str, Any] = {option.name: RateLimit(100_000_000, 1.0) for option in _RATE_LIMITS}
    return Settings(**{**unlimited, **values})


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

    @property
    def url(self) -> str:
        """The gateway's base URL on 127.0.0.1 (``http://127.0.0.1:PORT``), for clients outside this test's loop."""
        return str(self.client.make_url("")).rstrip("/")

    def backend(self, name: str) -> Backend:
        """The gateway's backend named ``name``.

        :raises LookupError: the gateway has no such backend."""
        backend = self.app[keys.BACKENDS].get(name)
        if backend is None:
            raise LookupError(f"this gateway has no {name!r} backend")
        return backend

    @property
    def clock(self) -> ManualClock | None:
        """The clock :meth:`freeze_clock` stopped (None while the gateway reads the system's clock)."""
        clock = self._services.clock
        return clock if isinstance(clock, ManualClock) else None

    def freeze_clock(self, now_us: int | None = None) -> ManualClock:
        """Stop the gateway's clock at ``now_us`` (default: now) and give it to move by hand; verdicts, signed
        answers and every backend's :attr:`~licensor.Backend.clock` read it from then on."""
        clock = ManualClock(time.time_ns() // 1000 if now_us is None else now_us)
        self._services.clock = clock
        return clock

    def set_rate_limits(self, **values: str) -> None:
        """Give the gateway new rate limits, counted afresh: ``values`` are settings as ``licensor serve`` takes them
        (``rate_limit_churn="3/1d"``, ``rate_limit_address="off"``, ``trusted_proxies="127.0.0.1"``); the others
        stay as they are (the test gateway's: see :data:`TESTING_ENVIRONMENT`).

        :raises licensor.gateway.settings.SettingError: a value ``licensor serve`` would refuse."""
        self.app[keys.LIMITS].configure(load_configuration(values, {}, base=self.app[keys.SETTINGS]).settings)

    @property
    def _services(self) -> GatewayServices:
        services = self.app[keys.SERVICES]
        assert isinstance(services, GatewayServices)
        return services

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
    from licensor.store import open_store

    # As `licensor serve` reads them (LICENSOR_* variables apply), with the rate limits of TESTING_ENVIRONMENT.
    base = fixture_settings(data_dir=data_dir, master_key=master_key or os.urandom(32))
    settings = load_configuration(base=base, environ=os.environ).settings
    app = create_app(settings, store=open_store(store_url), plugins=plugins)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Gateway(app, client, store_url, on_tenant)
    finally:
        await client.close()


@contextmanager
def gateway_process(
    store_url: str,
    data_dir: str,
    master_key: bytes,
    *,
    workers: int = 1,
    environment: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """Another gateway process (``licensor serve``, with ``workers`` worker processes) on ``store_url`` sharing
    ``master_key``, on ``port`` (default: a free one) of 127.0.0.1, with ``environment`` added to this process's:
    its base URL (see :func:`wait_ready`). Its output goes to ``data_dir/gateway.log``; it is stopped (SIGTERM,
    then SIGKILL) when the block ends."""
    port = port or free_port()
    env = {
        **os.environ,
        **TESTING_ENVIRONMENT,
        **(environment or {}),
        "LICENSOR_MASTER_KEY": base64.urlsafe_b64encode(master_key).decode().rstrip("="),
    }
    with open(os.path.join(data_dir, "gateway.log"), "ab") as log:
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
                "--workers",
                str(workers),
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
