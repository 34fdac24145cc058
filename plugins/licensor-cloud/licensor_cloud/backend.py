"""The cloud backend: credentials, and leases of a license's seats counted on the server.

A credential (``crd_<id>.<secret>``, the secret stored only as a hash) authenticates a device's requests; it is
checked before the request's transaction and read again inside it (locked by a check-out, so a revocation waits
for it; a heartbeat holds its lease's lock, which a revocation's ending of the leases waits for), so a
revocation that commits first is never missed. Seats are counted under the license's row lock, after marking
the leases that ran out as expired (:meth:`licensor.store.Transaction.expire_leases`): expiry needs no
background job and cannot race a check-out.

Every heartbeat hands the device a new lease secret and forgets the old one, so a copy of a virtual machine
that presents an older secret is told ``LEASE_TAKEN_OVER`` and never holds a seat besides the original's.
Lock order, to rule out deadlocks: license, then credential, then lease.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from aiohttp import web
from licensor.backend import Backend, CheckRequest, LicenseTerms, license_terms_verdict
from licensor.central.keyset import b64url, public_keys
from licensor.errors import (
    AuthenticationError,
    InvalidStateError,
    LicensorError,
    NotFoundError,
    ValidationError,
)
from licensor.gateway import keys as app_keys
from licensor.gateway.api import Operation
from licensor.gateway.auth import Principal
from licensor.gateway.cache import Licensed
from licensor.model import CREDENTIAL, LEASE, LICENSE, POLICY, PRODUCT, format_time, new_id, now_us
from licensor.store import Row, Store, Transaction
from licensor.tokens import sign_document
from licensor.verdict import Code, Verdict

NAME = "cloud"
LEASE_TOKEN_KIND = "ls1"
CREDENTIAL_FILE_FORMAT = "licensor-credential-1"
DEFAULT_OPTIONS: dict[str, Any] = {"lease_ttl_seconds": 900, "heartbeat_interval_seconds": 300, "on_seat_limit": "refuse"}
SUPPORT_ROLES = frozenset({"admin", "developer", "support"})
MAX_REPORTED_LEASES = 100_000
"""The most leases one usage report reads; a longer range is refused (narrow it)."""
DAY_US = 86_400 * 1_000_000


class LeaseRefusedError(LicensorError):
    """A device request the license, its credential or its lease does not allow; nothing was recorded. The code
    is a verdict code (SEAT_LIMIT_REACHED, LEASE_TAKEN_OVER, ...) or the backend's own (CREDENTIAL_REVOKED, ...)."""

    def __init__(self, code: Code | str, message: str, status: int = 409) -> None:
        super().__init__(message, code=str(code))
        self.http_status = status


@dataclass(frozen=True)
class DeviceCall:
    """A device request's credential, checked before its transaction, and the tenant's signing key."""

    credential: Row
    signing_kid: str
    signing_seed: bytes


DEVICE_CALL = web.RequestKey("licensor_cloud.device_call", DeviceCall)
PUBLISHED_KEYS = web.RequestKey("licensor_cloud.published_keys", dict)
"""The tenant's public keys, read before a credential file is made (inside the transaction only it reads)."""


def new_secret() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def credential_secret_hash(secret: str) -> str:
    return hashlib.sha256(b"licensor.credential.v1\x00" + secret.encode()).hexdigest()


def lease_secret_hash(secret: str) -> str:
    return hashlib.sha256(b"licensor.lease.v1\x00" + secret.encode()).hexdigest()


def _same_secret(stored_hash: str, presented_hash: str) -> bool:
    return hmac.compare_digest(stored_hash.encode(), presented_hash.encode())


