"""``licensor serve`` as operators run it: clients that leave mid-request, and supervised workers.

- A client that closes its connection before its body is sent is not an error of the gateway: one INFO line,
  499 in the access log, never ERROR, a traceback or 500.
- With ``--workers 2`` on PostgreSQL, a worker killed with SIGKILL at random moments (3 times in ``make test``, 20
  in ``make soak``: ``LICENSOR_WORKER_KILLS``) during a burst of activations and deactivations, cloud check-outs
  and releases, metered usage reports and checks: the other worker keeps answering, the killed one is serving
  again within 2 s, and afterwards every acknowledged change is in the store, no seat is held twice, every
  acknowledged usage report is counted once, and the tenant's event chain verifies. Clients retry what was lost
  with the same Idempotency-Key, as the SDK does.
- A worker that cannot start (its database refuses it) is retried with backoff, and the gateway gives up
  with status 1 rather than spin.

Run with ``-s`` for the figures.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
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
from licensor.gateway.supervisor import START_FAILURES_TO_GIVE_UP
from licensor.testing import ThrowawayPostgres, free_port
from licensor_client.activation import device_request

from .scale_kit import ACTIVATE, CHECK_OUT, USAGE, Admin, make_licenses
from .served import Served, served

RELEASE = "/v1/leases/release"

pytestmark = pytest.mark.alone  # its figures need the machine to itself (make test runs it after the parallel part)

KILLS = int(os.environ.get("LICENSOR_WORKER_KILLS", "3"))  # make soak: 20
SEED = int(os.environ.get("LICENSOR_WORKER_KILL_SEED", str(random.randrange(1 << 32))))  # printed, to replay a run
BACK_WITHIN_S = 2.0
SEATS = 8  # for CLIENTS devices at a time: activations and check-outs both granted and refused all along
USAGE_QUOTA = 1_000_000  # never reached: every acknowledged report must be counted, once
CLIENTS = 12
MAX_DEVICES = 2_000 + 400 * KILLS  # a bound besides the time limit; a kill costs about 2 s of about 60 devices
BURST_LIMIT_S = 60.0 + 5.0 * KILLS


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
    """What the clients saw: each acknowledged (2xx) change, and every answer with when it came."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # device key -> activation id
    deactivated: set[str] = field(default_factory=set)  # activation ids whose deactivation was acknowledged
    leases: dict[int, str] = field(default_factory=dict)  # device number -> the lease id its check-out was given
    released: set[str] = field(default_factory=set)  # lease ids whose release was acknowledged
    usage_recorded: int = 0  # usage reports of 1 call acknowledged
    devices: int = 0  # devices that tried to activate and check out
    refused: Counter[str] = field(default_factory=Counter)
    answered_at: list[float] = field(default_factory=list)
    retries: int = 0
    checks: int = 0


