"""Metered usage: a subject's units of a metered feature, counted per period against the feature's quota."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from licensor import Backend, Call, NotFoundError, PermissionDeniedError, RequestRefusedError, ValidationError
from licensor.model import FEATURE

from licensor_cloud_lite import entitlements, presenters

PERIODS = ("day", "month", "year", "term")
"""What a metered feature's quota may cover (the policy option ``usage_period``)."""


def period_of(now: int, usage_period: str) -> str:
    """The name of the period ``now`` (µs) falls in: ``2026-11-28``, ``2026-11``, ``2026`` or ``term``."""
    if usage_period == "term":
        return "term"
    moment = datetime.fromtimestamp(now / 1_000_000, tz=UTC)
    return moment.strftime({"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[usage_period])


async def record(call: Call, backend: Backend) -> dict[str, Any]:
    """Add the body's units of its feature to the subject's usage in the current period, on the oldest valid
    license with room, inside the request's transaction; the usage as the API shows it (and its event carries).

    :raises ValidationError: UNKNOWN_FEATURE, FEATURE_NOT_METERED (422).
    :raises NotFoundError: PRODUCT_NOT_FOUND, LICENSE_NOT_FOUND (404).
    :raises PermissionDeniedError: PRODUCT_MISMATCH, or the verdict code of a license that does not allow it (403).
    :raises RequestRefusedError: QUOTA_EXCEEDED, no license has room (409); nothing is recorded."""
    assert call.tx is not None
    body = call.body
    product, licenses = await entitlements.subject_licenses(call, backend)
    feature = await call.tx.find(FEATURE, product_id=product["id"], code=body["feature"])
    if feature is None:
        raise ValidationError(f"the product has no feature {body['feature']}", code="UNKNOWN_FEATURE")
    if not feature["metered"]:
        raise ValidationError(f"the feature {body['feature']} is not metered", code="FEATURE_NOT_METERED")
    if not licenses:
        raise NotFoundError("the subject holds no cloud-lite license of this product", code="LICENSE_NOT_FOUND")
    now = call.services.now_us()
    checked = await entitlements.verdicts_of(call, backend, licenses, now, (body["feature"],))
    entitled = [(licensed, verdict) for licensed, verdict in checked if verdict.valid]
    if not entitled:
        refusal = checked[-1][1].as_json()
        raise PermissionDeniedError(refusal["message"], code=refusal["code"])
    for licensed, verdict in entitled:  # the oldest license with room takes the usage
        quota = next(e.quantity for e in verdict.entitlements if e.feature == body["feature"])
        period = period_of(now, backend.option(licensed.options, "usage_period"))
        used = await call.tx.add_usage(licensed.id, body["subject"], body["feature"], period, body["units"], quota)
        if used is None:
            continue
        recorded = presenters.usage_json(licensed.id, body["subject"], body["feature"], body["units"], period, used, quota)
        await call.tx.append_event("usage.recorded", "license", licensed.id, call.actor, recorded)
        return recorded
    units = f"{body['units']} unit" + ("" if body["units"] == 1 else "s")
    raise RequestRefusedError("QUOTA_EXCEEDED", f"recording {units} of {body['feature']} would exceed the quota of this period")


async def totals(call: Call, backend: Backend) -> dict[str, Any]:
    """The query's subject's usage totals on its licenses of the query's product (of one period or all), as the
    API shows them.

    :raises NotFoundError: PRODUCT_NOT_FOUND (404).
    :raises PermissionDeniedError: PRODUCT_MISMATCH (403)."""
    _, licenses = await entitlements.subject_licenses(call, backend)
    subject = call.query["subject"]
    rows = await call.store.usage_totals(
        call.tenant_id, [licensed.id for licensed in licenses], subject, call.query.get("period")
    )
    return presenters.usage_totals_json(call.query["product"], subject, rows)