class CloudBackend(Backend):
    name = NAME
    verdicts_cacheable = True  # /v1/check answers the license's terms; seats are proven by leases
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "lease_ttl_seconds": {
                "type": "integer",
                "minimum": 2,
                "maximum": 86_400,
                "description": "How long a lease lives after its check-out or last heartbeat (default 900).",
            },
            "heartbeat_interval_seconds": {
                "type": "integer",
                "minimum": 1,
                "maximum": 43_200,
                "description": "How often a device renews its lease (default 300); less than the TTL.",
            },
            "on_seat_limit": {
                "enum": ["refuse", "take_over"],
                "description": "When every seat is held and another device asks: refuse it (default), or "
                "let it take over the seat renewed longest ago (single-user licenses moving "
                "between office and home).",
            },
        },
        "additionalProperties": False,
    }

    def __init__(self, *, clock: Callable[[], int] = now_us) -> None:
        self.clock = clock  # microseconds; tests move it

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        merged = {**DEFAULT_OPTIONS, **super().validate_options(options)}
        if merged["heartbeat_interval_seconds"] >= merged["lease_ttl_seconds"]:
            raise ValidationError(
                "cloud policy option heartbeat_interval_seconds must be less than lease_ttl_seconds "
                f"({merged['lease_ttl_seconds']})",
                code="INVALID_POLICY_OPTIONS",
            )
        return merged

    async def check(self, request: CheckRequest) -> Verdict:
        """The license's terms: a device proves the seat it holds by its lease token and heartbeats."""
        return license_terms_verdict(request)

    def operations(self) -> list[Operation]:
        from licensor_cloud.routes import build_operations  # the routes call back into this class

        return build_operations(self)

    async def on_license_changed(self, tx: Transaction, license: dict[str, Any], change: str) -> None:
        """A revoked license's leases end with it; a suspended one's are refused at their next heartbeat."""
        if change == "revoked":
            now = self.clock()
            for ended in await tx.end_leases(now, "revoked", license_id=license["id"]):
                await _event(tx, "lease.revoked", ended, "system", now, reason="the license was revoked")

    # --- device requests: the credential, checked before the transaction -----------------------------------
    async def authenticate_device(self, request: web.Request, body: dict[str, Any]) -> Principal:
        """The principal of a device request's credential.

        :raises AuthenticationError: an unknown credential or a wrong secret (401 CREDENTIAL_INVALID).
        :raises LeaseRefusedError: a revoked credential (403 CREDENTIAL_REVOKED).
        """
        tenant_id = body["tenant"]
        credential_id, _, secret = body["credential"].partition(".")
        row = await request.app[app_keys.STORE].get(tenant_id, CREDENTIAL, credential_id)
        presented = credential_secret_hash(secret)
        if row is None or not _same_secret(row["secret_hash"], presented):
            raise AuthenticationError("the credential is not valid", code="CREDENTIAL_INVALID")
        _refuse_revoked(row)
        try:
            kid, seed = await request.app[app_keys.CACHE].signing_key(tenant_id)
        except LookupError:
            raise NotFoundError("no such tenant", code="TENANT_NOT_FOUND") from None
        request[DEVICE_CALL] = DeviceCall(row, kid, seed)
        return Principal(tenant_id, credential_id, "credential", None, actor=f"credential:{credential_id}")

    async def check_out(self, tx: Transaction, call: DeviceCall, body: dict[str, Any]) -> dict[str, Any]:
        """A new lease of a seat for the device; the device's own earlier lease, if it holds one, is taken over
        (it restarted, or a copy of it asks), so one device never holds two seats of a license."""
        license = await tx.get(LICENSE, call.credential["license_id"], for_update=True)  # serialises the seat count
        credential = await tx.get(CREDENTIAL, call.credential["id"], for_update=True)  # a revocation waits for this
        assert license is not None and credential is not None
        _refuse_revoked(credential)
        licensed = await _licensed_in(tx, license)
        now = self.clock()
        features = tuple(body.get("features", ()))
        _refuse_unless_allowed(licensed, tx.tenant_id, features, now)
        options, seats = licensed.options, licensed.terms.terms["seats"]
        held = await tx.expire_leases(license["id"], now)
        lease_id = new_id("lse")
        replaced = [row for row in held if row["device_id"] == body["device_id"]]
        if not replaced and len(held) >= seats:
            if _option(options, "on_seat_limit") != "take_over":
                raise LeaseRefusedError(Code.SEAT_LIMIT_REACHED, f"every seat of the license is leased ({seats} in all)")
            replaced = [min(held, key=lambda row: (row["renewed_at"] or row["created_at"], row["id"]))]
        for row in replaced:
            ended = await tx.update(LEASE, row["id"], {"state": "taken_over", "ended_at": now, "taken_over_by": lease_id})
            assert ended is not None
            await _event(tx, "lease.taken_over", ended, f"credential:{credential['id']}", now)
        secret = new_secret()
        lease = await tx.insert(
            LEASE,
            {
                "id": lease_id,
                "license_id": license["id"],
                "credential_id": credential["id"],
                "device_id": body["device_id"],
                "device_name": body.get("device_name"),
                "features": LEASE.field("features").api_to_column(list(features)),
                "state": "active",
                "secret_hash": lease_secret_hash(secret),
                "expires_at": _lease_end(licensed, now),
                "renewed_at": None,
                "renewals": 0,
                "ended_at": None,
                "taken_over_by": None,
                "created_at": now,
                "updated_at": now,
            },
        )
        await _event(tx, "lease.checked_out", lease, f"credential:{credential['id']}", now)
        return self._granted(call, licensed, lease, secret, now)

    async def renew(self, tx: Transaction, call: DeviceCall, body: dict[str, Any]) -> dict[str, Any]:
        """Renew the lease for another TTL, with a new secret; the old secret stops working."""
        lease, licensed, now = await self._held_lease(tx, call, body)
        _refuse_unless_allowed(licensed, tx.tenant_id, tuple(LEASE.field("features").column_to_api(lease["features"])), now)
        secret = new_secret()
        renewed = await tx.update(
            LEASE,
            lease["id"],
            {
                "secret_hash": lease_secret_hash(secret),
                "expires_at": _lease_end(licensed, now),
                "renewed_at": now,
                "renewals": lease["renewals"] + 1,
            },
        )
        assert renewed is not None
        await _event(tx, "lease.renewed", renewed, f"credential:{call.credential['id']}", now)
        return self._granted(call, licensed, renewed, secret, now)

    async def release(self, tx: Transaction, call: DeviceCall, body: dict[str, Any]) -> dict[str, Any]:
        """Give the seat back now; a lease that ended already is answered as it stands."""
        lease = await self._own_lease(tx, call, body)
        now = self.clock()
        if lease["state"] == "active" and lease["expires_at"] > now:
            released = await tx.update(LEASE, lease["id"], {"state": "released", "ended_at": now})
            assert released is not None
            await _event(tx, "lease.released", released, f"credential:{call.credential['id']}", now)
            lease = released
        return {"object": "lease", "lease": shown_lease(lease, now)}

    async def _own_lease(self, tx: Transaction, call: DeviceCall, body: dict[str, Any]) -> Row:
        """The lease the request names, locked, if the request holds its newest secret."""
        lease = await tx.get(LEASE, body["lease"], for_update=True)
        if lease is None or lease["credential_id"] != call.credential["id"]:
            raise LeaseRefusedError("LEASE_NOT_FOUND", "no such lease of this credential", 404)
        if not _same_secret(lease["secret_hash"], lease_secret_hash(body["lease_secret"])):
            raise LeaseRefusedError(
                Code.LEASE_TAKEN_OVER,
                "the lease was renewed by another copy of this device: the secret presented is not its newest",
            )
        return lease

    async def _held_lease(self, tx: Transaction, call: DeviceCall, body: dict[str, Any]) -> tuple[Row, Licensed, int]:
        lease = await self._own_lease(tx, call, body)
        credential = await tx.get(CREDENTIAL, call.credential["id"])
        assert credential is not None
        _refuse_revoked(credential)
        now = self.clock()
        if lease["state"] == "taken_over":
            raise LeaseRefusedError(Code.LEASE_TAKEN_OVER, "another device took the seat over")
        if lease["state"] == "released":
            raise LeaseRefusedError("LEASE_RELEASED", "the lease was released; check out a new one")
        if lease["state"] == "expired" or (lease["state"] == "active" and lease["expires_at"] <= now):
            raise LeaseRefusedError(
                Code.LEASE_EXPIRED, "the lease was not renewed in time and its seat went back; check out a new one"
            )
        license = await tx.get(LICENSE, lease["license_id"])
        assert license is not None
        licensed = await _licensed_in(tx, license)
        if lease["state"] == "revoked":  # ended with its license (told the license's code), or by the vendor
            _refuse_unless_allowed(licensed, tx.tenant_id, (), now)
            raise LeaseRefusedError("LEASE_ENDED", "the vendor ended the lease; check out a new one")
        return lease, licensed, now

    def _granted(self, call: DeviceCall, licensed: Licensed, lease: Row, secret: str, now: int) -> dict[str, Any]:
        return {
            "object": "lease",
            "lease": shown_lease(lease, now),
            "lease_secret": secret,
            "lease_token": lease_token(call.signing_kid, call.signing_seed, licensed, lease, now),
            "heartbeat_interval_seconds": _option(licensed.options, "heartbeat_interval_seconds"),
        }

    # --- the vendor's changes -------------------------------------------------------------------------------
    async def create_credential(
        self, tx: Transaction, request: web.Request, license_id: str, label: str | None, actor: str, reissue_of: str | None = None
    ) -> dict[str, Any]:
        """A new credential of a cloud license and its credential file, which alone holds the secret."""
        license = await tx.get(LICENSE, license_id)
        if license is None:
            raise NotFoundError("no such license", code="LICENSE_NOT_FOUND")
        licensed = await _licensed_in(tx, license)
        if licensed.policy["backend"] != NAME:
            raise InvalidStateError(
                f"the license's policy uses the {licensed.policy['backend']} backend, not cloud", code="LICENSE_NOT_CLOUD"
            )
        secret, now = new_secret(), self.clock()
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
        settings = request.app[app_keys.SETTINGS]
        server = settings.public_url or f"{request.scheme}://{request.host}"
        file = {
            "format": CREDENTIAL_FILE_FORMAT,
            "server": server.rstrip("/"),
            "tenant": tx.tenant_id,
            "product": licensed.product["code"],
            "license": license_id,
            "credential": f"{credential['id']}.{secret}",
            "label": label,
            "keys": {kid: b64url(key) for kid, key in request[PUBLISHED_KEYS].items()},
        }
        return {"object": "credential_file", "credential": shown_credential(credential), "credential_file": file}

    async def revoke_credential(self, tx: Transaction, credential_id: str, reason: str | None, actor: str) -> Row:
        """Revoke the credential; its leases end at once, so their seats are free now."""
        credential = await self._locked_credential(tx, credential_id)
        if credential["state"] == "revoked":
            raise InvalidStateError("the credential was revoked already", code="CREDENTIAL_ALREADY_REVOKED")
        return await self._revoke(tx, credential, reason or "revoked by the vendor", actor)

    @staticmethod
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

    async def _revoke(self, tx: Transaction, credential: Row, reason: str, actor: str) -> Row:
        now = self.clock()
        ended = await tx.end_leases(now, "revoked", credential_id=credential["id"])
        for lease in ended:
            await _event(tx, "lease.revoked", lease, actor, now, reason="its credential was revoked")
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

    async def reissue_credential(
        self, tx: Transaction, request: web.Request, credential_id: str, label: str | None, actor: str
    ) -> dict[str, Any]:
        """A new credential in place of this one, which is revoked (its leases end) if it was not already."""
        old = await self._locked_credential(tx, credential_id)
        if old["state"] == "active":
            await self._revoke(tx, old, "reissued", actor)
        return await self.create_credential(
            tx, request, old["license_id"], label if label is not None else old["label"], actor, reissue_of=old["id"]
        )

    async def relabel_credential(self, tx: Transaction, credential_id: str, label: str | None, actor: str) -> Row:
        credential = await tx.get(CREDENTIAL, credential_id, for_update=True)
        if credential is None:
            raise NotFoundError("no such credential", code="CREDENTIAL_NOT_FOUND")
        relabelled = await tx.update(CREDENTIAL, credential_id, {"label": label})
        assert relabelled is not None
        await tx.append_event("credential.labelled", "credential", credential_id, actor, shown_credential(relabelled))
        return relabelled

    async def end_lease(self, tx: Transaction, lease_id: str, reason: str | None, actor: str) -> Row:
        """The vendor frees a seat: the lease ends now and its holder's next heartbeat is told LEASE_ENDED."""
        lease = await tx.get(LEASE, lease_id, for_update=True)
        now = self.clock()
        if lease is None:
            raise NotFoundError("no such lease", code="LEASE_NOT_FOUND")
        if lease["state"] != "active" or lease["expires_at"] <= now:
            raise InvalidStateError("the lease has ended already", code="LEASE_ENDED")
        ended = await tx.update(LEASE, lease_id, {"state": "revoked", "ended_at": now})
        assert ended is not None
        await _event(tx, "lease.revoked", ended, actor, now, reason=reason or "ended by the vendor")
        return ended

    async def usage(self, store: Store, tenant_id: str, license: Row, first: date, last: date) -> dict[str, Any]:
        """Per UTC day from ``first`` to ``last``: the most leases held at once, and the leases started."""
        start = _day_start(first)
        end = min(_day_start(last + timedelta(days=1)), max(self.clock(), start))
        rows = await store.leases_overlapping(tenant_id, license["id"], start, end, MAX_REPORTED_LEASES + 1)
        if len(rows) > MAX_REPORTED_LEASES:
            raise ValidationError(
                f"more than {MAX_REPORTED_LEASES} leases fall in the range: ask for fewer days", code="RANGE_TOO_LARGE"
            )
        now = self.clock()
        days = peak_use(rows, first, last, now)
        policy = await store.get(tenant_id, POLICY, license["policy_id"])
        assert policy is not None
        return {"object": "lease_usage", "license_id": license["id"], "seats": policy["seats"], "days": days}


