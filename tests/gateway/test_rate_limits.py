"""Rate limits, through real HTTP on both stores: 2,000 guessed license keys from one address are answered 429 with
Retry-After once the budget is used, with 1 worker and with 2 (each keeps half), while checks from another address
go on unaffected; the per-address budget counts the client behind a trusted proxy, never an address a client wrote
itself; a tenant's budget; a license's activations and deactivations (churn); and the budget arithmetic."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest
from licensor.central.license_keys import generate
from licensor.central.secrets import Secrets
from licensor.central.tenants import create_tenant
from licensor.errors import RateLimitedError
from licensor.gateway.limits import Budget, limit_key
from licensor.gateway.settings import RateLimit
from licensor.store import open_store
from licensor.testing import Gateway, gateway_process, make_vendor, wait_ready

GUESSES = 2_000
BUDGET = 30  # unknown keys per address per 10 minutes
GUESSER, CUSTOMER = "127.0.0.2", "127.0.0.1"  # two client addresses, both loopback


# --- the budget arithmetic ----------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_budget_lets_its_count_through_at_once_then_refills_evenly() -> None:
    clock = Clock()
    budget = Budget("address", RateLimit(10, 60.0), workers=1, clock=clock)
    for _ in range(10):
        budget.take("a", "requests")
    with pytest.raises(RateLimitedError) as refused:
        budget.take("a", "requests")
    assert refused.value.headers == {
        "Retry-After": "6",
        "RateLimit-Policy": '"address";q=10;w=60',
        "RateLimit": '"address";r=0;t=6',
    }
    assert (refused.value.http_status, refused.value.code) == (429, "RATE_LIMITED")
    budget.take("b", "requests")  # another key has its own budget
    clock.now += 6.0  # one more every 60/10 s
    budget.take("a", "requests")
    with pytest.raises(RateLimitedError):
        budget.take("a", "requests")
    clock.now += 60.0
    for _ in range(10):
        budget.take("a", "requests")


def test_a_clock_set_back_gives_a_full_budget_not_a_lock_out_as_long_as_the_jump() -> None:
    clock = Clock()
    budget = Budget("address", RateLimit(2, 60.0), workers=1, clock=clock)
    budget.take("a", "requests")
    budget.take("a", "requests")
    clock.now -= 86_400.0  # NTP, or a test, sets the clock a day back
    budget.take("a", "requests")
    budget.take("a", "requests")
    with pytest.raises(RateLimitedError) as refused:
        budget.take("a", "requests")
    assert refused.value.headers["Retry-After"] == "30"


def test_with_n_workers_each_keeps_a_nth_of_the_budget() -> None:
    budget = Budget("key-failures", RateLimit(30, 600.0), workers=2, clock=Clock())
    taken = 0
    with pytest.raises(RateLimitedError) as refused:
        while True:
            budget.take("a", "guesses")
            taken += 1
    assert taken == 15 and refused.value.headers["RateLimit-Policy"] == '"key-failures";q=15;w=600'


def test_checking_a_budget_uses_none_of_it() -> None:
    budget = Budget("key-failures", RateLimit(2, 60.0), workers=1, clock=Clock())
    for _ in range(5):
        budget.check("a", "guesses")
    budget.take("a", "guesses")
    budget.take("a", "guesses")
    with pytest.raises(RateLimitedError):
        budget.check("a", "guesses")


def test_a_budget_forgets_keys_with_a_full_budget_first_and_never_grows_past_its_bound() -> None:
    clock = Clock()
    budget = Budget("address", RateLimit(2, 60.0), workers=1, clock=clock, max_keys=100)
    budget.take("busy", "requests")
    budget.take("busy", "requests")
    for n in range(1_000):
        clock.now += 0.001
        budget.take(f"client {n}", "requests")
        assert len(budget._full_at) <= 100
    assert "client 999" in budget._full_at


def test_an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_one_as_ipv4() -> None:
    assert limit_key("2001:db8:1:2:aaaa::1") == limit_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert limit_key("2001:db8:1:3::1") != limit_key("2001:db8:1:2::1")
    assert limit_key("::ffff:203.0.113.7") == "203.0.113.7" and limit_key("203.0.113.7") == "203.0.113.7"
    assert limit_key("fe80::1%eth0") == "fe80::/64" and limit_key("not an address") == "not an address"


# --- through HTTP, in the gateway's process (both stores) ------------------------------------------------------
async def _get(url: str, local: str, headers: dict[str, str] | None = None, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    connector = aiohttp.TCPConnector(local_addr=(local, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(url=url, headers=headers, **kwargs) as answer,
    ):
        return answer.status, dict(answer.headers), await answer.json(content_type=None)


async def test_the_address_budget_counts_the_client_behind_a_trusted_proxy_only(licensor_gateway: Gateway) -> None:
    url = licensor_gateway.url + "/healthz"
    licensor_gateway.set_rate_limits(rate_limit_address="3/1m", trusted_proxies=CUSTOMER)
    # Through the trusted proxy (127.0.0.1), each client named by X-Forwarded-For has its own budget ...
    for client in ("203.0.113.7", "198.51.100.9"):
        statuses = [(await _get(url, CUSTOMER, {"X-Forwarded-For": f"10.9.9.9, {client}"}, method="GET"))[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429], client
    # ... the last address the proxy did not add is the client's: one it wrote first changes nothing.
    status, headers, body = await _get(url, CUSTOMER, {"X-Forwarded-For": "192.0.2.1, 203.0.113.7"}, method="GET")
    assert (status, body["error"]["code"]) == (429, "RATE_LIMITED") and int(headers["Retry-After"]) >= 1
    assert headers["RateLimit-Policy"] == '"address";q=3;w=60' and headers["RateLimit"].startswith('"address";r=0;t=')
    # Another peer is no trusted proxy: what it says it forwards for is ignored, its own address counts.
    statuses = [(await _get(url, GUESSER, {"X-Forwarded-For": f"203.0.113.{n}"}, method="GET"))[0] for n in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_a_tenant_budget_is_the_tenants_alone(licensor_gateway: Gateway) -> None:
    busy, quiet = await licensor_gateway.tenant("Busy"), await licensor_gateway.tenant("Quiet")
    licensor_gateway.set_rate_limits(rate_limit_tenant="5/1m")
    answers = [await busy.call("GET", "/v1/admin/products") for _ in range(6)]
    assert [a.status for a in answers] == [200] * 5 + [429] and answers[-1].code == "RATE_LIMITED"
    assert (await quiet.call("GET", "/v1/admin/products")).status == 200


async def test_unknown_keys_and_tokens_share_one_guessing_budget_per_address(licensor_gateway: Gateway) -> None:
    vendor = await make_vendor(licensor_gateway, "cloud-lite")
    licensor_gateway.set_rate_limits(rate_limit_key_failures="3/10m")
    check = {"tenant": vendor.tenant.id, "product": "app"}
    url = licensor_gateway.url
    statuses = []
    for _ in range(2):
        statuses.append((await _get(url + "/v1/check", GUESSER, json={**check, "license_key": generate()}, method="POST"))[0])
    guessed_token = {"Authorization": "Bearer tok_01ARZ3NDEKTSV4RRFFQ69G5FAV.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
    statuses.append((await _get(url + "/v1/admin/products", GUESSER, guessed_token, method="GET"))[0])
    status, _, body = await _get(url + "/v1/check", GUESSER, json={**check, "license_key": vendor.license["key"]}, method="POST")
    assert statuses == [200, 200, 401] and (status, body["error"]["code"]) == (429, "RATE_LIMITED")  # even a right key now
    status, _, body = await _get(url + "/v1/check", CUSTOMER, json={**check, "license_key": vendor.license["key"]}, method="POST")
    assert status == 200 and body["verdict"]["code"] == "VALID"


# --- the acceptance: 2,000 guesses, 1 and 2 workers, a customer unaffected ---------------------------------------
async def test_guessed_keys_are_refused_after_the_budget_while_other_addresses_check_on(
    licensor_store_url: str, tmp_path: Any
) -> None:
    workers = 2 if licensor_store_url.startswith("postgresql") else 1  # SQLite serves one process
    master_key = os.urandom(32)
    store = open_store(licensor_store_url)
    await store.open()
    try:
        made = await create_tenant(store, Secrets(master_key), "Guessed vendor")
    finally:
        await store.close()
    limits = {"LICENSOR_RATE_LIMIT_KEY_FAILURES": f"{BUDGET}/10m"}
    with gateway_process(licensor_store_url, str(tmp_path), master_key, workers=workers, environment=limits) as url:
        await wait_ready(url)
        admin = {"Authorization": f"Bearer {made.admin_token}"}
        async with aiohttp.ClientSession(base_url=url, headers=admin) as session:
            for path, body in (("/v1/admin/products", {"code": "app", "name": "App"}),):
                async with session.post(path, json=body) as answer:
                    product = await answer.json()
            async with session.post(
                "/v1/admin/policies", json={"product_id": product["id"], "name": "P", "backend": "cloud-lite"}
            ) as answer:
                policy = await answer.json()
            async with session.post("/v1/admin/licenses", json={"policy_id": policy["id"]}) as answer:
                license = await answer.json()
        check = {"tenant": made.tenant_id, "product": "app"}
        guessed: Counter[int] = Counter()
        retry_after: set[str] = set()
        customer_verdicts: Counter[str] = Counter()
        done = asyncio.Event()

        async def guesser(session: aiohttp.ClientSession, keys: list[str]) -> None:
            for key in keys:
                async with session.post(url + "/v1/check", json={**check, "license_key": key}) as answer:
                    guessed[answer.status] += 1
                    if answer.status == 429:
                        retry_after.add(answer.headers["Retry-After"])

        async def customer(session: aiohttp.ClientSession, customer_times: list[float]) -> None:
            while not done.is_set():
                started = time.perf_counter()
                async with session.post(url + "/v1/check", json={**check, "license_key": license["key"]}) as answer:
                    customer_verdicts[f"{answer.status} {(await answer.json())['verdict']['code']}"] += 1
                customer_times.append(time.perf_counter() - started)

        keys = [generate() for _ in range(GUESSES)]
        guessing = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(GUESSER, 0), limit=16))
        checking = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(CUSTOMER, 0)))
        alone: list[float] = []  # the customer's checks without a guesser, then with one
        beside: list[float] = []
        async with guessing, checking:
            customers = [asyncio.create_task(customer(checking, alone)) for _ in range(2)]
            await asyncio.sleep(1.0)
            done.set()
            await asyncio.gather(*customers)
            done.clear()
            customers = [asyncio.create_task(customer(checking, beside)) for _ in range(2)]
            started = time.perf_counter()
            await asyncio.gather(*(guesser(guessing, keys[n::16]) for n in range(16)))
            elapsed = time.perf_counter() - started
            done.set()
            await asyncio.gather(*customers)
    answered = guessed[200]  # a NOT_FOUND verdict: the key was looked up
    # Each worker lets its share through (its connections' guesses), never more than the budget together.
    assert BUDGET // workers <= answered <= BUDGET, guessed
    assert guessed[429] == GUESSES - answered and set(guessed) == {200, 429}
    assert retry_after and all(int(seconds) >= 1 for seconds in retry_after)
    assert set(customer_verdicts) == {"200 VALID"} and len(alone) >= 10 and len(beside) >= 10

    def figures(times: list[float]) -> str:
        p50, p99 = statistics.median(times) * 1000, statistics.quantiles(times, n=100)[98] * 1000
        return f"{len(times)} checks, p50 {p50:.1f} ms, p99 {p99:.1f} ms"

    print(
        f"\n{workers} worker(s): {GUESSES} guesses in {elapsed:.2f} s: {answered} looked up, {guessed[429]} answered 429 "
        f"(Retry-After {min(retry_after, key=int)}-{max(retry_after, key=int)} s); checks from another address, all "
        f"VALID: alone {figures(alone)}; beside the guesser {figures(beside)}"
    )
