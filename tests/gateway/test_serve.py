"""``licensor serve`` as operators run it: clients that leave mid-request, and supervised workers.

- A client that closes its connection before its body is sent is not an error of the gateway: one INFO line,
  499 in the access log, never ERROR, a traceback or 500.
- With ``--workers 2`` on PostgreSQL, a worker killed with SIGKILL ten times during a burst of checks and
  activations: the other worker keeps answering, the killed one is serving again within 2 s, and afterwards
  every acknowledged activation is in the store and no seat is held twice. Clients retry what was lost with
  the same Idempotency-Key, as the SDK does.
- A worker that cannot start (its database refuses it) is retried with backoff, and the gateway gives up
  with status 1 rather than spin.

Run with ``-s`` for the figures.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from licensor.fingerprint import hash_components, product_salt
from licensor.gateway.supervisor import START_FAILURES_TO_GIVE_UP
from licensor.testing import ThrowawayPostgres, free_port
from licensor_client.activation import DeviceKey, device_request

from .served import Served, served

pytestmark = pytest.mark.alone  # its figures need the machine to itself (make test runs it after the parallel part)

KILLS = 10
BACK_WITHIN_S = 2.0
SEATS = 12
DEVICES = 240
CLIENTS = 12
BURST_LIMIT_S = 90.0


# --- clients that leave ---------------------------------------------------------------------------------
async def _leave_mid_body(server: Served, head: str, sent_body: bytes) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.encode() + sent_body)
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    await writer.wait_closed()


async def test_a_client_leaving_mid_body_is_a_499_in_the_log_and_no_error(licensor_store_url: str, tmp_path: Path) -> None:
    with served(licensor_store_url, tmp_path / "var") as server:
        routes = [
            ("/v1/check", ""),
            ("/v1/activations", ""),
            ("/v1/leases", ""),
            ("/v1/admin/products", f"Authorization: Bearer {server.admin_token}\r\n"),
        ]
        cases = 0
        for path, extra in routes:
            for sent in (b"", b'{"product": "ap', b"x" * 5000):
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}"
                    f"Content-Length: 60000\r\n\r\n"
                )
                await _leave_mid_body(server, head, sent)
                cases += 1
        deadline = time.monotonic() + 10
        while server.log().count(" 499 ") < cases and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as answer:
            assert answer.status == 200
        log = server.log()
    assert log.count(" 499 ") == cases, log
    assert log.count("the client closed the connection before sending its whole request") == cases, log
    for sign in (" ERROR ", "Traceback", " 500 "):
        assert sign not in log, log


# --- supervised workers ---------------------------------------------------------------------------------
@dataclass
class Burst:
    """What the clients saw: each acknowledged activation, and every answer with when it came."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # device key -> activation id
    deactivated: set[str] = field(default_factory=set)  # activation ids whose deactivation was acknowledged
    refused: Counter[str] = field(default_factory=Counter)
    answered_at: list[float] = field(default_factory=list)
    retries: int = 0
    checks: int = 0


async def _send(session: aiohttp.ClientSession, url: str, body: dict[str, Any], burst: Burst, key: str | None) -> tuple[int, Any]:
    """POST until answered, as the SDK retries: again after a lost connection or a 503, with the same key."""
    headers = {"Idempotency-Key": key} if key else {}
    for _ in range(40):
        try:
            async with session.post(url, json=body, headers=headers) as answer:
                payload = await answer.json()
                if answer.status != 503:
                    burst.answered_at.append(time.monotonic())
                    return answer.status, payload
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError):
            pass
        burst.retries += 1
        await asyncio.sleep(0.05)
    raise AssertionError(f"no answer to {url} after 40 tries")


def _listening_pids(log: str) -> set[int]:
    return {int(pid) for pid in re.findall(r"\[(\d+)\]: gateway listening on", log)}


