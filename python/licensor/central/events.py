"""The event log as the API shows it, and verification of its hash chain."""

from __future__ import annotations

import hmac
from typing import Any

import orjson

from licensor.model import TIME_SCHEMA, format_time
from licensor.store import Row, Store
from licensor.store.chain import GENESIS_HASH, event_hash


def event_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "event",
        "seq": row["seq"],
        "type": row["type"],
        "subject_type": row["subject_type"],
        "subject_id": row["subject_id"],
        "actor": row["actor"],
        "data": orjson.loads(row["data"]),
        "created_at": format_time(row["created_at"]),
        "hash": bytes(row["hash"]).hex(),
    }


async def verify_chain(store: Store, tenant_id: str) -> dict[str, Any]:
    """Recompute the tenant's chain: every hash, every link, no gap, and the head. Names the first event that
    does not match (an altered, removed or inserted event breaks the chain there).

    Changes may go on meanwhile: the head read first says which events were committed before the walk began
    (they must all be there, the last one with the head's hash); events appended during the walk must link
    on and stay within the head read after it. So a verification never raises a false alarm."""
    before = await store.event_chain_head(tenant_id)
    if before is None:
        return _verdict(False, 0, {"seq": 1, "id": None, "reason": "the tenant has no event chain"})
    previous, expected_seq, count, last_id = GENESIS_HASH, 1, 0, None
    newer: dict[int, str] = {}  # ids of events beyond the head read first (appended during the walk, or forged)
    async for row in store.iter_events(tenant_id):
        reason = None
        if row["seq"] != expected_seq:
            reason = f"sequence gap: expected {expected_seq}"
        elif not hmac.compare_digest(bytes(row["prev_hash"]), previous):
            reason = "does not link to the previous event"
        elif not hmac.compare_digest(bytes(row["hash"]), event_hash(row)):
            reason = "its content does not match its hash"
        elif row["seq"] == before["last_seq"] and not hmac.compare_digest(bytes(row["hash"]), bytes(before["last_hash"])):
            reason = "it is not the event the chain's head records"
        if reason:
            return _verdict(False, count, {"seq": row["seq"], "id": row["id"], "reason": reason})
        if row["seq"] > before["last_seq"]:
            newer[row["seq"]] = row["id"]
        previous, expected_seq, count, last_id = bytes(row["hash"]), expected_seq + 1, count + 1, row["id"]
    if count < before["last_seq"]:
        return _verdict(False, count, {"seq": count + 1, "id": None, "reason": "events after this point are missing"})
    after = await store.event_chain_head(tenant_id)
    assert after is not None
    if count > after["last_seq"]:
        seq = after["last_seq"] + 1
        return _verdict(False, after["last_seq"], {"seq": seq, "id": newer.get(seq), "reason": "it is beyond the chain's head"})
    if count == after["last_seq"] and not hmac.compare_digest(bytes(after["last_hash"]), previous):
        return _verdict(False, count - 1, {"seq": count, "id": last_id, "reason": "it is not the event the chain's head records"})
    return _verdict(True, count, None)


def _verdict(valid: bool, count: int, broken: dict[str, Any] | None) -> dict[str, Any]:
    return {"object": "chain_verification", "valid": valid, "events_checked": count, "broken": broken}


EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "event"},
        "seq": {"type": "integer"},
        "type": {"type": "string"},
        "subject_type": {"type": "string"},
        "subject_id": {"type": "string"},
        "actor": {"type": "string"},
        "data": {"type": "object"},
        "created_at": TIME_SCHEMA,
        "hash": {"type": "string"},
    },
    "required": ["id", "object", "seq", "type", "subject_type", "subject_id", "actor", "data", "created_at", "hash"],
    "additionalProperties": False,
}

VERIFICATION_SCHEMA = {
    "type": "object",
    "properties": {
        "object": {"const": "chain_verification"},
        "valid": {"type": "boolean"},
        "events_checked": {"type": "integer"},
        "broken": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {
                        "seq": {"type": "integer"},
                        "id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                        "reason": {"type": "string"},
                    },
                    "required": ["seq", "id", "reason"],
                    "additionalProperties": False,
                },
            ]
        },
    },
    "required": ["object", "valid", "events_checked", "broken"],
    "additionalProperties": False,
}