# --- helpers ------------------------------------------------------------------------------------------------
def _option(options: dict[str, Any], name: str) -> Any:
    return options.get(name, DEFAULT_OPTIONS[name])


def _lease_end(licensed: Licensed, now: int) -> int:
    """When a lease taken or renewed at ``now`` runs out: a TTL later, but never after the license's expiry."""
    end = now + int(_option(licensed.options, "lease_ttl_seconds")) * 1_000_000
    expires = licensed.license["expires_at"]
    return end if expires is None else min(end, expires)


def _refuse_revoked(credential: Row) -> None:
    if credential["state"] == "revoked":
        raise LeaseRefusedError("CREDENTIAL_REVOKED", "the credential was revoked; ask the vendor for a new credential file", 403)


def _refuse_unless_allowed(licensed: Licensed, tenant_id: str, features: tuple[str, ...], now: int) -> None:
    verdict = license_terms_verdict(
        CheckRequest(tenant_id, licensed.license, licensed.policy, features, now_us=now, license_terms=licensed.terms)
    )
    if not verdict.valid:
        raise LeaseRefusedError(verdict.code, f"the license allows no lease: {verdict.as_json()['message']}", 403)


async def _licensed_in(tx: Transaction, license: Row) -> Licensed:
    policy = await tx.get(POLICY, license["policy_id"])
    product = await tx.get(PRODUCT, license["product_id"])
    assert policy is not None and product is not None
    return Licensed(license, product, policy, POLICY.field("options").column_to_api(policy["options"]))


