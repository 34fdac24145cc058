"""Leases of a license's seats, counted on the server: check-out, renewal by heartbeat, release, and usage.

Seats are counted under the license's row lock, after marking the leases that ran out as expired
(:meth:`licensor.store.Transaction.expire_leases`): expiry needs no background job and cannot race a check-out.
Every heartbeat hands the device a new lease secret and forgets the old one, so a copy of a virtual machine that
presents an older secret is told ``LEASE_TAKEN_OVER`` and never holds a seat besides the original's. Lock order,
to rule out deadlocks: license, then credential, then lease.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from licensor import (
    CheckRequest,
    Code,
    InvalidStateError,
    Licensed,
    NotFoundError,
    RequestRefusedError,
    TokenKind,
    ValidationError,
    license_terms_verdict,
    licensed_in,
)
from licensor.model import CREDENTIAL, LEASE, LICENSE, POLICY, new_id
from licensor.store import Row, Store, Transaction
from licensor.tokens import sign_document

from licensor_cloud.credentials import DeviceCall, new_secret, refuse_revoked, same_secret
from licensor_cloud.presenters import shown_lease

MAX_REPORTED_LEASES = 100_000
"""The most leases one usage report reads; a longer range is refused (narrow it)."""


class Cloud(Protocol):
    """What the lease logic needs of the backend: the gateway's clock (µs) and its policies' options, each
    falling back on the backend's default."""

    @property
    def clock(self) -> Callable[[], int]: ...

    def option(self, options: Mapping[str, Any], name: str) -> Any: ...


def lease_secret_hash(secret: str) -> str:
    return hashlib.sha256(b"licensor.lease.v1\x00" + secret.encode()).hexdigest()


# --- a device's requests ----------------------------------------------------------------------------------
async def check_out(cloud: Cloud, tx: Transaction, device: DeviceCall, body: dict[str, Any]) -> dict[str, Any]:
    """A new lease of a seat for the device; the device's own earlier lease, if it holds one, is taken over
    (it restarted, or a copy of it asks), so one device never holds two seats of a license.

    :raises RequestRefusedError: CREDENTIAL_REVOKED, the license's verdict code, SEAT_LIMIT_REACHED."""
    license = await tx.get(LICENSE, device.credential["license_id"], for_update=True)  # serialises the seat count
    credential = await tx.get(CREDENTIAL, device.credential["id"], for_update=True)  # a revocation waits for this
    assert license is not None and credential is not None
    refuse_revoked(credential)
    licensed = await licensed_in(tx, license)
    now = cloud.clock()
    features = tuple(body.get("features", ()))
    _refuse_unless_allowed(licensed, tx.tenant_id, features, now)
    seats = licensed.seats
    held = await tx.expire_leases(license["id"], now)
    lease_id = new_id("lse")
    replaced = [row for row in held if row["device_id"] == body["device_id"]]
    if not replaced and len(held) >= seats:
        if cloud.option(licensed.options, "on_seat_limit") != "take_over":
            raise RequestRefusedError(Code.SEAT_LIMIT_REACHED, f"every seat of the license is leased ({seats} in all)")
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
            "expires_at": _lease_end(cloud, licensed, now),
            "renewed_at": None,
            "renewals": 0,
            "ended_at": None,
            "taken_over_by": None,
            "created_at": now,
            "updated_at": now,
        },
    )
    await _event(tx, "lease.checked_out", lease, f"credential:{credential['id']}", now)
    return _granted(cloud, device, licensed, lease, secret, now)


async def renew(cloud: Cloud, tx: Transaction, device: DeviceCall, body: dict[str, Any]) -> dict[str, Any]:
    """Renew the lease for another TTL, with a new secret; the old secret stops working.

    :raises RequestRefusedError: as :func:`_held_lease`, or the license's verdict code."""
    lease, licensed, now = await _held_lease(cloud, tx, device, body)
    _refuse_unless_allowed(licensed, tx.tenant_id, tuple(LEASE.field("features").column_to_api(lease["features"])), now)
    secret = new_secret()
    renewed = await tx.update(
        LEASE,
        lease["id"],
        {
            "secret_hash": lease_secret_hash(secret),
            "expires_at": _lease_end(cloud, licensed, now),
            "renewed_at": now,
            "renewals": lease["renewals"] + 1,
        },
    )
    assert renewed is not None
    await _event(tx, "lease.renewed", renewed, f"credential:{device.credential['id']}", now)
    return _granted(cloud, device, licensed, renewed, secret, now)


