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

from aiohttp import web
from licensor_client.answers import ANSWER_KIND, answer_document

from licensor.backend import Backend
from licensor.errors import LicensorError, PermissionDeniedError
from licensor.fingerprint import FINGERPRINT_SCHEMA
from licensor.gateway import keys as app_keys
from licensor.gateway.auth import authenticate
from licensor.license import CheckRequest, Licensed
from licensor.model import CODE_SCHEMA, SUBJECT_SCHEMA, id_pattern
from licensor.operations import Call, Operation, OptionalToken, Principal, Reply, Services
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
    """The tenant and the licenses the request presents: its license key (the request schema requires the
    tenant with it), or a product token and a subject.

    :raises ValidationError: LICENSE_KEY_MALFORMED, a mistyped key (422).
    :raises AuthenticationError, PermissionDeniedError: no valid product token for a subject (401, 403)."""
    body, services = call.body, call.services
    if "license_key" in body:
        tenant_id = body["tenant"]
        licensed = await services.license_by_key(tenant_id, body["license_key"])
        return tenant_id, [licensed] if licensed is not None and licensed.product["code"] == body["product"] else []
    principal = await product_principal(call.request)
    if body.get("tenant", principal.tenant_id) != principal.tenant_id:
        raise PermissionDeniedError("the product token belongs to another tenant", code="TENANT_MISMATCH")
    product = await services.product_by_code(principal.tenant_id, body["product"])
    if product is None:
        return principal.tenant_id, []
    if principal.product_id is not None and principal.product_id != product["id"]:
        raise PermissionDeniedError("the product token serves another product", code="PRODUCT_MISMATCH")
    return principal.tenant_id, await services.licenses_of_subject(principal.tenant_id, product["id"], body["subject"])


async def _decide(call: Call, tenant_id: str, candidates: list[Licensed], now: int) -> tuple[Verdict, Backend | None]:
    """The verdict of the backend each candidate's policy names (a subject may hold several licenses: the first
    that allows what was asked answers), and the backend that gave it."""
    body = call.body
    verdict, backend = Verdict(Code.NOT_FOUND), None
    for licensed in candidates:
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
    return verdict, backend


def quick_answer(services: Services, request: web.Request, raw: bytes) -> web.Response | None:
    """The remembered answer to an identical repeat of a check (see :mod:`licensor.gateway.answers`), if any."""
    kept = request.app[app_keys.ANSWERS].lookup(raw, services.now_us())
    if kept is None:
        return None
    _count_for_tenant(request, kept.tenant_id)  # only answers about a license found are remembered
    services.record_outcome(kept.tenant_id, kept.license_id, kept.code)
    request.app[app_keys.METRICS].count_verdict(kept.backend, kept.code)
    return web.Response(body=kept.body, content_type="application/json")


def _count_for_tenant(request: web.Request, tenant_id: str) -> None:
    """Use one of the tenant's budget for a check that presented one of its licenses (a check naming a tenant with
    a key that is none of its licenses is not: anyone could spend a tenant's budget that way)."""
    if (budget := request.app[app_keys.LIMITS].tenant) is not None:
        budget.take(tenant_id, "requests for this tenant")


async def check(call: Call) -> Reply:
    """Resolve the tenant and the licenses presented, have their backend decide, answer (signed over a nonce)."""
    body, services = call.body, call.services
    answers = call.request.app[app_keys.ANSWERS]
    mark, now = answers.mark(), services.now_us()  # one clock for the verdict and the answer signed over it
    tenant_id, candidates = await _licenses_asked_for(call)
    if candidates or "license_key" not in body:  # one of the tenant's licenses, or its product token
        _count_for_tenant(call.request, tenant_id)
    verdict, backend = await _decide(call, tenant_id, candidates, now)
    services.record_outcome(tenant_id, verdict.license_id, str(verdict.code))
    call.request.app[app_keys.METRICS].count_verdict(backend.name if backend is not None else None, str(verdict.code))
    shown = verdict.as_json()
    signed = None
    if "nonce" in body:
        try:
            kid, seed = await services.signing_key(tenant_id)
        except LookupError:
            pass  # no such tenant: nothing to sign with, and nothing to tell about the tenant either
        else:
            signed = sign_document(ANSWER_KIND, kid, seed, answer_document(body["nonce"], CHECK_PATH, now // 1_000_000, shown))
    answer = {"object": "check", "verdict": shown, "signed_answer": signed}
    answers.remember(call.raw_body, body, mark, tenant_id, candidates, backend, verdict, answer, now)
    return Reply(200, answer)


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
    # A check presents a license key, with its vendor's tenant, or a subject (with a product token); not both.
    # (if/then/else is checked after the fields themselves, so a wrong field is named first.)
    "if": {"required": ["license_key"]},
    "then": {"required": ["tenant"], "properties": {"subject": False}},
    "else": {"required": ["subject"], "x-message": "send license_key (with tenant), or subject with a product token"},
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
            "(licensor_client.answers.verify_answer). A backend's own verdict codes are listed in the verdict's "
            "code enum with their descriptions (x-descriptions); 502 BACKEND_VERDICT_UNDECLARED means a backend "
            "answered a code it does not declare."
        ),
    )
