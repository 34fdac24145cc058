"""The cloud backend through the real gateway on both stores: credential files (create, label, list, revoke,
reissue), leases (check-out, heartbeat, expiry, release, take-over, seats), copied virtual machines, the vendor's
changes, and the per-day usage report. Time moves by the backend's clock, never by sleeping."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from cloud_kit import HEARTBEAT, RELEASE, Credential, Vendor, at, vendor
from hypothesis import given, settings
from hypothesis import strategies as st
from licensor.errors import TokenError
from licensor.model import format_time
from licensor.testing import Answer, Gateway
from licensor.tokens import read_document
from licensor_cloud.credentials import credential_secret_hash
from licensor_cloud.leases import peak_use

TTL, INTERVAL = 600, 120
SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
CREDENTIAL_FIELDS = {"id", "object", "license_id", "label", "state", "reissue_of", "revoked_at", "created_at", "updated_at"}
LEASE_FIELDS = {
    "id",
    "object",
    "license_id",
    "credential_id",
    "device_id",
    "device_name",
    "features",
    "state",
    "expires_at",
    "renewed_at",
    "renewals",
    "ended_at",
    "taken_over_by",
    "created_at",
    "updated_at",
}
NO_LICENSE, NO_CREDENTIAL, NO_LEASE = "lic_" + "0" * 26, "crd_" + "0" * 26, "lse_" + "0" * 26


@pytest.fixture
async def gateway(licensor_gateway: Gateway) -> AsyncIterator[Gateway]:
    """The gateway on each store; every tenant's event chain must verify after the test."""
    yield licensor_gateway
    for tenant_id, verdict in (await licensor_gateway.verify_chains()).items():
        assert verdict["valid"], (tenant_id, verdict)


async def shop_of(gateway: Gateway, seats: int = 3, **options: Any) -> Vendor:
    made = await vendor(gateway, seats=seats, **{"lease_ttl_seconds": TTL, "heartbeat_interval_seconds": INTERVAL, **options})
    made.gateway.freeze_clock()  # after the license was made: it has started
    return made


@pytest.fixture
async def shop(gateway: Gateway) -> Vendor:
    """Three seats, a lease TTL of 600 s and heartbeats every 120 s; refuse beyond the seats."""
    return await shop_of(gateway)


def refused(answer: Answer, status: int, code: str) -> None:
    assert (answer.status, answer.code) == (status, code), answer.text


def later(shop: Vendor, seconds: int) -> str:
    """The time ``seconds`` after the backend's clock, as the API writes times."""
    return str(format_time(shop.clock() + seconds * 1_000_000))


# --- credentials ------------------------------------------------------------------------------------------
async def test_a_credential_file_holds_the_secret_the_product_and_the_tenants_keys(shop: Vendor) -> None:
    made = await shop.tenant.ok("POST", f"{shop.license_path}/credentials", 201, json={"label": "Office"})
    file, record = made["credential_file"], made["credential"]
    assert set(made) == {"object", "credential", "credential_file"} and made["object"] == "credential_file"
    assert set(file) == {"format", "server", "tenant", "product", "license", "credential", "label", "keys"}
    assert (file["format"], file["tenant"], file["product"], file["license"], file["label"]) == (
        "licensor-credential-1",
        shop.tenant.id,
        "cad",
        shop.license["id"],
        "Office",
    )
    assert file["server"] == str(shop.gateway.client.make_url("")).rstrip("/")
    credential_id, _, secret = file["credential"].partition(".")
    assert re.fullmatch(r"crd_[0-9A-HJKMNP-TV-Z]{26}", credential_id) and SECRET.fullmatch(secret)
    assert Credential(file, record).public_keys() == await shop.public_keys()
    assert set(record) == CREDENTIAL_FIELDS
    assert (
        record["id"],
        record["object"],
        record["license_id"],
        record["label"],
        record["state"],
        record["reissue_of"],
        record["revoked_at"],
    ) == (credential_id, "credential", shop.license["id"], "Office", "active", None, None)
    # The secret is shown only in the file: never by a read, a list or the event log, nor its hash.
    shown = await shop.tenant.call("GET", f"/v1/admin/credentials/{credential_id}")
    listed = await shop.tenant.call("GET", f"{shop.license_path}/credentials")
    events = await shop.tenant.call("GET", "/v1/admin/events")
    for answer in (shown, listed, events):
        assert answer.status == 200
        for hidden in (secret, credential_secret_hash(secret), "secret_hash"):
            assert hidden not in answer.text
    assert shown.body == record and listed.body["data"] == [record]
    assert [e["subject_id"] for e in await shop.events("credential.created")] == [credential_id]
    # A file made after a key rotation carries the tenant's current keys, the retired one too.
    await shop.tenant.ok("POST", "/v1/admin/keys/rotate")
    rotated = await shop.credential()
    assert rotated.public_keys() == await shop.public_keys() and len(rotated.public_keys()) == 2
    assert rotated.file["label"] is None and rotated.record["label"] is None


async def test_a_credential_is_labelled_and_a_null_label_clears_it(shop: Vendor) -> None:
    credential = await shop.credential()
    path = f"/v1/admin/credentials/{credential.id}"
    assert (await shop.tenant.ok("PATCH", path, json={"label": "Laptop"}))["label"] == "Laptop"
    assert (await shop.tenant.ok("GET", path))["label"] == "Laptop"
    cleared = await shop.tenant.ok("PATCH", path, json={"label": None})
    assert cleared["label"] is None and (await shop.tenant.ok("GET", path))["label"] is None
    for body, code in (
        ({}, "MISSING_FIELD"),
        ({"label": ""}, "INVALID_FIELD"),
        ({"label": "x", "state": "revoked"}, "UNKNOWN_FIELD"),
    ):
        refused(await shop.tenant.call("PATCH", path, json=body), 422, code)
    assert [e["data"]["label"] for e in await shop.events("credential.labelled")] == ["Laptop", None]
    assert (await shop.tenant.ok("GET", path))["state"] == "active"


