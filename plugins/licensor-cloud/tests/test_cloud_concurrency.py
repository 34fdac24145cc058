"""The cloud backend under concurrent devices, through real gateways over 127.0.0.1 (no mocks).

Each test runs on SQLite (one gateway) and on PostgreSQL with two gateway processes sharing the database and
the master key: the in-process gateway and a ``licensor serve`` subprocess, the devices split between them.
What must hold whatever the interleaving:

- a burst of check-outs from distinct devices leases exactly the license's seats and refuses every other one;
- over a minute (``make soak``; 15 s in ``make test``) of devices checking out, renewing, releasing and going
  silent on short leases, the server never counts more leases held than the license has seats, and every seat
  whose lease ran out is leased again;

and never a 5xx nor a transport failure, and the tenant's event chain stays intact. Run with ``-s`` to see the
measured numbers.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from cloud_kit import CHECK_OUT, HEARTBEAT, RELEASE, Credential, Device, Vendor, vendor
from licensor.model import LEASE, parse_time
from licensor.store import Row
from licensor.testing import GatewayFleet, Sent, no_server_errors, open_client, post_json, send_at_once
from licensor_client.leases import verify_lease_token

pytestmark = pytest.mark.alone  # its figures need the machine to itself (make test runs it after the parallel part)

BURST_DEVICES = 500  # distinct devices checking out at once
BURST_SEATS = 3
CREDENTIALS = 4  # the burst's devices share a few credential files (one license)

# A minute of real time in `make soak`; `make test` runs an 8-s version (LICENSOR_SOAK_SECONDS).
SOAK_SECONDS = float(os.environ.get("LICENSOR_SOAK_SECONDS", "60"))
SOAK_DEVICES = 50
SOAK_SEATS = 5
LEASE_TTL_S = 3
HEARTBEAT_S = 1
MAX_ACTIONS_PER_DEVICE = 1_000  # a bound besides the deadline: a device acts about once a second
P_RELEASE = 0.08  # what a device holding a lease does next, besides renewing it
P_SILENT = 0.07
SAMPLE_EVERY_S = 0.1
MAX_SAMPLES = 5_000
REFUSED_PAUSE_S = (0.2, 1.0)  # a refused device tries again after this long
SILENCE_S = (LEASE_TTL_S + 0.5, LEASE_TTL_S + 1.5)  # a silent device comes back after its lease ran out


# --- the seats as the server counts them -----------------------------------------------------------------
async def lease_rows(shop: Vendor) -> list[Row]:
    """Every lease row of the license, straight from the store."""
    rows: list[Row] = []
    after = None
    for _ in range(1_000):
        page = await shop.gateway.store.list(shop.tenant.id, LEASE, {"license_id": shop.license["id"]}, after, 1000)
        rows += page.rows
        if not page.has_more:
            return rows
        after = page.rows[-1]["id"]
    raise AssertionError("more lease rows than this test makes")


async def held_now(shop: Vendor) -> int:
    """Leases the server counts as holding a seat now: active and not run out (whether marked expired yet or not)."""
    now = shop.backend.clock()
    page = await shop.gateway.store.list(shop.tenant.id, LEASE, {"license_id": shop.license["id"], "state": "active"}, None, 1000)
    assert not page.has_more
    return sum(1 for row in page.rows if row["expires_at"] > now)


# --- sending device requests ------------------------------------------------------------------------------
async def warm_up(licensor_fleet: GatewayFleet, credential: Credential) -> None:
    """Bring every gateway to where a busy one is, without changing anything: the credential read and the
    tenant's signing key in its cache, the request validators built, a device transaction run (a heartbeat of
    a lease that does not exist)."""
    unknown = {
        "tenant": credential.file["tenant"],
        "credential": credential.file["credential"],
        "lease": "lse_" + "0" * 26,
        "lease_secret": "A" * 43,
    }
    for url in licensor_fleet.urls:
        sent = await post_json(licensor_fleet.session, url, HEARTBEAT, unknown, idempotent=True)
        assert (sent.answer.status, sent.answer.code) == (404, "LEASE_NOT_FOUND"), sent.answer.text


def by_gateway(licensor_fleet: GatewayFleet, sent: list[Sent]) -> dict[str, Any]:
    """Per gateway: its statuses, and when its answers came (seconds after the first request left)."""
    start = min(s.started for s in sent)
    split: dict[str, Any] = {}
    for n, url in enumerate(licensor_fleet.urls):
        mine = [s for s in sent if s.url == url]
        if mine:
            split[f"gateway {n}"] = (
                len(mine),
                dict(Counter(s.answer.status for s in mine)),
                f"{min(s.done for s in mine) - start:.2f}-{max(s.done for s in mine) - start:.2f} s",
            )
    return split


def outcome(sent: Sent) -> str:
    return f"{sent.answer.status} {sent.answer.code}" if sent.answer.code else str(sent.answer.status)


# --- 1. a burst of distinct devices ----------------------------------------------------------------------
async def test_a_burst_of_devices_leases_exactly_the_seats_and_refuses_the_rest(licensor_fleet: GatewayFleet) -> None:
    shop = await vendor(licensor_fleet.gateway, seats=BURST_SEATS)
    credentials = [await shop.credential(f"site {n}") for n in range(CREDENTIALS)]
    devices = [shop.device(credentials[n % CREDENTIALS], f"burst-device-{n:03d}") for n in range(BURST_DEVICES)]
    jobs = [(licensor_fleet.url(n), CHECK_OUT, device.check_out_body()) for n, device in enumerate(devices)]
    await warm_up(licensor_fleet, credentials[0])

    sent, wall = await send_at_once(jobs, idempotent=True)
    print(
        f"\n[{licensor_fleet.store}] {BURST_DEVICES} check-outs at once, {BURST_SEATS} seats, {CREDENTIALS} credentials: "
        f"{wall:.2f} s (slowest answer {max(s.seconds for s in sent):.2f} s); statuses "
        f"{dict(Counter(s.answer.status for s in sent))}; codes {dict(Counter(s.answer.code for s in sent))}; "
        f"by gateway (requests, statuses, answers from-to) {by_gateway(licensor_fleet, sent)}"
    )

    no_server_errors(sent)
    assert Counter(s.answer.status for s in sent) == {201: BURST_SEATS, 409: BURST_DEVICES - BURST_SEATS}
    assert {s.answer.code for s in sent if s.answer.status == 409} == {"SEAT_LIMIT_REACHED"}
    winners = {s.answer.body["lease"]["id"]: n for n, s in enumerate(sent) if s.answer.status == 201}
    assert len(winners) == BURST_SEATS
    for lease_id, n in winners.items():  # whichever process answered, the token is the tenant's, for the device
        device = devices[n]
        device.keep(sent[n].answer.body)
        assert device.lease is not None and (device.lease["device_id"], device.lease["state"]) == (device.device_id, "active")
        assert device.lease_token is not None
        verdict = verify_lease_token(
            device.lease_token,
            credentials[n % CREDENTIALS].public_keys(),
            tenant=shop.tenant.id,
            product="cad",
            device_id=device.device_id,
        )
        assert (verdict.code.value, verdict.lease.lease_id, verdict.lease.license_id) == ("VALID", lease_id, shop.license["id"])
    assert {lease["id"] for lease in await shop.leases("active")} == set(winners)
    assert len(await shop.leases()) == BURST_SEATS  # no other lease at all, in any state
    assert await held_now(shop) == BURST_SEATS
    assert sorted(e["subject_id"] for e in await shop.events("lease.checked_out")) == sorted(winners)


# --- 2. a minute of devices coming and going ---------------------------------------------------------------
@dataclass
class SoakDevice:
    """A simulated device of the soak (a cloud_kit device and the gateway it talks to): the lease it believes
    it holds, and what it sent."""

    number: int
    device: Device
    url: str
    believed_until: int = 0  # the expires_at of its last 2xx lease answer (µs); 0 when it knows it holds none
    sent: list[Sent] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return self.device.lease_id is not None

    def take(self, body: dict[str, Any]) -> None:
        self.device.keep(body)
        self.believed_until = parse_time(body["lease"]["expires_at"], "expires_at")

    def forget(self) -> None:
        self.device.lease = self.device.lease_id = self.device.lease_secret = self.device.lease_token = None
        self.believed_until = 0


@dataclass
class Sampler:
    """Samples of the seats held, as the server counts them and as the devices believe."""

    samples: int = 0
    max_held: int = 0
    over: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the soak, held) above the seats
    max_believed: int = 0
    held_seen: Counter[int] = field(default_factory=Counter)
    max_gap_s: float = 0.0
    late: list[tuple[float, float]] = field(default_factory=list)  # (seconds into the soak, gap) over 2 intervals


async def sample(
    shop: Vendor, devices: list[SoakDevice], seats: int, started: float, stop: asyncio.Event, sampler: Sampler
) -> None:
    """Count the seats held every SAMPLE_EVERY_S until ``stop`` (at most MAX_SAMPLES times)."""
    last = time.monotonic()
    while not stop.is_set() and sampler.samples < MAX_SAMPLES:
        now_us = shop.backend.clock()
        held = await held_now(shop)
        believed = sum(1 for device in devices if device.believed_until > now_us)
        moment = time.monotonic()
        sampler.samples += 1
        sampler.max_gap_s = max(sampler.max_gap_s, moment - last)
        if moment - last > 2 * SAMPLE_EVERY_S:
            sampler.late.append((round(moment - started, 1), round(moment - last, 2)))
        last = moment
        sampler.held_seen[held] += 1
        sampler.max_held = max(sampler.max_held, held)
        sampler.max_believed = max(sampler.max_believed, believed)
        if held > seats:
            sampler.over.append((round(moment - started, 3), held))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)
        except TimeoutError:
            pass


async def live(device: SoakDevice, session: aiohttp.ClientSession, deadline: float, rng: random.Random, done: set[str]) -> None:
    """One device until the deadline (or MAX_ACTIONS_PER_DEVICE): it checks out when it holds no lease, and
    holding one renews it every heartbeat interval, or releases it, or goes silent past the lease's TTL and
    then finds it expired. ``done`` (shared by the devices) holds the rare actions taken so far: until each
    happened once, the next holder in the soak's first half takes it, so a short soak has every action too."""

    async def pause(seconds: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, deadline - time.monotonic())))

    async def send(action: str, path: str, body: dict[str, Any]) -> Sent:
        sent = await post_json(session, device.url, path, body, action=action, idempotent=True)
        device.sent.append(sent)
        return sent

    for _ in range(MAX_ACTIONS_PER_DEVICE):
        if time.monotonic() >= deadline:
            return
        if not device.holds:
            sent = await send("check_out", CHECK_OUT, device.device.check_out_body())
            if sent.answer.status == 201:
                device.take(sent.answer.body)
                await pause(rng.uniform(0.5, 1.0) * HEARTBEAT_S)
            else:
                await pause(rng.uniform(*REFUSED_PAUSE_S))
            continue
        body = device.device.lease_body()
        roll = rng.random()
        # Early enough that a silence ends, and its heartbeat is answered, with a second to spare before the deadline:
        # make test's 8-s soak has a window of 2.5 s for the rare actions.
        early = time.monotonic() < deadline - SILENCE_S[1] - 1.0
        if early and "heartbeat_after_silence" not in done:
            roll = P_RELEASE  # goes silent
        elif early and "release" not in done:
            roll = 0.0
        if roll < P_RELEASE:
            done.add("release")
            sent = await send("release", RELEASE, body)
            device.forget()
            await pause(rng.uniform(*REFUSED_PAUSE_S))
        elif roll < P_RELEASE + P_SILENT:
            done.add("heartbeat_after_silence")
            await pause(rng.uniform(*SILENCE_S))  # the lease runs out meanwhile; the device still believes it
            if time.monotonic() >= deadline:
                return
            await send("heartbeat_after_silence", HEARTBEAT, body)
            device.forget()
        else:
            sent = await send("heartbeat", HEARTBEAT, body)
            if sent.answer.status == 200:
                device.take(sent.answer.body)
                await pause(rng.uniform(0.5, 1.0) * HEARTBEAT_S)
            else:
                device.forget()


