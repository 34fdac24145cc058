"""The cloud-lite backend: subjects' entitlements for a SaaS backend, and metered usage against quotas."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, ClassVar

from licensor.backend import Backend, CheckRequest, license_terms_verdict
from licensor.client.entitlements import ENTITLEMENT_KIND, entitlement_document
from licensor.errors import LicensorError, NotFoundError, PermissionDeniedError, ValidationError
from licensor.gateway import keys as app_keys
from licensor.gateway.api import READ_ROLES, Call, Operation, Param, Reply
from licensor.gateway.cache import Licensed
from licensor.gateway.check import check_request
from licensor.model import CODE_SCHEMA, FEATURE, LICENSE, POLICY, PRODUCT, SUBJECT_SCHEMA, format_time, now_us
from licensor.tokens import sign_document
from licensor.verdict import Code, Verdict

NAME = "cloud-lite"
PERIODS = ("day", "month", "year", "term")
DEFAULT_OPTIONS: dict[str, Any] = {"entitlement_ttl_seconds": 300, "usage_period": "month"}
PRODUCT_ROLES = frozenset({"product"})


class QuotaExceededError(LicensorError):
    """Recording the usage would exceed the feature's quota for the period; nothing was recorded."""

    code = "QUOTA_EXCEEDED"
    http_status = 409


class CloudLiteBackend(Backend):
    name = NAME
    verdicts_cacheable = True  # a check reads only the license's terms (usage is recorded separately)
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "entitlement_ttl_seconds": {
                "type": "integer",
                "minimum": 10,
                "maximum": 86_400,
                "description": "How long an en1 entitlement token is valid (default 300).",
            },
            "usage_period": {
                "enum": list(PERIODS),
                "description": "The period a metered feature's quota covers (default month, UTC).",
            },
        },
        "additionalProperties": False,
    }

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**DEFAULT_OPTIONS, **super().validate_options(options)}

    async def check(self, request: CheckRequest) -> Verdict:
        verdict = license_terms_verdict(request)
        if verdict.valid:
            terms = {**verdict.terms, "usage_period": _option(request.options, "usage_period")}
            return Verdict(verdict.code, verdict.message, verdict.license_id, verdict.entitlements, terms)
        return verdict

    def operations(self) -> list[Operation]:
        return [QUERY_OPERATION, RECORD_USAGE_OPERATION, READ_USAGE_OPERATION]


def _option(options: dict[str, Any], name: str) -> Any:
    return options.get(name, DEFAULT_OPTIONS[name])