async def test_credentials_are_listed_by_state_a_page_at_a_time(shop: Vendor) -> None:
    made = [await shop.credential(f"seat {n}") for n in range(3)]
    await shop.tenant.ok("POST", f"/v1/admin/credentials/{made[1].id}/revoke")
    path = f"{shop.license_path}/credentials"
    ids = sorted(c.id for c in made)
    assert [c["id"] for c in await shop.tenant.list_all(path, limit=1)] == ids
    active = await shop.tenant.list_all(path, limit=1, params={"state": "active"})
    assert [c["id"] for c in active] == sorted([made[0].id, made[2].id]) and {c["state"] for c in active} == {"active"}
    revoked = await shop.tenant.list_all(path, params={"state": "revoked"})
    assert [(c["id"], c["state"]) for c in revoked] == [(made[1].id, "revoked")] and revoked[0]["revoked_at"]
    page = await shop.tenant.ok("GET", path, params={"limit": "2"})
    assert (len(page["data"]), page["has_more"]) == (2, True) and page["next_cursor"]
    refused(await shop.tenant.call("GET", path, params={"state": "lost"}), 400, "INVALID_PARAMETER")
    refused(await shop.tenant.call("GET", path, params={"cursor": "not-a-cursor"}), 400, "INVALID_CURSOR")


async def test_a_credential_cannot_be_revoked_twice_and_is_refused_once_revoked(shop: Vendor) -> None:
    credential = await shop.credential()
    device = shop.device(credential)
    revoked = await shop.tenant.ok("POST", f"/v1/admin/credentials/{credential.id}/revoke", json={"reason": "left the company"})
    assert (revoked["state"], revoked["label"]) == ("revoked", None) and revoked["revoked_at"] is not None
    refused(await shop.tenant.call("POST", f"/v1/admin/credentials/{credential.id}/revoke"), 409, "CREDENTIAL_ALREADY_REVOKED")
    refused(await device.check_out(), 403, "CREDENTIAL_REVOKED")
    [event] = await shop.events("credential.revoked")
    assert (event["subject_id"], event["data"]["reason"], event["data"]["leases_ended"]) == (
        credential.id,
        "left the company",
        [],
    )
    assert await shop.event_types() == []


async def test_a_reissued_credential_replaces_the_old_one_and_keeps_its_label(shop: Vendor) -> None:
    old = await shop.credential("Office")
    device = shop.device(old)
    assert (await device.check_out()).status == 201
    made = await shop.tenant.ok("POST", f"/v1/admin/credentials/{old.id}/reissue", 201, json={})
    new = Credential(made["credential_file"], made["credential"])
    assert new.id != old.id and new.secret != old.secret
    assert (new.record["reissue_of"], new.record["label"], new.record["state"], new.file["label"]) == (
        old.id,
        "Office",
        "active",
        "Office",
    )
    assert new.public_keys() == old.public_keys()
    assert (await shop.tenant.ok("GET", f"/v1/admin/credentials/{old.id}"))["state"] == "revoked"
    assert [lease["state"] for lease in await shop.leases()] == ["revoked"]  # the old file's lease ended with it
    refused(await device.heartbeat(), 403, "CREDENTIAL_REVOKED")
    refused(await device.check_out(), 403, "CREDENTIAL_REVOKED")
    moved = shop.device(new, device.device_id)
    assert (await moved.check_out()).status == 201 and await shop.seats_held() == 1
    # A revoked credential may be reissued again (it is not revoked twice), with a new label.
    again = await shop.tenant.ok("POST", f"/v1/admin/credentials/{old.id}/reissue", 201, json={"label": "Home"})
    assert (again["credential"]["reissue_of"], again["credential"]["label"]) == (old.id, "Home")
    [revocation] = await shop.events("credential.revoked")
    assert (revocation["data"]["reason"], revocation["data"]["leases_ended"]) == ("reissued", [device.lease_id])
    [ended] = await shop.events("lease.revoked")  # each lease's end has its own event
    assert (ended["subject_id"], ended["data"]["reason"]) == (device.lease_id, "its credential was revoked")
    assert [e["subject_id"] for e in await shop.events("credential.reissued")] == [new.id, again["credential"]["id"]]


async def test_a_license_of_another_backend_gets_no_credential(shop: Vendor) -> None:
    policy = await shop.tenant.policy(shop.product["id"], backend="activation", name="Node-locked")
    license = await shop.tenant.license(policy["id"])
    refused(await shop.tenant.call("POST", f"/v1/admin/licenses/{license['id']}/credentials", json={}), 409, "LICENSE_NOT_CLOUD")
    assert await shop.events("credential.created") == []


