"""The activation backend through the real gateway on both stores: activation, check-ins and checkpoints,
deactivation, removal, recovery, clones and rollbacks, offline activation, and /v1/check with a fingerprint."""

from __future__ import annotations

import pytest
from activation_kit import Device, Vendor, machine, vendor
from licensor.testing import Gateway

DAY = 86_400


@pytest.fixture
async def shop(licensor_gateway: Gateway) -> Vendor:
    made = await vendor(
        licensor_gateway,
        seats=2,
        checkpoint_interval_seconds=10 * DAY,
        checkpoint_grace_seconds=2 * DAY,
        recoveries_per_period=1,
        recovery_period_days=30,
    )
    made.gateway.freeze_clock()
    return made


async def events(shop: Vendor, kind: str) -> list[dict]:
    return await shop.tenant.list_all("/v1/admin/events", params={"type": kind})


async def test_an_activated_device_verifies_its_file_offline(shop: Vendor) -> None:
    device = shop.device(name="Workstation")
    answer = await device.activate()
    assert answer.status == 201, answer.text
    activation = answer.body["activation"]
    assert (activation["state"], activation["generation"], activation["device_name"]) == ("active", 1, "Workstation")
    assert await device.verify(("draw",)) == "VALID"
    assert await device.verify(("render",)) == "FEATURE_NOT_ENTITLED"
    assert [e["subject_id"] for e in await events(shop, "activation.created")] == [activation["id"]]


async def test_the_same_device_again_is_the_same_activation(shop: Vendor) -> None:
    device = shop.device()
    first = await device.activate()
    again = await device.activate()
    assert (first.status, again.status) == (201, 200)
    assert again.body["activation"]["id"] == first.body["activation"]["id"]
    device.components = {**device.components, "mac": "changed", "hostname": "renamed"}  # 2 of 13 weight: tolerated
    assert (await device.activate()).body["activation"]["id"] == first.body["activation"]["id"]
    assert await shop.seats_held() == 1


async def test_seats_are_enforced_and_deactivation_frees_one_at_once(shop: Vendor) -> None:
    one, two, three = shop.device(), shop.device(), shop.device()
    assert (await one.activate()).status == 201
    assert (await two.activate()).status == 201
    refused = await three.activate()
    assert (refused.status, refused.code) == (409, "SEAT_LIMIT_REACHED")
    ended = await one.deactivate()
    assert ended.status == 200 and ended.body["activation"]["state"] == "deactivated"
    assert (await one.deactivate()).status == 200  # a retry of the deactivation
    assert (await three.activate()).status == 201
    told = await one.check_in()
    assert (told.status, told.code) == (403, "WITHDRAWN")


async def test_devices_coming_and_going_faster_than_the_churn_budget_are_refused(shop: Vendor) -> None:
    shop.gateway.set_rate_limits(rate_limit_churn="3/1d")
    clock = shop.clock
    one, two, three = shop.device(), shop.device(), shop.device()
    assert (await one.activate()).status == 201  # 1
    assert (await one.activate()).status == 200  # a retry: not counted
    assert (await two.activate()).status == 201  # 2
    full = await three.activate()
    assert (full.status, full.code) == (409, "SEAT_LIMIT_REACHED")  # refused for another reason: not counted
    assert (await one.deactivate()).status == 200  # 3
    assert (await one.deactivate()).status == 200  # a retry: not counted
    refused = await three.activate()
    assert (refused.status, refused.code) == (429, "RATE_LIMITED")
    assert refused.headers["RateLimit-Policy"] == '"churn";q=3;w=86400'
    assert int(refused.headers["Retry-After"]) > 7 * 3600  # one more every 8 hours
    assert len(await shop.activations("active")) == 1  # nothing of the refused activation was written
    clock.advance(8 * 3600)
    assert (await three.activate()).status == 201
    assert (await two.check_in()).status == 200  # check-ins are no churn


async def test_check_ins_renew_the_file_and_a_file_lapses_at_its_checkpoint(shop: Vendor) -> None:
    device = shop.device()
    await device.activate()
    clock = shop.clock
    clock.advance(9 * DAY)
    renewed = await device.check_in()
    assert renewed.status == 200 and renewed.body["activation"]["generation"] == 2
    assert await device.verify() == "VALID"
    assert await device.check_in() is not None and device.generation == 3
    clock.advance(11 * DAY)
    assert await device.verify() == "VALID"  # past the checkpoint, within the grace
    clock.advance(1.5 * DAY)
    assert await device.verify() == "CHECKPOINT_OVERDUE"
    late = await device.check_in()  # still bound: an overdue device checks in and is valid again
    assert late.status == 200 and await device.verify() == "VALID"