async def drive(devices: list[SoakDevice], seconds: float, seed: int) -> float:
    """Every device at once for ``seconds`` (in this thread's own event loop); the wall time taken."""
    async with open_client(len(devices)) as session:
        started = time.monotonic()
        deadline = started + seconds
        rngs = [random.Random(seed * 1_000 + device.number) for device in devices]
        done: set[str] = set()
        await asyncio.gather(*(live(device, session, deadline, rng, done) for device, rng in zip(devices, rngs)))
        return time.monotonic() - started


def seats_freed_by_expiry(rows: list[Row], seats: int, now: int) -> tuple[int, int, int]:
    """From the lease rows: (the most held at once, check-outs into a seat freed by a lease that ran out, leases
    that ran out). Seats freed are taken first in first out; a lease ends when it ended, or at its expiry."""
    changes: list[tuple[int, int, str]] = []  # (time, 0 end / 1 start, how it ended); ends sort first at one time
    ran_out = 0
    for row in rows:
        expired = row["state"] == "expired" or (row["state"] == "active" and row["expires_at"] <= now)
        ran_out += expired
        end = row["ended_at"] if row["ended_at"] is not None else (row["expires_at"] if expired else None)
        changes.append((row["created_at"], 1, ""))
        if end is not None:
            changes.append((end, 0, "expired" if expired else str(row["state"])))
    changes.sort()
    free = ["never used"] * seats
    held = peak = into_expired = 0
    for _, start, how in changes:
        if start:
            held += 1
            peak = max(peak, held)
            if free and free.pop(0) == "expired":
                into_expired += 1
        else:
            held -= 1
            free.append(how)
    return peak, into_expired, ran_out


