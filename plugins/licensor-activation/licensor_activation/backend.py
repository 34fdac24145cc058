"""The activation backend: licenses bound to devices by fingerprint and device key, renewed at checkpoints.

Every device request is a ``dv1`` token signed by the device's own key (:mod:`licensor.client.activation`),
verified before any database work, in batches when requests come in bursts
(:class:`licensor.gateway.batching.SelfKeyedTokenReader`). Seats are claimed under the license's row lock, and
a device's generation counter under its activation's, so concurrent requests never count a seat twice. Every
outcome that changes or flags an activation writes its event in the same transaction.

A seat is held by an active or suspended activation, and by a withdrawn one (removed by the vendor) until its
last license file lapses; a replaced one (moved to another device by a recovery) has handed its seat over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from licensor import _impl as core
from licensor.backend import Backend, CheckRequest, LicenseTerms, license_terms_verdict
from licensor.client.activation import DEVICE_REQUEST_KIND, LICENSE_FILE_KIND
from licensor.errors import (
    AuthenticationError,
    InvalidStateError,
    LicensorError,
    NotFoundError,
    PermissionDeniedError,
    TokenError,
    ValidationError,
)
from licensor.fingerprint import FINGERPRINT_SCHEMA, PRESETS, MatchRule, match_rule
from licensor.gateway import keys as app_keys
from licensor.gateway.api import Operation, Reply
from licensor.gateway.auth import Principal
from licensor.gateway.batching import SelfKeyedTokenReader
from licensor.gateway.cache import Licensed
from licensor.model import ACTIVATION, CODE_SCHEMA, LICENSE, POLICY, PRODUCT, format_time, id_pattern, new_id, now_us
from licensor.schema import Schema
from licensor.store import Row, Transaction
from licensor.tokens import document_of, sign_document
from licensor.verdict import Code, Verdict

NAME = "activation"
DAY_S = 86_400
DEFAULT_OPTIONS: dict[str, Any] = {
    "match_preset": "medium",
    "checkpoint_interval_seconds": 30 * DAY_S,
    "checkpoint_grace_seconds": 7 * DAY_S,
    "offline_file_lifetime_seconds": 180 * DAY_S,
    "recoveries_per_period": 1,
    "recovery_period_days": 365,
    "on_clone": "refuse",
}
MAX_MATCHED = 10_000
"""The active and suspended activations of one license /v1/check matches a fingerprint against."""
DEVICE_CLOCK_SKEW_S = 300
"""How far an online device request's time may be from the gateway's."""
OFFLINE_REQUEST_MAX_AGE_S = 30 * DAY_S
"""How old an activation request file may be when the vendor answers it."""
SUPPORT_ROLES = frozenset({"admin", "developer", "support"})


class ActivationRefusedError(LicensorError):
    """A device request the license or its activation does not allow; nothing was recorded. The code is a
    verdict code (SEAT_LIMIT_REACHED, WITHDRAWN, ...) or the backend's own (ALREADY_ACTIVATED, ...)."""

    def __init__(self, code: Code | str, message: str, status: int = 403) -> None:
        super().__init__(message, code=str(code))
        self.http_status = status


@dataclass(frozen=True)
class DeviceRequest:
    """A verified device request and what the gateway resolved for it before its transaction."""

    document: dict[str, Any]
    digest: str  # of the whole token: an identical retry is recognised
    signing_kid: str
    signing_seed: bytes
    licensed: Licensed | None  # activate and recover: the license the key names
    late: bool  # a check-in older than the clock skew allows: acceptable only as a retry of the last one
    actor: str  # who the events name: the device (by its key), or the vendor's token for a request file


READ_REQUEST = web.RequestKey("licensor_activation.request", DeviceRequest)
"""Where the verified device request waits for the handler."""


