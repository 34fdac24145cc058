"""The activation backend's routes: the device's requests, the offline answer, and the vendor's view."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from licensor.errors import MalformedRequestError, NotFoundError
from licensor.gateway.api import PAGE_PARAMS, READ_ROLES, Call, Operation, Param, Reply, decode_cursor, list_reply, list_schema
from licensor.gateway.auth import Principal
from licensor.model import ACTIVATION, ACTIVATION_STATES, LICENSE, TIME_SCHEMA, id_pattern

from licensor_activation.backend import READ_REQUEST, SUPPORT_ROLES, ActivationBackend, DeviceRequest, shown

_NULLABLE_TIME = {"anyOf": [TIME_SCHEMA, {"type": "null"}]}
ACTIVATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": id_pattern("act")},
        "object": {"const": "activation"},
        "license_id": {"type": "string"},
        "state": {"enum": list(ACTIVATION_STATES)},
        "device_name": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "device_key": {"type": "string"},
        "fingerprint": {"type": "object"},
        "generation": {"type": "integer"},
        "mode": {"enum": ["online", "offline"]},
        "checkpoint_at": TIME_SCHEMA,
        "lapses_at": TIME_SCHEMA,
        "last_checkin_at": _NULLABLE_TIME,
        "recovery_of": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "flagged": {"anyOf": [{"enum": ["clone", "rollback"]}, {"type": "null"}]},
        "ended_at": _NULLABLE_TIME,
        "created_at": TIME_SCHEMA,
        "updated_at": TIME_SCHEMA,
    },
    "additionalProperties": False,
}
ACTIVATION_SCHEMA["required"] = list(ACTIVATION_SCHEMA["properties"])
ISSUED_SCHEMA = {
    "type": "object",
    "properties": {"object": {"const": "license_file"}, "activation": ACTIVATION_SCHEMA, "license_file": {"type": "string"}},
    "required": ["object", "activation", "license_file"],
    "additionalProperties": False,
}
ENDED_SCHEMA = {
    "type": "object",
    "properties": {"object": {"const": "activation"}, "activation": ACTIVATION_SCHEMA},
    "required": ["object", "activation"],
    "additionalProperties": False,
}
DEVICE_REQUEST_BODY = {
    "type": "object",
    "properties": {
        "request": {
            "type": "string",
            "minLength": 1,
            "maxLength": 8192,
            "description": "The dv1 device request (licensor.client.activation.device_request).",
        }
    },
    "required": ["request"],
    "additionalProperties": False,
}
_REASON_BODY = {
    "type": "object",
    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}},
    "additionalProperties": False,
}
_ID_PATTERN = {"id": id_pattern("act")}
_DEVICE_ERRORS = (401, 403, 404, 409, 422)
_REFUSALS = (
    "Refusals carry a stable code. 401 DEVICE_REQUEST_INVALID: the request does not verify as the device's. 403: the "
    "license's verdict code (SUSPENDED, REVOKED, EXPIRED, NOT_YET_VALID), FINGERPRINT_MISMATCH, WITHDRAWN (the activation "
    "ended: deactivated, removed or replaced), DEVICE_KEY_MISMATCH (signed by another device than the activation's). "
    "404 TENANT_NOT_FOUND, LICENSE_NOT_FOUND, ACTIVATION_NOT_FOUND. 409 SEAT_LIMIT_REACHED, ALREADY_ACTIVATED, "
    "RECOVERY_LIMIT_REACHED, ROLLBACK_DETECTED or CLONE_SUSPECTED (these two are recorded as events and, per the "
    "policy's on_clone, suspend the activation; a retry with the same Idempotency-Key replays them; other refusals "
    "record nothing and are not replayed). 422 DEVICE_CLOCK_SKEW, INVALID_DEVICE_REQUEST, WRONG_DEVICE_OPERATION, "
    "LICENSE_KEY_MALFORMED, GENERATION_AHEAD."
)


def _request_of(call: Call) -> DeviceRequest:
    return call.request[READ_REQUEST]


def build_operations(backend: ActivationBackend) -> list[Operation]:
    def device(ops: tuple[str, ...]) -> Any:
        async def authenticate(request: web.Request, body: dict[str, Any], _: Principal | None) -> Principal:
            return await backend.device_principal(request, body, ops)

        return authenticate

    async def activate(call: Call) -> Reply:
        assert call.tx is not None
        return await backend.activate(call.tx, _request_of(call), "online")

    async def check_in(call: Call) -> Reply:
        assert call.tx is not None
        return await backend.check_in(call.tx, _request_of(call), "online")

    async def deactivate(call: Call) -> Reply:
        assert call.tx is not None
        return await backend.deactivate(call.tx, _request_of(call))

    async def vendor_reads_request(request: web.Request, body: dict[str, Any], principal: Principal | None) -> Principal:
        assert principal is not None
        request[READ_REQUEST] = await backend.read_request(request, body, ("activate", "recover", "checkin"), vendor=principal)
        return principal

    async def answer_offline(call: Call) -> Reply:
        assert call.tx is not None
        read = _request_of(call)
        if read.document["op"] == "checkin":
            return await backend.check_in(call.tx, read, "offline")
        return await backend.activate(call.tx, read, "offline")

    async def list_activations(call: Call) -> Reply:
        if await call.store.get(call.tenant_id, LICENSE, call.path["id"]) is None:
            raise NotFoundError("no such license", code="LICENSE_NOT_FOUND")
        after = decode_cursor(call.query["cursor"], "activations") if "cursor" in call.query else None
        if after is not None and not isinstance(after, str):
            raise MalformedRequestError("the cursor is not one this API gave out", code="INVALID_CURSOR")
        filters = {"license_id": call.path["id"], **({"state": call.query["state"]} if "state" in call.query else {})}
        page = await call.store.list(call.tenant_id, ACTIVATION, filters, after, call.query.get("limit", 50))
        items = [shown(row) for row in page.rows]
        return list_reply("activations", items, page.has_more, items[-1]["id"] if items else None)

    async def get_activation(call: Call) -> Reply:
        row = await call.store.get(call.tenant_id, ACTIVATION, call.path["id"])
        if row is None:
            raise NotFoundError("no such activation", code="ACTIVATION_NOT_FOUND")
        return Reply(200, shown(row))

    async def withdraw(call: Call) -> Reply:
        assert call.tx is not None
        return Reply(200, shown(await backend.withdraw(call.tx, call.path["id"], call.body.get("reason"), call.actor)))

    async def reinstate(call: Call) -> Reply:
        assert call.tx is not None
        return Reply(200, shown(await backend.reinstate(call.tx, call.path["id"], call.actor)))

    state_param = Param("state", {"enum": list(ACTIVATION_STATES)}, "Only activations in this state.")
    return [
        Operation(
            "POST",
            "/v1/activations",
            "activate",
            "Activate a device",
            activate,
            "activation",
            None,
            ISSUED_SCHEMA,
            status=201,
            request_schema=DEVICE_REQUEST_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            authenticator=device(("activate",)),
            description=(
                "Authenticated by the device's signature: request is a dv1 activate request (license key, fingerprint, "
                "device key). 201 with a new activation and its lf1 license file. A device whose fingerprint matches an "
                "active activation within the policy's tolerance never gets a second seat: 200 with its file when it is "
                "a retry (the same key, not yet checked in), else 409 ALREADY_ACTIVATED (it checks in, or recovers). " + _REFUSALS
            ),
        ),
        Operation(
            "POST",
            "/v1/activations/recover",
            "recover_activation",
            "Move a license to a new device",
            activate,
            "activation",
            None,
            ISSUED_SCHEMA,
            status=201,
            request_schema=DEVICE_REQUEST_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            authenticator=device(("recover",)),
            description=(
                "A dv1 recover request, for a device that lost its file or key, or a new device when every seat is "
                "taken: the device's own activation (its fingerprint matched), else the named one (withdraw), else the "
                "active one not heard from longest, is replaced by a new activation of this device, within the policy's "
                "recovery allowance (409 RECOVERY_LIMIT_REACHED beyond it). The replaced device is told WITHDRAWN at its "
                "next check-in, or its file lapses at its checkpoint; its seat moves at once. With a free seat and no "
                "matching activation, a plain activation (no recovery used). " + _REFUSALS
            ),
        ),
        Operation(
            "POST",
            "/v1/activations/checkin",
            "check_in",
            "Check in and renew the license file",
            check_in,
            "activation",
            None,
            ISSUED_SCHEMA,
            request_schema=DEVICE_REQUEST_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            authenticator=device(("checkin",)),
            description=(
                "A dv1 checkin request naming the activation and the generation of the device's current file: a renewed "
                "file with generation + 1 and the next checkpoint; the device's fingerprint is re-matched and kept. An "
                "identical retry of the last check-in (the same request, resent at any later time) is answered the "
                "current file again. A lower generation is a stale copy: 409 ROLLBACK_DETECTED (this machine, "
                "reverted) or CLONE_SUSPECTED (another machine: another fingerprint). " + _REFUSALS
            ),
        ),
        Operation(
            "POST",
            "/v1/activations/deactivate",
            "deactivate",
            "Deactivate a device early",
            deactivate,
            "activation",
            None,
            ENDED_SCHEMA,
            request_schema=DEVICE_REQUEST_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            authenticator=device(("deactivate",)),
            description=(
                "A dv1 deactivate request with the current generation: the activation ends now and its seat is free at "
                "once; the device must delete its file (it is never renewed). A stale copy cannot deactivate. " + _REFUSALS
            ),
        ),
        Operation(
            "POST",
            "/v1/admin/activations/offline",
            "answer_activation_request",
            "Answer an activation request file",
            answer_offline,
            "activation",
            SUPPORT_ROLES,
            ISSUED_SCHEMA,
            status=201,
            request_schema=DEVICE_REQUEST_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            authenticator=vendor_reads_request,
            description=(
                "For a device without network: request is the content of its activation request file (a dv1 activate, "
                "recover or checkin request, up to 30 days old, of this tenant). Answers the license file to import on "
                "the device, whose checkpoint is the policy's offline_file_lifetime_seconds away. Same refusals as the "
                "device's own requests. The CLI: licensor admin activations answer."
            ),
        ),
        Operation(
            "GET",
            "/v1/admin/licenses/{id}/activations",
            "list_activations",
            "List a license's activations",
            list_activations,
            "activation",
            READ_ROLES,
            list_schema(ACTIVATION_SCHEMA),
            query=(*PAGE_PARAMS, state_param),
            path_patterns={"id": id_pattern("lic")},
            errors=(400, 404),
        ),
        Operation(
            "GET",
            "/v1/admin/activations/{id}",
            "get_activation",
            "Get an activation",
            get_activation,
            "activation",
            READ_ROLES,
            ACTIVATION_SCHEMA,
            path_patterns=_ID_PATTERN,
            errors=(404,),
        ),
        Operation(
            "POST",
            "/v1/admin/activations/{id}/withdraw",
            "withdraw_activation",
            "Remove a device",
            withdraw,
            "activation",
            SUPPORT_ROLES,
            ACTIVATION_SCHEMA,
            request_schema=_REASON_BODY,
            path_patterns=_ID_PATTERN,
            changes_state=True,
            errors=(404, 409),
            description=(
                "The device's file is no longer renewed: it is told WITHDRAWN at its next check-in, and its seat comes "
                "back when its current file lapses (checkpoint plus grace). 409 ACTIVATION_ENDED if it ended already."
            ),
        ),
        Operation(
            "POST",
            "/v1/admin/activations/{id}/reinstate",
            "reinstate_activation",
            "Reinstate a suspended or removed activation",
            reinstate,
            "activation",
            SUPPORT_ROLES,
            ACTIVATION_SCHEMA,
            path_patterns=_ID_PATTERN,
            changes_state=True,
            errors=(404, 409),
            description=(
                "Undoes a suspension after a clone or rollback (policy on_clone: suspend): the device holding the newest "
                "file may check in again; stale copies stay refused. Also undoes a removal (withdraw); a removed "
                "activation whose file has lapsed needs a free seat (409 SEAT_LIMIT_REACHED). 409 "
                "ACTIVATION_NOT_REINSTATABLE for an activation in another state."
            ),
        ),
    ]
