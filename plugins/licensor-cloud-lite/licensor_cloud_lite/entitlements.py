"""What a subject may do: its cloud-lite licenses of a product, their verdicts, and the signed answer (``en1``)."""

from __future__ import annotations

from typing import Any

from licensor import Backend, Call, CheckRequest, Code, Licensed, NotFoundError, PermissionDeniedError, Verdict, licensed_in
from licensor.model import LICENSE, PRODUCT, format_time
from licensor.store import Row
from licensor.tokens import TokenKind, sign_document
from licensor_client.entitlements import entitlement_document

from licensor_cloud_lite import presenters


async def subject_licenses(call: Call, backend: Backend) -> tuple[Row, list[Licensed]]:
    """The product the request names (one the product token serves) and the subject's licenses of it that
    ``backend`` decides: from the license cache, or, inside the request's transaction, from the transaction.

    :raises NotFoundError: PRODUCT_NOT_FOUND (404).
    :raises PermissionDeniedError: PRODUCT_MISMATCH, a product token of another product (403)."""
    assert call.principal is not None
    product_code = call.body.get("product", call.query.get("product"))
    subject = _subject(call)
    assert product_code is not None  # every operation here requires both (body or query)
    if call.tx is None:
        product = await call.services.product_by_code(call.tenant_id, product_code)
    else:
        product = await call.tx.find(PRODUCT, code=product_code)
    if product is None:
        raise NotFoundError("no such product", code="PRODUCT_NOT_FOUND")
    if call.principal.product_id is not None and call.principal.product_id != product["id"]:
        raise PermissionDeniedError("the product token serves another product", code="PRODUCT_MISMATCH")
    if call.tx is None:
        licenses = await call.services.licenses_of_subject(call.tenant_id, product["id"], subject)
    else:
        licenses = [
            await licensed_in(call.tx, row) for row in await call.tx.select(LICENSE, product_id=product["id"], subject=subject)
        ]
    return product, [licensed for licensed in licenses if licensed.policy["backend"] == backend.name]


async def verdicts_of(
    call: Call, backend: Backend, licenses: list[Licensed], now: int, features: tuple[str, ...] = ()
) -> list[tuple[Licensed, Verdict]]:
    """Each license with the verdict of ``backend`` on the subject's use of ``features`` at ``now`` (µs)."""
    subject = _subject(call)
    return [
        (licensed, await backend.check(CheckRequest.of(call.tenant_id, licensed, now, features=features, subject=subject)))
        for licensed in licenses
    ]


async def query(call: Call, backend: Backend) -> dict[str, Any]:
    """What the request's subject may do with the product, as the API shows it, with each verdict counted as a
    check's outcome and the answer signed as an ``en1`` token valid for the shortest ``entitlement_ttl_seconds``
    of its licenses.

    :raises NotFoundError: PRODUCT_NOT_FOUND (404).
    :raises PermissionDeniedError: PRODUCT_MISMATCH (403)."""
    product, licenses = await subject_licenses(call, backend)
    subject = call.body["subject"]
    now = call.services.now_us()  # one clock for the verdicts and the token's times
    verdicts = await verdicts_of(call, backend, licenses, now)
    for verdict in [verdict for _, verdict in verdicts] or [Verdict(Code.NOT_FOUND)]:
        call.services.record_outcome(call.tenant_id, verdict.license_id, str(verdict.code))
    valid = [(licensed, verdict) for licensed, verdict in verdicts if verdict.valid]
    code = str(Code.VALID if valid else (verdicts[-1][1].code if verdicts else Code.NOT_FOUND))
    features = merged_features([verdict for _, verdict in valid])
    terms: dict[str, Any] = {}
    if valid:
        expiries = [licensed.license["expires_at"] for licensed, _ in valid]
        terms = {
            "expires_at": None if None in expiries else format_time(max(expiries)),
            "usage_period": backend.option(valid[0][0].options, "usage_period"),
        }
    ttl: int = min(
        (backend.option(licensed.options, "entitlement_ttl_seconds") for licensed, _ in verdicts),
        default=backend.default_options["entitlement_ttl_seconds"],
    )
    issued_at = now // 1_000_000
    license_ids = [licensed.id for licensed, _ in valid]
    kid, seed = await call.services.signing_key(call.tenant_id)
    document = entitlement_document(
        call.tenant_id, product["code"], subject, features, terms, license_ids, issued_at, issued_at + ttl
    )
    token = sign_document(TokenKind.ENTITLEMENT, kid, seed, document)
    license_codes = [(licensed.id, str(verdict.code)) for licensed, verdict in verdicts]
    expires_at = (issued_at + ttl) * 1_000_000
    return presenters.entitlements_json(product["code"], subject, code, features, terms, license_codes, token, expires_at)


def merged_features(verdicts: list[Verdict]) -> list[dict[str, Any]]:
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


def _subject(call: Call) -> str:
    subject = call.body.get("subject", call.query.get("subject"))
    assert subject is not None  # every operation here requires it (body or query)
    return str(subject)
