"""Several gateway hosts on one PostgreSQL: three separate ``licensor serve`` processes, each with its own port (as
three hosts behind any load balancer), sharing one database and master key. Every change made through one of them
is seen through the two others within 1 s, although each answers checks from its own in-process cache (and
identical repeats from remembered answers): a license suspended and reinstated, a new license, an API token
revoked, a policy's features changed. The hosts take turns making the changes, and the other two are polled
from the change's acknowledgement until they show it; the figure is the longest such wait.

PostgreSQL only: several processes on one database need it (its LISTEN/NOTIFY tells every process of a change).
``LICENSOR_HOST_CHANGE_ROUNDS`` sets the rounds (make test: 5, make soak: 50; each round makes 6 changes, each
seen by 2 hosts). Run with ``-s`` for the figures.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from licensor.central.secrets import load_master_key
from licensor.testing import ThrowawayPostgres, gateway_process, wait_ready

from .scale_kit import Admin, make_licenses
from .served import served

ROUNDS = int(os.environ.get("LICENSOR_HOST_CHANGE_ROUNDS", "5"))
VISIBLE_WITHIN_S = 1.0
POLL_S = 0.005
GIVE_UP_S = 10.0  # a bound for the polling: a change never seen fails there, with the figures so far

Seen = Callable[[str], Awaitable[bool]]  # does the host at this URL show the change yet?


async def _propagation(hosts: list[str], by: int, change: Callable[[str], Awaitable[Any]], seen: Seen) -> list[float]:
    """Make ``change`` through host ``by``; the seconds from its acknowledgement until each other host shows it."""
    for url in hosts:  # each host has the old state in its caches first
        assert not await seen(url), f"{url} shows the change before it was made"
    await change(hosts[by])
    acknowledged = time.monotonic()

    async def wait(url: str) -> float:
        while not await seen(url):
            assert time.monotonic() - acknowledged < GIVE_UP_S, f"{url} never showed the change"
            await asyncio.sleep(POLL_S)
        return time.monotonic() - acknowledged

    return list(await asyncio.gather(*(wait(url) for n, url in enumerate(hosts) if n != by)))


async def test_a_change_through_one_host_is_seen_through_the_others_within_1_s(
    licensor_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    database = licensor_postgres.create_database()
    with served(database, tmp_path / "a") as first:
        master_key = load_master_key(str(tmp_path / "a" / "master.key"))
        (tmp_path / "b").mkdir()
        (tmp_path / "c").mkdir()
        with (
            gateway_process(database, str(tmp_path / "b"), master_key) as second,
            gateway_process(database, str(tmp_path / "c"), master_key) as third,
        ):
            hosts = [first.url, second, third]
            for url in hosts[1:]:
                await wait_ready(url)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                admins = [Admin(session, url, first.admin_token) for url in hosts]
                licenses = await make_licenses(admins[0], seats=5)
                desk = (await admins[0].ok("GET", "/v1/admin/products", params={"limit": "10"}))["data"]
                desk_id = next(product["id"] for product in desk if product["code"] == "desk")
                await admins[0].ok("POST", "/v1/admin/features", json={"product_id": desk_id, "code": "render", "name": "Render"})
                license, _ = await licenses.cloud_credential()
                tenant = licenses.tenant

                async def verdict(url: str, key: str, features: list[str]) -> str:
                    body = {"tenant": tenant, "product": "desk", "license_key": key, "features": features}
                    async with session.post(url + "/v1/check", json=body) as answer:
                        assert answer.status == 200, await answer.text()
                        return str((await answer.json())["verdict"]["code"])

                waits: dict[str, list[float]] = {}

                async def measure(kind: str, by: int, change: Callable[[str], Awaitable[Any]], seen: Seen) -> None:
                    waits.setdefault(kind, []).extend(await _propagation(hosts, by, change, seen))

                for round_ in range(ROUNDS):
                    by = round_ % len(hosts)
                    path = f"/v1/admin/licenses/{license['id']}"

                    async def suspend(url: str) -> Any:
                        return await Admin(session, url, first.admin_token).ok("POST", f"{path}/suspend", json={})

                    async def reinstate(url: str) -> Any:
                        return await Admin(session, url, first.admin_token).ok("POST", f"{path}/reinstate", json={})

                    async def suspended(url: str) -> bool:
                        return await verdict(url, license["key"], ["draw"]) == "SUSPENDED"

                    async def valid(url: str) -> bool:
                        return await verdict(url, license["key"], ["draw"]) == "VALID"

                    await measure("license suspended", by, suspend, suspended)
                    await measure("license reinstated", (by + 1) % 3, reinstate, valid)

                    made: dict[str, Any] = {}

                    async def create(url: str) -> Any:
                        body = {"policy_id": licenses.cloud_policy}
                        made.update(await Admin(session, url, first.admin_token).ok("POST", "/v1/admin/licenses", json=body))

                    async def new_key_valid(url: str) -> bool:
                        return bool(made) and await verdict(url, made["key"], ["draw"]) == "VALID"

                    await measure("new license", (by + 2) % 3, create, new_key_valid)

                    token = await admins[by].ok("POST", "/v1/admin/tokens", json={"name": f"support {round_}", "role": "support"})

                    async def revoke(url: str) -> Any:
                        return await Admin(session, url, first.admin_token).ok("DELETE", f"/v1/admin/tokens/{token['id']}")

                    async def refused(url: str) -> bool:
                        status, _ = await Admin(session, url, token["token"]).call("GET", "/v1/admin/tenant")
                        assert status in (200, 401), status
                        return status == 401

                    await measure("token revoked", (by + 1) % 3, revoke, refused)

                    policy_path = f"/v1/admin/policies/{licenses.cloud_policy}"

                    def set_features(codes: list[str]) -> Callable[[str], Awaitable[Any]]:
                        async def update(url: str) -> Any:
                            body = {"features": [{"code": code} for code in codes]}
                            return await Admin(session, url, first.admin_token).ok("PATCH", policy_path, json=body)

                        return update

                    async def renders(url: str) -> bool:
                        return await verdict(url, license["key"], ["render"]) == "VALID"

                    async def renders_no_more(url: str) -> bool:
                        return await verdict(url, license["key"], ["render"]) == "FEATURE_NOT_ENTITLED"

                    await measure("policy feature added", (by + 2) % 3, set_features(["draw", "render"]), renders)
                    await measure("policy feature removed", by, set_features(["draw"]), renders_no_more)
    longest = max(max(seconds) for seconds in waits.values())
    print(f"\n3 hosts on one PostgreSQL, {ROUNDS} rounds: seconds from a change's acknowledgement until another host shows it")
    for kind, seconds in waits.items():
        ordered = sorted(seconds)
        print(f"  {kind}: {len(ordered)} observations, median {ordered[len(ordered) // 2]:.3f}, max {ordered[-1]:.3f}")
    print(f"  longest of all: {longest:.3f} s")
    assert longest < VISIBLE_WITHIN_S, waits
