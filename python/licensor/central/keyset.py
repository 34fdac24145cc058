"""Tenants' Ed25519 keysets: one active signing key, retired keys still published for verification."""

from __future__ import annotations

import base64
from typing import Any

from licensor import _impl as core
from licensor.central.secrets import Secrets
from licensor.model import format_time, new_id, now_us
from licensor.store import Row, Store, Transaction


async def add_signing_key(tx: Transaction, secrets: Secrets) -> str:
    """Create the tenant's new active signing key (retiring the active one); its key id."""
    kid = new_id("key")
    seed = core.generate_seed()
    await tx.insert_signing_key(kid, core.public_key(seed), secrets.seal_seed(tx.tenant_id, kid, seed), now_us())
    return kid


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def public_key_json(row: Row) -> dict[str, Any]:
    return {
        "kid": row["kid"],
        "algorithm": "Ed25519",
        "public_key": b64url(bytes(row["public_key"])),
        "state": row["state"],
        "created_at": format_time(row["created_at"]),
        "retired_at": format_time(row["retired_at"]),
    }


async def public_keys(store: Store, tenant_id: str) -> dict[str, bytes]:
    """Key id -> public key of every published key of the tenant (for verifying its tokens)."""
    return {row["kid"]: bytes(row["public_key"]) for row in await store.list_signing_keys(tenant_id)}


async def active_signing_key(store: Store, secrets: Secrets, tenant_id: str) -> tuple[str, bytes]:
    """(key id, seed) of the tenant's active key, for signing."""
    for row in await store.list_signing_keys(tenant_id):
        if row["state"] == "active":
            return row["kid"], secrets.open_seed(tenant_id, row["kid"], bytes(row["sealed_seed"]))
    raise LookupError(f"tenant {tenant_id} has no active signing key")


KEY_SCHEMA = {
    "type": "object",
    "properties": {
        "kid": {"type": "string"},
        "algorithm": {"const": "Ed25519"},
        "public_key": {"type": "string"},
        "state": {"enum": ["active", "retired"]},
        "created_at": {"type": "string"},
        "retired_at": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["kid", "algorithm", "public_key", "state", "created_at", "retired_at"],
    "additionalProperties": False,
}
