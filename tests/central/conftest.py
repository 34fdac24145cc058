"""Fixtures of the License Central tests: the real gateway on a real aiohttp server, on each store.

``gateway`` starts ``create_app`` on 127.0.0.1 (through :class:`aiohttp.test_utils.TestServer`) over a SQLite
file or the session's PostgreSQL database; ``await gateway.tenant()`` creates a tenant the way ``licensor
init`` does and gives its admin token, and ``await tenant.token(role)`` issues tokens of the other roles
through the admin API. Every answer the helpers receive is checked for the error contract (an error is
exactly ``{"error": {"code", "message"}}``, never a 500).

Every tenant created through these fixtures has its event chain verified when its test ends, and once more
when the session ends (on both stores), so no test leaves a chain that does not verify.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from licensor.central.events import verify_chain
from licensor.central.tenants import create_tenant
from licensor.gateway import keys
from licensor.gateway.app import create_app
from licensor.gateway.settings import Settings
from licensor.store import Store, open_store
from licensor.store.sql import placeholders_to_numbered

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
            return self.body["error"].get("code")  # type: ignore[no-any-return]
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
class ChainAudit:
    """Tenants created by the central tests, per store URL, for verifying their chains."""

    tenants: dict[str, set[str]] = field(default_factory=dict)

    def add(self, store_url: str, tenant_id: str) -> None:
        self.tenants.setdefault(store_url, set()).add(tenant_id)


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
        return created["token"]  # type: ignore[no-any-return]

    async def tokens(self) -> dict[str, str]:
        """One token of every admin-API role (the admin one is the tenant's first token)."""
        tokens = {"admin": self.admin_token}
        for role in ROLES[1:]:
            tokens[role] = await self.token(role)
        return tokens

    # --- catalog shortcuts ---------------------------------------------------------------------------
    async def product(self, code: str = "app", **extra: Any) -> dict[str, Any]:
        return await self.ok("POST", "/v1/admin/products", 201, json={"code": code, "name": code.title(), **extra})  # type: ignore[no-any-return]

    async def feature(self, product_id: str, code: str, **extra: Any) -> dict[str, Any]:
        body = {"product_id": product_id, "code": code, "name": code.title(), **extra}
        return await self.ok("POST", "/v1/admin/features", 201, json=body)  # type: ignore[no-any-return]

    async def policy(self, product_id: str, **extra: Any) -> dict[str, Any]:
        body = {"product_id": product_id, "name": "Standard", "backend": "cloud", **extra}
        return await self.ok("POST", "/v1/admin/policies", 201, json=body)  # type: ignore[no-any-return]

    async def customer(self, email: str, **extra: Any) -> dict[str, Any]:
        body = {"email": email, "name": email.split("@")[0], **extra}
        return await self.ok("POST", "/v1/admin/customers", 201, json=body)  # type: ignore[no-any-return]

    async def license(self, policy_id: str, **extra: Any) -> dict[str, Any]:
        return await self.ok("POST", "/v1/admin/licenses", 201, json={"policy_id": policy_id, **extra})  # type: ignore[no-any-return]

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
    client: TestClient
    store_url: str
    audit: ChainAudit
    tenants: list[Tenant] = field(default_factory=list)

    @property
    def store(self) -> Store:
        return self.app[keys.STORE]

    async def tenant(self, name: str = "Vendor") -> Tenant:
        created = await create_tenant(self.app[keys.STORE], self.app[keys.SECRETS], name)
        tenant = Tenant(self, created.tenant_id, created.admin_token)
        self.tenants.append(tenant)
        self.audit.add(self.store_url, created.tenant_id)
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


# --- the audit of every chain ------------------------------------------------------------------------
async def _verify_stored_chains(store_url: str, tenant_ids: set[str]) -> dict[str, dict[str, Any]]:
    store = open_store(store_url)
    await store.open()
    try:
        return {tenant_id: await verify_chain(store, tenant_id) for tenant_id in sorted(tenant_ids)}
    finally:
        await store.close()


@pytest.fixture(scope="session")
def chain_audit(postgres_url: str) -> Iterator[ChainAudit]:
    """Every tenant the central tests created; when the session ends, each one's chain must verify (it
    depends on the PostgreSQL database so that it ends before the server stops)."""
    audit = ChainAudit()
    yield audit
    failures = {}
    for store_url, tenant_ids in audit.tenants.items():
        if store_url.startswith("sqlite:///") and not os.path.exists(store_url[len("sqlite:///") :]):
            continue  # pytest removed the temporary directory already
        for tenant_id, verdict in asyncio.run(_verify_stored_chains(store_url, tenant_ids)).items():
            if not verdict["valid"]:
                failures[tenant_id] = verdict
    assert not failures, f"event chains that do not verify after the suite: {failures}"


@pytest.fixture(autouse=True)
def _chains_verify_after_each_test(chain_audit: ChainAudit) -> Iterator[list[dict[str, Any]]]:
    """After every test, every chain of the tenants it created verifies (the gateway fixture reports them)."""
    verdicts: list[dict[str, Any]] = []
    yield verdicts
    broken = [verdict for verdict in verdicts if not verdict["valid"]]
    assert not broken, f"event chains that do not verify after the test: {broken}"


@pytest.fixture
def gateway_plugins() -> tuple[object, ...]:
    """Plugins the gateway loads besides the installed ones; a test module overrides this to add its own."""
    return ()


@pytest.fixture
async def gateway(
    store_url: str,
    tmp_path: os.PathLike[str],
    chain_audit: ChainAudit,
    _chains_verify_after_each_test: list[dict[str, Any]],
    gateway_plugins: tuple[object, ...],
) -> AsyncIterator[Gateway]:
    """The real gateway on 127.0.0.1, on a SQLite file or the session's PostgreSQL database."""
    settings = Settings(data_dir=str(tmp_path), master_key=os.urandom(32))
    app = create_app(settings, store=open_store(store_url), plugins=gateway_plugins)
    server = TestServer(app, host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    gateway = Gateway(app, client, store_url, chain_audit)
    try:
        yield gateway
        verdicts = await gateway.verify_chains()
        _chains_verify_after_each_test.extend({**verdict, "tenant": tenant_id} for tenant_id, verdict in verdicts.items())
    finally:
        await client.close()


@pytest.fixture
async def tenant(gateway: Gateway) -> Tenant:
    return await gateway.tenant("Vendor A")


# --- direct database access (for tampering with stored rows) ------------------------------------------
class Database:
    """A connection of its own to the store's database, beside the gateway's (``?`` placeholders)."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: asyncpg.Connection | None = None

    async def __aenter__(self) -> Database:
        if self.store_url.startswith("sqlite:///"):
            self._sqlite = sqlite3.connect(self.store_url[len("sqlite:///") :], timeout=10, isolation_level=None)
        else:
            self._postgres = await asyncpg.connect(self.store_url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._postgres is not None:
            await self._postgres.close()

    async def execute(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self._sqlite is not None:
            cursor = self._sqlite.execute(sql, args)
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        assert self._postgres is not None
        return [dict(row) for row in await self._postgres.fetch(placeholders_to_numbered(sql), *args)]


async def db_execute(store_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run one statement (``?`` placeholders) directly on the database, outside the store; its rows."""
    async with Database(store_url) as database:
        return await database.execute(sql, *args)