def period_of(now: int, usage_period: str) -> str:
    """The name of the period ``now`` (µs) falls in: ``2026-11-28``, ``2026-11``, ``2026`` or ``term``."""
    if usage_period == "term":
        return "term"
    moment = datetime.fromtimestamp(now / 1_000_000, tz=UTC)
    return moment.strftime({"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[usage_period])


# --- what the handlers share ----------------------------------------------------------------------------
async def _subject_licenses(call: Call) -> tuple[dict[str, Any], list[Licensed]]:
    """The product the request names (one the product token serves) and the subject's cloud-lite licenses of
    it: from the license cache, or, inside the request's transaction, from the transaction."""
    assert call.principal is not None
    product_code = call.body.get("product", call.query.get("product"))
    subject = call.body.get("subject", call.query.get("subject"))
    assert product_code is not None and subject is not None  # every operation here requires both (body or query)
    cache = call.request.app[app_keys.CACHE]
    if call.tx is None:
        product = await cache.product_by_code(call.tenant_id, product_code)
    else:
        product = await call.tx.find(PRODUCT, code=product_code)
    if product is None:
        raise NotFoundError("no such product", code="PRODUCT_NOT_FOUND")
    if call.principal.product_id is not None and call.principal.product_id != product["id"]:
        raise PermissionDeniedError("the product token serves another product", code="PRODUCT_MISMATCH")
    if call.tx is None:
        licenses = await cache.licenses_of_subject(call.tenant_id, product["id"], subject)
    else:
        licenses = []
        for row in await call.tx.select(LICENSE, product_id=product["id"], subject=subject):
            policy = await call.tx.get(POLICY, row["policy_id"])
            assert policy is not None
            licenses.append(Licensed(row, product, policy, POLICY.field("options").column_to_api(policy["options"])))
    return product, [licensed for licensed in licenses if licensed.policy["backend"] == NAME]


async def _verdicts(call: Call, licenses: list[Licensed], features: tuple[str, ...] = ()) -> list[tuple[Licensed, Verdict]]:
    backend = call.request.app[app_keys.BACKENDS].get(NAME)
    assert backend is not None
    now = now_us()
    body = {"features": list(features), "subject": call.body.get("subject", call.query.get("subject"))}
    return [(licensed, await backend.check(check_request(call.tenant_id, licensed, body, now))) for licensed in licenses]


def _merged_features(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """The union of the valid licenses' features; quantities add up, and unlimited (None) stays unlimited."""
    quantities: dict[str, int | None] = {}
    for verdict in verdicts:
        for entitlement in verdict.entitlements:
            if entitlement.feature in quantities:
                known = quantities[entitlement.feature]
                quantities[entitlement.feature] = (
                    None if known is None or entitlement.quantity is None else known + entitlement.quantity
                )
            else:
                quantities[entitlement.feature] = entitlement.quantity
    return [{"feature": code, "quantity": quantities[code]} for code in sorted(quantities)]


# --- POST /v1/entitlements/query ----------------------------------------------------------------------
async def query(call: Call) -> Reply:
    product, licenses = await _subject_licenses(call)
    subject = call.body["subject"]
    checked = await _verdicts(call, licenses)
    outcomes = call.request.app[app_keys.OUTCOMES]
    for verdict in [verdict for _, verdict in checked] or [Verdict(Code.NOT_FOUND)]:
        outcomes.record(call.tenant_id, verdict.license_id, verdict.code.value)
    valid = [verdict for _, verdict in checked if verdict.valid]
    code = Code.VALID if valid else (checked[-1][1].code if checked else Code.NOT_FOUND)
    features = _merged_features(valid)
    valid_licenses = [licensed for licensed, verdict in checked if verdict.valid]
    expiries = [licensed.license["expires_at"] for licensed in valid_licenses]
    terms: dict[str, Any] = {}
    if valid_licenses:
        terms = {
            "expires_at": None if None in expiries else format_time(max(expiries)),
            "usage_period": _option(valid_licenses[0].options, "usage_period"),
        }
    ttl: int = min(
        (_option(licensed.options, "entitlement_ttl_seconds") for licensed, _ in checked),
        default=DEFAULT_OPTIONS["entitlement_ttl_seconds"],
    )
    issued_at = int(time.time())
    license_ids = [licensed.license["id"] for licensed in valid_licenses]
    kid, seed = await call.request.app[app_keys.CACHE].signing_key(call.tenant_id)
    token = sign_document(
        ENTITLEMENT_KIND,
        kid,
        seed,
        entitlement_document(call.tenant_id, product["code"], subject, features, terms, license_ids, issued_at, issued_at + ttl),
    )
    return Reply(
        200,
        {
            "object": "entitlements",
            "product": product["code"],
            "subject": subject,
            "code": code.value,
            "valid": bool(valid),
            "features": features,
            "terms": terms,
            "licenses": [{"license_id": licensed.license["id"], "code": verdict.code.value} for licensed, verdict in checked],
            "token": token,
            "expires_at": format_time(issued_at * 1_000_000 + ttl * 1_000_000),
        },
    )


# --- POST /v1/entitlements/usage ----------------------------------------------------------------------
async def record_usage(call: Call) -> Reply:
    assert call.tx is not None
    body = call.body
    product, licenses = await _subject_licenses(call)
    feature = await call.tx.find(FEATURE, product_id=product["id"], code=body["feature"])
    if feature is None:
        raise ValidationError(f"the product has no feature {body['feature']}", code="UNKNOWN_FEATURE")
    if not feature["metered"]:
        raise ValidationError(f"the feature {body['feature']} is not metered", code="FEATURE_NOT_METERED")
    if not licenses:
        raise NotFoundError("the subject holds no cloud-lite license of this product", code="LICENSE_NOT_FOUND")
    checked = await _verdicts(call, licenses, (body["feature"],))
    entitled = [(licensed, verdict) for licensed, verdict in checked if verdict.valid]
    if not entitled:
        refusal = checked[-1][1].as_json()
        raise PermissionDeniedError(refusal["message"], code=refusal["code"])
    now = now_us()
    for licensed, verdict in entitled:  # the oldest license with room takes the usage
        quota = next(e.quantity for e in verdict.entitlements if e.feature == body["feature"])
        period = period_of(now, _option(licensed.options, "usage_period"))
        used = await call.tx.add_usage(licensed.license["id"], body["subject"], body["feature"], period, body["units"], quota)
        if used is None:
            continue
        recorded = {
            "object": "usage",
            "license_id": licensed.license["id"],
            "subject": body["subject"],
            "feature": body["feature"],
            "units": body["units"],
            "period": period,
            "used": used,
            "quota": quota,
        }
        await call.tx.append_event("usage.recorded", "license", licensed.license["id"], call.actor, recorded)
        return Reply(201, recorded)
    units = f"{body['units']} unit" + ("" if body["units"] == 1 else "s")
    raise QuotaExceededError(f"recording {units} of {body['feature']} would exceed the quota of this period")


# --- GET /v1/entitlements/usage -----------------------------------------------------------------------
async def read_usage(call: Call) -> Reply:
    _, licenses = await _subject_licenses(call)
    ids = [licensed.license["id"] for licensed in licenses]
    rows = await call.store.usage_totals(call.tenant_id, ids, call.query["subject"], call.query.get("period"))
    totals = [
        {
            "license_id": row["license_id"],
            "feature": row["feature"],
            "period": row["period"],
            "used": row["used"],
            "updated_at": format_time(row["updated_at"]),
        }
        for row in rows
    ]
    return Reply(
        200, {"object": "usage_totals", "product": call.query["product"], "subject": call.query["subject"], "totals": totals}
    )


# --- declarations -------------------------------------------------------------------------------------
_FEATURES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"feature": {"type": "string"}, "quantity": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
        "required": ["feature", "quantity"],
        "additionalProperties": False,
    },
}
_CODE = {"enum": [code.value for code in Code]}
_PERIOD = {"type": "string", "pattern": "^(term|[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?)$"}

QUERY_OPERATION = Operation(
    "POST",
    "/v1/entitlements/query",
    "query_entitlements",
    "Query what a subject may do",
    query,
    "cloud-lite",
    PRODUCT_ROLES,
    {
        "type": "object",
        "properties": {
            "object": {"const": "entitlements"},
            "product": {"type": "string"},
            "subject": {"type": "string"},
            "code": _CODE,
            "valid": {"type": "boolean"},
            "features": _FEATURES,
            "terms": {"type": "object"},
            "licenses": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"license_id": {"type": "string"}, "code": _CODE},
                    "required": ["license_id", "code"],
                    "additionalProperties": False,
                },
            },
            "token": {"type": "string"},
            "expires_at": {"type": "string"},
        },
        "required": ["object", "product", "subject", "code", "valid", "features", "terms", "licenses", "token", "expires_at"],
        "additionalProperties": False,
    },
    request_schema={
        "type": "object",
        "properties": {"product": CODE_SCHEMA, "subject": SUBJECT_SCHEMA},
        "required": ["product", "subject"],
        "additionalProperties": False,
    },
    errors=(401, 403, 404, 422),
    description=(
        "Authenticated by a product token. Answers the features (quantities of valid licenses add up), terms and "
        "verdict code of the subject's cloud-lite licenses of the product, and token: an en1 entitlement token "
        "valid for the policy's entitlement_ttl_seconds, to verify offline with "
        "licensor.client.entitlements.verify_entitlement_token against /v1/keys. A subject without a license "
        "gets code NOT_FOUND and no features (200)."
    ),
)

