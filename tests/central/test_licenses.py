"""Licenses through the admin API: keys shown once, typo-tolerant lookup, the state machine, dates from policies."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from licensor.central import license_keys
from licensor.errors import ValidationError
from licensor_client import license_keys as client_keys

from .conftest import Tenant

KEY_FORMAT = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){6}$")
DAY = timedelta(days=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def licensed(tenant: Tenant, **policy: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(product, policy) of a product with one feature."""
    product = await tenant.product("studio")
    await tenant.feature(product["id"], "export")
    return product, await tenant.policy(product["id"], **policy)


# --- keys ----------------------------------------------------------------------------------------------
async def test_a_new_license_shows_its_key_once_and_never_again(tenant: Tenant) -> None:
    _, policy = await licensed(tenant)
    created = await tenant.license(policy["id"])
    key = created["key"]
    assert KEY_FORMAT.fullmatch(key), key
    normalized = license_keys.normalize(key)
    assert created["key_hint"] == normalized[-4:]
    assert (created["state"], created["policy_id"], created["product_id"]) == ("active", policy["id"], policy["product_id"])

    shown = await tenant.ok("GET", f"/v1/admin/licenses/{created['id']}")
    assert "key" not in shown and shown == {k: v for k, v in created.items() if k != "key"}
    for answer in (
        await tenant.call("GET", f"/v1/admin/licenses/{created['id']}"),
        await tenant.call("GET", "/v1/admin/licenses"),
        await tenant.call("POST", "/v1/admin/licenses/lookup", json={"key": key}),
        await tenant.call("PATCH", f"/v1/admin/licenses/{created['id']}", json={"order_ref": "o-1"}),
        await tenant.call("POST", f"/v1/admin/licenses/{created['id']}/suspend", json={}),
    ):
        assert answer.status == 200
        assert key not in answer.text and normalized not in answer.text
        assert normalized[:-4] not in answer.text


async def test_license_keys_have_135_random_bits_in_seven_groups_with_a_check_character() -> None:
    keys = {license_keys.generate() for _ in range(2000)}
    assert len(keys) == 2000
    for key in keys:
        assert KEY_FORMAT.fullmatch(key)
        assert license_keys.normalize(key) == key.replace("-", "")
    assert client_keys.RANDOM_CHARACTERS * 5 >= 128
    # Every position takes every character of the alphabet (no fixed or biased positions).
    for position in range(client_keys.RANDOM_CHARACTERS):
        assert {key.replace("-", "")[position] for key in keys} == set(client_keys.ALPHABET)


def test_every_single_character_typo_is_told_apart_from_an_unknown_key() -> None:
    key = license_keys.generate().replace("-", "")
    for position in range(len(key)):
        for replacement in client_keys.ALPHABET:
            if replacement == key[position]:
                continue
            typo = key[:position] + replacement + key[position + 1 :]
            with pytest.raises(ValidationError) as refused:
                license_keys.normalize(typo)
            assert refused.value.code == "LICENSE_KEY_MALFORMED"
    for short in (key[:-1], key + "0", ""):
        with pytest.raises(ValidationError):
            license_keys.normalize(short)


async def test_a_license_is_found_by_its_key_typed_carelessly(tenant: Tenant) -> None:
    _, policy = await licensed(tenant)
    created = await tenant.license(policy["id"])
    key = created["key"]
    compact = key.replace("-", "")
    spellings = [
        key,
        key.lower(),
        compact,
        compact.lower(),
        " ".join(key.split("-")),
        f"  {key}\n",
        key.replace("-", " - "),
        key.replace("0", "O").replace("1", "I"),
        key.lower().replace("1", "l").replace("0", "o"),
    ]
    for spelling in spellings:
        found = await tenant.ok("POST", "/v1/admin/licenses/lookup", json={"key": spelling})
        assert found["id"] == created["id"], spelling