async def _event(tx: Transaction, kind: str, lease: Row, actor: str, now: int, **extra: Any) -> None:
    await tx.append_event(kind, "lease", lease["id"], actor, {**shown_lease(lease, now), **extra})


def lease_state(lease: Row, now: int) -> str:
    """A lease's state as shown: an active lease that ran out is expired, whether or not it was marked yet."""
    return "expired" if lease["state"] == "active" and lease["expires_at"] <= now else str(lease["state"])


def shown_lease(row: Row, now: int) -> dict[str, Any]:
    """A lease as the API shows it (never its secret)."""
    state = lease_state(row, now)
    ended = row["ended_at"] if row["ended_at"] is not None or state != "expired" else row["expires_at"]
    return {
        "id": row["id"],
        "object": "lease",
        "license_id": row["license_id"],
        "credential_id": row["credential_id"],
        "device_id": row["device_id"],
        "device_name": row["device_name"],
        "features": LEASE.field("features").column_to_api(row["features"]),
        "state": state,
        "expires_at": format_time(row["expires_at"]),
        "renewed_at": format_time(row["renewed_at"]),
        "renewals": row["renewals"],
        "ended_at": format_time(ended),
        "taken_over_by": row["taken_over_by"],
        "created_at": format_time(row["created_at"]),
        "updated_at": format_time(row["updated_at"]),
    }


