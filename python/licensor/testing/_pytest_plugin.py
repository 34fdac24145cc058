"""licensor's pytest plugin (entry point ``pytest11``): the fixtures of a gateway under test on both stores."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import aiohttp
import pytest

from licensor.testing.drivers import Gateway, GatewayFleet, gateway_process, running_gateway, wait_ready
from licensor.testing.infrastructure import ThrowawayPostgres
from licensor.testing.vendors import Vendor, make_vendor

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


@pytest.fixture
def licensor_vendor(licensor_gateway: Gateway) -> Callable[..., Awaitable[Vendor]]:
    """Makes vendors on :func:`licensor_gateway`: ``await licensor_vendor("my-backend", seats=3, options={...})``
    (the arguments of :func:`licensor.testing.make_vendor` after the gateway)."""
    made: Callable[..., Awaitable[Any]] = partial(make_vendor, licensor_gateway)
    return made


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