async def release(cloud: Cloud, tx: Transaction, device: DeviceCall, body: dict[str, Any]) -> dict[str, Any]:
    """Give the seat back now; a lease that ended already is answered as it stands.

    :raises RequestRefusedError: as :func:`_own_lease`."""
    lease = await _own_lease(tx, device, body)
    now = cloud.clock()
    if lease["state"] == "active" and lease["expires_at"] > now:
        released = await tx.update(LEASE, lease["id"], {"state": "released", "ended_at": now})
        assert released is not None
        await _event(tx, "lease.released", released, f"credential:{device.credential['id']}", now)
        lease = released
    return {"object": "lease", "lease": shown_lease(lease, now)}


async def _own_lease(tx: Transaction, device: DeviceCall, body: dict[str, Any]) -> Row:
    """The lease the request names, locked, if the request holds its newest secret.

    :raises RequestRefusedError: 404 LEASE_NOT_FOUND, LEASE_TAKEN_OVER."""
    lease = await tx.get(LEASE, body["lease"], for_update=True)
    if lease is None or lease["credential_id"] != device.credential["id"]:
        raise RequestRefusedError("LEASE_NOT_FOUND", "no such lease of this credential", 404)
    if not same_secret(lease["secret_hash"], lease_secret_hash(body["lease_secret"])):
        raise RequestRefusedError(
            Code.LEASE_TAKEN_OVER,
            "the lease was renewed by another copy of this device: the secret presented is not its newest",
        )
    return lease


async def _held_lease(cloud: Cloud, tx: Transaction, device: DeviceCall, body: dict[str, Any]) -> tuple[Row, Licensed, int]:
    """The request's lease if it still holds its seat, the license's context, and the time it was read at.

    :raises RequestRefusedError: as :func:`_own_lease`, CREDENTIAL_REVOKED, LEASE_TAKEN_OVER, LEASE_RELEASED,
        LEASE_EXPIRED, LEASE_ENDED (or the license's code, when the lease ended with its license)."""
    lease = await _own_lease(tx, device, body)
    credential = await tx.get(CREDENTIAL, device.credential["id"])
    assert credential is not None
    refuse_revoked(credential)
    now = cloud.clock()
    if lease["state"] == "taken_over":
        raise RequestRefusedError(Code.LEASE_TAKEN_OVER, "another device took the seat over")
    if lease["state"] == "released":
        raise RequestRefusedError("LEASE_RELEASED", "the lease was released; check out a new one")
    if lease["state"] == "expired" or (lease["state"] == "active" and lease["expires_at"] <= now):
        raise RequestRefusedError(
            Code.LEASE_EXPIRED, "the lease was not renewed in time and its seat went back; check out a new one"
        )
    license = await tx.get(LICENSE, lease["license_id"])
    assert license is not None
    licensed = await licensed_in(tx, license)
    if lease["state"] == "revoked":  # ended with its license (told the license's code), or by the vendor
        _refuse_unless_allowed(licensed, tx.tenant_id, (), now)
        raise RequestRefusedError("LEASE_ENDED", "the vendor ended the lease; check out a new one")
    return lease, licensed, now


def _granted(cloud: Cloud, device: DeviceCall, licensed: Licensed, lease: Row, secret: str, now: int) -> dict[str, Any]:
    heartbeat_interval = cloud.option(licensed.options, "heartbeat_interval_seconds")
    return {
        "object": "lease",
        "lease": shown_lease(lease, now),
        "lease_secret": secret,
        "lease_token": lease_token(device, licensed, lease, now, heartbeat_interval),
        "heartbeat_interval_seconds": heartbeat_interval,
    }