async def test_a_typo_is_a_422_while_an_unknown_key_is_a_404(tenant: Tenant) -> None:
    _, policy = await licensed(tenant)
    key = (await tenant.license(policy["id"]))["key"]
    for position in (0, 5, 17, len(key) - 1):  # the last one is the check character
        original = key[position]
        if original == "-":
            continue
        replacement = "7" if original != "7" else "8"
        typo = key[:position] + replacement + key[position + 1 :]
        answer = await tenant.call("POST", "/v1/admin/licenses/lookup", json={"key": typo})
        assert (answer.status, answer.code) == (422, "LICENSE_KEY_MALFORMED"), typo
    for malformed in ("", "   ", key[:-1], key + "X", key.replace(key[2], "U", 1), "not a key at all"):
        answer = await tenant.call("POST", "/v1/admin/licenses/lookup", json={"key": malformed or " "})
        assert (answer.status, answer.code) == (422, "LICENSE_KEY_MALFORMED"), malformed
    unknown = license_keys.generate()
    answer = await tenant.call("POST", "/v1/admin/licenses/lookup", json={"key": unknown})
    assert (answer.status, answer.code) == (404, "LICENSE_NOT_FOUND")


async def test_another_tenants_key_is_not_found(tenant: Tenant) -> None:
    _, policy = await licensed(tenant)
    key = (await tenant.license(policy["id"]))["key"]
    other = await tenant.gateway.tenant("Vendor B")
    answer = await other.call("POST", "/v1/admin/licenses/lookup", json={"key": key})
    assert (answer.status, answer.code) == (404, "LICENSE_NOT_FOUND")