async def test_a_retried_check_in_gets_the_same_generation(shop: Vendor) -> None:
    device = shop.device()
    await device.activate()
    request = device.request("checkin")
    first = await shop.gateway.call("POST", "/v1/activations/checkin", json={"request": request})
    again = await shop.gateway.call("POST", "/v1/activations/checkin", json={"request": request})
    assert first.status == again.status == 200
    assert first.body["activation"]["generation"] == again.body["activation"]["generation"] == 2


async def test_a_device_changed_beyond_the_tolerance_is_refused(shop: Vendor) -> None:
    device = shop.device()
    await device.activate()
    device.components = {**device.components, "machine_id": "new", "board": "new"}  # 7 of 13: below 0.7
    refused = await device.check_in()
    assert (refused.status, refused.code) == (403, "FINGERPRINT_MISMATCH")
    assert await device.verify() == "FINGERPRINT_MISMATCH"


async def test_a_removed_device_is_told_and_its_seat_returns_when_its_file_lapses(shop: Vendor) -> None:
    one, two, three = shop.device(), shop.device(), shop.device()
    await one.activate()
    await two.activate()
    await shop.tenant.ok("POST", f"/v1/admin/activations/{one.activation_id}/withdraw", json={"reason": "stolen laptop"})
    assert (await three.activate()).code == "SEAT_LIMIT_REACHED"  # the removed file is still valid offline
    told = await one.check_in()
    assert (told.status, told.code) == (403, "WITHDRAWN")
    shop.clock.advance(12 * DAY + 1)
    assert await one.verify() == "CHECKPOINT_OVERDUE"
    assert (await three.activate()).status == 201
    again = await shop.tenant.call("POST", f"/v1/admin/activations/{one.activation_id}/withdraw")
    assert (again.status, again.code) == (409, "ACTIVATION_ENDED")


async def test_recovery_moves_the_longest_silent_seat_within_the_allowance(shop: Vendor) -> None:
    old, busy, new, newer = shop.device(), shop.device(), shop.device(), shop.device()
    await old.activate()
    await busy.activate()
    shop.clock.advance(DAY)
    await busy.check_in()
    recovered = await new.recover()
    assert recovered.status == 201, recovered.text
    assert recovered.body["activation"]["recovery_of"] == old.activation_id
    assert (await old.check_in()).code == "WITHDRAWN"
    assert await shop.seats_held() == 2  # the recovered seat moved; it is not held twice
    limit = await newer.recover()
    assert (limit.status, limit.code) == (409, "RECOVERY_LIMIT_REACHED")
    shop.clock.advance(31 * DAY)
    named = await newer.recover(withdraw=busy.activation_id)
    assert named.status == 201 and named.body["activation"]["recovery_of"] == busy.activation_id


async def test_a_recovery_with_a_free_seat_is_a_plain_activation(shop: Vendor) -> None:
    answer = await shop.device().recover()
    assert answer.status == 201 and answer.body["activation"]["recovery_of"] is None


async def test_a_cloned_machine_is_caught_and_never_holds_a_second_seat(shop: Vendor) -> None:
    original = shop.device()
    await original.activate()
    clone = original.copy()
    clone.components = {**original.components, "mac": "regenerated by the hypervisor"}
    assert (await original.check_in()).status == 200
    caught = await clone.check_in()
    assert (caught.status, caught.code) == (409, "CLONE_SUSPECTED")
    assert (await original.check_in()).status == 200  # policy refuse: the live copy carries on
    assert len(await events(shop, "activation.clone_suspected")) == 1
    assert await shop.seats_held() == 1


async def test_a_reverted_snapshot_is_caught(shop: Vendor) -> None:
    device = shop.device()
    await device.activate()
    snapshot = device.copy()
    for _ in range(3):
        await device.check_in()
    caught = await snapshot.check_in()  # three generations old
    assert (caught.status, caught.code) == (409, "ROLLBACK_DETECTED")
    assert len(await events(shop, "activation.rollback_detected")) == 1
    assert await shop.seats_held() == 1