async def test_unknown_licenses_credentials_and_leases_are_not_found(shop: Vendor) -> None:
    for method, path, body, code in (
        ("POST", f"/v1/admin/licenses/{NO_LICENSE}/credentials", {}, "LICENSE_NOT_FOUND"),
        ("GET", f"/v1/admin/licenses/{NO_LICENSE}/credentials", None, "LICENSE_NOT_FOUND"),
        ("GET", f"/v1/admin/licenses/{NO_LICENSE}/leases", None, "LICENSE_NOT_FOUND"),
        ("GET", f"/v1/admin/licenses/{NO_LICENSE}/lease-usage", None, "LICENSE_NOT_FOUND"),
        ("GET", f"/v1/admin/credentials/{NO_CREDENTIAL}", None, "CREDENTIAL_NOT_FOUND"),
        ("PATCH", f"/v1/admin/credentials/{NO_CREDENTIAL}", {"label": "x"}, "CREDENTIAL_NOT_FOUND"),
        ("POST", f"/v1/admin/credentials/{NO_CREDENTIAL}/revoke", {}, "CREDENTIAL_NOT_FOUND"),
        ("POST", f"/v1/admin/credentials/{NO_CREDENTIAL}/reissue", {}, "CREDENTIAL_NOT_FOUND"),
        ("GET", f"/v1/admin/leases/{NO_LEASE}", None, "LEASE_NOT_FOUND"),
        ("POST", f"/v1/admin/leases/{NO_LEASE}/release", {}, "LEASE_NOT_FOUND"),
    ):
        refused(await shop.tenant.call(method, path, json=body), 404, code)
    for path in ("/v1/admin/credentials/crd_nonsense", "/v1/admin/leases/lic_" + "0" * 26):
        assert (await shop.tenant.call("GET", path)).status == 404


async def test_read_only_tokens_read_and_only_writing_roles_change(shop: Vendor) -> None:
    credential = await shop.credential()
    device = shop.device(credential)
    await device.check_out()
    tokens = await shop.tenant.tokens()
    reader = tokens["read-only"]
    for path in (
        f"{shop.license_path}/credentials",
        f"/v1/admin/credentials/{credential.id}",
        f"{shop.license_path}/leases",
        f"/v1/admin/leases/{device.lease_id}",
        f"{shop.license_path}/lease-usage",
    ):
        assert (await shop.tenant.call("GET", path, token=reader)).status == 200, path
    for method, path, body in (
        ("POST", f"{shop.license_path}/credentials", {}),
        ("PATCH", f"/v1/admin/credentials/{credential.id}", {"label": "x"}),
        ("POST", f"/v1/admin/credentials/{credential.id}/revoke", {}),
        ("POST", f"/v1/admin/credentials/{credential.id}/reissue", {}),
        ("POST", f"/v1/admin/leases/{device.lease_id}/release", {}),
    ):
        refused(await shop.tenant.call(method, path, json=body, token=reader), 403, "FORBIDDEN")
    assert (await shop.tenant.ok("GET", f"/v1/admin/credentials/{credential.id}"))["state"] == "active"
    assert (await device.heartbeat()).status == 200  # nothing the reader tried happened
    for role in ("developer", "support"):
        made = await shop.credential(role, token=tokens[role])
        await shop.tenant.ok("POST", f"/v1/admin/credentials/{made.id}/revoke", token=tokens[role])
    await shop.tenant.ok("POST", f"/v1/admin/leases/{device.lease_id}/release", token=tokens["support"])


async def test_another_tenant_never_sees_credentials_or_leases(shop: Vendor) -> None:
    credential = await shop.credential()
    device = shop.device(credential)
    await device.check_out()
    other = await vendor(shop.gateway, name="Other vendor")
    for method, path, body in (
        ("POST", f"{shop.license_path}/credentials", {}),
        ("GET", f"{shop.license_path}/credentials", None),
        ("GET", f"{shop.license_path}/leases", None),
        ("GET", f"{shop.license_path}/lease-usage", None),
        ("GET", f"/v1/admin/credentials/{credential.id}", None),
        ("PATCH", f"/v1/admin/credentials/{credential.id}", {"label": "mine"}),
        ("POST", f"/v1/admin/credentials/{credential.id}/revoke", {}),
        ("POST", f"/v1/admin/credentials/{credential.id}/reissue", {}),
        ("GET", f"/v1/admin/leases/{device.lease_id}", None),
        ("POST", f"/v1/admin/leases/{device.lease_id}/release", {}),
    ):
        assert (await other.tenant.call(method, path, json=body)).status == 404, (method, path)
    # On the license plane the credential names its tenant: under another tenant's id it is unknown ...
    moved = {**device.check_out_body(), "tenant": other.tenant.id}
    refused(await shop.gateway.call("POST", "/v1/leases", json=moved), 401, "CREDENTIAL_INVALID")
    refused(
        await shop.gateway.call("POST", HEARTBEAT, json={**device.lease_body(), "tenant": other.tenant.id}),
        401,
        "CREDENTIAL_INVALID",
    )
    # ... and the other tenant's own credential cannot reach this tenant's lease.
    stranger = other.device(await other.credential())
    foreign = {**device.lease_body(), "tenant": other.tenant.id, "credential": stranger.credential_file["credential"]}
    refused(await shop.gateway.call("POST", HEARTBEAT, json=foreign), 404, "LEASE_NOT_FOUND")
    refused(await shop.gateway.call("POST", RELEASE, json=foreign), 404, "LEASE_NOT_FOUND")
    assert (await device.heartbeat()).status == 200
    assert await shop.seats_held() == 1 and await other.leases() == []
    assert await other.event_types("credential.") == ["credential.created"]