async def test_killed_workers_are_back_within_2_s_and_nothing_acknowledged_is_lost(
    licensor_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    with served(licensor_postgres.create_database(), tmp_path / "var", "--workers", "2") as server:
        auth = {"Authorization": f"Bearer {server.admin_token}"}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def admin(path: str, body: dict[str, Any]) -> dict[str, Any]:
                async with session.post(server.url + path, json=body, headers=auth) as answer:
                    assert answer.status == 201, await answer.text()
                    return await answer.json()  # type: ignore[no-any-return]

            async with session.get(server.url + "/v1/admin/tenant", headers=auth) as answer:
                tenant = (await answer.json())["id"]
            product = await admin("/v1/admin/products", {"code": "cad", "name": "CAD"})
            policy = await admin(
                "/v1/admin/policies", {"product_id": product["id"], "name": "P", "backend": "activation", "seats": SEATS}
            )
            license = await admin("/v1/admin/licenses", {"policy_id": policy["id"]})
            salt = product_salt(tenant, "cad")
            devices = [
                (DeviceKey.generate(), hash_components({"machine_id": f"m-{n}", "disk": f"d-{n}"}, salt)) for n in range(DEVICES)
            ]
            while len(_listening_pids(server.log())) < 2:
                await asyncio.sleep(0.05)

            burst = Burst()
            stop = asyncio.Event()
            queue: asyncio.Queue[int] = asyncio.Queue()
            for n in range(DEVICES):
                queue.put_nowait(n)
            check = {"tenant": tenant, "product": "cad", "license_key": license["key"]}

            async def client() -> None:
                while not stop.is_set():
                    try:
                        n = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        n = None
                    if n is not None:
                        key, fingerprint = devices[n]
                        request = device_request(
                            key,
                            "activate",
                            tenant=tenant,
                            product="cad",
                            fingerprint=fingerprint,
                            license_key=license["key"],
                            device_name=f"device {n}",
                        )
                        status, answer = await _send(
                            session, server.url + "/v1/activations", {"request": request}, burst, f"activate-{key.key_id}"
                        )
                        if status in (200, 201):
                            activation = answer["activation"]
                            burst.acknowledged[key.key_id] = activation["id"]
                            if n % 2 == 0:  # every other device gives its seat back at once
                                request = device_request(
                                    key,
                                    "deactivate",
                                    tenant=tenant,
                                    product="cad",
                                    fingerprint=fingerprint,
                                    activation=activation["id"],
                                    generation=activation["generation"],
                                )
                                status, answer = await _send(
                                    session,
                                    server.url + "/v1/activations/deactivate",
                                    {"request": request},
                                    burst,
                                    f"deactivate-{key.key_id}",
                                )
                                assert status == 200, answer
                                burst.deactivated.add(activation["id"])
                        else:
                            burst.refused[f"{status} {answer['error']['code']}"] += 1
                    for _ in range(3):
                        status, answer = await _send(session, server.url + "/v1/check", check, burst, None)
                        assert status == 200, answer
                        burst.checks += 1
                    await asyncio.sleep(0.2)

            async def killer() -> list[tuple[float, int]]:
                restarts = []
                for kill in range(KILLS):
                    await asyncio.sleep(0.4)
                    victim = server.workers()[kill % 2]
                    before = _listening_pids(server.log())
                    os.kill(victim, signal.SIGKILL)
                    killed_at = time.monotonic()
                    while not (_listening_pids(server.log()) - before):
                        assert time.monotonic() - killed_at < 10, server.log()[-3000:]
                        await asyncio.sleep(0.01)
                    back = time.monotonic() - killed_at
                    answered = sum(1 for at in burst.answered_at if killed_at <= at <= killed_at + back)
                    restarts.append((back, answered))
                    # Meanwhile the two workers are the survivor and the new one, never fewer for long.
                    assert len(server.workers()) == 2
                return restarts

            clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
            began = time.monotonic()
            try:
                restarts = await asyncio.wait_for(killer(), BURST_LIMIT_S)
                while not queue.empty() and time.monotonic() - began < BURST_LIMIT_S:
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await asyncio.gather(*clients)

            async with session.get(
                f"{server.url}/v1/admin/licenses/{license['id']}/activations", params={"limit": "200"}, headers=auth
            ) as answer:
                stored = (await answer.json())["data"]
        print(
            f"\n{KILLS} kills during {time.monotonic() - began:.1f} s: back after "
            f"{', '.join(f'{back:.2f}' for back, _ in restarts)} s; answers while a worker was down "
            f"{[answered for _, answered in restarts]}; {len(burst.acknowledged)} activations and {len(burst.deactivated)} "
            f"deactivations acknowledged, refused "
            f"{dict(burst.refused)}, {burst.checks} checks, {burst.retries} retries after lost connections"
        )
        assert server.log().count("died (signal SIGKILL) while serving: starting it again") == KILLS
        assert server.stop() == 0

    assert max(back for back, _ in restarts) <= BACK_WITHIN_S, restarts
    assert all(answered > 0 for _, answered in restarts), restarts  # the other worker kept answering
    assert queue.empty(), "the burst did not finish"
    # Every acknowledged change is stored; every seat is held by one device once; none beyond the seats.
    by_id = {row["id"]: row for row in stored}
    assert set(burst.acknowledged.values()) == set(by_id)
    assert {row["id"] for row in stored if row["state"] == "deactivated"} == burst.deactivated
    holding = [row for row in stored if row["state"] == "active"]
    assert {row["id"] for row in holding} == set(burst.acknowledged.values()) - burst.deactivated
    assert 0 < len(holding) <= SEATS and len({row["device_key"] for row in holding}) == len(holding)
    assert len(burst.acknowledged) > SEATS and set(burst.refused) <= {"409 SEAT_LIMIT_REACHED"}
    assert len(burst.acknowledged) + sum(burst.refused.values()) == DEVICES


def test_a_worker_that_cannot_start_is_retried_with_backoff_then_the_gateway_gives_up(tmp_path: Path) -> None:
    refused_url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"  # nobody listens there
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    began = time.monotonic()
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "licensor.cli",
            "serve",
            "--database-url",
            refused_url,
            "--data-dir",
            str(data_dir),
            "--port",
            str(free_port()),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - began
    log = finished.stderr
    print(f"\ngave up after {took:.1f} s")
    assert finished.returncode == 1, log
    assert f"before it was ready, {START_FAILURES_TO_GIVE_UP} times in a row: stopping the gateway" in log, log
    backoffs = [float(s) for s in re.findall(r"starting it again in ([0-9.]+) s", log)]
    assert backoffs and backoffs[:4] == sorted(backoffs[:4]) and max(backoffs) >= 2.0, backoffs  # doubling, not spinning
    assert took >= sum((0.5, 1.0, 2.0, 4.0)), took


@pytest.mark.parametrize("after_s", [0.0, 0.3, 0.6, 1.0])
def test_sigterm_while_the_workers_start_stops_the_gateway_cleanly(
    licensor_postgres: ThrowawayPostgres, tmp_path: Path, after_s: float
) -> None:
    """A signal that comes while a worker is being started reaches it too (none is left serving, no hang)."""
    with served(licensor_postgres.create_database(), tmp_path / "var", "--workers", "2", wait=False) as server:
        time.sleep(after_s)
        server.process.send_signal(signal.SIGTERM)
        try:
            status = server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the gateway did not stop: {server.log()}") from None
    log = server.log()
    if "started 2 workers" in log or status == 0:  # the supervisor ran: a clean stop of every worker
        assert status == 0 and "all workers stopped" in log, log
    else:  # the signal came before the process had started the supervisor: it ended as any process does
        assert status == -signal.SIGTERM, log