class ActivationBackend(Backend):
    name = NAME
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "match_preset": {
                "enum": list(PRESETS),
                "description": "Tolerance of fingerprint changes: loose 0.5, medium 0.7, strict 0.9.",
            },
            "match_threshold": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1,
                "description": "The share of the weights that must match (overrides the preset's).",
            },
            "component_weights": {
                "type": "object",
                "maxProperties": 32,
                "propertyNames": {"pattern": "^[a-z][a-z0-9_-]{0,31}$"},
                "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1000},
                "description": (
                    "Weights of fingerprint components (added to machine_id 4, board 3, cpu 2, disk 2, mac 1, hostname 1)."
                ),
            },
            "checkpoint_interval_seconds": {
                "type": "integer",
                "minimum": 60,
                "maximum": 3650 * DAY_S,
                "description": "How long after a check-in the next checkpoint falls (default 30 days).",
            },
            "checkpoint_grace_seconds": {
                "type": "integer",
                "minimum": 0,
                "maximum": 365 * DAY_S,
                "description": "How long a file stays valid past its checkpoint (default 7 days).",
            },
            "offline_file_lifetime_seconds": {
                "type": "integer",
                "minimum": 60,
                "maximum": 3650 * DAY_S,
                "description": "The checkpoint interval of files issued offline, by request file (default 180 days).",
            },
            "recoveries_per_period": {
                "type": "integer",
                "minimum": 0,
                "maximum": 1000,
                "description": "Recoveries on a new device allowed per period (default 1).",
            },
            "recovery_period_days": {
                "type": "integer",
                "minimum": 1,
                "maximum": 3650,
                "description": "The recovery period (default 365).",
            },
            "on_clone": {
                "enum": ["refuse", "suspend"],
                "description": (
                    "On a detected clone or rollback: refuse the stale copy (default), or suspend the "
                    "activation until the vendor reinstates it."
                ),
            },
        },
        "additionalProperties": False,
    }

    def __init__(self, *, batching: bool = True, clock: Callable[[], int] = now_us) -> None:
        self.reader = SelfKeyedTokenReader(DEVICE_REQUEST_KIND, batching=batching)
        self.clock = clock  # microseconds; tests move it

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**DEFAULT_OPTIONS, **super().validate_options(options)}

    # --- /v1/check ----------------------------------------------------------------------------------------
    async def check(self, request: CheckRequest) -> Verdict:
        """The license's terms; with a fingerprint, also whether an active activation of this device holds a seat."""
        verdict = license_terms_verdict(request)
        if not verdict.valid or request.fingerprint is None or request.store is None:
            return verdict
        rows = []
        for state in ("active", "suspended"):
            filters = {"license_id": request.license["id"], "state": state}
            rows += (await request.store.list(request.tenant_id, ACTIVATION, filters, None, MAX_MATCHED)).rows
        found = _best_match(rows, request.fingerprint, rule_of(request.options), ("active", "suspended"))
        if found is None:
            return Verdict(
                Code.FINGERPRINT_MISMATCH, "no active activation of this license matches the device", verdict.license_id
            )
        if found["state"] == "suspended":
            return Verdict(
                _flag_code(found), "the device's activation is suspended until the vendor reinstates it", verdict.license_id
            )
        return Verdict(
            Code.VALID,
            verdict.message,
            verdict.license_id,
            verdict.entitlements,
            {**verdict.terms, "activation_id": found["id"], "checkpoint_at": format_time(found["checkpoint_at"])},
        )

    def operations(self) -> list[Operation]:
        from licensor_activation.routes import build_operations  # the routes call back into this class

        return build_operations(self)

    # --- device requests, verified before the transaction ------------------------------------------------
    async def read_request(
        self, request: web.Request, body: dict[str, Any], ops: tuple[str, ...], *, vendor: Principal | None = None
    ) -> DeviceRequest:
        """The verified device request of ``body["request"]``, its tenant's signing key and, to activate, its
        license (from the cache: nothing here waits on the database inside a transaction).

        :raises AuthenticationError: the request does not verify as the device's (401 DEVICE_REQUEST_INVALID).
        :raises ValidationError: a request of another operation, or a time too far off (422).
        """
        token = body["request"]
        try:
            document = document_of(await self.reader.read(token))
        except TokenError as error:
            raise AuthenticationError(
                f"the device request does not verify: {error.message}", code="DEVICE_REQUEST_INVALID"
            ) from None
        if document.get("op") in _VALIDATORS and document["op"] not in ops:
            raise ValidationError(
                f"this endpoint takes a device request of {' or '.join(ops)}, not {document['op']}", code="WRONG_DEVICE_OPERATION"
            )
        _validate_document(document, token)
        offline = vendor is not None  # a request file the vendor answers
        if vendor is not None and document["tenant"] != vendor.tenant_id:
            raise PermissionDeniedError("the device request is for another tenant", code="TENANT_MISMATCH")
        now_s = self.clock() // 1_000_000
        age = now_s - document["time"]
        late = not offline and age > DEVICE_CLOCK_SKEW_S and document["op"] == "checkin"
        if age < -DEVICE_CLOCK_SKEW_S or (age > (OFFLINE_REQUEST_MAX_AGE_S if offline else DEVICE_CLOCK_SKEW_S) and not late):
            raise ValidationError(
                f"the device request's time is {age} s away from the gateway's clock; set the device's "
                "clock" + (" or make a new request file" if offline else ""),
                code="DEVICE_CLOCK_SKEW",
            )
        cache = request.app[app_keys.CACHE]
        try:
            kid, seed = await cache.signing_key(document["tenant"])
        except LookupError:
            raise NotFoundError("no such tenant", code="TENANT_NOT_FOUND") from None
        licensed = None
        if document["op"] in ("activate", "recover"):
            licensed = await cache.license_by_key_hash(
                document["tenant"], cache.key_hash(document["tenant"], document["license_key"])
            )
            if licensed is None or licensed.product["code"] != document["product"] or licensed.policy["backend"] != NAME:
                raise NotFoundError("no activation license of this product has this key", code="LICENSE_NOT_FOUND")
        digest = hashlib.sha256(token.encode()).hexdigest()
        actor = f"token:{vendor.token_id}" if vendor is not None else device_actor(document["device_key"])
        return DeviceRequest(document, digest, kid, seed, licensed, late, actor)

    async def device_principal(self, request: web.Request, body: dict[str, Any], ops: tuple[str, ...]) -> Principal:
        read = await self.read_request(request, body, ops)
        request[READ_REQUEST] = read
        return Principal(read.document["tenant"], "device", "device", None, actor=read.actor)

    # --- the changes ------------------------------------------------------------------------------------
    async def activate(self, tx: Transaction, read: DeviceRequest, mode: str) -> Reply:
        """Activate the device, for ``activate`` and ``recover`` requests; a recovery replaces the device's own
        activation (it lost its file or its key) or, when every seat is taken, the named or longest silent one."""
        document = read.document
        assert read.licensed is not None
        # The license's row lock serialises every seat claim of this license until commit.
        license = await tx.get(LICENSE, read.licensed.license["id"], for_update=True)
        assert license is not None
        licensed = await _licensed_in(tx, license)
        now = self.clock()
        verdict = license_terms_verdict(CheckRequest(tx.tenant_id, license, licensed.policy, now_us=now))
        if not verdict.valid:
            raise ActivationRefusedError(verdict.code, f"the license does not allow activations: {verdict.as_json()['message']}")
        options, rule, seats = licensed.options, rule_of(licensed.options), licensed.terms.terms["seats"]
        since = now - _option(options, "recovery_period_days") * DAY_S * 1_000_000
        rows = await tx.license_activations(license["id"], now, since)
        holding = [row for row in rows if row["state"] != "replaced"]
        made = next((row for row in holding if row["state"] == "active" and row["last_request_digest"] == read.digest), None)
        if made is not None:  # a retry of the request that made this activation (its answer may have been lost)
            return self._issued(200, read, licensed, made, rule, now)
        if not any(rule.weights.get(name, 1.0) for name in document["fingerprint"]):
            raise ValidationError(
                "the fingerprint has no component this policy gives a weight: it would never match", code="INVALID_DEVICE_REQUEST"
            )
        same = _best_match(holding, document["fingerprint"], rule, ("active", "suspended"))
        if same is not None and same["state"] == "suspended":
            raise ActivationRefusedError(
                _flag_code(same), "the device's activation is suspended until the vendor reinstates it", 409
            )
        if same is not None and document["op"] == "activate":
            if (
                same["device_key"] == document["device_key"]
                and same["generation"] == 1
                and same["last_checkin_at"] == same["created_at"]
            ):
                return self._issued(200, read, licensed, same, rule, now)  # a retry: the answer may have been lost
            raise ActivationRefusedError(
                "ALREADY_ACTIVATED",
                "this device is activated already: it checks in with its license "
                "file, or, having lost its file or key, recovers (POST /v1/activations/recover)",
                409,
            )
        replaced = same
        if replaced is None and len(holding) >= seats:
            if document["op"] != "recover":
                raise ActivationRefusedError(Code.SEAT_LIMIT_REACHED, f"all {seats} seats of the license are in use", 409)
            replaced = _recovery_target(holding, document.get("withdraw"))
        if replaced is not None:
            used, allowed = sum(1 for row in rows if row["state"] == "replaced"), _option(options, "recoveries_per_period")
            if used >= allowed:
                recoveries = f"{allowed} recover{'y' if allowed == 1 else 'ies'}"
                raise ActivationRefusedError(
                    "RECOVERY_LIMIT_REACHED",
                    f"the license allows {recoveries} per {_option(options, 'recovery_period_days')} days, and they are used",
                    409,
                )
            ended = await tx.update(ACTIVATION, replaced["id"], {"state": "replaced", "ended_at": now})
            assert ended is not None
            await _event(tx, "activation.replaced", ended, read.actor, reason="recovery")
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
                **self._checkpoint(options, mode, now),
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
        return self._issued(201, read, licensed, row, rule, now)

    async def check_in(self, tx: Transaction, read: DeviceRequest, mode: str) -> Reply:
        """Renew the device's license file (generation + 1), or refuse a stale, ended or changed device."""
        found = await self._device_activation(tx, read)
        if isinstance(found, Reply):
            return found
        row, licensed = found
        document, now = read.document, self.clock()
        rule = rule_of(licensed.options)
        verdict = license_terms_verdict(CheckRequest(tx.tenant_id, licensed.license, licensed.policy, now_us=now))
        if not verdict.valid:
            raise ActivationRefusedError(verdict.code, verdict.as_json()["message"])
        if read.digest == row["last_request_digest"]:  # a retry of the check-in that made the current file
            return self._issued(200, read, licensed, row, rule, now)
        if not rule.matches(row["fingerprint_map"], document["fingerprint"]):
            raise ActivationRefusedError(Code.FINGERPRINT_MISMATCH, "the device changed beyond the tolerance of its activation")
        renewed = await self._renew(tx, row, document, licensed, mode, now, read.digest)
        await _event(tx, "activation.checked_in", renewed, read.actor)
        return self._issued(200, read, licensed, renewed, rule, now)

    async def deactivate(self, tx: Transaction, read: DeviceRequest) -> Reply:
        """End the device's activation at once: its seat is free, its license file dead."""
        found = await self._device_activation(tx, read)
        if isinstance(found, Reply):
            return found
        row, _ = found
        if row["state"] == "deactivated":  # a retry of this deactivation
            return Reply(200, {"object": "activation", "activation": shown(row)})
        ended = await tx.update(
            ACTIVATION, row["id"], {"state": "deactivated", "ended_at": self.clock(), "last_request_digest": read.digest}
        )
        assert ended is not None
        await _event(tx, "activation.deactivated", ended, read.actor)
        return Reply(200, {"object": "activation", "activation": shown(ended)})

    async def _device_activation(self, tx: Transaction, read: DeviceRequest) -> tuple[Row, Licensed] | Reply:
        """The activation a check-in or deactivation names, locked, if this device may act on it now; a stale copy
        gets a refusal that is recorded (and per policy suspends the activation), so it is answered, not raised.

        :raises ActivationRefusedError: an unknown activation, another device's, an ended or suspended one.
        """
        document = read.document
        row = await tx.get(ACTIVATION, document["activation"], for_update=True)
        license = None if row is None else await tx.get(LICENSE, row["license_id"])
        licensed = None if license is None else await _licensed_in(tx, license)
        if row is None or licensed is None or licensed.product["code"] != document["product"]:
            raise ActivationRefusedError("ACTIVATION_NOT_FOUND", "no such activation of this product", 404)
        # Only the activation's own key may act on it: anyone else could flag or suspend it otherwise.
        if document["device_key"] != row["device_key"]:
            raise ActivationRefusedError("DEVICE_KEY_MISMATCH", "the request is signed by another device than the activation's")
        row = {**row, "fingerprint_map": ACTIVATION.field("fingerprint").column_to_api(row["fingerprint"])}
        if read.digest == row["last_request_digest"] and row["state"] in ("active", "deactivated"):
            return row, licensed  # a retry of the request that made the activation what it is
        if row["state"] in ("withdrawn", "replaced", "deactivated"):
            how = {"withdrawn": "removed by the vendor", "replaced": "moved to another device", "deactivated": "deactivated"}
            raise ActivationRefusedError(
                Code.WITHDRAWN, f"the activation was {how[row['state']]}; this device's license file is no longer renewed"
            )
        if row["state"] == "suspended":
            raise ActivationRefusedError(_flag_code(row), "the activation is suspended until the vendor reinstates it", 409)
        if read.late:
            raise ValidationError(
                "the device request is too old; only a retry of the last check-in may be resent later", code="DEVICE_CLOCK_SKEW"
            )
        if document["generation"] > row["generation"]:
            raise ActivationRefusedError("GENERATION_AHEAD", "the request names a generation this activation never had", 422)
        if document["generation"] < row["generation"]:
            return await self._stale(tx, row, read, licensed)
        return row, licensed

    async def _stale(self, tx: Transaction, row: Row, read: DeviceRequest, licensed: Licensed) -> Reply:
        """A request of the activation's key from an older state than the newest file: another machine holding a
        copy (another fingerprint than the newest check-in's), or this machine reverted to a snapshot (the server
        cannot tell an exact copy of the machine from that). Recorded; per policy, suspends the activation."""
        document = read.document
        clone = document["fingerprint"] != row["fingerprint_map"]
        code = Code.CLONE_SUSPECTED if clone else Code.ROLLBACK_DETECTED
        changes: dict[str, Any] = {"flagged": "clone" if clone else "rollback"}
        if _option(licensed.options, "on_clone") == "suspend":
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
        return Reply(409, {"error": {"code": code.value, "message": what}})

    async def _renew(
        self, tx: Transaction, row: Row, document: dict[str, Any], licensed: Licensed, mode: str, now: int, digest: str
    ) -> Row:
        renewed = await tx.update(
            ACTIVATION,
            row["id"],
            {
                "generation": row["generation"] + 1,
                "mode": mode,
                "last_checkin_at": now,
                "flagged": None,
                "fingerprint": ACTIVATION.field("fingerprint").api_to_column(document["fingerprint"]),
                "last_request_digest": digest,
                **self._checkpoint(licensed.options, mode, now),
            },
        )
        assert renewed is not None
        return renewed

    @staticmethod
    def _checkpoint(options: dict[str, Any], mode: str, now: int) -> dict[str, int]:
        interval = _option(options, "offline_file_lifetime_seconds" if mode == "offline" else "checkpoint_interval_seconds")
        checkpoint = now + interval * 1_000_000
        return {"checkpoint_at": checkpoint, "lapses_at": checkpoint + _option(options, "checkpoint_grace_seconds") * 1_000_000}

    def _issued(self, status: int, read: DeviceRequest, licensed: Licensed, row: Row, rule: MatchRule, now: int) -> Reply:
        file = license_file(read.signing_kid, read.signing_seed, read.document["tenant"], licensed, row, rule, now)
        return Reply(status, {"object": "license_file", "activation": shown(row), "license_file": file})

    # --- the vendor's changes -----------------------------------------------------------------------------
    async def withdraw(self, tx: Transaction, activation_id: str, reason: str | None, actor: str) -> Row:
        row = await tx.get(ACTIVATION, activation_id, for_update=True)
        if row is None:
            raise NotFoundError("no such activation", code="ACTIVATION_NOT_FOUND")
        if row["state"] not in ("active", "suspended"):
            raise InvalidStateError(f"the activation is {row['state']} already", code="ACTIVATION_ENDED")
        ended = await tx.update(ACTIVATION, activation_id, {"state": "withdrawn", "ended_at": self.clock()})
        assert ended is not None
        await _event(tx, "activation.withdrawn", ended, actor, reason=reason or "removed by the vendor")
        return ended

    async def reinstate(self, tx: Transaction, activation_id: str, actor: str) -> Row:
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
        now = self.clock()
        if row["state"] == "withdrawn" and row["lapses_at"] <= now:
            licensed = await _licensed_in(tx, license)
            holding = [r for r in await tx.license_activations(license["id"], now, now) if r["state"] != "replaced"]
            if len(holding) >= licensed.terms.terms["seats"]:
                raise InvalidStateError("every seat of the license is in use", code=Code.SEAT_LIMIT_REACHED.value)
        active = await tx.update(ACTIVATION, activation_id, {"state": "active", "flagged": None, "ended_at": None})
        assert active is not None
        await _event(tx, "activation.reinstated", active, actor)
        return active