async def test_policy_suspend_stops_every_copy_until_the_vendor_acts(licensor_gateway: Gateway) -> None:
    shop = await vendor(licensor_gateway, on_clone="suspend")
    clock = shop.gateway.freeze_clock()
    device = shop.device()
    await device.activate()
    snapshot = device.copy()
    await device.check_in()
    clock.advance(60)
    assert (await snapshot.check_in()).code == "ROLLBACK_DETECTED"
    assert (await device.check_in()).code == "ROLLBACK_DETECTED"  # suspended: the live copy too
    assert (await shop.activations("suspended"))[0]["flagged"] == "rollback"
    await shop.tenant.ok("POST", f"/v1/admin/activations/{device.activation_id}/reinstate")
    assert (await device.check_in()).status == 200
    assert (await snapshot.check_in()).code == "ROLLBACK_DETECTED"


async def test_an_activated_device_does_not_activate_again_it_recovers(shop: Vendor) -> None:
    device = shop.device()
    await device.activate()
    await device.check_in()
    again = await device.activate()  # after a check-in, not a retry: a reverted copy must not get a fresh file
    assert (again.status, again.code) == (409, "ALREADY_ACTIVATED")
    reinstalled = Device(shop, dict(device.components), type(device.key).generate())  # the same machine, a new key
    assert (await reinstalled.activate()).code == "ALREADY_ACTIVATED"
    moved = await reinstalled.recover()
    assert moved.status == 201 and moved.body["activation"]["recovery_of"] == device.activation_id
    assert (await device.check_in()).code == "WITHDRAWN"  # the old key's activation was replaced
    assert await shop.seats_held() == 1
    assert [e["data"]["state"] for e in await events(shop, "activation.replaced")] == ["replaced"]


async def test_only_the_activations_own_key_may_act_on_it(licensor_gateway: Gateway) -> None:
    shop = await vendor(licensor_gateway, on_clone="suspend")
    device = shop.device()
    await device.activate()
    impostor = Device(shop, dict(device.components), type(device.key).generate())
    impostor.activation_id, impostor.generation = device.activation_id, 1
    for answer in (await impostor.check_in(), await impostor.deactivate()):
        assert (answer.status, answer.code) == (403, "DEVICE_KEY_MISMATCH")
    assert (await shop.activations("active"))[0]["flagged"] is None  # nothing flagged, nothing suspended
    assert (await device.check_in()).status == 200


async def test_a_lost_check_in_answer_is_fetched_by_resending_the_same_request(shop: Vendor) -> None:
    device = shop.device()
    await device.activate()
    request = device.request("checkin")
    first = await shop.gateway.call("POST", "/v1/activations/checkin", json={"request": request})
    assert first.status == 200  # ... and the answer is lost on the way
    shop.clock.advance(3 * 3600)
    again = await shop.gateway.call("POST", "/v1/activations/checkin", json={"request": request})
    assert again.status == 200 and again.body["activation"]["generation"] == 2
    device.keep(again.body["license_file"], again.body["activation"])
    stale = device.request("checkin", generation=1, now=shop.backend.clock() / 1_000_000 - 2 * 3600)
    late = await shop.gateway.call("POST", "/v1/activations/checkin", json={"request": stale})
    assert (late.status, late.code) == (422, "DEVICE_CLOCK_SKEW")  # an old request that is no retry
    assert (await device.check_in()).status == 200


async def test_a_removal_can_be_undone(shop: Vendor) -> None:
    device, other, third = shop.device(), shop.device(), shop.device()
    await device.activate()
    await other.activate()
    await shop.tenant.ok("POST", f"/v1/admin/activations/{device.activation_id}/withdraw")
    await shop.tenant.ok("POST", f"/v1/admin/activations/{device.activation_id}/reinstate")
    assert (await device.check_in()).status == 200
    await shop.tenant.ok("POST", f"/v1/admin/activations/{device.activation_id}/withdraw")
    shop.clock.advance(13 * DAY)  # its file lapsed: the seat went back ...
    assert (await third.activate()).status == 201  # ... and was taken
    refused = await shop.tenant.call("POST", f"/v1/admin/activations/{device.activation_id}/reinstate")
    assert (refused.status, refused.code) == (409, "SEAT_LIMIT_REACHED")


async def test_offline_activation_by_request_file(shop: Vendor) -> None:
    device = shop.device()
    request_file = device.request("activate")
    answer = await shop.tenant.call("POST", "/v1/admin/activations/offline", json={"request": request_file})
    assert answer.status == 201, answer.text
    device.keep(answer.body["license_file"], answer.body["activation"])
    assert answer.body["activation"]["mode"] == "offline"
    assert await device.verify(("draw",)) == "VALID"
    shop.clock.advance(100 * DAY)  # far past the online checkpoint: the offline lifetime applies
    assert await device.verify() == "VALID"
    other = await vendor(shop.gateway, name="Other vendor")
    foreign = await other.tenant.call("POST", "/v1/admin/activations/offline", json={"request": request_file})
    assert (foreign.status, foreign.code) == (403, "TENANT_MISMATCH")