# --- leases ------------------------------------------------------------------------------------------------
async def test_a_check_out_grants_a_lease_and_a_lease_token_signed_by_the_tenant(shop: Vendor) -> None:
    credential = await shop.credential()
    device = shop.device(credential, name="Workstation 7")
    answer = await device.check_out(["draw"])
    assert answer.status == 201, answer.text
    assert set(answer.body) == {"object", "lease", "lease_secret", "lease_token", "heartbeat_interval_seconds"}
    assert (answer.body["object"], answer.body["heartbeat_interval_seconds"]) == ("lease", INTERVAL)
    assert SECRET.fullmatch(answer.body["lease_secret"])
    now = shop.clock()
    lease = answer.body["lease"]
    assert set(lease) == LEASE_FIELDS and re.fullmatch(r"lse_[0-9A-HJKMNP-TV-Z]{26}", lease["id"])
    assert {name: value for name, value in lease.items() if name not in ("id", "updated_at")} == {
        "object": "lease",
        "license_id": shop.license["id"],
        "credential_id": credential.id,
        "device_id": device.device_id,
        "device_name": "Workstation 7",
        "features": ["draw"],
        "state": "active",
        "expires_at": format_time(now + TTL * 1_000_000),
        "renewed_at": None,
        "renewals": 0,
        "ended_at": None,
        "taken_over_by": None,
        "created_at": format_time(now),
    }
    assert await shop.lease(lease["id"]) == lease
    token = answer.body["lease_token"]
    assert token.startswith("ls1.")
    assert read_document(token, "ls1", credential.public_keys()) == {
        "tenant": shop.tenant.id,
        "product": "cad",
        "license": shop.license["id"],
        "lease": lease["id"],
        "credential": credential.id,
        "device": device.device_id,
        "features": ["draw"],
        "entitlements": [{"feature": "draw", "quantity": None}],
        "terms": {"expires_at": None, "maintenance_until": None, "seats": 3},
        "iat": now // 1_000_000,
        "exp": now // 1_000_000 + TTL,
        "heartbeat_interval": INTERVAL,
        "renewal": 0,
    }
    with pytest.raises(TokenError):  # a signature for one document type never verifies as another
        read_document(token, "en1", credential.public_keys())
    other = await vendor(shop.gateway, name="Other vendor")
    with pytest.raises(TokenError):  # nor with another tenant's keys
        read_document(token, "ls1", (await other.credential()).public_keys())
    [event] = await shop.events("lease.checked_out")
    assert (event["subject_id"], event["actor"], event["data"]["state"]) == (lease["id"], f"credential:{credential.id}", "active")
    assert "lease_secret" not in str(event) and answer.body["lease_secret"] not in str(await shop.events())


async def test_a_wrong_or_unknown_credential_and_a_bad_lease_are_refused_and_record_nothing(shop: Vendor) -> None:
    credential, neighbour = await shop.credential(), await shop.credential()
    device, other = shop.device(credential), shop.device(neighbour)
    await device.check_out()
    await other.check_out()
    recorded = len(await shop.events())
    wrong_secret = f"{credential.id}.{'A' * 43}"
    unknown = f"{NO_CREDENTIAL}.{credential.secret}"
    for presented in (wrong_secret, unknown):
        refused(
            await shop.gateway.call("POST", "/v1/leases", json={**device.check_out_body(), "credential": presented}),
            401,
            "CREDENTIAL_INVALID",
        )
        for path in (HEARTBEAT, RELEASE):
            refused(
                await shop.gateway.call("POST", path, json={**device.lease_body(), "credential": presented}),
                401,
                "CREDENTIAL_INVALID",
            )
    refused(
        await shop.gateway.call("POST", "/v1/leases", json={**device.check_out_body(), "tenant": "ten_" + "0" * 26}),
        401,
        "CREDENTIAL_INVALID",
    )
    for body, code in (
        ({**device.check_out_body(), "credential": "not a credential"}, "INVALID_FIELD"),
        ({key: value for key, value in device.check_out_body().items() if key != "device_id"}, "MISSING_FIELD"),
        ({**device.check_out_body(), "device_id": "two words"}, "INVALID_FIELD"),
        ({**device.check_out_body(), "device_id": "x" * 201}, "INVALID_FIELD"),
        ({**device.check_out_body(), "seats": 2}, "UNKNOWN_FIELD"),
        ({**device.check_out_body(), "features": ["draw", "draw"]}, "INVALID_FIELD"),
    ):
        refused(await shop.gateway.call("POST", "/v1/leases", json=body), 422, code)
    for path in (HEARTBEAT, RELEASE):
        refused(await shop.gateway.call("POST", path, json={**device.lease_body(), "lease": NO_LEASE}), 404, "LEASE_NOT_FOUND")
        # another credential's lease, on the same license: not this credential's to renew or release
        refused(
            await shop.gateway.call("POST", path, json={**device.lease_body(), "lease": other.lease_id}), 404, "LEASE_NOT_FOUND"
        )
        refused(
            await shop.gateway.call("POST", path, json={**device.lease_body(), "lease_secret": "B" * 43}), 409, "LEASE_TAKEN_OVER"
        )
        refused(
            await shop.gateway.call("POST", path, json={**device.lease_body(), "lease_secret": "short"}), 422, "INVALID_FIELD"
        )
    assert len(await shop.events()) == recorded
    assert (await device.heartbeat()).status == 200 and (await other.heartbeat()).status == 200


async def test_a_lease_of_a_feature_the_license_does_not_grant_is_refused(shop: Vendor) -> None:
    device = shop.device(await shop.credential())
    for features in (["render"], ["draw", "render"], ["no-such-feature"]):
        refused(await device.check_out(features), 403, "FEATURE_NOT_ENTITLED")
    assert await shop.seats_held() == 0 and await shop.event_types() == []
    plain = await device.check_out()  # no features asked: the license's terms only
    assert plain.status == 201 and plain.body["lease"]["features"] == []
    assert (await device.check_out(["draw"])).status == 201