async def test_soak_of_devices_coming_and_going_never_holds_more_than_the_seats(licensor_fleet: GatewayFleet) -> None:
    shop = await vendor(
        licensor_fleet.gateway, seats=SOAK_SEATS, lease_ttl_seconds=LEASE_TTL_S, heartbeat_interval_seconds=HEARTBEAT_S
    )
    credential = await shop.credential("office")
    devices = [SoakDevice(n, shop.device(credential, f"soak-device-{n:02d}"), licensor_fleet.url(n)) for n in range(SOAK_DEVICES)]
    await warm_up(licensor_fleet, credential)
    seed = random.randrange(1_000_000)
    sampler, stop = Sampler(), asyncio.Event()
    started = time.monotonic()
    sampling = asyncio.create_task(sample(shop, devices, SOAK_SEATS, started, stop, sampler))
    try:
        wall = await asyncio.to_thread(asyncio.run, drive(devices, SOAK_SECONDS, seed))
        soak_samples = sampler.samples

        # Every seat comes back when its lease runs out: let every lease left run out, then fresh devices fill
        # exactly the seats (the sampler goes on meanwhile).
        await asyncio.sleep(LEASE_TTL_S + 1)
        assert await held_now(shop) == 0
        fresh = [
            await post_json(
                licensor_fleet.session,
                licensor_fleet.url(n),
                CHECK_OUT,
                shop.device(credential, f"fresh-device-{n}").check_out_body(),
                action="fresh_check_out",
                idempotent=True,
            )
            for n in range(SOAK_SEATS + 1)
        ]
    finally:
        stop.set()
        await sampling
    sent = [s for device in devices for s in device.sent]
    outcomes = Counter((s.action, outcome(s)) for s in sent)
    actions = Counter(s.action for s in sent)
    rows = await lease_rows(shop)
    soak_rows = [row for row in rows if row["device_id"].startswith("soak-")]
    peak, into_expired, ran_out = seats_freed_by_expiry(soak_rows, SOAK_SEATS, shop.backend.clock())
    soak_leases = sum(1 for s in sent if s.answer.status == 201)
    marked_expired = sum(1 for row in soak_rows if row["state"] == "expired")
    print(
        f"\n[{licensor_fleet.store}] soak: {SOAK_DEVICES} devices, {SOAK_SEATS} seats, TTL {LEASE_TTL_S} s, heartbeat "
        f"{HEARTBEAT_S} s, "
        f"seed {seed}: {wall:.1f} s, {len(sent)} requests (slowest {max(s.seconds for s in sent):.2f} s); "
        f"actions {dict(actions)}; statuses {dict(Counter(s.answer.status for s in sent))}; "
        f"outcomes {dict(sorted(outcomes.items()))}; by gateway {by_gateway(licensor_fleet, sent)}"
    )
    print(
        f"[{licensor_fleet.store}] soak samples: {sampler.samples} ({soak_samples} during the soak, largest gap "
        f"{sampler.max_gap_s * 1000:.0f} ms; gaps over {2 * SAMPLE_EVERY_S * 1000:.0f} ms at (s, gap) {sampler.late[:10]}); "
        f"held by the server: max {sampler.max_held}, seen {dict(sorted(sampler.held_seen.items()))}; "
        f"believed by the devices: max {sampler.max_believed}"
    )
    print(
        f"[{licensor_fleet.store}] soak leases: {len(soak_rows)} made in the soak, peak held {peak}; ran out {ran_out} (of them "
        f"marked expired by the server {marked_expired}); soak check-outs into a seat freed by a lease that ran out: "
        f"{into_expired}; after every lease ran out, fresh check-outs {[outcome(s) for s in fresh]}"
    )

    no_server_errors(sent + fresh)
    assert sampler.over == [], f"the server counted more than {SOAK_SEATS} seats held: {sampler.over[:10]}"
    assert sampler.max_held == SOAK_SEATS  # the seats were all in use at times, never more
    assert soak_samples >= SOAK_SECONDS / (2 * SAMPLE_EVERY_S), "the sampler fell behind"
    # Each answer is one the protocol allows for what the device did.
    allowed = {
        ("check_out", "201"),
        ("check_out", "409 SEAT_LIMIT_REACHED"),
        ("heartbeat", "200"),
        ("heartbeat", "409 LEASE_EXPIRED"),
        ("release", "200"),
        ("heartbeat_after_silence", "409 LEASE_EXPIRED"),
    }
    assert set(outcomes) <= allowed, sorted(set(outcomes) - allowed)
    for action in ("check_out", "heartbeat", "release", "heartbeat_after_silence"):
        assert actions[action] > 0, action
    assert outcomes[("check_out", "201")] > SOAK_SEATS and outcomes[("heartbeat", "200")] > 0
    # Every seat whose lease ran out was leased again.
    assert peak == SOAK_SEATS and into_expired > 0 and ran_out >= outcomes[("heartbeat_after_silence", "409 LEASE_EXPIRED")]
    assert [outcome(s) for s in fresh] == ["201"] * SOAK_SEATS + ["409 SEAT_LIMIT_REACHED"]
    assert len(await shop.leases("active")) == SOAK_SEATS == await held_now(shop)
    assert len(soak_rows) == soak_leases and len(rows) == soak_leases + SOAK_SEATS
    assert len(await shop.events("lease.checked_out")) == len(rows)
    assert len(await shop.events("lease.renewed")) == outcomes[("heartbeat", "200")]
    assert len(await shop.events("lease.released")) == sum(
        1 for s in sent if s.action == "release" and s.answer.body["lease"]["state"] == "released"
    )
    today = datetime.fromtimestamp(shop.backend.clock() / 1_000_000, UTC).date()
    days = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    usage = await shop.tenant.ok("GET", f"{shop.license_path}/lease-usage", params=days)
    assert max(day["peak"] for day in usage["days"]) == SOAK_SEATS
    assert sum(day["checkouts"] for day in usage["days"]) == len(rows)
