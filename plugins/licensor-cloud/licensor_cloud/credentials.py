"""Credentials: the credential files the vendor hands out, and the device requests they authenticate.

A credential (``crd_<id>.<secret>``, the secret stored only as a hash) authenticates a device's requests; it is
checked before the request's transaction and read again inside it (locked by a check-out, so a revocation waits
for it; a heartbeat holds its lease's lock, which a revocation's ending of the leases waits for), so a
revocation that commits first is never missed. Lock order, to rule out deadlocks: license, then credential,
then lease.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from licensor import AuthenticationError, Call, InvalidStateError, NotFoundError, Principal, RequestRefusedError, licensed_in
from licensor.model import CREDENTIAL, LICENSE, new_id
from licensor.store import Row, Transaction
from licensor_client.leases import CREDENTIAL_FILE_FORMAT

from licensor_cloud.presenters import shown_credential, shown_lease

NAME = "cloud"
"""The backend's name, which the policies of its licenses name."""
DEVICE_CALL = "licensor_cloud.device_call"
"""The :attr:`licensor.Call.context` key of a device request's :class:`DeviceCall`."""
PUBLISHED_KEYS = "licensor_cloud.published_keys"
"""The :attr:`licensor.Call.context` key of the tenant's public keys, read before a credential file is made
(inside the transaction, the store is read only through it)."""


@dataclass(frozen=True)
class DeviceCall:
    """A device request's credential, checked before its transaction, and the tenant's signing key."""

    credential: Row
    signing_kid: str
    signing_seed: bytes


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def new_secret() -> str:
    return b64url(os.urandom(32))


def credential_secret_hash(secret: str) -> str:
    return hashlib.sha256(b"licensor.credential.v1\x00" + secret.encode()).hexdigest()


def same_secret(stored_hash: str, presented_hash: str) -> bool:
    return hmac.compare_digest(stored_hash.encode(), presented_hash.encode())


def refuse_revoked(credential: Row) -> None:
    """:raises RequestRefusedError: 403 CREDENTIAL_REVOKED."""
    if credential["state"] == "revoked":
        raise RequestRefusedError(
            "CREDENTIAL_REVOKED", "the credential was revoked; ask the vendor for a new credential file", 403
        )


# --- device requests: the credential, checked before the transaction -----------------------------------
async def authenticate_device(call: Call) -> Principal:
    """The principal of a device request's credential; its :class:`DeviceCall` goes on ``call.context``.

    :raises AuthenticationError: an unknown credential or a wrong secret (401 CREDENTIAL_INVALID).
    :raises RequestRefusedError: a revoked credential (403 CREDENTIAL_REVOKED).
    :raises NotFoundError: no such tenant (404 TENANT_NOT_FOUND).
    """
    tenant_id = call.body["tenant"]
    credential_id, _, secret = call.body["credential"].partition(".")
    row = await call.services.store.get(tenant_id, CREDENTIAL, credential_id)
    presented = credential_secret_hash(secret)
    if row is None or not same_secret(row["secret_hash"], presented):
        raise AuthenticationError("the credential is not valid", code="CREDENTIAL_INVALID")
    refuse_revoked(row)
    try:
        kid, seed = await call.services.signing_key(tenant_id)
    except LookupError:
        raise NotFoundError("no such tenant", code="TENANT_NOT_FOUND") from None
    call.context[DEVICE_CALL] = DeviceCall(row, kid, seed)
    return Principal(tenant_id, credential_id, "credential", None, actor=f"credential:{credential_id}")


def device_call(call: Call) -> DeviceCall:
    """What :func:`authenticate_device` resolved for the call."""
    device: DeviceCall = call.context[DEVICE_CALL]
    return device


async def read_published_keys(call: Call) -> Principal:
    """Keep the tenant's public keys on ``call.context`` for its credential file (read before the transaction)."""
    assert call.principal is not None
    call.context[PUBLISHED_KEYS] = await call.services.public_keys(call.principal.tenant_id)
    return call.principal


def published_keys(call: Call) -> dict[str, bytes]:
    """What :func:`read_published_keys` read for the call."""
    keys: dict[str, bytes] = call.context[PUBLISHED_KEYS]
    return keys