async def test_a_suspended_expired_or_future_license_leases_nothing(shop: Vendor) -> None:
    device = shop.device(await shop.credential())
    assert (await device.check_out()).status == 201
    await shop.tenant.ok("POST", f"{shop.license_path}/suspend")
    refused(await shop.device(await shop.credential()).check_out(), 403, "SUSPENDED")
    refused(await device.heartbeat(), 403, "SUSPENDED")
    await shop.tenant.ok("POST", f"{shop.license_path}/reinstate")
    assert (await device.heartbeat()).status == 200
    # A license that expires in 500 s, less than the TTL: its lease never outlives it, renewed or not.
    license_end = later(shop, 500)
    expiring = await shop.tenant.license(shop.policy["id"], starts_at=later(shop, -60), expires_at=license_end)
    credential = await shop.credential(license_id=expiring["id"])
    holder = shop.device(credential)
    granted = await holder.check_out()
    assert granted.status == 201 and granted.body["lease"]["expires_at"] == license_end
    assert read_document(granted.body["lease_token"], "ls1", credential.public_keys())["terms"]["expires_at"] == license_end
    shop.clock.advance(400)
    renewed = await holder.heartbeat()
    assert renewed.status == 200 and renewed.body["lease"]["expires_at"] == license_end
    shop.clock.advance(200)
    refused(await holder.heartbeat(), 409, "LEASE_EXPIRED")  # it ran out with the license ...
    refused(await holder.check_out(), 403, "EXPIRED")  # ... which leases nothing now
    future = await shop.tenant.license(shop.policy["id"], starts_at=later(shop, 86_400))
    refused(await shop.device(await shop.credential(license_id=future["id"])).check_out(), 403, "NOT_YET_VALID")
    assert await shop.event_types() == ["lease.checked_out", "lease.renewed", "lease.checked_out", "lease.renewed"]


async def test_seats_are_counted_and_the_device_beyond_them_is_refused(shop: Vendor) -> None:
    credential = await shop.credential()
    devices = [shop.device(credential) for _ in range(3)]
    for device in devices:
        assert (await device.check_out()).status == 201
    extra = shop.device(credential)
    refused(await extra.check_out(), 409, "SEAT_LIMIT_REACHED")
    # The same device again (it restarted) takes its own lease over: still three seats held.
    first = devices[0]
    old_body = first.lease_body()
    shop.clock.advance(30)
    again = await first.check_out()
    assert again.status == 201 and again.body["lease"]["id"] != old_body["lease"]
    taken = await shop.lease(old_body["lease"])
    assert (taken["state"], taken["taken_over_by"], taken["ended_at"]) == (
        "taken_over",
        first.lease_id,
        format_time(shop.clock()),
    )
    refused(await shop.gateway.call("POST", HEARTBEAT, json=old_body), 409, "LEASE_TAKEN_OVER")
    assert await shop.seats_held() == 3
    refused(await extra.check_out(), 409, "SEAT_LIMIT_REACHED")
    assert await shop.event_types() == ["lease.checked_out"] * 3 + ["lease.taken_over", "lease.checked_out"]
    # The admin list pages through the shown states, a page at a time.
    listed = await shop.tenant.list_all(f"{shop.license_path}/leases", limit=1)
    assert sorted(lease["id"] for lease in listed) == sorted([old_body["lease"]] + [d.lease_id for d in devices if d.lease_id])
    active = await shop.tenant.list_all(f"{shop.license_path}/leases", limit=1, params={"state": "active"})
    assert sorted(lease["id"] for lease in active) == sorted(d.lease_id for d in devices if d.lease_id)
    assert [lease["id"] for lease in await shop.leases("taken_over")] == [old_body["lease"]]


async def test_a_heartbeat_renews_the_lease_with_a_new_secret(shop: Vendor) -> None:
    credential = await shop.credential()
    device = shop.device(credential)
    checked_out = (await device.check_out()).body
    clock = shop.clock
    clock.advance(INTERVAL)
    answer = await device.heartbeat()
    assert answer.status == 200, answer.text
    lease = answer.body["lease"]
    assert (lease["id"], lease["state"], lease["renewals"], lease["created_at"]) == (
        checked_out["lease"]["id"],
        "active",
        1,
        checked_out["lease"]["created_at"],
    )
    assert (lease["renewed_at"], lease["expires_at"]) == (format_time(clock()), format_time(clock() + TTL * 1_000_000))
    assert answer.body["lease_secret"] != checked_out["lease_secret"] and SECRET.fullmatch(answer.body["lease_secret"])
    token = read_document(answer.body["lease_token"], "ls1", credential.public_keys())
    assert (token["renewal"], token["iat"], token["exp"]) == (1, clock.seconds, clock.seconds + TTL)
    stale = {**device.lease_body(), "lease_secret": checked_out["lease_secret"]}
    refused(await shop.gateway.call("POST", HEARTBEAT, json=stale), 409, "LEASE_TAKEN_OVER")
    clock.advance(TTL - 1)  # the last moment before it runs out
    assert (await device.heartbeat()).body["lease"]["renewals"] == 2
    assert (await shop.lease(lease["id"]))["renewals"] == 2
    assert await shop.event_types() == ["lease.checked_out", "lease.renewed", "lease.renewed"]


async def test_a_lease_not_renewed_within_its_ttl_expires_and_its_seat_returns(gateway: Gateway) -> None:
    shop = await shop_of(gateway, seats=1)
    credential = await shop.credential()
    one, two = shop.device(credential), shop.device(credential)
    await one.check_out()
    assert one.lease is not None
    expires_at = one.lease["expires_at"]
    shop.clock.advance(TTL)  # expires_at has come: the lease no longer holds its seat
    # Not marked yet, the admin API already shows it expired (ended when it ran out).
    shown = await shop.lease(str(one.lease_id))
    assert (shown["state"], shown["ended_at"]) == ("expired", expires_at)
    assert [lease["id"] for lease in await shop.leases("expired")] == [one.lease_id] and await shop.leases("active") == []
    refused(await one.heartbeat(), 409, "LEASE_EXPIRED")
    assert (await two.check_out()).status == 201  # the seat went back
    shown = await shop.lease(str(one.lease_id))  # now marked expired by the check-out
    assert (shown["state"], shown["ended_at"]) == ("expired", expires_at)
    assert {lease["id"]: lease["state"] for lease in await shop.leases()} == {one.lease_id: "expired", two.lease_id: "active"}
    refused(await one.heartbeat(), 409, "LEASE_EXPIRED")
    released = await one.release()  # an ended lease is answered as it stands
    assert released.status == 200 and released.body["lease"]["state"] == "expired"
    assert await shop.event_types() == ["lease.checked_out", "lease.checked_out"]
    refused(await shop.device(credential).check_out(), 409, "SEAT_LIMIT_REACHED")