async def test_the_key_never_reaches_the_event_log_or_the_logs(tenant: Tenant, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, policy = await licensed(tenant, duration={"kind": "subscription", "days": 30})
    created = await tenant.license(policy["id"], order_ref="order-9")
    key = created["key"]
    await tenant.ok("POST", "/v1/admin/licenses/lookup", json={"key": key.lower()})
    await tenant.ok("POST", f"/v1/admin/licenses/{created['id']}/suspend", json={"reason": "chargeback"})
    await tenant.ok("POST", f"/v1/admin/licenses/{created['id']}/reinstate", json={})
    await tenant.ok("POST", f"/v1/admin/licenses/{created['id']}/renew", json={})
    await tenant.ok("POST", f"/v1/admin/licenses/{created['id']}/revoke", json={})
    typo = key[:-1] + ("7" if key[-1] != "7" else "8")
    assert (await tenant.call("POST", "/v1/admin/licenses/lookup", json={"key": typo})).status == 422
    # A request that fails unexpectedly must not log the key either (its body is never logged).
    assert (await tenant.call("POST", "/v1/admin/licenses/lookup", json={"key": key, "extra": key})).status == 422

    events = await tenant.list_all("/v1/admin/events", limit=3)
    license_events = [e["type"] for e in events if e["subject_id"] == created["id"]]
    assert license_events == ["license.created", "license.suspended", "license.reinstated", "license.renewed", "license.revoked"]
    normalized = license_keys.normalize(key)
    secrets = {key, key.lower(), normalized, normalized.lower(), typo, normalized[:-4]}
    for event in events:
        text = str(event)
        assert not any(secret in text for secret in secrets), event
    assert caplog.records, "the gateway logs nothing at all? the check would prove nothing"
    logged = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    assert not any(secret in logged for secret in secrets)


# --- the state machine ---------------------------------------------------------------------------------
async def test_suspend_reinstate_and_revoke_follow_the_state_machine(tenant: Tenant) -> None:
    _, policy = await licensed(tenant)
    lic = (await tenant.license(policy["id"]))["id"]
    base = f"/v1/admin/licenses/{lic}"

    async def act(action: str, expected_state: str | None, **body: Any) -> None:
        answer = await tenant.call("POST", f"{base}/{action}", json=body)
        if expected_state is None:
            assert (answer.status, answer.code) == (409, "INVALID_STATE"), action
        else:
            assert answer.status == 200 and answer.body["state"] == expected_state, answer.text

    await act("reinstate", None)  # active
    await act("suspend", "suspended", reason="unpaid invoice")
    await act("suspend", None)
    await act("reinstate", "active")
    await act("reinstate", None)
    await act("suspend", "suspended")
    await act("revoke", "revoked", reason="fraud")
    for action in ("suspend", "reinstate", "revoke", "renew"):
        await act(action, None)
    assert (await tenant.ok("GET", base))["state"] == "revoked"
    changes = [e for e in await tenant.list_all("/v1/admin/events", params={"subject_id": lic})]
    assert [e["type"] for e in changes] == [
        "license.created",
        "license.suspended",
        "license.reinstated",
        "license.suspended",
        "license.revoked",
    ]
    assert changes[1]["data"]["reason"] == "unpaid invoice" and changes[4]["data"]["reason"] == "fraud"
    assert changes[4]["data"]["state"] == "revoked" and changes[4]["actor"].startswith("token:tok_")


async def test_an_active_license_may_be_revoked_directly(tenant: Tenant) -> None:
    _, policy = await licensed(tenant)
    lic = (await tenant.license(policy["id"]))["id"]
    assert (await tenant.ok("POST", f"/v1/admin/licenses/{lic}/revoke", json={}))["state"] == "revoked"


async def test_the_state_is_changed_by_actions_only(tenant: Tenant) -> None:
    _, policy = await licensed(tenant)
    lic = await tenant.license(policy["id"])
    for change in (
        {"state": "revoked"},
        {"key_hint": "AAAA"},
        {"policy_id": policy["id"]},
        {"product_id": policy["product_id"]},
        {"starts_at": "2026-01-01T00:00:00Z"},
    ):
        answer = await tenant.call("PATCH", f"/v1/admin/licenses/{lic['id']}", json=change)
        assert (answer.status, answer.code) == (422, "UNKNOWN_FIELD"), change
    assert (await tenant.ok("GET", f"/v1/admin/licenses/{lic['id']}"))["state"] == "active"


async def test_an_action_on_a_missing_license_is_a_404(tenant: Tenant) -> None:
    for action in ("suspend", "reinstate", "revoke", "renew"):
        answer = await tenant.call("POST", f"/v1/admin/licenses/lic_00000000000000000000000000/{action}", json={})
        assert (answer.status, answer.code) == (404, "LICENSE_NOT_FOUND")


# --- dates ---------------------------------------------------------------------------------------------
async def test_dates_come_from_the_policy(tenant: Tenant) -> None:
    product, subscription = await licensed(tenant, duration={"kind": "subscription", "days": 365}, maintenance_days=90)
    start = "2026-03-01T12:00:00Z"
    lic = await tenant.license(subscription["id"], starts_at=start)
    assert at(lic["starts_at"]) == at(start)
    assert at(lic["expires_at"]) == at(start) + 365 * DAY
    assert at(lic["maintenance_until"]) == at(start) + 90 * DAY

    trial = await tenant.policy(product["id"], name="Trial", duration={"kind": "trial", "days": 14})
    lic = await tenant.license(trial["id"], starts_at=start)
    assert (at(lic["expires_at"]), lic["maintenance_until"]) == (at(start) + 14 * DAY, None)

    perpetual = await tenant.policy(product["id"], name="Forever", maintenance_days=365)
    lic = await tenant.license(perpetual["id"], starts_at=start)
    assert (lic["expires_at"], at(lic["maintenance_until"])) == (None, at(start) + 365 * DAY)

    before = datetime.now(UTC)
    lic = await tenant.license(subscription["id"])
    started = at(lic["starts_at"])
    assert before - timedelta(seconds=5) <= started <= datetime.now(UTC) + timedelta(seconds=5)
    assert at(lic["expires_at"]) == started + 365 * DAY


async def test_explicit_dates_override_the_policy(tenant: Tenant) -> None:
    _, policy = await licensed(tenant, duration={"kind": "subscription", "days": 30}, maintenance_days=30)
    start = "2026-03-01T00:00:00+02:00"
    lic = await tenant.license(policy["id"], starts_at=start, expires_at="2027-01-01T00:00:00Z", maintenance_until=None)
    assert (lic["starts_at"], lic["expires_at"], lic["maintenance_until"]) == (
        "2026-02-28T22:00:00.000000Z",
        "2027-01-01T00:00:00.000000Z",
        None,
    )
    open_ended = await tenant.license(policy["id"], expires_at=None)
    assert open_ended["expires_at"] is None
    for expires_at in ("2026-02-28T22:00:00Z", "2025-01-01T00:00:00Z"):
        answer = await tenant.call(
            "POST", "/v1/admin/licenses", json={"policy_id": policy["id"], "starts_at": start, "expires_at": expires_at}
        )
        assert (answer.status, answer.code) == (422, "INVALID_FIELD"), expires_at


async def test_renewing_extends_by_the_policy_period_or_to_a_given_date(tenant: Tenant) -> None:
    product, policy = await licensed(tenant, duration={"kind": "subscription", "days": 30}, maintenance_days=10)
    future = datetime.now(UTC) + 100 * DAY
    lic = await tenant.license(policy["id"], expires_at=future.isoformat())
    renewed = await tenant.ok("POST", f"/v1/admin/licenses/{lic['id']}/renew", json={})
    assert abs(at(renewed["expires_at"]) - (at(lic["expires_at"]) + 30 * DAY)) < timedelta(seconds=1)
    assert at(renewed["maintenance_until"]) > at(lic["maintenance_until"])

    lapsed = await tenant.license(policy["id"], starts_at="2020-01-01T00:00:00Z")
    assert at(lapsed["expires_at"]) < datetime.now(UTC)
    renewed = await tenant.ok("POST", f"/v1/admin/licenses/{lapsed['id']}/renew", json={})
    assert abs(at(renewed["expires_at"]) - (datetime.now(UTC) + 30 * DAY)) < timedelta(minutes=1)

    target = "2040-01-01T00:00:00Z"
    assert at(
        (await tenant.ok("POST", f"/v1/admin/licenses/{lic['id']}/renew", json={"expires_at": target}))["expires_at"]
    ) == at(target)
    earlier = await tenant.call("POST", f"/v1/admin/licenses/{lic['id']}/renew", json={"expires_at": "2030-01-01T00:00:00Z"})
    assert (earlier.status, earlier.code) == (422, "INVALID_FIELD")

    suspended = await tenant.license(policy["id"])
    await tenant.ok("POST", f"/v1/admin/licenses/{suspended['id']}/suspend", json={})
    renewed = await tenant.ok("POST", f"/v1/admin/licenses/{suspended['id']}/renew", json={})
    assert renewed["state"] == "suspended" and at(renewed["expires_at"]) > at(suspended["expires_at"])

    perpetual = await tenant.policy(product["id"], name="Forever")
    forever = await tenant.license(perpetual["id"])
    answer = await tenant.call("POST", f"/v1/admin/licenses/{forever['id']}/renew", json={})
    assert (answer.status, answer.code) == (409, "INVALID_STATE")
    assert (await tenant.ok("POST", f"/v1/admin/licenses/{forever['id']}/renew", json={"expires_at": target}))[
        "expires_at"
    ] == "2040-01-01T00:00:00.000000Z"


async def test_a_license_may_be_given_a_customer_overrides_and_an_order_reference(tenant: Tenant) -> None:
    _, policy = await licensed(tenant)
    ada = await tenant.customer("ada@example.com")
    lic = await tenant.license(policy["id"], customer_id=ada["id"], overrides={"seats": 3}, order_ref="shop-1")
    assert (lic["customer_id"], lic["overrides"], lic["order_ref"]) == (ada["id"], {"seats": 3}, "shop-1")
    updated = await tenant.ok(
        "PATCH",
        f"/v1/admin/licenses/{lic['id']}",
        json={"customer_id": None, "overrides": {}, "order_ref": None, "expires_at": "2031-01-01T00:00:00Z"},
    )
    assert (updated["customer_id"], updated["overrides"], updated["order_ref"], updated["expires_at"]) == (
        None,
        {},
        None,
        "2031-01-01T00:00:00.000000Z",
    )
    deleted = await tenant.call("DELETE", f"/v1/admin/licenses/{lic['id']}")
    assert (deleted.status, deleted.code) == (405, "METHOD_NOT_ALLOWED")
