"""Activations: binding a license's seats to devices, renewing their files at check-ins, ending and moving them.

Seats are claimed under the license's row lock, and a device's generation counter under its activation's, so
concurrent requests never count a seat twice. Every outcome that changes or flags an activation writes its event
in the same transaction.

A seat is held by an active or suspended activation, and by a withdrawn one (removed by the vendor) until its
last license file lapses; a replaced one (moved to another device by a recovery) has handed its seat over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from licensor import (
    CheckRequest,
    Code,
    InvalidStateError,
    Licensed,
    NotFoundError,
    Reply,
    RequestRefusedError,
    ValidationError,
    license_terms_verdict,
    licensed_in,
)
from licensor.fingerprint import FingerprintIndex, MatchRule, match_rule
from licensor.model import ACTIVATION, LICENSE, new_id
from licensor.store import Row, Transaction
from licensor_client.activation import device_public_key
from licensor_client.codec import verify
from licensor_client.receipts import ReceiptError, read_receipt, receipt_message

from licensor_activation.device_requests import DAY_S, DeviceRequest
from licensor_activation.presenters import ended, issued, license_file, shown

MATCHED_STATES = ("active", "suspended")
"""The activations a device's fingerprint is matched against, best first on a tie: those that bind a device."""


class Settings(Protocol):
    """What the activation logic reads of its backend at each request: the gateway's clock (µs) and its
    policies' options, with the backend's defaults."""

    @property
    def clock(self) -> Callable[[], int]: ...

    def option(self, options: Mapping[str, Any], name: str) -> Any: ...

    def count_churn(self, tenant_id: str, license_id: str) -> None: ...


# --- matching ------------------------------------------------------------------------------------------------
def rule_of(settings: Settings, options: Mapping[str, Any]) -> MatchRule:
    """When a presented fingerprint is the same device, by the policy's options."""
    return match_rule(settings.option(options, "match_preset"), options.get("match_threshold"), options.get("component_weights"))


def best_match(rows: list[Row], presented: dict[str, str], rule: MatchRule, states: tuple[str, ...]) -> Row | None:
    """The activation in ``states`` whose fingerprint the presented one matches best, if any reaches the rule's
    threshold (the core's index; on a tie, the activation in the earlier state of ``states``, then the older)."""
    best = None
    for state in states:
        index = FingerprintIndex(rule.weights)
        for row in rows:
            if row["state"] == state:
                index.add(row["id"], ACTIVATION.field("fingerprint").column_to_api(row["fingerprint"]))
        if len(index):
            found = index.best_match(presented, rule.threshold)
            if found is not None and (best is None or found[1] > best[1]):
                best = found
    return None if best is None else next(row for row in rows if row["id"] == best[0])


def flag_code(row: Row) -> Code:
    """The verdict code a suspended activation is refused with: what it was suspended for."""
    return Code.CLONE_SUSPECTED if row["flagged"] == "clone" else Code.ROLLBACK_DETECTED