async def test_a_release_frees_the_seat_at_once(gateway: Gateway) -> None:
    shop = await shop_of(gateway, seats=1)
    credential = await shop.credential()
    one, two = shop.device(credential), shop.device(credential)
    await one.check_out()
    refused(await two.check_out(), 409, "SEAT_LIMIT_REACHED")
    shop.clock.advance(10)
    released = await one.release()
    assert released.status == 200 and set(released.body) == {"object", "lease"}
    assert (released.body["lease"]["state"], released.body["lease"]["ended_at"]) == ("released", format_time(shop.clock()))
    assert (await two.check_out()).status == 201
    refused(await one.heartbeat(), 409, "LEASE_RELEASED")
    shop.clock.advance(10)
    again = await one.release()
    assert again.status == 200 and again.body["lease"] == released.body["lease"]
    assert await shop.event_types() == ["lease.checked_out", "lease.released", "lease.checked_out"]


async def test_an_idempotency_key_replays_a_lost_check_out_or_heartbeat_answer(shop: Vendor) -> None:
    device = shop.device(await shop.credential())
    body = device.check_out_body()
    first = await shop.gateway.call("POST", "/v1/leases", json=body, headers={"Idempotency-Key": "check-out-1"})
    again = await shop.gateway.call("POST", "/v1/leases", json=body, headers={"Idempotency-Key": "check-out-1"})
    assert (first.status, again.status, again.body) == (201, 201, first.body)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await shop.seats_held() == 1
    device.keep(first.body)
    beat = device.lease_body()
    lost = await shop.gateway.call("POST", HEARTBEAT, json=beat, headers={"Idempotency-Key": "beat-1"})
    assert lost.status == 200  # ... and the answer never arrives: the device retries with the same key
    retried = await shop.gateway.call("POST", HEARTBEAT, json=beat, headers={"Idempotency-Key": "beat-1"})
    assert (retried.status, retried.body) == (200, lost.body) and retried.headers.get("Idempotent-Replayed") == "true"
    assert (await shop.lease(str(device.lease_id)))["renewals"] == 1
    refused(await shop.gateway.call("POST", HEARTBEAT, json=beat), 409, "LEASE_TAKEN_OVER")  # no key: not a retry
    device.keep(retried.body)
    assert (await device.heartbeat()).body["lease"]["renewals"] == 2
    assert await shop.event_types() == ["lease.checked_out", "lease.renewed", "lease.renewed"]


# --- single-user licenses ------------------------------------------------------------------------------------
async def test_second_device_is_refused_on_single_user_license(gateway: Gateway) -> None:
    shop = await shop_of(gateway, seats=1)
    credential = await shop.credential()
    office, home = shop.device(credential, name="office"), shop.device(credential, name="home")
    assert (await office.check_out()).status == 201
    refused(await home.check_out(), 409, "SEAT_LIMIT_REACHED")
    assert (await office.heartbeat()).status == 200
    assert await shop.seats_held() == 1


async def test_second_device_takes_the_seat_over_when_the_policy_allows_it(gateway: Gateway) -> None:
    shop = await shop_of(gateway, seats=1, on_seat_limit="take_over")
    credential = await shop.credential()
    office, home = shop.device(credential, name="office"), shop.device(credential, name="home")
    assert (await office.check_out()).status == 201
    first_lease = office.lease_id
    shop.clock.advance(60)
    assert (await home.check_out()).status == 201
    refused(await office.heartbeat(), 409, "LEASE_TAKEN_OVER")
    refused(await office.heartbeat(), 409, "LEASE_TAKEN_OVER")  # a heartbeat never takes it back
    taken = await shop.lease(str(first_lease))
    assert (taken["state"], taken["taken_over_by"]) == ("taken_over", home.lease_id)
    assert (await home.heartbeat()).status == 200 and await shop.seats_held() == 1
    assert (await office.check_out()).status == 201  # only a new check-out takes it back
    refused(await home.heartbeat(), 409, "LEASE_TAKEN_OVER")
    assert await shop.seats_held() == 1
    assert [e["subject_id"] for e in await shop.events("lease.taken_over")] == [first_lease, home.lease_id]


async def test_a_take_over_takes_the_seat_renewed_longest_ago(gateway: Gateway) -> None:
    shop = await shop_of(gateway, seats=2, on_seat_limit="take_over")
    credential = await shop.credential()
    early, late, newcomer = (shop.device(credential) for _ in range(3))
    clock = shop.clock
    await early.check_out()
    clock.advance(10)
    await late.check_out()
    clock.advance(10)
    await early.heartbeat()  # early checked out first but renewed last
    clock.advance(10)
    assert (await newcomer.check_out()).status == 201
    refused(await late.heartbeat(), 409, "LEASE_TAKEN_OVER")
    assert (await early.heartbeat()).status == 200
    assert {lease["id"] for lease in await shop.leases("active")} == {early.lease_id, newcomer.lease_id}