async def _send(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    burst: Burst,
    key: str | None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST until answered, as the SDK retries: again after a lost connection or a 503, with the same key."""
    sent = {**(headers or {}), **({"Idempotency-Key": key} if key else {})}
    for _ in range(40):
        try:
            async with session.post(url, json=body, headers=sent) as answer:
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
    """kill -9 of a worker at random moments (KILLS times: 3 in make test, 20 in make soak) during bursts of
    activations and deactivations, cloud check-outs and releases, metered usage reports and checks."""
    rng = random.Random(SEED)
    with served(licensor_postgres.create_database(), tmp_path / "var", "--workers", "2") as server:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            admin = Admin(session, server.url, server.admin_token)
            licenses = await make_licenses(admin, SEATS, quota=USAGE_QUOTA)
            tenant = licenses.tenant
            license = await licenses.activation_license()
            cloud_license, credential_file = await licenses.cloud_credential()
            subject = await licenses.saas_subject()
            product_token = {"Authorization": f"Bearer {licenses.product_token}"}
            while len(_listening_pids(server.log())) < 2:
                await asyncio.sleep(0.05)

            burst = Burst()
            stop = asyncio.Event()
            numbers = itertools.count()
            check = {"tenant": tenant, "product": "cad", "license_key": license["key"]}

            async def give_back_activation(held: dict[str, Any]) -> None:
                """The client's device of the previous round deactivates (device-signed): its seat comes back."""
                if "activation" not in held:
                    return
                n, key, fingerprint, activation = held.pop("activation")
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
                    session, server.url + "/v1/activations/deactivate", {"request": request}, burst, f"deactivate-{n}"
                )
                assert status == 200, answer
                burst.deactivated.add(activation["id"])

            async def activate(n: int, held: dict[str, Any]) -> None:
                """Device ``n`` activates, after the client's previous device gave its seat back."""
                await give_back_activation(held)
                key, fingerprint = licenses.device(n)
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
                    session, server.url + ACTIVATE, {"request": request}, burst, f"activate-{key.key_id}"
                )
                if status not in (200, 201):
                    burst.refused[f"activation {status} {answer['error']['code']}"] += 1
                    return
                burst.acknowledged[key.key_id] = answer["activation"]["id"]
                held["activation"] = (n, key, fingerprint, answer["activation"])

            async def check_out(n: int, held: dict[str, Any]) -> None:
                """Device ``n`` checks a seat out, after the client's previous device released its lease."""
                if "lease" in held:
                    previous, lease, secret = held.pop("lease")
                    credential = credential_file["credential"]
                    release = {"tenant": tenant, "credential": credential, "lease": lease, "lease_secret": secret}
                    status, answer = await _send(session, server.url + RELEASE, release, burst, f"release-{previous}")
                    assert status == 200, answer
                    burst.released.add(lease)
                body = licenses.check_out_body(n, credential_file)
                status, answer = await _send(session, server.url + CHECK_OUT, body, burst, f"check-out-{n}")
                if status != 201:
                    burst.refused[f"check-out {status} {answer['error']['code']}"] += 1
                    return
                burst.leases[n] = answer["lease"]["id"]
                held["lease"] = (n, answer["lease"]["id"], answer["lease_secret"])

            async def report_usage(n: int) -> None:
                body = licenses.usage_body(subject)
                status, answer = await _send(session, server.url + USAGE, body, burst, f"usage-{n}", product_token)
                assert status == 201, answer
                burst.usage_recorded += 1

            async def client() -> None:
                """A client of a few devices in turn: each round a new device takes the seats the last one gave back
                (CLIENTS clients for SEATS seats: some are refused, then try again with the next device)."""
                held: dict[str, Any] = {}
                while not stop.is_set():
                    n = next(numbers)
                    if n >= MAX_DEVICES:
                        return
                    burst.devices += 1
                    await asyncio.gather(activate(n, held), check_out(n, held), report_usage(n))
                    status, answer = await _send(session, server.url + "/v1/check", check, burst, None)
                    assert status == 200, answer
                    burst.checks += 1
                    await asyncio.sleep(rng.uniform(0.1, 0.3))

            async def killer() -> list[tuple[float, int]]:
                restarts = []
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(0.05, 0.6))  # a random point of the burst
                    victim = server.workers()[rng.randrange(2)]
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
            finally:
                stop.set()
                await asyncio.gather(*clients)
            took = time.monotonic() - began

            stored = await admin.list_all(f"/v1/admin/licenses/{license['id']}/activations")
            leases = await admin.list_all(f"/v1/admin/licenses/{cloud_license['id']}/leases")
            usage = await admin.ok("GET", USAGE, params={"product": "saas", "subject": subject}, token=licenses.product_token)
            verified = await admin.ok("GET", "/v1/admin/events/verify")
        print(
            f"\n{KILLS} kills (seed {SEED}) during {took:.1f} s: back after "
            f"{', '.join(f'{back:.2f}' for back, _ in restarts)} s; answers while a worker was down "
            f"{[answered for _, answered in restarts]}; {burst.devices} devices: {len(burst.acknowledged)} activations and "
            f"{len(burst.deactivated)} deactivations, {len(burst.leases)} check-outs and {len(burst.released)} releases, "
            f"{burst.usage_recorded} usage reports acknowledged, refused {dict(burst.refused)}, {burst.checks} checks, "
            f"{burst.retries} retries after lost connections; event chain {verified}"
        )
        assert server.log().count("died (signal SIGKILL) while serving: starting it again") == KILLS
        assert server.stop() == 0

    assert all(answered > 0 for _, answered in restarts), restarts  # the other worker kept answering
    assert burst.devices < MAX_DEVICES, "the burst ran out of devices before the kills ended"
    # Every acknowledged activation is stored; every seat is held by one device once; none beyond the seats.
    by_id = {row["id"]: row for row in stored}
    assert set(burst.acknowledged.values()) == set(by_id)
    assert {row["id"] for row in stored if row["state"] == "deactivated"} == burst.deactivated
    holding = [row for row in stored if row["state"] == "active"]
    assert {row["id"] for row in holding} == set(burst.acknowledged.values()) - burst.deactivated
    assert 0 < len(holding) <= SEATS and len({row["device_key"] for row in holding}) == len(holding)
    # Every acknowledged check-out is one lease, released or held; none held twice, none beyond the seats.
    assert {row["id"] for row in leases} == set(burst.leases.values())
    held = [row for row in leases if row["state"] == "active"]
    assert {row["id"] for row in held} == set(burst.leases.values()) - burst.released
    assert 0 < len(held) <= SEATS and len({row["device_id"] for row in held}) == len(held)
    # Every acknowledged usage report counted once: no retry counted twice, none acknowledged and lost.
    assert [(row["feature"], row["used"]) for row in usage["totals"]] == [("calls", burst.usage_recorded)]
    assert set(burst.refused) <= {"activation 409 SEAT_LIMIT_REACHED", "check-out 409 SEAT_LIMIT_REACHED"}, burst.refused
    assert len(burst.acknowledged) > SEATS and len(burst.leases) > SEATS  # seats came back and were taken again
    assert burst.refused, "the seats were never all taken: the limit was not tested"
    assert len(burst.acknowledged) + sum(n for code, n in burst.refused.items() if code.startswith("activation")) == burst.devices
    assert len(burst.leases) + sum(n for code, n in burst.refused.items() if code.startswith("check-out")) == burst.devices
    assert verified["valid"], verified  # the tenant's event chain, written by workers killed mid-transaction
    # Last: a figure of the machine (a restart is spawn, imports and a store connection, CPU-bound), after the guarantees.
    assert max(back for back, _ in restarts) <= BACK_WITHIN_S, restarts


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
