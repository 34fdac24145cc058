"""The license plane's check: ``POST /v1/check``.

The software presents what it holds (here: its license key, with its vendor's tenant id) and names the product
and the features it wants. The gateway resolves the license within that tenant only, finds the backend the
license's policy names in the registry, and answers the backend's verdict; with a nonce, the answer is also an
``rs1`` token signed with the tenant's active key over the nonce, the path, the time and the verdict.
"""

from __future__ import annotations

import time
from typing import Any

from licensor.backend import CheckRequest
from licensor.central import license_keys
from licensor.central.keyset import active_signing_key
from licensor.client.answers import ANSWER_KIND, answer_document
from licensor.errors import LicensorError
from licensor.gateway import keys as app_keys
from licensor.gateway.api import Call, Operation, Reply
from licensor.model import CODE_SCHEMA, POLICY, PRODUCT, id_pattern, now_us
from licensor.tokens import sign_document
from licensor.verdict import Code, Verdict

CHECK_PATH = "/v1/check"


class BackendUnavailableError(LicensorError):
    """The license's policy names a backend that this gateway has not loaded (a missing plugin)."""

    code = "BACKEND_UNAVAILABLE"
    http_status = 503


async def check(call: Call) -> Reply:
    body = call.body
    tenant_id = body["tenant"]
    secrets = call.request.app[app_keys.SECRETS]
    normalized = license_keys.normalize(body["license_key"])  # a typo is a 422, not a verdict
    license = await call.store.find_license_by_key_hash(tenant_id, secrets.license_key_hash(tenant_id, normalized))
    product = await call.store.get(tenant_id, PRODUCT, license["product_id"]) if license else None
    if license is None or product is None or product["code"] != body["product"]:
        verdict = Verdict(Code.NOT_FOUND)
    else:
        policy = await call.store.get(tenant_id, POLICY, license["policy_id"])
        assert policy is not None, "a license's policy cannot be deleted"
        backend = call.request.app[app_keys.BACKENDS].get(policy["backend"])
        if backend is None:
            raise BackendUnavailableError(f"this gateway has no {policy['backend']!r} backend: install its plugin")
        request = CheckRequest(tenant_id, license, policy, tuple(body.get("features", ())), body.get("version"), now_us())
        verdict = await backend.check(request)
    shown = verdict.as_json()
    signed = None
    if "nonce" in body and await call.store.get_tenant(tenant_id) is not None:
        kid, seed = await active_signing_key(call.store, secrets, tenant_id)
        signed = sign_document(ANSWER_KIND, kid, seed, answer_document(body["nonce"], CHECK_PATH, int(time.time()), shown))
    return Reply(200, {"object": "check", "verdict": shown, "signed_answer": signed})


CHECK_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tenant": {"type": "string", "pattern": id_pattern("ten")},
        "product": CODE_SCHEMA,
        "license_key": {"type": "string", "minLength": 1, "maxLength": 100},
        "features": {"type": "array", "items": CODE_SCHEMA, "maxItems": 64, "uniqueItems": True},
        "version": {"type": "string", "pattern": "^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"},
        "nonce": {"type": "string", "pattern": "^[\\x21-\\x7e]{8,128}$"},
    },
    "required": ["tenant", "product", "license_key"],
    "additionalProperties": False,
}

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"enum": [code.value for code in Code]},
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

CHECK_OPERATION = Operation(
    "POST", CHECK_PATH, "check", "Check a license", check, "license plane", None,
    {
        "type": "object",
        "properties": {
            "object": {"const": "check"},
            "verdict": VERDICT_SCHEMA,
            "signed_answer": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["object", "verdict", "signed_answer"],
        "additionalProperties": False,
    },
    request_schema=CHECK_REQUEST_SCHEMA,
    errors=(422, 503),
    description=(
        "Authenticated by the license key the software holds. Refusals are verdicts (200) with stable codes "
        "(licensor.verdict); 422 LICENSE_KEY_MALFORMED tells a mistyped key; 503 BACKEND_UNAVAILABLE means the "
        "policy's backend plugin is not installed. With a nonce, signed_answer is an rs1 token to verify offline "
        "against /v1/keys (licensor.client.answers.verify_answer)."
    ),
)