# --- the device's changes ------------------------------------------------------------------------------------
async def activate(settings: Settings, tx: Transaction, read: DeviceRequest, mode: str) -> Reply:
    """Activate the device, for ``activate`` and ``recover`` requests; a recovery replaces the device's own
    activation (it lost its file or its key) or, when every seat is taken, the named or longest silent one."""
    document = read.document
    assert read.licensed is not None
    # The license's row lock serialises every seat claim of this license until commit.
    license = await tx.get(LICENSE, read.licensed.id, for_update=True)
    assert license is not None
    licensed = await licensed_in(tx, license)
    now = settings.clock()
    verdict = license_terms_verdict(CheckRequest.of(tx.tenant_id, licensed, now))
    if not verdict.valid:
        raise RequestRefusedError(verdict.code, f"the license does not allow activations: {verdict.as_json()['message']}", 403)
    options, rule, seats = licensed.options, rule_of(settings, licensed.options), licensed.seats
    since = now - settings.option(options, "recovery_period_days") * DAY_S * 1_000_000
    rows = await tx.license_activations(license["id"], now, since)
    holding = [row for row in rows if row["state"] != "replaced"]
    made = next((row for row in holding if row["state"] == "active" and row["last_request_digest"] == read.digest), None)
    if made is not None:  # a retry of the request that made this activation (its answer may have been lost)
        return _issued(200, read, licensed, made, rule, now)
    if not any(rule.weights.get(name, 1.0) for name in document["fingerprint"]):
        raise ValidationError(
            "the fingerprint has no component this policy gives a weight: it would never match", code="INVALID_DEVICE_REQUEST"
        )
    same = best_match(holding, document["fingerprint"], rule, MATCHED_STATES)
    if same is not None and same["state"] == "suspended":
        raise RequestRefusedError(flag_code(same), "the device's activation is suspended until the vendor reinstates it", 409)
    if same is not None and document["op"] == "activate":
        if (
            same["device_key"] == document["device_key"]
            and same["generation"] == 1
            and same["last_checkin_at"] == same["created_at"]
        ):
            return _issued(200, read, licensed, same, rule, now)  # a retry: the answer may have been lost
        raise RequestRefusedError(
            "ALREADY_ACTIVATED",
            "this device is activated already: it checks in with its license "
            "file, or, having lost its file or key, recovers (POST /v1/activations/recover)",
            409,
        )
    replaced = same
    if replaced is None and len(holding) >= seats:
        if document["op"] != "recover":
            raise RequestRefusedError(Code.SEAT_LIMIT_REACHED, f"all {seats} seats of the license are in use", 409)
        replaced = _recovery_target(holding, document.get("withdraw"))
    if replaced is not None:
        used, allowed = sum(1 for row in rows if row["state"] == "replaced"), settings.option(options, "recoveries_per_period")
        if used >= allowed:
            recoveries = f"{allowed} recover{'y' if allowed == 1 else 'ies'}"
            period = settings.option(options, "recovery_period_days")
            raise RequestRefusedError(
                "RECOVERY_LIMIT_REACHED", f"the license allows {recoveries} per {period} days, and they are used", 409
            )
        handed_over = await tx.update(ACTIVATION, replaced["id"], {"state": "replaced", "ended_at": now})
        assert handed_over is not None
        await tx.update(LICENSE, handed_over["license_id"], {})  # a new generation: the devices are pushed an update
        await _event(tx, "activation.replaced", handed_over, read.actor, reason="recovery")
    # A device coming (not a retry, not a refused one); refused here, the transaction's writes are undone.
    settings.count_churn(tx.tenant_id, license["id"])
    row = await tx.insert(
        ACTIVATION,
        {
            "id": new_id(ACTIVATION.id_prefix),
            "license_id": license["id"],
            "state": "active",
            "device_key": document["device_key"],
            "device_name": document.get("device_name"),
            "fingerprint": ACTIVATION.field("fingerprint").api_to_column(document["fingerprint"]),
            "generation": 1,
            "mode": mode,
            **_checkpoint(settings, options, mode, now),
            "last_checkin_at": now,
            "last_request_digest": read.digest,
            "recovery_of": replaced["id"] if replaced else None,
            "flagged": None,
            "ended_at": None,
            "created_at": now,
            "updated_at": now,
        },
    )
    if replaced is not None:
        await _event(tx, "activation.recovered", row, read.actor, replaced=replaced["id"])
    else:
        await _event(tx, "activation.created", row, read.actor)
    return _issued(201, read, licensed, row, rule, now)


async def check_in(settings: Settings, tx: Transaction, read: DeviceRequest, mode: str) -> Reply:
    """Renew the device's license file (generation + 1), or refuse a stale, ended or changed device."""
    found = await _device_activation(settings, tx, read)
    if isinstance(found, Reply):
        return found
    row, licensed = found
    document, now = read.document, settings.clock()
    rule = rule_of(settings, licensed.options)
    verdict = license_terms_verdict(CheckRequest.of(tx.tenant_id, licensed, now))
    if not verdict.valid:
        raise RequestRefusedError(verdict.code, verdict.as_json()["message"], 403)
    if read.digest == row["last_request_digest"]:  # a retry of the check-in that made the current file
        return _issued(200, read, licensed, row, rule, now)
    if not rule.matches(row["fingerprint_map"], document["fingerprint"]):
        raise RequestRefusedError(Code.FINGERPRINT_MISMATCH, "the device changed beyond the tolerance of its activation", 403)
    renewed = await tx.update(
        ACTIVATION,
        row["id"],
        {
            "generation": row["generation"] + 1,
            "mode": mode,
            "last_checkin_at": now,
            "flagged": None,
            "fingerprint": ACTIVATION.field("fingerprint").api_to_column(document["fingerprint"]),
            "last_request_digest": read.digest,
            **_checkpoint(settings, licensed.options, mode, now),
        },
    )
    assert renewed is not None
    await _event(tx, "activation.checked_in", renewed, read.actor)
    return _issued(200, read, licensed, renewed, rule, now)


async def deactivate(settings: Settings, tx: Transaction, read: DeviceRequest) -> Reply:
    """End the device's activation at once: its seat is free, its license file dead."""
    found = await _device_activation(settings, tx, read)
    if isinstance(found, Reply):
        return found
    row, _ = found
    if row["state"] == "deactivated":  # a retry of this deactivation
        return ended(row)
    settings.count_churn(tx.tenant_id, row["license_id"])
    deactivated = await tx.update(
        ACTIVATION, row["id"], {"state": "deactivated", "ended_at": settings.clock(), "last_request_digest": read.digest}
    )
    assert deactivated is not None
    await _event(tx, "activation.deactivated", deactivated, read.actor)
    return ended(deactivated)


