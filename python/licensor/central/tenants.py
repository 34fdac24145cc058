"""Creating a tenant: its keyset, the head of its event chain, and a first admin token."""

from __future__ import annotations

from dataclasses import dataclass

from licensor.central.admin import issue_token
from licensor.central.keyset import add_signing_key
from licensor.central.secrets import Secrets
from licensor.model import new_id, now_us
from licensor.store import Store


@dataclass(frozen=True)
class NewTenant:
    tenant_id: str
    admin_token: str  # shown once; only its hash is stored


async def create_tenant(store: Store, secrets: Secrets, name: str) -> NewTenant:
    tenant_id = new_id("ten")
    await store.create_tenant(tenant_id, name, now_us())
    async with store.transaction(tenant_id) as tx:
        kid = await add_signing_key(tx, secrets)
        row, token = await issue_token(tx, "initial admin token", "admin", None)
        await tx.append_event(
            "tenant.created", "tenant", tenant_id, "licensor init", {"name": name, "kid": kid, "token_id": row["id"]}
        )
    return NewTenant(tenant_id, token)
