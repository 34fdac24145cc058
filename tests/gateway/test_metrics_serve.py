"""``GET /metrics`` of ``licensor serve`` with 1 and 2 workers: a scrape counts exactly the requests a load
generator sent, whichever worker answered them and whichever answers the scrape (another worker's within the
second it takes to write them); a worker that dies takes its live gauges with it but not its counts; the
metrics directory is private and removed at the stop."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
from licensor.gateway.metrics_endpoint import SYNC_SECONDS
from licensor.testing import ThrowawayPostgres
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from .served import Served, served

REQUESTS = 2000  # with 2 workers
REQUESTS_ONE_WORKER = 1000
CONCURRENCY = 16
WORKER_BACK_WITHIN_S = 10.0


async def _license(session: aiohttp.ClientSession, server: Served) -> dict[str, str]:
    auth = {"Authorization": f"Bearer {server.admin_token}"}

    async def admin(path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with session.post(server.url + path, json=body, headers=auth) as answer:
            assert answer.status == 201, await answer.text()
            return await answer.json()  # type: ignore[no-any-return]

    async with session.get(server.url + "/v1/admin/tenant", headers=auth) as answer:
        tenant = (await answer.json())["id"]
    product = await admin("/v1/admin/products", {"code": "cad", "name": "CAD"})
    policy = await admin("/v1/admin/policies", {"product_id": product["id"], "name": "P", "backend": "cloud-lite", "seats": 5})
    license = await admin("/v1/admin/licenses", {"policy_id": policy["id"]})
    return {"tenant": tenant, "product": "cad", "license_key": license["key"]}


async def _load(server: Served, count: int, *, spread: bool) -> dict[int, int]:
    """``count`` checks from ``CONCURRENCY`` clients on keep-alive connections or, to ``spread`` them over the
    workers, on connections that close after every answer: the answers by status."""
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    connector = aiohttp.TCPConnector(force_close=spread, limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        check = await _license(session, server)

        async def client() -> None:
            while not queue.empty():
                queue.get_nowait()
                async with session.post(server.url + "/v1/check", json=check) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1

        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(CONCURRENCY))), 120)
    return statuses


async def _scrape(server: Served) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(server.url + "/metrics") as answer:
            assert answer.status == 200, await answer.text()
            text = await answer.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _checks(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> tuple[float, float, float]:
    """(requests counted on /v1/check with 200, their latency observations, VALID verdicts of cloud-lite)."""
    route = {("route", "/v1/check"), ("method", "POST")}
    return (
        samples.get(("licensor_http_requests_total", frozenset(route | {("status", "200")})), 0.0),
        samples.get(("licensor_http_request_duration_seconds_count", frozenset(route)), 0.0),
        samples.get(("licensor_check_verdicts_total", frozenset({("backend", "cloud-lite"), ("code", "VALID")})), 0.0),
    )


def _checks_of_worker(directory: Path, pid: int) -> float:
    """The checks one worker counted, read from its own file in the metrics directory."""
    merged = MultiProcessCollector.merge([str(directory / f"counter_{pid}.db")])
    return sum(
        sample.value
        for family in merged
        for sample in family.samples
        if sample.name == "licensor_http_requests_total" and sample.labels.get("route") == "/v1/check"
    )


def _metrics_directory(worker_pid: int) -> Path:
    environment = Path(f"/proc/{worker_pid}/environ").read_bytes().split(b"\0")
    found = [entry.split(b"=", 1)[1] for entry in environment if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    assert len(found) == 1, "licensor serve names the metrics directory in its workers' environment"
    return Path(found[0].decode())


async def test_one_worker_counts_what_the_load_generator_sent(licensor_store_url: str, tmp_path: Path) -> None:
    with served(licensor_store_url, tmp_path / "var") as server:
        statuses = await _load(server, REQUESTS_ONE_WORKER, spread=False)
        assert statuses == {200: REQUESTS_ONE_WORKER}
        assert _checks(await _scrape(server)) == (REQUESTS_ONE_WORKER,) * 3


async def test_two_workers_count_what_the_load_generator_sent_and_keep_a_dead_workers_counts(
    licensor_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    with served(licensor_postgres.create_database(), tmp_path / "var", "--workers", "2") as server:
        deadline = time.monotonic() + WORKER_BACK_WITHIN_S
        while len(server.workers()) < 2:
            assert time.monotonic() < deadline, server.log()
            await asyncio.sleep(0.05)
        directory = _metrics_directory(server.workers()[0])
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        statuses = await _load(server, REQUESTS, spread=True)
        assert statuses == {200: REQUESTS}
        # Whichever worker answers a scrape sums every worker's counts: its own up to now, the other's within a
        # second (each writes its counts once a second); then every scrape agrees.
        deadline = time.monotonic() + SYNC_SECONDS + 5
        while (counted := _checks(await _scrape(server))) != (REQUESTS, REQUESTS, REQUESTS):
            assert time.monotonic() < deadline, f"{counted} counted, {REQUESTS} sent"
            await asyncio.sleep(0.1)
        for _ in range(4):
            assert _checks(await _scrape(server)) == (REQUESTS, REQUESTS, REQUESTS)
        # Both workers answered a share (so the sum above adds up two processes' counts).
        shares = [_checks_of_worker(directory, pid) for pid in server.workers()]
        assert sum(shares) == REQUESTS and min(shares) > 0, shares

        killed = server.workers()[0]
        assert (directory / f"gauge_livesum_{killed}.db").exists()
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + WORKER_BACK_WITHIN_S
        while killed in server.workers() or len(server.workers()) < 2:
            assert time.monotonic() < deadline, f"no worker replaced {killed}: {server.log()}"
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + WORKER_BACK_WITHIN_S
        while (directory / f"gauge_livesum_{killed}.db").exists():  # the supervisor's bookkeeping follows the death
            assert time.monotonic() < deadline, "the dead worker's live gauges are still counted"
            await asyncio.sleep(0.05)
        assert _checks(await _scrape(server)) == (REQUESTS, REQUESTS, REQUESTS)
        assert server.stop() == 0
    assert not directory.exists(), "the metrics directory is removed when the gateway stops"