_USAGE = {
    "type": "object",
    "properties": {
        "object": {"const": "usage"},
        "license_id": {"type": "string"},
        "subject": {"type": "string"},
        "feature": {"type": "string"},
        "units": {"type": "integer"},
        "period": {"type": "string"},
        "used": {"type": "integer"},
        "quota": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    },
    "required": ["object", "license_id", "subject", "feature", "units", "period", "used", "quota"],
    "additionalProperties": False,
}

RECORD_USAGE_OPERATION = Operation(
    "POST",
    "/v1/entitlements/usage",
    "record_usage",
    "Record a subject's usage of a metered feature",
    record_usage,
    "cloud-lite",
    PRODUCT_ROLES,
    _USAGE,
    status=201,
    request_schema={
        "type": "object",
        "properties": {
            "product": CODE_SCHEMA,
            "subject": SUBJECT_SCHEMA,
            "feature": CODE_SCHEMA,
            "units": {"type": "integer", "minimum": 1, "maximum": 1_000_000_000},
        },
        "required": ["product", "subject", "feature", "units"],
        "additionalProperties": False,
    },
    changes_state=True,
    errors=(401, 403, 404, 409, 422),
    description=(
        "Adds units to the subject's usage of a metered feature in the current period, against the feature's "
        "quantity (its quota) on the oldest valid license with room, atomically. Send an Idempotency-Key: a retry "
        "is answered the first answer and counts once. 409 QUOTA_EXCEEDED records nothing; 403 carries the "
        "verdict code of a license that does not allow it (SUSPENDED, FEATURE_NOT_ENTITLED, ...)."
    ),
)

READ_USAGE_OPERATION = Operation(
    "GET",
    "/v1/entitlements/usage",
    "read_usage",
    "Read a subject's usage totals",
    read_usage,
    "cloud-lite",
    PRODUCT_ROLES | READ_ROLES,
    {
        "type": "object",
        "properties": {
            "object": {"const": "usage_totals"},
            "product": {"type": "string"},
            "subject": {"type": "string"},
            "totals": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "license_id": {"type": "string"},
                        "feature": {"type": "string"},
                        "period": {"type": "string"},
                        "used": {"type": "integer"},
                        "updated_at": {"type": "string"},
                    },
                    "required": ["license_id", "feature", "period", "used", "updated_at"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["object", "product", "subject", "totals"],
        "additionalProperties": False,
    },
    query=(
        Param("product", CODE_SCHEMA, "The product's code.", required=True),
        Param("subject", SUBJECT_SCHEMA, "The subject (the SaaS's user or customer id).", required=True),
        Param("period", _PERIOD, "One period (2026-11-28, 2026-11, 2026 or term); all when absent."),
    ),
    errors=(401, 403, 404),
    description="Totals per license, feature and period of the subject's cloud-lite licenses of the product.",
)