def shown_credential(row: Row) -> dict[str, Any]:
    """A credential as the API shows it (never its secret, nor the secret's hash)."""
    return {
        "id": row["id"],
        "object": "credential",
        "license_id": row["license_id"],
        "label": row["label"],
        "state": row["state"],
        "reissue_of": row["reissue_of"],
        "revoked_at": format_time(row["revoked_at"]),
        "created_at": format_time(row["created_at"]),
        "updated_at": format_time(row["updated_at"]),
    }


def lease_token(kid: str, seed: bytes, licensed: Licensed, lease: Row, now: int) -> str:
    """The ``ls1`` token of a lease as it stands (times in seconds)."""
    terms = LicenseTerms.of(licensed.license, licensed.policy)
    return sign_document(
        LEASE_TOKEN_KIND,
        kid,
        seed,
        {
            "tenant": licensed.license["tenant_id"],
            "product": licensed.product["code"],
            "license": licensed.license["id"],
            "lease": lease["id"],
            "credential": lease["credential_id"],
            "device": lease["device_id"],
            "features": LEASE.field("features").column_to_api(lease["features"]),
            "entitlements": [e.as_json() for e in terms.entitlements],
            "terms": terms.terms,
            "iat": now // 1_000_000,
            "exp": lease["expires_at"] // 1_000_000,
            "heartbeat_interval": _option(licensed.options, "heartbeat_interval_seconds"),
            "renewal": lease["renewals"],
        },
    )