# --- revocation -----------------------------------------------------------------------------------------------
async def test_revoking_a_credential_stops_its_devices_within_one_heartbeat(shop: Vendor) -> None:
    lab, office = await shop.credential("lab"), await shop.credential("office")
    lab_devices = [shop.device(lab) for _ in range(2)]
    desk = shop.device(office)
    for device in (*lab_devices, desk):
        assert (await device.check_out()).status == 201
    newcomer = shop.device(office)
    refused(await newcomer.check_out(), 409, "SEAT_LIMIT_REACHED")
    await shop.tenant.ok("POST", f"/v1/admin/credentials/{lab.id}/revoke")
    now = format_time(shop.clock())
    shown = {lease["id"]: (lease["state"], lease["ended_at"]) for lease in await shop.leases()}
    assert shown == {
        lab_devices[0].lease_id: ("revoked", now),
        lab_devices[1].lease_id: ("revoked", now),
        desk.lease_id: ("active", None),
    }
    assert (await newcomer.check_out()).status == 201  # the seats are free at once
    shop.clock.advance(INTERVAL)
    for device in lab_devices:  # each device's next heartbeat is told
        refused(await device.heartbeat(), 403, "CREDENTIAL_REVOKED")
        refused(await device.check_out(), 403, "CREDENTIAL_REVOKED")
    assert (await desk.heartbeat()).status == 200
    assert await shop.seats_held() == 2
    [event] = await shop.events("credential.revoked")
    assert (event["subject_id"], event["data"]["leases_ended"]) == (
        lab.id,
        sorted(str(device.lease_id) for device in lab_devices),
    )
    assert sorted(e["subject_id"] for e in await shop.events("lease.revoked")) == event["data"]["leases_ended"]


# --- copied virtual machines ---------------------------------------------------------------------------------
async def test_a_copied_vm_never_holds_more_seats_than_the_license_owns(gateway: Gateway) -> None:
    shop = await shop_of(gateway, seats=2)
    credential = await shop.credential()
    original = shop.device(credential, device_id="vm-1")
    assert (await original.check_out()).status == 201

    async def held() -> int:
        count = await shop.seats_held()
        assert count <= 2
        return count

    copy = original.copy()  # the same credential file, device id, lease and lease secret
    assert (await original.heartbeat()).status == 200
    refused(await copy.heartbeat(), 409, "LEASE_TAKEN_OVER")  # its secret is an older one
    refused(await copy.release(), 409, "LEASE_TAKEN_OVER")
    assert await held() == 1
    assert (await copy.check_out()).status == 201  # the same device id: it takes the lease over ...
    refused(await original.heartbeat(), 409, "LEASE_TAKEN_OVER")  # ... from the original
    assert await held() == 1
    snapshot = copy.copy()  # a snapshot reverted after two heartbeats
    for _ in range(2):
        shop.clock.advance(INTERVAL)
        assert (await copy.heartbeat()).status == 200
    refused(await snapshot.heartbeat(), 409, "LEASE_TAKEN_OVER")
    assert await held() == 1
    clones = [copy.copy(device_id=f"vm-clone-{n}") for n in range(3)]  # copies whose software made new device ids
    assert (await clones[0].check_out()).status == 201
    assert await held() == 2
    for clone in clones[1:]:
        refused(await clone.check_out(), 409, "SEAT_LIMIT_REACHED")
        assert await held() == 2
    assert (await copy.heartbeat()).status == 200 and (await clones[0].heartbeat()).status == 200
    assert await shop.event_types() == [
        "lease.checked_out",
        "lease.renewed",
        "lease.taken_over",
        "lease.checked_out",
        "lease.renewed",
        "lease.renewed",
        "lease.checked_out",
        "lease.renewed",
        "lease.renewed",
    ]


# --- the vendor's changes ------------------------------------------------------------------------------------
async def test_the_vendor_ends_a_lease_and_frees_its_seat(gateway: Gateway) -> None:
    shop = await shop_of(gateway, seats=1)
    credential = await shop.credential()
    holder, waiting = shop.device(credential), shop.device(credential)
    await holder.check_out()
    refused(await waiting.check_out(), 409, "SEAT_LIMIT_REACHED")
    path = f"/v1/admin/leases/{holder.lease_id}"
    ended = await shop.tenant.ok("POST", f"{path}/release", json={"reason": "moved to another team"})
    assert (ended["id"], ended["state"], ended["ended_at"]) == (holder.lease_id, "revoked", format_time(shop.clock()))
    assert await shop.lease(str(holder.lease_id)) == ended
    refused(await shop.tenant.call("POST", f"{path}/release", json={}), 409, "LEASE_ENDED")
    refused(await holder.heartbeat(), 409, "LEASE_ENDED")
    answered = await holder.release()
    assert answered.status == 200 and answered.body["lease"]["state"] == "revoked"
    assert (await waiting.check_out()).status == 201
    shop.clock.advance(TTL)  # a lease that ran out has ended too
    refused(await shop.tenant.call("POST", f"/v1/admin/leases/{waiting.lease_id}/release"), 409, "LEASE_ENDED")
    [event] = await shop.events("lease.revoked")
    assert (event["subject_id"], event["data"]["reason"], event["data"]["state"]) == (
        holder.lease_id,
        "moved to another team",
        "revoked",
    )
    assert await shop.event_types() == ["lease.checked_out", "lease.revoked", "lease.checked_out"]


async def test_revoking_the_license_ends_its_leases(shop: Vendor) -> None:
    credential = await shop.credential()
    devices = [shop.device(credential) for _ in range(2)]
    for device in devices:
        await device.check_out()
    await shop.tenant.ok("POST", f"{shop.license_path}/revoke")
    assert [lease["state"] for lease in await shop.leases()] == ["revoked", "revoked"]
    for device in devices:  # told why: the license's verdict code
        refused(await device.heartbeat(), 403, "REVOKED")
    refused(await devices[0].check_out(), 403, "REVOKED")
    ended = await shop.events("lease.revoked")
    assert sorted(e["subject_id"] for e in ended) == sorted(str(device.lease_id) for device in devices)
    assert {(e["actor"], e["data"]["reason"]) for e in ended} == {("system", "the license was revoked")}
    assert (await shop.tenant.ok("GET", f"/v1/admin/credentials/{credential.id}"))["state"] == "active"
    assert await shop.seats_held() == 0


