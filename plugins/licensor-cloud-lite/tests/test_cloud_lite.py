"""cloud-lite through the real gateway on both stores: subjects' entitlements, en1 tokens verified offline by
the SDK, checks with a product token, and metered usage against quotas."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from licensor.errors import TokenError
from licensor.testing import Gateway, Vendor, make_vendor
from licensor_client.entitlements import EntitlementCache, EntitlementRejectedError, verify_entitlement_token

QUOTA = 50


@dataclass
class Saas(Vendor):
    """A tenant selling a SaaS product to subjects: features ``reports`` and metered ``calls`` (quota 50)."""

    token: str = ""  # the SaaS backend's product token

    async def query(self, subject: str = "user-1", token: str | None = None, **body: Any) -> Any:
        return await self.gateway.call(
            "POST",
            "/v1/entitlements/query",
            token=token or self.token,
            json={"product": self.product["code"], "subject": subject, **body},
        )

    async def use(self, units: int = 1, key: str | None = None, subject: str = "user-1", feature: str = "calls") -> Any:
        headers = {"Idempotency-Key": key} if key else None
        return await self.gateway.call(
            "POST",
            "/v1/entitlements/usage",
            token=self.token,
            headers=headers,
            json={"product": self.product["code"], "subject": subject, "feature": feature, "units": units},
        )

    async def totals(self, subject: str = "user-1", **params: str) -> list[dict[str, Any]]:
        answer = await self.gateway.call(
            "GET",
            "/v1/entitlements/usage",
            token=self.token,
            params={"product": self.product["code"], "subject": subject, **params},
        )
        assert answer.status == 200, answer.text
        return answer.body["totals"]


async def _saas(gateway: Gateway, name: str = "SaaS vendor", subject: str = "user-1", ttl: int = 60) -> Saas:
    saas = await make_vendor(
        gateway,
        "cloud-lite",
        kind=Saas,
        name=name,
        product="saas",
        catalog={"reports": {}, "calls": {"metered": True, "unit": "call"}, "exports": {"metered": True, "unit": "file"}},
        features=[{"code": "reports"}, {"code": "calls", "quantity": QUOTA}],
        options={"entitlement_ttl_seconds": ttl},
        license={"subject": subject},
    )
    saas.token = await saas.tenant.token("product", saas.product["id"])
    return saas


@pytest.fixture
async def saas(licensor_gateway: Gateway) -> Saas:
    return await _saas(licensor_gateway)


# --- entitlements ---------------------------------------------------------------------------------------
async def test_a_subjects_entitlements_come_with_a_token_that_verifies_offline(saas: Saas) -> None:
    answer = await saas.query()
    assert answer.status == 200, answer.text
    body = answer.body
    assert (body["code"], body["valid"], body["subject"]) == ("VALID", True, "user-1")
    assert body["features"] == [{"feature": "calls", "quantity": QUOTA}, {"feature": "reports", "quantity": None}]
    assert body["terms"] == {"expires_at": None, "usage_period": "month"}
    assert body["licenses"] == [{"license_id": saas.license["id"], "code": "VALID"}]
    granted = verify_entitlement_token(
        body["token"], await saas.public_keys(), tenant=saas.tenant.id, product="saas", subject="user-1"
    )
    assert granted.features == {"calls": QUOTA, "reports": None} and granted.allows("reports") and not granted.allows("admin")
    assert granted.expires_at - granted.issued_at == 60  # the policy's entitlement_ttl_seconds
    assert granted.license_ids == (saas.license["id"],)


async def test_an_entitlement_token_is_rejected_when_it_does_not_answer_the_question(saas: Saas) -> None:
    token = (await saas.query()).body["token"]
    keys = await saas.public_keys()
    expected: dict[str, Any] = {"tenant": saas.tenant.id, "product": "saas", "subject": "user-1"}
    for field, value, code in (
        ("subject", "user-2", "SUBJECT_MISMATCH"),
        ("product", "other", "PRODUCT_MISMATCH"),
        ("tenant", "ten_other", "TENANT_MISMATCH"),
    ):
        with pytest.raises(EntitlementRejectedError) as rejected:
            verify_entitlement_token(token, keys, **{**expected, field: value})
        assert rejected.value.code == code
    granted = verify_entitlement_token(token, keys, **expected)
    with pytest.raises(EntitlementRejectedError) as expired:
        verify_entitlement_token(token, keys, **expected, now=granted.expires_at)
    assert expired.value.code == "ENTITLEMENT_EXPIRED"
    other = await _saas(saas.gateway, "Another vendor")  # the same key ids cannot help: another tenant's keys
    with pytest.raises(TokenError):
        verify_entitlement_token(token, await other.public_keys(), **expected)
    forged = {kid: next(iter((await other.public_keys()).values())) for kid in keys}
    with pytest.raises(TokenError):
        verify_entitlement_token(token, forged, **expected)
    kind, rest = token.split(".", 1)
    with pytest.raises(TokenError):
        verify_entitlement_token(f"rs1.{rest}", keys, **expected)  # another token kind
    payload_start = len(kind) + 1 + len(rest.split(".")[0]) + 1
    flipped = token[:payload_start] + ("A" if token[payload_start] != "A" else "B") + token[payload_start + 1 :]
    with pytest.raises(TokenError):
        verify_entitlement_token(flipped, keys, **expected)


async def test_a_subject_without_a_license_gets_nothing(saas: Saas) -> None:
    body = (await saas.query("nobody")).body
    assert (body["code"], body["valid"], body["features"], body["licenses"]) == ("NOT_FOUND", False, [], [])
    granted = verify_entitlement_token(
        body["token"], await saas.public_keys(), tenant=saas.tenant.id, product="saas", subject="nobody"
    )
    assert granted.features == {}


async def test_quantities_of_a_subjects_licenses_add_up(saas: Saas) -> None:
    await saas.tenant.license(saas.policy["id"], subject="user-1")
    body = (await saas.query()).body
    assert body["features"] == [{"feature": "calls", "quantity": 2 * QUOTA}, {"feature": "reports", "quantity": None}]
    assert len(body["licenses"]) == 2


async def test_changes_are_answered_at_once(saas: Saas) -> None:
    assert (await saas.query()).body["code"] == "VALID"
    await saas.tenant.ok("POST", f"/v1/admin/licenses/{saas.license['id']}/suspend")
    body = (await saas.query()).body
    assert (body["code"], body["valid"], body["features"]) == ("SUSPENDED", False, [])
    await saas.tenant.ok("POST", f"/v1/admin/licenses/{saas.license['id']}/reinstate")
    await saas.tenant.ok("PATCH", f"/v1/admin/licenses/{saas.license['id']}", json={"subject": "user-2"})
    assert (await saas.query()).body["code"] == "NOT_FOUND"
    assert (await saas.query("user-2")).body["code"] == "VALID"


async def test_the_product_token_decides_what_may_be_asked(saas: Saas) -> None:
    other_product = await saas.tenant.product(code="other")
    narrow = await saas.tenant.token("product", other_product["id"])
    answer = await saas.query(token=narrow)
    assert (answer.status, answer.code) == (403, "PRODUCT_MISMATCH")
    admin = await saas.query(token=saas.tenant.admin_token)
    assert admin.status == 403  # an admin token is not a product token
    missing = await saas.gateway.call("POST", "/v1/entitlements/query", json={"product": "saas", "subject": "user-1"})
    assert (missing.status, missing.code) == (401, "UNAUTHENTICATED")
    unknown = await saas.query(product="nope")
    assert (unknown.status, unknown.code) == (404, "PRODUCT_NOT_FOUND")


async def test_another_tenant_never_sees_the_subject(saas: Saas) -> None:
    other = await _saas(saas.gateway, "Another vendor", subject="someone-else")
    body = (await other.query("user-1")).body  # same product code, same subject id, other tenant
    assert (body["code"], body["licenses"]) == ("NOT_FOUND", [])
    assert await other.totals("user-1") == []


async def test_a_check_by_product_token_and_subject(saas: Saas) -> None:
    base = {"product": "saas", "subject": "user-1", "features": ["reports"]}
    answer = await saas.gateway.call("POST", "/v1/check", token=saas.token, json=base)
    assert answer.body["verdict"]["code"] == "VALID" and answer.body["verdict"]["terms"]["usage_period"] == "month"
    assert (await saas.gateway.call("POST", "/v1/check", token=saas.token, json={**base, "subject": "nobody"})).body["verdict"][
        "code"
    ] == "NOT_FOUND"
    unauthenticated = await saas.gateway.call("POST", "/v1/check", json=base)
    assert (unauthenticated.status, unauthenticated.code) == (401, "UNAUTHENTICATED")
    wrong_role = await saas.gateway.call("POST", "/v1/check", token=saas.tenant.admin_token, json=base)
    assert wrong_role.status == 403


# --- the SDK's cache --------------------------------------------------------------------------------------
async def test_the_sdk_cache_asks_the_gateway_once_per_token_lifetime(saas: Saas) -> None:
    clock = [datetime.now(UTC).timestamp()]

    async def fetch(product: str, subject: str) -> str:
        return (await saas.query(subject, product=product)).body["token"]

    cache = EntitlementCache(fetch, await saas.public_keys(), tenant=saas.tenant.id, clock=lambda: clock[0])
    first = await cache.get("saas", "user-1")
    assert (await cache.get("saas", "user-1")) is first and cache.fetches == 1
    clock[0] += 56  # past the refresh point (5 s before expiry) of a 60 s token
    assert (await cache.get("saas", "user-1")).allows("calls") and cache.fetches == 2

    async def misdirected(product: str, subject: str) -> str:
        return await fetch(product, "user-2")

    bad = EntitlementCache(misdirected, await saas.public_keys(), tenant=saas.tenant.id)
    with pytest.raises(EntitlementRejectedError):
        await bad.get("saas", "user-1")


# --- metered usage -----------------------------------------------------------------------------------------
async def test_concurrent_usage_never_exceeds_the_quota(saas: Saas) -> None:
    answers = await asyncio.gather(*(saas.use(1, key=f"report-{i}") for i in range(200)))
    statuses = [answer.status for answer in answers]
    assert statuses.count(201) == QUOTA and statuses.count(409) == 200 - QUOTA, statuses
    assert {answer.code for answer in answers if answer.status == 409} == {"QUOTA_EXCEEDED"}
    assert sorted(answer.body["used"] for answer in answers if answer.status == 201) == list(range(1, QUOTA + 1))
    totals = await saas.totals()
    assert [(row["feature"], row["used"]) for row in totals] == [("calls", QUOTA)]
    events = await saas.tenant.ok("GET", "/v1/admin/events", params={"type": "usage.recorded", "limit": "200"})
    assert len(events["data"]) == QUOTA


async def test_a_retried_report_counts_once(saas: Saas) -> None:
    key = f"report-{uuid.uuid4().hex}"
    first = await saas.use(3, key=key)
    again = await saas.use(3, key=key)
    assert first.status == again.status == 201 and first.body == again.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    concurrent = await asyncio.gather(*(saas.use(2, key="same-key") for _ in range(10)))
    assert {answer.status for answer in concurrent} == {201} and len({str(a.body) for a in concurrent}) == 1
    assert [row["used"] for row in await saas.totals()] == [5]


async def test_usage_is_read_per_period(saas: Saas) -> None:
    await saas.use(4)
    month = datetime.now(UTC).strftime("%Y-%m")
    assert [(row["period"], row["used"]) for row in await saas.totals(period=month)] == [(month, 4)]
    assert await saas.totals(period="2001-01") == []
    assert await saas.totals("user-2") == []


async def test_usage_that_cannot_be_recorded_is_refused_with_a_reason(saas: Saas) -> None:
    for feature, status, code in (
        ("reports", 422, "FEATURE_NOT_METERED"),
        ("nope", 422, "UNKNOWN_FEATURE"),
        ("exports", 403, "FEATURE_NOT_ENTITLED"),
    ):
        answer = await saas.use(1, feature=feature)
        assert (answer.status, answer.code) == (status, code), feature
    nobody = await saas.use(1, subject="nobody")
    assert (nobody.status, nobody.code) == (404, "LICENSE_NOT_FOUND")
    too_much = await saas.use(QUOTA + 1)
    assert (too_much.status, too_much.code) == (409, "QUOTA_EXCEEDED")
    await saas.tenant.ok("POST", f"/v1/admin/licenses/{saas.license['id']}/suspend")
    suspended = await saas.use(1)
    assert (suspended.status, suspended.code) == (403, "SUSPENDED")
    assert await saas.totals() == []  # nothing was recorded, not even a zero total