async def test_check_by_license_key_with_a_fingerprint(shop: Vendor) -> None:
    device = shop.device()
    body = {"tenant": shop.tenant.id, "product": "cad", "license_key": shop.license["key"], "fingerprint": device.fingerprint}
    assert (await shop.gateway.call("POST", "/v1/check", json=body)).body["verdict"]["code"] == "FINGERPRINT_MISMATCH"
    await device.activate()
    verdict = (await shop.gateway.call("POST", "/v1/check", json=body)).body["verdict"]
    assert verdict["code"] == "VALID" and verdict["terms"]["activation_id"] == device.activation_id
    await device.deactivate()
    assert (await shop.gateway.call("POST", "/v1/check", json=body)).body["verdict"]["code"] == "FINGERPRINT_MISMATCH"


async def test_bad_device_requests_get_stable_codes(shop: Vendor) -> None:
    device = shop.device()
    request = device.request("activate")
    tampered = request[:-2] + ("A" if request[-2] != "A" else "B") + request[-1]
    for body, status, code in (
        ({"request": tampered}, 401, "DEVICE_REQUEST_INVALID"),
        ({"request": "lf1.x.y.z"}, 401, "DEVICE_REQUEST_INVALID"),
        ({"request": device.request("checkin")}, 422, "WRONG_DEVICE_OPERATION"),
        ({"request": device.request("activate", license_key="WRONG-KEY1-WRONG-KEY2")}, 422, "LICENSE_KEY_MALFORMED"),
        ({}, 422, "MISSING_FIELD"),
    ):
        answer = await shop.gateway.call("POST", "/v1/activations", json=body)
        assert (answer.status, answer.code) == (status, code), answer.text
    shop.clock.advance(3600)
    late = await shop.gateway.call("POST", "/v1/activations", json={"request": request})
    assert (late.status, late.code) == (422, "DEVICE_CLOCK_SKEW")
    assert (
        await shop.gateway.call(
            "POST",
            "/v1/activations/checkin",
            json={"request": shop.device().request("checkin", activation="act_" + "0" * 26, generation=1)},
        )
    ).code == "ACTIVATION_NOT_FOUND"


async def test_another_tenant_never_sees_an_activation(shop: Vendor) -> None:
    device = shop.device()
    await device.activate()
    other = await vendor(shop.gateway, name="Other vendor")
    assert (await other.tenant.call("GET", f"/v1/admin/activations/{device.activation_id}")).status == 404
    assert (await other.tenant.call("GET", f"/v1/admin/licenses/{shop.license['id']}/activations")).status == 404
    assert (await other.tenant.call("POST", f"/v1/admin/activations/{device.activation_id}/withdraw")).status == 404
    assert [a["id"] for a in await shop.activations()] == [device.activation_id]


def test_machines_differ_everywhere() -> None:
    assert not set(machine(1).values()) & set(machine(2).values())


async def test_a_resent_recovery_is_answered_its_activation_not_a_second_recovery(shop: Vendor) -> None:
    one, two, new = shop.device(), shop.device(), shop.device()
    await one.activate()
    await two.activate()
    request = new.request("recover")
    first = await shop.gateway.call("POST", "/v1/activations/recover", json={"request": request})
    again = await shop.gateway.call("POST", "/v1/activations/recover", json={"request": request})  # the answer was lost
    assert (first.status, again.status) == (201, 200)
    assert again.body["activation"]["id"] == first.body["activation"]["id"]
    assert len(await events(shop, "activation.recovered")) == 1 and await shop.seats_held() == 2


async def test_a_fingerprint_the_policy_gives_no_weight_is_refused(licensor_gateway: Gateway) -> None:
    shop = await vendor(
        licensor_gateway, component_weights={name: 0 for name in ("machine_id", "board", "cpu", "disk", "mac", "hostname")}
    )
    refused = await shop.device().activate()  # only weightless components: it could never be matched again
    assert (refused.status, refused.code) == (422, "INVALID_DEVICE_REQUEST")
    assert await shop.seats_held() == 0
    device = shop.device({"machine_id": "m", "tpm": "t-1"})  # tpm is not named: it weighs 1
    assert (await device.activate()).status == 201 and (await device.activate()).status == 200