# --- the usage report ------------------------------------------------------------------------------------------
async def test_lease_usage_reports_peak_and_checkouts_per_utc_day(gateway: Gateway) -> None:
    shop = await shop_of(gateway, seats=3, lease_ttl_seconds=3600, heartbeat_interval_seconds=600)
    clock = shop.clock
    day = datetime.now(UTC).date() + timedelta(days=1)  # tomorrow: after the license started
    credential = await shop.credential()
    a, b, c, d = (shop.device(credential) for _ in range(4))
    clock.set(at(day, 10))
    await a.check_out()  # held 1
    clock.set(at(day, 10, 20))
    await a.check_out()  # a restart: its lease is taken over by its new one at the same moment, held 1
    clock.set(at(day, 11, 30))  # a's lease ran out at 11:20
    await b.check_out()
    clock.set(at(day, 11, 40))
    await b.release()
    clock.set(at(day, 23, 30))
    await c.check_out()  # held over midnight
    clock.set(at(day + timedelta(days=1), 0, 10))
    await d.check_out()  # held 2 with c
    clock.set(at(day + timedelta(days=1), 0, 20))
    path = f"{shop.license_path}/lease-usage"
    params = {"from": (day - timedelta(days=1)).isoformat(), "to": (day + timedelta(days=2)).isoformat()}
    report = await shop.tenant.ok("GET", path, params=params)
    assert (report["object"], report["license_id"], report["seats"]) == ("lease_usage", shop.license["id"], 3)
    assert report["days"] == [
        {"date": (day - timedelta(days=1)).isoformat(), "peak": 0, "checkouts": 0},
        {"date": day.isoformat(), "peak": 1, "checkouts": 4},
        {"date": (day + timedelta(days=1)).isoformat(), "peak": 2, "checkouts": 1},
        {"date": (day + timedelta(days=2)).isoformat(), "peak": 0, "checkouts": 0},
    ]
    recent = await shop.tenant.ok("GET", path)  # the last 30 days, up to the clock's today
    assert len(recent["days"]) == 30 and recent["days"][-2:] == report["days"][1:3]
    year = await shop.tenant.ok(
        "GET", path, params={"from": (day - timedelta(days=364)).isoformat(), "to": (day + timedelta(days=1)).isoformat()}
    )
    assert len(year["days"]) == 366 and year["days"][-2:] == report["days"][1:3]


async def test_lease_usage_refuses_bad_ranges(shop: Vendor) -> None:
    path = f"{shop.license_path}/lease-usage"
    for params in (
        {"from": "2024-02-30"},
        {"to": "tomorrow"},
        {"from": "2024-13-01", "to": "2024-12-31"},
        {"from": "2024-03-02", "to": "2024-03-01"},
        {"from": "2023-01-01", "to": "2024-01-02"},
        {"from": "2024-01-01", "to": "2025-01-01"},
    ):
        refused(await shop.tenant.call("GET", path, params=params), 400, "INVALID_PARAMETER")
    refused(await shop.tenant.call("GET", path, params={"since": "2024-01-01"}), 400, "UNKNOWN_PARAMETER")
    assert len((await shop.tenant.ok("GET", path, params={"from": "2024-01-01", "to": "2024-12-31"}))["days"]) == 366


BASE = datetime(2024, 3, 1, tzinfo=UTC)
BASE_S = int(BASE.timestamp())
DAY_S, NEAR = 86_400, 40
moments = st.builds(lambda day, offset: BASE_S + day * DAY_S + offset, st.integers(0, 3), st.integers(-NEAR, NEAR))
intervals = st.tuples(moments, st.integers(1, 2 * NEAR), st.booleans())


@settings(max_examples=400, deadline=None)
@given(st.lists(intervals, max_size=12), moments)
def test_peak_use_is_the_most_leases_held_at_any_second_of_each_day(leases: list[tuple[int, int, bool]], now: int) -> None:
    """Against a per-second count: every lease starts and ends within NEAR seconds of a midnight, so outside
    those windows nothing changes and counting the windows' seconds is counting every second."""
    rows, held = [], []
    for created, length, ended in leases:
        if created >= now:
            continue
        end = created + length
        rows.append(
            {"created_at": created * 1_000_000, "ended_at": end * 1_000_000 if ended else None, "expires_at": end * 1_000_000}
        )
        held.append((created, end if ended else min(end, now)))
    first, last = BASE.date(), BASE.date() + timedelta(days=2)
    expected = []
    for number in range(3):
        start = BASE_S + number * DAY_S
        seconds = [*range(start, start + 3 * NEAR + 1), *range(start + DAY_S - 3 * NEAR, start + DAY_S)]
        peak = max(sum(1 for begin, end in held if begin <= second < end) for second in seconds)
        started = sum(1 for begin, _ in held if start <= begin < start + DAY_S)
        expected.append({"date": (first + timedelta(days=number)).isoformat(), "peak": peak, "checkouts": started})
    assert peak_use(rows, first, last, now * 1_000_000) == expected


def test_peak_use_does_not_count_a_lease_that_ended_at_midnight_on_the_next_day() -> None:
    midnight = int(datetime(2024, 3, 2, tzinfo=UTC).timestamp()) * 1_000_000
    lease = {"created_at": midnight - 3_600_000_000, "ended_at": midnight, "expires_at": midnight}
    assert peak_use([lease], date(2024, 3, 1), date(2024, 3, 2), midnight + 1) == [
        {"date": "2024-03-01", "peak": 1, "checkouts": 1},
        {"date": "2024-03-02", "peak": 0, "checkouts": 0},
    ]
