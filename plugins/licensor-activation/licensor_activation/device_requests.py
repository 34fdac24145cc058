"""Device requests: ``dv1`` tokens signed by the device's own key (:mod:`licensor_client.activation`), read and
verified before any database work, with what the gateway resolves for them (the tenant's signing key and, to
activate, the license the key names) before the request's transaction begins."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from licensor import (
    AuthenticationError,
    Call,
    Licensed,
    NotFoundError,
    PermissionDeniedError,
    Principal,
    TokenError,
    ValidationError,
)
from licensor.fingerprint import FINGERPRINT_SCHEMA
from licensor.model import CODE_SCHEMA, id_pattern
from licensor.schema import Schema
from licensor.tokens import document_of

BACKEND = "activation"
"""The backend a license's policy names for the license to be activated on devices."""
DAY_S = 86_400
DEVICE_CLOCK_SKEW_S = 300
"""How far an online device request's time may be from the gateway's."""
OFFLINE_REQUEST_MAX_AGE_S = 30 * DAY_S
"""How old an activation request file may be when the vendor answers it."""
_CONTEXT_KEY = "licensor_activation.device_request"
"""Where the verified device request waits for the handler (:attr:`licensor.Call.context`)."""


class TokenReader(Protocol):
    """Verifies a self-keyed token (its key id is the signer's public key) and gives its payload."""

    async def read(self, token: str) -> bytes:
        """:raises licensor.TokenError: the token does not verify."""
        ...


@dataclass(frozen=True)
class DeviceRequest:
    """A verified device request and what the gateway resolved for it before its transaction."""

    document: dict[str, Any]
    digest: str  # of the whole token: an identical retry is recognised
    signing_key: tuple[str, bytes]  # the tenant's (key id, seed), to sign the answer's license file
    licensed: Licensed | None  # activate and recover: the license the key names
    late: bool  # a check-in older than the clock skew allows: acceptable only as a retry of the last one
    actor: str  # who the events name: the device (by its key), or the vendor's token for a request file

    @property
    def tenant_id(self) -> str:
        return str(self.document["tenant"])


async def read_device_request(
    call: Call, reader: TokenReader, now_us: int, ops: tuple[str, ...], *, vendor: Principal | None = None
) -> DeviceRequest:
    """The verified device request of the body's ``request``, one of ``ops``, its tenant's signing key and, to
    activate, its license (from the gateway's cache: nothing here waits on the database inside a transaction).
    ``vendor`` is the token of a vendor answering a request file (which may be older).

    :raises AuthenticationError: the request does not verify as the device's (401 DEVICE_REQUEST_INVALID).
    :raises ValidationError: a request of another operation, or a time too far off (422).
    """
    token = call.body["request"]
    try:
        document = document_of(await reader.read(token))
    except TokenError as error:
        raise AuthenticationError(f"the device request does not verify: {error.message}", code="DEVICE_REQUEST_INVALID") from None
    if document.get("op") in _VALIDATORS and document["op"] not in ops:
        raise ValidationError(
            f"this endpoint takes a device request of {' or '.join(ops)}, not {document['op']}", code="WRONG_DEVICE_OPERATION"
        )
    _validate_document(document, token)
    offline = vendor is not None  # a request file the vendor answers
    if vendor is not None and document["tenant"] != vendor.tenant_id:
        raise PermissionDeniedError("the device request is for another tenant", code="TENANT_MISMATCH")
    age = now_us // 1_000_000 - document["time"]
    late = not offline and age > DEVICE_CLOCK_SKEW_S and document["op"] == "checkin"
    if age < -DEVICE_CLOCK_SKEW_S or (age > (OFFLINE_REQUEST_MAX_AGE_S if offline else DEVICE_CLOCK_SKEW_S) and not late):
        raise ValidationError(
            f"the device request's time is {age} s away from the gateway's clock; set the device's "
            "clock" + (" or make a new request file" if offline else ""),
            code="DEVICE_CLOCK_SKEW",
        )
    try:
        signing_key = await call.services.signing_key(document["tenant"])
    except LookupError:
        raise NotFoundError("no such tenant", code="TENANT_NOT_FOUND") from None
    licensed = None
    if document["op"] in ("activate", "recover"):
        licensed = await call.services.license_by_key(document["tenant"], document["license_key"])
        if licensed is None or licensed.product["code"] != document["product"] or licensed.policy["backend"] != BACKEND:
            raise NotFoundError("no activation license of this product has this key", code="LICENSE_NOT_FOUND")
    digest = hashlib.sha256(token.encode()).hexdigest()
    actor = f"token:{vendor.token_id}" if vendor is not None else device_actor(document["device_key"])
    return DeviceRequest(document, digest, signing_key, licensed, late, actor)


def hand_over(call: Call, read: DeviceRequest) -> None:
    """Keep the verified request on the call for its handler."""
    call.context[_CONTEXT_KEY] = read


def device_request_of(call: Call) -> DeviceRequest:
    """The verified request the call's authenticator handed over."""
    read: DeviceRequest = call.context[_CONTEXT_KEY]
    return read


def device_actor(device_key: str) -> str:
    """How events name a device: by the start of its public key."""
    return f"device:{device_key[:16]}"


# --- what a device request holds -----------------------------------------------------------------------------
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
