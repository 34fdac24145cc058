"""The license plane's check: ``POST /v1/check``.

The caller presents what it holds: the software its license key (with its vendor's tenant id), or a SaaS
backend its product token and the subject (its user or customer id) it asks about. It names the product and
the features it wants, optionally a version and a device fingerprint. The gateway resolves the license within
that tenant only (from the in-process cache), finds the backend the license's policy names in the registry, and
answers the backend's verdict; with a nonce, the answer is also an ``rs1`` token signed with the tenant's active
key over the nonce, the path, the time and the verdict. The outcome is counted for the event log, off the hot
path (:mod:`licensor.gateway.outcomes`). Credential and device-signed checks come with the cloud and
activation backends.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from licensor.backend import Backend
from licensor.client.answers import ANSWER_KIND, answer_document
from licensor.errors import LicensorError, PermissionDeniedError, ValidationError
from licensor.fingerprint import FINGERPRINT_SCHEMA
from licensor.gateway import keys as app_keys
from licensor.gateway.auth import authenticate
from licensor.gateway.cache import CachedAnswer
from licensor.license import CheckRequest, Licensed
from licensor.model import CODE_SCHEMA, SUBJECT_SCHEMA, id_pattern, now_us
from licensor.operations import Call, Operation, OptionalToken, Principal, Reply
from licensor.tokens import sign_document
from licensor.verdict import DESCRIPTIONS, Code, Verdict

CHECK_PATH = "/v1/check"
log = logging.getLogger("licensor.gateway")


class BackendUnavailableError(LicensorError):
    """The license's policy names a backend that this gateway has not loaded (a missing plugin)."""

    code = "BACKEND_UNAVAILABLE"
    http_status = 503


class BackendVerdictError(LicensorError):
    """The backend answered a verdict code that neither licensor nor the backend declares (a plugin's bug)."""

    code = "BACKEND_VERDICT_UNDECLARED"
    http_status = 502


def _declared(backend: Backend, verdict: Verdict) -> Verdict:
    """The verdict, with the description of a backend's own code as its message when it has none.

    :raises BackendVerdictError: a code the backend does not declare (502)."""
    if isinstance(verdict.code, Code):
        return verdict
    description = backend.verdict_codes.get(verdict.code)
    if description is None:
        log.error("backend %r answered the undeclared verdict code %r", backend.name, verdict.code)
        raise BackendVerdictError(f"the {backend.name} backend answered a verdict code it does not declare")
    return verdict if verdict.message else dataclasses.replace(verdict, message=description)


def backend_for(app: web.Application, licensed: Licensed) -> Backend:
    """The backend the license's policy names, from the registry.

    :raises BackendUnavailableError: this gateway has no such backend (503).
    """
    backend = app[app_keys.BACKENDS].get(licensed.policy["backend"])
    if backend is None:
        raise BackendUnavailableError(f"this gateway has no {licensed.policy['backend']!r} backend: install its plugin")
    return backend


async def product_principal(request: web.Request) -> Principal:
    """The product token a SaaS backend calls with.

    :raises AuthenticationError: no valid token (401).
    :raises PermissionDeniedError: a token of another role (403).
    """
    principal = await authenticate(request)
    if principal.role != "product":
        raise PermissionDeniedError("the license plane takes a product token (role product), not a " + principal.role + " token")
    return principal


async def _licenses_asked_for(call: Call) -> tuple[str, list[Licensed]]:
    """The tenant and the licenses the request presents: its license key, or a product token and a subject."""
    body = call.body
    cache = call.request.app[app_keys.CACHE]
    if "license_key" in body:
        if "subject" in body:
            raise ValidationError("send either license_key or subject, not both", code="INVALID_FIELD")
        if "tenant" not in body:
            raise ValidationError("field tenant: a check by license key names the vendor's tenant", code="MISSING_FIELD")
        tenant_id = body["tenant"]
        key_hash = cache.key_hash(tenant_id, body["license_key"])  # a typo is a 422, not a verdict
        licensed = await cache.license_by_key_hash(tenant_id, key_hash)
        found = [licensed] if licensed is not None and licensed.product["code"] == body["product"] else []
        return tenant_id, found
    if "subject" not in body:
        raise ValidationError("send license_key (with tenant), or subject with a product token", code="MISSING_FIELD")
    principal = await product_principal(call.request)
    if body.get("tenant", principal.tenant_id) != principal.tenant_id:
        raise PermissionDeniedError("the product token belongs to another tenant", code="TENANT_MISMATCH")
    product = await cache.product_by_code(principal.tenant_id, body["product"])
    if product is None:
        return principal.tenant_id, []
    if principal.product_id is not None and principal.product_id != product["id"]:
        raise PermissionDeniedError("the product token serves another product", code="PRODUCT_MISMATCH")
    return principal.tenant_id, await cache.licenses_of_subject(principal.tenant_id, product["id"], body["subject"])


ANSWER_KEPT_US = 5_000_000
"""How long an answer is kept for identical repeats at most (changes of the tenant drop it at once)."""


def quick_answer(request: web.Request, raw: bytes) -> web.Response | None:
    """The kept answer to an identical repeat of a check by license key without a nonce, if there is one."""
    kept = request.app[app_keys.CACHE].answer(raw, now_us())
    if kept is None:
        return None
    request.app[app_keys.OUTCOMES].record(kept.tenant_id, kept.license_id, kept.code)
    return web.Response(body=kept.body, content_type="application/json")