# --- helpers ------------------------------------------------------------------------------------------------
def _option(options: dict[str, Any], name: str) -> Any:
    return options.get(name, DEFAULT_OPTIONS[name])


def rule_of(options: dict[str, Any]) -> MatchRule:
    return match_rule(_option(options, "match_preset"), options.get("match_threshold"), options.get("component_weights"))


def _best_match(rows: list[Row], presented: dict[str, str], rule: MatchRule, states: tuple[str, ...]) -> Row | None:
    """The activation in ``states`` whose fingerprint the presented one matches best, if any reaches the rule's
    threshold (the core's index; on a tie, the activation in the earlier state of ``states``, then the older)."""
    best = None
    for state in states:
        index = core.FingerprintIndex(rule.weights)
        for row in rows:
            if row["state"] == state:
                index.add(row["id"], ACTIVATION.field("fingerprint").column_to_api(row["fingerprint"]))
        if len(index):
            found = index.best_match(presented, rule.threshold)
            if found is not None and (best is None or found[1] > best[1]):
                best = found
    return None if best is None else next(row for row in rows if row["id"] == best[0])


def device_actor(device_key: str) -> str:
    """How events name a device: by the start of its public key."""
    return f"device:{device_key[:16]}"


async def _event(tx: Transaction, kind: str, row: Row, actor: str, **extra: Any) -> None:
    await tx.append_event(kind, "activation", row["id"], actor, {**shown(row), **extra})


