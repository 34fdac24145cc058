"""The activation backend's routes: the device's requests, the offline answer, and the vendor's view.

:func:`operations` is the table; its handlers are the functions below, bound to the backend when it is installed.
"""

from __future__ import annotations

from functools import partial
from typing import Protocol

from licensor import (
    PAGE_PARAMS,
    READ_ROLES,
    SUPPORT_ROLES,
    ByBody,
    Call,
    NotFoundError,
    Operation,
    Param,
    Principal,
    Reply,
    Token,
    list_license_items,
    list_schema,
)
from licensor.model import ACTIVATION, ACTIVATION_STATES, id_pattern
from licensor.store import Transaction

from licensor_activation import activations
from licensor_activation.activations import Settings
from licensor_activation.device_requests import TokenReader, device_request_of, hand_over, read_device_request
from licensor_activation.presenters import ACTIVATION_SCHEMA, ENDED_SCHEMA, ISSUED_SCHEMA, shown

DEVICE_REQUEST_BODY = {
    "type": "object",
    "properties": {
        "request": {
            "type": "string",
            "minLength": 1,
            "maxLength": 8192,
            "description": "The dv1 device request (licensor_client.activation.device_request).",
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


class ActivationHost(Settings, Protocol):
    """What the handlers are bound to (the activation backend): its settings and its device-request reader."""

    @property
    def reader(self) -> TokenReader: ...


# --- authentication: the device's signature, or a vendor's token answering a request file ------------------------
async def authenticate_device(host: ActivationHost, ops: tuple[str, ...], call: Call) -> Principal:
    read = await read_device_request(call, host.reader, host.clock(), ops)
    hand_over(call, read)
    return Principal(read.tenant_id, "device", "device", None, actor=read.actor)


async def authenticate_request_file(host: ActivationHost, call: Call) -> Principal:
    assert call.principal is not None
    hand_over(
        call,
        await read_device_request(call, host.reader, host.clock(), ("activate", "recover", "checkin"), vendor=call.principal),
    )
    return call.principal


# --- handlers ---------------------------------------------------------------------------------------------------
async def activate(host: ActivationHost, call: Call) -> Reply:
    return await activations.activate(host, _tx(call), device_request_of(call), "online")


async def check_in(host: ActivationHost, call: Call) -> Reply:
    return await activations.check_in(host, _tx(call), device_request_of(call), "online")


async def deactivate(host: ActivationHost, call: Call) -> Reply:
    return await activations.deactivate(host, _tx(call), device_request_of(call))


async def answer_request_file(host: ActivationHost, call: Call) -> Reply:
    read = device_request_of(call)
    if read.document["op"] == "checkin":
        return await activations.check_in(host, _tx(call), read, "offline")
    return await activations.activate(host, _tx(call), read, "offline")


async def list_activations(call: Call) -> Reply:
    return await list_license_items(call, ACTIVATION, shown)


async def get_activation(call: Call) -> Reply:
    row = await call.store.get(call.tenant_id, ACTIVATION, call.path["id"])
    if row is None:
        raise NotFoundError("no such activation", code="ACTIVATION_NOT_FOUND")
    return Reply(200, shown(row))


async def withdraw(host: ActivationHost, call: Call) -> Reply:
    return Reply(200, shown(await activations.withdraw(host, _tx(call), call.path["id"], call.body.get("reason"), call.actor)))


async def deactivation_receipt(host: ActivationHost, call: Call) -> Reply:
    return Reply(200, shown(await activations.deactivate_by_receipt(host, _tx(call), call.body["receipt"], call.actor)))


async def reinstate(host: ActivationHost, call: Call) -> Reply:
    return Reply(200, shown(await activations.reinstate(host, _tx(call), call.path["id"], call.actor)))


def _tx(call: Call) -> Transaction:
    assert call.tx is not None, "an operation that changes state runs in a transaction"
    return call.tx


# --- the table --------------------------------------------------------------------------------------------------
def operations(host: ActivationHost) -> list[Operation]:
    """The backend's routes, their handlers bound to ``host``."""

    def device(*ops: str) -> ByBody:
        return ByBody(partial(authenticate_device, host, ops))

    state_param = Param("state", {"enum": list(ACTIVATION_STATES)}, "Only activations in this state.")
    return [
        Operation(
            method="POST",
            path="/v1/activations",
            operation_id="activate",
            summary="Activate a device",
            handler=partial(activate, host),
            tag="activation",
            auth=device("activate"),
            response_schema=ISSUED_SCHEMA,
            status=201,
            request_schema=DEVICE_REQUEST_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            description=(
                "Authenticated by the device's signature: request is a dv1 activate request (license key, fingerprint, "
                "device key). 201 with a new activation and its lf1 license file. A device whose fingerprint matches an "
                "active activation within the policy's tolerance never gets a second seat: 200 with its file when it is "
                "a retry (the same key, not yet checked in), else 409 ALREADY_ACTIVATED (it checks in, or recovers). " + _REFUSALS
            ),
        ),
        Operation(
            method="POST",
            path="/v1/activations/recover",
            operation_id="recover_activation",
            summary="Move a license to a new device",
            handler=partial(activate, host),
            tag="activation",
            auth=device("recover"),
            response_schema=ISSUED_SCHEMA,
            status=201,
            request_schema=DEVICE_REQUEST_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
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
            method="POST",
            path="/v1/activations/checkin",
            operation_id="check_in",
            summary="Check in and renew the license file",
            handler=partial(check_in, host),
            tag="activation",
            auth=device("checkin"),
            response_schema=ISSUED_SCHEMA,
            request_schema=DEVICE_REQUEST_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            description=(
                "A dv1 checkin request naming the activation and the generation of the device's current file: a renewed "
                "file with generation + 1 and the next checkpoint; the device's fingerprint is re-matched and kept. An "
                "identical retry of the last check-in (the same request, resent at any later time) is answered the "
                "current file again. A lower generation is a stale copy: 409 ROLLBACK_DETECTED (this machine, "
                "reverted) or CLONE_SUSPECTED (another machine: another fingerprint). " + _REFUSALS
            ),
        ),
        Operation(
            method="POST",
            path="/v1/activations/deactivate",
            operation_id="deactivate",
            summary="Deactivate a device early",
            handler=partial(deactivate, host),
            tag="activation",
            auth=device("deactivate"),
            response_schema=ENDED_SCHEMA,
            request_schema=DEVICE_REQUEST_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            description=(
                "A dv1 deactivate request with the current generation: the activation ends now and its seat is free at "
                "once; the device must delete its file (it is never renewed). A stale copy cannot deactivate. " + _REFUSALS
            ),
        ),
        Operation(
            method="POST",
            path="/v1/admin/activations/offline",
            operation_id="answer_activation_request",
            summary="Answer an activation request file",
            handler=partial(answer_request_file, host),
            tag="activation",
            auth=ByBody(partial(authenticate_request_file, host), roles=SUPPORT_ROLES),
            response_schema=ISSUED_SCHEMA,
            status=201,
            request_schema=DEVICE_REQUEST_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            description=(
                "For a device without network: request is the content of its activation request file (a dv1 activate, "
                "recover or checkin request, up to 30 days old, of this tenant). Answers the license file to import on "
                "the device, whose checkpoint is the policy's offline_file_lifetime_seconds away. Same refusals as the "
                "device's own requests. The CLI: licensor admin activations answer."
            ),
        ),
        Operation(
            method="GET",
            path="/v1/admin/licenses/{id}/activations",
            operation_id="list_activations",
            summary="List a license's activations",
            handler=list_activations,
            tag="activation",
            auth=Token(READ_ROLES),
            response_schema=list_schema(ACTIVATION_SCHEMA),
            query=(*PAGE_PARAMS, state_param),
            path_patterns={"id": id_pattern("lic")},
            errors=(400, 404),
        ),
        Operation(
            method="GET",
            path="/v1/admin/activations/{id}",
            operation_id="get_activation",
            summary="Get an activation",
            handler=get_activation,
            tag="activation",
            auth=Token(READ_ROLES),
            response_schema=ACTIVATION_SCHEMA,
            path_patterns=_ID_PATTERN,
            errors=(404,),
        ),
        Operation(
            method="POST",
            path="/v1/admin/activations/{id}/withdraw",
            operation_id="withdraw_activation",
            summary="Remove a device",
            handler=partial(withdraw, host),
            tag="activation",
            auth=Token(SUPPORT_ROLES),
            response_schema=ACTIVATION_SCHEMA,
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
            method="POST",
            path="/v1/admin/activations/deactivation-receipt",
            operation_id="deactivation_receipt",
            summary="Enter an offline device's deactivation receipt",
            handler=partial(deactivation_receipt, host),
            tag="activation",
            auth=Token(SUPPORT_ROLES),
            response_schema=ACTIVATION_SCHEMA,
            request_schema={
                "type": "object",
                "properties": {"receipt": {"type": "string", "minLength": 1, "maxLength": 400}},
                "required": ["receipt"],
                "additionalProperties": False,
            },
            changes_state=True,
            errors=(404, 409, 422),
            description=(
                "receipt: what licensor-activate deactivate --offline printed on the device (LDR1-…, read out, typed or "
                "scanned; case, spaces and dashes do not matter). Verified with the activation's device key; the "
                "activation ends now and its seat is free (event activation.deactivated, reason offline receipt). 422 "
                "RECEIPT_MALFORMED (a typo), RECEIPT_INVALID (not signed by that device); 404 ACTIVATION_NOT_FOUND; 409 "
                "RECEIPT_STALE (made from an older file than the device's newest), ACTIVATION_ENDED. Entered twice: the "
                "same answer."
            ),
        ),
        Operation(
            method="POST",
            path="/v1/admin/activations/{id}/reinstate",
            operation_id="reinstate_activation",
            summary="Reinstate a suspended or removed activation",
            handler=partial(reinstate, host),
            tag="activation",
            auth=Token(SUPPORT_ROLES),
            response_schema=ACTIVATION_SCHEMA,
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