async def _device_activation(settings: Settings, tx: Transaction, read: DeviceRequest) -> tuple[Row, Licensed] | Reply:
    """The activation a check-in or deactivation names, locked, if this device may act on it now; a stale copy
    gets a refusal that is recorded (and per policy suspends the activation), so it is answered, not raised.

    :raises RequestRefusedError: an unknown activation, another device's, an ended or suspended one.
    """
    document = read.document
    row = await tx.get(ACTIVATION, document["activation"], for_update=True)
    license = None if row is None else await tx.get(LICENSE, row["license_id"])
    licensed = None if license is None else await licensed_in(tx, license)
    if row is None or licensed is None or licensed.product["code"] != document["product"]:
        raise RequestRefusedError("ACTIVATION_NOT_FOUND", "no such activation of this product", 404)
    # Only the activation's own key may act on it: anyone else could flag or suspend it otherwise.
    if document["device_key"] != row["device_key"]:
        raise RequestRefusedError("DEVICE_KEY_MISMATCH", "the request is signed by another device than the activation's", 403)
    row = {**row, "fingerprint_map": ACTIVATION.field("fingerprint").column_to_api(row["fingerprint"])}
    if read.digest == row["last_request_digest"] and row["state"] in ("active", "deactivated"):
        return row, licensed  # a retry of the request that made the activation what it is
    if row["state"] in ("withdrawn", "replaced", "deactivated"):
        how = {"withdrawn": "removed by the vendor", "replaced": "moved to another device", "deactivated": "deactivated"}
        raise RequestRefusedError(
            Code.WITHDRAWN, f"the activation was {how[row['state']]}; this device's license file is no longer renewed", 403
        )
    if row["state"] == "suspended":
        raise RequestRefusedError(flag_code(row), "the activation is suspended until the vendor reinstates it", 409)
    if read.late:
        raise ValidationError(
            "the device request is too old; only a retry of the last check-in may be resent later", code="DEVICE_CLOCK_SKEW"
        )
    if document["generation"] > row["generation"]:
        raise RequestRefusedError("GENERATION_AHEAD", "the request names a generation this activation never had", 422)
    if document["generation"] < row["generation"]:
        return await _stale(settings, tx, row, read, licensed)
    return row, licensed


async def _stale(settings: Settings, tx: Transaction, row: Row, read: DeviceRequest, licensed: Licensed) -> Reply:
    """A request of the activation's key from an older state than the newest file: another machine holding a
    copy (another fingerprint than the newest check-in's), or this machine reverted to a snapshot (the server
    cannot tell an exact copy of the machine from that). Recorded; per policy, suspends the activation."""
    document = read.document
    clone = document["fingerprint"] != row["fingerprint_map"]
    code = Code.CLONE_SUSPECTED if clone else Code.ROLLBACK_DETECTED
    changes: dict[str, Any] = {"flagged": "clone" if clone else "rollback"}
    if settings.option(licensed.options, "on_clone") == "suspend":
        changes["state"] = "suspended"
    flagged = await tx.update(ACTIVATION, row["id"], changes)
    assert flagged is not None
    await _event(
        tx,
        "activation.clone_suspected" if clone else "activation.rollback_detected",
        flagged,
        read.actor,
        presented_generation=document["generation"],
        presented_fingerprint=document["fingerprint"],
        suspended=changes.get("state") == "suspended",
    )
    what = (
        "a copy of this machine holds a newer license file"
        if clone
        else "the device presented an older license file (a reverted snapshot)"
    )
    # Answered, not raised: the refusal commits with the flag and its event, and a retry replays it.
    return Reply(409, {"error": {"code": code.value, "message": what}})


def _checkpoint(settings: Settings, options: Mapping[str, Any], mode: str, now: int) -> dict[str, int]:
    interval = settings.option(options, "offline_file_lifetime_seconds" if mode == "offline" else "checkpoint_interval_seconds")
    checkpoint = now + interval * 1_000_000
    return {
        "checkpoint_at": checkpoint,
        "lapses_at": checkpoint + settings.option(options, "checkpoint_grace_seconds") * 1_000_000,
    }


def _issued(status: int, read: DeviceRequest, licensed: Licensed, row: Row, rule: MatchRule, now: int) -> Reply:
    kid, seed = read.signing_key
    return issued(status, row, license_file(kid, seed, read.tenant_id, licensed, row, rule, now))