def _recovery_target(holding: list[Row], named: str | None) -> Row:
    """The activation a recovery on a new device replaces: the named one, or the active one not heard from longest."""
    active = [row for row in holding if row["state"] == "active"]
    if named is not None:
        target = next((row for row in active if row["id"] == named), None)
        if target is None:
            raise ActivationRefusedError("ACTIVATION_NOT_FOUND", "the license has no active activation with that id", 404)
        return target
    if not active:
        raise ActivationRefusedError(Code.SEAT_LIMIT_REACHED, "every seat is held by an activation that cannot be replaced", 409)
    return min(active, key=lambda row: (row["last_checkin_at"] or row["created_at"], row["id"]))


def _flag_code(row: Row) -> Code:
    return Code.CLONE_SUSPECTED if row["flagged"] == "clone" else Code.ROLLBACK_DETECTED


async def _licensed_in(tx: Transaction, license: Row) -> Licensed:
    policy = await tx.get(POLICY, license["policy_id"])
    product = await tx.get(PRODUCT, license["product_id"])
    assert policy is not None and product is not None
    return Licensed(license, product, policy, POLICY.field("options").column_to_api(policy["options"]))


def shown(row: Row) -> dict[str, Any]:
    """An activation as the API shows it."""
    return {
        "id": row["id"],
        "object": "activation",
        "license_id": row["license_id"],
        "state": row["state"],
        "device_name": row["device_name"],
        "device_key": row["device_key"],
        "fingerprint": ACTIVATION.field("fingerprint").column_to_api(row["fingerprint"]),
        "generation": row["generation"],
        "mode": row["mode"],
        "checkpoint_at": format_time(row["checkpoint_at"]),
        "lapses_at": format_time(row["lapses_at"]),
        "last_checkin_at": format_time(row["last_checkin_at"]),
        "recovery_of": row["recovery_of"],
        "flagged": row["flagged"],
        "ended_at": format_time(row["ended_at"]),
        "created_at": format_time(row["created_at"]),
        "updated_at": format_time(row["updated_at"]),
    }