def _day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


def peak_use(leases: list[Row], first: date, last: date, now: int) -> list[dict[str, Any]]:
    """For each UTC day from ``first`` to ``last``: the most of ``leases`` held at one moment, and how many
    started. A lease is held from its check-out until it ended, ran out, or ``now``; where one ends as another
    starts (a take-over), the two are not counted together."""
    changes: list[tuple[int, int]] = []  # (time, +1 start / -1 end); ends sort before starts at one time
    for lease in leases:
        ended = lease["ended_at"] if lease["ended_at"] is not None else min(lease["expires_at"], now)
        if ended > lease["created_at"]:
            changes += [(lease["created_at"], 1), (ended, -1)]
    changes.sort()
    days, held, position = [], 0, 0
    day = first
    while day <= last:
        start, end = _day_start(day), _day_start(day + timedelta(days=1))
        while position < len(changes) and changes[position][0] < start:
            held += changes[position][1]
            position += 1
        # What was held just before the day counts only if nothing changes at its first moment (a lease that
        # ended at midnight was not held that day); a moment's changes count together, never one by one.
        peak = held if position == len(changes) or changes[position][0] > start else 0
        started = 0
        while position < len(changes) and changes[position][0] < end:
            moment = changes[position][0]
            while position < len(changes) and changes[position][0] == moment:
                held += changes[position][1]
                started += changes[position][1] == 1
                position += 1
            peak = max(peak, held)
        days.append({"date": day.isoformat(), "peak": peak, "checkouts": started})
        day += timedelta(days=1)
    return days


async def read_published_keys(request: web.Request, tenant_id: str) -> None:
    """Keep the tenant's public keys on the request for its credential file (read before the transaction)."""
    request[PUBLISHED_KEYS] = await public_keys(request.app[app_keys.STORE], tenant_id)