def _recovery_target(holding: list[Row], named: str | None) -> Row:
    """The activation a recovery on a new device replaces: the named one, or the active one not heard from longest."""
    active = [row for row in holding if row["state"] == "active"]
    if named is not None:
        target = next((row for row in active if row["id"] == named), None)
        if target is None:
            raise RequestRefusedError("ACTIVATION_NOT_FOUND", "the license has no active activation with that id", 404)
        return target
    if not active:
        raise RequestRefusedError(Code.SEAT_LIMIT_REACHED, "every seat is held by an activation that cannot be replaced", 409)
    return min(active, key=lambda row: (row["last_checkin_at"] or row["created_at"], row["id"]))


# --- the vendor's changes ------------------------------------------------------------------------------------
async def withdraw(settings: Settings, tx: Transaction, activation_id: str, reason: str | None, actor: str) -> Row:
    """Remove a device: its file is no longer renewed, and its seat comes back when the file lapses."""
    row = await tx.get(ACTIVATION, activation_id, for_update=True)
    if row is None:
        raise NotFoundError("no such activation", code="ACTIVATION_NOT_FOUND")
    if row["state"] not in ("active", "suspended"):
        raise InvalidStateError(f"the activation is {row['state']} already", code="ACTIVATION_ENDED")
    withdrawn = await tx.update(ACTIVATION, activation_id, {"state": "withdrawn", "ended_at": settings.clock()})
    assert withdrawn is not None
    await tx.update(LICENSE, withdrawn["license_id"], {})  # a new generation: the devices are pushed an update
    await _event(tx, "activation.withdrawn", withdrawn, actor, reason=reason or "removed by the vendor")
    return withdrawn


async def deactivate_by_receipt(settings: Settings, tx: Transaction, receipt: str, actor: str) -> Row:
    """End an offline device's activation at once, on the receipt it signed with its key (its file deleted)."""
    try:
        content = read_receipt(receipt)
    except ReceiptError as error:
        raise ValidationError(error.message, code=error.code) from None
    row = await tx.get(ACTIVATION, content.activation_id, for_update=True)
    if row is None:
        raise NotFoundError("no such activation", code="ACTIVATION_NOT_FOUND")
    device_key = device_public_key(row["device_key"])
    message = receipt_message(tx.tenant_id, content.activation_id, content.generation)
    if device_key is None or not verify(device_key, message, content.signature):
        raise ValidationError("the receipt is not signed by this activation's device (or has a typo)", code="RECEIPT_INVALID")
    if row["state"] == "deactivated":
        return row  # entered twice
    if content.generation != row["generation"]:
        raise RequestRefusedError(
            "RECEIPT_STALE", "the receipt names an older license file than the device's newest (a reverted snapshot?)", 409
        )
    if row["state"] not in ("active", "suspended"):
        raise InvalidStateError(f"the activation is {row['state']} already", code="ACTIVATION_ENDED")
    settings.count_churn(tx.tenant_id, row["license_id"])
    ended = await tx.update(ACTIVATION, row["id"], {"state": "deactivated", "ended_at": settings.clock()})
    assert ended is not None
    await _event(tx, "activation.deactivated", ended, actor, reason="offline receipt")
    return ended


async def reinstate(settings: Settings, tx: Transaction, activation_id: str, actor: str) -> Row:
    """Undo a suspension (after a clone or rollback) or a removal by the vendor; a removed activation whose
    file has lapsed takes a seat again, so it needs a free one."""
    row = await tx.get(ACTIVATION, activation_id)
    if row is None:
        raise NotFoundError("no such activation", code="ACTIVATION_NOT_FOUND")
    if row["state"] not in ("suspended", "withdrawn"):
        raise InvalidStateError(
            f"only a suspended or withdrawn activation can be reinstated; this one is {row['state']}",
            code="ACTIVATION_NOT_REINSTATABLE",
        )
    license = await tx.get(LICENSE, row["license_id"], for_update=True)  # the seat count's lock, as activating takes
    assert license is not None
    row = await tx.get(ACTIVATION, activation_id, for_update=True)
    assert row is not None
    if row["state"] not in ("suspended", "withdrawn"):  # another request reinstated it meanwhile
        raise InvalidStateError(f"the activation is {row['state']} already", code="ACTIVATION_NOT_REINSTATABLE")
    now = settings.clock()
    if row["state"] == "withdrawn" and row["lapses_at"] <= now:
        licensed = await licensed_in(tx, license)
        holding = [r for r in await tx.license_activations(license["id"], now, now) if r["state"] != "replaced"]
        if len(holding) >= licensed.seats:
            raise InvalidStateError("every seat of the license is in use", code=Code.SEAT_LIMIT_REACHED.value)
    active = await tx.update(ACTIVATION, activation_id, {"state": "active", "flagged": None, "ended_at": None})
    assert active is not None
    await _event(tx, "activation.reinstated", active, actor)
    return active


async def _event(tx: Transaction, kind: str, row: Row, actor: str, **extra: Any) -> None:
    await tx.append_event(kind, "activation", row["id"], actor, {**shown(row), **extra})