def license_file(kid: str, seed: bytes, tenant_id: str, licensed: Licensed, row: Row, rule: MatchRule, now: int) -> str:
    """The ``lf1`` license file of an activation as it stands (times in seconds)."""
    terms = LicenseTerms.of(licensed.license, licensed.policy)
    expires = licensed.license["expires_at"]
    return sign_document(
        LICENSE_FILE_KIND,
        kid,
        seed,
        {
            "tenant": tenant_id,
            "product": licensed.product["code"],
            "license": licensed.license["id"],
            "activation": row["id"],
            "device_key": row["device_key"],
            "fingerprint": ACTIVATION.field("fingerprint").column_to_api(row["fingerprint"]),
            "match": rule.as_json(),
            "features": [e.as_json() for e in terms.entitlements],
            "terms": terms.terms,
            "generation": row["generation"],
            "iat": now // 1_000_000,
            "checkpoint_at": row["checkpoint_at"] // 1_000_000,
            "lapses_at": row["lapses_at"] // 1_000_000,
            "exp": None if expires is None else expires // 1_000_000,
            "mode": row["mode"],
        },
    )


_ID = {"type": "string", "pattern": id_pattern("act")}
_COMMON: dict[str, Any] = {
    "tenant": {"type": "string", "pattern": id_pattern("ten")},
    "product": CODE_SCHEMA,
    "device_key": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"},
    "fingerprint": FINGERPRINT_SCHEMA,
    "time": {"type": "integer", "minimum": 0, "maximum": 1 << 40},
}
_TO_ACTIVATE: dict[str, Any] = {
    "license_key": {"type": "string", "minLength": 1, "maxLength": 100},
    "device_name": {"type": "string", "minLength": 1, "maxLength": 200},
}
_OF_ACTIVATION: dict[str, Any] = {"activation": _ID, "generation": {"type": "integer", "minimum": 1, "maximum": 1 << 53}}
_DOCUMENT_FIELDS: dict[str, tuple[dict[str, Any], list[str]]] = {  # op -> (its own fields, the required ones)
    "activate": (_TO_ACTIVATE, ["license_key"]),
    "recover": ({**_TO_ACTIVATE, "withdraw": _ID}, ["license_key"]),
    "checkin": (_OF_ACTIVATION, ["activation", "generation"]),
    "deactivate": (_OF_ACTIVATION, ["activation", "generation"]),
}
_VALIDATORS = {
    op: Schema(
        {
            "type": "object",
            "properties": {"op": {"const": op}, **_COMMON, **fields},
            "required": ["op", *_COMMON, *required],
            "additionalProperties": False,
        }
    )
    for op, (fields, required) in _DOCUMENT_FIELDS.items()
}


def _validate_document(document: dict[str, Any], token: str) -> None:
    op = document.get("op")
    if op not in _VALIDATORS:
        raise ValidationError(
            "the device request has no known op (activate, recover, checkin, deactivate)", code="INVALID_DEVICE_REQUEST"
        )
    problem = _VALIDATORS[op].problem(document)
    if problem is not None:
        raise ValidationError(f"device request field {problem.location}: {problem.message}", code="INVALID_DEVICE_REQUEST")
    if document["device_key"] != token.split(".")[1]:
        raise ValidationError("the device request names another key than the one that signed it", code="INVALID_DEVICE_REQUEST")
