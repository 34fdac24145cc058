"""The tenant's keyset (rotation, /v1/keys) and the event log with its tamper-evident hash chain."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
from licensor import _impl as core
from licensor.central.events import verify_chain
from licensor.central.keyset import active_signing_key, public_keys
from licensor.gateway import keys as app_keys
from licensor.model import new_id
from licensor.store.chain import event_hash

from .conftest import Database, Tenant


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- keys ----------------------------------------------------------------------------------------------
async def test_a_new_tenant_has_one_active_ed25519_key_published_without_authentication(tenant: Tenant) -> None:
    listed = (await tenant.ok("GET", "/v1/admin/keys"))["data"]
    assert [k["state"] for k in listed] == ["active"]
    published = await tenant.gateway.call("GET", "/v1/keys", params={"tenant": tenant.id})
    assert published.status == 200
    assert published.body == {"object": "keyset", "tenant": tenant.id, "keys": listed}
    key = listed[0]
    assert set(key) == {"kid", "algorithm", "public_key", "state", "created_at", "retired_at"}
    assert (key["algorithm"], len(b64url_decode(key["public_key"])), key["retired_at"]) == ("Ed25519", 32, None)
    assert "seed" not in published.text


async def test_rotation_makes_a_new_active_key_and_keeps_the_old_ones_published(tenant: Tenant) -> None:
    gateway = tenant.gateway
    store, secrets = gateway.app[app_keys.STORE], gateway.app[app_keys.SECRETS]
    first_kid, first_seed = await active_signing_key(store, secrets, tenant.id)
    signed_before = core.encode_token("lf1", first_kid, b'{"license":"lic_1"}', first_seed)

    rotated = await tenant.ok("POST", "/v1/admin/keys/rotate", 200)
    assert rotated["object"] == "key_rotation" and rotated["active_kid"] != first_kid
    again = await tenant.ok("POST", "/v1/admin/keys/rotate", 200)
    kids = [again["active_kid"], rotated["active_kid"], first_kid]

    listed = (await tenant.ok("GET", "/v1/admin/keys"))["data"]
    assert [k["kid"] for k in listed] == kids, "newest first"
    assert [k["state"] for k in listed] == ["active", "retired", "retired"]
    assert listed[0]["retired_at"] is None and all(k["retired_at"] for k in listed[1:])
    published = (await gateway.call("GET", "/v1/keys", params={"tenant": tenant.id})).body["keys"]
    assert published == listed

    # What the old key signed still verifies against the published keys; new signatures use the new key.
    by_kid = {k["kid"]: b64url_decode(k["public_key"]) for k in published}
    assert by_kid == await public_keys(store, tenant.id)
    assert core.decode_token(signed_before, "lf1", by_kid) == b'{"license":"lic_1"}'
    active_kid, active_seed = await active_signing_key(store, secrets, tenant.id)
    assert active_kid == again["active_kid"] and core.public_key(active_seed) == by_kid[active_kid]
    rotations = await tenant.list_all("/v1/admin/events", params={"type": "key.rotated"})
    assert [e["subject_id"] for e in rotations] == [rotated["active_kid"], again["active_kid"]]


async def test_rotation_is_for_admins_only_and_the_keyset_is_the_tenants_own(tenant: Tenant) -> None:
    tokens = await tenant.tokens()
    for role in ("developer", "support", "read-only"):
        answer = await tenant.call("POST", "/v1/admin/keys/rotate", token=tokens[role])
        assert (answer.status, answer.code) == (403, "FORBIDDEN")
        assert len((await tenant.ok("GET", "/v1/admin/keys", token=tokens[role]))["data"]) == 1
    other = await tenant.gateway.tenant("Vendor B")
    await other.ok("POST", "/v1/admin/keys/rotate")
    mine = {k["kid"] for k in (await tenant.ok("GET", "/v1/admin/keys"))["data"]}
    theirs = {k["kid"] for k in (await tenant.gateway.call("GET", "/v1/keys", params={"tenant": other.id})).body["keys"]}
    assert len(mine) == 1 and len(theirs) == 2 and not mine & theirs


async def test_the_published_keys_of_an_unknown_or_malformed_tenant_are_refused(tenant: Tenant) -> None:
    gateway = tenant.gateway
    unknown = await gateway.call("GET", "/v1/keys", params={"tenant": new_id("ten")})
    assert (unknown.status, unknown.code) == (404, "TENANT_NOT_FOUND")
    for params in ({"tenant": "nope"}, {"tenant": tenant.id.lower()}, {}, {"tenant": tenant.id, "extra": "1"}):
        answer = await gateway.call("GET", "/v1/keys", params=params)
        assert answer.status == 400, params


# --- events --------------------------------------------------------------------------------------------
async def make_history(tenant: Tenant) -> dict[str, Any]:
    """A series of changes of every kind; the objects made."""
    product = await tenant.product("studio")
    feature = await tenant.feature(product["id"], "export")
    policy = await tenant.policy(product["id"], duration={"kind": "subscription", "days": 30}, features=[{"code": "export"}])
    customer = await tenant.customer("ada@example.com")
    lic = await tenant.license(policy["id"], customer_id=customer["id"])
    await tenant.ok("POST", f"/v1/admin/licenses/{lic['id']}/suspend", json={"reason": "unpaid"})
    await tenant.ok("POST", f"/v1/admin/licenses/{lic['id']}/reinstate", json={})
    await tenant.ok("POST", f"/v1/admin/licenses/{lic['id']}/renew", json={})
    await tenant.ok("PATCH", f"/v1/admin/customers/{customer['id']}", json={"name": "Ada L."})
    release = await tenant.ok("POST", "/v1/admin/releases", 201, json={"product_id": product["id"], "version": "1.0"})
    await tenant.ok("DELETE", f"/v1/admin/releases/{release['id']}")
    token = await tenant.token("support")
    await tenant.ok("DELETE", f"/v1/admin/tokens/{token.split('.')[0]}")
    await tenant.ok("POST", "/v1/admin/keys/rotate")
    # Reading the log links every event queued so far: the tests that tamper with the table see it whole.
    assert (await tenant.ok("GET", "/v1/admin/events/verify"))["valid"] is True
    return {"product": product, "feature": feature, "policy": policy, "customer": customer, "license": lic, "release": release}


async def test_every_change_is_an_event_in_order(tenant: Tenant) -> None:
    made = await make_history(tenant)
    events = await tenant.list_all("/v1/admin/events", limit=4)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events] == [
        "tenant.created",
        "product.created",
        "feature.created",
        "policy.created",
        "customer.created",
        "license.created",
        "license.suspended",
        "license.reinstated",
        "license.renewed",
        "customer.updated",
        "release.created",
        "release.deleted",
        "token.created",
        "token.revoked",
        "key.rotated",
    ]
    first = events[0]
    assert (first["subject_type"], first["subject_id"], first["actor"]) == ("tenant", tenant.id, "licensor init")
    admin_id = tenant.admin_token.split(".")[0]
    assert all(e["actor"] == f"token:{admin_id}" for e in events[1:])
    assert all(len(bytes.fromhex(e["hash"])) == 32 for e in events) and len({e["hash"] for e in events}) == len(events)
    assert events[10]["data"] == made["release"]
    assert events[9]["data"]["name"] == "Ada L."
    assert all("token" not in e["data"] for e in events if e["type"].startswith("token."))


async def test_events_are_filtered_by_type_and_subject_and_paged_by_cursor(tenant: Tenant) -> None:
    made = await make_history(tenant)
    lic = made["license"]["id"]
    by_subject = await tenant.list_all("/v1/admin/events", limit=2, params={"subject_id": lic})
    assert [e["type"] for e in by_subject] == ["license.created", "license.suspended", "license.reinstated", "license.renewed"]
    assert [e["type"] for e in await tenant.list_all("/v1/admin/events", limit=1, params={"subject_type": "customer"})] == [
        "customer.created",
        "customer.updated",
    ]
    suspended = (await tenant.ok("GET", "/v1/admin/events", params={"type": "license.suspended"}))["data"]
    assert [(e["subject_id"], e["data"]["reason"]) for e in suspended] == [(lic, "unpaid")]
    combined = await tenant.ok("GET", "/v1/admin/events", params={"subject_type": "license", "type": "license.renewed"})
    assert [e["subject_id"] for e in combined["data"]] == [lic]
    assert (await tenant.ok("GET", "/v1/admin/events", params={"subject_id": new_id("lic")}))["data"] == []

    page = await tenant.ok("GET", "/v1/admin/events", params={"limit": "5"})
    assert page["has_more"] and [e["seq"] for e in page["data"]] == [1, 2, 3, 4, 5]
    following = await tenant.ok("GET", "/v1/admin/events", params={"limit": "5", "cursor": page["next_cursor"]})
    assert [e["seq"] for e in following["data"]] == [6, 7, 8, 9, 10]
    for params in ({"type": "Product.Created"}, {"subject_type": "a b"}, {"subject_id": "lic_1"}):
        answer = await tenant.call("GET", "/v1/admin/events", params=params)
        assert (answer.status, answer.code) == (400, "INVALID_PARAMETER"), params


async def test_the_event_logs_of_tenants_are_separate(tenant: Tenant) -> None:
    other = await tenant.gateway.tenant("Vendor B")
    await make_history(tenant)
    await other.product("studio")
    theirs = await other.list_all("/v1/admin/events")
    assert [e["type"] for e in theirs] == ["tenant.created", "product.created"] and theirs[0]["subject_id"] == other.id
    assert (await other.ok("GET", "/v1/admin/events/verify"))["events_checked"] == 2


# --- the hash chain ------------------------------------------------------------------------------------
TAMPERED_COLUMNS = ("data", "type", "actor", "created_at", "hash", "prev_hash", "subject_type", "subject_id")


def tampered(column: str, value: Any) -> Any:
    if column == "data":
        data = orjson.loads(value)
        data["tampered"] = True
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    if column == "created_at":
        return value + 1
    if column in ("hash", "prev_hash"):
        raw = bytearray(bytes(value))
        raw[0] ^= 1
        return bytes(raw)
    return value + "x"


async def test_the_chain_verifies_after_a_series_of_changes(tenant: Tenant) -> None:
    await make_history(tenant)
    read_only = await tenant.token("read-only")
    verdict = await tenant.ok("GET", "/v1/admin/events/verify", token=read_only)
    assert verdict == {"object": "chain_verification", "valid": True, "events_checked": 16, "broken": None}
    assert verdict == await verify_chain(tenant.gateway.store, tenant.id)


async def test_altering_any_column_of_any_stored_event_makes_verification_name_that_event(tenant: Tenant) -> None:
    await make_history(tenant)
    other = await tenant.gateway.tenant("Vendor B")
    await other.product("studio")
    async with Database(tenant.gateway.store_url) as db:
        rows = await db.execute("SELECT * FROM events WHERE tenant_id = ? ORDER BY seq", tenant.id)
        assert len(rows) == 15
        assert all(bytes(row["hash"]) == event_hash(row) for row in rows), "the stored hashes are the documented ones"
        for row in rows:
            for column in TAMPERED_COLUMNS:
                await db.execute(
                    f"UPDATE events SET {column} = ? WHERE tenant_id = ? AND seq = ?",
                    tampered(column, row[column]),
                    tenant.id,
                    row["seq"],
                )
                verdict = await tenant.ok("GET", "/v1/admin/events/verify")
                assert verdict["valid"] is False, (row["seq"], column)
                assert (verdict["broken"]["seq"], verdict["broken"]["id"]) == (row["seq"], row["id"]), (column, verdict)
                assert verdict["events_checked"] == row["seq"] - 1
                assert (await other.ok("GET", "/v1/admin/events/verify"))["valid"] is True, "another tenant's chain is unaffected"
                await db.execute(
                    f"UPDATE events SET {column} = ? WHERE tenant_id = ? AND seq = ?", row[column], tenant.id, row["seq"]
                )
        assert (await tenant.ok("GET", "/v1/admin/events/verify"))["valid"] is True


async def test_a_removed_or_reordered_event_breaks_the_chain(tenant: Tenant) -> None:
    await make_history(tenant)
    async with Database(tenant.gateway.store_url) as db:
        rows = await db.execute("SELECT * FROM events WHERE tenant_id = ? ORDER BY seq", tenant.id)
        columns = list(rows[0])

        async def put_back(row: dict[str, Any]) -> None:
            await db.execute(
                f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", *row.values()
            )

        last = rows[-1]
        await db.execute("DELETE FROM events WHERE tenant_id = ? AND seq = ?", tenant.id, last["seq"])
        verdict = await tenant.ok("GET", "/v1/admin/events/verify")
        assert verdict["valid"] is False and verdict["broken"]["seq"] == last["seq"], verdict
        assert verdict["events_checked"] == last["seq"] - 1
        await put_back(last)
        assert (await tenant.ok("GET", "/v1/admin/events/verify"))["valid"] is True

        middle = rows[6]
        await db.execute("DELETE FROM events WHERE tenant_id = ? AND seq = ?", tenant.id, middle["seq"])
        verdict = await tenant.ok("GET", "/v1/admin/events/verify")
        assert verdict["valid"] is False and verdict["broken"]["seq"] == middle["seq"] + 1, verdict
        await put_back(middle)

        # Two events swapped (each keeping its own hash) no longer link.
        a, b = rows[3], rows[4]
        await db.execute("DELETE FROM events WHERE tenant_id = ? AND seq IN (?, ?)", tenant.id, a["seq"], b["seq"])
        await put_back({**b, "seq": a["seq"]})
        await put_back({**a, "seq": b["seq"]})
        verdict = await tenant.ok("GET", "/v1/admin/events/verify")
        assert verdict["valid"] is False and verdict["broken"]["seq"] == a["seq"], verdict
        await db.execute("DELETE FROM events WHERE tenant_id = ? AND seq IN (?, ?)", tenant.id, a["seq"], b["seq"])
        await put_back(a)
        await put_back(b)

        # A forged event appended after the head (hash and link computed correctly) is detected too.
        forged = {
            **last,
            "seq": last["seq"] + 1,
            "id": new_id("evt"),
            "type": "license.revoked",
            "prev_hash": bytes(last["hash"]),
        }
        forged["hash"] = event_hash(forged)
        await put_back(forged)
        verdict = await tenant.ok("GET", "/v1/admin/events/verify")
        assert verdict["valid"] is False and (verdict["broken"]["seq"], verdict["broken"]["id"]) == (
            forged["seq"],
            forged["id"],
        ), verdict
        await db.execute("DELETE FROM events WHERE tenant_id = ? AND seq = ?", tenant.id, forged["seq"])

        # So is the last event replaced by another one that is consistent in itself.
        replaced = {**last, "data": orjson.dumps({"forged": True}).decode()}
        replaced["hash"] = event_hash(replaced)
        await db.execute("DELETE FROM events WHERE tenant_id = ? AND seq = ?", tenant.id, last["seq"])
        await put_back(replaced)
        verdict = await tenant.ok("GET", "/v1/admin/events/verify")
        assert verdict["valid"] is False and (verdict["broken"]["seq"], verdict["broken"]["id"]) == (last["seq"], last["id"]), (
            verdict
        )
        await db.execute("DELETE FROM events WHERE tenant_id = ? AND seq = ?", tenant.id, last["seq"])
        await put_back(last)
    assert (await tenant.ok("GET", "/v1/admin/events/verify"))["valid"] is True


async def test_the_chain_verifies_while_changes_are_being_made(tenant: Tenant) -> None:
    """Verification during concurrent writes sees a consistent prefix of the chain, never a false alarm."""
    stop = asyncio.Event()

    async def write() -> int:
        count = 0
        while not stop.is_set():
            await tenant.customer(f"user{count}-{new_id('cus').lower()}@example.com")
            count += 1
        return count

    async def verify() -> list[dict[str, Any]]:
        verdicts = []
        for _ in range(40):
            verdicts.append(await tenant.ok("GET", "/v1/admin/events/verify"))
        stop.set()
        return verdicts

    writers = [asyncio.create_task(write()) for _ in range(4)]
    verdicts = await verify()
    written = sum(await asyncio.gather(*writers))
    assert written > 0
    assert [v for v in verdicts if not v["valid"]] == []
    assert (await tenant.ok("GET", "/v1/admin/events/verify"))["events_checked"] == 1 + written
