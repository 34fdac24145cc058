"""Properties of tolerant matching through the real gateway on both stores, for every preset: a device changed
within its policy's tolerance keeps its activation, one changed beyond it needs a seat of its own, and a copy of
a device's components under another device key never gains a seat (it is told ALREADY_ACTIVATED; a recovery moves
the one seat, and the original is told WITHDRAWN).

Each example makes a vendor of its own (a new tenant with a license) on the one gateway of the test.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

from activation_kit import MACHINE, Device, Vendor, vendor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from licensor.fingerprint import DEFAULT_WEIGHTS, PRESETS
from licensor.testing import Gateway
from licensor_client.activation import DeviceKey

PROPERTIES = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAMES = sorted(MACHINE)
_vendors = itertools.count(1)


def weight(name: str) -> Fraction:
    return Fraction(DEFAULT_WEIGHTS.get(name, 1.0))


def unchanged_share(changed: frozenset[str]) -> Fraction:
    """The weighted share of the device's components left unchanged, exactly."""
    total = sum((weight(name) for name in NAMES), Fraction(0))
    return (total - sum((weight(name) for name in changed), Fraction(0))) / total


def threshold(preset: str) -> Fraction:
    return Fraction(str(PRESETS[preset]))  # the decimal the preset means (0.7, not the double nearest it)


SUBSETS = [frozenset(chosen) for size in range(len(NAMES) + 1) for chosen in itertools.combinations(NAMES, size)]
WITHIN = {preset: [s for s in SUBSETS if unchanged_share(s) >= threshold(preset)] for preset in PRESETS}
BEYOND = {preset: [s for s in SUBSETS if unchanged_share(s) < threshold(preset)] for preset in PRESETS}
assert all(len(WITHIN[p]) > 1 and BEYOND[p] for p in PRESETS), "every preset tolerates some change and refuses some"


@st.composite
def changes(draw: st.DrawFn, tolerated: bool) -> tuple[str, dict[str, str]]:
    """A preset, and the components to change ("changed": a new value, "removed": no longer read), all within
    the preset's tolerance or together beyond it."""
    preset = draw(st.sampled_from(sorted(PRESETS)), label="preset")
    subset = draw(st.sampled_from((WITHIN if tolerated else BEYOND)[preset]), label="components")
    modes = {name: draw(st.sampled_from(["changed", "removed"]), label=name) for name in sorted(subset)}
    if modes and all(mode == "removed" for mode in modes.values()) and len(modes) == len(NAMES):
        modes[NAMES[0]] = "changed"  # a fingerprint names at least one component
    return preset, modes


def changed(components: dict[str, str], modes: dict[str, str]) -> dict[str, str]:
    return {
        name: f"{value}-new" if modes.get(name) == "changed" else value
        for name, value in components.items()
        if modes.get(name) != "removed"
    }


async def new_vendor(gateway: Gateway, preset: str, seats: int = 1) -> Vendor:
    return await vendor(gateway, seats=seats, name=f"Property vendor {next(_vendors)}", match_preset=preset)


async def activated(shop: Vendor) -> tuple[Device, str]:
    device = shop.device()
    answer = await device.activate()
    assert answer.status == 201, answer.text
    return device, answer.body["activation"]["id"]


def _why(preset: str, modes: dict[str, str]) -> dict[str, Any]:
    return {"preset": preset, "changes": modes, "unchanged share": float(unchanged_share(frozenset(modes)))}


@PROPERTIES
@given(change=changes(tolerated=True))
async def test_a_device_changed_within_the_tolerance_keeps_its_activation(
    licensor_gateway: Gateway, change: tuple[str, dict[str, str]]
) -> None:
    preset, modes = change
    shop = await new_vendor(licensor_gateway, preset)  # one seat: a second activation would be refused
    device, activation_id = await activated(shop)
    device.components = changed(device.components, modes)
    again = await device.activate()
    assert (again.status, again.body["activation"]["id"]) == (200, activation_id), (_why(preset, modes), again.text)
    assert await device.verify(("draw",)) == "VALID", _why(preset, modes)  # the SDK agrees with the gateway
    renewed = await device.check_in()
    assert renewed.status == 200, (_why(preset, modes), renewed.text)
    assert (renewed.body["activation"]["id"], renewed.body["activation"]["generation"]) == (activation_id, 2)
    assert await device.verify(("draw",)) == "VALID"
    assert await shop.seats_held() == 1


@PROPERTIES
@given(change=changes(tolerated=False), seats=st.sampled_from([1, 2]))
async def test_a_device_changed_beyond_the_tolerance_needs_a_seat_of_its_own(
    licensor_gateway: Gateway, change: tuple[str, dict[str, str]], seats: int
) -> None:
    preset, modes = change
    shop = await new_vendor(licensor_gateway, preset, seats)
    device, activation_id = await activated(shop)
    old_file = device.file
    device.components = changed(device.components, modes)
    assert await device.verify() == "FINGERPRINT_MISMATCH", _why(preset, modes)  # the SDK agrees with the gateway
    again = await device.activate()
    if seats == 1:
        assert (again.status, again.code) == (409, "SEAT_LIMIT_REACHED"), (_why(preset, modes), again.text)
        refused = await device.check_in()  # on its old activation
        assert (refused.status, refused.code) == (403, "FINGERPRINT_MISMATCH"), (_why(preset, modes), refused.text)
        assert device.file == old_file and await shop.seats_held() == 1
    else:
        assert again.status == 201, (_why(preset, modes), again.text)
        assert again.body["activation"]["id"] != activation_id
        assert await device.verify(("draw",)) == "VALID"
        assert await shop.seats_held() == 2


@PROPERTIES
@given(change=changes(tolerated=True))
async def test_a_copy_of_a_devices_components_under_another_key_gains_no_seat(
    licensor_gateway: Gateway, change: tuple[str, dict[str, str]]
) -> None:
    preset, modes = change
    shop = await new_vendor(licensor_gateway, preset)
    original, activation_id = await activated(shop)
    copy = Device(shop, changed(dict(original.components), modes), DeviceKey.generate())
    refused = await copy.activate()  # it is the activated device, as far as its fingerprint tells: no second seat
    assert (refused.status, refused.code) == (409, "ALREADY_ACTIVATED"), (_why(preset, modes), refused.text)
    assert await shop.seats_held() == 1
    # Recovering moves the one seat to the copy, within the allowance; the original is told it lost it.
    moved = await copy.recover()
    assert moved.status == 201 and moved.body["activation"]["recovery_of"] == activation_id, (_why(preset, modes), moved.text)
    assert await copy.verify(("draw",)) == "VALID"
    told = await original.check_in()
    assert (told.status, told.code) == (403, "WITHDRAWN"), (_why(preset, modes), told.text)
    assert await shop.seats_held() == 1
    assert (await shop.activations("active"))[0]["id"] == copy.activation_id
    again = await Device(shop, dict(original.components), DeviceKey.generate()).recover()  # the allowance is 1
    assert (again.status, again.code) == (409, "RECOVERY_LIMIT_REACHED"), (_why(preset, modes), again.text)
    assert await shop.seats_held() == 1
    assert copy.activation_id is not None
    assert sorted(a["id"] for a in await shop.activations()) == sorted([activation_id, copy.activation_id])