def lease_token(device: DeviceCall, licensed: Licensed, lease: Row, now: int, heartbeat_interval: int) -> str:
    """The lease token of a lease as it stands (times in seconds), signed with the tenant's key."""
    terms = licensed.terms
    return sign_document(
        TokenKind.LEASE,
        device.signing_kid,
        device.signing_seed,
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
            "heartbeat_interval": heartbeat_interval,
            "renewal": lease["renewals"],
        },
    )


def _lease_end(cloud: Cloud, licensed: Licensed, now: int) -> int:
    """When a lease taken or renewed at ``now`` runs out: a TTL later, but never after the license's expiry."""
    end = now + int(cloud.option(licensed.options, "lease_ttl_seconds")) * 1_000_000
    expires = licensed.license["expires_at"]
    return end if expires is None else min(end, expires)


def _refuse_unless_allowed(licensed: Licensed, tenant_id: str, features: tuple[str, ...], now: int) -> None:
    """:raises RequestRefusedError: 403 with the license's verdict code, unless the license is valid now."""
    verdict = license_terms_verdict(CheckRequest.of(tenant_id, licensed, now, features=features))
    if not verdict.valid:
        raise RequestRefusedError(verdict.code, f"the license allows no lease: {verdict.as_json()['message']}", 403)


async def _event(tx: Transaction, kind: str, lease: Row, actor: str, now: int, **extra: Any) -> None:
    await tx.append_event(kind, "lease", lease["id"], actor, {**shown_lease(lease, now), **extra})


# --- the vendor's changes ---------------------------------------------------------------------------------
async def end_lease(cloud: Cloud, tx: Transaction, lease_id: str, reason: str | None, actor: str) -> Row:
    """The vendor frees a seat: the lease ends now and its holder's next heartbeat is told LEASE_ENDED.

    :raises NotFoundError: LEASE_NOT_FOUND.
    :raises InvalidStateError: LEASE_ENDED, the lease ended already."""
    lease = await tx.get(LEASE, lease_id, for_update=True)
    now = cloud.clock()
    if lease is None:
        raise NotFoundError("no such lease", code="LEASE_NOT_FOUND")
    if lease["state"] != "active" or lease["expires_at"] <= now:
        raise InvalidStateError("the lease has ended already", code="LEASE_ENDED")
    ended = await tx.update(LEASE, lease_id, {"state": "revoked", "ended_at": now})
    assert ended is not None
    await _event(tx, "lease.revoked", ended, actor, now, reason=reason or "ended by the vendor")
    return ended


async def end_license_leases(tx: Transaction, license_id: str, now: int) -> None:
    """A revoked license's leases end with it."""
    for ended in await tx.end_leases(now, "revoked", license_id=license_id):
        await _event(tx, "lease.revoked", ended, "system", now, reason="the license was revoked")


# --- usage ------------------------------------------------------------------------------------------------
async def usage(cloud: Cloud, store: Store, tenant_id: str, license: Row, first: date, last: date) -> dict[str, Any]:
    """Per UTC day from ``first`` to ``last``: the most leases held at once, and the leases started.

    :raises ValidationError: RANGE_TOO_LARGE, more than :data:`MAX_REPORTED_LEASES` leases in the range."""
    start = _day_start(first)
    end = min(_day_start(last + timedelta(days=1)), max(cloud.clock(), start))
    rows = await store.leases_overlapping(tenant_id, license["id"], start, end, MAX_REPORTED_LEASES + 1)
    if len(rows) > MAX_REPORTED_LEASES:
        raise ValidationError(
            f"more than {MAX_REPORTED_LEASES} leases fall in the range: ask for fewer days", code="RANGE_TOO_LARGE"
        )
    now = cloud.clock()
    days = peak_use(rows, first, last, now)
    policy = await store.get(tenant_id, POLICY, license["policy_id"])
    assert policy is not None
    return {"object": "lease_usage", "license_id": license["id"], "seats": policy["seats"], "days": days}


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