# --- the vendor's changes ---------------------------------------------------------------------------------
async def issue_credential(
    tx: Transaction,
    clock: Callable[[], int],
    license_id: str,
    label: str | None,
    actor: str,
    *,
    server: str,
    keys: Mapping[str, bytes],
    reissue_of: str | None = None,
) -> dict[str, Any]:
    """A new credential of a cloud license and its credential file (for a gateway at ``server`` whose tenant
    publishes ``keys``), which alone holds the secret.

    :raises NotFoundError: LICENSE_NOT_FOUND.
    :raises InvalidStateError: LICENSE_NOT_CLOUD, a license of another backend."""
    license = await tx.get(LICENSE, license_id)
    if license is None:
        raise NotFoundError("no such license", code="LICENSE_NOT_FOUND")
    licensed = await licensed_in(tx, license)
    if licensed.policy["backend"] != NAME:
        raise InvalidStateError(
            f"the license's policy uses the {licensed.policy['backend']} backend, not cloud", code="LICENSE_NOT_CLOUD"
        )
    secret, now = new_secret(), clock()
    credential = await tx.insert(
        CREDENTIAL,
        {
            "id": new_id("crd"),
            "license_id": license_id,
            "label": label,
            "state": "active",
            "secret_hash": credential_secret_hash(secret),
            "reissue_of": reissue_of,
            "revoked_at": None,
            "created_at": now,
            "updated_at": now,
        },
    )
    await tx.append_event(
        "credential.reissued" if reissue_of else "credential.created",
        "credential",
        credential["id"],
        actor,
        shown_credential(credential),
    )
    file = {
        "format": CREDENTIAL_FILE_FORMAT,
        "server": server.rstrip("/"),
        "tenant": tx.tenant_id,
        "product": licensed.product["code"],
        "license": license_id,
        "credential": f"{credential['id']}.{secret}",
        "label": label,
        "keys": {kid: b64url(key) for kid, key in keys.items()},
    }
    return {"object": "credential_file", "credential": shown_credential(credential), "credential_file": file}


async def revoke_credential(tx: Transaction, clock: Callable[[], int], credential_id: str, reason: str | None, actor: str) -> Row:
    """Revoke the credential; its leases end at once, so their seats are free now.

    :raises NotFoundError: CREDENTIAL_NOT_FOUND.
    :raises InvalidStateError: CREDENTIAL_ALREADY_REVOKED."""
    credential = await _locked_credential(tx, credential_id)
    if credential["state"] == "revoked":
        raise InvalidStateError("the credential was revoked already", code="CREDENTIAL_ALREADY_REVOKED")
    return await _revoke(tx, clock, credential, reason or "revoked by the vendor", actor)


async def reissue_credential(
    tx: Transaction,
    clock: Callable[[], int],
    credential_id: str,
    label: str | None,
    actor: str,
    *,
    server: str,
    keys: Mapping[str, bytes],
) -> dict[str, Any]:
    """A new credential in place of this one, which is revoked (its leases end) if it was not already.

    :raises NotFoundError: CREDENTIAL_NOT_FOUND."""
    old = await _locked_credential(tx, credential_id)
    if old["state"] == "active":
        await _revoke(tx, clock, old, "reissued", actor)
    label = label if label is not None else old["label"]
    return await issue_credential(tx, clock, old["license_id"], label, actor, server=server, keys=keys, reissue_of=old["id"])


async def relabel_credential(tx: Transaction, credential_id: str, label: str | None, actor: str) -> Row:
    """:raises NotFoundError: CREDENTIAL_NOT_FOUND."""
    credential = await tx.get(CREDENTIAL, credential_id, for_update=True)
    if credential is None:
        raise NotFoundError("no such credential", code="CREDENTIAL_NOT_FOUND")
    relabelled = await tx.update(CREDENTIAL, credential_id, {"label": label})
    assert relabelled is not None
    await tx.append_event("credential.labelled", "credential", credential_id, actor, shown_credential(relabelled))
    return relabelled


async def _locked_credential(tx: Transaction, credential_id: str) -> Row:
    """The credential, locked after its license: ending its leases then cannot deadlock with a check-out of
    the license, which marks the license's run-out leases (some maybe this credential's) under that lock."""
    credential = await tx.get(CREDENTIAL, credential_id)
    if credential is None:
        raise NotFoundError("no such credential", code="CREDENTIAL_NOT_FOUND")
    await tx.get(LICENSE, credential["license_id"], for_update=True)
    locked = await tx.get(CREDENTIAL, credential_id, for_update=True)
    assert locked is not None
    return locked


async def _revoke(tx: Transaction, clock: Callable[[], int], credential: Row, reason: str, actor: str) -> Row:
    now = clock()
    ended = await tx.end_leases(now, "revoked", credential_id=credential["id"])
    for lease in ended:
        await tx.append_event(
            "lease.revoked", "lease", lease["id"], actor, {**shown_lease(lease, now), "reason": "its credential was revoked"}
        )
    revoked = await tx.update(CREDENTIAL, credential["id"], {"state": "revoked", "revoked_at": now})
    assert revoked is not None
    await tx.append_event(
        "credential.revoked",
        "credential",
        credential["id"],
        actor,
        {**shown_credential(revoked), "reason": reason, "leases_ended": [lease["id"] for lease in ended]},
    )
    return revoked
