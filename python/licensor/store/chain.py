"""The tamper-evident event chain: each event's hash covers its content and the previous event's hash."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

GENESIS_HASH = bytes(32)
"""The ``prev_hash`` of a tenant's first event."""

_DOMAIN = b"licensor.event.v1\x00"
HASHED_COLUMNS = ("tenant_id", "seq", "id", "type", "subject_type", "subject_id", "actor", "data", "created_at")


def event_hash(event: dict[str, Any]) -> bytes:
    """SHA-256 over a domain tag, the previous hash and the canonical JSON of the event's content."""
    content = orjson.dumps({name: event[name] for name in HASHED_COLUMNS}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(_DOMAIN + bytes(event["prev_hash"]) + content).digest()
