"""The activation backend under concurrent device requests, through real gateways over 127.0.0.1 (no mocks).

Each test runs on SQLite (one gateway) and on PostgreSQL with two gateway processes sharing the database and
the master key: the in-process gateway and a ``licensor serve`` subprocess, requests split between them and
sent at once. What must hold whatever the interleaving:

- a burst of activations from distinct devices never takes more seats than the policy has;
- a burst of activations of one device makes one activation, never a second seat;
- two copies of a machine checking in at once: one goes on, the other is refused as a stale copy, recorded;
- a device presenting a file of k generations ago is refused as a rollback, recorded, seats unchanged;

and never a 5xx, and the tenant's event chain stays intact. Run with ``-s`` to see the measured numbers.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from activation_kit import Device, Vendor, vendor
from licensor.testing import Answer, GatewayFleet, Sent, check_error_contract, no_server_errors, post_json, send_at_once

pytestmark = pytest.mark.alone  # its figures need the machine to itself (make test runs it after the parallel part)

DEVICES = 200  # distinct devices racing for the seats
SEATS = 5
SAME_DEVICE_REQUESTS = 100
CLONE_ROUNDS = 10
ROLLBACK_GENERATIONS = 5
STALE_CODES = {"CLONE_SUSPECTED", "ROLLBACK_DETECTED"}


# --- sending device requests at once ------------------------------------------------------------------
async def warm_up(licensor_fleet: GatewayFleet, shop: Vendor) -> None:
    """Bring every gateway to where a busy one is, without changing anything, so that a burst measures the race
    and not one process's cold start: the license and the tenant's signing key in its cache (a signed check),
    the device request validators built (a request refused as too old)."""
    device = shop.device()
    check = {
        "tenant": shop.tenant.id,
        "product": shop.product["code"],
        "license_key": shop.license["key"],
        "fingerprint": device.fingerprint,
        "nonce": "warm-up-nonce-0123",
    }
    too_old = device.request("activate", time=int(shop.backend.clock() / 1_000_000) - 86_400)
    for url in licensor_fleet.urls:
        async with licensor_fleet.session.post(f"{url}/v1/check", json=check) as answer:
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["verdict"]["code"] == "FINGERPRINT_MISMATCH"
        refused = await post_json(licensor_fleet.session, url, "/v1/activations", {"request": too_old})
        assert (refused.answer.status, refused.answer.code) == (422, "DEVICE_CLOCK_SKEW"), refused.answer.text


def report(label: str, licensor_fleet: GatewayFleet, sent: list[Sent], wall: float) -> None:
    start = min(s.started for s in sent)
    by_gateway = {}
    for n, url in enumerate(licensor_fleet.urls):  # statuses, and when the gateway's answers came (s after the burst began)
        mine = [s for s in sent if s.url == url]
        by_gateway[f"gateway {n}"] = (
            dict(Counter(s.answer.status for s in mine)),
            f"{min(s.done for s in mine) - start:.2f}-{max(s.done for s in mine) - start:.2f} s",
        )
    slowest = max(s.seconds for s in sent)
    print(
        f"\n[{licensor_fleet.store}] {label}: {len(sent)} requests in {wall:.2f} s (slowest {slowest:.2f} s); "
        f"statuses {dict(Counter(s.answer.status for s in sent))}; codes {dict(Counter(s.answer.code for s in sent))}; "
        f"by gateway {by_gateway}"
    )


def keep(device: Device, answer: Answer) -> None:
    """What Device.send does with an answer: a device keeps a license file it is given."""
    if answer.status in (200, 201) and "license_file" in answer.body:
        device.keep(answer.body["license_file"], answer.body["activation"])


async def events(shop: Vendor, kind: str) -> list[dict[str, Any]]:
    return await shop.tenant.list_all("/v1/admin/events", params={"type": kind})


# --- the tests ----------------------------------------------------------------------------------------
async def test_a_burst_of_devices_never_takes_more_seats_than_the_policy_has(licensor_fleet: GatewayFleet) -> None:
    shop = await vendor(licensor_fleet.gateway, seats=SEATS)
    devices = [shop.device(name=f"device {n}") for n in range(DEVICES)]  # own components and key each
    assert len({tuple(sorted(d.fingerprint.items())) for d in devices}) == len({d.key.key_id for d in devices}) == DEVICES
    jobs = [
        (licensor_fleet.url(n), "/v1/activations", {"request": device.request("activate")}) for n, device in enumerate(devices)
    ]
    await warm_up(licensor_fleet, shop)

    sent, wall = await send_at_once(jobs)
    report("distinct devices activating", licensor_fleet, sent, wall)

    no_server_errors(sent)
    assert Counter(s.answer.status for s in sent) == {201: SEATS, 409: DEVICES - SEATS}
    assert {s.answer.code for s in sent if s.answer.status == 409} == {"SEAT_LIMIT_REACHED"}
    winners = [(device, s.answer) for device, s in zip(devices, sent) if s.answer.status == 201]
    created = {answer.body["activation"]["id"] for _, answer in winners}
    assert len(created) == SEATS
    activations = await shop.activations()
    assert [a["state"] for a in activations] == ["active"] * SEATS  # no other activation at all
    assert {a["id"] for a in activations} == created
    assert await shop.seats_held() == SEATS
    assert {e["subject_id"] for e in await events(shop, "activation.created")} == created
    assert len(await events(shop, "activation.created")) == SEATS
    for device, answer in winners:  # whichever process answered, the file is the tenant's and binds the device
        keep(device, answer)
        assert await device.verify(("draw",)) == "VALID"


async def test_a_burst_of_one_device_makes_one_activation(licensor_fleet: GatewayFleet) -> None:
    shop = await vendor(licensor_fleet.gateway, seats=2)  # a spare seat: a second activation of the device would show
    device = shop.device()
    # The same fingerprint and key every time; the names differ, so no two requests are byte-identical retries.
    jobs = [
        (licensor_fleet.url(n), "/v1/activations", {"request": device.request("activate", device_name=f"attempt {n}")})
        for n in range(SAME_DEVICE_REQUESTS)
    ]
    assert len({body["request"] for _, _, body in jobs}) == SAME_DEVICE_REQUESTS
    await warm_up(licensor_fleet, shop)

    sent, wall = await send_at_once(jobs)
    report("one device activating", licensor_fleet, sent, wall)

    no_server_errors(sent)
    assert Counter(s.answer.status for s in sent) == {201: 1, 200: SAME_DEVICE_REQUESTS - 1}
    ids = {s.answer.body["activation"]["id"] for s in sent}
    assert len(ids) == 1
    assert {s.answer.body["activation"]["generation"] for s in sent} == {1}
    first = next(n for n, s in enumerate(sent) if s.answer.status == 201)
    activations = await shop.activations()
    assert [(a["id"], a["state"]) for a in activations] == [(ids.pop(), "active")]
    assert activations[0]["device_name"] == f"attempt {first}"  # the one that created it
    assert await shop.seats_held() == 1
    assert len(await events(shop, "activation.created")) == 1


async def test_two_copies_of_a_machine_checking_in_at_once(licensor_fleet: GatewayFleet) -> None:
    shop = await vendor(licensor_fleet.gateway, seats=2)  # a spare seat: a clone counted as a second seat would show
    original = shop.device()
    assert (await original.activate()).status == 201
    clone = original.copy()
    # The hypervisor gave the copy a new MAC: its requests differ from the original's (no retry), within tolerance.
    clone.components = {**original.components, "mac": "regenerated by the hypervisor"}
    await warm_up(licensor_fleet, shop)
    winners: Counter[str] = Counter()
    refused: list[str] = []
    for round_ in range(CLONE_ROUNDS):
        # Both at once; on PostgreSQL each reaches another process, and they swap processes every round.
        twins = (original, clone) if round_ % 2 == 0 else (clone, original)
        jobs = [
            (licensor_fleet.url(n), "/v1/activations/checkin", {"request": twin.request("checkin")})
            for n, twin in enumerate(twins)
        ]
        sent, _ = await send_at_once(jobs)
        no_server_errors(sent)
        statuses = sorted(s.answer.status for s in sent)
        assert statuses == [200, 409], (round_, [(s.answer.status, s.answer.text[:200]) for s in sent])
        for twin, s in zip(twins, sent):
            if s.answer.status == 200:
                keep(twin, s.answer)
                winners["original" if twin is original else "clone"] += 1
            else:
                assert s.answer.code in STALE_CODES, s.answer.text
                refused.append(s.answer.code or "")
        activations = await shop.activations()
        assert [a["state"] for a in activations] == ["active"], (round_, activations)
        assert await shop.seats_held() == 1, round_
    print(
        f"\n[{licensor_fleet.store}] clone rounds: {CLONE_ROUNDS}; successes {dict(winners)}; refusals {dict(Counter(refused))}"
    )
    # Whoever won the first race holds the newest file from then on; the other copy stays stale.
    assert len(winners) == 1 and sum(winners.values()) == CLONE_ROUNDS
    stale_events = await events(shop, "activation.clone_suspected") + await events(shop, "activation.rollback_detected")
    assert len(stale_events) == len(refused) == CLONE_ROUNDS  # every refusal recorded, once
    assert len(await events(shop, "activation.checked_in")) == CLONE_ROUNDS
    assert len(await events(shop, "activation.created")) == 1


async def test_a_file_of_k_generations_ago_is_refused_as_a_rollback(licensor_fleet: GatewayFleet) -> None:
    shop = await vendor(licensor_fleet.gateway, seats=2)
    device = shop.device()
    assert (await device.activate()).status == 201
    snapshot = device.copy()  # the machine as it was at generation 1
    for n in range(ROLLBACK_GENERATIONS):  # spread over the processes, as a load balancer would
        sent = await post_json(
            licensor_fleet.session, licensor_fleet.url(n), "/v1/activations/checkin", {"request": device.request("checkin")}
        )
        assert sent.answer.status == 200, sent.answer.text
        keep(device, sent.answer)
    assert (device.generation, snapshot.generation) == (1 + ROLLBACK_GENERATIONS, 1)
    held = await shop.seats_held()

    stale = await post_json(
        licensor_fleet.session,
        licensor_fleet.url(ROLLBACK_GENERATIONS),
        "/v1/activations/checkin",
        {"request": snapshot.request("checkin")},
    )
    check_error_contract(stale.answer)
    assert (stale.answer.status, stale.answer.code) == (409, "ROLLBACK_DETECTED"), stale.answer.text
    assert await shop.seats_held() == held == 1
    assert [(a["state"], a["generation"]) for a in await shop.activations()] == [("active", 1 + ROLLBACK_GENERATIONS)]
    recorded = await events(shop, "activation.rollback_detected")
    assert [(e["subject_id"], e["data"]["presented_generation"]) for e in recorded] == [(device.activation_id, 1)]
    print(
        f"\n[{licensor_fleet.store}] rollback: generation 1 presented at generation {device.generation}: {stale.answer.code}, "
        f"seats held {held}, {len(recorded)} event"
    )
    live = await post_json(
        licensor_fleet.session, licensor_fleet.url(0), "/v1/activations/checkin", {"request": device.request("checkin")}
    )
    assert live.answer.status == 200, live.answer.text  # policy refuse: the live machine carries on