def _answer_holds_until(licensed: Licensed, now: int) -> int:
    """When a verdict read from the license's terms may change by the passing of time alone."""
    until = now + ANSWER_KEPT_US
    for moment in (licensed.license["starts_at"], licensed.license["expires_at"]):
        if moment is not None and now < moment < until:
            until = moment
    return until


async def check(call: Call) -> Reply:
    body = call.body
    cache = call.request.app[app_keys.CACHE]
    announcements_seen = cache.announcements_seen
    tenant_id, candidates = await _licenses_asked_for(call)
    verdict = Verdict(Code.NOT_FOUND)
    now = call.services.now_us()
    backend = None
    for licensed in candidates:  # a subject may hold several licenses: the first that allows it answers
        backend = backend_for(call.request.app, licensed)
        asked = CheckRequest.of(
            tenant_id,
            licensed,
            now,
            features=tuple(body.get("features", ())),
            version=body.get("version"),
            subject=body.get("subject"),
            fingerprint=body.get("fingerprint"),
            store=call.store,
        )
        verdict = _declared(backend, await backend.check(asked))
        if verdict.valid:
            break
    call.services.record_outcome(tenant_id, verdict.license_id, str(verdict.code))
    shown = verdict.as_json()
    if (
        "license_key" in body
        and "nonce" not in body
        and len(candidates) == 1
        and backend is not None
        and backend.verdicts_cacheable
        and verdict.license_id is not None
    ):
        answer = {"object": "check", "verdict": shown, "signed_answer": None}
        kept = CachedAnswer(
            tenant_id, verdict.license_id, str(verdict.code), orjson.dumps(answer), _answer_holds_until(candidates[0], now)
        )
        cache.keep_answer(call.raw_body, kept, announcements_seen)
    signed = None
    if "nonce" in body:
        try:
            kid, seed = await call.services.signing_key(tenant_id)
        except LookupError:
            pass  # no such tenant: nothing to sign with, and nothing to tell about the tenant either
        else:
            signed = sign_document(ANSWER_KIND, kid, seed, answer_document(body["nonce"], CHECK_PATH, now // 1_000_000, shown))
    return Reply(200, {"object": "check", "verdict": shown, "signed_answer": signed})


CHECK_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tenant": {"type": "string", "pattern": id_pattern("ten")},
        "product": CODE_SCHEMA,
        "license_key": {"type": "string", "minLength": 1, "maxLength": 100},
        "subject": SUBJECT_SCHEMA,
        "fingerprint": FINGERPRINT_SCHEMA,
        "features": {"type": "array", "items": CODE_SCHEMA, "maxItems": 64, "uniqueItems": True},
        "version": {"type": "string", "pattern": "^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"},
        "nonce": {"type": "string", "pattern": "^[\\x21-\\x7e]{8,128}$"},
    },
    "required": ["product"],
    "additionalProperties": False,
}


def verdict_schema(own_codes: Mapping[str, str]) -> dict[str, Any]:
    """The schema of a verdict whose code is licensor's or one of ``own_codes`` (the backends' own)."""
    return {
        "type": "object",
        "properties": {
            "code": {
                "enum": [*(code.value for code in Code), *sorted(own_codes)],
                "x-descriptions": {
                    **{code.value: text for code, text in DESCRIPTIONS.items()},
                    **dict(sorted(own_codes.items())),
                },
            },
            "valid": {"type": "boolean"},
            "message": {"type": "string"},
            "license_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "entitlements": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"feature": {"type": "string"}, "quantity": {}},
                    "required": ["feature", "quantity"],
                    "additionalProperties": False,
                },
            },
            "terms": {"type": "object"},
        },
        "required": ["code", "valid", "message", "license_id", "entitlements", "terms"],
        "additionalProperties": False,
    }


def check_operation(own_codes: Mapping[str, str]) -> Operation:
    """``POST /v1/check``, its verdict listing licensor's codes and ``own_codes`` (the backends' own)."""
    return Operation(
        method="POST",
        path=CHECK_PATH,
        operation_id="check",
        summary="Check a license",
        handler=check,
        tag="license plane",
        auth=OptionalToken(frozenset({"product"})),
        response_schema={
            "type": "object",
            "properties": {
                "object": {"const": "check"},
                "verdict": verdict_schema(own_codes),
                "signed_answer": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["object", "verdict", "signed_answer"],
            "additionalProperties": False,
        },
        request_schema=CHECK_REQUEST_SCHEMA,
        quick_answer=quick_answer,
        errors=(401, 403, 422, 502, 503),
        description=(
            "Authenticated by what the caller holds: the software sends its license_key with its vendor's tenant "
            "id; a SaaS backend sends its product token (Authorization: Bearer) and the subject it asks about. Refusals "
            "are verdicts (200) with stable codes (licensor.verdict); 422 LICENSE_KEY_MALFORMED tells a mistyped key; "
            "401/403 a missing or wrong product token; 503 BACKEND_UNAVAILABLE means the policy's backend plugin is "
            "not installed. With a nonce, signed_answer is an rs1 token to verify offline against /v1/keys "
            "(licensor.client.answers.verify_answer). A backend's own verdict codes are listed in the verdict's "
            "code enum with their descriptions (x-descriptions); 502 BACKEND_VERDICT_UNDECLARED means a backend "
            "answered a code it does not declare."
        ),
    )
